"""Per-epoch training controllers: learning-rate schedules (the Unit 1 lecture's decay methods) and early stopping.

A schedule sets the rate of each of the optimizer's parameter groups (``optimizer.lr`` on anything else with a
settable ``lr``) once per epoch; a schedule built with ``lr0`` and no optimizer simply computes the numbers.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .validation import finite as _finite
from .validation import integer as _count
from .validation import nonnegative as _nonneg
from .validation import positive as _positive

__all__ = ["Schedule", "ExponentialDecay", "InverseTimeDecay", "StepDecay", "ManualSchedule", "MultiStepLR",
           "LinearLR", "LambdaLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "OneCycleLR", "CyclicLR",
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


def _groups(optimizer: Any) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups (each with its own "lr"), or None for an object with a plain ``lr``."""
    groups = getattr(optimizer, "param_groups", None)
    return groups if isinstance(groups, list) and groups else None


class Schedule(ABC):
    """A learning rate given by a formula of the epoch number t = 0, 1, 2, ...: ``lr_at(t)``.

    Built on an optimizer it sets ``optimizer.lr = lr_at(0)`` at once and ``lr_at(t)`` at each ``step()``, which
    is called once at the end of every epoch, so epoch t trains with lr_at(t). ``lr0`` defaults to the
    optimizer's learning rate. On an optimizer with parameter groups each group follows the formula from its
    own starting rate, as in PyTorch (a StepDecay halves every group's rate); schedules whose rates are given
    outright (``ManualSchedule``, ``OneCycleLR``, ``CyclicLR``) give every group the same rate, as PyTorch's
    do for one ``max_lr``.
    """

    _absolute = False  # True: the formula gives the rate itself, not a curve drawn from a starting rate

    def __init__(self, optimizer: Any = None, *, lr0: float | None = None) -> None:
        name = type(self).__name__
        groups = _groups(optimizer)
        if lr0 is None:
            if optimizer is None:
                raise ValueError(f"{name}: give an optimizer or lr0")
            lr0 = optimizer.lr
        elif groups and len(groups) > 1 and not self._absolute:
            raise ValueError(f"{name}: the optimizer has {len(groups)} parameter groups, each starting from its "
                             "own rate; leave lr0 out (set the rates in the groups)")
        self.lr0 = _nonneg(name, "lr0", lr0)
        # each group's starting rate (PyTorch's "initial_lr")
        self.base_lrs = [self.lr0] if groups is None or self._absolute else [g["lr"] for g in groups]
        self.optimizer = optimizer
        self.epoch = 0
        self._apply()

    @abstractmethod
    def _rate(self, epoch: int, lr0: float) -> float:
        """The learning rate of epoch ``epoch`` for a group whose starting rate is ``lr0``."""

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (of the first group)."""
        return self._rate(epoch, self.lr0)

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
        groups = _groups(self.optimizer)
        if groups is not None and not self._absolute:
            for group, base in zip(groups, self.base_lrs, strict=True):
                group["lr"] = self._rate(self.epoch, base)
        elif self.optimizer is not None:
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

    def _rate(self, epoch: int, lr0: float) -> float:
        return lr0 * math.exp(-self.k * epoch)


class InverseTimeDecay(Schedule):
    """Inverse (time) decay (the Unit 1 lecture): alpha_t = alpha_0 / (1 + k t).

    >>> InverseTimeDecay(lr0=0.1, k=0.01).lr_at(10)  # the Unit 1 lecture's example, ~0.091
    0.09090909090909091
    """

    def __init__(self, optimizer: Any = None, *, k: float, lr0: float | None = None) -> None:
        self.k = _nonneg("InverseTimeDecay", "k", k)
        super().__init__(optimizer, lr0=lr0)

    def _rate(self, epoch: int, lr0: float) -> float:
        return lr0 / (1 + self.k * epoch)


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

    def _rate(self, epoch: int, lr0: float) -> float:
        return lr0 * self.factor ** (epoch // self.every)


class ManualSchedule(Schedule):
    """Manual adjustment (the Unit 1 lecture): the rates are given, as a list (the last one is kept after the list
    ends) or as a function of the epoch.

    >>> s = ManualSchedule(lrs=[0.1, 0.1, 0.01])
    >>> [s.lr_at(t) for t in range(5)]
    [0.1, 0.1, 0.01, 0.01, 0.01]
    >>> ManualSchedule(lrs=lambda t: 0.1 if t < 3 else 0.02).lr_at(3)
    0.02
    """

    _absolute = True

    def __init__(self, optimizer: Any = None, *, lrs: Sequence[float] | Callable[[int], float]) -> None:
        if callable(lrs):
            self.lrs: Sequence[float] | Callable[[int], float] = lrs
        else:
            self.lrs = [_nonneg("ManualSchedule", f"lrs[{i}]", x) for i, x in enumerate(lrs)]
            if not self.lrs:
                raise ValueError("ManualSchedule: lrs is an empty list")
        super().__init__(optimizer, lr0=self._rate(0, 0.0))

    def _rate(self, epoch: int, lr0: float) -> float:
        if callable(self.lrs):
            return _nonneg("ManualSchedule", f"lrs({epoch})", self.lrs(epoch))
        return self.lrs[min(epoch, len(self.lrs) - 1)]


def _cosine(start: float, end: float, pct: float) -> float:
    """Half a cosine from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def _linear(start: float, end: float, pct: float) -> float:
    """A straight line from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return start + (end - start) * pct


_ANNEAL = {"cos": _cosine, "linear": _linear}


class MultiStepLR(Schedule):
    """Multiply by ``gamma`` at each milestone epoch (PyTorch's ``MultiStepLR``): alpha_0 gamma**(milestones <= t).

    >>> s = MultiStepLR(lr0=0.1, milestones=[3, 5], gamma=0.5)
    >>> [s.lr_at(t) for t in (0, 2, 3, 4, 5, 9)]
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    """

    def __init__(self, optimizer: Any = None, *, milestones: Sequence[int], gamma: float = 0.1,
                 lr0: float | None = None) -> None:
        name = "MultiStepLR"
        self.milestones = sorted(_count(name, f"milestones[{i}]", m, 1) for i, m in enumerate(milestones))
        if not self.milestones:
            raise ValueError(f"{name}: milestones is empty (use ManualSchedule or a constant rate)")
        self.gamma = _nonneg(name, "gamma", gamma)
        super().__init__(optimizer, lr0=lr0)

    def _rate(self, epoch: int, lr0: float) -> float:
        # a milestone listed twice counts twice, as in PyTorch
        return lr0 * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class LinearLR(Schedule):
    """Linear warm-up (PyTorch's ``LinearLR``): the factor on alpha_0 goes in a straight line from ``start_factor``
    to ``end_factor`` over ``total_iters`` epochs, then stays: alpha_0 (s + (e - s) min(t, T) / T).

    >>> s = LinearLR(lr0=0.1, start_factor=0.25, total_iters=3)
    >>> [round(s.lr_at(t), 12) for t in range(5)]
    [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    def __init__(self, optimizer: Any = None, *, start_factor: float = 1 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, lr0: float | None = None) -> None:
        name = "LinearLR"
        self.start_factor = _positive(name, "start_factor", start_factor)
        self.end_factor = _nonneg(name, "end_factor", end_factor)
        if self.start_factor > 1 or self.end_factor > 1:
            raise ValueError(f"{name}: start_factor must be in (0, 1] and end_factor in [0, 1], "
                             f"got {start_factor!r} and {end_factor!r}")
        self.total_iters = _count(name, "total_iters", total_iters, 1)
        super().__init__(optimizer, lr0=lr0)

    def _rate(self, epoch: int, lr0: float) -> float:
        pct = min(epoch, self.total_iters) / self.total_iters
        return lr0 * _linear(self.start_factor, self.end_factor, pct)


class LambdaLR(Schedule):
    """alpha_0 times a factor given as a function of the epoch (PyTorch's ``LambdaLR``): alpha_0 lr_lambda(t).

    ``ManualSchedule(lrs=f)`` takes the rate itself; ``LambdaLR`` takes the multiplier of ``lr0``.

    >>> LambdaLR(lr0=0.5, lr_lambda=lambda t: 0.9 ** t).lr_at(2)
    0.405
    """

    def __init__(self, optimizer: Any = None, *, lr_lambda: Callable[[int], float],
                 lr0: float | None = None) -> None:
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be a function of the epoch, got {lr_lambda!r}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, lr0=lr0)

    def _rate(self, epoch: int, lr0: float) -> float:
        return lr0 * _nonneg("LambdaLR", f"lr_lambda({epoch})", self.lr_lambda(epoch))


class CosineAnnealingLR(Schedule):
    """Cosine annealing (PyTorch's ``CosineAnnealingLR``, Loshchilov & Hutter's SGDR without restarts): half a
    cosine from alpha_0 down to ``eta_min`` over ``T_max`` epochs, eta_min + (alpha_0 - eta_min)(1 + cos(pi t/T_max))/2;
    past T_max the cosine goes on and the rate climbs back, as in PyTorch.

    >>> s = CosineAnnealingLR(lr0=0.1, T_max=4, eta_min=0.02)
    >>> [round(s.lr_at(t), 12) for t in (0, 2, 4)]
    [0.1, 0.06, 0.02]
    """

    def __init__(self, optimizer: Any = None, *, T_max: int, eta_min: float = 0.0,
                 lr0: float | None = None) -> None:
        self.T_max = _count("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = _nonneg("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, lr0=lr0)

    def _rate(self, epoch: int, lr0: float) -> float:
        return _cosine(lr0, self.eta_min, epoch / self.T_max)


class CosineAnnealingWarmRestarts(Schedule):
    """Cosine annealing with warm restarts (PyTorch's ``CosineAnnealingWarmRestarts``, SGDR): the cosine from
    alpha_0 to ``eta_min`` restarts after ``T_0`` epochs, and each period is ``T_mult`` times the one before.

    >>> s = CosineAnnealingWarmRestarts(lr0=0.1, T_0=2, T_mult=2)  # restarts at epochs 2 and 2 + 4 = 6
    >>> [round(s.lr_at(t), 12) for t in range(7)]
    [0.1, 0.05, 0.1, 0.085355339059, 0.05, 0.014644660941, 0.1]
    """

    def __init__(self, optimizer: Any = None, *, T_0: int, T_mult: int = 1,
                 eta_min: float = 0.0, lr0: float | None = None) -> None:
        name = "CosineAnnealingWarmRestarts"
        self.T_0 = _count(name, "T_0", T_0, 1)
        self.T_mult = _count(name, "T_mult", T_mult, 1)
        self.eta_min = _nonneg(name, "eta_min", eta_min)
        super().__init__(optimizer, lr0=lr0)

    def _rate(self, epoch: int, lr0: float) -> float:
        t, period = epoch, self.T_0
        if self.T_mult == 1:
            t %= period
        else:  # the periods grow geometrically, so this loop runs about log(epoch) times
            while t >= period:
                t, period = t - period, period * self.T_mult
        return _cosine(lr0, self.eta_min, t / period)


class OneCycleLR(Schedule):
    """The one-cycle policy (PyTorch's ``OneCycleLR``, Smith & Topin): warm up from max_lr/div_factor to ``max_lr``
    over the first ``pct_start`` of ``total_steps`` epochs, then anneal down to max_lr/(div_factor final_div_factor).

    ``anneal_strategy`` is "cos" or "linear"; ``three_phase=True`` comes back down to the initial rate before the
    final anneal. Only the learning rate is cycled (not momentum: use ``cycle_momentum=False`` in PyTorch to
    compare). The schedule lasts ``total_steps`` epochs (the ``step()`` after the last one keeps the final rate);
    asking for a later epoch is an error, as in PyTorch.

    >>> s = OneCycleLR(max_lr=1.0, total_steps=10, pct_start=0.3, anneal_strategy="linear", div_factor=10,
    ...                final_div_factor=2)  # up over epochs 0..2, down over 2..9 to 0.05
    >>> [round(s.lr_at(t), 12) for t in (0, 1, 2, 9)]
    [0.1, 0.55, 1.0, 0.05]
    """

    _absolute = True

    def __init__(self, optimizer: Any = None, *, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False) -> None:
        name = "OneCycleLR"
        self.max_lr = _nonneg(name, "max_lr", max_lr)
        self.total_steps = _count(name, "total_steps", total_steps, 2)
        self.pct_start = _finite(name, "pct_start", pct_start)
        if not 0 <= self.pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be in [0, 1], got {pct_start!r}")
        if anneal_strategy not in _ANNEAL:
            raise ValueError(f"{name}: anneal_strategy must be one of {sorted(_ANNEAL)}, got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.div_factor = _positive(name, "div_factor", div_factor)
        self.final_div_factor = _positive(name, "final_div_factor", final_div_factor)
        self.three_phase = bool(three_phase)
        initial = self.max_lr / self.div_factor
        low = initial / self.final_div_factor
        up_end = self.pct_start * self.total_steps - 1
        # (last epoch of the phase, rate at its start, rate at its end), PyTorch's phase boundaries
        if self.three_phase:
            self._phases = [(up_end, initial, self.max_lr), (2 * up_end, self.max_lr, initial),
                            (self.total_steps - 1, initial, low)]
        else:
            self._phases = [(up_end, initial, self.max_lr), (self.total_steps - 1, self.max_lr, low)]
        ends = [0.0] + [end for end, _, _ in self._phases]
        if any(b <= a for a, b in zip(ends, ends[1:], strict=False)):
            raise ValueError(f"{name}: pct_start={pct_start!r} with total_steps={total_steps} leaves a phase "
                             f"with no epochs (the phases end at epochs {ends[1:]}); raise total_steps or move "
                             "pct_start away from 0 and 1")
        super().__init__(optimizer, lr0=initial)

    def _rate(self, epoch: int, lr0: float) -> float:
        if epoch > self.total_steps:
            raise ValueError(f"OneCycleLR: epoch {epoch} is past total_steps={self.total_steps}; "
                             "build the schedule with total_steps >= the number of epochs")
        # the step after the last epoch keeps the final rate (PyTorch extrapolates the line, which can go negative)
        epoch = min(epoch, self.total_steps - 1)
        i = next(i for i, (end, _, _) in enumerate(self._phases) if epoch <= end)  # the last phase ends at T - 1
        end, lr_start, lr_end = self._phases[i]
        start = self._phases[i - 1][0] if i > 0 else 0.0
        return _ANNEAL[self.anneal_strategy](lr_start, lr_end, (epoch - start) / (end - start))


class CyclicLR(Schedule):
    """Cyclical learning rates (PyTorch's ``CyclicLR``, Smith 2017): the rate climbs linearly from ``base_lr`` to
    ``max_lr`` over ``step_size_up`` epochs and back over ``step_size_down`` (default: the same).

    ``mode``: "triangular" (every cycle the same), "triangular2" (the height halves each cycle) or "exp_range"
    (the height shrinks by ``gamma`` per epoch); or ``scale_fn`` of the cycle number (``scale_mode="cycle"``) or
    of the epoch (``"iterations"``). Only the rate is cycled (use ``cycle_momentum=False`` in PyTorch to compare).

    >>> s = CyclicLR(base_lr=0.1, max_lr=0.5, step_size_up=2, mode="triangular2")
    >>> [round(s.lr_at(t), 12) for t in range(7)]
    [0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3]
    """

    _MODES: dict[str, tuple[Callable[[CyclicLR, float], float], str]] = {
        "triangular": (lambda s, x: 1.0, "cycle"),
        "triangular2": (lambda s, x: 1 / 2.0 ** (x - 1), "cycle"),
        "exp_range": (lambda s, x: s.gamma ** x, "iterations"),
    }

    _absolute = True

    def __init__(self, optimizer: Any = None, *, base_lr: float, max_lr: float, step_size_up: int = 2000,
                 step_size_down: int | None = None, mode: str = "triangular", gamma: float = 1.0,
                 scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle") -> None:
        name = "CyclicLR"
        self.base_lr = _nonneg(name, "base_lr", base_lr)
        self.max_lr = _nonneg(name, "max_lr", max_lr)
        self.step_size_up = _count(name, "step_size_up", step_size_up, 1)
        self.step_size_down = self.step_size_up if step_size_down is None else _count(
            name, "step_size_down", step_size_down, 1)
        self.gamma = _nonneg(name, "gamma", gamma)
        if scale_fn is None:
            if mode not in self._MODES:
                raise ValueError(f"{name}: mode must be one of {sorted(self._MODES)}, got {mode!r}")
            fn, scale_mode = self._MODES[mode]
            self.scale_fn: Callable[[float], float] = lambda x: fn(self, x)
        else:
            if not callable(scale_fn):
                raise TypeError(f"{name}: scale_fn must be a function, got {scale_fn!r}")
            if scale_mode not in ("cycle", "iterations"):
                raise ValueError(f"{name}: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
            self.scale_fn = scale_fn
        self.mode, self.scale_mode = mode, scale_mode
        super().__init__(optimizer, lr0=self.base_lr)

    def _rate(self, epoch: int, lr0: float) -> float:
        total = self.step_size_up + self.step_size_down
        cycle = math.floor(1 + epoch / total)
        x = 1.0 + epoch / total - cycle  # the position inside the cycle, in [0, 1)
        up = self.step_size_up / total
        height = (self.max_lr - self.base_lr) * (x / up if x <= up else (x - 1) / (up - 1))
        scale = _finite("CyclicLR", "scale_fn", self.scale_fn(cycle if self.scale_mode == "cycle" else epoch))
        return self.base_lr + height * scale


class ReduceLROnPlateau:
    """Reduce the rate when a monitored quantity stops improving (the Unit 1 lecture: "if the validation loss doesn't
    decrease for 3 consecutive epochs, reduce the learning rate by a factor of 0.1").

    ``step(metric)`` at the end of each epoch. An epoch improves when metric < best - min_delta (``mode="max"``:
    metric > best + min_delta). After ``patience`` epochs in a row without improvement, lr <- max(lr * factor,
    min_lr) and the count restarts; the ``cooldown`` epochs after a reduction are not counted. As in PyTorch, a
    reduction that would change the rate by ``eps`` or less is skipped, so the rate stops falling near min_lr or
    once it is tiny (default eps = 1e-8). Keras reduces
    after ``patience`` bad epochs, as here; PyTorch one epoch later, after patience + 1.

    >>> s = ReduceLROnPlateau(lr0=0.1, factor=0.1, patience=3)
    >>> [round(s.step(loss), 6) for loss in [1.0, 0.8, 0.81, 0.8, 0.9, 0.7]]
    [0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    """

    def __init__(self, optimizer: Any = None, *, factor: float = 0.1, patience: int = 3, min_delta: float = 0.0,
                 mode: str = "min", cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8,
                 lr0: float | None = None) -> None:
        name = "ReduceLROnPlateau"
        groups = _groups(optimizer)
        if lr0 is None:
            if optimizer is None:
                raise ValueError(f"{name}: give an optimizer or lr0")
            lr0 = optimizer.lr
        elif groups and len(groups) > 1:
            raise ValueError(f"{name}: the optimizer has {len(groups)} parameter groups, each starting from its "
                             "own rate; leave lr0 out (set the rates in the groups)")
        self.factor = _nonneg(name, "factor", factor)
        if self.factor >= 1:
            raise ValueError(f"{name}: factor must be < 1, got {factor!r}")
        self.patience = _count(name, "patience", patience, 1)
        self.min_delta = _nonneg(name, "min_delta", min_delta)
        self.mode = _mode(name, mode, "")
        self.cooldown = _count(name, "cooldown", cooldown, 0)
        # one rate per parameter group (each reduced on its own, as PyTorch), one for a plain optimizer
        self.lrs = [_nonneg(name, "lr0", lr0)] if groups is None else [g["lr"] for g in groups]
        mins = list(min_lr) if isinstance(min_lr, Sequence) else [min_lr] * len(self.lrs)
        if len(mins) != len(self.lrs):
            raise ValueError(f"{name}: min_lr has {len(mins)} entries for {len(self.lrs)} parameter groups")
        self.min_lrs = [_nonneg(name, f"min_lr[{k}]", m) for k, m in enumerate(mins)]
        self.eps = _nonneg(name, "eps", eps)
        self.optimizer = optimizer
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_left = 0
        self.epoch = 0
        self._apply()

    @property
    def lr(self) -> float:
        """The learning rate (of the first parameter group)."""
        return self.lrs[0]

    def _apply(self) -> None:
        groups = _groups(self.optimizer)
        if groups is not None:
            for group, lr in zip(groups, self.lrs, strict=True):
                group["lr"] = lr
        elif self.optimizer is not None:
            self.optimizer.lr = self.lr

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
            for k, (lr, min_lr) in enumerate(zip(self.lrs, self.min_lrs, strict=True)):
                new_lr = max(lr * self.factor, min_lr)
                if lr - new_lr > self.eps:
                    self.lrs[k] = new_lr
            self.cooldown_left = self.cooldown
            self.wait = 0
        self._apply()
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
