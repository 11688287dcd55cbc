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
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from .ops import ADD as _ADD
from .ops import MUL as _MUL
from .ops import OPS, numpy_math

__all__ = ["ENABLED", "reference_only", "all_finite", "first_nonfinite", "array_math", "weight_layout",
           "NonFiniteGradient", "matmul_vjp", "linear_forward", "linear_vjp", "cross_entropy_forward",
           "cross_entropy_vjp", "BoundedGrads", "max_abs_bound", "scaled_bound", "add_in_place_if_finite", "sgd_step",
           "conv2d_forward", "conv2d_vjp", "max_pool2d_forward", "max_pool2d_vjp", "avg_pool2d_forward"]

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
_dot = np.dot
_BLAS_FLOATS = frozenset((np.dtype(np.float32), np.dtype(np.float64)))


def all_finite(a: np.ndarray) -> bool:
    """True when every entry of ``a`` is finite: ``all_finite(np.array([1.0, np.inf]))`` is False.

    The reference is the exact scan ``np.isfinite(a).all()``. The fast path first takes the sum of squares
    a . a with one BLAS dot product (one read pass, no temporary, about half the scan's time): a NaN or an
    infinity makes it NaN or inf, so a finite sum proves every entry finite. Only when the sum is not finite
    (a bad entry, or entries so large that their squares overflow) does the exact scan decide.
    """
    if a.ndim == 0:  # a loss: one number
        return math.isfinite(a)
    if ENABLED and a.dtype in _BLAS_FLOATS and (a.flags.c_contiguous or a.flags.f_contiguous):
        flat = a.ravel(order="K")  # a view for either contiguous layout
        try:
            if math.isfinite(_dot(flat, flat)):
                return True
        except (FloatingPointError, RuntimeWarning):  # an overflowing sum raised (errstate(over="raise"), or the
            pass                                        # caller's filters turn warnings into errors): scan instead
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


_RELU = OPS["relu"]


def linear_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, activation: Any = None) -> tuple:
    """The reference's f(x @ W.T + b), with the bias added in place and the activation's mask-arithmetic
    namespace; returns (out, residuals) for ``linear_vjp``.

    A fused relu is applied in place: its partial, 1 where z > 0, is 1 exactly where relu(z) > 0, so the
    backward pass needs relu(z) alone (``linear_vjp`` multiplies by that mask directly), not z as well."""
    z = X @ W.T
    if bias:
        z += bias[0]
    if activation is not None and not all_finite(z):
        return z, None  # NOTE: an activation could hide it (relu(-inf) = 0): the builder's output check names it
    if activation is _RELU:
        np.maximum(z, 0.0, out=z)
        return z, (X, W, z, z, len(bias), activation, None)
    out = z
    F = None
    if activation is not None:
        F = _ARRAY_MATH[z.dtype]
        out = activation.forward(F, z)
        if type(out) is not np.ndarray or out.dtype != z.dtype:
            out = np.asarray(out, dtype=z.dtype)
    return out, (X, W, z, out, len(bias), activation, F)


_PROOF_CALL = 8192  # numbers a scan reads in the time of one more dot product's fixed cost (measured)


class NonFiniteGradient(ArithmeticError):
    """A fast vjp that applies the finiteness rule itself found gradient ``grad`` for input ``parent`` not
    finite; the node turns it into the DomainError that names the node, its op and that parent."""

    def __init__(self, parent: int, grad: np.ndarray) -> None:
        super().__init__(parent)
        self.parent, self.grad = parent, grad


class BoundedGrads(tuple):
    """A vjp's gradients (a tuple, one per input) with ``bounds``: for each, a number >= every |entry| that the
    finiteness proof or scan gave for free, or None. The backward pass hands a parameter's bound on to the
    optimizer (``Tensor._grad_bound``), which then needs no pass of its own over that gradient."""

    bounds: tuple

    def __new__(cls, grads: tuple, bounds: tuple) -> BoundedGrads:
        self = super().__new__(cls, grads)
        self.bounds = bounds
        return self


def _rounded_products_bound(bound: float, terms: int, dtype: np.dtype) -> float:
    """A bound on sums of ``terms`` products computed in ``dtype`` whose exact magnitudes are at most ``bound``
    (the factor of ``_products_finite``, and one more for the rounding of ``bound`` itself in float64)."""
    return bound * (1.0 + 2.0 * terms * _ROUNDING[dtype][0]) * (1.0 + 1e-15)


def _scanned_bound(k: int, grad: np.ndarray) -> float | None:
    """The finiteness rule by a pass over ``grad``: a bound on its entries (``max_abs_bound``), or, when the sum of
    squares overflows, the exact scan: None if it passes, ``NonFiniteGradient`` for input ``k`` if not."""
    bound = max_abs_bound(grad)
    if bound < math.inf:
        return bound
    if not all_finite(grad):
        raise NonFiniteGradient(k, grad)
    return None


def _products_finite(bound: float, terms: int, dtype: np.dtype) -> bool:
    """True when sums of ``terms`` products, whose exact magnitudes are at most ``bound``, are finite in ``dtype``.

    Computed in floating point such a sum is at most (1 + gamma) times the exact sum of |products|, with
    gamma = k eps / (1 - k eps) <= 2 k eps while k eps <= 1/2 (any summation order, with or without FMA); the
    headroom of a factor two covers the rounding of ``bound`` itself.
    """
    eps = _ROUNDING[dtype][0]
    return terms * eps <= 0.5 and bound * (1.0 + 2.0 * terms * eps) <= _HEADROOM[dtype]


def _proved_bound(bound: float, terms: int, dtype: np.dtype) -> float | None:
    """A bound on the computed sums ``_products_finite`` proves finite, or None when it cannot prove them."""
    return _rounded_products_bound(bound, terms, dtype) if _products_finite(bound, terms, dtype) else None


def _product_bound(k: int, product: np.ndarray, g: np.ndarray, g_norm: float, factor: np.ndarray,
                   terms: int) -> tuple[float | None, float]:
    """The finiteness rule for input ``k``'s gradient ``product``, g times ``factor`` summed over ``terms``:
    (a bound on its entries, g's norm bound).

    It is proved finite from the norms of its factors (Cauchy-Schwarz: an entry of A @ B is at most
    ||A||_F ||B||_F) when those read clearly fewer numbers than the product holds (each dot product also costs
    a fixed call), else scanned (``_scanned_bound``). ``g_norm`` is g's norm bound when a product of the same g
    took it already (else negative); it is returned so that the next one reuses it.
    """
    if g.size + factor.size + _PROOF_CALL < product.size:
        if g_norm < 0.0:
            g_norm = max_abs_bound(g)
        bound = _proved_bound(g_norm * max_abs_bound(factor), terms, g.dtype)
        if bound is not None:
            return bound, g_norm
    return _scanned_bound(k, product), g_norm


