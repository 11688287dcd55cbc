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
        except FloatingPointError:  # under errstate(over="raise") the overflowing sum raises: scan instead
            pass
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
    dt = g.dtype
    g_norm = -1.0
    ga = gb = bound_a = bound_b = None
    if needs[0]:
        ga = g @ B.T
        if g.size + B.size + _PROOF_CALL < ga.size:
            g_norm = max_abs_bound(g)
            bound = g_norm * max_abs_bound(B)
            if _products_finite(bound, B.shape[1], dt):
                bound_a = _rounded_products_bound(bound, B.shape[1], dt)
        if bound_a is None:
            bound_a = _scanned_bound(0, ga)
    if needs[1]:
        gb = A.T @ g
        if g.size + A.size + _PROOF_CALL < gb.size:
            if g_norm < 0.0:
                g_norm = max_abs_bound(g)
            bound = g_norm * max_abs_bound(A)
            if _products_finite(bound, A.shape[0], dt):
                bound_b = _rounded_products_bound(bound, A.shape[0], dt)
        if bound_b is None:
            bound_b = _scanned_bound(1, gb)
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
    # The finiteness rule: a gradient is proved finite from the norms of its factors (Cauchy-Schwarz: an entry
    # of A @ B is at most ||A||_F ||B||_F, a column sum of g at most sqrt(n) ||g||_F) when those norms read
    # clearly fewer numbers than the gradient holds (each dot product also costs a fixed call); else scanned.
    # Each check also gives a bound on the gradient's entries, handed on to the optimizer (``BoundedGrads``).
    n, dt = g2.shape[0], g2.dtype
    g_norm = -1.0
    bx = bW = bb = None
    if gx is not None:
        if g2.size + W.size + _PROOF_CALL < gx.size:
            g_norm = max_abs_bound(g2)
            bound = g_norm * max_abs_bound(W)
            if _products_finite(bound, W.shape[0], dt):
                bx = _rounded_products_bound(bound, W.shape[0], dt)
        if bx is None:
            bx = _scanned_bound(0, gx)
    if gW is not None:
        if g2.size + X2.size + _PROOF_CALL < gW.size:
            if g_norm < 0.0:
                g_norm = max_abs_bound(g2)
            bound = g_norm * max_abs_bound(X2)
            if _products_finite(bound, n, dt):
                bW = _rounded_products_bound(bound, n, dt)
        if bW is None:
            bW = _scanned_bound(1, gW)
    if gb is not None:
        if 0.0 <= g_norm and _products_finite(g_norm * math.sqrt(n), n, dt):
            bb = _rounded_products_bound(g_norm * math.sqrt(n), n, dt)
        else:
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
    if type(g) is not np.ndarray or g.dtype != theta.dtype or g.shape != theta.shape:
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
            node.grad = s if g0 is None else g0 + s
            if g0 is None and bounds:
                node._grad_bound = bounds.get(node)  # after the setter, which forgets any earlier bound
        parents = node.parents
        if parents:
            grads = node.vjp(s)
            if type(grads) is BoundedGrads:
                for p, c, b in zip(parents, grads, grads.bounds):
                    if c is not None:
                        prev = get(p)
                        if prev is None:
                            S[p] = c
                            if b is not None:
                                bounds[p] = b
                        else:
                            S[p] = prev + c
                            bounds.pop(p, None)
                continue
            for p, c in zip(parents, grads):
                if c is not None:
                    prev = get(p)
                    if prev is None:
                        S[p] = c
                    else:
                        S[p] = prev + c
                        if bounds:
                            bounds.pop(p, None)


# ---------------------------------------------------------------------------------------------------------
# The scalar engine: Value's hottest operators, its topological order and its backward pass
# ---------------------------------------------------------------------------------------------------------
#
# The references are the row-driven node builders and ``Value.vjp`` in ``value.py`` and the generic
# ``graph.topological_order`` and ``graph.backprop``; ``tests/test_fast_scalar.py`` checks that these twins
# build the same nodes (data, op, parents, partials, errors), the same order and the same gradients, bit for bit.
# Why they are faster: one or two Python calls per node instead of four (operator method, node builder, the
# row's forward and partials); slots read directly instead of through the ``parents`` property; no tuple, iterator
# or set entry per node in the depth-first search; gradients summed in the nodes' own ``grad`` slots instead of
# a {node: S} dictionary. An operator allocates one object the garbage collector tracks (the node; micrograd
# allocates about seven) and the backward pass none per node, so big graphs set off few collections.

