"""The scalar ``Value``: a float that records the op, the ordered parents and the local derivatives it came from.

Every method and operator is a one-line binding onto a row of the op table; the methods named by the table
(``x.tanh()``, ``x.leaky_relu(0.01)``, ...) are attached from it below, so adding a row adds the method.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from . import fast, graph
from .ops import (
    ADD,
    FLOAT,
    MUL,
    NEG,
    OPS,
    PRIMITIVES,
    SUB,
    DomainError,
    Op,
    domain_error,
    gelu_row,
    namespace,
    op_error,
    operator_roles,
    operator_rows,
)

__all__ = ["Value", "VALUE_MATH"]

_isfinite = math.isfinite
# Ops whose partials are inputs or constants, or bounded by 1 (the row's ``bounded`` flag): never non-finite.
_FINITE_PARTIALS = frozenset((ADD, SUB, MUL, NEG, *(op for op in OPS.values() if op.bounded)))
_PLAIN = frozenset(op for op in _FINITE_PARTIALS if not op.checked)


def _to_float(data: Any, what: str = "Value") -> float:
    if type(data) is not float:
        if isinstance(data, bool) or not isinstance(data, numbers.Real):
            raise TypeError(f"{what} needs an int or a float, got {type(data).__name__}: {data!r}")
        try:
            data = float(data)
        except OverflowError:  # an int beyond float range: 10**400
            digits = len(str(abs(data)))
            raise DomainError(f"{what}: {str(data)[:12]}... ({digits} digits) is too large for a float (at most "
                              "about 1.8e308)", "value", None) from None
    if not math.isfinite(data):
        raise DomainError(f"{what}({data!r}): data must be a finite number, got {data!r}", "value", data)
    return data


def _name(v: Value) -> str:
    return v.label if v.label else f"{v.data:g}"


def _label(inputs: tuple) -> str | None:
    return next((v.label for v in inputs if v.label), None)


def _fail(op: Op, inputs: tuple, arg: Any, why: str) -> DomainError:
    names = ", ".join(_name(v) for v in inputs)
    return op_error(op, names, arg, why, tuple(v.data for v in inputs), _label(inputs))


def _bad_gradient(v: Value, k: int, g: float, c: float) -> DomainError:
    """The error for the non-finite contribution ``c`` = g * z that node ``v`` passes to its parent ``k``."""
    p = v.parents[k]
    return DomainError(f"backward: the gradient flowing from {_name(v)} (op {v.op.name}) to its parent {_name(p)} is "
                       f"{c} (upstream {g!r} times the local derivative {v.partials[k]!r}), not a finite float",
                       v.op.name, c, v.label)


def _nonfinite_input(op: Op, inputs: tuple, arg: Any) -> DomainError:
    """The error for an input whose data is not a finite float. Data is checked when a node is made, so only an
    assignment to ``.data`` gets here; the row must not see it (relu(nan) would be 0, sigmoid(-inf) 0)."""
    v = next(v for v in inputs if not _isfinite(v.data))
    where = f" in {v.label}" if v.label else ""
    return _fail(op, inputs, arg, f"needs finite inputs, got {v.data!r}{where} (was .data set by hand?)")


def _check_domain(op: Op, inputs: tuple, arg: Any) -> None:
    for k, (v, dom) in enumerate(zip(inputs, op.domains(arg))):
        if not dom.contains(v.data):
            raise domain_error(op, ", ".join(_name(v) for v in inputs), arg, k, dom, v.data, label=_label(inputs),
                               data=tuple(v.data for v in inputs))


def _compute(op: Op, inputs: tuple, args: tuple, arg: Any) -> tuple:
    """The op's float forward and partials at ``args``, or a DomainError naming the op, inputs and labels."""
    if op.checked:
        _check_domain(op, inputs, arg)
    try:
        out = op.forward(FLOAT, *args)
        zs = op.partials(FLOAT, out, *args)
    except OverflowError as e:  # exp(1000), 1e200 ** 2, ...
        raise _fail(op, inputs, arg, f"overflows a float ({e})") from None
    except (ArithmeticError, ValueError) as e:
        raise _fail(op, inputs, arg, f"cannot be computed in floats ({e})") from None
    if not _isfinite(out):
        raise _fail(op, inputs, arg, f"gives {out}, not a finite float")
    if op not in _FINITE_PARTIALS and not all(_isfinite(z) for z in zs):
        raise _fail(op, inputs, arg, f"has a non-finite derivative {zs} here")
    return out, zs