def matmul_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...], reference: Any) -> tuple:
    """The reference's g @ B.T and A.T @ g for two matrices, each proved finite from the norms of its factors
    when those read clearly fewer numbers than the gradient (else scanned), as ``linear_vjp`` does; other
    shapes (vectors, batches) run ``reference`` and scan its gradients."""
    A, B = res
    if A.ndim != 2 or B.ndim != 2:
        grads = reference(g, res, needs)
        for k, c in enumerate(grads):
            if c is not None and not all_finite(c):
                raise NonFiniteGradient(k, c)
        return grads
    g_norm = -1.0
    ga = gb = bound_a = bound_b = None
    if needs[0]:
        ga = g @ B.T
        bound_a, g_norm = _product_bound(0, ga, g, g_norm, B, B.shape[1])
    if needs[1]:
        gb = A.T @ g
        bound_b, g_norm = _product_bound(1, gb, g, g_norm, A, A.shape[0])
    return BoundedGrads((ga, gb), (bound_a, bound_b))


def linear_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """The reference's g @ W, g.T @ x and the column sums of g, laid out for a column-major W.

    It applies the finiteness rule to its gradients itself (``Kernel.checks_grad``): each is proved finite
    from a bound on the norms of its factors when that reads fewer numbers than a scan of the gradient,
    else scanned; the incoming g and the data are finite (the rule holds everywhere upstream).
    """
    X, W, z, out, nb, act, F = res
    if act is _RELU:
        g = np.multiply(g, out > 0, dtype=out.dtype)  # the row's partial, where(z > 0, 1, 0), as a boolean product
    elif act is not None:
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
    # The finiteness rule, by ``_product_bound``; a column sum of g is at most sqrt(n) ||g||_F. Each check also
    # gives a bound on the gradient's entries, handed on to the optimizer (``BoundedGrads``).
    n = g2.shape[0]
    g_norm = -1.0
    bx = bW = bb = None
    if gx is not None:
        bx, g_norm = _product_bound(0, gx, g2, g_norm, W, W.shape[0])
    if gW is not None:
        bW, g_norm = _product_bound(1, gW, g2, g_norm, X2, n)
    if gb is not None:
        bb = _proved_bound(g_norm * math.sqrt(n), n, g2.dtype) if 0.0 <= g_norm else None
        if bb is None:
            bb = _scanned_bound(2, gb)
    return BoundedGrads((gx, gW, gb)[:2 + nb], (bx, bW, bb)[:2 + nb])


# ---------------------------------------------------------------------------------------------------------
# cross-entropy: the work done on the (C, N) transpose
# ---------------------------------------------------------------------------------------------------------

def cross_entropy_forward(z: np.ndarray, labels: np.ndarray) -> tuple:
    """The reference's mean of logsumexp(z_i) - z_i[y_i], computed on the transpose.

    With few classes, NumPy's reductions along the short last axis of (N, C) cost a call per row
    (z.max(axis=1) is ~8x slower than the same max across the rows of the (C, N) transpose).
    """
    n = z.shape[0]
    labels = labels.copy()  # NOTE: the caller's array: refilled with the next batch before backward, say
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
    k = g / dtype.type(max(n, 1))  # the reference's divisor: an empty batch has the loss 0 and no gradient
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
    except (FloatingPointError, RuntimeWarning):  # overflow raised (Optimizer.step's errstate, or warnings made
        return math.inf                             # errors by the caller's filters): the caller's exact scan decides
    return math.sqrt((squares + n * tiny) / slack)


def scaled_bound(factor: float, bound: float, dtype: np.dtype) -> float | None:
    """A bound on every |factor * x_i| computed in ``dtype``, given ``bound`` >= every |x_i|; None for an
    unknown dtype. Two roundings (``factor`` to the dtype, then the product) are covered, and a factor beyond
    the dtype's largest float (which rounds to infinity there, so that even 0 * factor is NaN) bounds nothing.

    >>> scaled_bound(0.1, 2.0, np.dtype(np.float32)) >= 0.2, scaled_bound(1e39, 0.0, np.dtype(np.float32))
    (True, inf)
    """
    rounding = _ROUNDING.get(dtype)
    if rounding is None:
        return None
    if not abs(factor) <= 2.0 * _HEADROOM[dtype]:
        return math.inf
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


# Below half the gap between the largest float and the next power of two, 2**(emax - p): adding a number this
# small to ANY finite float rounds to a finite float (round to nearest overflows only from max + ulp(max) / 2).
_NEVER_OVERFLOWS = {np.dtype(t): math.ldexp(1.0, int(np.finfo(t).maxexp) - 1 - int(np.finfo(t).nmant) - 1)
                    for t in (np.float16, np.float32, np.float64)}


# The dtypes in which a finite sum of squares alone proves a step below ``_NEVER_OVERFLOWS``: every square is then
# finite, so every |delta_i| is at most the square root of the largest float (float32: 1.8e19 < 2**103), and the
# bound's arithmetic can be skipped (float16's square root of its largest float, 256, is above its limit, 16).
_FINITE_SQUARES_SUFFICE = frozenset(t for t, limit in _NEVER_OVERFLOWS.items()
                                    if 2.0 * math.sqrt(float(np.finfo(t).max)) < limit)


def sgd_step(theta: np.ndarray, g: Any, lr: float, g_bound: float | None = None) -> bool:
    """theta -= lr * g in place when a norm bound proves the step finite, and True; else False with theta
    untouched (the caller's reference step then decides, and refuses with its error).

    Plain SGD's step is delta = -lr * g (``SGD._update``) added to theta; the reference checks g, then theta +
    delta, with exact scans. Here one dot product over delta bounds every |delta_i| (and is inf or NaN when g
    holds an inf or a NaN); below ``_NEVER_OVERFLOWS`` no finite theta_i + delta_i can round to infinity (a
    finite sum of squares already puts every |delta_i| below the square root of the largest float, far below
    that), so the sum is written straight into the parameter, whose entries are finite (every writer of a
    parameter keeps them so: Tensor data is checked, and so is every optimizer step). The cost is the inline
    ``p.data -= lr * p.grad`` plus that one dot product; the numbers are the reference's: -lr * g in theta's
    dtype, then the sum.

    >>> t = np.array([1.0, 2.0]); sgd_step(t, np.array([10.0, -10.0]), 0.1), t
    (True, array([0., 3.]))
    >>> sgd_step(t, np.array([np.nan, 0.0]), 0.1), t
    (False, array([0., 3.]))

    ``g_bound``, a number known to be >= every |g_i| (the backward pass's, ``Tensor._grad_bound``), proves the
    step without the dot product when lr times it is below ``_NEVER_OVERFLOWS``.
    """
    if (type(g) is not np.ndarray or type(theta) is not np.ndarray or g.dtype != theta.dtype
            or g.shape != theta.shape or not theta.flags.writeable):  # a float parameter (a Value) included
        return False
    dtype = theta.dtype
    limit = _NEVER_OVERFLOWS.get(dtype)
    if limit is None:
        return False
    if g_bound is not None and scaled_bound(lr, g_bound, dtype) < limit:  # the step is proved already
        np.add(theta, np.multiply(g, -lr), out=theta)
        return True
    try:
        delta = np.multiply(g, -lr)
        if dtype in _FINITE_SQUARES_SUFFICE:
            flat = delta.ravel(order="K")
            if not math.isfinite(_dot(flat, flat)):  # NaN or inf in g, or a step whose squares overflow
                return False
        elif not max_abs_bound(delta) < limit:
            return False
    except FloatingPointError:  # lr * g overflows (inside Optimizer.step, overflow raises): the reference refuses
        return False
    np.add(theta, delta, out=theta)
    return True


