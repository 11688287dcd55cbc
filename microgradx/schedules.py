"""Per-epoch training controllers: learning-rate schedules (the Unit 1 lecture's decay methods) and early stopping.

A schedule sets ``optimizer.lr`` once per epoch; anything with a settable ``lr`` attribute works, and a schedule
built with ``lr0`` and no optimizer simply computes the numbers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .validation import finite as _finite
from .validation import integer as _count
from .validation import nonnegative as _nonneg

__all__ = ["Schedule", "ExponentialDecay", "InverseTimeDecay", "StepDecay", "ManualSchedule",
           "ReduceLROnPlateau", "EarlyStopping"]


def _mode(where: str, mode: str, monitor: str) -> str:
    if mode == "auto":  # as Keras: accuracy-like quantities grow, losses shrink
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"{where}: mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


def _improves(mode: str, current: float, reference: float, min_delta: float) -> bool:
    """Keras's rule: better than ``reference`` by more than ``min_delta`` in the direction of ``mode``."""
    return current < reference - min_delta if mode == "min" else current > reference + min_delta


class Schedule(ABC):
    """A learning rate given by a formula of the epoch number t = 0, 1, 2, ...: ``lr_at(t)``.

    Built on an optimizer it sets ``optimizer.lr = lr_at(0)`` at once and ``lr_at(t)`` at each ``step()``, which
    is called once at the end of every epoch, so epoch t trains with lr_at(t). ``lr0`` defaults to the
    optimizer's learning rate.
    """

    def __init__(self, optimizer: Any = None, *, lr0: float | None = None) -> None:
        name = type(self).__name__
        if lr0 is None:
            if optimizer is None:
                raise ValueError(f"{name}: give an optimizer or lr0")
            lr0 = optimizer.lr
        self.lr0 = _nonneg(name, "lr0", lr0)
        self.optimizer = optimizer
        self.epoch = 0
        self._apply()

    @abstractmethod
    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch``."""

    @property
    def lr(self) -> float:
        """The learning rate of the current epoch."""
        return self.lr_at(self.epoch)

    def step(self, metric: float | None = None) -> float:
        """End an epoch: move to the next one and set its learning rate on the optimizer; return that rate."""
        self.epoch += 1
        return self._apply()

    def _apply(self) -> float:
        lr = self.lr
        if self.optimizer is not None:
            self.optimizer.lr = lr
        return lr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr0={self.lr0!r}, epoch={self.epoch})"


class ExponentialDecay(Schedule):
    """Exponential decay (the Unit 1 lecture): alpha_t = alpha_0 * exp(-k t).

    >>> ExponentialDecay(lr0=0.1, k=0.01).lr_at(10)  # the Unit 1 lecture's example, ~0.09
    0.09048374180359596
    """

    def __init__(self, optimizer: Any = None, *, k: float, lr0: float | None = None) -> None:
        self.k = _nonneg("ExponentialDecay", "k", k)
        super().__init__(optimizer, lr0=lr0)

    def lr_at(self, epoch: int) -> float:
        return self.lr0 * math.exp(-self.k * epoch)


class InverseTimeDecay(Schedule):
    """Inverse (time) decay (the Unit 1 lecture): alpha_t = alpha_0 / (1 + k t).

    >>> InverseTimeDecay(lr0=0.1, k=0.01).lr_at(10)  # the Unit 1 lecture's example, ~0.091
    0.09090909090909091
    """

    def __init__(self, optimizer: Any = None, *, k: float, lr0: float | None = None) -> None:
        self.k = _nonneg("InverseTimeDecay", "k", k)
        super().__init__(optimizer, lr0=lr0)

    def lr_at(self, epoch: int) -> float:
        return self.lr0 / (1 + self.k * epoch)


class StepDecay(Schedule):
    """Step decay (Unit 1 lecture): multiply by ``factor`` every ``every`` epochs: alpha_0 factor**floor(t / every).

    >>> s = StepDecay(lr0=0.1, factor=0.5, every=5)  # the Unit 1 lecture: 0.05 after 5 epochs, 0.025 after 10
    >>> [s.lr_at(t) for t in (0, 4, 5, 9, 10)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, optimizer: Any = None, *, factor: float = 0.5, every: int = 5,
                 lr0: float | None = None) -> None:
        self.factor = _nonneg("StepDecay", "factor", factor)
        self.every = _count("StepDecay", "every", every, 1)
        super().__init__(optimizer, lr0=lr0)

    def lr_at(self, epoch: int) -> float:
        return self.lr0 * self.factor ** (epoch // self.every)


class ManualSchedule(Schedule):
    """Manual adjustment (the Unit 1 lecture): the rates are given, as a list (the last one is kept after the list
    ends) or as a function of the epoch.

    >>> s = ManualSchedule(lrs=[0.1, 0.1, 0.01])
    >>> [s.lr_at(t) for t in range(5)]
    [0.1, 0.1, 0.01, 0.01, 0.01]
    >>> ManualSchedule(lrs=lambda t: 0.1 if t < 3 else 0.02).lr_at(3)
    0.02
    """

    def __init__(self, optimizer: Any = None, *, lrs: Sequence[float] | Callable[[int], float]) -> None:
        if callable(lrs):
            self.lrs: Sequence[float] | Callable[[int], float] = lrs
        else:
            self.lrs = [_nonneg("ManualSchedule", f"lrs[{i}]", x) for i, x in enumerate(lrs)]
            if not self.lrs:
                raise ValueError("ManualSchedule: lrs is an empty list")
        super().__init__(optimizer, lr0=self.lr_at(0))

    def lr_at(self, epoch: int) -> float:
        if callable(self.lrs):
            return _nonneg("ManualSchedule", f"lrs({epoch})", self.lrs(epoch))
        return self.lrs[min(epoch, len(self.lrs) - 1)]


class ReduceLROnPlateau:
    """Reduce the rate when a monitored quantity stops improving (the Unit 1 lecture: "if the validation loss doesn't
    decrease for 3 consecutive epochs, reduce the learning rate by a factor of 0.1").

    ``step(metric)`` at the end of each epoch. An epoch improves when metric < best - min_delta (``mode="max"``:
    metric > best + min_delta). After ``patience`` epochs in a row without improvement, lr <- max(lr * factor,
    min_lr) and the count restarts; the ``cooldown`` epochs after a reduction are not counted. Keras reduces
    after ``patience`` bad epochs, as here; PyTorch one epoch later, after patience + 1.

    >>> s = ReduceLROnPlateau(lr0=0.1, factor=0.1, patience=3)
    >>> [round(s.step(loss), 6) for loss in [1.0, 0.8, 0.81, 0.8, 0.9, 0.7]]
    [0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    """

    def __init__(self, optimizer: Any = None, *, factor: float = 0.1, patience: int = 3, min_delta: float = 0.0,
                 mode: str = "min", cooldown: int = 0, min_lr: float = 0.0, lr0: float | None = None) -> None:
        name = "ReduceLROnPlateau"
        if lr0 is None:
            if optimizer is None:
                raise ValueError(f"{name}: give an optimizer or lr0")
            lr0 = optimizer.lr
        self.factor = _nonneg(name, "factor", factor)
        if self.factor >= 1:
            raise ValueError(f"{name}: factor must be < 1, got {factor!r}")
        self.patience = _count(name, "patience", patience, 1)
        self.min_delta = _nonneg(name, "min_delta", min_delta)
        self.mode = _mode(name, mode, "")
        self.cooldown = _count(name, "cooldown", cooldown, 0)
        self.min_lr = _nonneg(name, "min_lr", min_lr)
        self.optimizer = optimizer
        self.lr = _nonneg(name, "lr0", lr0)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_left = 0
        self.epoch = 0
        if optimizer is not None:
            optimizer.lr = self.lr

    def step(self, metric: float | None = None) -> float:
        """End an epoch whose monitored value was ``metric``; return the learning rate for the next epoch."""
        if metric is None:
            raise ValueError("ReduceLROnPlateau.step needs the monitored metric, e.g. step(val_loss)")
        current = _finite("ReduceLROnPlateau.step", "metric", metric)
        self.epoch += 1
        if _improves(self.mode, current, self.best, self.min_delta):
            self.best = current
            self.wait = 0
        else:
            self.wait += 1
        if self.cooldown_left > 0:  # epochs right after a reduction do not count as bad
            self.cooldown_left -= 1
            self.wait = 0
        if self.wait >= self.patience:
            self.lr = max(self.lr * self.factor, self.min_lr)
            self.cooldown_left = self.cooldown
            self.wait = 0
        if self.optimizer is not None:
            self.optimizer.lr = self.lr
        return self.lr

    def __repr__(self) -> str:
        return f"ReduceLROnPlateau(lr={self.lr!r}, best={self.best!r}, wait={self.wait})"


class EarlyStopping:
    """Stop training when a monitored quantity stops improving, Keras-style (Slettevold's thesis uses
    ``EarlyStopping(monitor='loss', min_delta=0.0001, patience=3)``).

    ``update(logs)`` at the end of each epoch, with the monitored number or a dict holding it; it returns True
    when training should stop. An epoch improves when its value beats the best so far by more than
    ``min_delta`` (lower for ``mode="min"``, higher for ``"max"``; ``"auto"`` picks max when the monitor's name
    contains "acc"). Training stops once ``patience`` epochs in a row have not improved. With ``baseline``, an
    improvement resets the count only if it also beats the baseline. With ``restore_best_weights`` and
    ``params``, the parameters' data are copied at the best epoch and copied back (in place) on stopping.

    NOTE: Slettevold's thesis describes improvement as |x_t - x_{t-1}| > min_delta, i.e. against the previous epoch;
    Keras, which it ran, compares with the best value so far, and so does this class.

    >>> stop = EarlyStopping(monitor="loss", patience=3, min_delta=1e-4)
    >>> [stop.update({"loss": x}) for x in [1.0, 0.5, 0.49995, 0.49993, 0.49992]]
    [False, False, False, False, True]
    >>> stop.best, stop.best_epoch, stop.stopped_epoch
    (0.5, 1, 4)
    """

    def __init__(self, monitor: str = "loss", patience: int = 3, min_delta: float = 1e-4, mode: str = "auto",
                 baseline: float | None = None, restore_best_weights: bool = False,
                 params: Iterable[Any] | None = None) -> None:
        name = "EarlyStopping"
        self.monitor = monitor
        self.patience = _count(name, "patience", patience, 0)
        self.min_delta = _nonneg(name, "min_delta", min_delta)
        self.mode = _mode(name, mode, monitor)
        self.baseline = None if baseline is None else _finite(name, "baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.params = None if params is None else list(params)
        if self.restore_best_weights and not self.params:
            raise ValueError(f"{name}: restore_best_weights needs the params whose data to keep")
        self.reset()

    def reset(self) -> None:
        """Forget the history, to start a new training run."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.epoch = -1
        self.stopped_epoch: int | None = None
        self.best_weights: list[Any] | None = None

    @property
    def should_stop(self) -> bool:
        """True once ``update`` has asked to stop."""
        return self.stopped_epoch is not None

    def update(self, logs: float | Mapping[str, float]) -> bool:
        """Record one finished epoch (its monitored value, or a dict of logs); True means: stop training now."""
        if isinstance(logs, Mapping):
            if self.monitor not in logs:
                raise ValueError(f"EarlyStopping: the logs have no {self.monitor!r} (they have {sorted(logs)})")
            logs = logs[self.monitor]
        current = _finite("EarlyStopping.update", self.monitor, logs)
        self.epoch += 1
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self._snapshot()  # so there is something to restore even if nothing improves
        self.wait += 1
        if _improves(self.mode, current, self.best, self.min_delta):
            self.best, self.best_epoch = current, self.epoch
            if self.restore_best_weights:
                self.best_weights = self._snapshot()
            if self.baseline is None or _improves(self.mode, current, self.baseline, self.min_delta):
                self.wait = 0
            return False
        if self.wait >= self.patience and self.epoch > 0:
            self.stopped_epoch = self.epoch
            if self.restore_best_weights:
                self.restore()
            return True
        return False

    def _snapshot(self) -> list[Any]:
        return [np.array(p.data, copy=True) if isinstance(p.data, np.ndarray) else p.data for p in self.params]

    def restore(self) -> None:
        """Copy the best epoch's data back into the parameters (arrays in place)."""
        if self.best_weights is None:
            raise ValueError("EarlyStopping.restore: no weights were recorded (needs restore_best_weights=True "
                             "and at least one update)")
        for p, w in zip(self.params, self.best_weights, strict=True):
            if isinstance(p.data, np.ndarray):
                p.data[...] = w
            else:
                p.data = w

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
                f"best={self.best!r}, wait={self.wait})")
