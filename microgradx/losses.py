"""Loss functions on Tensors: cross-entropy fused with softmax, binary cross-entropy with logits, MSE, MAE, Huber.

Every loss is the mean over the batch. Only ``cross_entropy`` is one fused node (its gradient is the Unit 1 lecture's
o - y, divided by the batch size); the others are compositions of op-table rows, so they need no derivative
of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import fast
from .tensor import Kernel, ShapeError, Tensor, as_tensor, deftensorop, node, where

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "mse", "mae", "huber"]

_UNSIGNED = {np.dtype(f"i{k}"): np.dtype(f"u{k}") for k in (1, 2, 4, 8)}


def cross_entropy(logits: Tensor, labels: Any) -> Tensor:
    """Mean of -log softmax(logits)[label] over the rows; one node whose vjp is (softmax - onehot) / N.

    The Unit 1 lecture derives dL/dv_i = o_i - y_i for one example (o = softmax(v), y one-hot); the mean over N
    examples divides it by N. The log-sum-exp is taken after subtracting the row maximum, so large logits
    do not overflow.

    >>> logits = Tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> loss = cross_entropy(logits, [0, 1]); loss.backward()
    >>> round(loss.item(), 6), logits.grad.round(6).tolist()
    (0.410038, [[-0.059601, 0.059601], [0.25, -0.25]])
    """
    z = logits.data
    y = labels.data if isinstance(labels, Tensor) else labels
    if type(y) is not np.ndarray:
        y = np.asarray(y)
    if z.ndim != 2:
        raise ShapeError(f"cross_entropy: logits must have shape (N, C), got {z.shape}")
    kind = y.dtype.kind
    if kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integer class indices, got dtype {y.dtype}")
    if not y.dtype.isnative:  # labels read from a big-endian file ('>i4'): the same numbers in native order
        y = y.astype(y.dtype.newbyteorder("="))
    n, c = z.shape
    if c == 0:
        raise ShapeError(f"cross_entropy: logits of shape {z.shape} have no classes")
    if y.shape != (n,):
        raise ShapeError(f"cross_entropy: labels of shape {y.shape} do not fit logits of shape {z.shape} "
                         f"(needs ({n},))")
    # NOTE: read as unsigned, a negative label is huge, so one max() checks both ends of [0, C).
    if n and np.maximum.reduce(y.view(_UNSIGNED[y.dtype]) if kind == "i" else y) >= c:
        bad = int(y[(y < 0) | (y >= c)][0])
        raise ShapeError(f"cross_entropy: label {bad} is not a class index in [0, {c}) for logits of shape {z.shape}")
    return node(CROSS_ENTROPY, (logits,), {"labels": y})


def _cross_entropy_forward(z: np.ndarray, labels: np.ndarray) -> tuple:
    # -log softmax(z)[y] = logsumexp(z) - z[y], with the row maximum taken out so that exp cannot overflow.
    n = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    losses = np.log(s[:, 0]) - shifted[rows, labels]
    return np.asarray(losses.sum() / max(n, 1), dtype=z.dtype), (e / s, labels, rows, n)


def _cross_entropy_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    # Seed 004: dL/dv = o - y for one example (o = softmax(v), y one-hot); the mean over N divides by N.
    o, labels, rows, n = res
    d = o.copy()
    d[rows, labels] -= 1.0
    return (d * (g / o.dtype.type(max(n, 1))),)


def _cross_entropy_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    o, labels, rows, n = res
    dz = t[0]
    return np.asarray(((o * dz).sum() - dz[rows, labels].sum()) / max(n, 1), dtype=o.dtype)


CROSS_ENTROPY = deftensorop("cross_entropy", _cross_entropy_forward, _cross_entropy_vjp, _cross_entropy_jvp,
                            "mean over rows of -log softmax(logits)[label]; the vjp is (softmax - onehot) / N",
                            checks_output=True, fast=Kernel(fast.cross_entropy_forward, fast.cross_entropy_vjp))


def _pair(name: str, pred: Tensor, target: Any) -> Tensor:
    t = as_tensor(target, pred.data.dtype)
    if t.data.shape != pred.data.shape:
        raise ShapeError(f"{name}: prediction of shape {pred.data.shape} and target of shape {t.data.shape} differ")
    if t.data.dtype != pred.data.dtype:
        raise TypeError(f"{name}: prediction dtype {pred.data.dtype} and target dtype {t.data.dtype} differ")
    return t


def binary_cross_entropy_with_logits(logits: Tensor, targets: Any) -> Tensor:
    """Mean of softplus(x) - x * t, which is -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)), computed stably.

    Built from the table's ``softplus`` row, so the gradient (sigmoid(x) - t) / N comes from that row.

    >>> x = Tensor([0.0, 0.0]); loss = binary_cross_entropy_with_logits(x, [1.0, 0.0]); loss.backward()
    >>> round(loss.item(), 6), x.grad.tolist()
    (0.693147, [-0.25, 0.25])
    """
    t = _pair("binary_cross_entropy_with_logits", logits, targets)
    return (logits.softplus() - logits * t).mean()


def mse(pred: Tensor, target: Any) -> Tensor:
    """Mean squared error mean((pred - target)**2).

    >>> p = Tensor([1.0, 3.0]); loss = mse(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (5.0, [1.0, 3.0])
    """
    d = pred - _pair("mse", pred, target)
    return (d * d).mean()


def mae(pred: Tensor, target: Any) -> Tensor:
    """Mean absolute error mean(|pred - target|); at a tie the table's abs row gives gradient 0.

    >>> p = Tensor([1.0, -3.0]); loss = mae(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (2.0, [0.5, -0.5])
    """
    return abs(pred - _pair("mae", pred, target)).mean()


def huber(pred: Tensor, target: Any, delta: float = 1.0) -> Tensor:
    """Mean Huber loss: d**2 / 2 where |d| <= delta, else delta * (|d| - delta / 2), with d = pred - target.

    >>> p = Tensor([0.5, 3.0]); loss = huber(p, [0.0, 0.0]); loss.backward(); loss.item(), p.grad.tolist()
    (1.3125, [0.25, 0.5])
    """
    if not delta > 0:
        raise ValueError(f"huber: delta must be > 0, got {delta!r}")
    d = pred - _pair("huber", pred, target)
    a = abs(d)
    return where(a.data <= delta, 0.5 * (d * d), delta * (a - 0.5 * delta)).mean()