# ---------------------------------------------------------------------------------------------------------
# The tensor engine's backward pass
# ---------------------------------------------------------------------------------------------------------

__all__ += ["tensor_backward"]


def tensor_backward(root: Any, seed: np.ndarray, order: list) -> None:
    """``graph.run(graph.backprop(root, seed))`` on a Tensor graph whose topological order is ``order``.

    The reference's steps in the reference's order (the same ``Tensor.vjp`` calls, the same sums, the same
    ``.grad`` writes, the same errors), without what only the stepper needs: the generator, its events and the
    index of each node. Each S leaves the dictionary when its node is finished, so the gradients of the
    intermediate results are freed as the pass goes, instead of all at its end. A bound that a kernel's
    finiteness check gave on a kept gradient (``BoundedGrads``) goes to ``Tensor._grad_bound``; reading or
    setting ``.grad`` forgets it, so it can never describe an array someone may have changed since.

    >>> from microgradx import Tensor, topological_order
    >>> w = Tensor([1.0, 2.0]); y = (w * w).sum()
    >>> tensor_backward(y, np.ones(()), topological_order(y)); w.grad
    array([2., 4.])
    """
    S = {root: seed}
    bounds: dict[Any, float] = {}  # a kernel's bound on the entries of an S that nothing was added to since
    get, pop = S.get, S.pop
    for node in reversed(order):
        s = pop(node, None)
        if s is None:  # a tensor that takes no gradient
            continue
        if node.keeps_grad:
            g0 = node._grad
            # NOTE: the seed is the caller's array (or another tensor's data): a .grad gets its own copy
            node.grad = (s.copy() if s is seed else s) if g0 is None else node.add_grads(g0, s, True)
            if g0 is None and bounds:
                node._grad_bound = bounds.get(node)  # after the setter, which forgets any earlier bound
        parents = node.parents
        if parents:
            grads = node.vjp(s)
            found = grads.bounds if type(grads) is BoundedGrads else (None,) * len(grads)
            for p, c, b in zip(parents, grads, found):
                if c is not None:
                    prev = get(p)
                    if prev is None:
                        S[p] = c
                        if b is not None:
                            bounds[p] = b
                    else:
                        S[p] = p.add_grads(prev, c)
                        bounds.pop(p, None)  # a sum: the bound was on one of its terms


# ---------------------------------------------------------------------------------------------------------
# The scalar engine: Value's hottest operators, its topological order and its backward pass
# ---------------------------------------------------------------------------------------------------------
#
# The references are the row-driven node builders and ``Value.vjp`` in ``value.py``, the operator loop of
# ``scalar_nn.Neuron`` and the generic ``graph.topological_order`` and ``graph.backprop``; ``tests/test_fast_scalar.py``
# checks that these twins build the same nodes (data, op, parents, partials, errors), the same order and the same
# gradients, bit for bit. Why they are faster: one or two Python calls per node instead of four (operator method,
# node builder, the row's forward and partials), and a neuron's whole weighted sum in one call; slots read directly
# instead of through the ``parents`` property; no tuple, iterator or set entry per node in the depth-first search,
# and no record of a node's old grad unless it is something other than +0.0; gradients summed in the nodes' own
# ``grad`` slots instead of a {node: S} dictionary, an add node passing S on without a multiplication, and one
# finiteness test per leaf instead of one per edge. An operator allocates one object the garbage collector tracks
# (the node; micrograd allocates about seven) and the backward pass none per node.

__all__ += ["VALUE_KERNELS", "value_kernels", "value_weighted_sum", "value_order", "value_backward", "REDEFINED_NODES"]

VALUE_KERNELS = ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__neg__", "relu", "tanh")


