"""The NumPy ``Tensor``: an ndarray node on the same graph core as ``Value``, for training real networks.

Elementwise ops are read from the op table (forward and local derivative); a vjp is ``g * partial`` with
broadcasting undone. Matmul, reductions, reshapes, indexing and the softmax family are tensor-only ops.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import graph
from .ops import (
    ADD,
    DIV,
    MUL,
    NEG,
    OPS,
    POW,
    POWER,
    SUB,
    DivisionByZeroError,
    DomainError,
    MicrogradxError,
    Op,
    numpy_math,
)

__all__ = ["Tensor", "ShapeError", "linear", "FUSABLE_ACTIVATIONS", "concatenate", "where", "as_tensor"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_new = object.__new__


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

    return type(f"_ArrayMath_{dtype.name}", (type(base),), {"where": staticmethod(where)})()


_MATH = {dt: _array_math(dt) for dt in _FLOATS}

# Where values are checked (each check is one vectorised np.isfinite pass over an op's output, so that no NaN
# passes silently; a later relu would turn a NaN into 0):
#   * a Tensor built from user data, and numbers or arrays combined with a Tensor;
#   * the output of every op-table op, matmul, linear, sum/mean and of each loss (they can overflow);
#   * the vjp of every op-table op whose local derivative is not the constant 1 (pow near 0 can overflow).
# Not checked: a raw batch array fed to ``linear`` (its NaN reaches linear's output, which is checked), ops
# that only move, select or normalise finite values (reshape, indexing, max, softmax, where, clip), and the
# output and vjp of a ``bounded`` row (relu, tanh, ...): from finite data it gives a finite output, and a
# finite gradient times a partial of magnitude at most 1 is finite (tests/test_ops.py proves the claim).


class ShapeError(MicrogradxError, ValueError):
    """Operands of a tensor op have shapes that do not fit; the message names the op and the shapes.

    >>> Tensor([[1.0, 2.0]]) @ Tensor([[1.0, 2.0]])
    Traceback (most recent call last):
    ...
    microgradx.tensor.ShapeError: matmul: shapes (1, 2) and (1, 2) do not align (2 != 1)
    """


_and_reduce = np.logical_and.reduce


def _all_finite(a: np.ndarray) -> bool:
    # NOTE: one vectorised pass that cannot warn (a.sum() costs as much and could itself overflow); the ufunc's
    # own reduce, not a.all(), which goes through a Python-level wrapper.
    return bool(_and_reduce(np.isfinite(a), axis=None))


def _first_bad(a: np.ndarray) -> tuple[tuple[int, ...], float]:
    where_ = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    return where_, float(a[where_])


def _describe(t: Tensor) -> str:
    return t.label if t.label else f"tensor{tuple(t.data.shape)}"


def _at(idx: tuple[int, ...]) -> str:
    return f" at index {idx}" if idx else ""


def _as_array(data: Any, dtype: Any, what: str) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    arr = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
    if arr.dtype not in _FLOATS:
        if arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"{what} needs float32 or float64 data (ints are converted to float64), "
                            f"got dtype {arr.dtype}")
    if not _all_finite(arr):
        idx, bad = _first_bad(arr)
        raise DomainError(f"{what}: data must be finite, got {bad!r}{_at(idx)}", "tensor", bad)
    return arr


class Tensor:
    """An ndarray node: ``data``, ``grad`` (same shape, or None) and the op and parents it came from.

    ``requires_grad=True`` makes a parameter: ``backward()`` gives it a ``.grad``. Data tensors
    (``requires_grad=False``) get none, and ops whose inputs all need no gradient record no graph at all.
    float32 and float64 data keep their dtype; ints become float64. The array is shared, not copied.

    >>> x = Tensor([[1.0, -2.0], [3.0, 0.5]], label="x")
    >>> w = Tensor([0.5, -1.0], label="w")
    >>> loss = (x * w).relu().sum()
    >>> loss.backward(); loss.item(), w.grad.tolist()
    (4.0, [4.0, -2.0])
    """

    __slots__ = ("data", "_grad", "requires_grad", "label", "parents", "_back", "_op", "_keeps_grad")
    __array_ufunc__ = None  # so that ndarray + Tensor and ndarray @ Tensor defer to the Tensor's operators

    def __init__(self, data: Any, requires_grad: bool = True, label: str | None = None, dtype: Any = None) -> None:
        self.data = _as_array(data, dtype, f"Tensor({label})" if label else "Tensor")
        self._grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.label = label
        self.parents: tuple[Tensor, ...] = ()  # the op's tensor inputs, in order; empty for a leaf
        self._back: Any = None
        self._op: Any = None
        self._keeps_grad = True  # a leaf keeps its gradient; results do not, unless retain_grad()

    # -- the node protocol of the graph core ---------------------------------------------------------------

    @property
    def grad(self) -> np.ndarray | None:
        """d(output)/d(self) after ``backward()``: kept on parameters (and on ``retain_grad()`` tensors)."""
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        # NOTE: intermediate results drop their gradient (nobody reads it; keeping it would hold memory), and
        # a parameter always owns a writable array, so an optimizer may update it in place.
        if not self._keeps_grad:
            return
        if value is not None and (value.base is not None or not value.flags.writeable):
            value = value.copy()
        self._grad = value

    @property
    def op(self) -> Any:
        """The op-table row (``Op``) or the name of the tensor-only op that made this tensor; None for a leaf."""
        return self._op

    @property
    def op_name(self) -> str | None:
        """The op's name as text: ``(x @ y).op_name == 'matmul'``."""
        op = self._op
        return op.name if isinstance(op, Op) else op

    def _vjps(self, g: np.ndarray, create_graph: bool) -> tuple:
        if create_graph or type(g) is not np.ndarray:
            if create_graph:
                raise MicrogradxError(f"{self.op_name}: Tensor gradients are arrays, so create_graph (higher "
                                      "order) is not supported; use Value for higher-order derivatives")
            g = np.asarray(g, dtype=self.data.dtype)  # a number seed from graph.grad()
        return self._back(g)

    def _reset_grad(self) -> None:
        self._grad = None

    def retain_grad(self) -> Tensor:
        """Keep this intermediate result's gradient too (for inspection); returns self."""
        self._keeps_grad = True
        return self

    # -- differentiation -----------------------------------------------------------------------------------

    def backward(self, seed: Any = None) -> None:
        """Add d self / d p to ``p.grad`` for every parameter p behind self (seed defaults to 1 for a scalar).

        Gradients accumulate, as in PyTorch; set ``p.grad = None`` (or ``Module.zero_grad()``) between steps.

        >>> w = Tensor([1.0, 2.0]); (w * w).sum().backward(); w.grad
        array([2., 4.])
        """
        if not self.requires_grad:
            raise MicrogradxError(f"backward: {_describe(self)} does not require a gradient (it was computed "
                                  "from tensors with requires_grad=False only)")
        if seed is None:
            if self.data.size != 1:
                raise ShapeError(f"backward: {_describe(self)} of shape {self.data.shape} is not a scalar; "
                                 "pass a seed of the same shape")
            s = np.empty_like(self.data)
            s.fill(1)  # NOTE: half the cost of np.ones_like, which is a Python-level wrapper
        else:
            s = _as_array(seed, self.data.dtype, "backward seed")
            if s.shape != self.data.shape:
                raise ShapeError(f"backward: seed shape {s.shape} differs from {_describe(self)} shape "
                                 f"{self.data.shape}")
        graph.run(graph.backprop(self, s))

    def zero_grad(self) -> None:
        """Forget this tensor's gradient (sets ``grad`` to None)."""
        self._grad = None

    # -- plain array facts ---------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """The data's shape."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        """The data's number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """The data's number of entries."""
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        """The data's dtype (float32 or float64)."""
        return self.data.dtype

    def item(self) -> float:
        """The value of a one-entry tensor as a Python float: ``Tensor([2.0]).item() == 2.0``."""
        if self.data.size != 1:
            raise ShapeError(f"item: {_describe(self)} of shape {self.data.shape} has {self.data.size} entries, "
                             "not one")
        return float(self.data.reshape(-1)[0])

    def numpy(self) -> np.ndarray:
        """The data array (shared, not copied)."""
        return self.data

    def detach(self) -> Tensor:
        """The same data as a tensor that needs no gradient and records no graph."""
        return _const(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        op = f", op={self.op_name}" if self._op is not None else ""
        body = np.array2string(self.data, precision=4, threshold=20, separator=", ")
        return f"Tensor({body}, dtype={self.data.dtype}, requires_grad={self.requires_grad}{op}{label})"

    # -- operators: elementwise ones are op-table rows ------------------------------------------------------

    def __add__(self, other: Any) -> Tensor:
        return _elementwise(ADD, self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _elementwise(ADD, other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _elementwise(SUB, self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _elementwise(SUB, other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _elementwise(MUL, self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _elementwise(MUL, other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _elementwise(DIV, self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _elementwise(DIV, other, self)

    def __neg__(self) -> Tensor:
        return _unary(NEG, self)

    def __pos__(self) -> Tensor:
        return self

    def __pow__(self, other: Any) -> Tensor:
        """``x ** 3`` (number exponent, op ``pow``) or ``x ** y`` (tensor exponent, op ``power``, x > 0)."""
        if isinstance(other, (Tensor, np.ndarray)):
            return _elementwise(POWER, self, other)
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _unary(POW, self, float(other))
        return NotImplemented

    def __rpow__(self, other: Any) -> Tensor:
        return _elementwise(POWER, other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(other, self)

    # NOTE: comparisons give plain boolean arrays (data, no gradient), handy as masks for ``where``.
    def __lt__(self, other: Any) -> np.ndarray:
        return self.data < _raw(other)

    def __le__(self, other: Any) -> np.ndarray:
        return self.data <= _raw(other)

    def __gt__(self, other: Any) -> np.ndarray:
        return self.data > _raw(other)

    def __ge__(self, other: Any) -> np.ndarray:
        return self.data >= _raw(other)

    # -- tensor-only ops -----------------------------------------------------------------------------------

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes by default): ``Tensor([[1.0, 2.0]]).sum(axis=1).data`` is ``[3.]``."""
        return _reduce_sum(self, axis, keepdims, mean=False)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis`` (all axes by default): ``Tensor([1.0, 3.0]).mean().item() == 2.0``."""
        return _reduce_sum(self, axis, keepdims, mean=True)

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Largest entry over ``axis``; on a tie the gradient is split evenly (as the table's ``max`` row).

        >>> x = Tensor([1.0, 3.0, 3.0]); m = x.max(); m.backward(); x.grad
        array([0. , 0.5, 0.5])
        """
        return _reduce_extreme(self, axis, keepdims, "max")

    def min(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Smallest entry over ``axis``; on a tie the gradient is split evenly."""
        return _reduce_extreme(self, axis, keepdims, "min")

    def reshape(self, *shape: Any) -> Tensor:
        """The same entries in a new shape: ``Tensor([1.0, 2.0, 3.0, 4.0]).reshape(2, 2).shape == (2, 2)``."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        x = self.data
        try:
            out = x.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {_describe(self)} of shape {x.shape} "
                             f"({x.size} entries) to {shape}") from None
        old = x.shape
        return _result(out, (self,), lambda g: (g.reshape(old),), "reshape")

    def transpose(self, *axes: int) -> Tensor:
        """Permute the axes (reverse them by default): ``Tensor([[1.0, 2.0]]).transpose().shape == (2, 1)``."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        x = self.data
        perm = tuple(range(x.ndim))[::-1] if not axes else axes
        if sorted(a % x.ndim if x.ndim else a for a in perm) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of "
                             f"{_describe(self)} of shape {x.shape}")
        inverse = tuple(np.argsort([a % x.ndim for a in perm]))
        return _result(x.transpose(perm), (self,), lambda g: (g.transpose(inverse),), "transpose")

    @property
    def T(self) -> Tensor:
        """The transpose (axes reversed)."""
        return self.transpose()

    def __getitem__(self, index: Any) -> Tensor:
        """Indexing and slicing as in NumPy (basic and integer-array); the gradient is scattered back.

        >>> x = Tensor([1.0, 2.0, 3.0]); y = x[[0, 0, 2]].sum(); y.backward(); x.grad
        array([2., 0., 1.])
        """
        if isinstance(index, Tensor):
            index = index.data
        x = self.data
        try:
            out = x[index]
        except (IndexError, ValueError) as e:
            raise ShapeError(f"getitem: index {index!r} does not fit {_describe(self)} of shape {x.shape} "
                             f"({e})") from None
        basic = _is_basic_index(index)

        def back(g: np.ndarray) -> tuple:
            z = np.zeros_like(x)
            if basic:  # a view: each entry is selected at most once
                z[index] = g
            else:      # integer arrays may select an entry several times: accumulate
                np.add.at(z, index, g)
            return (z,)
        return _result(np.asarray(out), (self,), back, "getitem")

    def gather(self, indices: Any, axis: int = -1) -> Tensor:
        """Pick entries along ``axis`` by integer ``indices`` (``np.take_along_axis``), e.g. one per row.

        >>> x = Tensor([[1.0, 2.0], [3.0, 4.0]]); x.gather([[1], [0]], axis=1).data.tolist()
        [[2.0], [3.0]]
        """
        x = self.data
        idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        if idx.dtype.kind not in "iu" or idx.ndim != x.ndim:
            raise ShapeError(f"gather: indices must be integers with {x.ndim} dimensions like {_describe(self)} "
                             f"of shape {x.shape}, got dtype {idx.dtype} and shape {idx.shape}")
        try:
            out = np.take_along_axis(x, idx, axis)
        except (IndexError, ValueError) as e:
            raise ShapeError(f"gather: indices of shape {idx.shape} do not fit {_describe(self)} of shape "
                             f"{x.shape} along axis {axis} ({e})") from None

        def back(g: np.ndarray) -> tuple:
            grids = list(np.ix_(*(np.arange(n) for n in idx.shape)))
            grids[axis] = idx
            z = np.zeros_like(x)
            np.add.at(z, tuple(grids), g)
            return (z,)
        return _result(out, (self,), back, "gather")

    def clip(self, lo: float | None = None, hi: float | None = None) -> Tensor:
        """Values limited to [lo, hi]; the gradient passes where lo <= x <= hi (bounds included, as PyTorch's
        clamp), so a value exactly at a bound still learns.

        >>> x = Tensor([-2.0, 0.5, 2.0]); x.clip(-1.0, 1.0).sum().backward(); x.grad
        array([0., 1., 0.])
        """
        x = self.data
        out = np.clip(x, lo, hi)

        def back(g: np.ndarray) -> tuple:
            keep = np.ones(x.shape, dtype=bool)
            if lo is not None:
                keep &= x >= lo
            if hi is not None:
                keep &= x <= hi
            return (np.where(keep, g, 0).astype(x.dtype, copy=False),)
        return _result(out.astype(x.dtype, copy=False), (self,), back, "clip")

    def logsumexp(self, axis: int = -1, keepdims: bool = False) -> Tensor:
        """log(sum(exp(x))) over ``axis``, computed stably (the maximum is taken out first).

        >>> round(Tensor([1000.0, 1000.0]).logsumexp().item() - 1000.0, 12) == round(math.log(2.0), 12)
        True
        """
        x = self.data
        if x.size == 0 if axis is None else x.shape[axis] == 0:
            raise ShapeError(f"logsumexp: {_describe(self)} of shape {x.shape} is empty along axis {axis}: "
                             "log(sum(exp(x))) of no numbers is -inf")
        m = x.max(axis=axis, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=axis, keepdims=True)
        lse = np.log(s) + m
        out = lse if keepdims else np.squeeze(lse, axis=axis)

        def back(g: np.ndarray) -> tuple:
            gk = g if keepdims or axis is None else np.expand_dims(g, axis)
            return (gk * (e / s),)
        return _result(out, (self,), back, "logsumexp")

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / sum(exp(x)) over ``axis``, stably; the vjp is y * (g - sum(g * y)).

        >>> Tensor([0.0, math.log(3.0)]).softmax().data.round(6).tolist()
        [0.25, 0.75]
        """
        x = self.data
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)

        def back(g: np.ndarray) -> tuple:
            return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)
        return _result(y, (self,), back, "softmax")

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - logsumexp(x) over ``axis``, stably; the vjp is g - softmax(x) * sum(g).

        >>> Tensor([0.0, 0.0]).log_softmax().data.tolist() == [-math.log(2.0)] * 2
        True
        """
        x = self.data
        shifted = x - x.max(axis=axis, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=axis, keepdims=True)
        out = shifted - np.log(s)

        def back(g: np.ndarray) -> tuple:
            return (g - (e / s) * g.sum(axis=axis, keepdims=True),)
        return _result(out, (self,), back, "log_softmax")

    def astype(self, dtype: Any) -> Tensor:
        """The same values in another float dtype; the gradient is converted back to this tensor's dtype."""
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"astype: Tensor data must be float32 or float64, got {dt}")
        x = self.data
        return _result(x.astype(dt), (self,), lambda g: (g.astype(x.dtype),), "astype")

    # -- op-table methods (x.tanh(), x.leaky_relu(0.1), x.prelu(slope), ...) are attached below -------------

    def apply(self, op: Op | str, *others: Any, param: Any = None) -> Tensor:
        """Apply an op-table row by object or name: ``x.apply("leaky_relu", param=0.2)``."""
        row = OPS[op] if isinstance(op, str) else op
        if len(others) != row.arity - 1:
            raise TypeError(f"{row.name} takes {row.arity} tensor input(s), got {1 + len(others)}")
        if row.param is not None and param is None:
            param = row.default
        if row.arity == 1:
            return _unary(row, self, param)
        return _elementwise(row, self, others[0])


# ---------------------------------------------------------------------------------------------------------
# Building nodes
# ---------------------------------------------------------------------------------------------------------

def _const(data: np.ndarray) -> Tensor:
    t = _new(Tensor)
    t.data, t._grad, t.requires_grad, t.label = data, None, False, None
    t.parents, t._back, t._op, t._keeps_grad = (), None, None, True
    return t


def _result(data: np.ndarray, parents: tuple, back: Any, op: Any) -> Tensor:
    """A new node if some parent needs a gradient, else a plain data tensor (no graph is recorded)."""
    for p in parents:
        if p.requires_grad:
            t = _new(Tensor)
            t.data, t._grad, t.requires_grad, t.label = data, None, True, None
            t.parents, t._back, t._op, t._keeps_grad = parents, back, op, False
            return t
    return _const(data)


def as_tensor(x: Any, dtype: Any = None) -> Tensor:
    """``x`` itself if it is a Tensor, else a data tensor (``requires_grad=False``) holding it.

    >>> as_tensor([1, 2]).requires_grad
    False
    """
    if isinstance(x, Tensor):
        return x
    return _const(_as_array(x, dtype, "Tensor"))


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _operands(name: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Two Tensors of one dtype; a number or array operand becomes constant data of the tensor's dtype."""
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        if a.data.dtype != b.data.dtype:
            raise TypeError(f"{name}: dtypes differ ({a.data.dtype} and {b.data.dtype}); convert one with "
                            ".astype() so that no float32 data is silently upcast")
        return a, b
    if ta:
        return a, _constant_like(name, b, a)
    if tb:
        return _constant_like(name, a, b), b
    raise TypeError(f"{name} needs a Tensor operand")


def _constant_like(name: str, x: Any, like: Tensor) -> Tensor:
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.ndarray, list, tuple)):
        raise TypeError(f"{name}: cannot combine a Tensor with {type(x).__name__}: {x!r}")
    return _const(_as_array(x, like.data.dtype, name))


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` down to ``shape``, undoing NumPy broadcasting."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    s = g.sum(axis=axes, keepdims=True) if axes else g
    return s.reshape(shape)


def _domain_fail(op: Op, inputs: Sequence[Tensor], datas: Sequence[np.ndarray], param: Any) -> None:
    for k, (x, dom) in enumerate(zip(datas, op.domains(param), strict=True)):
        if dom.lo == -math.inf and dom.hi == math.inf and not dom.nonzero:
            continue
        bad = ~np.asarray(dom.contains(x))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            value = float(np.asarray(x)[idx])
            cls = DivisionByZeroError if dom.zero_division and value == 0 else DomainError
            names = ", ".join(_describe(t) for t in inputs)
            shown = f"{op.name} with {op.param}={param:g}" if op.param and op.arity == 1 else op.name
            label = next((t.label for t in inputs if t.label), None)
            raise cls(f"{op.name}({names}): {shown} needs {'xy'[k]} {dom.text}, got {value!r}{_at(idx)}",
                      op.name, value, label)


def _nonfinite(op: Any, inputs: Sequence[Tensor], a: np.ndarray, what: str) -> DomainError:
    idx, bad = _first_bad(a)
    name = op.name if isinstance(op, Op) else op
    names = ", ".join(_describe(t) for t in inputs)
    label = next((t.label for t in inputs if t.label), None)
    return DomainError(f"{name}({names}): {what} {bad}{_at(idx)}, not a finite number", name, bad, label)


_CHECKS_DOMAIN = frozenset(op for op in OPS.values() if op.checked)
# NOTE: an overflow inside a row's forward or a cast to float32 is always followed by the DomainError that names
# the op or the data (every unbounded result is checked), so NumPy's own warning would only be noise printed
# before it. Filtered once here, for warnings raised from these two modules only: no errstate cost per op.
for _module in ("microgradx.ops", "microgradx.tensor"):
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning, _module)


def _table_node(op: Op, inputs: tuple, datas: tuple, param: Any) -> Tensor:
    """Forward and vjp of one op-table row on arrays: out = forward(F, ...), vjp = g * partials(F, out, ...).

    A NumPy overflow warning may precede the DomainError that names the op: suppressing it with np.errstate
    would cost more than the op itself on small arrays.
    """
    dtype = datas[0].dtype
    F = _MATH[dtype]
    if op in _CHECKS_DOMAIN:
        _domain_fail(op, inputs, datas, param)
    args = datas if op.param is None else (*datas, param)
    out = op.forward(F, *args)
    if type(out) is not np.ndarray or out.dtype != dtype:
        out = np.asarray(out, dtype=dtype)
    bounded = op.bounded
    if not bounded and not _all_finite(out):
        raise _nonfinite(op, inputs, out, "gives")

    def back(g: np.ndarray) -> list:
        zs = op.partials(F, out, *args)
        res = []
        for t, z in zip(inputs, zs, strict=True):
            if not t.requires_grad:
                res.append(None)
                continue
            if type(z) is float and z == 1.0:
                c = g if t.parents else g.copy()  # a parameter must not share its gradient array
            else:
                c = g * z
                if type(c) is not np.ndarray or c.dtype != dtype:
                    c = np.asarray(c, dtype=dtype)
                if not bounded and not _all_finite(c):
                    raise _nonfinite(op, inputs, c, "has a non-finite gradient")
            res.append(c if c.shape == t.data.shape else _unbroadcast(c, t.data.shape))
        return res
    return _result(out, inputs, back, op)


def _unary(op: Op, x: Tensor, param: Any = None) -> Tensor:
    return _table_node(op, (x,), (x.data,), param)


def _elementwise(op: Op, a: Any, b: Any) -> Tensor:
    a, b = _operands(op.name, a, b)
    try:
        np.broadcast_shapes(a.data.shape, b.data.shape)
    except ValueError:
        raise ShapeError(f"{op.name}: shapes {a.data.shape} and {b.data.shape} do not broadcast") from None
    return _table_node(op, (a, b), (a.data, b.data), None)


def _method(op: Op, name: str):
    if op.arity == 1 and op.param is None:
        def method(self: Tensor) -> Tensor:
            return _unary(op, self)
    elif op.arity == 1:
        def method(self: Tensor, param: float = op.default) -> Tensor:  # type: ignore[assignment]
            return _unary(op, self, float(param))
    else:
        def method(self: Tensor, other: Any) -> Tensor:  # type: ignore[assignment]
            return _elementwise(op, self, other)
    method.__name__ = method.__qualname__ = name
    args = "y" if op.arity == 2 else f"{op.param}={op.default}" if op.param else ""
    method.__doc__ = f"x.{name}({args}): {op.doc}, elementwise (op-table row {op.name!r})."
    return method


# NOTE: the rows' "max"/"min" method names are the reductions on a Tensor; the elementwise rows stay
# reachable as x.maximum(y) / x.minimum(y).
for _op in OPS.values():
    for _name in _op.methods:
        if not hasattr(Tensor, _name):
            setattr(Tensor, _name, _method(_op, _name))


# ---------------------------------------------------------------------------------------------------------
# Tensor-only ops
# ---------------------------------------------------------------------------------------------------------

def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product ``a @ b`` with NumPy's rules (1-D operands, batched leading dimensions).

    >>> a = Tensor([[1.0, 2.0]]); b = Tensor([[3.0], [4.0]])
    >>> c = a @ b; c.backward(); c.item(), a.grad.tolist(), b.grad.tolist()
    (11.0, [[3.0, 4.0]], [[1.0], [2.0]])
    """
    a, b = _operands("matmul", a, b)
    A, B = a.data, b.data
    if A.ndim == 0 or B.ndim == 0:
        raise ShapeError(f"matmul: needs arrays, got shapes {A.shape} and {B.shape}")
    ka, kb = A.shape[-1], B.shape[0] if B.ndim == 1 else B.shape[-2]
    if ka != kb:
        raise ShapeError(f"matmul: shapes {A.shape} and {B.shape} do not align ({ka} != {kb})")
    try:
        out = A @ B
    except ValueError as e:
        raise ShapeError(f"matmul: shapes {A.shape} and {B.shape} do not broadcast ({e})") from None
    if not _all_finite(out):
        raise _nonfinite("matmul", (a, b), out, "gives")

    def back(g: np.ndarray) -> tuple:
        A2 = A[None, :] if A.ndim == 1 else A
        B2 = B[:, None] if B.ndim == 1 else B
        g2 = g
        if A.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if B.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if a.requires_grad:
            ga = g2 @ np.swapaxes(B2, -1, -2)
            ga = _unbroadcast(ga[..., 0, :] if A.ndim == 1 else ga, A.shape)
        if b.requires_grad:
            gb = np.swapaxes(A2, -1, -2) @ g2
            gb = _unbroadcast(gb[..., 0] if B.ndim == 1 else gb, B.shape)
        return ga, gb
    return _result(out, (a, b), back, "matmul")


_TRANSPOSED_GX = 1 << 14  # weight entries above which linear's input gradient is formed as (W.T @ g.T).T

# Activations linear() can apply inside its own node: one-input rows without a parameter that need no checks
# (no domain, and ``bounded``: finite in, finite out, partial of magnitude <= 1), so fusing skips nothing.
FUSABLE_ACTIVATIONS = frozenset(op for op in OPS.values()
                                if op.arity == 1 and op.param is None and op.bounded and not op.checked)


def _linear_misfit(X: np.ndarray, W: np.ndarray, bias: Tensor | None) -> None:
    """Raise the error that says why x, W and bias do not fit linear()."""
    if W.ndim != 2 or X.ndim == 0 or X.shape[-1] != W.shape[1]:
        raise ShapeError(f"linear: input of shape {X.shape} does not fit weight of shape {W.shape} "
                         f"(needs the last input dimension == {W.shape[1] if W.ndim == 2 else '?'})")
    if X.dtype != W.dtype:
        raise TypeError(f"linear: input dtype {X.dtype} differs from weight dtype {W.dtype}; convert the input "
                        "(float32 data is never silently upcast)")
    raise ShapeError(f"linear: bias of shape {bias.data.shape} does not fit weight of shape {W.shape} "
                     f"(needs ({W.shape[0]},))")


def linear(x: Any, weight: Tensor, bias: Tensor | None = None, activation: Op | str | None = None) -> Tensor:
    """x @ weight.T + bias in one node (weight of shape (out, in), as Gerald's A in R^{m x n}).

    One node instead of three saves the Python overhead and the intermediate arrays of a separate matmul
    and add; the vjps are g @ W, g.T @ x and the column sums of g. A raw NumPy batch ``x`` is data, not a
    graph node: the node's parents are then the weight and bias only.

    ``activation`` (an op-table row or its name, from ``FUSABLE_ACTIVATIONS``: relu, tanh, ...) is applied
    inside the same node: out = f(x @ W.T + b), and the incoming gradient is first multiplied by the row's own
    partial f'(z). The numbers are those of the separate ops; ``nn.Sequential`` fuses a Linear followed by such
    an activation this way.

    Any memory layout of W works. ``nn.Linear`` stores W column-major, so that W.T is row-major and both
    products of a step, x @ W.T and x.T @ g, reach BLAS with untransposed operands: with a small batch the
    cost of a product is mostly BLAS packing the 784 x 128 weight, and OpenBLAS packs a transposed operand
    much more slowly (``benchmarks/mlp.py`` measures both layouts).

    >>> x = Tensor([[1.0, 2.0]], requires_grad=False)
    >>> W = Tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]); b = Tensor([0.5, 0.5, 0.5])
    >>> linear(x, W, b).data.tolist(), linear(x, W, b, activation="relu").data.tolist()
    ([[1.5, 2.5, -2.5]], [[1.5, 2.5, 0.0]])
    """
    # NOTE: a raw input array (a batch) is not scanned: a NaN or infinity in it reaches the output, which is.
    act = OPS.get(activation) if isinstance(activation, str) else activation
    if activation is not None and act not in FUSABLE_ACTIVATIONS:
        shown = act.name if isinstance(act, Op) else activation
        raise ValueError(f"linear: activation {shown!r} cannot be fused (fusable: one-input rows with no "
                         f"parameter that need no checks, {sorted(op.name for op in FUSABLE_ACTIVATIONS)}); "
                         "apply it as its own op")
    W = weight.data
    if type(x) is np.ndarray and x.dtype == W.dtype:  # a raw batch of the weight's dtype: used as it is
        X, x = x, None
    else:
        x = x if isinstance(x, Tensor) else _const(np.asarray(x, dtype=W.dtype))
        X = x.data
    if (W.ndim != 2 or X.ndim == 0 or X.shape[-1] != W.shape[1] or X.dtype != W.dtype
            or (bias is not None and bias.data.shape != (W.shape[0],))):
        _linear_misfit(X, W, bias)
    z = X @ W.T
    if bias is not None:
        z += bias.data
    parents: tuple = (weight,) if bias is None else (weight, bias)
    if x is not None:
        parents = (x, *parents)
    if not _all_finite(z):
        raise _nonfinite("linear", parents, z, "gives")
    out = z
    if act is not None:
        F = _MATH[z.dtype]
        out = act.forward(F, z)
        if type(out) is not np.ndarray or out.dtype != z.dtype:
            out = np.asarray(out, dtype=z.dtype)
    column_major = W.strides[0] < W.strides[1]  # W.T is the row-major one (cheaper to ask than W.flags)
    want_x = x is not None and x.requires_grad
    first = 0 if x is not None else 1  # where the parents start among (x, weight, bias)

    def back(g: np.ndarray) -> tuple:
        if act is not None:
            g = g * act.partials(F, out, z)[0]
            if type(g) is not np.ndarray or g.dtype != z.dtype:
                g = np.asarray(g, dtype=z.dtype)
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        X2 = X.reshape(-1, X.shape[-1]) if X.ndim != 2 else X
        gx = gW = gb = None
        if column_major:
            if want_x:
                # NOTE: g @ W packs the transposed W; for a large W the transposed product is cheaper, but its
                # result is column-major, which slows the elementwise ops after it: worth it only when W is big.
                gx = (W.T @ g2.T).T if g.ndim == 2 and W.size > _TRANSPOSED_GX else g @ W
            if weight.requires_grad:
                gW = np.empty(W.shape, W.dtype, order="F")  # laid out like W, for the update
                np.matmul(X2.T, g2, out=gW.T)
        else:
            if want_x:
                gx = g @ W
            if weight.requires_grad:
                gW = g2.T @ X2
        if bias is not None and bias.requires_grad:
            gb = np.add.reduce(g2, axis=0)
        return (gx, gW, gb)[first:first + len(parents)]
    return _result(out, parents, back, "linear" if act is None else f"linear+{act.name}")


def _reduce_sum(x: Tensor, axis: Any, keepdims: bool, mean: bool) -> Tensor:
    X = x.data
    try:
        out = X.mean(axis=axis, keepdims=keepdims) if mean else X.sum(axis=axis, keepdims=keepdims)
    except (ValueError, np.exceptions.AxisError) as e:
        raise ShapeError(f"{'mean' if mean else 'sum'}: axis {axis} does not fit {_describe(x)} of shape "
                         f"{X.shape} ({e})") from None
    out = np.asarray(out, dtype=X.dtype)
    if not _all_finite(out):
        raise _nonfinite("mean" if mean else "sum", (x,), out, "gives")
    n = X.size // max(out.size, 1) if mean else 1

    def back(g: np.ndarray) -> tuple:
        gk = g if keepdims or axis is None else np.expand_dims(g, axis)
        if mean:
            gk = gk / np.asarray(n, dtype=X.dtype)
        return (np.broadcast_to(gk, X.shape),)
    return _result(out, (x,), back, "mean" if mean else "sum")


def _reduce_extreme(x: Tensor, axis: Any, keepdims: bool, which: str) -> Tensor:
    X = x.data
    if X.size == 0:
        raise ShapeError(f"{which}: {_describe(x)} is empty")
    try:
        m = X.max(axis=axis, keepdims=True) if which == "max" else X.min(axis=axis, keepdims=True)
    except (ValueError, np.exceptions.AxisError) as e:
        raise ShapeError(f"{which}: axis {axis} does not fit {_describe(x)} of shape {X.shape} ({e})") from None
    out = m if keepdims else (m.reshape(()) if axis is None else np.squeeze(m, axis=axis))

    def back(g: np.ndarray) -> tuple:
        hit = X == m
        count = hit.sum(axis=axis, keepdims=True)
        gk = g if keepdims else (np.reshape(g, m.shape))
        return ((hit * (gk / count)).astype(X.dtype, copy=False),)
    return _result(np.asarray(out), (x,), back, which)


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into the pieces.

    >>> a = Tensor([1.0, 2.0]); b = Tensor([3.0])
    >>> c = concatenate([a, b]); (c * Tensor([1.0, 2.0, 3.0], requires_grad=False)).sum().backward()
    >>> a.grad.tolist(), b.grad.tolist()
    ([1.0, 2.0], [3.0])
    """
    if not tensors:
        raise ShapeError("concatenate: needs at least one tensor")
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    ts = tuple(as_tensor(t, first.data.dtype if first is not None else None) for t in tensors)
    dtypes = {t.data.dtype for t in ts}
    if len(dtypes) > 1:
        raise TypeError(f"concatenate: dtypes differ ({', '.join(sorted(map(str, dtypes)))})")
    try:
        out = np.concatenate([t.data for t in ts], axis=axis)
    except (ValueError, np.exceptions.AxisError) as e:
        shapes = ", ".join(str(t.data.shape) for t in ts)
        raise ShapeError(f"concatenate: shapes {shapes} do not join along axis {axis} ({e})") from None
    cuts = np.cumsum([t.data.shape[axis] for t in ts])[:-1]

    def back(g: np.ndarray) -> tuple:
        pieces = np.split(g, cuts, axis=axis)
        return tuple(piece if t.requires_grad else None for t, piece in zip(ts, pieces, strict=True))
    return _result(out, ts, back, "concatenate")


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``cond`` holds, else ``b`` (elementwise, broadcasting); ``cond`` is data, not differentiated.

    >>> x = Tensor([-1.0, 2.0]); y = where(x > 0, x, 0.0); y.sum().backward(); x.grad
    array([0., 1.])
    """
    c = np.asarray(cond.data if isinstance(cond, Tensor) else cond, dtype=bool)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("where needs at least one Tensor branch")
    ta, tb = _operands("where", a, b)
    try:
        np.broadcast_shapes(c.shape, ta.data.shape, tb.data.shape)
    except ValueError:
        raise ShapeError(f"where: shapes {c.shape} (condition), {ta.data.shape} and {tb.data.shape} do not "
                         "broadcast") from None
    out = np.where(c, ta.data, tb.data)

    def back(g: np.ndarray) -> tuple:
        zero = np.zeros((), dtype=g.dtype)
        ga = _unbroadcast(np.where(c, g, zero), ta.data.shape) if ta.requires_grad else None
        gb = _unbroadcast(np.where(c, zero, g), tb.data.shape) if tb.requires_grad else None
        return ga, gb
    return _result(out, (ta, tb), back, "where")


def _is_basic_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, numbers.Integral)) and not isinstance(i, bool)
               for i in items)