# NOTE: the two builders below are the hot path of every forward pass, so they set the slots directly
# instead of going through __init__; everything they know about the op still comes from its row.
def _unary(op: Op, x: Value, arg: Any = None) -> Value:
    if not _isfinite(x.data):  # relu(nan) would be 0, sigmoid(-inf) 0
        raise _nonfinite_input(op, (x,), arg)
    out, zs = _compute(op, (x,), (x.data,) if op.param is None else (x.data, arg), arg)
    v = _new(Value)
    v.data, v.grad, v._op, v._a, v._b, v._za, v._zb = out, 0.0, op, x, None, zs[0], arg
    return v


def _binary(op: Op, a: Value, b: Value) -> Value:
    x, y = a.data, b.data
    if not (_isfinite(x) and _isfinite(y)):  # max(-inf, 1) would be 1
        raise _nonfinite_input(op, (a, b), None)
    if op not in _PLAIN:
        out, (za, zb) = _compute(op, (a, b), (x, y), None)
    else:  # add, sub, mul, max, min: no domain, partials finite; only the result can overflow
        out = op.forward(FLOAT, x, y)
        za, zb = op.partials(FLOAT, out, x, y)
        if not _isfinite(out):
            raise _fail(op, (a, b), None, f"gives {out}, not a finite float")
    v = _new(Value)
    v.data, v.grad, v._op, v._a, v._b, v._za, v._zb = out, 0.0, op, a, b, za, zb
    return v


def _as_value(other: Any) -> Value | None:
    if isinstance(other, Value):
        return other
    if isinstance(other, numbers.Real) and not isinstance(other, bool):
        return Value(other)
    return None