def value_kernels(cls: type, reference: dict[str, Any]) -> dict[str, Any]:
    """Fast twins of the Value operator methods named in ``VALUE_KERNELS``, {name: function}.

    Each handles the common case (a Value or float operand, a finite result) and hands everything else (other
    operand types, a non-finite result, for which the reference raises the op's DomainError, and
    ``reference_only()``) to ``reference[name]``, the method the op table built. Each records the node as the
    reference does: the row's forward and partials (add: 1, 1; sub: 1, -1; mul: y, x; neg: -1; relu: 1 or 0;
    tanh: 1 - out**2), in the slots ``Value`` documents.
    """
    from .ops import ADD, MUL, NEG, OPS, SUB

    RELU, TANH = OPS["relu"], OPS["tanh"]
    new = object.__new__
    tanh = math.tanh

    def unary(op: Any, a: Any, out: float, za: float) -> Any:
        v = new(cls)
        v.data = out
        v.grad = 0.0
        v._op = op
        v._a = a
        v._za = za
        v._b = v._zb = None
        return v

    ref_add, ref_radd = reference["__add__"], reference["__radd__"]
    ref_sub, ref_rsub = reference["__sub__"], reference["__rsub__"]
    ref_mul, ref_rmul = reference["__mul__"], reference["__rmul__"]

    # NOTE: the binary kernels are written inline, one Python call per node and one statement per slot (a helper
    # call or a tuple assignment costs more). A float operand becomes a leaf as the reference's Value(other) makes it;
    # a non-finite float gives a non-finite result, which goes to the reference with the original operand, so
    # the reference raises its own error; so does everything under reference_only() (ENABLED is read last, in the
    # one test the common case passes). ``out - out == 0.0`` is the finiteness test (inf - inf and nan - nan
    # are nan), cheaper than a call to math.isfinite.
    def __add__(self: Any, other: Any) -> Any:
        if type(other) is cls:
            b = other
        elif type(other) is float:
            b = new(cls)
            b.data = other
            b.grad = 0.0
            b._op = b._a = b._b = b._za = b._zb = None
        else:
            return ref_add(self, other)
        out = self.data + b.data
        if out - out == 0.0 and ENABLED:
            v = new(cls)
            v.data = out
            v.grad = 0.0
            v._op = ADD
            v._a = self
            v._b = b
            v._za = v._zb = 1.0
            return v
        return ref_add(self, other)

    def __radd__(self: Any, other: Any) -> Any:  # other + self, other a number
        if ENABLED and type(other) is float:
            out = other + self.data
            if out - out == 0.0:
                a = new(cls)
                a.data = other
                a.grad = 0.0
                a._op = a._a = a._b = a._za = a._zb = None
                v = new(cls)
                v.data = out
                v.grad = 0.0
                v._op = ADD
                v._a = a
                v._b = self
                v._za = v._zb = 1.0
                return v
        return ref_radd(self, other)

    def __sub__(self: Any, other: Any) -> Any:
        if type(other) is cls:
            b = other
        elif type(other) is float:
            b = new(cls)
            b.data = other
            b.grad = 0.0
            b._op = b._a = b._b = b._za = b._zb = None
        else:
            return ref_sub(self, other)
        out = self.data - b.data
        if out - out == 0.0 and ENABLED:
            v = new(cls)
            v.data = out
            v.grad = 0.0
            v._op = SUB
            v._a = self
            v._b = b
            v._za = 1.0
            v._zb = -1.0
            return v
        return ref_sub(self, other)

    def __rsub__(self: Any, other: Any) -> Any:  # other - self, other a number
        if ENABLED and type(other) is float:
            out = other - self.data
            if out - out == 0.0:
                a = new(cls)
                a.data = other
                a.grad = 0.0
                a._op = a._a = a._b = a._za = a._zb = None
                v = new(cls)
                v.data = out
                v.grad = 0.0
                v._op = SUB
                v._a = a
                v._b = self
                v._za = 1.0
                v._zb = -1.0
                return v
        return ref_rsub(self, other)

    def __mul__(self: Any, other: Any) -> Any:
        if type(other) is cls:
            b = other
        elif type(other) is float:
            b = new(cls)
            b.data = other
            b.grad = 0.0
            b._op = b._a = b._b = b._za = b._zb = None
        else:
            return ref_mul(self, other)
        x = self.data
        y = b.data
        out = x * y
        if out - out == 0.0 and ENABLED:
            v = new(cls)
            v.data = out
            v.grad = 0.0
            v._op = MUL
            v._a = self
            v._b = b
            v._za = y
            v._zb = x
            return v
        return ref_mul(self, other)

    def __rmul__(self: Any, other: Any) -> Any:  # other * self, other a number
        if ENABLED and type(other) is float:
            y = self.data
            out = other * y
            if out - out == 0.0:
                a = new(cls)
                a.data = other
                a.grad = 0.0
                a._op = a._a = a._b = a._za = a._zb = None
                v = new(cls)
                v.data = out
                v.grad = 0.0
                v._op = MUL
                v._a = a
                v._b = self
                v._za = y
                v._zb = other
                return v
        return ref_rmul(self, other)

    ref_neg, ref_relu, ref_tanh = reference["__neg__"], reference["relu"], reference["tanh"]

    # NOTE: a node's data is finite unless it was set by hand; then relu and tanh could give a finite number (relu
    # of nan is 0, tanh of inf is 1), so they test their input, and the reference raises its error.
    def __neg__(self: Any) -> Any:
        out = -self.data
        return unary(NEG, self, out, -1.0) if out - out == 0.0 and ENABLED else ref_neg(self)

    def relu(self: Any) -> Any:  # the activations are written inline too: they run once per neuron
        x = self.data
        if x - x != 0.0 or not ENABLED:
            return ref_relu(self)
        v = new(cls)
        if x > 0:
            v.data = x
            v._za = 1.0
        else:
            v.data = 0.0
            v._za = 0.0
        v.grad = 0.0
        v._op = RELU
        v._a = self
        v._b = v._zb = None
        return v

    def tanh_(self: Any) -> Any:
        x = self.data
        if x - x != 0.0 or not ENABLED:
            return ref_tanh(self)
        out = tanh(x)
        v = new(cls)
        v.data = out
        v.grad = 0.0
        v._op = TANH
        v._a = self
        v._za = 1.0 - out * out
        v._b = v._zb = None
        return v

    kernels = {"__add__": __add__, "__radd__": __radd__, "__sub__": __sub__, "__rsub__": __rsub__,
               "__mul__": __mul__, "__rmul__": __rmul__, "__neg__": __neg__, "relu": relu, "tanh": tanh_}
    for name, kernel in kernels.items():
        kernel.__name__ = kernel.__qualname__ = name
        kernel.__doc__ = reference[name].__doc__
    return kernels


def value_weighted_sum(cls: type, w: Any, x: Any, b: Any) -> Any:
    """``w[0] * x[0] + w[1] * x[1] + ... + b`` built as the operators build it, left to right; None to hand back.

    The reference is the loop in ``scalar_nn.Neuron.__call__`` (the ``*`` and ``+`` kernels above, node by
    node); here the same mul and add nodes (partials: x_i, w_i; 1, 1) are built in one Python call instead of
    two per term. It returns None, and the caller runs the reference (which raises the op's error where there
    is one), under ``reference_only()`` and for an operand that is not a ``cls`` (a float input), an empty sum or
    a non-finite result.

    >>> from microgradx import Value
    >>> w, x = [Value(2.0), Value(3.0)], [Value(0.5), Value(-1.0)]
    >>> value_weighted_sum(Value, w, x, Value(1.0)).data
    -1.0
    """
    if not ENABLED:
        return None
    new = object.__new__
    mul, add = _MUL, _ADD
    acc = None
    for wi, xi in zip(w, x):
        if type(wi) is not cls or type(xi) is not cls:
            return None
        p = wi.data
        q = xi.data
        out = p * q
        if out - out != 0.0:
            return None
        m = new(cls)
        m.data = out
        m.grad = 0.0
        m._op = mul
        m._a = wi
        m._b = xi
        m._za = q
        m._zb = p
        if acc is None:
            acc = m
            continue
        out = acc.data + out
        if out - out != 0.0:
            return None
        v = new(cls)
        v.data = out
        v.grad = 0.0
        v._op = add
        v._a = acc
        v._b = m
        v._za = v._zb = 1.0
        acc = v
    if acc is None or b is None:
        return acc
    if type(b) is not cls:
        return None
    out = acc.data + b.data
    if out - out != 0.0:
        return None
    v = new(cls)
    v.data = out
    v.grad = 0.0
    v._op = add
    v._a = acc
    v._b = b
    v._za = v._zb = 1.0
    return v


class _Unset:
    """The mark a node's ``grad`` holds during ``value_backward``: reached, no gradient arrived yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no gradient yet>"


_UNSET = _Unset()
_ZERO, _NEG_ZERO = 0.0, -0.0  # the kernels' fresh grad is this very object (one constant per module)
_copysign = math.copysign
# The marks live in the nodes, and threads can share nodes (one model's parameters): one marking pass at a time.
# (Reentrant, so that the reference the backward pass re-runs, or a grad's own __add__, may call back in.)
_MARKING = threading.RLock()
# The Value subclasses that redefine what the reference pass reads of a node (its vjp, parents, ...), noted by
# Value.__init_subclass__: this pass reads Value's own slots, so a graph holding one of their nodes runs the
# reference.
REDEFINED_NODES: set[type] = set()


def value_order(root: Any) -> list:
    """``graph.topological_order`` of a Value graph, reading the parent slots directly: the same list.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); y = x * x + x
    >>> [n.label or n.op.name for n in value_order(y)]
    ['x', 'mul', 'add']
    """
    with _MARKING:
        return _order(root)


def _order(root: Any) -> list:
    """The order ``value_order`` describes, every grad given back; its caller holds ``_MARKING``."""
    order: list = []
    kept: dict = {}
    try:
        _order_marking(root, order, kept)
        _give_back(order, kept)
    except BaseException:  # interrupted, even inside the first give-back: give back every grad (twice is harmless)
        _give_back(order, kept)
        raise
    return order


def _give_back(nodes: Any, kept: dict) -> None:
    """Every node's grad as it was before ``_order_marking``: +0.0, or the value ``kept`` holds for it."""
    zero = _ZERO
    for n in nodes:
        n.grad = zero
    for n, g0 in kept.items():
        n.grad = g0