__all__ += ["VALUE_KERNELS", "value_kernels", "value_order", "value_backward"]

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
    # the reference raises its own error. ``out - out == 0.0`` is the finiteness test (inf - inf and nan - nan
    # are nan), cheaper than a call to math.isfinite.
    def __add__(self: Any, other: Any) -> Any:
        if ENABLED:
            t = type(other)
            if t is cls:
                b = other
            elif t is float:
                b = new(cls)
                b.data = other
                b.grad = 0.0
                b._op = b._a = b._b = b._za = b._zb = None
            else:
                return ref_add(self, other)
            out = self.data + b.data
            if out - out == 0.0:
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
        if ENABLED:
            t = type(other)
            if t is cls:
                b = other
            elif t is float:
                b = new(cls)
                b.data = other
                b.grad = 0.0
                b._op = b._a = b._b = b._za = b._zb = None
            else:
                return ref_sub(self, other)
            out = self.data - b.data
            if out - out == 0.0:
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
        if ENABLED:
            t = type(other)
            if t is cls:
                b = other
            elif t is float:
                b = new(cls)
                b.data = other
                b.grad = 0.0
                b._op = b._a = b._b = b._za = b._zb = None
            else:
                return ref_mul(self, other)
            x = self.data
            y = b.data
            out = x * y
            if out - out == 0.0:
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

    def __neg__(self: Any) -> Any:
        return unary(NEG, self, -self.data, -1.0) if ENABLED else ref_neg(self)

    def relu(self: Any) -> Any:
        if not ENABLED:
            return ref_relu(self)
        x = self.data
        return unary(RELU, self, x, 1.0) if x > 0 else unary(RELU, self, 0.0, 0.0)

    def tanh_(self: Any) -> Any:
        if not ENABLED:
            return ref_tanh(self)
        out = tanh(self.data)
        return unary(TANH, self, out, 1.0 - out * out)

    kernels = {"__add__": __add__, "__radd__": __radd__, "__sub__": __sub__, "__rsub__": __rsub__,
               "__mul__": __mul__, "__rmul__": __rmul__, "__neg__": __neg__, "relu": relu, "tanh": tanh_}
    for name, kernel in kernels.items():
        kernel.__name__ = kernel.__qualname__ = name
        kernel.__doc__ = reference[name].__doc__
    return kernels