class Value:
    """A scalar node of the graph: its ``data``, its ``grad``, the ``op`` and ``parents`` it came from.

    >>> x = Value(2.0, label="x")
    >>> y = 2 * x + 1
    >>> y.backward(); (y.data, x.grad)
    (5.0, 2.0)
    """

    # NOTE: a graph has many nodes, so a node is seven slots (88 bytes with the object's headers):
    #   _op      the row, or (row, label) once the node has a label (None or (None, label) on a leaf);
    #   _a, _za  the first parent and its partial z(a, self); None on a leaf;
    #   _b, _zb  the second parent and its partial; on a one-input node _b is None and _zb holds the op's number
    #            parameter (the exponent of x ** 3), if it has one.
    # ``op``, ``label``, ``parents``, ``partials`` and ``arg`` read them.
    __slots__ = ("data", "grad", "_op", "_a", "_b", "_za", "_zb")
    keeps_grad = True  # backward adds S to every node's grad (the graph core's node protocol)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # NOTE: the fast backward pass reads Value's own slots; a subclass that redefines what the reference pass
        # asks of a node (its vjp, parents, ...) is noted, and a graph holding one of its nodes runs the reference.
        if any(name in vars(cls) for name in _NODE_PROTOCOL):
            fast.REDEFINED_NODES.add(cls)

    def __init__(self, data: float, label: str | None = None) -> None:
        self.data = _to_float(data)
        self.grad: Any = 0.0
        self._op: Any = None if label is None else (None, label)
        self._a = self._b = self._za = self._zb = None

    # -- the recorded graph ---------------------------------------------------------------------------------

    @property
    def op(self) -> Op | None:
        """The row that made this node (``(x * y).op.name == "mul"``); None for a leaf."""
        op = self._op
        return op[0] if type(op) is tuple else op

    @property
    def label(self) -> str | None:
        """The node's name in drawings, steps and errors (``Value(2.0, label="x").label == "x"``), or None."""
        op = self._op
        return op[1] if type(op) is tuple else None

    @label.setter
    def label(self, text: str | None) -> None:
        op = self.op
        self._op = op if text is None else (op, text)

    @property
    def parents(self) -> tuple[Value, ...]:
        """The op's inputs, in order (``x * x`` has ``x`` twice): ``(x * y).parents == (x, y)``."""
        a = self._a
        if a is None:
            return ()
        b = self._b
        return (a,) if b is None else (a, b)

    @property
    def partials(self) -> tuple[Any, ...]:
        """The local derivatives z(parent, self), recorded at forward time, one per parent."""
        if self._a is None:
            return ()
        return (self._za,) if self._b is None else (self._za, self._zb)

    @property
    def arg(self) -> Any:
        """The op's number parameter (the exponent of ``x ** 3``, the alpha of ``leaky_relu``), or None."""
        return self._zb if self._b is None else None

    def vjp(self, g: Any, create_graph: bool = False) -> tuple:
        """One contribution g * z(parent, self) per parent; with ``create_graph`` they are Values."""
        if create_graph:
            op = self.op
            args = (*self.parents, self.arg) if op.param else self.parents
            return tuple(g * z for z in op.partials(VALUE_MATH, self, *args))
        a = g * self._za
        if not _isfinite(a):
            raise _bad_gradient(self, 0, g, a)
        if self._b is None:
            return (a,)
        b = g * self._zb
        if not _isfinite(b):
            raise _bad_gradient(self, 1, g, b)
        return (a, b)

    def jvp(self, tangents: Any) -> float:
        """This node's tangent: the sum of z(parent, self) * tangent(parent) (None for a zero tangent)."""
        return sum(z * t for z, t in zip(self.partials, tangents) if t is not None)

    def as_tangent(self, v: Any, what: str = "jvp tangent") -> float:
        """``v`` checked as a tangent (a direction) or seed for this Value: a finite number; None means 0."""
        return 0.0 if v is None else _to_float(v, what)

    def reset_grad(self) -> None:
        """Set ``grad`` back to 0 (what ``zero_grad(out)`` does to every node)."""
        self.grad = 0.0


    # -- differentiation ------------------------------------------------------------------------------------

    def backward(self, seed: float = 1.0, *, create_graph: bool = False) -> None:
        """Add d self / d n to ``n.grad`` for every node n of the graph (S(self) = ``seed``).

        Gradients accumulate, as in PyTorch and micrograd: a second ``backward()`` adds the same amounts
        again; call ``microgradx.zero_grad(out)`` first to start from zero. With ``create_graph`` the
        gradients are Values, so they can be differentiated again. All or nothing: when the pass raises (a
        gradient that is not a finite float, an interrupt), every ``grad`` is left as it was.

        >>> x = Value(3.0); y = x * x
        >>> y.backward(); y.backward(); x.grad
        12.0
        """
        if fast.ENABLED and not create_graph:
            fast.value_backward(self, _to_float(seed, "backward seed"))
            return
        s = Value(seed) if create_graph else _to_float(seed, "backward seed")
        order = graph.topological_order(self)
        before = [n.grad for n in order]
        try:
            graph.run(graph.backprop(self, s, create_graph=create_graph))
        except BaseException:  # the pass adds to each grad as it goes: give the ones it reached back
            for n, g in zip(order, before):
                n.grad = g
            raise

    # -- operators (+, -, *, /, **, unary -, abs) are attached from the rows' spellings below ------------------

    def __pos__(self) -> Value:
        return self

    # -- comparisons look at data (ordering only: identity stays the node's identity) ----------------------

    def __lt__(self, other: Any) -> bool:
        return self.data < _data(other)

    def __le__(self, other: Any) -> bool:
        return self.data <= _data(other)

    def __gt__(self, other: Any) -> bool:
        return self.data > _data(other)

    def __ge__(self, other: Any) -> bool:
        return self.data >= _data(other)

    def __float__(self) -> float:
        # NOTE: math.sin(x) would call this and silently cut the graph; a number is x.data, a graph op x.sin().
        raise TypeError(f"float() of {self!r} would leave the graph (math.sin(x) and friends call it): use the "
                        "Value's own methods, x.sin(), x.exp(), ..., to stay on the graph, or x.data for the number")

    def __reduce__(self) -> tuple:
        # NOTE: the graph behind this node is flattened in topological order, without recursion, so a deep chain
        # pickles and deep-copies; nodes shared inside it stay shared.
        order = graph.topological_order(self)
        at = {id(n): k for k, n in enumerate(order)}
        rows = [(n.data, n.grad, n._op, tuple(at[id(p)] for p in n.parents), n._za, n._zb) for n in order]
        return (_rebuild, (rows,))

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data:.6g}, grad={_fmt(self.grad)}{label})"


# What graph.backprop reads of a node (a subclass redefining any of it is run by the reference pass).
_NODE_PROTOCOL = ("vjp", "parents", "partials", "op", "keeps_grad", "grad", "data")