def _unmark(root: Any, kept: dict) -> None:
    """Every node behind ``root`` still marked ``_UNSET`` given its grad back (after an interrupted search).

    A node is marked only while a marked child is looked at, so the marked nodes hang together from ``root``:
    a walk through marked nodes alone finds them all, whatever the search's own lists held when it stopped.
    """
    unset = _UNSET
    if root.grad is not unset:
        return
    root.grad = kept.get(root, _ZERO)
    stack = [root]
    while stack:
        n = stack.pop()
        for p in (n._a, n._b):
            if p is not None and p.grad is unset:
                p.grad = kept.get(p, _ZERO)
                stack.append(p)


def _plus_zero(g: Any) -> bool:
    """Whether ``g`` is the float +0.0 (a fresh grad, though not the kernels' own 0.0 object): ``_plus_zero(-0.0)``
    is False."""
    return type(g) is float and g == 0.0 and _copysign(1.0, g) > 0.0


def _order_marking(root: Any, order: list, kept: dict) -> None:
    """Fill ``order`` with the topological order and ``kept`` with {node: grad before} for the nodes whose grad
    was not +0.0, every node's ``grad`` set to ``_UNSET``. (The caller owns both, so that it can give every grad
    back after an interrupt at any point, even between this function's end and its own next statement.)

    The reference keeps (node, iterator over its parents) on its stack and a set of the nodes it has reached;
    here the mark in ``grad`` says "reached", and the stack holds the nodes waiting for a parent's subgraph. The
    search walks into a node's first parent still to explore that has a subgraph of its own; when that subgraph
    is finished, the node is popped and looked at again (its first parent is now marked, so its second is next).
    Post-order as the reference: the first parent's subgraph first, a node reached again skipped, a leaf finished
    as soon as it is reached. A grad that is the float +0.0 (a fresh node's, nearly always) is not kept: the
    backward pass knows it; any other (an earlier backward's sum, None, a Value) is kept in the dict.
    """
    stack: list = []
    unset, zero = _UNSET, _ZERO
    n = root
    try:
        g = n.grad
        if g is not zero and not _plus_zero(g):
            kept[n] = g
        n.grad = unset
        while True:
            # n is marked; walk into its first parent still to explore that has parents of its own. (The two
            # parents are handled by two copies of the same lines: a loop over them would build a tuple per node.)
            a = n._a
            if a is not None:
                g = a.grad
                if g is not unset:
                    if g is not zero and not _plus_zero(g):
                        kept[a] = g
                    a.grad = unset
                    if a._a is not None:
                        stack.append(n)
                        n = a
                        continue
                    order.append(a)
                b = n._b
                if b is not None:
                    g = b.grad
                    if g is not unset:
                        if g is not zero and not _plus_zero(g):
                            kept[b] = g
                        b.grad = unset
                        if b._a is not None:
                            stack.append(n)
                            n = b
                            continue
                        order.append(b)
            order.append(n)
            if not stack:
                return
            n = stack.pop()
    except BaseException:  # interrupted: give every node its grad back
        _unmark(root, kept)
        raise


def _add_kept(kept: dict) -> bool:
    """Each kept node's grad (holding its S, a finite float) set to its earlier grad plus S, as the reference adds
    them; False at the first sum that is not a finite float (the caller then gives every grad back)."""
    for n, g0 in kept.items():
        s = n.grad
        if g0 is None:  # a grad the user cleared
            n.grad = s
        elif s == 0.0 and type(g0) is float and g0 == 0.0:  # a zero: one of the two shared floats
            n.grad = _ZERO if _copysign(1.0, g0 + s) > 0.0 else _NEG_ZERO
        else:
            total = g0 + s
            if isinstance(total, float) and not math.isfinite(total):  # 1e308 + 1e308; an earlier grad nan
                return False
            n.grad = total
    return True


def value_backward(root: Any, seed: float) -> None:
    """``graph.run(graph.backprop(root, seed))`` on a Value graph: adds d root / d n to every ``n.grad``.

    S(n) is summed in ``n.grad`` itself (``_UNSET`` while no child has contributed), in the reference's order,
    so every sum rounds as the reference's does; then ``n.grad = old + S`` (S itself when old is +0.0, with
    -0.0 + +0.0 as +0.0). Finiteness is checked on the leaves' S alone: a non-finite contribution or sum stays
    non-finite in every sum it enters, and a node passes it on to each parent (inf * z and nan * z are not finite
    for a finite z), so it reaches a leaf; and on each ``old + S`` where old is not +0.0. Then every ``grad`` is
    given back and the reference runs, to raise its DomainError about the first bad edge or sum, and every
    ``grad`` is given back again.

    >>> from microgradx import Value
    >>> x = Value(3.0); y = x * x
    >>> value_backward(y, 1.0); x.grad
    6.0
    """
    with _MARKING:
        _backward(root, seed)


def _reference_backward(root: Any, seed: float, order: list, kept: dict) -> None:
    """Every grad given back as it was before the marking, then the reference pass (``graph.backprop``)."""
    from . import graph

    _give_back(order, kept)
    graph.run(graph.backprop(root, seed))


def _backward(root: Any, seed: float) -> None:
    """The pass ``value_backward`` describes; its caller holds ``_MARKING``."""
    unset, zero, add = _UNSET, _ZERO, _ADD
    order: list = []
    kept: dict = {}
    # NOTE: every statement that marks or sums a grad is inside the ``try``: an interrupt (Ctrl-C) anywhere gives
    # every grad back.
    try:
        _order_marking(root, order, kept)
        if REDEFINED_NODES and not REDEFINED_NODES.isdisjoint(map(type, order)):
            _reference_backward(root, seed, order, kept)
            return
        root.grad = seed
        # A kept grad is nearly always a parameter's (a leaf's, not zeroed since the last step): then an inner node
        # with S = 0 needs no look-up in ``kept``.
        inner_kept = any(n._a is not None for n in kept)
        for n in reversed(order):
            s = n.grad
            a = n._a
            if a is None:
                if s - s != 0.0:  # inf - inf and nan - nan are nan
                    break
                if s == 0.0 and n not in kept:
                    n.grad = zero
                continue
            b = n._b
            if n._op is add:  # both partials 1.0, and s * 1.0 is s, bit for bit: no new float, grads shared
                g = a.grad
                a.grad = s if g is unset else g + s
                g = b.grad
                b.grad = s if g is unset else g + s
            else:
                z = n._za
                c = s if z == 1.0 else s * z
                g = a.grad
                a.grad = c if g is unset else g + c
                if b is not None:
                    z = n._zb
                    c = s if z == 1.0 else s * z
                    g = b.grad
                    b.grad = c if g is unset else g + c
            # +0.0 + S is S, and +0.0 for S = -0.0; many nodes get a zero (behind a relu that is off): one float
            if s == 0.0 and (not inner_kept or n not in kept):
                n.grad = zero
        else:
            if _add_kept(kept):
                return
        # A non-finite S, or an earlier grad plus S that is not finite: the reference, run on the grads as they were,
        # raises its error about the first bad edge or sum.
        _reference_backward(root, seed, order, kept)
    except BaseException:
        _give_back(order, kept)
        raise


