"""Optimizers: SGD (two momentum forms), AdaGrad, AdaDelta, RMSprop, Adam/AMSGrad, AdamW, AdaMax, NAdam, RAdam;
and L-BFGS, which steps with a closure.

An optimizer updates any parameter object with ``.data`` (a NumPy array, changed IN PLACE so every reference a
module holds stays valid, or a float, as on the scalar ``Value``) from its ``.grad`` (None = skip it).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import numbers
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from . import fast
from .ops import DomainError
from .validation import integer as _count
from .validation import nonnegative as _nonneg
from .validation import positive as _positive
from .validation import unit_interval as _unit

__all__ = [
    "Optimizer", "SGD", "AdaGrad", "AdaDelta", "RMSprop", "Adam", "AdamW", "AdaMax", "NAdam", "RAdam", "LBFGS",
    "clip_grad_norm", "clip_grad_value", "global_grad_norm",
]

def _where(i: int, p: Any) -> str:
    label = getattr(p, "label", None)
    return f"parameter {i} ({label!r})" if label else f"parameter {i}"


def _check_parameter(name: str, i: int, p: Any) -> None:
    if not hasattr(p, "data") or not hasattr(p, "grad"):
        raise TypeError(f"{name}: parameter {i} ({type(p).__name__}) has no .data/.grad attributes")
    d = p.data
    if isinstance(d, np.ndarray):
        if not np.issubdtype(d.dtype, np.floating):
            raise TypeError(f"{name}: {_where(i, p)} has {d.dtype} data; a parameter needs float data")
    elif isinstance(d, bool) or not isinstance(d, numbers.Real):
        raise TypeError(f"{name}: {_where(i, p)} has data of type {type(d).__name__}; "
                        "expected a NumPy float array or a float")


def _zero_grad(params: Iterable[Any]) -> None:
    for p in params:
        reset = getattr(p, "reset_grad", None)
        if reset is not None:
            reset()
        else:
            p.grad = None


def _grads(params: Iterable[Any]) -> list[tuple[Any, np.ndarray]]:
    return [(p, np.asarray(p.grad, dtype=np.float64)) for p in params if p.grad is not None]


def _set_grad(p: Any, g: np.ndarray) -> None:
    # A float grad (scalar Value) stays a float; an array grad keeps its shape.
    # Clipping works in float64; the clipped array goes back in the gradient's own dtype (float32 stays float32).
    p.grad = float(g) if not isinstance(p.grad, np.ndarray) else g.astype(p.grad.dtype, copy=False)


def global_grad_norm(params: Iterable[Any]) -> float:
    """The Euclidean norm of all gradients taken together, sqrt(sum over params of sum g**2) (None grads skipped).

    Finite whenever the gradients are and the norm itself fits a float64: gradients so large (or so small) that
    g**2 would overflow (or underflow) are scaled by their largest |g| before squaring, the norm multiplied
    back after. inf or nan when a gradient holds one.

    >>> from microgradx import Value
    >>> a, b = Value(3.0), Value(4.0); a.grad, b.grad = 3.0, 4.0
    >>> global_grad_norm([a, b])
    5.0
    >>> a.grad, b.grad = 3e200, 4e200; round(global_grad_norm([a, b]) / 1e200, 12)
    5.0
    """
    grads = [g.ravel() for _, g in _grads(params)]
    with np.errstate(over="ignore", under="ignore"):  # an overflowing square is handled just below
        total = math.fsum(float(np.dot(g, g)) for g in grads)
    if _SQUARES_SAFE[0] <= total < _SQUARES_SAFE[1]:  # no square overflowed and underflow cannot matter
        return math.sqrt(total)
    peak = max((float(np.max(np.abs(g))) for g in grads if g.size), default=0.0)
    if peak == 0.0 or not math.isfinite(peak):
        return peak if peak == peak else math.nan
    return peak * math.sqrt(math.fsum(float(np.dot(g / peak, g / peak)) for g in grads))


# A sum of squares in this range had no square overflow and none that underflowed below 1e-290 could change it.
_SQUARES_SAFE = (1e-290, float(np.finfo(np.float64).max))


def clip_grad_norm(params: Iterable[Any], max_norm: float) -> float:
    """Scale all gradients by max_norm / ||g|| when their global norm ||g|| exceeds ``max_norm``; return ||g||.

    The direction of the whole gradient is kept (unlike clipping by value). The grads are replaced on the
    parameters, as ``torch.nn.utils.clip_grad_norm_`` does (which divides by ||g|| + 1e-6; this divides by ||g||).
    A gradient holding inf or NaN (or a norm beyond the largest float) is refused with a ``DomainError`` naming
    the parameter, and no gradient is changed.

    >>> from microgradx import Value
    >>> a, b = Value(0.0), Value(0.0); a.grad, b.grad = 3.0, 4.0
    >>> clip_grad_norm([a, b], 1.0), round(a.grad, 12), round(b.grad, 12)
    (5.0, 0.6, 0.8)
    """
    max_norm = _positive("clip_grad_norm", "max_norm", max_norm)
    params = list(params)
    total = global_grad_norm(params)
    if not math.isfinite(total):
        for i, p in enumerate(params):
            if p.grad is not None and not fast.all_finite(np.asarray(p.grad)):
                g = np.asarray(p.grad, dtype=np.float64)
                raise DomainError(f"clip_grad_norm: the gradient of {_where(i, p)} is not finite ({_first_bad(g)})",
                                  "clip_grad_norm", p.grad, getattr(p, "label", None))
        raise DomainError(f"clip_grad_norm: the gradients' norm {total} exceeds the largest float",
                          "clip_grad_norm", total)
    if total > max_norm:
        scale = max_norm / total
        for p, g in _grads(params):
            _set_grad(p, g * scale)
    return total


def clip_grad_value(params: Iterable[Any], clip_value: float) -> None:
    """Clip every gradient entry into [-clip_value, clip_value] (the grads are replaced on the parameters).

    >>> from microgradx import Value
    >>> a = Value(0.0); a.grad = -7.0
    >>> clip_grad_value([a], 2.0); a.grad
    -2.0
    """
    c = _positive("clip_grad_value", "clip_value", clip_value)
    for p, g in _grads(params):
        _set_grad(p, np.clip(g, -c, c))


class _FinishesGroups(ABCMeta):
    """Builds an optimizer's parameter groups once its whole constructor chain has run: a group's own settings
    are checked by that constructor (the one place each rule is written), so they can be filled in only after it."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        opt = super().__call__(*args, **kwargs)
        opt._finish_groups()
        return opt