def _rebuild(rows: list) -> Value:
    """The node a ``Value.__reduce__`` flattened: its graph rebuilt from the rows, parents first."""
    nodes: list[Value] = []
    for data, g, op, parents, za, zb in rows:
        v = _new(Value)
        a = nodes[parents[0]] if parents else None
        b = nodes[parents[1]] if len(parents) > 1 else None
        v.data, v.grad, v._op, v._a, v._b, v._za, v._zb = data, g, op, a, b, za, zb
        nodes.append(v)
    return nodes[-1]


def _data(x: Any) -> float:
    return x.data if isinstance(x, Value) else x


def _fmt(g: Any) -> str:
    return f"{g:.6g}" if isinstance(g, float) else repr(g)


_new = object.__new__


def _method(op: Op, name: str):
    if op.arity == 1 and op.param is None:
        def method(self: Value) -> Value:
            return _unary(op, self)
    elif op.arity == 1:
        def method(self: Value, param: float = op.default) -> Value:  # type: ignore[assignment]
            return _unary(op, self, _to_float(param, f"{op.name} {op.param}"))
    else:
        def method(self: Value, other: Any) -> Value:  # type: ignore[assignment]
            o = _as_value(other)
            if o is None:
                raise TypeError(f"{op.name} needs a Value or a number, got {type(other).__name__}")
            return _binary(op, self, o)
    method.__name__ = method.__qualname__ = name
    signature = f"x.{name}({op.param}={op.default})" if op.param else f"x.{name}()"
    if op.arity == 2:
        signature = f"x.{name}(y)"
    method.__doc__ = f"{signature}: {op.doc}."
    return method


def _operator(name: str, rows: tuple[Op, ...]):
    """The operator method ``name`` (``__add__``, ``__rpow__``, ``__neg__``, ...) applying ``rows``."""
    unary, binary, numeric = operator_roles(rows)
    if unary is not None:
        def method(self: Value) -> Value:
            return _unary(unary, self)
    elif name == binary.reflected:
        def method(self: Value, other: Any) -> Value:  # type: ignore[misc]
            o = _as_value(other)
            return NotImplemented if o is None else _binary(binary, o, self)
    elif numeric is None:
        def method(self: Value, other: Any) -> Value:  # type: ignore[misc]
            o = other if type(other) is Value else _as_value(other)
            return NotImplemented if o is None else _binary(binary, self, o)
    else:
        def method(self: Value, other: Any) -> Value:  # type: ignore[misc]
            if isinstance(other, Value):
                return _binary(binary, self, other)
            if isinstance(other, numbers.Real) and not isinstance(other, bool):
                return _unary(numeric, self, _to_float(other, f"{numeric.name} {numeric.param}"))
            return NotImplemented
    method.__name__ = method.__qualname__ = name
    method.__doc__ = " or ".join(f"{r.name}: {r.doc}" for r in rows) + "."
    return method


for _op in OPS.values():
    for _name_ in _op.methods:
        setattr(Value, _name_, _method(_op, _name_))
for _dunder, _rows in operator_rows().items():
    setattr(Value, _dunder, _operator(_dunder, _rows))
# The hottest operators (+, -, *, unary -, relu, tanh) run as fast kernels that build the same nodes and hand
# every other case to the methods above (microgradx.fast; fast.reference_only() runs the methods above alone).
for _name_, _kernel in fast.value_kernels(Value, {n: getattr(Value, n) for n in fast.VALUE_KERNELS}).items():
    setattr(Value, _name_, _kernel)


def _gelu(self: Value, approximate: str = "none") -> Value:
    """x.gelu(): x Phi(x), the exact (erf) form; ``x.gelu(approximate="tanh")``: the tanh form, as PyTorch."""
    return _unary(gelu_row(approximate), self)


Value.gelu = _gelu  # type: ignore[method-assign]


def _lift(p: Any):
    """Primitive ``p`` on graph nodes: its row (or its ``on_node`` form) when an argument is a Value."""
    on_node = (lambda *xs: getattr(xs[0], OPS[p.row].methods[0])(*xs[1:])) if p.row else \
        (lambda *xs: p.on_node(VALUE_MATH, *xs))

    def fn(*xs: Any) -> Any:
        if isinstance(xs[0], Value):
            return on_node(*xs)
        if any(isinstance(x, Value) for x in xs[1:]):
            return on_node(Value(xs[0]), *xs[1:]) if p.row else on_node(*xs)
        return p.on_float(*xs)
    return fn


VALUE_MATH = namespace("ValueMath", {p.name: _lift(p) for p in PRIMITIVES})
"""The maths namespace on Values: the op table's partials evaluated here build graph nodes."""
