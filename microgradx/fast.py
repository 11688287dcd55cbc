"""The fast path: speed tricks for the tensor-op rows and the optimizer step, each the twin of a readable
reference (the rows in ``tensor.py``, ``Optimizer.step`` in ``optim.py``).

Nothing here is new maths. Each kernel computes what its reference computes, with a memory layout, fusion,
arithmetic trick or bound-based finiteness proof that NumPy and BLAS run faster; the agreement tests
(``tests/test_tensor_graph.py``, ``tests/test_optim.py``) check that both agree to rounding on random inputs,
and ``benchmarks/mlp.py`` measures what the tricks buy. ``reference_only()`` turns the fast path off (the
gradient check and the agreement tests use it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .ops import numpy_math

__all__ = ["ENABLED", "reference_only", "all_finite", "first_nonfinite", "array_math", "weight_layout",
           "linear_forward", "linear_vjp", "cross_entropy_forward", "cross_entropy_vjp",
           "max_abs_bound", "scaled_bound", "add_in_place_if_finite", "conv2d_forward", "conv2d_vjp",
           "max_pool2d_forward", "max_pool2d_vjp", "avg_pool2d_forward"]

ENABLED = True  # read by the node builder on every node: the fast kernels run when True


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Run the readable reference kernels only, inside a ``with`` block.

    >>> from microgradx import fast
    >>> with fast.reference_only(): fast.ENABLED
    False
    """
    global ENABLED
    before, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = before


# ---------------------------------------------------------------------------------------------------------
# Finiteness scans
# ---------------------------------------------------------------------------------------------------------

_and_reduce = np.logical_and.reduce


def all_finite(a: np.ndarray) -> bool:
    """True when every entry of ``a`` is finite: ``all_finite(np.array([1.0, np.inf]))`` is False.

    One vectorised pass that cannot warn (``a.sum()`` costs as much and could itself overflow), through the
    ufunc's own reduce rather than ``a.all()``, which goes through a Python-level wrapper.
    """
    if a.ndim == 0:  # a loss: one number
        return math.isfinite(a)
    return bool(_and_reduce(np.isfinite(a), axis=None))


def first_nonfinite(a: np.ndarray) -> tuple[tuple[int, ...], float]:
    """(index, value) of the first non-finite entry of ``a``: ``first_nonfinite(np.array([1.0, np.nan]))``."""
    a = np.asarray(a)
    where = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    return where, float(a[where])


# ---------------------------------------------------------------------------------------------------------
# Elementwise rows: a maths namespace whose ``where`` is mask arithmetic
# ---------------------------------------------------------------------------------------------------------

def _array_math(dtype: np.dtype) -> Any:
    """``numpy_math()`` with a ``where`` that keeps ``dtype`` and selects by arithmetic on a 0/1 mask.

    Plain ``np.where`` builds a float64 array from two Python-float branches (upcasting float32 gradients),
    and on a random mask it is about ten times slower than a multiplication here. For finite branches
    ``a * m + b * (1 - m)`` is exactly ``a`` where m = 1 and ``b`` where m = 0 (up to the sign of a zero,
    normalised by adding +0.0); every Tensor's data is finite, and rows keep discarded branches finite.
    """
    base = numpy_math()
    cast = dtype.type
    zero = cast(0.0)

    def where(cond: Any, a: Any, b: Any) -> Any:
        if type(cond) is not np.ndarray or cond.dtype != bool:
            return np.where(cond, a, b)
        m = cond.astype(dtype)
        if type(b) is float and b == 0.0:
            if type(a) is float:
                return m if a == 1.0 else m * cast(a)
            if type(a) is np.ndarray and a.shape == m.shape and a.dtype == dtype:
                r = np.multiply(a, m, out=m)  # the mask is ours: reuse its memory
            else:
                r = a * m
        else:
            if type(a) is float and a == 0.0 and type(b) is float and b == 1.0:
                return (~cond).astype(dtype)
            r = a * m + b * (~cond).astype(dtype)  # not in place: the branches may broadcast to a larger shape
        r += zero  # -0.0 (from a negative a times 0) becomes 0.0, as np.where would give
        return r

    return type(f"ArrayMath_{dtype.name}", (type(base),), {"where": staticmethod(where)})()