class _Probe:
    """A stand-in parameter for checking a group's settings with the optimizer's own constructor."""

    def __init__(self) -> None:
        self.data, self.grad = np.zeros(1), None


# Constructor arguments that belong to the whole optimizer, not to one group.
_GLOBAL = ("self", "params", "clip_norm", "clip_value")


class Optimizer(ABC, metaclass=_FinishesGroups):
    """Base class: holds the parameters in groups, each group's hyperparameters and one state dict per parameter.

    A subclass writes only ``_update(g, theta, state) -> delta``: the change to add to the parameter, given the
    gradient ``g`` (clipped, negated for ``maximize``, with coupled L2 weight decay ``weight_decay * theta``
    already added), the current value ``theta`` and the parameter's own ``state`` (its moment buffers and its
    ``step`` count t). It reads its hyperparameters as attributes (``self.lr``, ``self.momentum``): while a group
    is stepped they hold that group's values.

    ``params``: the parameters, or parameter groups as PyTorch takes them, dicts with ``"params"`` and any
    constructor argument to override for that group (a learning rate per layer, weight decay off for biases):
    ``SGD([{"params": body, "lr": 0.1}, {"params": biases, "weight_decay": 0}], lr=0.01)``; each group's full
    settings are in ``opt.param_groups``. Options every optimizer takes: ``weight_decay`` (coupled L2:
    g <- g + weight_decay * theta, the gradient of (weight_decay / 2) ||theta||^2, Gerald's "L2 / weight decay"
    slide), ``maximize`` (ascend: g <- -g first, as PyTorch), ``clip_norm`` (clip all gradients by their global
    norm before each step) and ``clip_value`` (clip each entry; done first when both are set).
    """

    _hyper: tuple[str, ...] = ()  # names of the hyperparameters shown by repr()

    def __init__(self, params: Iterable[Any], lr: float, *, weight_decay: float = 0.0, maximize: bool = False,
                 clip_norm: float | None = None, clip_value: float | None = None) -> None:
        name = type(self).__name__
        items = list(params)
        if not items:
            raise ValueError(f"{name}: got an empty parameter list")
        self._pending = items if isinstance(items[0], Mapping) else [{"params": items}]
        self._lr_default = _nonneg(name, "lr", lr)
        self.weight_decay = _nonneg(name, "weight_decay", weight_decay)
        self.maximize = bool(maximize)
        self.clip_norm = None if clip_norm is None else _positive(name, "clip_norm", clip_norm)
        self.clip_value = None if clip_value is None else _positive(name, "clip_value", clip_value)
        self.params: list[Any] = []
        self.state: list[dict[str, Any]] = []
        self.param_groups: list[dict[str, Any]] = []
        self._stepping: dict[str, Any] | None = None

    # -- parameter groups --------------------------------------------------------------------------------------

    def _group_keys(self) -> tuple[str, ...]:
        """The hyperparameters a group may set: the constructor's arguments, less the optimizer-wide ones."""
        return tuple(k for k in inspect.signature(type(self).__init__).parameters if k not in _GLOBAL)

    def _finish_groups(self) -> None:
        keys = self._group_keys()
        missing = [k for k in keys if k != "lr" and not hasattr(self, k)]
        if missing:
            raise TypeError(f"{type(self).__name__}: the constructor arguments {missing} are not kept as attributes "
                            "of the same name, where parameter groups and the update rule read them")
        self.defaults = {k: self._lr_default if k == "lr" else getattr(self, k) for k in keys}
        pending, self._pending = self._pending, []
        for group in pending:
            self.add_param_group(group)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group of parameters, with its own settings (the others from the constructor's), as PyTorch.

        >>> from microgradx import Value
        >>> a, b = Value(1.0), Value(1.0); opt = SGD([a], lr=0.1); opt.add_param_group({"params": [b], "lr": 0.5})
        >>> a.grad = b.grad = 1.0; opt.step(); a.data, b.data
        (0.9, 0.5)
        """
        name = type(self).__name__
        k = len(self.param_groups)
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{name}: parameter group {k} must be a dict with 'params', got {type(group).__name__}")
        keys = self._group_keys()
        unknown = sorted(set(group) - {"params", *keys})
        if unknown:
            raise ValueError(f"{name}: parameter group {k} sets {unknown}, which is not among {name}'s per-group "
                             f"settings {list(keys)}")
        ps = group["params"]
        ps = [ps] if hasattr(ps, "data") and hasattr(ps, "grad") else list(ps)
        if not ps:
            raise ValueError(f"{name}: parameter group {k} has no parameters")
        seen = {id(p) for p in self.params}
        for j, p in enumerate(ps, start=len(self.params)):
            _check_parameter(name, j, p)
            if id(p) in seen:
                raise ValueError(f"{name}: {_where(j, p)} appears twice in the parameter list"
                                 + (" (in two groups)" if self.param_groups else ""))
            seen.add(id(p))
        settings = dict(self.defaults)
        overrides = {key: v for key, v in group.items() if key != "params"}
        if overrides:  # checked by the optimizer's own constructor, then read back as it stored them
            try:
                probe = type(self)([_Probe()], **{**settings, **overrides})
            except (TypeError, ValueError) as e:
                message = str(e).removeprefix(f"{name}: ")
                raise type(e)(f"{name}: parameter group {k}: {message}") from None
            settings = {key: probe.defaults[key] for key in keys}
        self.param_groups.append({"params": ps, **settings})
        self.params.extend(ps)
        self.state.extend({} for _ in ps)

    def _bind(self, settings: Mapping[str, Any]) -> None:
        # The rules read self.momentum, self.betas, ...: the settings of the group being stepped.
        for key, v in settings.items():
            if key not in ("params", "lr"):
                setattr(self, key, v)

    @property
    def lr(self) -> float:
        """The learning rate: the first group's (while a group is stepped, that group's); setting it sets every
        group's (schedules scale each group's own rate: ``param_groups[k]["lr"]``)."""
        return self._stepping["lr"] if self._stepping is not None else self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = _nonneg(type(self).__name__, "lr", value)
        self.defaults["lr"] = value
        for group in self.param_groups:
            group["lr"] = value

    def zero_grad(self) -> None:
        """Reset every parameter's gradient: the node's own ``reset_grad()`` when it has one, else None."""
        _zero_grad(self.params)

    def step(self) -> None:
        """Update every parameter whose ``.grad`` is not None by one step of the rule, each with its group's settings.

        Raises ``DomainError`` (naming the optimizer and the parameter) when a gradient is not finite, when a
        finite gradient is so large that a state buffer would overflow (g**2 past the dtype's largest float), or
        when the step would make a parameter non-finite (the run diverged: lower the learning rate); the
        parameter and its optimizer state are left unchanged then (docs/training.md says why this refuses
        rather than rescales).
        """
        self._clip()
        i = 0
        # NOTE: one errstate for the whole loop (entering one costs about 2 us). An overflow, 0/0 or inf - inf
        # anywhere in a rule's arithmetic raises, so a finite gradient can never leave inf or NaN in the state or
        # a zero step from an infinite denominator: _step_one turns it into a DomainError and restores the state.
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            for group in self.param_groups:
                with self._in_group(group):
                    l2 = self._coupled_l2()
                    for p in group["params"]:
                        if p.grad is not None:
                            self._step_one(i, p, self.state[i], l2)
                        i += 1

    def _clip(self) -> None:
        """Clip every gradient by value, then by norm, when the optimizer was made with ``clip_value``/``clip_norm``."""
        if self.clip_value is not None:
            clip_grad_value(self.params, self.clip_value)
        if self.clip_norm is not None:
            clip_grad_norm(self.params, self.clip_norm)

    @contextlib.contextmanager
    def _in_group(self, group: dict[str, Any]) -> Iterator[None]:
        """``group``'s settings bound as the optimizer's own while its parameters step (``lr`` reads them)."""
        self._stepping = group
        self._bind(group)
        try:
            yield
        finally:
            self._stepping = None
            self._bind(self.defaults)

    def _step_one(self, i: int, p: Any, state: dict[str, Any], l2: float) -> None:
        name = type(self).__name__
        # NOTE: an array parameter is updated in its own dtype (a float32 model keeps float32 moment buffers,
        # as PyTorch does); a float parameter (a Value) in float64.
        array = isinstance(p.data, np.ndarray)
        theta = p.data if array else np.float64(p.data)
        if array and (theta.dtype.kind != "f" or not theta.flags.writeable):  # before the rule: state unchanged
            if theta.dtype.kind != "f":  # data replaced since the optimizer was made: an int array would truncate
                raise TypeError(f"{name}.step: {_where(i, p)} has {theta.dtype} data; a parameter needs float data")
            raise ValueError(f"{name}.step: {_where(i, p)} has read-only data; an optimizer updates a parameter in "
                             "place, so give it a writable array (a copy)")
        try:
            g = np.asarray(p.grad, dtype=theta.dtype)
        except FloatingPointError:  # a float64 gradient beyond the largest float of a float32 parameter
            raise DomainError(f"{name}.step: the gradient of {_where(i, p)} (largest |g| "
                              f"{_peak(np.asarray(p.grad)):.3g}) does not fit the parameter's dtype {theta.dtype}",
                              f"{name}.step", p.grad, getattr(p, "label", None)) from None
        if g.shape != theta.shape:
            raise ValueError(f"{name}.step: {_where(i, p)} has data of shape {theta.shape} "
                             f"but a gradient of shape {g.shape}")
        # NOTE: the gradient is checked before the rule runs, so a refused step leaves the state untouched. The
        # fast path bounds |g| with one dot product (a finite bound proves g finite); the scan decides otherwise.
        g_bound = fast.max_abs_bound(g) if fast.ENABLED and array else math.inf
        if not (g_bound < math.inf or fast.all_finite(g)):
            raise DomainError(f"{name}.step: the gradient of {_where(i, p)} is not finite "
                              f"({_first_bad(g)})", f"{name}.step", p.grad, getattr(p, "label", None))
        # NOTE: every rule REPLACES its buffers (never writes into them), so this shallow copy restores the
        # state exactly when the step is refused below.
        before = dict(state)
        try:
            delta = self._delta(g, theta, l2, state)
            if array and fast.ENABLED and fast.add_in_place_if_finite(theta, delta, self._delta_bound(g_bound, theta)):
                return
            new = theta + delta
            _check_finite(new, state)
        except FloatingPointError as e:
            # The step's arithmetic overflowed (or made 0/0, inf - inf) although the gradient is finite.
            state.clear()
            state.update(before)
            raise DomainError(f"{name}.step: {_where(i, p)} would become non-finite at step "
                              f"{before.get('step', 0) + 1} (lr={self.lr:g}, largest |g| {_peak(g):.3g}: {e} in "
                              f"{theta.dtype}): the run diverged; the parameter and the optimizer state are left "
                              "unchanged: clip the gradients (clip_norm=...) or lower the learning rate",
                              f"{name}.step", p.grad, getattr(p, "label", None)) from None
        if array:
            p.data[...] = new
        else:
            p.data = float(new)

    def _delta(self, g: np.ndarray, theta: np.ndarray, l2: float, state: dict[str, Any]) -> np.ndarray:
        # Runs under errstate(over/invalid/divide="raise"): any non-finite number raises FloatingPointError.
        if self.maximize:  # ascend: as PyTorch, the gradient is negated before weight decay is added
            g = -g
        if l2:
            g = g + l2 * theta
        if not state:
            state.update(self._init_state(theta))
            state["step"] = 0
        state["step"] += 1
        return self._update(g, theta, state)

    def _delta_bound(self, g_bound: float, theta: np.ndarray) -> float | None:
        """A bound on every |delta_i| of the last ``_update`` known without a pass over delta, or None.

        ``g_bound`` bounds the |g_i| the rule saw (before coupled weight decay was added)."""
        return None

    def _coupled_l2(self) -> float:
        return self.weight_decay

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        return {}

    @abstractmethod
    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        """The change to add to the parameter, from gradient ``g`` (each optimizer's update rule)."""

    # -- saving and restoring ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A deep copy of the optimizer's state: its type, settings, parameter groups (each group's settings and
        its parameters' positions) and per-parameter buffers.

        >>> from microgradx import Value
        >>> w = Value(1.0); opt = SGD([w], lr=0.1, momentum=0.9); w.grad = 2.0; opt.step()
        >>> opt.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["param_groups"][0]["params"]
        (array(2.), [0])
        """
        hyper = {**self.defaults, "clip_norm": self.clip_norm, "clip_value": self.clip_value}
        groups, i = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": list(range(i, i + n))})
            i += n
        return {"optimizer": type(self).__name__, "lr": self.lr, "hyper": copy.deepcopy(hyper),
                "param_groups": copy.deepcopy(groups), "state": copy.deepcopy(self.state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned (same optimizer type, same groups, parameter count and shapes).

        >>> from microgradx import Value
        >>> w = Value(1.0); opt = Adam([w], lr=0.1); w.grad = 2.0; opt.step()
        >>> saved = opt.state_dict(); other = Adam([Value(0.0)], lr=0.5); other.load_state_dict(saved)
        >>> other.lr, other.state[0]["step"]
        (0.1, 1)
        """
        name = type(self).__name__
        if state_dict.get("optimizer") != name:
            raise ValueError(f"{name}.load_state_dict: the state belongs to {state_dict.get('optimizer')!r}")
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(f"{name}.load_state_dict: the state has {len(states)} parameters, "
                             f"this optimizer has {len(self.params)}")
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in groups]
        if sizes != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"{name}.load_state_dict: the state's parameter groups hold {sizes} parameters, this "
                             f"optimizer's hold {[len(g['params']) for g in self.param_groups]}")
        for i, (p, s) in enumerate(zip(self.params, states, strict=True)):
            for key, buf in s.items():
                if isinstance(buf, np.ndarray) and buf.shape != np.shape(p.data):
                    raise ValueError(f"{name}.load_state_dict: buffer {key!r} of {_where(i, p)} has shape "
                                     f"{buf.shape}, the parameter has shape {np.shape(p.data)}")
                if isinstance(buf, np.ndarray | float) and not np.all(np.isfinite(buf)):
                    raise ValueError(f"{name}.load_state_dict: buffer {key!r} of {_where(i, p)} holds non-finite "
                                     "values")
        hyper = copy.deepcopy(state_dict["hyper"])
        self.clip_norm, self.clip_value = hyper.pop("clip_norm"), hyper.pop("clip_value")
        self.defaults = hyper
        self._bind(hyper)
        for group, saved in zip(self.param_groups, copy.deepcopy(groups), strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = copy.deepcopy(list(states))

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        extra = f", weight_decay={self.weight_decay!r}" if self.weight_decay else ""
        groups = f", {len(self.param_groups)} groups" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}({len(self.params)} parameters{groups}, lr={self.lr!r}" \
               f"{', ' if hyper else ''}{hyper}{extra})"


