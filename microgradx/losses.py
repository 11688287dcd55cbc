"""Loss functions on Tensors: cross-entropy fused with softmax, NLL, KL divergence, binary cross-entropy with
logits, MSE, MAE, smooth L1 and Huber, each with PyTorch's ``reduction="mean" | "sum" | "none"``.

Cross-entropy is one fused node (its gradient is the Unit 1 lecture's o - y, generalised below to class weights,
ignored targets, label smoothing and probability targets); the others are compositions of op-table rows, so
they need no derivative of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import fast
from .ops import MicrogradxError
from .tensor import Kernel, ShapeError, Tensor, as_tensor, deftensorop, node, where

# The losses by name (what ``fit(loss="...")`` accepts).
LOSSES = ("cross_entropy", "nll_loss", "kl_div", "binary_cross_entropy_with_logits", "mse", "mae", "smooth_l1",
          "huber")
__all__ = [*LOSSES, "LOSSES", "LossError", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")
_UNSIGNED = {np.dtype(f"i{k}"): np.dtype(f"u{k}") for k in (1, 2, 4, 8)}
_LARGEST = {t: int(np.iinfo(t).max) for t in _UNSIGNED}  # each signed label dtype's largest label (iinfo is slow)


class LossError(MicrogradxError, ValueError):
    """A loss was given values it cannot use (all targets ignored, a bad weight, targets that are not
    probabilities); the message names the loss and the value."""


def _reduction(name: str, reduction: str, allowed: Sequence[str] = REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


def _reduce(name: str, per: Tensor, reduction: str) -> Tensor:
    """The per-element losses ``per`` reduced as PyTorch does: their mean, their sum, or themselves."""
    reduction = _reduction(name, reduction)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


# ---------------------------------------------------------------------------------------------------------
# Cross-entropy and NLL: one target distribution q per position
# ---------------------------------------------------------------------------------------------------------
#
# Every option of PyTorch's cross-entropy is one rule: at each position (a row, or a pixel of an (N, C, d1, ...)
# input) the loss is l = -sum_c q_c log softmax(z)_c for a weighted target distribution q over the C classes:
#   class index y:      q_c = w_y (1 - eps) [c == y] + w_c eps / C     (0 at an ignored position)
#   probabilities t:    q_c = w_c ((1 - eps) t_c + eps / C)
# (w the class weights, 1 by default; eps the label smoothing). Its gradient is (sum_c q_c) softmax(z) - q: with
# one-hot q this is the lecture's o - y. "mean" divides the sum by sum_n w_{y_n} over the kept positions for class
# indices (PyTorch's weighted mean), by the number of positions for probabilities.


def _class_axis(name: str, z: np.ndarray, what: str = "logits") -> int:
    if z.ndim < 2:
        raise ShapeError(f"{name}: {what} must have shape (N, C) or (N, C, d1, ...), got {z.shape}")
    c = z.shape[1]
    if c == 0:
        raise ShapeError(f"{name}: {what} of shape {z.shape} have no classes")
    return c


def _along_classes(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast along axis 1 of an (N, C, d1, ...) array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _one_hot(labels: np.ndarray, z: np.ndarray) -> np.ndarray:
    return (_along_classes(np.arange(z.shape[1]), z.ndim) == labels[:, None]).astype(z.dtype)


def _weights(name: str, weight: Any, z: np.ndarray) -> np.ndarray | None:
    if weight is None:
        return None
    w = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
    c = z.shape[1]
    if w.shape != (c,):
        raise ShapeError(f"{name}: weight of shape {w.shape} does not fit {c} classes (needs ({c},))")
    if w.dtype.kind not in "iuf" or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise LossError(f"{name}: weight must hold finite numbers >= 0, got {w.tolist()}")
    return w.astype(z.dtype)


def _class_targets(name: str, z: np.ndarray, y: np.ndarray, w: np.ndarray | None, ignore_index: int | None,
                   eps: float, reduction: str) -> tuple[np.ndarray | None, float, np.ndarray]:
    """(q, divisor of "mean", the labels in native byte order) for class-index targets; q is None in the plain
    case (the one-hot q is built by the row)."""
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be integer class indices (or float probabilities of the logits' "
                        f"shape for cross_entropy), got dtype {y.dtype}")
    if not y.dtype.isnative:  # labels read from a big-endian file ('>i4'): the same numbers in native order
        y = y.astype(y.dtype.newbyteorder("="))
    n, c = z.shape[0], z.shape[1]
    want = (n, *z.shape[2:])
    if y.shape != want:
        raise ShapeError(f"{name}: labels of shape {y.shape} do not fit logits of shape {z.shape} (needs {want})")
    keep = None if ignore_index is None else y != ignore_index
    yk = y if keep is None else np.where(keep, y, 0)
    # NOTE: read as unsigned, a negative label of b bits is at least 2**(b - 1), so one max() checks both ends of
    # [0, C) while C <= 2**(b - 1); with more classes than the dtype has positive labels, only a negative is bad.
    if yk.dtype.kind == "i" and c > _LARGEST[yk.dtype]:
        outside = yk.size and np.minimum.reduce(yk, axis=None) < 0
    else:
        outside = yk.size and np.maximum.reduce(yk.view(_UNSIGNED[yk.dtype]) if yk.dtype.kind == "i" else yk,
                                                axis=None) >= c
    if outside:
        bad = int(yk[(yk < 0) | (yk >= c)].flat[0])
        raise ShapeError(f"{name}: label {bad} is not a class index in [0, {c}) for logits of shape {z.shape}"
                         + (f" (nor the ignore_index {ignore_index})" if ignore_index is not None else ""))
    if keep is None and w is None and eps == 0:
        return None, float(max(y.size, 1)), y
    kept = np.ones(y.shape, dtype=z.dtype) if keep is None else keep.astype(z.dtype)
    w_all = np.ones(c, dtype=z.dtype) if w is None else w
    wy = w_all[yk] * kept  # each position's weight; 0 where ignored
    divisor = float(wy.sum())
    if reduction == "mean" and y.size and not divisor > 0:
        what = (f"every target is ignore_index={ignore_index}" if keep is not None and not keep.any()
                else "the weights of the targets' classes sum to 0")
        raise LossError(f"{name}: the mean over the targets is 0/0: {what} (PyTorch returns nan); use "
                        "reduction='sum' or keep some targets")
    q = (1 - eps) * wy[:, None] * _one_hot(yk, z) + (eps / c) * _along_classes(w_all, z.ndim) * kept[:, None]
    return q, divisor, y


def _probability_targets(name: str, z: np.ndarray, t: np.ndarray, w: np.ndarray | None, ignore_index: int | None,
                         eps: float) -> tuple[np.ndarray, float]:
    if t.shape != z.shape:
        raise ShapeError(f"{name}: probability targets of shape {t.shape} do not fit logits of shape {z.shape}")
    if ignore_index is not None:
        raise LossError(f"{name}: ignore_index={ignore_index} applies to class-index targets, not probabilities")
    t = t.astype(z.dtype)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        bad = t[~np.isfinite(t) | (t < 0)].flat[0]
        raise LossError(f"{name}: probability targets must be finite and >= 0, got {bad}")
    sums = t.sum(axis=1)
    off = np.abs(sums - 1) > np.sqrt(np.finfo(z.dtype).eps) * z.shape[1]
    if np.any(off):
        raise LossError(f"{name}: probability targets must sum to 1 over the classes (axis 1); one sums to "
                        f"{float(sums[off].flat[0])!r}")
    q = (1 - eps) * t + eps / z.shape[1]
    if w is not None:
        q = q * _along_classes(w, z.ndim)
    return q, float(max(t.size // z.shape[1], 1))


def _targets(name: str, logits: Tensor, target: Any, weight: Any, ignore_index: int | None,
             label_smoothing: float, reduction: str) -> tuple[np.ndarray | None, float, Any]:
    z = logits.data
    _class_axis(name, z)
    y = target.data if isinstance(target, Tensor) else target
    if type(y) is not np.ndarray:
        y = np.asarray(y)
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    w = _weights(name, weight, z)
    if y.dtype.kind == "f" and y.shape == z.shape:
        if isinstance(target, Tensor) and target.requires_grad:
            raise LossError(f"{name}: probability targets take no gradient here; pass target.data (or use kl_div)")
        q, divisor = _probability_targets(name, z, y, w, ignore_index, label_smoothing)
        return q, divisor, None
    return _class_targets(name, z, y, w, ignore_index, label_smoothing, reduction)


def cross_entropy(logits: Tensor, labels: Any, weight: Any = None, *, ignore_index: int | None = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """-log softmax(logits)[label], averaged over the positions: one node whose vjp is (softmax - onehot) / N.

    The Unit 1 lecture derives dL/dv_i = o_i - y_i for one example (o = softmax(v), y one-hot); the mean over N
    examples divides it by N. The log-sum-exp is taken after subtracting the maximum, so large logits do not
    overflow. As PyTorch: logits (N, C) or (N, C, d1, ...); ``labels`` integer class indices (N, d1, ...) or
    float class probabilities of the logits' shape; ``weight`` (C,) per class; ``ignore_index`` (None here by
    default: PyTorch's -100); ``label_smoothing``; ``reduction``.

    >>> logits = Tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> loss = cross_entropy(logits, [0, 1]); loss.backward()
    >>> round(loss.item(), 6), logits.grad.round(6).tolist()
    (0.410038, [[-0.059601, 0.059601], [0.25, -0.25]])
    """
    name = "cross_entropy"
    reduction = _reduction(name, reduction)
    q, divisor, labels = _targets(name, logits, labels, weight, ignore_index, label_smoothing, reduction)
    return node(CROSS_ENTROPY, (logits,), {"labels": labels, "q": q, "divisor": divisor, "reduction": reduction})


def _per_position(x: np.ndarray, reduction: str, divisor: float) -> np.ndarray:
    if reduction == "none":
        return x
    return np.asarray(x.sum() if reduction == "sum" else x.sum() / divisor)


def _cross_entropy_forward(z: np.ndarray, *, labels: np.ndarray | None, q: np.ndarray | None, divisor: float,
                           reduction: str) -> tuple:
    # -sum_c q_c log softmax(z)_c, with log softmax(z) = z - m - log sum exp(z - m) (m the maximum: exp cannot
    # overflow); the one-hot q of the plain case is built here, not by the caller.
    q = _one_hot(labels, z) if q is None else q
    # NOTE: 0 log 0 := 0: a class the target gives no weight adds nothing, even where its log-probability is
    # -inf (a logit further below the largest than the float range reaches, where 0 * -inf would be NaN); an
    # overflow where the target has weight gives inf, which the node's output check refuses.
    with np.errstate(over="ignore", invalid="ignore"):
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        terms = q * (shifted - np.log(s))
    terms[q == 0] = 0.0
    per = -terms.sum(axis=1)
    out = np.asarray(_per_position(per, reduction, divisor), dtype=z.dtype)
    return out, (e / s, q, reduction, divisor)


def _spread(g: np.ndarray, reduction: str, divisor: float) -> np.ndarray:
    """The upstream gradient of each position, shaped to broadcast along the class axis."""
    if reduction == "none":
        return g[:, None]
    return g / divisor if reduction == "mean" else g


def _cross_entropy_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    # The Unit 1 lecture: dL/dv = o - y for one example (o = softmax(v), y one-hot); for a weighted target q
    # it is (sum_c q_c) o - q; "mean" divides by the divisor.
    o, q, reduction, divisor = res
    d = q.sum(axis=1, keepdims=True) * o - q
    return (np.asarray(d * _spread(g, reduction, divisor), dtype=o.dtype),)


def _cross_entropy_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    o, q, reduction, divisor = res
    dz = t[0]
    per = q.sum(axis=1) * (o * dz).sum(axis=1) - (q * dz).sum(axis=1)
    return np.asarray(_per_position(per, reduction, divisor), dtype=o.dtype)


def _cross_entropy_fast_forward(z: np.ndarray, *, labels: np.ndarray | None, q: np.ndarray | None, divisor: float,
                                reduction: str) -> tuple:
    # The plain case (class indices, (N, C), mean) has a fast twin; every other case runs the reference.
    if q is None and reduction == "mean" and z.ndim == 2:
        out, res = fast.cross_entropy_forward(z, labels)
        return out, (fast.cross_entropy_vjp, res)
    out, res = _cross_entropy_forward(z, labels=labels, q=q, divisor=divisor, reduction=reduction)
    return out, (_cross_entropy_vjp, res)


def _cross_entropy_fast_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    vjp, inner = res
    return vjp(g, inner, needs)


CROSS_ENTROPY = deftensorop("cross_entropy", _cross_entropy_forward, _cross_entropy_vjp, _cross_entropy_jvp,
                            "-sum_c q_c log softmax(logits)_c per position for the target distribution q, reduced; "
                            "the vjp is (sum q) softmax - q (softmax - onehot for a class label)",
                            checks_output=True, fast=Kernel(_cross_entropy_fast_forward, _cross_entropy_fast_vjp))


def nll_loss(log_probs: Tensor, labels: Any, weight: Any = None, *, ignore_index: int | None = None,
             reduction: str = "mean") -> Tensor:
    """The negative log-likelihood -w_y log_probs[y] of class-index labels, reduced (PyTorch's ``nll_loss``).

    ``nll_loss(logits.log_softmax(axis=1), y)`` is ``cross_entropy(logits, y)``; built from the multiply and sum
    rows, so its gradient -w_y at the label (0 elsewhere) needs no row of its own.

    >>> x = Tensor([[-0.5, -1.0], [-2.0, -0.1]]); loss = nll_loss(x, [0, 1]); loss.backward()
    >>> round(loss.item(), 6), x.grad.tolist() == [[-0.5, 0.0], [0.0, -0.5]]
    (0.3, True)
    """
    name = "nll_loss"
    reduction = _reduction(name, reduction)
    z = log_probs.data
    _class_axis(name, z, "log_probs")
    y = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    q, divisor, y = _class_targets(name, z, y, _weights(name, weight, z), ignore_index, 0.0, reduction)
    per = -(log_probs * (_one_hot(y, z) if q is None else q)).sum(axis=1)
    if reduction == "mean":
        return per.sum() / divisor
    return _reduce(name, per, reduction)


def kl_div(log_probs: Tensor, target: Any, *, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """The Kullback-Leibler divergence sum t (log t - x) of target t from the model's log-probabilities x
    (PyTorch's ``kl_div``: the input is log-probabilities; ``log_target=True`` takes log t instead of t).

    ``reduction="batchmean"`` (sum / N) is the true KL divergence per example; "mean" (PyTorch's default) divides
    by the number of entries. Terms with t = 0 are 0 (0 log 0 = 0).

    >>> x = Tensor(np.log([[0.5, 0.5]])); loss = kl_div(x, [[0.25, 0.75]], reduction="batchmean")
    >>> round(loss.item(), 6)
    0.130812
    """
    name = "kl_div"
    reduction = _reduction(name, reduction, (*REDUCTIONS, "batchmean"))
    t = _pair(name, log_probs, target)
    if log_target:
        per = t.exp() * (t - log_probs)
    elif t.requires_grad:  # t log t is differentiated too: its slope log t + 1 has no value at t = 0
        per = t * (t.log() - log_probs)
    else:
        tt = t.data
        if np.any(tt < 0):
            raise LossError(f"{name}: target probabilities must be >= 0, got {float(tt[tt < 0].flat[0])!r} "
                            "(pass log_target=True for log-probabilities)")
        t_log_t = np.where(tt > 0, tt * np.log(np.where(tt > 0, tt, 1)), 0).astype(tt.dtype)
        per = t_log_t - t * log_probs
    if reduction == "batchmean":
        n = log_probs.data.shape[0] if log_probs.data.ndim else 1
        return per.sum() / max(n, 1)
    return _reduce(name, per, reduction)


def _pair(name: str, pred: Tensor, target: Any) -> Tensor:
    t = as_tensor(target, pred.data.dtype)
    if t.data.shape != pred.data.shape:
        raise ShapeError(f"{name}: prediction of shape {pred.data.shape} and target of shape {t.data.shape} differ")
    if t.data.dtype != pred.data.dtype:
        raise TypeError(f"{name}: prediction dtype {pred.data.dtype} and target dtype {t.data.dtype} differ")
    return t


def binary_cross_entropy_with_logits(logits: Tensor, targets: Any, *, reduction: str = "mean") -> Tensor:
    """Mean of softplus(x) - x * t, which is -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)), computed stably.

    Built from the table's ``softplus`` row, so the gradient (sigmoid(x) - t) / N comes from that row.

    >>> x = Tensor([0.0, 0.0]); loss = binary_cross_entropy_with_logits(x, [1.0, 0.0]); loss.backward()
    >>> round(loss.item(), 6), x.grad.tolist()
    (0.693147, [-0.25, 0.25])
    """
    t = _pair("binary_cross_entropy_with_logits", logits, targets)
    return _reduce("binary_cross_entropy_with_logits", logits.softplus() - logits * t, reduction)


def mse(pred: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Mean squared error mean((pred - target)**2).

    >>> p = Tensor([1.0, 3.0]); loss = mse(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (5.0, [1.0, 3.0])
    """
    d = pred - _pair("mse", pred, target)
    return _reduce("mse", d * d, reduction)


def mae(pred: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Mean absolute error mean(|pred - target|); at a tie the table's abs row gives gradient 0.

    >>> p = Tensor([1.0, -3.0]); loss = mae(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (2.0, [0.5, -0.5])
    """
    return _reduce("mae", abs(pred - _pair("mae", pred, target)), reduction)


def smooth_l1(pred: Tensor, target: Any, beta: float = 1.0, *, reduction: str = "mean") -> Tensor:
    """Smooth L1 (PyTorch's ``smooth_l1_loss``): d**2 / (2 beta) where |d| < beta, else |d| - beta / 2, with
    d = pred - target; ``beta=0`` is the L1 loss.

    >>> p = Tensor([0.5, 3.0]); loss = smooth_l1(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (1.3125, [0.25, 0.5])
    """
    if not beta >= 0:
        raise ValueError(f"smooth_l1: beta must be >= 0, got {beta!r}")
    d = pred - _pair("smooth_l1", pred, target)
    a = abs(d)
    per = a if beta == 0 else where(a.data < beta, (0.5 / beta) * (d * d), a - 0.5 * beta)
    return _reduce("smooth_l1", per, reduction)


def huber(pred: Tensor, target: Any, delta: float = 1.0, *, reduction: str = "mean") -> Tensor:
    """Huber loss (PyTorch's ``huber_loss``): d**2 / 2 where |d| <= delta, else delta * (|d| - delta / 2), with
    d = pred - target: ``delta`` times ``smooth_l1`` with beta = delta.

    >>> p = Tensor([0.5, 3.0]); loss = huber(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (1.3125, [0.25, 0.5])
    """
    if not delta > 0:
        raise ValueError(f"huber: delta must be > 0, got {delta!r}")
    return delta * smooth_l1(pred, target, delta, reduction=reduction)