_ARRAY_MATH = {np.dtype(np.float32): _array_math(np.dtype(np.float32)),
               np.dtype(np.float64): _array_math(np.dtype(np.float64))}


def array_math(dtype: np.dtype) -> Any:
    """The maths namespace the fast elementwise kernels use for arrays of ``dtype`` (float32 or float64)."""
    return _ARRAY_MATH[dtype]


# ---------------------------------------------------------------------------------------------------------
# linear: column-major weights, the transposed input gradient, the activation fused in
# ---------------------------------------------------------------------------------------------------------

_TRANSPOSED_GX = 1 << 14  # weight entries above which linear's input gradient is formed as (W.T @ g.T).T


def weight_layout(w: np.ndarray) -> np.ndarray:
    """The weight (out, in) stored column-major, so that W.T is row-major.

    Both products of a step, x @ W.T and x.T @ g, then reach BLAS with untransposed operands: with a small
    batch the cost of a product is mostly BLAS packing the 784 x 128 weight, and OpenBLAS packs a transposed
    operand much more slowly (``benchmarks/mlp.py`` measures both layouts). Any layout gives the same numbers.
    """
    return np.asfortranarray(w)


def linear_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, activation: Any = None) -> tuple:
    """The reference's f(x @ W.T + b), with the bias added in place and the activation's mask-arithmetic
    namespace; returns (out, residuals) for ``linear_vjp``."""
    z = X @ W.T
    if bias:
        z += bias[0]
    out = z
    F = None
    if activation is not None:
        F = _ARRAY_MATH[z.dtype]
        out = activation.forward(F, z)
        if type(out) is not np.ndarray or out.dtype != z.dtype:
            out = np.asarray(out, dtype=z.dtype)
    return out, (X, W, z, out, len(bias), activation, F)


def linear_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """The reference's g @ W, g.T @ x and the column sums of g, laid out for a column-major W."""
    X, W, z, out, nb, act, F = res
    if act is not None:
        g = g * act.partials(F, out, z)[0]
        if type(g) is not np.ndarray or g.dtype != z.dtype:
            g = np.asarray(g, dtype=z.dtype)
    g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
    X2 = X.reshape(-1, X.shape[-1]) if X.ndim != 2 else X
    gx = gW = gb = None
    if W.strides[0] < W.strides[1]:  # column-major: W.T is the row-major one (cheaper to ask than W.flags)
        if needs[0]:
            # NOTE: g @ W packs the transposed W; for a large W the transposed product is cheaper, but its result
            # is column-major, which slows the elementwise ops after it: worth it only when W is big.
            gx = (W.T @ g2.T).T if g.ndim == 2 and W.size > _TRANSPOSED_GX else g @ W
        if needs[1]:
            gW = np.empty(W.shape, W.dtype, order="F")  # laid out like W, for the update
            np.matmul(X2.T, g2, out=gW.T)
    else:
        if needs[0]:
            gx = g @ W
        if needs[1]:
            gW = g2.T @ X2
    if nb and needs[2]:
        gb = np.add.reduce(g2, axis=0)
    return (gx, gW, gb)[:2 + nb]


# ---------------------------------------------------------------------------------------------------------
# cross-entropy: the work done on the (C, N) transpose
# ---------------------------------------------------------------------------------------------------------

