"""The NumPy ``Tensor``: an ndarray node on the same graph core as ``Value``, and the tensor-op rows.

Every node's op is a row. Elementwise ops are the op table's rows (forward and local derivative, with
broadcasting undone in the vjp). Tensor-only ops (matmul, linear, reductions, reshapes, indexing, the softmax
family; convolution, pooling and batch norm in ``functional``; cross-entropy in ``losses``) are rows of
``TENSOR_OPS``: a readable reference forward, vjp and jvp each, and for a few a faster twin in ``fast``.
``node(row, inputs, arg)`` is the one builder of every node; it applies the finiteness rule.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import fast, graph
from .ops import (
    OPS,
    DomainError,
    MicrogradxError,
    Op,
    domain_error,
    gelu_row,
    numpy_math,
    operator_roles,
    operator_rows,
)

__all__ = ["Tensor", "ShapeError", "TensorOp", "Kernel", "TENSOR_OPS", "deftensorop", "node", "linear",
           "matmul", "FUSABLE_ACTIVATIONS", "concatenate", "where", "as_tensor"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_new = object.__new__


# Where values are checked (each check is one vectorised np.isfinite pass, so that no NaN passes silently; a
# later relu would turn a NaN into 0). The builder ``node`` does it, from the row's flags:
#   * a Tensor built from user data, and numbers or arrays combined with a Tensor;
#   * the output of every row with ``checks_output`` (matmul, linear, sum/mean, convolution, the losses, and
#     every op-table row that is not ``bounded``: they can overflow), and linear's pre-activation when it has a
#     fused activation (which could hide it: relu(-inf) = 0);
#   * the vjp of every row with ``checks_grad`` (op-table rows that are not ``bounded``: pow near 0 can
#     overflow; matmul and linear: a product of finite factors can), except a gradient passed on unchanged
#     (it is the finite incoming one).
# The check is ``fast.all_finite``: an exact scan in the reference, a sum-of-squares proof on the fast path.
# Not checked: a raw batch array fed to ``linear`` or ``matmul`` (its NaN reaches the output, which is checked), rows
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


_all_finite = fast.all_finite


def _describe(t: Tensor) -> str:
    return t.label if t.label else f"tensor{tuple(t.data.shape)}"


def _at(idx: tuple[int, ...]) -> str:
    return f" at index {idx}" if idx else ""


def _as_array(data: Any, dtype: Any, what: str) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    try:
        arr = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
    except RuntimeWarning:  # a cast that overflows (see _quiet_rerun): the check below names it
        arr = _quiet_rerun(np.asarray, data, dtype=dtype)
    if arr.dtype not in _FLOATS:
        if arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"{what} needs float32 or float64 data (ints are converted to float64), "
                            f"got dtype {arr.dtype}")
    if not _all_finite(arr):
        idx, bad = fast.first_nonfinite(arr)
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

    __slots__ = ("data", "_grad", "requires_grad", "label", "parents", "_op", "_arg", "_res", "_vjp",
                 "_checks_grad", "keeps_grad", "_grad_bound")
    __array_ufunc__ = None  # so that ndarray + Tensor and ndarray @ Tensor defer to the Tensor's operators
    partials = None  # the node protocol's per-edge scalars: a tensor edge carries a vjp instead

    def __init__(self, data: Any, requires_grad: bool = True, label: str | None = None, dtype: Any = None) -> None:
        self.data = _as_array(data, dtype, f"Tensor({label})" if label else "Tensor")
        self._grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.label = label
        self.parents: tuple[Tensor, ...] = ()  # the op's tensor inputs, in order; empty for a leaf
        self._op: Any = None
        self._arg: Any = None
        self._res: Any = None
        self._vjp: Any = None
        self._checks_grad = False
        self.keeps_grad = True  # a leaf keeps its gradient; results do not, unless retain_grad()
        self._grad_bound: float | None = None

    # -- the node protocol of the graph core ---------------------------------------------------------------

    @property
    def grad(self) -> np.ndarray | None:
        """d(output)/d(self) after ``backward()``: kept on parameters (and on ``retain_grad()`` tensors)."""
        # NOTE: whoever reads the array may change it in place, so the bound the backward pass proved for it
        # (``_grad_bound``, which spares the optimizer a pass over the gradient) no longer holds.
        self._grad_bound = None
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        # NOTE: intermediate results drop their gradient (nobody reads it; keeping it would hold memory), and
        # a parameter always owns a writable array, so an optimizer may update it in place.
        if value is not None and type(value) is not np.ndarray:
            if not isinstance(value, np.ndarray | np.generic):
                raise TypeError(f"grad of {_describe(self)}: expected a NumPy array (or None), got "
                                f"{type(value).__name__}")
            value = np.asarray(value)  # NOTE: a NumPy scalar (a vjp summing to a number) becomes a 0-d array
        if value is not None and value.shape != self.data.shape:  # as PyTorch: a later sum would broadcast it
            raise ShapeError(f"grad of {_describe(self)}: shape {value.shape} differs from the tensor's shape "
                             f"{self.data.shape}")
        self._grad_bound = None
        if not self.keeps_grad:
            return
        if value is not None and (value.base is not None or not value.flags.writeable):
            value = value.copy()
        self._grad = value

    @property
    def op(self) -> Op | TensorOp | None:
        """The row that made this tensor: an op-table ``Op`` (elementwise) or a ``TensorOp``; None for a leaf."""
        return self._op

    @property
    def arg(self) -> Any:
        """The row's non-tensor arguments: the number parameter of an op-table row (the alpha of
        ``leaky_relu``), or a dict of keyword arguments of a tensor-op row (``{"axis": 1, ...}``)."""
        return self._arg

    @property
    def op_name(self) -> str | None:
        """The op's label as text: ``(x @ y).op_name == 'matmul'``; a fused linear is ``'linear+relu'``."""
        op = self._op
        if op is None:
            return None
        return op.display(self._arg) if type(op) is TensorOp and callable(op.label) else op.name

    def vjp(self, g: Any, create_graph: bool = False) -> tuple:
        """One gradient contribution per parent (None for a parent that takes none), for upstream ``g``."""
        if create_graph or type(g) is not np.ndarray:
            if create_graph:
                raise MicrogradxError(f"{self.op_name}: Tensor gradients are arrays, so create_graph (higher "
                                      "order) is not supported; use Value for higher-order derivatives")
            g = np.asarray(g, dtype=self.data.dtype)  # a number seed from graph.grad()
        parents = self.parents
        needs = tuple([p.requires_grad for p in parents])
        try:
            try:
                grads = self._vjp(g, self._res, needs)
            except RuntimeWarning:  # see _quiet_rerun
                grads = _quiet_rerun(self._vjp, g, self._res, needs)
        except fast.NonFiniteGradient as e:  # a fast vjp that checks its own gradients found one
            raise self._nonfinite_grad(e.parent, e.grad) from None
        checks = self._checks_grad
        for k, c in enumerate(grads):
            if c is not None:
                if c is g:
                    if not parents[k].parents:  # a parameter must not share its gradient array
                        grads = (*grads[:k], g.copy(), *grads[k + 1:])
                elif checks and not _all_finite(c):
                    raise self._nonfinite_grad(k, c)
        return grads

    def _nonfinite_grad(self, k: int, c: np.ndarray) -> DomainError:
        idx, bad = fast.first_nonfinite(c)
        name, parent = self.op_name, self.parents[k]
        return DomainError(f"backward: the gradient flowing from {_describe(self)} (op {name}) to its parent {k} "
                           f"({_describe(parent)}) is {bad}{_at(idx)}, not a finite number", name, bad,
                           self.label or parent.label)

    def jvp(self, tangents: Sequence[Any]) -> np.ndarray:
        """The tangent of this node from its parents' tangents (None for a zero tangent)."""
        full = [np.zeros_like(p.data) if t is None else t for p, t in zip(self.parents, tangents, strict=True)]
        impl = _kernels(self._op)
        res = self._res
        if self._vjp is not impl.vjp:  # built by the fast twin: its residuals are laid out its own way
            res = impl.forward(*(p.data for p in self.parents), **kwargs(self._op, self._arg))[1]
        return impl.jvp(res, full)

    def as_tangent(self, v: Any, what: str = "jvp tangent") -> np.ndarray:
        """``v`` checked as a tangent (a direction) or seed for this tensor: same shape, finite; None: zeros."""
        if v is None:
            return np.zeros_like(self.data)
        t = _as_array(v, self.data.dtype, what)
        if t.shape != self.data.shape:
            raise ShapeError(f"{what}: shape {t.shape} differs from {_describe(self)} shape {self.data.shape}")
        return t

    def add_grads(self, a: np.ndarray, b: np.ndarray, held: bool = False) -> np.ndarray:
        """a + b, two gradients reaching this tensor (``held``: a pass's and the ``.grad`` it already held); a sum
        that overflows is a DomainError naming this tensor. Both backward passes add gradients through it.

        >>> Tensor([1.0]).add_grads(np.array([1.0]), np.array([2.0]))
        array([3.])
        """
        # NOTE: every vjp's result is finite (checked, or bounded by its finite upstream), so a sum is the one
        # place in the backward pass where inf can appear unchecked; the fast kernels rely on a finite upstream.
        try:
            total = a + b
        except RuntimeWarning:  # see _quiet_rerun
            total = _quiet_rerun(np.add, a, b)
        if _all_finite(total):
            return total
        idx, bad = fast.first_nonfinite(total)
        what = ("added to the .grad it already held (zero the gradients between backward passes)" if held
                else "summed over its uses")
        raise DomainError(f"backward: the gradient reaching {_describe(self)}, {what}, is {bad}{_at(idx)}, not a "
                          "finite number", "backward", bad, self.label)

    def reset_grad(self) -> None:
        """Forget the gradient (what ``zero_grad(out)`` does to every node)."""
        self._grad = self._grad_bound = None


    def retain_grad(self) -> Tensor:
        """Keep this intermediate result's gradient too (for inspection); returns self."""
        self.keeps_grad = True
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
                                  "from tensors with requires_grad=False only, or inside no_grad())")
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
        if fast.ENABLED:  # the same pass without the stepper's generator and events (fast.reference_only(): off)
            fast.tensor_backward(self, s, graph.topological_order(self))
        else:
            graph.run(graph.backprop(self, s))

    def zero_grad(self) -> None:
        """Forget this tensor's gradient (sets ``grad`` to None)."""
        self._grad = self._grad_bound = None

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

    # -- operators: +, -, *, /, **, unary - and abs are attached from the rows' spellings below --------------

    def __pos__(self) -> Tensor:
        return self

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


    # -- tensor-only ops: each a row of TENSOR_OPS (below) ---------------------------------------------------

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes by default): ``Tensor([[1.0, 2.0]]).sum(axis=1).data`` is ``[3.]``."""
        _check_axis("sum", self, axis)
        return node(SUM, (self,), {"axis": axis, "keepdims": keepdims})

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis`` (all axes by default): ``Tensor([1.0, 3.0]).mean().item() == 2.0``."""
        _check_axis("mean", self, axis)
        return node(MEAN, (self,), {"axis": axis, "keepdims": keepdims})

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Largest entry over ``axis``; on a tie the gradient is split evenly (as the table's ``max`` row).

        >>> x = Tensor([1.0, 3.0, 3.0]); m = x.max(); m.backward(); x.grad
        array([0. , 0.5, 0.5])
        """
        _check_axis("max", self, axis, nonempty=True)
        return node(AMAX, (self,), {"axis": axis, "keepdims": keepdims})

    def min(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Smallest entry over ``axis``; on a tie the gradient is split evenly."""
        _check_axis("min", self, axis, nonempty=True)
        return node(AMIN, (self,), {"axis": axis, "keepdims": keepdims})

    def reshape(self, *shape: Any) -> Tensor:
        """The same entries in a new shape: ``Tensor([1.0, 2.0, 3.0, 4.0]).reshape(2, 2).shape == (2, 2)``."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        x = self.data
        try:
            x.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {_describe(self)} of shape {x.shape} "
                             f"({x.size} entries) to {shape}") from None
        return node(RESHAPE, (self,), {"shape": shape})

    def transpose(self, *axes: int) -> Tensor:
        """Permute the axes (reverse them by default): ``Tensor([[1.0, 2.0]]).transpose().shape == (2, 1)``."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        x = self.data
        perm = tuple(range(x.ndim))[::-1] if not axes else axes
        if sorted(a % x.ndim if x.ndim else a for a in perm) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of "
                             f"{_describe(self)} of shape {x.shape}")
        return node(TRANSPOSE, (self,), {"axes": tuple(a % x.ndim for a in perm)})

    @property
    def T(self) -> Tensor:
        """The transpose (axes reversed)."""
        return self.transpose()

    def __getitem__(self, index: Any) -> Tensor:
        """Indexing and slicing as in NumPy (basic and integer-array); the gradient is scattered back.

        >>> x = Tensor([1.0, 2.0, 3.0]); y = x[[0, 0, 2]].sum(); y.backward(); x.grad
        array([2., 0., 1.])
        """
        index = _index("getitem", self, index)  # an index Tensor holds floats: whole numbers become ints
        x = self.data
        try:
            x[index]
        except (IndexError, ValueError) as e:
            raise ShapeError(f"getitem: index {index!r} does not fit {_describe(self)} of shape {x.shape} "
                             f"({e})") from None
        return node(GETITEM, (self,), {"index": index})

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
            np.take_along_axis(x, idx, axis)
        except (IndexError, ValueError) as e:
            raise ShapeError(f"gather: indices of shape {idx.shape} do not fit {_describe(self)} of shape "
                             f"{x.shape} along axis {axis} ({e})") from None
        return node(GATHER, (self,), {"indices": idx, "axis": axis})

    def clip(self, lo: float | None = None, hi: float | None = None) -> Tensor:
        """Values limited to [lo, hi]; the gradient passes where lo <= x <= hi (bounds included, as PyTorch's
        clamp), so a value exactly at a bound still learns.

        >>> x = Tensor([-2.0, 0.5, 2.0]); x.clip(-1.0, 1.0).sum().backward(); x.grad
        array([0., 1., 0.])
        """
        return node(CLIP, (self,), {"lo": lo, "hi": hi})

    def logsumexp(self, axis: int = -1, keepdims: bool = False) -> Tensor:
        """log(sum(exp(x))) over ``axis``, computed stably (the maximum is taken out first).

        >>> round(Tensor([1000.0, 1000.0]).logsumexp().item() - 1000.0, 12) == round(math.log(2.0), 12)
        True
        """
        _check_axis("logsumexp", self, axis, nonempty=True)
        return node(LOGSUMEXP, (self,), {"axis": axis, "keepdims": keepdims})

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / sum(exp(x)) over ``axis``, stably; the vjp is y * (g - sum(g * y)).

        >>> Tensor([0.0, math.log(3.0)]).softmax().data.round(6).tolist()
        [0.25, 0.75]
        """
        _check_axis("softmax", self, axis, nonempty=True)
        return node(SOFTMAX, (self,), {"axis": axis})

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - logsumexp(x) over ``axis``, stably; the vjp is g - softmax(x) * sum(g).

        >>> Tensor([0.0, 0.0]).log_softmax().data.tolist() == [-math.log(2.0)] * 2
        True
        """
        _check_axis("log_softmax", self, axis, nonempty=True)
        return node(LOG_SOFTMAX, (self,), {"axis": axis})

    def astype(self, dtype: Any) -> Tensor:
        """The same values in another float dtype; the gradient is converted back to this tensor's dtype."""
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"astype: Tensor data must be float32 or float64, got {dt}")
        return node(ASTYPE, (self,), {"dtype": dt})

    # -- op-table methods (x.tanh(), x.leaky_relu(0.1), x.prelu(slope), ...) are attached below -------------

    def apply(self, op: Op | str, *others: Any, param: Any = None) -> Tensor:
        """Apply an op-table row by object or name: ``x.apply("leaky_relu", param=0.2)``."""
        row = OPS[op] if isinstance(op, str) else op
        if len(others) != row.arity - 1:
            raise TypeError(f"{row.name} takes {row.arity} tensor input(s), got {1 + len(others)}")
        if row.param is not None and param is None:
            param = row.default
        if row.arity == 1:
            return node(row, (self,), param)
        return _elementwise(row, self, others[0])