class _Unset:
    """The mark a node's ``grad`` holds during ``value_backward``: reached, no gradient arrived yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no gradient yet>"


_UNSET = _Unset()
_DONE = object()  # on the depth-first stack: "the two entries below me are a node and its old grad, finished"
_ZERO, _NEG_ZERO = 0.0, -0.0


def value_order(root: Any) -> list:
    """``graph.topological_order`` of a Value graph, reading the parent slots directly: the same list.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); y = x * x + x
    >>> [n.label or n.op.name for n in value_order(y)]
    ['x', 'mul', 'add']
    """
    order, before = _order_marking(root)
    for n, g0 in zip(order, before):
        n.grad = g0
    return order


def _order_marking(root: Any) -> tuple[list, list]:
    """(the topological order, each node's grad before) with every node's ``grad`` set to ``_UNSET``.

    The reference keeps (node, iterator over its parents) on its stack and a set of the nodes it has reached;
    here the mark in ``grad`` says "reached". The search walks straight into a node's first parent that has a
    subgraph of its own; the node waits on the stack under its old grad, a ``_DONE`` marker and its second
    parent (if that one is still to explore), and is finished once everything above the marker is. Post-order
    as the reference: the first parent's subgraph first, a node reached again skipped, a leaf finished as soon
    as it is reached.
    """
    order: list = []
    before: list = []
    finish, keep = order.append, before.append
    stack: list = []
    push, pop = stack.append, stack.pop
    unset, done = _UNSET, _DONE
    n = root
    try:
        while True:
            # n has not been reached before: mark it, then walk into the first parent still to explore
            g0 = n.grad
            n.grad = unset
            a = n._a
            if a is not None:
                b = n._b
                if a.grad is not unset:
                    if a._a is not None:
                        push(n)
                        push(g0)
                        push(done)
                        if b is not None and b.grad is not unset:
                            push(b)
                        n = a
                        continue
                    keep(a.grad)
                    a.grad = unset
                    finish(a)
                if b is not None and b.grad is not unset:
                    if b._a is not None:
                        push(n)
                        push(g0)
                        push(done)
                        n = b
                        continue
                    keep(b.grad)
                    b.grad = unset
                    finish(b)
            finish(n)
            keep(g0)
            # n is finished: finish the nodes waiting on the stack, up to the next one still to explore
            while stack:
                n = pop()
                if n is done:
                    keep(pop())
                    finish(pop())
                elif n.grad is not unset:
                    if n._a is not None:
                        break
                    keep(n.grad)  # a leaf: finished at once
                    n.grad = unset
                    finish(n)
            else:
                return order, before
    except BaseException:  # interrupted: give every node its grad back
        for k, item in enumerate(stack):
            if item is done:
                stack[k - 2].grad = stack[k - 1]
        for n, g0 in zip(order, before):
            n.grad = g0
        raise


def value_backward(root: Any, seed: float) -> None:
    """``graph.run(graph.backprop(root, seed))`` on a Value graph: adds d root / d n to every ``n.grad``.

    S(n) is summed in ``n.grad`` itself (``_UNSET`` while no child has contributed), in the reference's order,
    so every sum rounds as the reference's does; then ``n.grad = old + S``. A non-finite gradient raises the
    reference's DomainError and leaves every ``grad`` as it was.

    >>> from microgradx import Value
    >>> x = Value(3.0); y = x * x
    >>> value_backward(y, 1.0); x.grad
    6.0
    """
    order, before = _order_marking(root)
    root.grad = seed
    unset = _UNSET
    try:
        for n, g0 in zip(reversed(order), reversed(before)):
            s = n.grad
            a = n._a
            if a is not None:
                z = n._za
                c = s if z == 1.0 else s * z  # s * 1.0 is s, bit for bit: no new float, grads shared
                if c - c != 0.0:
                    _raise_bad_gradient(n, 0, s, c)
                g = a.grad
                a.grad = c if g is unset else g + c
                b = n._b
                if b is not None:
                    z = n._zb
                    c = s if z == 1.0 else s * z
                    if c - c != 0.0:
                        _raise_bad_gradient(n, 1, s, c)
                    g = b.grad
                    b.grad = c if g is unset else g + c
            elif s - s != 0.0:  # the sum over a leaf's uses overflowed
                from .graph import leaf_gradient_error
                raise leaf_gradient_error(n, s)
            if g0 == 0.0 and s != 0.0:  # the usual case, a fresh grad: g0 + s is s, bit for bit, already there
                continue
            if g0 is None:  # a grad the user cleared
                n.grad = s
            elif s == 0.0 and g0 == 0.0:  # many nodes get a zero (behind a relu that is off): share two zeros
                n.grad = _ZERO if math.copysign(1.0, g0 + s) > 0.0 else _NEG_ZERO
            else:
                n.grad = g0 + s
    except BaseException:
        for n, g0 in zip(order, before):
            n.grad = g0
        raise


def _raise_bad_gradient(node: Any, k: int, g: float, c: float) -> None:
    from .value import _bad_gradient  # the reference's error (value.py imports this module)
    raise _bad_gradient(node, k, g, c)


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
# windows from the cache (measured on 64 images of 28x28, 16 -> 32 channels, 3x3, with the whole input padded
# first: forward 11.6 ms in batches of 4 or 8 images, 12.4 ms in batches of 2, 13.3 ms filling the whole matrix
# first; padding batch by batch too took another 6% off).
_IM2COL_BLOCK = 1 << 19


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
    for all channels at once (each batch of images is transposed to (c, images, h, w) into a padded buffer),
    about five times faster than gathering (n, p, q) x (c, i, j) windows from NCHW, and the products waste no
    column. The matrix is filled and multiplied a few images at a time, so BLAS reads windows still in cache,
    and each product is added to the bias while it is moved into (n, o, p, q) order; the whole matrix is kept
    for the weight gradient.
    ``benchmarks/conv.py`` measures it, and what BLAS alone costs for the same products.
    """
    n, c, h, w = X.shape
    o, cg, kh, kw = W.shape
    ((pt, pb), (pl, pr)), (dh, dw), (sh, sw) = padding, dilation, stride
    hp, wp = h + pt + pb, w + pl + pr
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    cols6 = np.empty((c, kh, kw, n, ho, wo), dtype=X.dtype)
    cols, W2, size = cols6.reshape(c * kh * kw, n * ho * wo), W.reshape(o, cg * kh * kw), ho * wo
    out = np.empty((n, o, size), dtype=X.dtype)
    m = min(n, max(1, _IM2COL_BLOCK // (c * kh * kw * size)))
    prod = np.empty((o, m * size), dtype=X.dtype)
    padded = np.zeros((c, m, hp, wp), dtype=X.dtype)          # one batch; its padding stays zero throughout
    for s in range(0, n, m):              # fill a batch of images' windows, multiply while they are in cache
        e = min(n, s + m)
        padded[:, :e - s, pt:pt + h, pl:pl + w] = X[s:e].transpose(1, 0, 2, 3)
        for i in range(kh):
            for j in range(kw):
                cols6[:, i, j, s:e] = padded[(slice(None), slice(0, e - s),
                                              *_tap_slices(i, j, stride, dilation, (ho, wo)))]
        part = _grouped_matmul(W2, cols[:, s * size:e * size], groups, prod[:, :(e - s) * size])
        part = part.reshape(o, e - s, size).transpose(1, 0, 2)                    # (images, o, ho wo)
        if bias:
            np.add(part, bias[0][:, None], out=out[s:e])
        else:
            out[s:e] = part
    return out.reshape(n, o, ho, wo), (X.shape, W, len(bias), cols, (c, n, hp, wp), stride, padding, dilation,
                                       groups)


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
    for i in range(kh):
        for j in range(kw):
            a, b = i * dilation[0] - pad[0], j * dilation[1] - pad[1]
            tap = dcols[:, i, j]
            tap[:, :, :max(0, -a)] = 0
            tap[:, :, max(0, h - a):] = 0
            tap[:, :, :, :max(0, -b)] = 0
            tap[:, :, :, max(0, w - b):] = 0
            k, flat = a * w + b, tap.reshape(c, size)
            if abs(k) >= size:                        # every target of this tap lies in the padding
                continue
            if k >= 0:
                out[:, k:] += flat[:, :size - k]
            else:
                out[:, :size + k] += flat[:, -k:]


# Elements of the window-gradient buffer per batch of images: about 4 MB of float32, so that the matrix product
# writes it and the fold reads it back from the cache rather than from memory (measured on 64 images of 28x28
# with 144 window rows, product and fold: 8.5 ms in batches of 8 images, 9.3-9.4 ms with 4 or 16, 12.5 ms for
# the whole batch at once, 15.9 ms image by image).
_COL2IM_BLOCK = 1 << 20


def conv2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    """The reference's input, weight and bias gradients from the unrolled windows: two matrix products, and
    the input gradient folded back (col2im) with one slice-add per kernel tap over the whole batch, or, when the
    stride is 1 and the output grid is the input grid, a few images at a time by ``_col2im_same``."""
    xshape, W, nb, cols, padded_shape, stride, ((pt, _), (pl, _)), dilation, groups = res
    n, c, h, w = xshape
    o, cg, kh, kw = W.shape
    ho, wo = g.shape[2:]
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * ho * wo)
    gx = gW = gb = None
    if needs[0]:
        # NOTE: W.T as a transposed view, not a contiguous copy: BLAS takes the transpose as a flag
        Wg, og = W.reshape(groups, o // groups, cg * kh * kw), o // groups
        k = cg * kh * kw

        def window_grads(images: slice, out: np.ndarray) -> np.ndarray:
            cols_g = g2[:, images.start * ho * wo:images.stop * ho * wo]
            for i in range(groups):
                np.matmul(Wg[i].T, cols_g[i * og:(i + 1) * og], out=out[i * k:(i + 1) * k])
            return out.reshape(c, kh, kw, images.stop - images.start, ho, wo)
        if stride == (1, 1) and (ho, wo) == (h, w):
            # batches of images: the window gradients of one batch fold back before the next is computed
            m = max(1, _COL2IM_BLOCK // (c * kh * kw * h * w))
            buf, gxc = np.empty((c * kh * kw, min(n, m) * h * w), dtype=g.dtype), np.empty((c, n * h * w), g.dtype)
            for s in range(0, n, m):
                e = min(n, s + m)
                _col2im_same(window_grads(slice(s, e), buf[:, :(e - s) * h * w]), (pt, pl), dilation,
                             gxc[:, s * h * w:e * h * w])
            gx = gxc.reshape(c, n, h, w).transpose(1, 0, 2, 3)
        else:
            dcols = window_grads(slice(0, n), np.empty((c * kh * kw, n * ho * wo), dtype=g.dtype))
            dpad = np.zeros(padded_shape, dtype=g.dtype)
            for i in range(kh):
                for j in range(kw):
                    dpad[(slice(None), slice(None), *_tap_slices(i, j, stride, dilation, (ho, wo)))] += dcols[:, i, j]
            gx = dpad[:, :, pt:pt + h, pl:pl + w].transpose(1, 0, 2, 3)
        gx = np.ascontiguousarray(gx)
    if needs[1]:
        # (cols @ g2.T).T rather than g2 @ cols.T: OpenBLAS runs this long-and-thin product about 5% faster with
        # the window rows as the output's rows (measured on 144 x 50,176 windows and 32 channels, float32)
        og, k = o // groups, cg * kh * kw
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