def cross_entropy_forward(z: np.ndarray, labels: np.ndarray) -> tuple:
    """The reference's mean of logsumexp(z_i) - z_i[y_i], computed on the transpose.

    With few classes, NumPy's reductions along the short last axis of (N, C) cost a call per row
    (z.max(axis=1) is ~8x slower than the same max across the rows of the (C, N) transpose).
    """
    n = z.shape[0]
    zt = z.T.copy()
    zt -= np.maximum.reduce(zt, axis=0)  # shift each example by its largest logit: exp cannot overflow
    rows = np.arange(n)
    picked = zt[labels, rows]      # the shifted logit of each example's label
    e = np.exp(zt, out=zt)
    s = np.add.reduce(e, axis=0)
    losses = np.log(s)
    losses -= picked
    loss = np.asarray(np.add.reduce(losses) / max(n, 1), dtype=z.dtype)
    return loss, (e, s, labels, rows, n, z.dtype)


def cross_entropy_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """The reference's (softmax(z) - onehot(y)) g / N, on the transpose."""
    e, s, labels, rows, n, dtype = res
    k = g / dtype.type(n)
    d = e * (k / s)       # softmax o (transposed), times g / N
    d[labels, rows] -= k  # o - y, times g / N
    return (d.T,)


# ---------------------------------------------------------------------------------------------------------
# The optimizer step: finiteness proved from norm bounds, the update written in place
# ---------------------------------------------------------------------------------------------------------

# Half the largest finite value of each float dtype: two numbers of at most this size add to a finite number.
_HEADROOM = {np.dtype(t): float(np.finfo(t).max) / 2 for t in (np.float16, np.float32, np.float64)}
_ROUNDING = {np.dtype(t): (float(np.finfo(t).eps), float(np.finfo(t).tiny)) for t in (np.float16, np.float32,
                                                                                         np.float64)}


def max_abs_bound(a: np.ndarray) -> float:
    """A number >= every |a_i|, from one BLAS dot product; inf or nan when ``a`` holds a NaN or an infinity.

    The sum of squares s = a . a is finite only when every entry is; its rounding error is at most
    n * eps * s (plus n * tiny for squares that underflow), so sqrt((s + n tiny) / (1 - n eps)) bounds the
    largest |a_i|. An overflowing s also gives inf: a caller must then decide with an exact scan
    (``all_finite``), which is what the reference optimizer step does for every array.

    >>> max_abs_bound(np.array([3.0, -4.0])) >= 4.0, max_abs_bound(np.array([1.0, np.nan])) < np.inf
    (True, False)
    """
    flat = a.ravel(order="K")  # a view for any contiguous layout
    rounding = _ROUNDING.get(flat.dtype)
    if rounding is None:  # a dtype without a table entry (longdouble): let the exact scan decide
        return math.inf
    eps, tiny = rounding
    n = flat.size
    slack = 1.0 - n * eps
    if slack <= 0.0:  # too many entries for the error bound to say anything
        return math.inf
    try:
        squares = float(np.dot(flat, flat))
    except FloatingPointError:  # inside Optimizer.step overflow raises: the caller's exact scan decides
        return math.inf
    return math.sqrt((squares + n * tiny) / slack)


def scaled_bound(factor: float, bound: float, dtype: np.dtype) -> float | None:
    """A bound on every |factor * x_i| computed in ``dtype``, given ``bound`` >= every |x_i|; None for an
    unknown dtype. Two roundings (``factor`` to the dtype, then the product) are covered.

    >>> scaled_bound(0.1, 2.0, np.dtype(np.float32)) >= 0.2
    True
    """
    rounding = _ROUNDING.get(dtype)
    if rounding is None:
        return None
    return abs(factor) * bound * (1.0 + 4.0 * rounding[0])