# ---------------------------------------------------------------------------------------------------------
# Convolution: the windows of the flattened image (the twin of functional's conv2d row)
# ---------------------------------------------------------------------------------------------------------

def _grouped_matmul(A: np.ndarray, B: np.ndarray, groups: int, out: np.ndarray) -> np.ndarray:
    """A @ B group by group into ``out``: A (G a, k), B (G k, l) -> (G a, l); one BLAS call when G = 1."""
    a, k = A.shape[0] // groups, B.shape[0] // groups
    for g in range(groups):
        np.matmul(A[g * a:(g + 1) * a], B[g * k:(g + 1) * k], out=out[g * a:(g + 1) * a])
    return out


# Elements of the window matrix filled per batch of images before its product is taken, so that BLAS reads the
# windows from the cache (measured on 64 images of 28x28, 16 -> 32 channels, 3x3, one batch buffer reused: forward
# and backward fastest in batches of 4 images (about 1.8 MB of float32 windows); batches of 1, 2, 8 or 16 images
# took 4-25% longer each way, and keeping every batch's windows for the backward pass 15% longer forward).
_IM2COL_BLOCK = 1 << 19


def _images_per_batch(n: int, window_entries: int) -> int:
    """How many of the n images to unroll at a time when one image has ``window_entries`` window entries: at
    least one, also for an empty batch or images without channels (the loops over batches then run zero times
    or unroll nothing)."""
    return max(1, min(n, _IM2COL_BLOCK // max(1, window_entries)))


def _tap_slices(i: int, j: int, stride: tuple[int, int], dilation: tuple[int, int],
                out: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the padded image that kernel tap (i, j) reads for the Ho x Wo outputs."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out
    return slice(i * dh, i * dh + sh * (ho - 1) + 1, sh), slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)


def _tap_offset(i: int, j: int, pad: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """(a, b): kernel tap (i, j) of a stride-1 "same" convolution reads input pixel (p + a, q + b) for output
    pixel (p, q)."""
    return i * dilation[0] - pad[0], j * dilation[1] - pad[1]


def _zero_outside(cols6: np.ndarray, pad: tuple[int, int], dilation: tuple[int, int]) -> None:
    """Zero the entries of the (c, kh, kw, n, h, w) windows whose source pixel (p + a, q + b) lies outside the
    h x w image: with a flat shift they hold a neighbouring row's, channel's or image's pixel instead of the
    padding. The rows to zero depend on the tap's row i only and the columns on its column j only, so one
    assignment per kernel row and one per kernel column cover every tap (per tap: four times the NumPy calls).
    """
    kh, kw, _, h, w = cols6.shape[1:]
    for i in range(kh):
        a = _tap_offset(i, 0, pad, dilation)[0]
        if a:
            cols6[:, i, :, :, slice(min(h, -a)) if a < 0 else slice(max(0, h - a), None)] = 0
    for j in range(kw):
        b = _tap_offset(0, j, pad, dilation)[1]
        if b:
            cols6[:, :, j, :, :, slice(min(w, -b)) if b < 0 else slice(max(0, w - b), None)] = 0


def _windows_same(X: np.ndarray, images: slice, kernel: tuple[int, int], pad: tuple[int, int],
                  dilation: tuple[int, int], cols6: np.ndarray) -> None:
    """The windows of a stride-1 "same" convolution for a batch of images of X (n, c, h, w), into ``cols6``
    (c, kh, kw, images, h, w).

    Output pixel (p, q) of tap (i, j) reads input pixel (p + a, q + b), one fixed offset in the flattened
    (h, w) image, so each tap is one copy of whole flattened images (about a third faster than copying image
    row by image row from a padded copy); the entries whose source lies outside the image (they hold a
    neighbouring row's or channel's pixel, or were not written) are then zeroed.
    """
    c, h, w = X.shape[1:]
    size = h * w
    part = X[images]
    src = part.reshape(part.shape[0], c, size).transpose(1, 0, 2)      # (c, images, h w), a view
    rows = cols6.reshape(c, *kernel, src.shape[1], size)                # a view: the buffer is contiguous
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            a, b = _tap_offset(i, j, pad, dilation)
            if abs(a) >= h or abs(b) >= w:     # every source of this tap lies in the padding: zeroed below
                continue
            k = a * w + b                      # |k| < h w
            if k >= 0:
                rows[:, i, j, :, :size - k] = src[:, :, k:]
            else:
                rows[:, i, j, :, -k:] = src[:, :, :size + k]
    _zero_outside(cols6, pad, dilation)


class _Phases:
    """The padded input of a convolution split into its stride phases, so that the input gradient's fold adds
    whole flattened images per kernel tap instead of one short strided row at a time.

    Phase (r, t) holds the padded image's pixels (sh P + r, sw Q + t), laid out (Hph + 1) x Wph (one spare zero
    row). Kernel tap (i, j) touches phase ((dh i) mod sh, (dw j) mod sw) at rows P = p + (dh i) div sh and
    columns Q = q + (dw j) div sw: with the output gradient laid out Ho x Wph (the columns past Wo hold zeros,
    so wherever they land they add nothing), that is one fixed offset in the flattened phase, so each tap is
    one contiguous slice-add per channel and image.
    """

    def __init__(self, shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int]) -> None:
        _, _, h, w = shape
        (sh, sw), ((pt, pb), (pl, pr)) = stride, padding
        self.stride = stride
        self.grid = (-(-(h + pt + pb) // sh) + 1, -(-(w + pl + pr) // sw))        # (Hph + 1, Wph)
        self.width = self.grid[1]                                   # of the output gradient's rows
        # (phase, offset in the flattened phase) per tap, in (i, j) order
        self.taps = [(((dilation[0] * i) % sh, (dilation[1] * j) % sw),
                      (dilation[0] * i) // sh * self.grid[1] + (dilation[1] * j) // sw)
                     for i in range(kernel[0]) for j in range(kernel[1])]
        # per phase: the image pixels it holds, as (image rows, image columns, phase rows, phase columns)
        self.pixels = {}
        for r in range(sh):
            for t in range(sw):
                y0, x0 = (r - pt) % sh, (t - pl) % sw
                ny, nx = len(range(y0, h, sh)), len(range(x0, w, sw))
                P0, Q0 = (y0 + pt) // sh, (x0 + pl) // sw
                self.pixels[r, t] = (slice(y0, h, sh), slice(x0, w, sw), slice(P0, P0 + ny), slice(Q0, Q0 + nx))

    def buffer(self, c: int, m: int, dtype: np.dtype) -> np.ndarray:
        """Zeroed phases for m images of c channels: (sh, sw, c, m, Hph + 1, Wph)."""
        return np.zeros((*self.stride, c, m, *self.grid), dtype=dtype)

    def gather(self, phases: np.ndarray, out: np.ndarray) -> None:
        """The images out (k, c, h, w) from the first k images of ``phases``."""
        k = out.shape[0]
        for (r, t), (ys, xs, Ps, Qs) in self.pixels.items():
            out[:, :, ys, xs] = phases[r, t, :, :k, Ps, Qs].transpose(1, 0, 2, 3)

    def tap_views(self, phases: np.ndarray, k: int) -> list[tuple[np.ndarray, int]]:
        """Per tap, the (c, k, (Hph + 1) Wph) flattened phase it touches and its offset there."""
        c, length = phases.shape[2], self.grid[0] * self.grid[1]
        return [(phases[r, t, :, :k].reshape(c, k, length), off) for (r, t), off in self.taps]


def conv2d_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, stride: tuple[int, int],
                   padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int],
                   groups: int) -> tuple:
    """The reference's convolution as one matrix product per group over the unrolled windows (im2col).

    The reference contracts a (n, c, ho, wo, kh, kw) window view with ``einsum``; here the windows are copied
    into a matrix laid out (c, i, j) x (n, p, q), channels first: each kernel tap then copies whole image rows
    (or, stride 1 with the output grid the input grid, whole flattened images: ``_windows_same``) for all
    channels at once, and the products waste no column. The matrix is filled and multiplied a few images at a
    time, so BLAS reads windows still in cache, and each product is added to the bias while it is moved into
    (n, o, p, q) order. A "same" convolution reuses one batch's buffer and keeps only a copy of the
    input, from which its backward pass fills the windows again (cheaper than writing all of them to memory and
    reading them back); other convolutions keep the whole matrix for the weight gradient.
    ``benchmarks/conv.py`` measures it, and what BLAS alone costs for the same products.
    """
    n, c, h, w = X.shape
    o, cg, kh, kw = W.shape
    ((pt, pb), (pl, pr)), (dh, dw), (sh, sw) = padding, dilation, stride
    hp, wp = h + pt + pb, w + pl + pr
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    same, size = stride == (1, 1) and (ho, wo) == (h, w), ho * wo
    m = _images_per_batch(n, c * kh * kw * size)
    W2, out = W.reshape(o, cg * kh * kw), np.empty((n, o, ho, wo), dtype=X.dtype)
    if same:
        buf = np.empty(c * kh * kw * m * size, dtype=X.dtype)    # one batch's windows, reused
    else:
        cols6 = np.empty((c, kh, kw, n, ho, wo), dtype=X.dtype)
        padded = np.zeros((c, m, hp, wp), dtype=X.dtype)      # one batch; its padding stays zero throughout
    prod = np.empty((o, m * size), dtype=X.dtype)
    for s in range(0, n, m):              # fill a batch of images' windows, multiply while they are in cache
        e = min(n, s + m)
        if same:
            cols = buf[:c * kh * kw * (e - s) * size].reshape(c * kh * kw, (e - s) * size)
            _windows_same(X, slice(s, e), (kh, kw), (pt, pl), dilation, cols.reshape(c, kh, kw, e - s, ho, wo))
        else:
            padded[:, :e - s, pt:pt + h, pl:pl + w] = X[s:e].transpose(1, 0, 2, 3)
            for i in range(kh):
                for j in range(kw):
                    cols6[:, i, j, s:e] = padded[(slice(None), slice(0, e - s),
                                                  *_tap_slices(i, j, stride, dilation, (ho, wo)))]
            cols = cols6.reshape(c * kh * kw, n * size)[:, s * size:e * size]
        part = _grouped_matmul(W2, cols, groups, prod[:, :(e - s) * size])
        part = part.reshape(o, e - s, ho, wo).transpose(1, 0, 2, 3)                # (images, o, ho, wo)
        if bias:
            np.add(part, bias[0][:, None, None], out=out[s:e])
        else:
            out[s:e] = part
    # NOTE: a copy of the input, not the caller's array: changed before the backward pass, it would give the
    # gradient of another forward pass (the reference's windows are a copy too)
    windows = X.copy() if same else cols6.reshape(c * kh * kw, n * size)
    return out, (X.shape, W, len(bias), windows, same, stride, padding, dilation, groups)


def _col2im_same(dcols: np.ndarray, pad: tuple[int, int], dilation: tuple[int, int], out: np.ndarray) -> None:
    """Fold the (c, kh, kw, n, h, w) window gradients of a stride-1 "same" convolution back onto the image, into
    ``out`` (c, n h w), overwriting ``dcols``.

    When the output grid is the input grid, kernel tap (i, j) moves every entry by one fixed offset in the
    flattened (n, h, w) image, so its add is a single long contiguous slice instead of one short add per image
    row (about twice as fast); the entries whose target falls in the padding would wrap onto the neighbouring row
    or image, so they are zeroed first.

    >>> out = np.empty((1, 4)); _col2im_same(np.ones((1, 1, 3, 1, 1, 4)), (0, 1), (1, 1), out); out.tolist()
    [[2.0, 3.0, 3.0, 2.0]]
    """
    c, kh, kw, n, h, w = dcols.shape
    size = n * h * w
    out[...] = 0
    _zero_outside(dcols, pad, dilation)
    for i in range(kh):
        for j in range(kw):
            a, b = _tap_offset(i, j, pad, dilation)
            k, flat = a * w + b, dcols[:, i, j].reshape(c, size)
            if abs(k) >= size:                        # every target of this tap lies in the padding
                continue
            if k >= 0:
                out[:, k:] += flat[:, :size - k]
            else:
                out[:, :size + k] += flat[:, -k:]


def _conv2d_vjp_same(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """``conv2d_vjp`` for a stride-1 "same" convolution, a few images at a time: the windows filled again from
    the input for the weight gradient, and the window gradients folded back onto the input gradient by
    ``_col2im_same``, so every batch's buffers are written and read while they are in cache."""
    xshape, W, nb, X, _, _, ((pt, _), (pl, _)), dilation, groups = res
    n, c, h, w = xshape
    o, cg, kh, kw = W.shape
    og, k, rows, size = o // groups, cg * kh * kw, c * kh * kw, h * w
    m = _images_per_batch(n, rows * size)
    # one buffer holds a batch's windows and then, once the weight gradient has used them, its window gradients
    gbuf, wbuf, gW, gb = np.empty(o * m * size, g.dtype), np.empty(rows * m * size, g.dtype), None, None
    if needs[0]:
        gx, gxc, Wg = np.empty(xshape, g.dtype), np.empty(m * c * size, g.dtype), W.reshape(groups, og, k)
    if needs[1]:
        gW, part = np.zeros((k, o), g.dtype), np.empty((k, o), g.dtype)
    if nb and needs[2]:
        gb = np.zeros(o, g.dtype)
    for s in range(0, n, m):
        e = min(n, s + m)
        length = (e - s) * size
        g2 = gbuf[:o * length].reshape(o, length)                               # (o, images h w)
        g2.reshape(o, e - s, size)[...] = g[s:e].reshape(e - s, o, size).transpose(1, 0, 2)
        if needs[1]:
            cols = wbuf[:rows * length].reshape(rows, length)
            _windows_same(X, slice(s, e), (kh, kw), (pt, pl), dilation, cols.reshape(c, kh, kw, e - s, h, w))
            for i in range(groups):         # (cols @ g2.T) as the transpose of gW: measured a little faster
                np.matmul(cols[i * k:(i + 1) * k], g2[i * og:(i + 1) * og].T, out=part[:, i * og:(i + 1) * og])
            gW += part
        if gb is not None:
            gb += np.add.reduce(g2, axis=1)
        if needs[0]:
            # NOTE: W.T as a transposed view, not a contiguous copy: BLAS takes the transpose as a flag
            dcols = wbuf[:rows * length].reshape(rows, length)
            for i in range(groups):
                np.matmul(Wg[i].T, g2[i * og:(i + 1) * og], out=dcols[i * k:(i + 1) * k])
            # folded channels first, whole batches per slice-add, then moved: 3-D slice-adds straight into
            # (n, c, h, w) took half as long again (measured)
            fold = gxc[:c * length].reshape(c, length)
            _col2im_same(dcols.reshape(c, kh, kw, e - s, h, w), (pt, pl), dilation, fold)
            gx[s:e] = fold.reshape(c, e - s, h, w).transpose(1, 0, 2, 3)
    return (gx if needs[0] else None, None if gW is None else gW.T.reshape(W.shape), gb)[:2 + nb]


def conv2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """The reference's input, weight and bias gradients from the unrolled windows: two matrix products, and
    the input gradient folded back (col2im) with one slice-add per kernel tap into the stride phases, a few
    images at a time (a stride-1 "same" convolution: ``_conv2d_vjp_same``)."""
    if res[4]:
        return _conv2d_vjp_same(g, res, needs)
    xshape, W, nb, cols, _, stride, padding, dilation, groups = res
    n, c, h, w = xshape
    o, cg, kh, kw = W.shape
    ho, wo = g.shape[2:]
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * ho * wo)
    gx = gW = gb = None
    og, k = o // groups, cg * kh * kw
    if needs[0]:
        # NOTE: W.T as a transposed view, not a contiguous copy: BLAS takes the transpose as a flag
        grid = _Phases(xshape, (kh, kw), stride, padding, dilation)
        size = ho * grid.width
        gw = np.zeros((o, n, ho, grid.width), dtype=g.dtype)      # g laid out Wph wide: no gradient to filler
        gw[:, :, :, :wo] = g2.reshape(o, n, ho, wo)
        gw, Wg, gx = gw.reshape(o, n * size), W.reshape(groups, og, k), np.empty(xshape, dtype=g.dtype)
        m = _images_per_batch(n, c * kh * kw * size)
        dbuf, phases = np.empty(c * kh * kw * m * size, g.dtype), grid.buffer(c, m, g.dtype)
        for s in range(0, n, m):          # a few images at a time: the window gradients fold back from cache
            e = min(n, s + m)
            dcols = dbuf[:c * kh * kw * (e - s) * size].reshape(c * kh * kw, (e - s) * size)
            for i in range(groups):
                np.matmul(Wg[i].T, gw[i * og:(i + 1) * og, s * size:e * size], out=dcols[i * k:(i + 1) * k])
            dcols5 = dcols.reshape(c, kh * kw, e - s, size)
            phases[...] = 0
            for tap, (dst, off) in enumerate(grid.tap_views(phases, e - s)):
                dst[:, :, off:off + size] += dcols5[:, tap]
            grid.gather(phases, gx[s:e])
    if needs[1]:
        # (cols @ g2.T).T rather than g2 @ cols.T: OpenBLAS runs this long-and-thin product about 5% faster with
        # the window rows as the output's rows (measured on 144 x 50,176 windows and 32 channels, float32)
        gW = np.concatenate([(cols[i * k:(i + 1) * k] @ g2[i * og:(i + 1) * og].T).T
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
        # NOTE: the running maximum is the SECOND operand: on a tie of +0.0 and -0.0 NumPy's maximum returns its
        # second operand (SSE/AVX max semantics), so the earlier zero keeps its sign, as the reference's argmax
        # and PyTorch's first-wins rule give (tests/test_conv_adversarial.py checks the signs)
        np.maximum(tap, best, out=best)
    return best, (X.shape, Xp, best, kernel, stride, padding, dilation, out)


def max_pool2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """g added, tap by tap, to the entries that are their window's maximum; the first such tap in row-major
    order takes it (the reference's tie rule), so later equal taps are masked out. When no two windows share
    an entry (stride at least the window's span), each tap's share is written straight into its entries
    instead of added to them."""
    shape, Xp, best, kernel, stride, ((pt, _), (pl, _)), dilation, out = res
    disjoint = all(s >= d * (k - 1) + 1 for s, d, k in zip(stride, dilation, kernel))
    gpad = np.zeros(Xp.shape, dtype=g.dtype)
    hit, open_ = np.empty(best.shape, dtype=bool), np.empty(best.shape, dtype=bool)
    last = kernel[0] * kernel[1] - 1
    for t, (tap, gtap) in enumerate(zip(_pool_taps(Xp, kernel, stride, dilation, out),
                                        _pool_taps(gpad, kernel, stride, dilation, out))):
        np.equal(tap, best, out=hit)
        if t == 0:
            np.logical_not(hit, out=open_)   # windows whose maximum has not been found yet
        else:
            hit &= open_
            if t < last:
                open_ ^= hit
        if disjoint:
            np.multiply(g, hit, out=gtap)
        else:
            gtap += g * hit  # overlapping windows add up
    return (gpad[:, :, pt:pt + shape[2], pl:pl + shape[3]],)


def avg_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
                       out: tuple[int, int], divisor: np.ndarray) -> tuple:
    """The reference's window means as a sum over the taps (no copy of the windows), residuals as the
    reference's, whose vjp it shares."""
    Xp = _padded(X, padding, 0.0)
    taps = _pool_taps(Xp, kernel, stride, (1, 1), out)
    total = next(taps) + X.dtype.type(0.0)  # a sum starts from +0.0, as the reference's and PyTorch's: never -0.0
    for tap in taps:
        total += tap
    total /= divisor.astype(X.dtype)
    return total, (X.shape, Xp.shape, X.dtype, kernel, stride, padding, out, divisor)
