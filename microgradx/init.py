"""Weight initialisation: Xavier/Glorot and He/Kaiming, uniform and normal (Gerald's lecture), with seeded RNGs.

A weight has shape (fan_out, fan_in) = (m, n), as Gerald's A in R^{m x n} with y = A x + b.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["make_rng", "fans", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "zeros", "constant",
           "kaiming_uniform_bound", "torch_uniform", "torch_bias", "INITS", "BIAS_INITS"]

def make_rng(rng: int | np.random.Generator | None = None) -> np.random.Generator:
    """A NumPy Generator: ``rng`` itself, or ``numpy.random.default_rng(rng)`` for a seed or None.

    >>> int(make_rng(0).integers(10)) == int(make_rng(0).integers(10))
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None and (isinstance(rng, bool) or not isinstance(rng, (int, np.integer))):
        raise TypeError(f"make_rng needs an int seed, a numpy Generator or None, got {type(rng).__name__}")
    return np.random.default_rng(rng)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel): ``fans((3, 5)) == (5, 3)``."""
    if len(shape) < 2:
        raise ValueError(f"fans: a weight needs at least 2 dimensions (out, in), got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform(shape: tuple[int, ...], bound: float, rng: Any, dtype: Any) -> np.ndarray:
    return make_rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def _normal(shape: tuple[int, ...], std: float, rng: Any, dtype: Any) -> np.ndarray:
    return (make_rng(rng).standard_normal(size=shape) * std).astype(dtype)


def xavier_uniform(shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """Glorot uniform: A ~ U[-sqrt(6)/sqrt(m+n), sqrt(6)/sqrt(m+n)] (Gerald's lecture, for tanh; Glorot & Bengio 2010).

    >>> W = xavier_uniform((3, 5), rng=0); W.shape, bool(abs(W).max() <= math.sqrt(6 / 8))
    ((3, 5), True)
    """
    fan_in, fan_out = fans(shape)
    return _uniform(shape, math.sqrt(6.0) / math.sqrt(fan_in + fan_out), rng, dtype)


def xavier_normal(shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """Glorot normal: A ~ N(0, 2/(m+n)), the same variance as Gerald's U[-sqrt(6/(m+n)), sqrt(6/(m+n))]
    (a uniform on [-a, a] has variance a**2/3).

    >>> xavier_normal((2, 2), rng=0).dtype
    dtype('float32')
    """
    fan_in, fan_out = fans(shape)
    return _normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def he_uniform(shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """He/Kaiming uniform: A ~ U[-sqrt(6)/sqrt(n), sqrt(6)/sqrt(n)], n = fan_in (Gerald's lecture, for ReLU; He 2015).

    >>> W = he_uniform((3, 6), rng=0); bool(abs(W).max() <= 1.0)
    True
    """
    fan_in, _ = fans(shape)
    return _uniform(shape, math.sqrt(6.0) / math.sqrt(fan_in), rng, dtype)


def he_normal(shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """He/Kaiming normal: A ~ N(0, 2/n), n = fan_in: the variance of Gerald's U[-sqrt(6/n), sqrt(6/n)].

    >>> he_normal((4, 2), rng=1).shape
    (4, 2)
    """
    fan_in, _ = fans(shape)
    return _normal(shape, math.sqrt(2.0 / fan_in), rng, dtype)


def zeros(shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """All zeros (Gerald's default bias b = 0): ``zeros((2,)).tolist() == [0.0, 0.0]``."""
    return np.zeros(shape, dtype=dtype)


def constant(shape: tuple[int, ...], value: float, dtype: Any = np.float32) -> np.ndarray:
    """All ``value`` (Gerald's small ReLU bias b = 0.01): ``constant((2,), 0.01)[0] == np.float32(0.01)``."""
    return np.full(shape, value, dtype=dtype)


def kaiming_uniform_bound(fan_in: int, a: float = 0.0) -> float:
    """PyTorch's ``kaiming_uniform_`` bound sqrt(3) * gain / sqrt(fan_in), gain = sqrt(2 / (1 + a**2)) (leaky ReLU a).

    >>> round(kaiming_uniform_bound(6), 12), round(kaiming_uniform_bound(4, math.sqrt(5)), 12)  # sqrt(6/6), 1/sqrt(4)
    (1.0, 0.5)
    """
    if fan_in < 1:
        raise ValueError(f"kaiming_uniform_bound: fan_in must be >= 1, got {fan_in!r}")
    return math.sqrt(3.0) * math.sqrt(2.0 / (1.0 + a * a)) / math.sqrt(fan_in)


# PyTorch's Linear and Conv2d call kaiming_uniform_(weight, a=sqrt(5)): the bound is then exactly 1/sqrt(fan_in).
TORCH_A = math.sqrt(5.0)


def torch_uniform(shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """PyTorch's default Linear/Conv2d weight: kaiming_uniform_(a=sqrt(5)), i.e. U[-1/sqrt(n), 1/sqrt(n)], n = fan_in.

    >>> W = torch_uniform((3, 4), rng=0); bool(abs(W).max() <= 0.5)
    True
    """
    return _uniform(shape, kaiming_uniform_bound(fans(shape)[0], TORCH_A), rng, dtype)


def torch_bias(weight_shape: tuple[int, ...], rng: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """PyTorch's default bias for a weight of ``weight_shape``: U[-1/sqrt(n), 1/sqrt(n)], n = fan_in, one per row.

    >>> b = torch_bias((3, 4), rng=0); b.shape, bool(abs(b).max() <= 0.5)
    ((3,), True)
    """
    return _uniform((weight_shape[0],), 1.0 / math.sqrt(fans(weight_shape)[0]), rng, dtype)


INITS: dict[str, Callable[..., np.ndarray]] = {
    "xavier_uniform": xavier_uniform, "xavier_normal": xavier_normal,
    "glorot_uniform": xavier_uniform, "glorot_normal": xavier_normal,
    "he_uniform": he_uniform, "he_normal": he_normal,
    "kaiming_uniform": he_uniform, "kaiming_normal": he_normal,
    "torch": torch_uniform,
}

# Schemes that draw the bias too (from the weight's shape, after the weight, from the same generator); every
# other scheme gives a constant bias.
BIAS_INITS: dict[str, Callable[..., np.ndarray]] = {"torch": torch_bias}