def add_in_place_if_finite(theta: np.ndarray, delta: np.ndarray, delta_bound: float | None = None) -> bool:
    """theta += delta in place when norm bounds prove every sum finite, and True; else False, theta untouched.

    The reference step computes theta + delta into a new array and scans it; here two dot products (one when
    ``delta_bound``, a known bound on every |delta_i|, is given) show that every |theta_i + delta_i| is at most
    half the largest float, so the sum is written straight into the parameter. Near the top of the float range
    the bounds cannot prove it and the caller takes the reference path.

    >>> t = np.array([1.0, 2.0]); add_in_place_if_finite(t, np.array([0.5, -0.5])), t
    (True, array([1.5, 1.5]))
    """
    headroom = _HEADROOM.get(theta.dtype)
    if headroom is None or delta.shape != theta.shape:
        return False
    if delta_bound is None:
        delta_bound = max_abs_bound(delta)
    if not max_abs_bound(theta) + delta_bound <= headroom:
        return False
    np.add(theta, delta, out=theta)
    return True


# ---------------------------------------------------------------------------------------------------------
# Convolution: the windows of the flattened image (the twin of functional's conv2d row)
# ---------------------------------------------------------------------------------------------------------

def _grouped_matmul(A: np.ndarray, B: np.ndarray, groups: int) -> np.ndarray:
    """A @ B group by group: A (G a, k), B (G k, l) -> (G a, l); one BLAS call when G = 1."""
    if groups == 1:
        return A @ B
    a, k = A.shape[0] // groups, B.shape[0] // groups
    out = np.empty((A.shape[0], B.shape[1]), dtype=B.dtype)
    for g in range(groups):
        np.matmul(A[g * a:(g + 1) * a], B[g * k:(g + 1) * k], out=out[g * a:(g + 1) * a])
    return out


def _tap_slices(i: int, j: int, stride: tuple[int, int], dilation: tuple[int, int],
                out: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the padded image that kernel tap (i, j) reads for the Ho x Wo outputs."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out
    return slice(i * dh, i * dh + sh * (ho - 1) + 1, sh), slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)


def conv2d_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, stride: tuple[int, int],
                   padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int],
                   groups: int) -> tuple:
    """The reference's convolution as one matrix product per group over the unrolled windows (im2col).

    The reference contracts a (n, c, ho, wo, kh, kw) window view with ``einsum``; here the windows are copied
    into a matrix laid out (c, i, j) x (n, p, q), channels first: each kernel tap then copies whole image rows
    for all channels at once (the input is transposed to (c, n, h, w) once), about five times faster than
    gathering (n, p, q) x (c, i, j) windows from NCHW, and the product is a single BLAS call with no wasted
    column. ``benchmarks/conv.py`` measures it, and what BLAS alone costs for the same products.
    """
    n, c, h, w = X.shape
    o, cg, kh, kw = W.shape
    ((pt, pb), (pl, pr)), (dh, dw), (sh, sw) = padding, dilation, stride
    hp, wp = h + pt + pb, w + pl + pr
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    padded = np.zeros((c, n, hp, wp), dtype=X.dtype)
    padded[:, :, pt:pt + h, pl:pl + w] = X.transpose(1, 0, 2, 3)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=X.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = padded[(slice(None), slice(None), *_tap_slices(i, j, stride, dilation, (ho, wo)))]
    cols = cols.reshape(c * kh * kw, n * ho * wo)
    out2 = _grouped_matmul(W.reshape(o, cg * kh * kw), cols, groups)           # (o, n ho wo)
    if bias:
        out2 += bias[0][:, None]
    out = np.ascontiguousarray(out2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3))
    return out, (X.shape, W, len(bias), cols, padded.shape, stride, padding, dilation, groups)