# ---------------------------------------------------------------------------------------------------------
# The tensor-op table
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    """A forward and its vjp that belong together: ``forward(*arrays, **arg) -> (out, residuals)`` and
    ``vjp(g, residuals, needs) -> one gradient per input`` (None where ``needs[k]`` is False).

    ``checks_grad``: the vjp applies the finiteness rule to its own gradients (a bound-based proof, else a
    scan) and raises ``fast.NonFiniteGradient``, so the node need not scan them again."""

    forward: Callable[..., tuple[np.ndarray, Any]]
    vjp: Callable[..., tuple]
    checks_grad: bool = False


@dataclass(eq=False)
class TensorOp:
    """One tensor-only op: a row of ``TENSOR_OPS``.

    ``forward(*arrays, **arg)`` returns the output and the residuals the derivatives need; ``vjp(g, residuals,
    needs)`` gives one gradient per input (None where ``needs`` says the input takes none); ``jvp(residuals,
    tangents)`` gives the output's tangent from one tangent per input. These three are the readable reference;
    ``fast``, when set, is a faster twin of forward and vjp (``microgradx.fast``). ``checks_output``: the output
    can overflow, so the builder scans it; ``checks_grad``: the same for the gradients.

    >>> TENSOR_OPS["matmul"].forward(np.eye(2), np.ones((2, 1)))[0].tolist()
    [[1.0], [1.0]]
    """

    name: str
    label: str | Callable[[Any], str]
    forward: Callable[..., tuple[np.ndarray, Any]]
    vjp: Callable[..., tuple]
    jvp: Callable[..., np.ndarray]
    doc: str
    checks_output: bool = False
    checks_grad: bool = False
    fast: Kernel | None = None

    def display(self, arg: Any = None) -> str:
        """The short label for a drawing: ``TENSOR_OPS["sum"].display()`` is ``'sum'``."""
        return self.label(arg) if callable(self.label) else self.label

    def __repr__(self) -> str:
        return f"<tensor op {self.name}>"


TENSOR_OPS: dict[str, TensorOp] = {}


