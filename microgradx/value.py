"""The scalar ``Value``: a float that records the op, the ordered parents and the local derivatives it came from.

Every method and operator is a one-line binding onto a row of the op table; the methods named by the table
(``x.tanh()``, ``x.leaky_relu(0.01)``, ...) are attached from it below, so adding a row adds the method.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from . import graph
from .ops import ADD, DIV, FLOAT, MUL, NEG, OPS, POW, POWER, SUB, DivisionByZeroError, DomainError, Op

__all__ = ["Value", "VALUE_MATH"]

_isfinite = math.isfinite
# Ops whose partials are inputs or constants, or bounded by 1 (the row's ``bounded`` flag): never non-finite.
_FINITE_PARTIALS = frozenset((ADD, SUB, MUL, NEG, *(op for op in OPS.values() if op.bounded)))
_PLAIN = frozenset(op for op in _FINITE_PARTIALS if not op.checked)


def _to_float(data: Any, what: str = "Value") -> float:
    if type(data) is not float:
        if isinstance(data, bool) or not isinstance(data, numbers.Real):
            raise TypeError(f"{what} needs an int or a float, got {type(data).__name__}: {data!r}")
        data = float(data)
    if not math.isfinite(data):
        raise DomainError(f"{what}({data!r}): data must be a finite number, got {data!r}", "value", data)
    return data


def _name(v: Value) -> str:
    return v.label if v.label else f"{v.data:g}"


def _fail(op: Op, inputs: tuple, arg: Any, why: str, cls: type = DomainError) -> DomainError:
    shown = f"{op.name} with {op.param}={arg:g}" if op.param and op.arity == 1 else op.name
    names = ", ".join(_name(v) for v in inputs)
    label = next((v.label for v in inputs if v.label), None)
    return cls(f"{op.name}({names}): {shown} {why}", op.name, tuple(v.data for v in inputs), label)


def _check_domain(op: Op, inputs: tuple, arg: Any) -> None:
    for k, (v, dom) in enumerate(zip(inputs, op.domains(arg))):
        if not dom.contains(v.data):
            cls = DivisionByZeroError if dom.zero_division and v.data == 0 else DomainError
            raise _fail(op, inputs, arg, f"needs {'xy'[k]} {dom.text}, got {v.data!r}", cls)


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
    out, zs = _compute(op, (x,), (x.data,) if op.param is None else (x.data, arg), arg)
    v = _new(Value)
    v.data, v.grad, v.op, v.label, v._a, v._b, v._za, v._zb, v._arg = out, 0.0, op, None, x, None, zs[0], None, arg
    return v


def _binary(op: Op, a: Value, b: Value) -> Value:
    if op not in _PLAIN:
        out, (za, zb) = _compute(op, (a, b), (a.data, b.data), None)
    else:  # add, sub, mul, max, min: no domain, partials finite; only the result can overflow
        x, y = a.data, b.data
        out = op.forward(FLOAT, x, y)
        za, zb = op.partials(FLOAT, out, x, y)
        if not _isfinite(out):
            raise _fail(op, (a, b), None, f"gives {out}, not a finite float")
    v = _new(Value)
    v.data, v.grad, v.op, v.label, v._a, v._b, v._za, v._zb, v._arg = out, 0.0, op, None, a, b, za, zb, None
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

    __slots__ = ("data", "grad", "op", "label", "_a", "_b", "_za", "_zb", "_arg")
    _keeps_grad = True  # backward adds S to every node's grad (the graph core's node protocol)

    def __init__(self, data: float, label: str | None = None) -> None:
        self.data = _to_float(data)
        self.grad: Any = 0.0
        self.op: Op | None = None
        self.label = label
        self._a = self._b = self._za = self._zb = self._arg = None

    # -- the recorded graph ---------------------------------------------------------------------------------

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
        return self._arg

    def _vjps(self, g: Any, create_graph: bool) -> tuple:
        if create_graph:
            args = (*self.parents, self._arg) if self.op.param else self.parents
            return tuple(g * z for z in self.op.partials(VALUE_MATH, self, *args))
        if self._b is None:
            return (g * self._za,)
        return (g * self._za, g * self._zb)

    def _reset_grad(self) -> None:
        self.grad = 0.0

    # -- differentiation ------------------------------------------------------------------------------------

    def backward(self, seed: float = 1.0, *, create_graph: bool = False) -> None:
        """Add d self / d n to ``n.grad`` for every node n of the graph (S(self) = ``seed``).

        Gradients accumulate, as in PyTorch and micrograd: a second ``backward()`` adds the same amounts
        again; call ``microgradx.zero_grad(out)`` first to start from zero. With ``create_graph`` the
        gradients are Values, so they can be differentiated again.

        >>> x = Value(3.0); y = x * x
        >>> y.backward(); y.backward(); x.grad
        12.0
        """
        s: Any = Value(seed) if create_graph else _to_float(seed, "backward seed")
        graph.run(graph.backprop(self, s, create_graph=create_graph))

    # -- arithmetic: one line each onto the op table --------------------------------------------------------

    def __add__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(ADD, self, o)

    def __radd__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(ADD, o, self)

    def __sub__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(SUB, self, o)

    def __rsub__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(SUB, o, self)

    def __mul__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(MUL, self, o)

    def __rmul__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(MUL, o, self)

    def __truediv__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(DIV, self, o)

    def __rtruediv__(self, other: Any) -> Value:
        o = other if type(other) is Value else _as_value(other)
        return NotImplemented if o is None else _binary(DIV, o, self)

    def __neg__(self) -> Value:
        return _unary(NEG, self)

    def __pos__(self) -> Value:
        return self

    def __pow__(self, other: Any) -> Value:
        """``x ** 3`` (number exponent, op ``pow``) or ``x ** y`` (Value exponent, op ``power``, x > 0)."""
        if isinstance(other, Value):
            return _binary(POWER, self, other)
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _unary(POW, self, _to_float(other, "pow exponent"))
        return NotImplemented

    def __rpow__(self, other: Any) -> Value:
        o = _as_value(other)
        return NotImplemented if o is None else _binary(POWER, o, self)

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
        return self.data

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data:.6g}, grad={_fmt(self.grad)}{label})"


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


for _op in OPS.values():
    for _name_ in _op.methods:
        setattr(Value, _name_, _method(_op, _name_))


class _ValueMath:
    """The maths namespace on Values: the op table's partials evaluated here build graph nodes."""

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b


def _lift(method: str, on_float: Any):
    def fn(*xs: Any) -> Any:
        if isinstance(xs[0], Value):
            return getattr(xs[0], method)(*xs[1:])
        if len(xs) > 1 and isinstance(xs[1], Value):
            return getattr(Value(xs[0]), method)(*xs[1:])
        return on_float(*xs)
    return staticmethod(fn)


for _fname, _method_name in (("exp", "exp"), ("log", "log"), ("sqrt", "sqrt"), ("sin", "sin"), ("cos", "cos"),
                             ("tan", "tan"), ("atan", "arctan"), ("tanh", "tanh"), ("abs", "abs"),
                             ("sigmoid", "sigmoid"), ("softplus", "softplus"), ("maximum", "max"),
                             ("minimum", "min"), ("relu", "relu")):
    setattr(_ValueMath, _fname, _lift(_method_name, getattr(FLOAT, _fname)))
_ValueMath.expm1 = staticmethod(lambda x: x.exp() - 1.0 if isinstance(x, Value) else math.expm1(x))

VALUE_MATH = _ValueMath()
