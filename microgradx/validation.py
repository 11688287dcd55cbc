"""Checks of hyperparameters and sizes shared by optimizers, schedules and data: each rule written once.

Every check takes ``where`` (the function or class asking) and ``name`` (the argument), so the ``ValueError``
it raises names both, and returns the value as a plain ``float`` or ``int``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["finite", "positive", "nonnegative", "unit_interval", "integer"]


def finite(where: str, name: str, x: Any) -> float:
    """``x`` as a float; a ValueError unless it is a finite real number (not a bool).

    >>> finite("SGD", "lr", 0.5)
    0.5
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        raise ValueError(f"{where}: {name} must be a finite number, got {x!r}")
    return float(x)


def positive(where: str, name: str, x: Any) -> float:
    """A finite number > 0.

    >>> positive("clip_grad_norm", "max_norm", 1)
    1.0
    """
    x = finite(where, name, x)
    if x <= 0:
        raise ValueError(f"{where}: {name} must be > 0, got {x!r}")
    return x


def nonnegative(where: str, name: str, x: Any) -> float:
    """A finite number >= 0.

    >>> nonnegative("SGD", "weight_decay", 0)
    0.0
    """
    x = finite(where, name, x)
    if x < 0:
        raise ValueError(f"{where}: {name} must be >= 0, got {x!r}")
    return x


def unit_interval(where: str, name: str, x: Any) -> float:
    """A finite number in [0, 1) (a decay rate such as momentum or beta).

    >>> unit_interval("Adam", "beta1", 0.9)
    0.9
    """
    x = finite(where, name, x)
    if not 0 <= x < 1:
        raise ValueError(f"{where}: {name} must be in [0, 1), got {x!r}")
    return x


def integer(where: str, name: str, x: Any, least: int = 1) -> int:
    """An integer (not a bool) >= ``least``.

    >>> integer("DataLoader", "batch_size", 32)
    32
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < least:
        raise ValueError(f"{where}: {name} must be an integer >= {least}, got {x!r}")
    return int(x)