def conv2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """The reference's input, weight and bias gradients from the unrolled windows: two matrix products, and
    the input gradient folded back (col2im) with one slice-add per kernel tap over the whole batch."""
    xshape, W, nb, cols, padded_shape, stride, ((pt, _), (pl, _)), dilation, groups = res
    n, c, h, w = xshape
    o, cg, kh, kw = W.shape
    ho, wo = g.shape[2:]
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * ho * wo)
    gx = gW = gb = None
    if needs[0]:
        # NOTE: W.T as a transposed view, not a contiguous copy: BLAS takes the transpose as a flag
        Wg, og = W.reshape(groups, o // groups, cg * kh * kw), o // groups
        dcols = np.empty((c * kh * kw, n * ho * wo), dtype=g.dtype)
        for i in range(groups):
            np.matmul(Wg[i].T, g2[i * og:(i + 1) * og], out=dcols[i * cg * kh * kw:(i + 1) * cg * kh * kw])
        dcols = dcols.reshape(c, kh, kw, n, ho, wo)
        dpad = np.zeros(padded_shape, dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                dpad[(slice(None), slice(None), *_tap_slices(i, j, stride, dilation, (ho, wo)))] += dcols[:, i, j]
        gx = np.ascontiguousarray(dpad[:, :, pt:pt + h, pl:pl + w].transpose(1, 0, 2, 3))
    if needs[1]:
        if groups == 1:
            gW = (g2 @ cols.T).reshape(W.shape)
        else:
            og, k = o // groups, cg * kh * kw
            gW = np.concatenate([g2[i * og:(i + 1) * og] @ cols[i * k:(i + 1) * k].T
                                 for i in range(groups)]).reshape(W.shape)
    if nb and needs[2]:
        gb = np.add.reduce(g2, axis=1)
    return (gx, gW, gb)[:2 + nb]


# ---------------------------------------------------------------------------------------------------------
# Pooling: one pass per window tap over the output (the twins of functional's pooling rows)
# ---------------------------------------------------------------------------------------------------------

def _pool_taps(Xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
               out: tuple[int, int]) -> Iterator[np.ndarray]:
    """For each window tap (i, j), in row-major order, the (N, C, Ho, Wo) view of the entries it reads."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            yield Xp[:, :, r:r + sh * (ho - 1) + 1:sh, c:c + sw * (wo - 1) + 1:sw]


def _padded(X: np.ndarray, padding: Any, fill: float) -> np.ndarray:
    return np.pad(X, ((0, 0), (0, 0), *padding), constant_values=fill) if np.any(padding) else X


def max_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
                       dilation: tuple[int, int], out: tuple[int, int]) -> tuple:
    """The reference's window maxima, as a running ``np.maximum`` over the taps.

    The reference copies every window into a (..., kh kw) array and takes ``argmax`` along that short axis,
    one slow call per window; here each tap is one vectorised operation over the whole output.
    """
    Xp = _padded(X, padding, -np.inf)
    taps = _pool_taps(Xp, kernel, stride, dilation, out)
    best = next(taps).copy()
    for tap in taps:
        np.maximum(best, tap, out=best)
    return best, (X.shape, Xp, best, kernel, stride, padding, dilation, out)


def max_pool2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """g added, tap by tap, to the entries that are their window's maximum; the first such tap in row-major
    order takes it (the reference's tie rule), so later equal taps are masked out."""
    shape, Xp, best, kernel, stride, ((pt, _), (pl, _)), dilation, out = res
    gpad = np.zeros(Xp.shape, dtype=g.dtype)
    open_ = np.ones(best.shape, dtype=bool)  # windows whose maximum has not been found yet
    for tap, gtap in zip(_pool_taps(Xp, kernel, stride, dilation, out),
                         _pool_taps(gpad, kernel, stride, dilation, out)):
        hit = tap == best
        hit &= open_
        open_ ^= hit
        gtap += g * hit  # overlapping windows add up
    return (gpad[:, :, pt:pt + shape[2], pl:pl + shape[3]],)


def avg_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
                       out: tuple[int, int], divisor: np.ndarray) -> tuple:
    """The reference's window means as a sum over the taps (no copy of the windows), residuals as the
    reference's, whose vjp it shares."""
    Xp = _padded(X, padding, 0.0)
    taps = _pool_taps(Xp, kernel, stride, (1, 1), out)
    total = next(taps).copy()
    for tap in taps:
        total += tap
    total *= (1.0 / divisor).astype(X.dtype)
    return total, (X.shape, Xp.shape, X.dtype, kernel, stride, padding, out, divisor)