def _peak(g: np.ndarray) -> float:
    return float(np.max(np.abs(g))) if g.size else 0.0


def _first_bad(g: np.ndarray) -> str:
    where, bad = fast.first_nonfinite(g)
    return f"{bad!r} at index {where}" if g.ndim else f"{bad!r}"


def _check_finite(new: np.ndarray, state: dict[str, Any]) -> None:
    """Raise FloatingPointError when the new parameter value or a state buffer holds inf or NaN."""
    for what, value in (("the new value", new), *state.items()):
        if isinstance(value, np.ndarray | float) and not fast.all_finite(np.asarray(value)):
            raise FloatingPointError(f"{what} is not finite")


class SGD(Optimizer):
    """Stochastic gradient descent, plain or with momentum in either of the two forms the course uses.

    ``momentum_form="pytorch"`` (Gerald's lecture, Polyak momentum as PyTorch implements it): the buffer holds a sum of
    gradients and the learning rate multiplies it at each step,
        b <- mu * b + (1 - dampening) * g   (b <- g at the first step),   theta <- theta - lr * b,
    and with ``nesterov``: theta <- theta - lr * (g + mu * b).

    ``momentum_form="velocity"`` (the Unit 1 lecture, and Slettevold's Delta W): the velocity holds past steps already
    scaled by the learning rate,
        V <- beta * V - lr * g,   theta <- theta + V,
    and with ``nesterov`` (Unit 1 lecture: the gradient taken at the look-ahead point theta + beta * V) the same rule
    written on the look-ahead parameters phi = theta + beta * V, so the gradient is the one at the current
    parameters: V <- beta * V - lr * g(phi),  phi <- phi + beta * V - lr * g(phi).

    With a constant learning rate the two forms give the same iterates (V = -lr * b); they differ when the
    learning rate changes during training: the velocity keeps steps taken at the old rate.

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = SGD([w], lr=0.1)
    >>> w.grad = 2.0; opt.step(); w.data
    0.8
    """

    _hyper = ("momentum", "dampening", "nesterov", "momentum_form")

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, *, dampening: float = 0.0, momentum_form: str = "pytorch",
                 maximize: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, maximize=maximize, clip_norm=clip_norm,
                         clip_value=clip_value)
        self.momentum = _unit("SGD", "momentum", momentum)
        self.dampening = _unit("SGD", "dampening", dampening)
        if momentum_form not in ("pytorch", "velocity"):
            raise ValueError(f"SGD: momentum_form must be 'pytorch' or 'velocity', got {momentum_form!r}")
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        if momentum_form == "velocity" and self.dampening != 0:
            raise ValueError("SGD: dampening belongs to the 'pytorch' momentum form")
        self.nesterov = bool(nesterov)
        self.momentum_form = momentum_form

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        if self.momentum == 0:
            return {}
        if self.momentum_form == "velocity":
            return {"velocity": np.zeros_like(theta)}
        return {"momentum_buffer": None}

    def _delta_bound(self, g_bound: float, theta: np.ndarray) -> float | None:
        # Plain SGD's delta is -lr * g, so lr bounds it by |g|'s bound (the fast path then skips a pass over delta).
        if self.momentum or self.weight_decay:
            return None
        return fast.scaled_bound(self.lr, g_bound, theta.dtype)

    def step(self) -> None:
        """``Optimizer.step``; plain SGD (no momentum, weight decay or maximize) runs its fast twin.

        The twin is one loop of ``fast.sgd_step`` over the parameters, without the per-group binding and the
        floating-point error context, which cost more than the update itself for a small model; a parameter
        whose step it cannot prove finite (or a float parameter) takes the reference step, which refuses.
        """
        if not fast.ENABLED:
            return super().step()
        groups = self.param_groups
        for group in groups:  # NOTE: momentum, weight decay and maximize are per-group settings
            if group["momentum"] or group["weight_decay"] or group["maximize"]:
                return super().step()
        self._clip()
        sgd_step, states, i = fast.sgd_step, self.state, 0
        # NOTE: a step the kernel cannot prove finite (its multiply or dot overflowed) goes to the reference step,
        # which refuses it with its DomainError: NumPy's warning would only be noise printed before it.
        with np.errstate(over="ignore", invalid="ignore"):
            for group in groups:
                lr = group["lr"]
                for p in group["params"]:
                    bound = getattr(p, "_grad_bound", None)  # read first: reading .grad forgets it
                    g = p.grad
                    if g is not None:
                        if sgd_step(p.data, g, lr, bound):
                            state = states[i]
                            state["step"] = state.get("step", 0) + 1
                        else:
                            self._reference_step(i, p, group)
                    i += 1

    def _reference_step(self, i: int, p: Any, group: dict[str, Any]) -> None:
        """The reference step of one parameter of ``group``, under ``step``'s error context and group binding."""
        with np.errstate(over="raise", invalid="raise", divide="raise"), self._in_group(group):
            self._step_one(i, p, self.state[i], 0.0)

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        mu, lr = self.momentum, self.lr
        if mu == 0:
            return -lr * g
        if self.momentum_form == "velocity":
            v = state["velocity"] = mu * state["velocity"] - lr * g
            return mu * v - lr * g if self.nesterov else v
        b = state["momentum_buffer"]
        b = state["momentum_buffer"] = np.copy(g) if b is None else mu * b + (1 - self.dampening) * g
        return -lr * (g + mu * b) if self.nesterov else -lr * b


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011; Blain, Gerald, Unit 1 lecture): G <- G + g**2; theta -= lr g / (sqrt G + eps).

    NOTE: eps sits outside the square root, as in Blain's report and PyTorch; the Unit 1 lecture writes sqrt(G + eps).
    As PyTorch: ``lr_decay`` lowers the rate at step t to lr / (1 + (t - 1) lr_decay), and G starts at
    ``initial_accumulator_value``.

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = AdaGrad([w], lr=0.5); w.grad = 2.0; opt.step(); round(w.data, 9)
    0.5
    """

    _hyper = ("eps", "lr_decay", "initial_accumulator_value")

    def __init__(self, params: Iterable[Any], lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0,
                 *, lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, maximize: bool = False,
                 clip_norm: float | None = None, clip_value: float | None = None) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, maximize=maximize, clip_norm=clip_norm,
                         clip_value=clip_value)
        self.eps = _nonneg("AdaGrad", "eps", eps)
        self.lr_decay = _nonneg("AdaGrad", "lr_decay", lr_decay)
        self.initial_accumulator_value = _nonneg("AdaGrad", "initial_accumulator_value", initial_accumulator_value)

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        return {"sum_sq": np.full_like(theta, self.initial_accumulator_value)}

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        G = state["sum_sq"] = state["sum_sq"] + g * g
        lr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        return -lr * g / (np.sqrt(G) + self.eps)


class AdaDelta(Optimizer):
    """AdaDelta (Zeiler 2012; Gerald): running averages of g**2 and of the steps themselves set each step size.

        E[g2] <- rho E[g2] + (1 - rho) g**2,   dx = sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) * g,
        E[dx2] <- rho E[dx2] + (1 - rho) dx**2,   theta <- theta - lr * dx      (lr = 1 in Zeiler's paper)

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = AdaDelta([w]); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.996838
    """

    _hyper = ("rho", "eps")

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, maximize=maximize, clip_norm=clip_norm,
                         clip_value=clip_value)
        self.rho = _unit("AdaDelta", "rho", rho)
        self.eps = _positive("AdaDelta", "eps", eps)

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        return {"square_avg": np.zeros_like(theta), "acc_delta": np.zeros_like(theta)}

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        rho, eps = self.rho, self.eps
        v = state["square_avg"] = rho * state["square_avg"] + (1 - rho) * g * g
        dx = np.sqrt(state["acc_delta"] + eps) / np.sqrt(v + eps) * g
        state["acc_delta"] = rho * state["acc_delta"] + (1 - rho) * dx * dx
        return -self.lr * dx


class RMSprop(Optimizer):
    """RMSprop (the Unit 1 lecture): v <- alpha v + (1 - alpha) g**2,  theta <- theta - lr * g / (sqrt(v) + eps).

    ``centered`` divides by sqrt(v - gbar**2) + eps instead, gbar the running mean of g; ``momentum`` mu
    keeps a buffer b <- mu b + g / denominator and steps theta <- theta - lr * b (as PyTorch).
    NOTE: eps outside the square root, as PyTorch; the Unit 1 lecture writes sqrt(v + eps).

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = RMSprop([w], lr=0.01); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.9
    """

    _hyper = ("alpha", "eps", "momentum", "centered")

    def __init__(self, params: Iterable[Any], lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, maximize=maximize, clip_norm=clip_norm,
                         clip_value=clip_value)
        self.alpha = _unit("RMSprop", "alpha", alpha)
        self.eps = _nonneg("RMSprop", "eps", eps)
        self.momentum = _unit("RMSprop", "momentum", momentum)
        self.centered = bool(centered)

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        state = {"square_avg": np.zeros_like(theta)}
        if self.centered:
            state["grad_avg"] = np.zeros_like(theta)
        if self.momentum:
            state["momentum_buffer"] = np.zeros_like(theta)
        return state

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        a = self.alpha
        v = state["square_avg"] = a * state["square_avg"] + (1 - a) * g * g
        if self.centered:
            gbar = state["grad_avg"] = a * state["grad_avg"] + (1 - a) * g
            v = v - gbar * gbar
        denom = np.sqrt(v) + self.eps
        if self.momentum:
            b = state["momentum_buffer"] = self.momentum * state["momentum_buffer"] + g / denom
            return -self.lr * b
        return -self.lr * g / denom


class _Moments(Optimizer):
    """Shared by the Adam family: betas, eps and the two moment buffers m (of g) and v (of g**2)."""

    _hyper = ("betas", "eps")

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, clip_norm: float | None, clip_value: float | None, maximize: bool) -> None:
        super().__init__(params, lr, weight_decay=weight_decay, maximize=maximize, clip_norm=clip_norm,
                         clip_value=clip_value)
        name = type(self).__name__
        b1, b2 = betas
        self.betas = (_unit(name, "beta1", b1), _unit(name, "beta2", b2))
        self.eps = _nonneg(name, "eps", eps)

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        return {"exp_avg": np.zeros_like(theta), "exp_avg_sq": np.zeros_like(theta)}

    def _moments(self, g: np.ndarray, state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        b1, b2 = self.betas
        m = state["exp_avg"] = b1 * state["exp_avg"] + (1 - b1) * g
        v = state["exp_avg_sq"] = b2 * state["exp_avg_sq"] + (1 - b2) * g * g
        return m, v


class Adam(_Moments):
    """Adam (Kingma & Ba 2015; Blain, Slettevold, Gerald, Unit 1 lecture), bias corrected:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g**2,   m_hat = m / (1 - b1**t),   v_hat = v / (1 - b2**t),
        theta <- theta - lr * m_hat / (sqrt(v_hat) + eps)

    (Slettevold's Algorithm 8; the Unit 1 lecture writes sqrt(v + eps) without the hat, Blain sqrt(v_hat + eps)).
    ``amsgrad`` (Reddi et al. 2018) divides by the running maximum instead: v_max <- max(v_max, v), and
    v_hat = v_max / (1 - b2**t). ``decoupled_weight_decay=True`` is AdamW (see ``AdamW``).

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = Adam([w], lr=0.1); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.9
    """

    _hyper = ("betas", "eps", "amsgrad", "decoupled_weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 decoupled_weight_decay: bool = False, maximize: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, clip_norm, clip_value, maximize)
        self.amsgrad = bool(amsgrad)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def _coupled_l2(self) -> float:
        return 0.0 if self.decoupled_weight_decay else self.weight_decay

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        state = super()._init_state(theta)
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(theta)
        return state

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        b1, b2 = self.betas
        t = state["step"]
        m, v = self._moments(g, state)
        if self.amsgrad:
            v = state["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], v)
        # NOTE: sqrt(v_hat) as sqrt(v) / sqrt(1 - b2**t) (as PyTorch): v / (1 - b2**t) can overflow where v fits.
        delta = -self.lr * (m / (1 - b1 ** t)) / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps)
        if self.decoupled_weight_decay:
            delta = delta - self.lr * self.weight_decay * theta
        return delta


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam with weight decay taken out of the gradient (Gerald: "weight decay
    is not equivalent to L2 when using adaptive learning rates"):

        theta <- theta - lr * weight_decay * theta - lr * m_hat / (sqrt(v_hat) + eps)

    so the decay is not divided by sqrt(v_hat) as a coupled L2 term would be. Default weight_decay 0.01.

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = AdamW([w], lr=0.1, weight_decay=0.5); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.85
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False, *,
                 maximize: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True,
                         maximize=maximize, clip_norm=clip_norm, clip_value=clip_value)


class AdaMax(_Moments):
    """AdaMax (Kingma & Ba 2015, section 7; Gerald's lecture): Adam with the infinity norm in place of v.

        m <- b1 m + (1 - b1) g,   u <- max(b2 u, |g| + eps),   theta <- theta - lr / (1 - b1**t) * m / u

    (eps inside the max, as PyTorch, keeps u > 0 when g = 0.)

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = AdaMax([w], lr=0.1); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.9
    """

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False,
                 clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, clip_norm, clip_value, maximize)

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        return {"exp_avg": np.zeros_like(theta), "exp_inf": np.zeros_like(theta)}

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        b1, b2 = self.betas
        m = state["exp_avg"] = b1 * state["exp_avg"] + (1 - b1) * g
        u = state["exp_inf"] = np.maximum(b2 * state["exp_inf"], np.abs(g) + self.eps)
        return -self.lr / (1 - b1 ** state["step"]) * m / u


class NAdam(_Moments):
    """NAdam (Dozat 2016; Gerald's lecture): Adam with Nesterov momentum and a momentum schedule mu_t, as PyTorch:

        mu_t = b1 (1 - 0.5 * 0.96**(t psi)),   P_t = mu_1 mu_2 ... mu_t   (psi = momentum_decay),
        m, v as Adam,   d = sqrt(v / (1 - b2**t)) + eps,
        theta <- theta - lr (1 - mu_t) / (1 - P_t) * g / d - lr mu_{t+1} / (1 - P_t mu_{t+1}) * m / d

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = NAdam([w], lr=0.1); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.894355
    """

    _hyper = ("betas", "eps", "momentum_decay")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3, *,
                 maximize: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, clip_norm, clip_value, maximize)
        self.momentum_decay = _nonneg("NAdam", "momentum_decay", momentum_decay)

    def _init_state(self, theta: np.ndarray) -> dict[str, Any]:
        return {**super()._init_state(theta), "mu_product": 1.0}

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        b1, b2 = self.betas
        t, psi = state["step"], self.momentum_decay
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = state["mu_product"] = state["mu_product"] * mu
        m, v = self._moments(g, state)
        d = np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps  # not sqrt(v / ...): that quotient can overflow
        return -self.lr * (1 - mu) / (1 - prod) * g / d - self.lr * mu_next / (1 - prod * mu_next) * m / d


class RAdam(_Moments):
    """RAdam (Liu et al. 2019; Gerald's lecture): Adam whose adaptive step is switched on, and rectified, only once the
    variance of the adaptive rate is tractable:

        rho_inf = 2 / (1 - b2) - 1,   rho_t = rho_inf - 2 t b2**t / (1 - b2**t),   m_hat = m / (1 - b1**t)
        if rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)),
                       theta <- theta - lr * m_hat * r * sqrt(1 - b2**t) / (sqrt(v) + eps)
        else:          theta <- theta - lr * m_hat          (plain momentum SGD for the first steps)

    >>> from microgradx import Value
    >>> w = Value(1.0); opt = RAdam([w], lr=0.1); w.grad = 2.0; opt.step(); round(w.data, 6)
    0.8
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False,
                 clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, clip_norm, clip_value, maximize)

    def _update(self, g: np.ndarray, theta: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        b1, b2 = self.betas
        t = state["step"]
        m, v = self._moments(g, state)
        m_hat = m / (1 - b1 ** t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t <= 5:
            return -self.lr * m_hat
        r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return -self.lr * m_hat * r * math.sqrt(1 - b2 ** t) / (np.sqrt(v) + self.eps)


# ---------------------------------------------------------------------------------------------------------
# L-BFGS: a quasi-Newton method on the whole parameter vector, with an optional strong-Wolfe line search
# ---------------------------------------------------------------------------------------------------------

def _cubic_minimum(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                   bounds: tuple[float, float] | None = None) -> float:
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped to ``bounds``
    (default: between x1 and x2); the midpoint when the cubic has no minimum (Nocedal & Wright, eq. 3.59)."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        t = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        t = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(t, lo), hi)


def _strong_wolfe(evaluate: Callable[[float], tuple[float, np.ndarray]], t: float, d: np.ndarray, f: float,
                  g: np.ndarray, gtd: float, c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                  max_ls: int = 25) -> tuple[float, np.ndarray, float, int]:
    """A step t along d meeting the strong Wolfe conditions (Nocedal & Wright, Algorithms 3.5 and 3.6, as
    PyTorch's ``line_search_fn="strong_wolfe"``): sufficient decrease f(t) <= f + c1 t g.d and a flat enough slope
    |g(t).d| <= c2 |g.d|. The exact line search asks for the minimiser of f(t); these two conditions accept any
    step close enough to it, found by bracketing and cubic interpolation. Returns (f(t), g(t), t, evaluations)."""
    d_norm = float(np.max(np.abs(d)))
    f_new, g_new = evaluate(t)
    evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    # Phase 1: grow t until a step brackets an acceptable one (or is acceptable itself).
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], \
                [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], \
                [gtd_prev, gtd_new]
            break
        # extrapolate: the cubic's minimiser, at least a little and at most ten times beyond t
        t_next = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
    # Phase 2 ("zoom"): shrink the bracket [low, high] around an acceptable step by cubic interpolation.
    insufficient = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # NOTE: a trial too close to an end of the bracket makes little progress: move it 10% inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = \
                    bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals


class LBFGS:
    """L-BFGS (Nocedal & Wright, Algorithm 7.4, as ``torch.optim.LBFGS``): a quasi-Newton method that builds an
    estimate of the inverse Hessian from the last ``history_size`` steps s and gradient changes y, and moves
    along d = -H g.

    ``step(closure)`` runs up to ``max_iter`` iterations (at most ``max_eval`` evaluations); ``closure()`` must
    zero the gradients, compute the loss, call ``backward()`` and return the loss. Without a line search each
    iteration moves by ``lr`` * d (the first by min(1, 1/|g|_1) * lr); ``line_search_fn="strong_wolfe"`` picks
    the step by a line search, the inexact, practical form of Slettevold's exact line search (Example 1). It
    stops when max |g| <= ``tolerance_grad``, or a step or the loss changes by less than ``tolerance_change``.
    One group of parameters (as PyTorch); a non-finite loss or gradient is refused with a ``DomainError`` and
    the parameters are put back where the step started.

    >>> from microgradx import Value
    >>> x1, x2 = Value(0.0), Value(0.0)
    >>> def closure():  # Slettevold's Example 1: f = x1^2 + 2 x2^2 - 2 x1 x2 - 2 x2, minimum at (1, 1)
    ...     x1.grad = x2.grad = 0.0
    ...     f = x1 * x1 + 2 * x2 * x2 - 2 * x1 * x2 - 2 * x2; f.backward(); return f
    >>> opt = LBFGS([x1, x2], line_search_fn="strong_wolfe"); _ = opt.step(closure)
    >>> round(x1.data, 12), round(x2.data, 12)
    (1.0, 1.0)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        name = "LBFGS"
        items = list(params)
        if items and isinstance(items[0], Mapping):
            if len(items) != 1:
                raise ValueError(f"{name}: takes one parameter group (as PyTorch), got {len(items)}")
            rest = sorted(set(items[0]) - {"params"})
            if rest:
                raise ValueError(f"{name}: set {rest} as constructor arguments: there is only one group")
            ps = items[0]["params"]
            items = [ps] if hasattr(ps, "data") and hasattr(ps, "grad") else list(ps)
        if not items:
            raise ValueError(f"{name}: got an empty parameter list")
        seen: set[int] = set()
        for i, p in enumerate(items):
            _check_parameter(name, i, p)
            if id(p) in seen:
                raise ValueError(f"{name}: {_where(i, p)} appears twice in the parameter list")
            seen.add(id(p))
        self.params = items
        max_iter = _count(name, "max_iter", max_iter, 1)
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"{name}: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        self.param_groups = [{
            "params": items, "lr": _nonneg(name, "lr", lr), "max_iter": max_iter,
            "max_eval": max_iter * 5 // 4 if max_eval is None else _count(name, "max_eval", max_eval, 1),
            "tolerance_grad": _nonneg(name, "tolerance_grad", tolerance_grad),
            "tolerance_change": _nonneg(name, "tolerance_change", tolerance_change),
            "history_size": _count(name, "history_size", history_size, 1), "line_search_fn": line_search_fn}]
        self.state: dict[str, Any] = {"func_evals": 0, "n_iter": 0}

    @property
    def lr(self) -> float:
        """The learning rate (the step along d without a line search, the first trial step with one)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.param_groups[0]["lr"] = _nonneg("LBFGS", "lr", value)

    def zero_grad(self) -> None:
        """Reset every parameter's gradient: the node's own ``reset_grad()`` when it has one, else None."""
        _zero_grad(self.params)

    # -- the parameters as one flat vector ---------------------------------------------------------------------

    def _flat_grad(self) -> np.ndarray:
        parts = []
        for i, p in enumerate(self.params):
            g = np.zeros(np.size(p.data)) if p.grad is None else np.asarray(p.grad, dtype=np.float64).ravel()
            if g.size != np.size(p.data):
                raise ValueError(f"LBFGS.step: {_where(i, p)} has {np.size(p.data)} entries but a gradient of "
                                 f"{g.size}")
            if not fast.all_finite(g):
                raise DomainError(f"LBFGS.step: the gradient of {_where(i, p)} is not finite ({_first_bad(g)}); "
                                  "the parameters are left where the step started", "LBFGS.step", p.grad,
                                  getattr(p, "label", None))
            parts.append(g)
        return np.concatenate(parts)

    def _values(self) -> list[Any]:
        return [np.array(p.data, copy=True) if isinstance(p.data, np.ndarray) else p.data for p in self.params]

    def _set(self, values: list[Any]) -> None:
        for p, v in zip(self.params, values, strict=True):
            if isinstance(p.data, np.ndarray):
                p.data[...] = v
            else:
                p.data = v

    def _move(self, t: float, d: np.ndarray) -> None:
        """theta <- theta + t * d, on every parameter in place."""
        offset = 0
        for p in self.params:
            n = np.size(p.data)
            step = t * d[offset:offset + n]
            if isinstance(p.data, np.ndarray):
                p.data[...] = p.data + step.reshape(p.data.shape).astype(p.data.dtype)
            else:
                p.data = float(p.data + step[0])
            offset += n

    def _loss(self, closure: Callable[[], Any]) -> float:
        out = closure()
        value = out.item() if hasattr(out, "item") else out
        try:
            value = float(value.data if hasattr(value, "data") else value)
        except (TypeError, ValueError):
            raise TypeError(f"LBFGS.step: the closure must return the loss, got {type(out).__name__}") from None
        if not math.isfinite(value):
            raise DomainError(f"LBFGS.step: the loss is {value} at the point tried; the parameters are left where "
                              "the step started: lower lr or use line_search_fn='strong_wolfe'", "LBFGS.step", value)
        return value

    def _try(self, closure: Callable[[], Any], x0: list[Any], d: np.ndarray, t: float) -> tuple[float, np.ndarray]:
        """The loss and gradient at x0 + t d; the parameters are put back at x0 afterwards."""
        self._move(t, d)
        f, g = self._loss(closure), self._flat_grad()
        self._set(x0)
        return f, g

    def step(self, closure: Callable[[], Any]) -> float:
        """Run up to ``max_iter`` L-BFGS iterations; ``closure()`` recomputes the loss and the gradients and returns
        the loss. Returns the loss at the start of the step."""
        if not callable(closure):
            raise TypeError("LBFGS.step needs a closure: a function that zeroes the gradients, computes the loss, "
                            "calls backward() and returns the loss (L-BFGS evaluates it several times per step)")
        start, saved = self._values(), copy.deepcopy(self.state)
        try:
            return self._iterate(closure)
        except DomainError:
            self._set(start)
            self.state = saved
            raise

    def _iterate(self, closure: Callable[[], Any]) -> float:
        group, state = self.param_groups[0], self.state
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]

        orig_loss = loss = self._loss(closure)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if np.max(np.abs(flat_grad)) <= tolerance_grad:  # already optimal
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:  # the first direction is steepest descent
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                # remember the step s and the gradient change y (only when y.s > 0 keeps H positive definite)
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                # the two-loop recursion: d = -H g with H the L-BFGS inverse-Hessian estimate
                al = state.setdefault("al", [0.0] * history_size)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            t = min(1.0, 1.0 / float(np.sum(np.abs(flat_grad)))) * lr if state["n_iter"] == 1 else lr
            gtd = float(flat_grad @ d)  # the slope along d
            if gtd > -tolerance_change:  # d is not a descent direction any more
                break
            evals = 0
            if group["line_search_fn"] == "strong_wolfe":
                evaluate = functools.partial(self._try, closure, self._values(), d)
                loss, flat_grad, t, evals = _strong_wolfe(evaluate, t, d, loss, flat_grad, gtd,
                                                          max_ls=max_eval - current_evals)
                self._move(t, d)
                opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
            else:
                self._move(t, d)
                opt_cond = False
                if n_iter != max_iter:  # the last iteration's loss is left to the next step
                    loss = self._loss(closure)
                    flat_grad = self._flat_grad()
                    opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
                    evals = 1
            current_evals += evals
            state["func_evals"] += evals
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.max(np.abs(d * t)) <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break
        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    def state_dict(self) -> dict[str, Any]:
        """A deep copy of the settings and the curvature history (``load_state_dict`` restores it)."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"optimizer": "LBFGS", "param_groups": [copy.deepcopy(group)], "state": copy.deepcopy(self.state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned, for parameters of the same total size."""
        if state_dict.get("optimizer") != "LBFGS":
            raise ValueError(f"LBFGS.load_state_dict: the state belongs to {state_dict.get('optimizer')!r}")
        size = sum(np.size(p.data) for p in self.params)
        d = state_dict["state"].get("d")
        if d is not None and np.size(d) != size:
            raise ValueError(f"LBFGS.load_state_dict: the state is for {np.size(d)} entries, these parameters have "
                             f"{size}")
        self.param_groups[0].update(copy.deepcopy(state_dict["param_groups"][0]))
        self.state = copy.deepcopy(state_dict["state"])

    def __repr__(self) -> str:
        g = self.param_groups[0]
        return (f"LBFGS({len(self.params)} parameters, lr={g['lr']!r}, max_iter={g['max_iter']}, "
                f"history_size={g['history_size']}, line_search_fn={g['line_search_fn']!r})")