def deftensorop(name: str, forward: Callable[..., tuple[np.ndarray, Any]], vjp: Callable[..., tuple],
                jvp: Callable[..., np.ndarray], doc: str, *, label: str | Callable[[Any], str] | None = None,
                checks_output: bool = False, checks_grad: bool = False, fast: Kernel | None = None) -> TensorOp:
    """Declare a tensor-only op and add it to ``TENSOR_OPS`` (its label defaults to its name); a name is declared
    once, so two modules cannot each define an op of the same name."""
    if name in TENSOR_OPS:
        raise ValueError(f"deftensorop: a tensor op named {name!r} already exists ({TENSOR_OPS[name].doc})")
    row = TensorOp(name, label or name, forward, vjp, jvp, doc, checks_output, checks_grad, fast)
    TENSOR_OPS[name] = row
    return row


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` down to ``shape``, undoing NumPy broadcasting."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    kept = tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    # NOTE: the leading axes are summed away without keepdims, so a bias's gradient (the column sums of g) is a
    # new array of the bias's shape, not a reshaped view that a parameter would have to copy.
    s = np.add.reduce(g, axis=tuple(range(lead))) if lead else g
    if kept:
        s = np.add.reduce(s, axis=tuple(k - lead for k in kept), keepdims=True)
    if type(s) is not np.ndarray:  # everything summed away: NumPy gives a scalar, the engine keeps arrays
        s = np.asarray(s)
    return s if s.shape == shape else s.reshape(shape)


def _expand(g: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    """``g`` with the reduced axes put back (as size 1), so that it broadcasts against the input."""
    return g if keepdims or axis is None else np.expand_dims(g, axis)


# -- matmul: out = A @ B; vjps g @ B.T and A.T @ g; jvp dA @ B + A @ dB -----------------------------------

def _matmul_forward(A: np.ndarray, B: np.ndarray) -> tuple:
    return A @ B, (A, B)


def _matmul_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    A, B = res
    # A 1-D operand is a row (A) or column (B) matrix whose extra axis the product dropped: put it back in g.
    A2 = A[None, :] if A.ndim == 1 else A
    B2 = B[:, None] if B.ndim == 1 else B
    g2 = np.reshape(g, np.broadcast_shapes(A2.shape[:-2], B2.shape[:-2]) + (A2.shape[-2], B2.shape[-1]))
    ga = _unbroadcast(g2 @ np.swapaxes(B2, -1, -2), A2.shape) if needs[0] else None
    gb = _unbroadcast(np.swapaxes(A2, -1, -2) @ g2, B2.shape) if needs[1] else None
    # NOTE: reshaped only for a 1-D operand: a reshape is a view, which a parameter would have to copy.
    return (ga if ga is None or A.ndim > 1 else ga.reshape(A.shape),
            gb if gb is None or B.ndim > 1 else gb.reshape(B.shape))


MATMUL = deftensorop("matmul", _matmul_forward, _matmul_vjp,
                     lambda res, t: t[0] @ res[1] + res[0] @ t[1],
                     "matrix product with NumPy's rules", label="@", checks_output=True, checks_grad=True,
                     fast=Kernel(_matmul_forward, functools.partial(fast.matmul_vjp, reference=_matmul_vjp),
                                 checks_grad=True))


# -- linear: out = f(x @ W.T + b) -------------------------------------------------------------------------

def _linear_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, activation: Op | None = None) -> tuple:
    z = X @ W.T
    if bias:
        z = z + bias[0]
    if activation is not None and not _all_finite(z):
        return z, None  # NOTE: an activation could hide it (relu(-inf) = 0): the builder's output check names it
    out = z if activation is None else np.asarray(activation.forward(numpy_math(), z), dtype=z.dtype)
    return out, (X, W, z, out, len(bias), activation, numpy_math())


def _linear_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    X, W, z, out, nb, act, F = res
    if act is not None:  # through the activation first: g * f'(z)
        g = np.asarray(g * act.partials(F, out, z)[0], dtype=z.dtype)
    g2 = g.reshape(-1, g.shape[-1])
    X2 = X.reshape(-1, X.shape[-1])
    gx = g @ W if needs[0] else None
    gW = g2.T @ X2 if needs[1] else None
    gb = g2.sum(axis=0) if nb and needs[2] else None
    return (gx, gW, gb)[:2 + nb]


def _linear_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    X, W, z, out, nb, act, F = res
    dz = t[0] @ W.T + X @ t[1].T
    if nb:
        dz = dz + t[2]
    if act is None:
        return dz
    return np.asarray(dz * act.partials(F, out, z)[0], dtype=z.dtype)


def _linear_label(arg: Any) -> str:
    act = (arg or {}).get("activation")
    return "linear" if act is None else f"linear+{act.name}"


LINEAR = deftensorop("linear", _linear_forward, _linear_vjp, _linear_jvp,
                     "x @ W.T + b, optionally followed by a one-input op-table row in the same node",
                     label=_linear_label, checks_output=True, checks_grad=True,
                     fast=Kernel(fast.linear_forward, fast.linear_vjp, checks_grad=True))


# -- reductions -------------------------------------------------------------------------------------------

def _sum_forward(X: np.ndarray, axis: Any = None, keepdims: bool = False) -> tuple:
    return np.asarray(X.sum(axis=axis, keepdims=keepdims), dtype=X.dtype), (X.shape, axis, keepdims)


def _sum_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, axis, keepdims = res
    return (np.broadcast_to(_expand(g, axis, keepdims), shape),)


def _mean_forward(X: np.ndarray, axis: Any = None, keepdims: bool = False) -> tuple:
    out = np.asarray(X.mean(axis=axis, keepdims=keepdims), dtype=X.dtype)
    return out, (X.shape, axis, keepdims, X.size // max(out.size, 1), X.dtype)


def _mean_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, axis, keepdims, n, dtype = res
    return (np.broadcast_to(_expand(g, axis, keepdims) / dtype.type(n), shape),)


SUM = deftensorop("sum", _sum_forward, _sum_vjp,
                  lambda res, t: t[0].sum(axis=res[1], keepdims=res[2]),
                  "sum over axes; the vjp broadcasts g back", checks_output=True)
MEAN = deftensorop("mean", _mean_forward, _mean_vjp,
                   lambda res, t: t[0].mean(axis=res[1], keepdims=res[2]),
                   "mean over axes; the vjp broadcasts g / n back", checks_output=True)


def _extreme(which: str) -> Callable[..., tuple]:
    reduce = np.max if which == "max" else np.min

    def forward(X: np.ndarray, axis: Any = None, keepdims: bool = False) -> tuple:
        m = reduce(X, axis=axis, keepdims=True)
        out = m if keepdims else (m.reshape(()) if axis is None else np.squeeze(m, axis=axis))
        return np.asarray(out), (X, m, axis, keepdims)
    return forward


def _extreme_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    X, m, axis, keepdims = res
    hit = X == m
    # NOTE: the share g / count is formed at the reduced size in X's dtype, so the only full-size arrays are
    # the boolean mask and the result (no float64 temporary from the integer count).
    count = hit.sum(axis=axis, keepdims=True, dtype=X.dtype)
    share = np.reshape(g, m.shape) / count
    return (np.multiply(hit, share, dtype=X.dtype),)


def _extreme_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    X, m, axis, keepdims = res
    hit = X == m
    d = (hit * t[0]).sum(axis=axis, keepdims=True) / hit.sum(axis=axis, keepdims=True)
    return np.asarray(d if keepdims else (d.reshape(()) if axis is None else np.squeeze(d, axis=axis)),
                      dtype=X.dtype)


AMAX = deftensorop("amax", _extreme("max"), _extreme_vjp, _extreme_jvp,
                   "largest entry over axes; on a tie the gradient is split evenly", label="max")
AMIN = deftensorop("amin", _extreme("min"), _extreme_vjp, _extreme_jvp,
                   "smallest entry over axes; on a tie the gradient is split evenly", label="min")


# -- moving and selecting entries -------------------------------------------------------------------------

RESHAPE = deftensorop("reshape", lambda X, shape: (X.reshape(shape), (X.shape, shape)),
                      lambda g, res, needs: (g.reshape(res[0]),),
                      lambda res, t: t[0].reshape(res[1]), "the same entries in a new shape")


def _transpose_forward(X: np.ndarray, axes: tuple[int, ...]) -> tuple:
    return X.transpose(axes), axes


TRANSPOSE = deftensorop("transpose", _transpose_forward,
                        lambda g, axes, needs: (g.transpose(np.argsort(axes)),),
                        lambda axes, t: t[0].transpose(axes), "the axes permuted")


def _is_basic_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, numbers.Integral)) and not isinstance(i, bool)
               for i in items)


def _getitem_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, dtype, index = res
    z = np.zeros(shape, dtype=dtype)
    if _is_basic_index(index):  # a view: each entry is selected at most once
        z[index] = g
    else:                       # integer arrays may select an entry several times: accumulate
        np.add.at(z, index, g)
    return (z,)


GETITEM = deftensorop("getitem", lambda X, index: (np.asarray(X[index]), (X.shape, X.dtype, index)),
                      _getitem_vjp, lambda res, t: np.asarray(t[0][res[2]]),
                      "indexing and slicing as in NumPy; the vjp scatters g back", label="[]")


def _gather_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, dtype, idx, axis = res
    grids = list(np.ix_(*(np.arange(n) for n in idx.shape)))
    grids[axis] = idx
    z = np.zeros(shape, dtype=dtype)
    np.add.at(z, tuple(grids), g)
    return (z,)


GATHER = deftensorop("gather",
                     lambda X, indices, axis: (np.take_along_axis(X, indices, axis), (X.shape, X.dtype, indices, axis)),
                     _gather_vjp, lambda res, t: np.take_along_axis(t[0], res[2], res[3]),
                     "entries picked along an axis by integer indices (np.take_along_axis)")


def _clip_forward(X: np.ndarray, lo: float | None = None, hi: float | None = None) -> tuple:
    keep = np.ones(X.shape, dtype=bool)
    if lo is not None:
        keep &= X >= lo
    if hi is not None:
        keep &= X <= hi
    return np.clip(X, lo, hi).astype(X.dtype, copy=False), keep


CLIP = deftensorop("clip", _clip_forward,
                   lambda g, keep, needs: (np.where(keep, g, g.dtype.type(0)),),
                   lambda keep, t: np.where(keep, t[0], t[0].dtype.type(0)),
                   "values limited to [lo, hi]; the gradient passes where lo <= x <= hi, as PyTorch's clamp")


def _astype_forward(X: np.ndarray, dtype: np.dtype) -> tuple:
    return X.astype(dtype), (X.dtype, dtype)


ASTYPE = deftensorop("astype", _astype_forward, lambda g, res, needs: (g.astype(res[0]),),
                     lambda res, t: t[0].astype(res[1]), "the same values in another float dtype",
                     checks_output=True)


# -- the softmax family: reference forms, the row maximum taken out first so that exp cannot overflow ----

def _softmax_parts(X: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shifted = X - X.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return shifted, e, e.sum(axis=axis, keepdims=True)


def _logsumexp_forward(X: np.ndarray, axis: int = -1, keepdims: bool = False) -> tuple:
    m = X.max(axis=axis, keepdims=True)
    e = np.exp(X - m)
    s = e.sum(axis=axis, keepdims=True)
    lse = np.log(s) + m
    out = lse if keepdims else np.squeeze(lse, axis=axis)
    return out, (e / s, axis, keepdims)


def _logsumexp_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    y, axis, keepdims = res
    return (y * t[0]).sum(axis=axis, keepdims=keepdims)


LOGSUMEXP = deftensorop("logsumexp", _logsumexp_forward,
                        lambda g, res, needs: (_expand(g, res[1], res[2]) * res[0],), _logsumexp_jvp,
                        "log(sum(exp(x))) over an axis, stably; the vjp is g * softmax(x)")


def _softmax_forward(X: np.ndarray, axis: int = -1) -> tuple:
    _, e, s = _softmax_parts(X, axis)
    y = e / s
    return y, (y, axis)


SOFTMAX = deftensorop("softmax", _softmax_forward,
                      lambda g, res, needs: (res[0] * (g - (g * res[0]).sum(axis=res[1], keepdims=True)),),
                      lambda res, t: res[0] * (t[0] - (t[0] * res[0]).sum(axis=res[1], keepdims=True)),
                      "exp(x) / sum(exp(x)) over an axis; the vjp is y * (g - sum(g * y))")


def _log_softmax_forward(X: np.ndarray, axis: int = -1) -> tuple:
    shifted, e, s = _softmax_parts(X, axis)
    return shifted - np.log(s), (e / s, axis)


LOG_SOFTMAX = deftensorop("log_softmax", _log_softmax_forward,
                          lambda g, res, needs: (g - res[0] * g.sum(axis=res[1], keepdims=True),),
                          lambda res, t: t[0] - (res[0] * t[0]).sum(axis=res[1], keepdims=True),
                          "x - logsumexp(x) over an axis; the vjp is g - softmax(x) * sum(g)")


# -- joining and choosing ---------------------------------------------------------------------------------

def _concatenate_forward(*arrays: np.ndarray, axis: int = 0) -> tuple:
    return np.concatenate(arrays, axis=axis), (np.cumsum([a.shape[axis] for a in arrays])[:-1], axis)


CONCATENATE = deftensorop("concatenate", _concatenate_forward,
                          lambda g, res, needs: tuple(piece if need else None for piece, need in
                                                      zip(np.split(g, res[0], axis=res[1]), needs, strict=True)),
                          lambda res, t: np.concatenate(t, axis=res[1]),
                          "tensors joined along an existing axis; the vjp splits g back")


def _where_forward(A: np.ndarray, B: np.ndarray, cond: np.ndarray) -> tuple:
    return np.where(cond, A, B), (cond, A.shape, B.shape)


def _where_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    c, sa, sb = res
    zero = g.dtype.type(0)
    return (_unbroadcast(np.where(c, g, zero), sa) if needs[0] else None,
            _unbroadcast(np.where(c, zero, g), sb) if needs[1] else None)


WHERE = deftensorop("where", _where_forward, _where_vjp, lambda res, t: np.where(res[0], t[0], t[1]),
                    "a where the condition holds, else b; the condition is data")


# ---------------------------------------------------------------------------------------------------------
# Op-table rows on arrays: forward(F, ...) and vjp = g * partials(F, out, ...), broadcasting undone
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Elementwise:
    """How the tensor engine runs one op-table row (the node's op stays the row itself)."""

    forward: Callable[..., tuple[np.ndarray, Any]]
    vjp: Callable[..., tuple]
    jvp: Callable[..., np.ndarray]
    fast: Kernel
    checks_output: bool
    checks_grad: bool


def _elementwise_kernels(op: Op) -> _Elementwise:
    def forward_with(F_of: Callable[[np.dtype], Any]) -> Callable[..., tuple]:
        def forward(*arrays: np.ndarray, param: Any = None) -> tuple:
            dtype = arrays[0].dtype
            F = F_of(dtype)
            args = arrays if op.param is None else (*arrays, param)
            out = op.forward(F, *args)
            if type(out) is not np.ndarray or out.dtype != dtype:
                out = np.asarray(out, dtype=dtype)
            return out, (F, out, args)
        return forward

    def vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
        F, out, args = res
        grads = []
        for x, z, need in zip(args, op.partials(F, out, *args), needs):
            if not need:
                grads.append(None)
                continue
            c = g if type(z) is float and z == 1.0 else g * z
            if type(c) is not np.ndarray or c.dtype != out.dtype:
                c = np.asarray(c, dtype=out.dtype)
            grads.append(c if c.shape == x.shape else _unbroadcast(c, x.shape))
        return tuple(grads)

    def jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
        F, out, args = res
        d = sum(z * tk for z, tk in zip(op.partials(F, out, *args), t))
        return np.asarray(np.broadcast_to(d, out.shape), dtype=out.dtype)

    return _Elementwise(forward_with(lambda dtype: numpy_math()), vjp, jvp,
                        Kernel(forward_with(fast.array_math), vjp), not op.bounded, not op.bounded)


_ELEMENTWISE = {op: _elementwise_kernels(op) for op in OPS.values()}


def _kernels(row: Op | TensorOp) -> TensorOp | _Elementwise:
    if type(row) is not Op:
        return row
    found = _ELEMENTWISE.get(row)
    if found is None:  # a row made outside the table (a test's deliberately wrong one, say)
        found = _ELEMENTWISE[row] = _elementwise_kernels(row)
    return found


# ---------------------------------------------------------------------------------------------------------
# Building nodes: the one builder
# ---------------------------------------------------------------------------------------------------------

def _const(data: np.ndarray) -> Tensor:
    t = _new(Tensor)
    t.data, t._grad, t.requires_grad, t.label = data, None, False, None
    t.parents, t._op, t._arg, t._res, t._vjp, t._checks_grad, t.keeps_grad = (), None, None, None, None, False, \
        True
    t._grad_bound = None
    return t


_NO_ARGS: dict[str, Any] = {}


def kwargs(row: Op | TensorOp, arg: Any) -> dict[str, Any]:
    """The keyword arguments of ``row``'s forward for a node's ``arg``: ``{"param": 0.01}`` for leaky_relu."""
    if type(row) is Op:
        return {} if row.param is None else {"param": arg}
    return arg or {}


def node(row: Op | TensorOp, inputs: Sequence[Tensor], arg: Any = None) -> Tensor:
    """The one node builder: apply ``row`` to ``inputs`` (Tensors) with non-tensor arguments ``arg``.

    ``arg`` is an op-table row's number parameter, or a tensor-op row's keyword arguments as a dict. The
    builder checks an op-table row's domains, runs the forward (the fast twin when there is one), scans the
    output when the row says it may overflow, and records the node if some input needs a gradient (else it
    returns a plain data tensor). Layers and losses build every node through it.

    >>> x = Tensor([1.0, -2.0])
    >>> node(OPS["leaky_relu"], (x,), 0.5).data.tolist(), node(TENSOR_OPS["sum"], (x,), {"axis": 0}).item()
    ([1.0, -1.0], -1.0)
    """
    if type(inputs) is not tuple:
        inputs = tuple(inputs)
    if type(row) is Op:
        impl = _ELEMENTWISE.get(row) or _kernels(row)
        if row.checked:
            _check_domains(row, inputs, arg)
        kw = _NO_ARGS if row.param is None else {"param": arg}
    else:
        impl, kw = row, arg or _NO_ARGS
    kernel = impl.fast if impl.fast is not None and fast.ENABLED else impl
    try:
        out, res = kernel.forward(*[t.data for t in inputs], **kw)
    except RuntimeWarning:  # see _quiet_rerun
        out, res = _quiet_rerun(kernel.forward, *[t.data for t in inputs], **kw)
    if impl.checks_output and not _all_finite(out):
        raise _nonfinite(row, inputs, out, "gives")
    for p in inputs:
        if p.requires_grad and _RECORDING:  # _RECORDING: False inside no_grad()
            t = _new(Tensor)
            t.data, t._grad, t.requires_grad, t.label, t.parents = out, None, True, None, inputs
            t._op, t._arg, t._res, t._vjp, t.keeps_grad, t._grad_bound = row, arg, res, kernel.vjp, False, None
            t._checks_grad = impl.checks_grad and not (kernel is impl.fast and kernel.checks_grad)
            return t
    return _const(out)


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


def _names(inputs: Sequence[Tensor]) -> tuple[str, str | None]:
    return ", ".join(_describe(t) for t in inputs), next((t.label for t in inputs if t.label), None)


def _check_domains(op: Op, inputs: Sequence[Tensor], param: Any) -> None:
    for k, (t, dom) in enumerate(zip(inputs, op.domains(param), strict=True)):
        if dom.lo == -math.inf and dom.hi == math.inf and not dom.nonzero:
            continue
        bad = ~np.asarray(dom.contains(t.data))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            names, label = _names(inputs)
            raise domain_error(op, names, param, k, dom, float(np.asarray(t.data)[idx]), _at(idx), label)


def _nonfinite(row: Op | TensorOp, inputs: Sequence[Tensor], a: np.ndarray, what: str) -> DomainError:
    idx, bad = fast.first_nonfinite(a)
    names, label = _names(inputs)
    return DomainError(f"{row.name}({names}): {what} {bad}{_at(idx)}, not a finite number", row.name, bad, label)


def _quiet_rerun(f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``f(*args, **kw)`` with NumPy's floating-point warnings off, after the caller's warning filters made one an
    error (``pytest -W error``, ``filterwarnings = error``): the op's own finiteness check then raises the
    DomainError that names the op, or, when the overflow was harmless (gelu cubes a huge x inside a saturated
    tanh), the result stands, as it does under the default filters. Kernels are pure, so running one again
    gives what the interrupted run would have."""
    with np.errstate(all="ignore"):
        return f(*args, **kw)


# NOTE: an overflow inside a row's forward or a cast to float32 is always followed by the DomainError that names
# the op or the data (every unbounded result is checked), so NumPy's own warning would only be noise printed
# before it; so would the overflow of the fast finiteness proof's sum of squares (``fast.all_finite``, which
# then scans exactly). Filtered once here, for warnings raised from these modules only: no errstate cost per op.
for _module in ("microgradx.ops", "microgradx.tensor", "microgradx.fast"):
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning, _module)
# So is the invalid value of a product with an unscanned batch holding an infinity (inf * 0): matmul's check follows.
warnings.filterwarnings("ignore", "invalid value encountered in matmul", RuntimeWarning, "microgradx.tensor")


def _check_axis(name: str, x: Tensor, axis: Any, nonempty: bool = False) -> None:
    """A ShapeError unless ``axis`` (an int, a tuple or None) names axes of ``x``."""
    X = x.data
    try:
        # NOTE: the reduction's own shape rule, on a stand-in with X's shape and no memory: 0 where X is
        # empty along the reduced axes.
        reduced = np.broadcast_to(np.ones((), np.int8), X.shape).sum(axis=axis)
    except (ValueError, TypeError, np.exceptions.AxisError) as e:
        raise ShapeError(f"{name}: axis {axis} does not fit {_describe(x)} of shape {X.shape} ({e})") from None
    if nonempty and np.size(reduced) and not np.any(reduced):
        along = "" if axis is None else f" along axis {axis}"
        raise ShapeError(f"{name}: {_describe(x)} of shape {X.shape} is empty{along}")


# ---------------------------------------------------------------------------------------------------------
# Operators and methods from the op table; public functions of the tensor-only rows
# ---------------------------------------------------------------------------------------------------------

def _elementwise(op: Op, a: Any, b: Any) -> Tensor:
    a, b = _operands(op.name, a, b)
    sa, sb = a.data.shape, b.data.shape
    # NOTE: one shape a suffix of the other (equal shapes, a bias added to a batch) always broadcasts; only
    # other pairs need NumPy's rule, which costs microseconds per call.
    if sa[len(sa) - len(sb):] != sb and sb[len(sb) - len(sa):] != sa:
        try:
            np.broadcast_shapes(sa, sb)
        except ValueError:
            raise ShapeError(f"{op.name}: shapes {sa} and {sb} do not broadcast") from None
    return node(op, (a, b))


def _method(op: Op, name: str):
    if op.arity == 1 and op.param is None:
        def method(self: Tensor) -> Tensor:
            return node(op, (self,))
    elif op.arity == 1:
        def method(self: Tensor, param: float = op.default) -> Tensor:  # type: ignore[misc]
            return node(op, (self,), float(param))
    else:
        def method(self: Tensor, other: Any) -> Tensor:  # type: ignore[misc]
            return _elementwise(op, self, other)
    method.__name__ = method.__qualname__ = name
    args = "y" if op.arity == 2 else f"{op.param}={op.default}" if op.param else ""
    method.__doc__ = f"x.{name}({args}): {op.doc}, elementwise (op-table row {op.name!r})."
    return method


def _operator(name: str, rows: tuple[Op, ...]):
    """The operator method ``name`` (``__add__``, ``__rpow__``, ``__neg__``, ...) applying ``rows``."""
    unary, binary, numeric = operator_roles(rows)
    if unary is not None:
        def method(self: Tensor) -> Tensor:
            return node(unary, (self,))
    elif name == binary.reflected:
        def method(self: Tensor, other: Any) -> Tensor:  # type: ignore[misc]
            return _elementwise(binary, other, self)
    elif numeric is None:
        def method(self: Tensor, other: Any) -> Tensor:  # type: ignore[misc]
            return _elementwise(binary, self, other)
    else:
        def method(self: Tensor, other: Any) -> Tensor:  # type: ignore[misc]
            if isinstance(other, (Tensor, np.ndarray)):
                return _elementwise(binary, self, other)
            if isinstance(other, numbers.Real) and not isinstance(other, bool):
                return node(numeric, (self,), float(other))
            return NotImplemented
    method.__name__ = method.__qualname__ = name
    method.__doc__ = " or ".join(f"{r.name}: {r.doc}" for r in rows) + ", elementwise."
    return method


# NOTE: the rows' "max"/"min" method names are the reductions on a Tensor; the elementwise rows stay
# reachable as x.maximum(y) / x.minimum(y).
for _op in OPS.values():
    for _name in _op.methods:
        if not hasattr(Tensor, _name):
            setattr(Tensor, _name, _method(_op, _name))
for _dunder, _rows in operator_rows().items():
    setattr(Tensor, _dunder, _operator(_dunder, _rows))


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product ``a @ b`` with NumPy's rules (1-D operands, batched leading dimensions).

    >>> a = Tensor([[1.0, 2.0]]); b = Tensor([[3.0], [4.0]])
    >>> c = a @ b; c.backward(); c.item(), a.grad.tolist(), b.grad.tolist()
    (11.0, [[3.0, 4.0]], [[1.0], [2.0]])
    """
    # NOTE: a raw array operand of the other's dtype (a batch) is not scanned: a NaN or infinity in it makes a whole
    # row or column of the product non-finite, and the product is checked (an empty product has nothing to carry).
    if type(a) is np.ndarray and isinstance(b, Tensor) and a.dtype == b.data.dtype:
        a = _const(a)
    elif type(b) is np.ndarray and isinstance(a, Tensor) and b.dtype == a.data.dtype:
        b = _const(b)
    a, b = _operands("matmul", a, b)
    A, B = a.data, b.data
    if A.ndim == 0 or B.ndim == 0:
        raise ShapeError(f"matmul: needs arrays, got shapes {A.shape} and {B.shape}")
    ka, kb = A.shape[-1], B.shape[0] if B.ndim == 1 else B.shape[-2]
    if ka != kb:
        raise ShapeError(f"matmul: shapes {A.shape} and {B.shape} do not align ({ka} != {kb})")
    if A.ndim > 2 and B.ndim > 2:  # two stacks of matrices: their leading dimensions must broadcast
        try:
            np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except ValueError as e:
            raise ShapeError(f"matmul: shapes {A.shape} and {B.shape} do not broadcast ({e})") from None
    return node(MATMUL, (a, b))


# Activations linear() can apply inside its own node: one-input rows without a parameter that need no checks
# (no domain, and ``bounded``: finite in, finite out, partial of magnitude <= 1), so fusing skips nothing.
FUSABLE_ACTIVATIONS = frozenset(op for op in OPS.values()
                                if op.arity == 1 and op.param is None and op.bounded and not op.checked)


def check_bias_dtype(name: str, bias: Tensor | None, W: np.ndarray) -> None:
    """A TypeError unless ``bias`` (or None) has the weight's dtype: added to a float32 product, a float64 bias
    would be cast down by the fast kernels and upcast the output by the readable ones.

    >>> check_bias_dtype("linear", Tensor([1.0]), np.ones((1, 1)))
    """
    if bias is not None and bias.data.dtype != W.dtype:
        raise TypeError(f"{name}: bias dtype {bias.data.dtype} differs from weight dtype {W.dtype}; convert the "
                        "bias (float32 data is never silently upcast)")


def _linear_misfit(X: np.ndarray, W: np.ndarray, bias: Tensor | None) -> None:
    """Raise the error that says why x, W and bias do not fit linear()."""
    if W.ndim != 2 or X.ndim == 0 or X.shape[-1] != W.shape[1]:
        raise ShapeError(f"linear: input of shape {X.shape} does not fit weight of shape {W.shape} "
                         f"(needs the last input dimension == {W.shape[1] if W.ndim == 2 else '?'})")
    if X.dtype != W.dtype:
        raise TypeError(f"linear: input dtype {X.dtype} differs from weight dtype {W.dtype}; convert the input "
                        "(float32 data is never silently upcast)")
    check_bias_dtype("linear", bias, W)
    raise ShapeError(f"linear: bias of shape {bias.data.shape} does not fit weight of shape {W.shape} "
                     f"(needs ({W.shape[0]},))")


def linear(x: Any, weight: Tensor, bias: Tensor | None = None, activation: Op | str | None = None) -> Tensor:
    """f(x @ weight.T + bias) in one node (weight of shape (out, in), as Gerald's A in R^{m x n}).

    The vjps are g @ W, g.T @ x and the column sums of g (after g * f'(z) when an activation is fused). A raw
    NumPy batch ``x`` is data: it enters the node as a tensor that takes no gradient.

    ``activation`` (an op-table row or its name, from ``FUSABLE_ACTIVATIONS``: relu, tanh, ...) is applied
    inside the same node: out = f(x @ W.T + b), and the incoming gradient is first multiplied by the row's own
    partial f'(z). The numbers are those of the separate ops; ``nn.Sequential`` fuses a Linear followed by such
    an activation this way. Any memory layout of W works (``fast.weight_layout`` says which one is fastest).

    >>> x = Tensor([[1.0, 2.0]], requires_grad=False)
    >>> W = Tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]); b = Tensor([0.5, 0.5, 0.5])
    >>> linear(x, W, b).data.tolist(), linear(x, W, b, activation="relu").data.tolist()
    ([[1.5, 2.5, -2.5]], [[1.5, 2.5, 0.0]])
    """
    act = OPS.get(activation) if isinstance(activation, str) else activation
    if activation is not None and act not in FUSABLE_ACTIVATIONS:
        shown = act.name if isinstance(act, Op) else activation
        raise ValueError(f"linear: activation {shown!r} cannot be fused (fusable: one-input rows with no "
                         f"parameter that need no checks, {sorted(op.name for op in FUSABLE_ACTIVATIONS)}); "
                         "apply it as its own op")
    W = weight.data
    # NOTE: a raw input array (a batch) is not scanned: a NaN or infinity in it reaches the output, which is.
    x = _const(x) if type(x) is np.ndarray and x.dtype == W.dtype else \
        x if isinstance(x, Tensor) else _const(np.asarray(x, dtype=W.dtype))
    X = x.data
    if (W.ndim != 2 or X.ndim == 0 or X.shape[-1] != W.shape[1] or X.dtype != W.dtype
            or (bias is not None and (bias.data.shape != (W.shape[0],) or bias.data.dtype != W.dtype))):
        _linear_misfit(X, W, bias)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return node(LINEAR, inputs, None if act is None else {"activation": act})


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into the pieces.

    >>> a = Tensor([1.0, 2.0]); b = Tensor([3.0])
    >>> c = concatenate([a, b]); (c * Tensor([1.0, 2.0, 3.0], requires_grad=False)).sum().backward()
    >>> a.grad.tolist(), b.grad.tolist()
    ([1.0, 2.0], [3.0])
    """
    ts = _of_one_dtype("concatenate", tensors)
    try:
        return node(CONCATENATE, ts, {"axis": axis})
    except (ValueError, np.exceptions.AxisError, IndexError) as e:
        shapes = ", ".join(str(t.data.shape) for t in ts)
        raise ShapeError(f"concatenate: shapes {shapes} do not join along axis {axis} ({e})") from None


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
    return node(WHERE, (ta, tb), {"cond": c})


# ---------------------------------------------------------------------------------------------------------
# The per-node gradient check (read by graph.check_gradients)
# ---------------------------------------------------------------------------------------------------------

def vjp_mismatches(t: Tensor, rng: np.random.Generator, h: float = 1e-5,
                   rtol: float = 1e-6) -> list[tuple[int, float, float]]:
    """(parent index, vjp value, central-difference value) for each parent whose vjp disagrees.

    The node is recomputed in float64 with the kernel the engine uses; for a random upstream g and direction v
    the vjp must give <vjp(g), v> = <g, (f(x + h v) - f(x - h v)) / 2h>, f the row's reference forward. Output
    entries where f is not smooth along v (a kink within h: relu at 0, a tie in max) or not finite are left
    out of g, because central differences say nothing there.
    """
    row, kw = t.op, kwargs(t.op, t.arg)
    impl = _kernels(row)
    kernel = impl.fast if impl.fast is not None and fast.ENABLED else impl
    xs = [p.data.astype(np.float64) for p in t.parents]
    bad = []
    with np.errstate(all="ignore"):
        out, res = kernel.forward(*xs, **kw)
        mid = impl.forward(*xs, **kw)[0]
        for k, x in enumerate(xs):
            v = rng.normal(size=x.shape)

            def f(e: float, k: int = k, v: np.ndarray = v) -> np.ndarray:
                return np.asarray(impl.forward(*(x + e * v if j == k else x for j, x in enumerate(xs)), **kw)[0])
            up, down = f(h), f(-h)
            smooth = np.isfinite(up) & np.isfinite(down) & \
                (np.abs(up + down - 2 * mid) <= 1e-7 * (1.0 + np.abs(mid)))
            g = np.where(smooth, rng.normal(size=np.shape(out)), 0.0)
            fd = np.where(smooth, (up - down) / (2 * h), 0.0)
            grads = kernel.vjp(np.asarray(g), res, (True,) * len(xs))
            lhs = float(np.sum(np.asarray(grads[k]) * v))
            rhs = float(np.sum(g * fd))
            if not abs(lhs - rhs) <= rtol * (float(np.sum(np.abs(g * fd))) + abs(lhs)) + 1e-9:
                bad.append((k, lhs, rhs))
    return bad


# =========================================================================================================
# More of what a PyTorch user reaches for: stacking and splitting, shape changes, statistics, cumulative sums
# and products, einsum, padding, tiling, masked and indexed writes, no_grad. Each op is a row of the table
# above, or a composition of rows (a flip is a getitem, a squeeze a reshape), so that drawings, the stepper,
# forward mode and the gradient check read it like every other node. Methods keep NumPy's ``axis``.
# =========================================================================================================

__all__ += ["stack", "einsum", "pad", "no_grad", "is_grad_enabled"]

# Read by ``node``: False inside ``no_grad()``, where no op records a graph.
_RECORDING = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside ``with no_grad():`` ops record no graph, as PyTorch's ``torch.no_grad()``: results are data.

    Tensor ops only (a Value always records). The switch is process-wide (PyTorch's is per thread). Usable as a
    decorator too: ``@no_grad()``.

    >>> w = Tensor([1.0, 2.0])
    >>> with no_grad():
    ...     y = w * 2.0
    >>> y.requires_grad, (w * 2.0).requires_grad
    (False, True)
    """
    global _RECORDING
    before, _RECORDING = _RECORDING, False
    try:
        yield
    finally:
        _RECORDING = before


def is_grad_enabled() -> bool:
    """False inside ``no_grad()``: ``is_grad_enabled()`` is True at the top level."""
    return _RECORDING


def _whole_number_index(name: str, x: Tensor, a: np.ndarray) -> np.ndarray:
    """A float index array (a Tensor's data) as integers, or a TypeError naming the first non-integer entry."""
    whole = np.floor(a) == a
    if not whole.all():
        idx = tuple(int(i) for i in np.argwhere(~whole)[0])
        raise TypeError(f"{name}: an index into {_describe(x)} must hold integers, got {float(a[idx])!r}{_at(idx)}")
    return a.astype(np.intp)


def _index(name: str, x: Tensor, index: Any) -> Any:
    """``index`` for NumPy: a Tensor or float array of whole numbers becomes an integer array (a Tensor holds
    floats, so an index tensor comes as floats); a fractional entry is a TypeError naming it."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for item in items:
        if isinstance(item, Tensor):
            item = _whole_number_index(name, x, item.data)
        elif isinstance(item, np.ndarray) and item.dtype.kind == "f":
            item = _whole_number_index(name, x, item)
        out.append(item)
    return tuple(out) if isinstance(index, tuple) else out[0]


def _one_axis(name: str, x: Tensor, axis: Any, extra: int = 0) -> int:
    """``axis`` as an index in [0, ndim + extra), or a ShapeError naming the op, the axis and the tensor."""
    n = x.data.ndim + extra
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -n <= axis < n:
        raise ShapeError(f"{name}: axis {axis!r} does not fit {_describe(x)} of shape {x.data.shape} "
                         f"(needs an integer in [{-n}, {n}))")
    return int(axis) % n


def _axes(ndim: int, axis: Any) -> tuple[int, ...]:
    """The reduced axes as sorted non-negative ints (``axis`` already checked by ``_check_axis``)."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(int(a) % ndim for a in (axis if isinstance(axis, tuple) else (axis,))))


def _shape_arg(shape: tuple) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def _whole(name: str, what: str, v: Any, least: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least:
        raise ValueError(f"{name}: {what} must be an integer >= {least}, got {v!r}")
    return int(v)


def _of_one_dtype(name: str, tensors: Sequence[Any]) -> tuple[Tensor, ...]:
    """At least one input, as Tensors of one dtype (arrays and numbers take the first Tensor's), or the error."""
    if not tensors:
        raise ShapeError(f"{name}: needs at least one tensor")
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    ts = tuple(as_tensor(t, first.data.dtype if first is not None else None) for t in tensors)
    dtypes = {t.data.dtype for t in ts}
    if len(dtypes) > 1:
        raise TypeError(f"{name}: dtypes differ ({', '.join(sorted(map(str, dtypes)))})")
    return ts


# -- stack: tensors joined along a new axis ---------------------------------------------------------------

STACK = deftensorop("stack", lambda *arrays, axis=0: (np.stack(arrays, axis=axis), axis),
                    lambda g, axis, needs: tuple(np.take(g, k, axis=axis) if need else None
                                                 for k, need in enumerate(needs)),
                    lambda axis, t: np.stack(t, axis=axis),
                    "tensors of one shape joined along a new axis; the vjp takes each slice back")


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis (``torch.stack``, ``np.stack``).

    >>> a = Tensor([1.0, 2.0]); b = Tensor([3.0, 4.0]); stack([a, b], axis=1).data.tolist()
    [[1.0, 3.0], [2.0, 4.0]]
    """
    ts = _of_one_dtype("stack", tensors)
    shapes = {t.data.shape for t in ts}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors need one shape, got {', '.join(str(t.data.shape) for t in ts)}")
    return node(STACK, ts, {"axis": _one_axis("stack", ts[0], axis, extra=1)})


# -- broadcast_to (PyTorch's expand): the vjp sums the copies back ------------------------------------------

BROADCAST_TO = deftensorop("broadcast_to", lambda X, shape: (np.broadcast_to(X, shape), (X.shape, shape)),
                           lambda g, res, needs: (_unbroadcast(g, res[0]),),
                           lambda res, t: np.broadcast_to(t[0], res[1]),
                           "the entries repeated along new or size-1 axes (no copy); the vjp sums them back",
                           label="expand")


# -- variance, standard deviation and the 2-norm over axes -------------------------------------------------

def _var_forward(X: np.ndarray, axis: Any = None, keepdims: bool = False, correction: float = 1) -> tuple:
    xc = X - X.mean(axis=axis, keepdims=True)
    dof = math.prod(X.shape[a] for a in _axes(X.ndim, axis)) - correction   # n - correction
    out = np.asarray(np.add.reduce(xc * xc, axis=axis, keepdims=keepdims) / dof, dtype=X.dtype)
    return out, (xc, axis, keepdims, dof)


def _var_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    xc, axis, keepdims, dof = res
    # d/dx_i of sum((x - mean)**2) / dof is 2 (x_i - mean) / dof (the mean's own change sums to zero)
    return (_expand(g, axis, keepdims) * xc * (2.0 / dof),)


VAR = deftensorop("var", _var_forward, _var_vjp,
                  lambda res, t: (res[0] * t[0]).sum(axis=res[1], keepdims=res[2]) * (2.0 / res[3]),
                  "sum((x - mean)**2) / (n - correction) over axes; the vjp is 2 (x - mean) g / (n - correction)",
                  checks_output=True)


def _std_forward(X: np.ndarray, axis: Any = None, keepdims: bool = False, correction: float = 1) -> tuple:
    var, (xc, axis, keepdims, dof) = _var_forward(X, axis, keepdims, correction)
    out = np.sqrt(var)
    return out, (xc, axis, keepdims, dof, out)


def _std_slope(res: tuple) -> np.ndarray:
    """d std / d x = (x - mean) / (dof std)."""
    xc, axis, keepdims, dof, out = res
    return _over_norm(xc, dof * _expand(out, axis, keepdims))


def _over_norm(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """x / n, and 0 where n is 0.

    NOTE: a norm (and std, the norm of x - mean) has no derivative where it is 0; 0 is a subgradient there and
    PyTorch's choice.
    """
    return np.divide(x, n, out=np.zeros_like(x), where=np.broadcast_to(n != 0, x.shape))


STD = deftensorop("std", _std_forward,
                  lambda g, res, needs: (_expand(g, res[1], res[2]) * _std_slope(res),),
                  lambda res, t: (_std_slope(res) * t[0]).sum(axis=res[1], keepdims=res[2]),
                  "the square root of var; the vjp is (x - mean) g / ((n - correction) std), 0 where std is 0 (as "
                  "PyTorch)", checks_output=True)


def _norm_forward(X: np.ndarray, axis: Any = None, keepdims: bool = False) -> tuple:
    out = np.sqrt(np.add.reduce(X * X, axis=axis, keepdims=keepdims))
    return np.asarray(out, dtype=X.dtype), (X, axis, keepdims, out)


def _norm_slope(res: tuple) -> np.ndarray:
    X, axis, keepdims, out = res
    return _over_norm(X, _expand(out, axis, keepdims))


NORM = deftensorop("norm", _norm_forward,
                   lambda g, res, needs: (_expand(g, res[1], res[2]) * _norm_slope(res),),
                   lambda res, t: (_norm_slope(res) * t[0]).sum(axis=res[1], keepdims=res[2]),
                   "sqrt(sum(x**2)) over axes; the vjp is g x / norm (0 at the zero vector, as PyTorch)",
                   checks_output=True)


# -- cumulative sum and product over axes ----------------------------------------------------------------

def _cumsum_forward(X: np.ndarray, axis: int | None = None) -> tuple:
    return np.add.accumulate(X.reshape(-1) if axis is None else X, axis=axis or 0), (X.shape, axis)


def _cumsum_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, axis = res
    # out_j = sum over i <= j of x_i, so d/dx_i collects g_j for every j >= i: a cumulative sum from the end.
    a = 0 if axis is None else axis
    return (np.flip(np.cumsum(np.flip(g, a), axis=a), a).reshape(shape),)


CUMSUM = deftensorop("cumsum", _cumsum_forward, _cumsum_vjp, lambda res, t: np.cumsum(t[0], axis=res[1]),
                     "running sums along an axis (of the flattened entries without one); the vjp is the running "
                     "sum of g from the end", checks_output=True)


def _others_product(X: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """For each entry, the product of the OTHER entries of its reduction: exclusive running products from the
    left times those from the right. Exact where an entry is 0 (dividing prod / x would give 0 / 0)."""
    kept = X.ndim - len(axes)
    moved = np.moveaxis(X, axes, tuple(range(kept, X.ndim)))
    flat = moved.reshape(moved.shape[:kept] + (-1,))
    if flat.shape[-1] == 0:
        return np.ones_like(X)
    one = np.ones(flat.shape[:-1] + (1,), dtype=X.dtype)
    left = np.multiply.accumulate(np.concatenate([one, flat[..., :-1]], axis=-1), axis=-1)   # x_0 ... x_(i-1)
    after = np.flip(np.concatenate([flat[..., 1:], one], axis=-1), -1)
    right = np.flip(np.multiply.accumulate(after, axis=-1), -1)                                # x_(i+1) ... x_n
    return np.moveaxis((left * right).reshape(moved.shape), tuple(range(kept, X.ndim)), axes)


def _prod_forward(X: np.ndarray, axis: Any = None, keepdims: bool = False) -> tuple:
    axes = _axes(X.ndim, axis)
    out = np.asarray(np.multiply.reduce(X, axis=axis, keepdims=keepdims), dtype=X.dtype)
    return out, (_others_product(X, axes), axis, keepdims)


PROD = deftensorop("prod", _prod_forward,
                   lambda g, res, needs: (_expand(g, res[1], res[2]) * res[0],),
                   lambda res, t: (res[0] * t[0]).sum(axis=res[1], keepdims=res[2]),
                   "product over axes; the vjp is g times the product of the other entries (exact at zeros)",
                   checks_output=True, checks_grad=True)


# -- einsum: subscripts parsed into a small record, never evaluated ----------------------------------------

_SUBSCRIPT_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _parse_einsum(spec: Any, arrays: Sequence[np.ndarray]) -> dict[str, Any]:
    """``spec`` ("ij,jk->ik", or implicit "ij,jk") checked against the operands' shapes, as the row's ``arg``.

    A letter repeated inside one operand (a diagonal, "ii->i") is renamed and tied to the first by a constant
    identity matrix (A_ii = sum over j of A_ij delta_ij), so every operand's letters are distinct and each vjp
    is one more einsum.
    """
    if not isinstance(spec, str):
        raise TypeError(f"einsum: subscripts must be a string like 'ij,jk->ik', got {type(spec).__name__}")
    s = spec.replace(" ", "")
    lhs, arrow, out = s.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(arrays):
        raise ValueError(f"einsum: {spec!r} names {len(subs)} operand(s), got {len(arrays)}")
    if "..." in s:
        subs, out, arrow = _spell_ellipsis(spec, subs, out, arrow, arrays)
    bad = next((c for c in "".join(subs) + out if c not in _SUBSCRIPT_LETTERS), None)
    if bad is not None or "->" in out:
        raise ValueError(f"einsum: {spec!r} is not of the form 'ij,jk->ik' (letters, commas, one '->'); "
                         f"found {bad or '->'!r}")
    sizes: dict[str, int] = {}  # each letter's size; as in PyTorch, an axis of size 1 broadcasts against it
    for k, (sub, a) in enumerate(zip(subs, arrays)):
        if len(sub) != a.ndim:
            raise ShapeError(f"einsum: operand {k} has shape {a.shape}, but {spec!r} gives it {len(sub)} axes "
                             f"({sub!r})")
        for c, n in zip(sub, a.shape):
            if sub.count(c) > 1 and len({m for d, m in zip(sub, a.shape) if d == c}) > 1:
                raise ShapeError(f"einsum: {spec!r}: letter {c!r} is repeated in operand {k} (shape {a.shape}) "
                                 "with different sizes: a diagonal needs equal ones")
            if n != 1 and sizes.get(c, 1) not in (1, n):
                raise ShapeError(f"einsum: {spec!r}: letter {c!r} is size {sizes[c]} in one place and {n} in "
                                 f"operand {k} (shape {a.shape})")
            if n != 1 or c not in sizes:
                sizes[c] = n
    letters = "".join(subs)
    if not arrow:   # NumPy's implicit output: the letters that appear once, in alphabetical order
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(set(out)) != len(out) or any(c not in sizes for c in out):
        raise ValueError(f"einsum: {spec!r}: each output letter must appear once, and in an operand")
    free = iter(sorted(_SUBSCRIPT_LETTERS - set(letters)))
    renamed, deltas = [], []
    for sub, a in zip(subs, arrays):
        # A letter's size-1 axis broadcast against a larger size gets a letter of its own, which the operand alone
        # has: summing over it (size 1) leaves the operand constant along the letter, and its gradient summed.
        wide = {c: next(free, None) for c, n in zip(sub, a.shape) if n == 1 and sizes[c] != 1}
        if None in wide.values():
            raise ValueError(f"einsum: {spec!r} uses too many letters to spell its broadcast axes")
        sizes.update((new, 1) for new in wide.values())
        sub = "".join(wide.get(c, c) for c in sub)
        seen = ""
        for c in sub:
            if c in seen:
                new = next(free, None)
                if new is None:
                    raise ValueError(f"einsum: {spec!r} uses too many letters to spell its diagonal")
                deltas.append((c + new, sizes[c]))
                c = new
            seen += c
        renamed.append(seen)
    return {"spec": spec, "subs": tuple(renamed), "deltas": tuple(deltas), "out": out}


def _spell_ellipsis(spec: str, subs: list[str], out: str, arrow: str, arrays: Sequence[np.ndarray]) -> tuple:
    """(subs, out, arrow) with each "..." spelled in letters ``spec`` does not use, as PyTorch reads it.

    The axes under "..." line up from the right across operands, and one of size 1 broadcasts (as any letter's
    size-1 axis does in ``_parse_einsum``). Without "->" the output is the "..." axes, then the letters
    that appear once, sorted; an explicit output without "..." sums over those axes.

    >>> _spell_ellipsis("...ij,jk", ["...ij", "jk"], "", "", [np.ones((2, 3, 4)), np.ones((4, 5))])
    (['Aij', 'jk'], 'Aik', '->')
    """
    free = iter(sorted(_SUBSCRIPT_LETTERS - set(spec)))
    widths = []
    for k, (sub, a) in enumerate(zip(subs, arrays)):
        if sub.count("...") > 1 or "." in sub.replace("...", "", 1):
            raise ValueError(f"einsum: {spec!r}: operand {k} has a '.' that is not one '...'")
        widths.append(a.ndim - (len(sub) - 3) if "..." in sub else 0)
        if widths[-1] < 0:
            raise ShapeError(f"einsum: operand {k} has shape {a.shape}, but {spec!r} gives it at least "
                             f"{len(sub) - 3} axes ({sub!r})")
    width = max(widths)
    shared = [next(free, None) for _ in range(width)]
    sizes = [1] * width  # the broadcast size of each "..." axis, right-aligned
    for sub, a, w in zip(subs, arrays, widths):
        if w:
            lead = a.shape[sub.index("..."):sub.index("...") + w]
            for j, n in enumerate(lead, start=width - w):
                if n != 1:  # NOTE: a size-1 axis broadcasts against any size, 0 included (so not max(sizes))
                    if sizes[j] not in (1, n):
                        raise ShapeError(f"einsum: {spec!r}: the axes under '...' do not broadcast: size "
                                         f"{sizes[j]} against {n} (shape {a.shape})")
                    sizes[j] = n
    if None in shared:
        raise ValueError(f"einsum: {spec!r} has too many axes under '...' to spell with letters")
    # NOTE: a size-1 axis gets the shared letter too: ``_parse_einsum`` broadcasts any letter's size-1 axis
    spelled = [sub.replace("...", "".join(shared[width - w:]), 1) for sub, w in zip(subs, widths)]
    if not arrow:
        letters = "".join(spelled)
        out = "".join(shared) + "".join(sorted(c for c in set(letters) - set(shared) if letters.count(c) == 1))
    else:
        out = out.replace("...", "".join(shared), 1)
    return spelled, out, "->"


def _einsum_forward(*arrays: np.ndarray, spec: str, subs: tuple, deltas: tuple, out: str) -> tuple:
    consts = [np.eye(n, dtype=arrays[0].dtype) for _, n in deltas]
    formula = ",".join((*subs, *(d for d, _ in deltas))) + "->" + out
    return np.einsum(formula, *arrays, *consts), (arrays, consts, subs, deltas, out, formula)


def _einsum_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    arrays, consts, subs, deltas, out, _ = res
    grads = []
    for k, need in enumerate(needs):
        if not need:
            grads.append(None)
            continue
        # d out / d operand k contracted with g: the einsum of g with every other operand, out to k's letters.
        others = [(s, a) for j, (s, a) in enumerate(zip(subs, arrays)) if j != k]
        others += [(d, c) for (d, _), c in zip(deltas, consts)]
        present = set(out).union(*(s for s, _ in others))
        # a letter only operand k has was summed over inside it: each of its entries gets g, so a ones vector
        lone = [c for c in subs[k] if c not in present]
        ones = [np.ones(arrays[k].shape[subs[k].index(c)], dtype=g.dtype) for c in lone]
        formula = ",".join([out, *(s for s, _ in others), *lone]) + "->" + subs[k]
        grads.append(np.einsum(formula, g, *(a for _, a in others), *ones))
    return tuple(grads)


def _einsum_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    arrays, consts, _, _, _, formula = res
    # multilinear: the sum over operands of the einsum with that operand's tangent in its place
    return sum(np.einsum(formula, *arrays[:k], tk, *arrays[k + 1:], *consts) for k, tk in enumerate(t))


EINSUM = deftensorop("einsum", _einsum_forward, _einsum_vjp, _einsum_jvp,
                     "a sum of products over named axes ('ij,jk->ik'); each vjp is another einsum",
                     label=lambda arg: f"einsum {arg['spec']}", checks_output=True, checks_grad=True)


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """Einstein summation (``np.einsum``, ``torch.einsum``) in one node; the subscripts are parsed, not run.

    Letters name axes, a letter in several operands is multiplied along, one missing from the output is summed
    over: "ij,jk->ik" is a matrix product, "ii->" a trace, "i,j->ij" an outer product. Without "->" the output
    is the letters that appear once, sorted (NumPy's rule). "..." stands for the axes no letter names, lined up
    from the right across operands and broadcast, as in PyTorch: "...ij,...jk->...ik" is a batched matrix product.
    As in PyTorch, an axis of size 1 also broadcasts against its letter's size in the other operands.

    >>> a = Tensor([[1.0, 2.0], [3.0, 4.0]]); t = einsum("ii->", a); t.backward(); t.item(), a.grad.tolist()
    (5.0, [[1.0, 0.0], [0.0, 1.0]])
    """
    ts = _of_one_dtype("einsum", operands)
    return node(EINSUM, ts, _parse_einsum(subscripts, [t.data for t in ts]))


# -- pad and tile --------------------------------------------------------------------------------------------

# PyTorch's padding mode -> NumPy's np.pad mode (the one place the two spellings meet).
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each position of a padded axis, the input position it copies (-1: a constant), from np.pad itself.

    >>> _source_index(3, 2, 1, "reflect").tolist(), _source_index(3, 1, 1, "zeros").tolist()
    ([2, 1, 0, 1, 2, 1], [-1, 0, 1, 2, -1])
    """
    kw = {"constant_values": -1} if mode == "zeros" else {}
    return np.pad(np.arange(size), (before, after), mode=PADDING_MODES[mode], **kw)


def _pad_forward(X: np.ndarray, widths: tuple, mode: str, value: float) -> tuple:
    kw = {"constant_values": value} if mode == "zeros" else {}
    return np.pad(X, widths, mode=PADDING_MODES[mode], **kw), (X.shape, widths, mode)


def _pad_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, widths, mode = res
    if mode == "zeros":  # the border holds constants: cut it off
        return (g[tuple(slice(a, a + n) for (a, _), n in zip(widths, shape))],)
    gx = g
    for axis, (a, b) in enumerate(widths):
        if a == b == 0:
            continue
        src = _source_index(shape[axis], a, b, mode)
        keep = src >= 0
        moved = np.moveaxis(gx, axis, 0)
        acc = np.zeros((shape[axis],) + moved.shape[1:], dtype=g.dtype)
        np.add.at(acc, src[keep], moved[keep])  # several padded entries may copy one input entry
        gx = np.moveaxis(acc, 0, axis)
    return (gx,)


PAD = deftensorop("pad", _pad_forward, _pad_vjp, lambda res, t: _pad_forward(t[0], res[1], res[2], 0.0)[0],
                  "a border around the entries: a constant, a reflection, the edge or a wrap-around; the vjp cuts "
                  "a constant border off g and adds each copied entry's gradient back onto its source",
                  label=lambda arg: "pad" if arg["mode"] == "zeros" else f"pad ({arg['mode']})")


def pad(x: Tensor, pad_width: Any, value: float = 0.0, mode: str = "zeros") -> Tensor:
    """``x`` with a border: ``np.pad``'s ``pad_width`` (an int, a (before, after) pair, or one pair per axis, first
    axis first; PyTorch's ``F.pad`` lists pairs from the LAST axis backwards), filled with ``value``
    (``mode="zeros"``) or PyTorch's ``"reflect"`` (mirror without the edge: width < size), ``"replicate"`` (the
    edge) or ``"circular"`` (wrap around: width <= size).

    >>> pad(Tensor([[1.0]]), ((0, 0), (1, 2))).data.tolist()
    [[0.0, 1.0, 0.0, 0.0]]
    >>> pad(Tensor([[1.0, 2.0, 3.0]]), ((0, 0), (2, 1)), mode="reflect").data.tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(map(repr, PADDING_MODES))}, got {mode!r}")
    X = x.data
    try:
        w = np.broadcast_to(np.asarray(pad_width), (X.ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: pad_width {pad_width!r} does not fit {_describe(x)} of shape {X.shape} (needs an "
                         "int, a (before, after) pair or one pair per axis)") from None
    if w.dtype.kind not in "iu" or (w < 0).any():
        raise ValueError(f"pad: pad_width must be whole numbers >= 0, got {pad_width!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"pad: value must be a finite number, got {value!r}")
    if value != 0 and mode != "zeros":
        raise ValueError(f"pad: value={value!r} fills a constant border; mode {mode!r} copies entries instead")
    widths = tuple((int(a), int(b)) for a, b in w)
    for size, (a, b) in zip(X.shape, widths):
        if (a or b) and ((mode == "reflect" and max(a, b) >= size) or (mode == "circular" and max(a, b) > size)):
            raise ShapeError(f"pad: {mode} padding of {(a, b)} needs an axis longer than the padding, got an axis "
                             f"of {size} in {_describe(x)} of shape {X.shape}")
    return node(PAD, (x,), {"widths": widths, "mode": mode, "value": float(value)})


def _tile_forward(X: np.ndarray, reps: tuple[int, ...]) -> tuple:
    return np.tile(X, reps), (X.shape, reps)


def _tile_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, reps = res
    d = max(len(shape), len(reps))
    r = (1,) * (d - len(reps)) + reps
    s = (1,) * (d - len(shape)) + shape
    # axis k of the output is r_k copies of s_k entries: split it in two and sum over the copies
    split = g.reshape(tuple(n for pair in zip(r, s) for n in pair))
    return (split.sum(axis=tuple(range(0, 2 * d, 2))).reshape(shape),)


TILE = deftensorop("tile", _tile_forward, _tile_vjp, lambda res, t: np.tile(t[0], res[1]),
                   "the whole tensor repeated along each axis (np.tile, PyTorch's x.repeat); the vjp sums the copies")


# -- writing into a copy: index_put and scatter_add ------------------------------------------------------

def _index_put_forward(X: np.ndarray, V: np.ndarray, pos: np.ndarray, accumulate: bool) -> tuple:
    out = X.copy()
    flat = out.reshape(-1)
    v = np.broadcast_to(V, pos.shape)
    if accumulate:
        np.add.at(flat, pos, v)   # a position named twice adds twice
    else:
        flat[pos] = v
    return out, (pos, accumulate, V.shape)


def _index_put_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    pos, accumulate, vshape = res
    gx = gv = None
    if needs[0]:
        gx = g
        if not accumulate:   # an overwritten entry no longer reaches the output
            gx = np.array(g, order="C")
            gx.reshape(-1)[pos] = 0
    if needs[1]:
        gv = _unbroadcast(np.ascontiguousarray(g).reshape(-1)[pos], vshape)
    return gx, gv


INDEX_PUT = deftensorop("index_put", _index_put_forward, _index_put_vjp,
                        lambda res, t: _index_put_forward(t[0], t[1], res[0], res[1])[0],
                        "a copy with values written (or added) at indexed positions; the vjp reads g there",
                        label=lambda arg: "index_put +=" if arg["accumulate"] else "index_put", checks_output=True)


def _put(name: str, x: Tensor, pos: np.ndarray, values: Any, accumulate: bool) -> Tensor:
    x, v = _operands(name, x, values)
    try:
        fits = np.broadcast_shapes(v.data.shape, pos.shape) == pos.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{name}: values of shape {v.data.shape} do not fit the {pos.shape} positions selected "
                         f"in {_describe(x)} of shape {x.data.shape}")
    if not accumulate and np.unique(pos).size != pos.size:
        raise ValueError(f"{name}: the index names a position of {_describe(x)} more than once, so which value "
                         "lands there would be arbitrary; pass accumulate=True to add them up")
    return node(INDEX_PUT, (x, v), {"pos": pos, "accumulate": accumulate})


# -- the methods, attached to Tensor below --------------------------------------------------------------------

class _TorchMethods:
    """The Tensor methods of this section (their qualified names become ``Tensor.<name>``)."""

    def requires_grad_(self: Tensor, requires_grad: bool = True) -> Tensor:
        """Make a leaf a parameter (or data, with False) in place, as PyTorch; returns self.

        >>> x = Tensor([1.0], requires_grad=False).requires_grad_(); x.requires_grad
        True
        """
        if self.parents and not requires_grad:
            raise MicrogradxError(f"requires_grad_: {_describe(self)} is the result of op {self.op_name}, not a "
                                  "leaf; use .detach() for the same data without a gradient")
        self.requires_grad = bool(requires_grad)
        return self

    def split(self: Tensor, split_size_or_sections: int | Sequence[int], axis: int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``axis`` as PyTorch: an int is the size of each piece (the last may be smaller), a list
        the size of every piece. (NumPy's ``np.split(x, 2)`` means two pieces: that is ``chunk(2)``.)

        >>> [p.data.tolist() for p in Tensor([1.0, 2.0, 3.0]).split(2)]
        [[1.0, 2.0], [3.0]]
        """
        a = _one_axis("split", self, axis)
        n = self.data.shape[a]
        if isinstance(split_size_or_sections, (list, tuple)):
            sizes = [_whole("split", "each section size", s) for s in split_size_or_sections]
            if sum(sizes) != n:
                raise ShapeError(f"split: sections {list(sizes)} add up to {sum(sizes)}, but {_describe(self)} of "
                                 f"shape {self.data.shape} has {n} along axis {axis}")
        else:
            size = _whole("split", "the piece size", split_size_or_sections, least=1)
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
        starts = np.cumsum([0, *sizes])
        lead = (slice(None),) * a
        return tuple(self[(*lead, slice(int(b), int(e)))] for b, e in zip(starts[:-1], starts[1:]))

    def chunk(self: Tensor, chunks: int, axis: int = 0) -> tuple[Tensor, ...]:
        """At most ``chunks`` pieces of equal size along ``axis`` (the last may be smaller), as ``torch.chunk``.

        >>> [p.shape for p in Tensor(np.zeros((5, 2))).chunk(2)]
        [(3, 2), (2, 2)]
        """
        chunks = _whole("chunk", "chunks", chunks, least=1)
        n = self.data.shape[_one_axis("chunk", self, axis)]
        return self.split(max(-(-n // chunks), 1), axis)

    def squeeze(self: Tensor, axis: int | tuple[int, ...] | None = None) -> Tensor:
        """Drop size-1 axes (all, or those named, which must be size 1, as NumPy); a reshape node.

        >>> Tensor(np.zeros((1, 3, 1))).squeeze().shape, Tensor(np.zeros((1, 3, 1))).squeeze(axis=0).shape
        ((3,), (3, 1))
        """
        shape = self.data.shape
        drop = [a for a, n in enumerate(shape) if n == 1] if axis is None else \
            [_one_axis("squeeze", self, a) for a in (axis if isinstance(axis, tuple) else (axis,))]
        wide = [a for a in drop if shape[a] != 1]
        if wide:
            raise ShapeError(f"squeeze: axis {wide[0]} of {_describe(self)} of shape {shape} has size "
                             f"{shape[wide[0]]}, not 1")
        return self.reshape(tuple(n for a, n in enumerate(shape) if a not in drop))

    def unsqueeze(self: Tensor, axis: int) -> Tensor:
        """A new size-1 axis at ``axis`` (``np.expand_dims``); a reshape node.

        >>> Tensor([1.0, 2.0]).unsqueeze(0).shape, Tensor([1.0, 2.0]).unsqueeze(-1).shape
        ((1, 2), (2, 1))
        """
        a = _one_axis("unsqueeze", self, axis, extra=1)
        shape = self.data.shape
        return self.reshape(shape[:a] + (1,) + shape[a:])

    def view(self: Tensor, *shape: Any) -> Tensor:
        """PyTorch's name for ``reshape`` (NumPy data has no contiguity rule to obey): ``x.view(-1)``.

        >>> Tensor(np.zeros((2, 3))).view(3, -1).shape
        (3, 2)
        """
        return self.reshape(_shape_arg(shape))

    def flatten(self: Tensor, start_axis: int = 0, end_axis: int = -1) -> Tensor:
        """Axes ``start_axis`` to ``end_axis`` (both included) merged into one, as ``torch.flatten``.

        >>> Tensor(np.zeros((2, 3, 4))).flatten().shape, Tensor(np.zeros((2, 3, 4))).flatten(1).shape
        ((24,), (2, 12))
        """
        shape = self.data.shape
        if not shape:
            return self.reshape((1,))
        b, e = _one_axis("flatten", self, start_axis), _one_axis("flatten", self, end_axis)
        if b > e:
            raise ShapeError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis} for "
                             f"{_describe(self)} of shape {shape}")
        return self.reshape(shape[:b] + (math.prod(shape[b:e + 1]),) + shape[e + 1:])

    def expand(self: Tensor, *shape: Any) -> Tensor:
        """The entries repeated along new leading axes and size-1 axes to ``shape`` (-1 keeps a size), as
        ``torch.expand`` and ``np.broadcast_to``; the gradient sums the copies.

        >>> Tensor([[1.0], [2.0]]).expand(2, 3).data.tolist()
        [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
        """
        shape = _shape_arg(shape)
        X = self.data
        lead = len(shape) - X.ndim
        if lead < 0 or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) for n in shape):
            raise ShapeError(f"expand: shape {shape} does not fit {_describe(self)} of shape {X.shape}")
        target = tuple(X.shape[k - lead] if n == -1 and k >= lead else int(n) for k, n in enumerate(shape))
        try:
            if np.broadcast_shapes(X.shape, target) != target or min(target, default=0) < 0:
                raise ValueError
        except ValueError:
            raise ShapeError(f"expand: {_describe(self)} of shape {X.shape} cannot be expanded to {shape} (only "
                             "size-1 and new leading axes grow)") from None
        return node(BROADCAST_TO, (self,), {"shape": target})

    def var(self: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False, *,
            correction: float | None = None, ddof: float | None = None) -> Tensor:
        """Variance over ``axis``: sum((x - mean)**2) / (n - correction).

        ``correction`` defaults to 1, the sample variance, as ``torch.var`` (NumPy's ``np.var`` defaults to
        ``ddof=0``): a student copying a PyTorch tutorial gets its numbers. ``ddof`` is NumPy's name for the same
        number; ``correction=0`` is the population variance that batch norm uses.

        >>> x = Tensor([1.0, 2.0, 3.0, 4.0]); x.var().item(), x.var(ddof=0).item()
        (1.6666666666666667, 1.25)
        """
        return _spread(VAR, self, axis, keepdims, correction, ddof)

    def std(self: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False, *,
            correction: float | None = None, ddof: float | None = None) -> Tensor:
        """Standard deviation, the square root of ``var`` (same arguments; ``correction`` defaults to 1, as
        PyTorch). Where std is 0 (all entries equal) it has no derivative; its gradient there is 0, as PyTorch.

        >>> Tensor([1.0, 3.0]).std().item() == math.sqrt(2.0)
        True
        """
        return _spread(STD, self, axis, keepdims, correction, ddof)

    def norm(self: Tensor, ord: float = 2, axis: int | tuple[int, ...] | None = None,
             keepdims: bool = False) -> Tensor:
        """The vector ``ord``-norm over ``axis`` (all entries by default): 2 (Euclidean, Frobenius for a matrix),
        1 (sum of magnitudes) or ``math.inf`` (largest magnitude), as ``torch.linalg.vector_norm``.

        >>> x = Tensor([3.0, -4.0]); x.norm().item(), x.norm(1).item(), x.norm(math.inf).item()
        (5.0, 7.0, 4.0)
        """
        _check_axis("norm", self, axis)
        if ord == 2:
            return node(NORM, (self,), {"axis": axis, "keepdims": keepdims})
        if ord == 1:
            return abs(self).sum(axis=axis, keepdims=keepdims)
        if ord == math.inf:
            return abs(self).max(axis=axis, keepdims=keepdims)
        raise ValueError(f"norm: ord must be 1, 2 or math.inf, got {ord!r}")

    def argmax(self: Tensor, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
        """Index of the largest entry (of the flattened tensor, or along ``axis``; the first on a tie), as a
        plain integer array: an index has no gradient. ``x[x.argmax()]`` picks the entry.

        >>> Tensor([[1.0, 5.0], [7.0, 2.0]]).argmax(axis=1).tolist()
        [1, 0]
        """
        return _arg("argmax", np.argmax, self, axis, keepdims)

    def argmin(self: Tensor, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
        """Index of the smallest entry, as ``argmax``: ``Tensor([2.0, 1.0]).argmin().item() == 1``."""
        return _arg("argmin", np.argmin, self, axis, keepdims)

    def cumsum(self: Tensor, axis: int | None = None) -> Tensor:
        """Running sums along ``axis`` (of the flattened entries when None, as NumPy; PyTorch needs ``dim``).

        >>> Tensor([[1.0, 2.0], [3.0, 4.0]]).cumsum(axis=1).data.tolist()
        [[1.0, 3.0], [3.0, 7.0]]
        """
        if axis is not None:
            axis = _one_axis("cumsum", self, axis)
        return node(CUMSUM, (self,), {"axis": axis})

    def prod(self: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Product over ``axis``; each entry's gradient is the product of the others, exact where some are 0.

        >>> x = Tensor([2.0, 0.0, 3.0]); p = x.prod(); p.backward(); p.item(), x.grad.tolist()
        (0.0, [0.0, 6.0, 0.0])
        """
        _check_axis("prod", self, axis)
        return node(PROD, (self,), {"axis": axis, "keepdims": keepdims})

    def flip(self: Tensor, axis: int | tuple[int, ...] | None = None) -> Tensor:
        """Entries in reverse order along ``axis`` (all axes by default), as ``np.flip``; a getitem node.

        >>> Tensor([[1.0, 2.0], [3.0, 4.0]]).flip(axis=1).data.tolist()
        [[2.0, 1.0], [4.0, 3.0]]
        """
        axes = range(self.data.ndim) if axis is None else \
            {_one_axis("flip", self, a) for a in (axis if isinstance(axis, tuple) else (axis,))}
        return self[tuple(slice(None, None, -1) if a in axes else slice(None) for a in range(self.data.ndim))]

    def tile(self: Tensor, *reps: Any) -> Tensor:
        """The whole tensor repeated ``reps`` times along each axis, as ``np.tile`` and PyTorch's ``x.repeat``.

        >>> Tensor([1.0, 2.0]).tile(2).data.tolist(), Tensor([1.0, 2.0]).tile(2, 1).shape
        ([1.0, 2.0, 1.0, 2.0], (2, 2))
        """
        reps = tuple(_whole("tile", "each repetition count", r) for r in _shape_arg(reps))
        return node(TILE, (self,), {"reps": reps})

    def repeat(self: Tensor, repeats: int | Sequence[int], axis: int | None = None) -> Tensor:
        """Each entry repeated ``repeats`` times along ``axis`` (flattened when None), as NumPy's ``repeat`` and
        PyTorch's ``repeat_interleave`` (PyTorch's ``x.repeat`` is ``tile`` here); a getitem node.

        >>> Tensor([1.0, 2.0]).repeat(2).data.tolist(), Tensor([1.0, 2.0]).repeat([1, 3]).data.tolist()
        ([1.0, 1.0, 2.0, 2.0], [1.0, 2.0, 2.0, 2.0])
        """
        x = self.reshape(-1) if axis is None else self
        a = 0 if axis is None else _one_axis("repeat", self, axis)
        n = x.data.shape[a]
        r = np.asarray(repeats)
        if r.dtype.kind not in "iu" or r.ndim > 1 or (r < 0).any() or (r.ndim == 1 and r.size != n):
            raise ValueError(f"repeat: repeats must be an integer >= 0 or {n} of them (one per entry along the "
                             f"axis), got {repeats!r}")
        return x[(slice(None),) * a + (np.repeat(np.arange(n), r),)]

    def masked_fill(self: Tensor, mask: Any, value: Any) -> Tensor:
        """A copy with ``value`` where the boolean ``mask`` holds (``x > 0`` gives one); a where node, so the
        gradient passes only where the mask is False.

        >>> x = Tensor([1.0, -2.0, 3.0]); x.masked_fill(x < 0, 0.0).data.tolist()
        [1.0, 0.0, 3.0]
        """
        m = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
        if m.dtype != bool:
            raise TypeError(f"masked_fill: the mask must be boolean (a comparison such as x > 0 gives one), got "
                            f"dtype {m.dtype}")
        if not isinstance(value, Tensor):
            value = _constant_like("masked_fill", value, self)
        v = value.data
        try:
            fits = np.broadcast_shapes(m.shape, v.shape, self.data.shape) == self.data.shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(f"masked_fill: mask of shape {m.shape} and value of shape {v.shape} do not broadcast "
                             f"to {_describe(self)} of shape {self.data.shape}")
        return where(m, value, self)

    def index_put(self: Tensor, index: Any, values: Any, accumulate: bool = False) -> Tensor:
        """A copy with ``x[index] = values`` done (``accumulate=True``: ``+=``, a position named twice adding
        twice), as PyTorch's ``index_put``: item assignment as a graph node. Gradients reach both.

        >>> x = Tensor([1.0, 2.0, 3.0]); x.index_put([0, 0], Tensor([5.0, 6.0]), accumulate=True).data.tolist()
        [12.0, 2.0, 3.0]
        """
        X = self.data
        index = _index("index_put", self, index)
        try:
            pos = np.asarray(np.arange(X.size).reshape(X.shape)[index])
        except (IndexError, ValueError) as e:
            raise ShapeError(f"index_put: index {index!r} does not fit {_describe(self)} of shape {X.shape} "
                             f"({e})") from None
        return _put("index_put", self, pos, values, bool(accumulate))

    def scatter_add(self: Tensor, axis: int, index: Any, src: Any) -> Tensor:
        """A copy to which ``src`` is added at ``index`` along ``axis``, as PyTorch's ``scatter_add`` (the
        reverse of ``gather``): for axis 0, out[index[i, j], j] += src[i, j]. ``index`` and ``src`` have one shape.

        >>> x = Tensor(np.zeros(3)); x.scatter_add(0, [0, 2, 0], Tensor([1.0, 2.0, 3.0])).data.tolist()
        [4.0, 0.0, 2.0]
        """
        X = self.data
        a = _one_axis("scatter_add", self, axis)
        idx = np.asarray(_index("scatter_add", self, index))
        if idx.dtype.kind not in "iu" or idx.ndim != X.ndim:
            raise ShapeError(f"scatter_add: index must be integers with {X.ndim} dimensions like {_describe(self)} "
                             f"of shape {X.shape}, got dtype {idx.dtype} and shape {idx.shape}")
        s = src.data if isinstance(src, Tensor) else np.asarray(src)
        if s.shape != idx.shape:
            raise ShapeError(f"scatter_add: src of shape {s.shape} differs from index of shape {idx.shape}")
        grids = list(np.ix_(*(np.arange(n) for n in idx.shape)))
        grids[a] = idx
        try:
            pos = np.arange(X.size).reshape(X.shape)[tuple(grids)]
        except IndexError as e:
            raise ShapeError(f"scatter_add: index of shape {idx.shape} does not fit {_describe(self)} of shape "
                             f"{X.shape} along axis {axis} ({e})") from None
        return _put("scatter_add", self, pos, src, True)

    def gelu(self: Tensor, approximate: str = "none") -> Tensor:
        """x Phi(x), the exact (erf) form, PyTorch's default; ``approximate="tanh"`` gives the tanh form.

        >>> round(Tensor([1.0]).gelu().item(), 6), round(Tensor([1.0]).gelu(approximate="tanh").item(), 6)
        (0.841345, 0.841192)
        """
        return node(gelu_row(approximate), (self,))


def _spread(row: TensorOp, x: Tensor, axis: Any, keepdims: bool, correction: Any, ddof: Any) -> Tensor:
    """var or std: the arguments checked once for both."""
    if correction is not None and ddof is not None:
        raise TypeError(f"{row.name}: pass correction (PyTorch's name) or ddof (NumPy's), not both")
    c = 1 if correction is None and ddof is None else (ddof if correction is None else correction)
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 <= c < math.inf:
        raise ValueError(f"{row.name}: correction must be a number >= 0, got {c!r}")
    _check_axis(row.name, x, axis)
    n = math.prod(x.data.shape[a] for a in _axes(x.data.ndim, axis))
    if n - c <= 0:
        raise ShapeError(f"{row.name}: {n} entries of {_describe(x)} (shape {x.data.shape}) along axis {axis} with "
                         f"correction={c} leave n - correction = {n - c} (PyTorch would give inf or nan)")
    return node(row, (x,), {"axis": axis, "keepdims": keepdims, "correction": c})


def _arg(name: str, fn: Callable[..., Any], x: Tensor, axis: Any, keepdims: bool) -> np.ndarray:
    if axis is not None:
        axis = _one_axis(name, x, axis)
    _check_axis(name, x, axis, nonempty=True)
    return np.asarray(fn(x.data, axis=axis, keepdims=keepdims))


def _no_item_assignment(self: Tensor, index: Any, values: Any) -> None:
    raise TypeError(f"{_describe(self)}[{index!r}] = ...: a Tensor is a graph node and is not changed in place; "
                    "x.index_put(index, values) returns the changed copy as a new node (accumulate=True for +=)")


Tensor.__setitem__ = _no_item_assignment  # type: ignore[method-assign]
for _name, _fn in vars(_TorchMethods).items():
    if callable(_fn) and not _name.startswith("__"):
        _fn.__qualname__ = f"Tensor.{_name}"
        setattr(Tensor, _name, _fn)
