"""The op table: every primitive operation declared once, as one record.

Each record knows its forward, its local partial derivatives, its display label, its argument domains and its
kinks. Forward and partials are written against a small maths namespace ``F`` so that one expression serves
floats, NumPy arrays, graph nodes (for higher-order derivatives) and SymPy symbols alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OPS", "Op", "Domain", "DomainError", "DivisionByZeroError", "MicrogradxError",
    "FLOAT", "numpy_math", "sympy_math", "REAL", "POSITIVE", "NONNEG", "NONZERO", "method_names",
    "Primitive", "PRIMITIVES", "namespace", "operator_rows", "operator_roles", "op_error", "GELU_FORMS", "gelu_row",
]


class MicrogradxError(Exception):
    """Base class of every error microgradx raises on purpose."""


class DomainError(MicrogradxError, ValueError):
    """An op was applied outside its domain, or its result is not a finite float.

    >>> from microgradx import Value
    >>> Value(-1.0, label="neg").log()
    Traceback (most recent call last):
    ...
    microgradx.ops.DomainError: log(neg): log needs x > 0, got -1.0
    """

    def __init__(self, message: str, op: str = "", value: Any = None, label: str | None = None):
        super().__init__(message)
        self.op, self.value, self.label = op, value, label


class DivisionByZeroError(DomainError, ZeroDivisionError):
    """Division by zero, or zero raised to a negative power: a DomainError that is also a ZeroDivisionError."""


# ---------------------------------------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """The set an op's argument must lie in, e.g. ``POSITIVE`` for log: ``Domain("> 0", lo=0.0)``."""

    text: str                     # the condition, e.g. "> 0"
    lo: float = -math.inf
    hi: float = math.inf
    lo_closed: bool = False
    hi_closed: bool = False
    nonzero: bool = False
    zero_division: bool = False  # leaving this domain at 0 is a division by zero

    def contains(self, x: Any) -> Any:
        """True where ``x`` lies in the domain, for a float or elementwise for an array:
        ``POSITIVE.contains(0.0)`` is False."""
        ok = (x > self.lo) | ((x == self.lo) & self.lo_closed)
        ok = ok & ((x < self.hi) | ((x == self.hi) & self.hi_closed))
        return ok & (x != 0) if self.nonzero else ok


REAL = Domain("real")
POSITIVE = Domain("> 0", lo=0.0)
NONNEG = Domain(">= 0", lo=0.0, lo_closed=True)
NONZERO = Domain("!= 0", nonzero=True, zero_division=True)


# ---------------------------------------------------------------------------------------------------------
# Primitives: each maths function declared once, in its float, NumPy and SymPy forms
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Primitive:
    """One maths function rows are written with, e.g. ``F.tanh``: its forms on floats, NumPy and SymPy.

    ``numpy`` and ``sympy`` take the imported module and return the function, so that neither library is
    imported before a namespace needs it. On graph nodes (``VALUE_MATH``) a primitive is the row named ``row``
    (lifted onto it), or, with no such row, ``on_node(F, *args)`` written against the node namespace ``F``.
    """

    name: str
    on_float: Callable[..., Any]
    numpy: Callable[[Any], Callable[..., Any]]
    sympy: Callable[[Any], Callable[..., Any]]
    row: str | None = None
    on_node: Callable[..., Any] | None = None


def _float_sigmoid(x: float) -> float:
    # NOTE: two branches so that exp never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _numpy_sigmoid(np: Any) -> Callable[..., Any]:
    def sigmoid(x: Any) -> Any:
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return sigmoid


def _numpy_erf(np: Any) -> Callable[..., Any]:
    # NOTE: NumPy has no erf; SciPy's (a dependency of scikit-learn, so always installed) is imported on first
    # use, so that ``import microgradx`` stays fast.
    def erf(x: Any) -> Any:
        from scipy.special import erf as scipy_erf

        return scipy_erf(x)
    return erf


PRIMITIVES: tuple[Primitive, ...] = (
    Primitive("exp", math.exp, lambda np: np.exp, lambda sp: sp.exp, row="exp"),
    Primitive("expm1", math.expm1, lambda np: np.expm1, lambda sp: lambda x: sp.exp(x) - 1, row="expm1"),
    Primitive("log", math.log, lambda np: np.log, lambda sp: sp.log, row="log"),
    Primitive("log1p", math.log1p, lambda np: np.log1p, lambda sp: lambda x: sp.log(1 + x), row="log1p"),
    Primitive("erf", math.erf, _numpy_erf, lambda sp: sp.erf, row="erf"),
    # NOTE: sign(0) = 0, as NumPy, SymPy and PyTorch.
    Primitive("sign", lambda x: float((x > 0) - (x < 0)), lambda np: np.sign, lambda sp: sp.sign, row="sign"),
    Primitive("sqrt", math.sqrt, lambda np: np.sqrt, lambda sp: sp.sqrt, row="sqrt"),
    Primitive("sin", math.sin, lambda np: np.sin, lambda sp: sp.sin, row="sin"),
    Primitive("cos", math.cos, lambda np: np.cos, lambda sp: sp.cos, row="cos"),
    Primitive("tan", math.tan, lambda np: np.tan, lambda sp: sp.tan, row="tan"),
    Primitive("atan", math.atan, lambda np: np.arctan, lambda sp: sp.atan, row="arctan"),
    Primitive("tanh", math.tanh, lambda np: np.tanh, lambda sp: sp.tanh, row="tanh"),
    Primitive("sinh", math.sinh, lambda np: np.sinh, lambda sp: sp.sinh, row="sinh"),
    Primitive("cosh", math.cosh, lambda np: np.cosh, lambda sp: sp.cosh, row="cosh"),
    Primitive("abs", abs, lambda np: np.abs, lambda sp: sp.Abs, row="abs"),
    Primitive("sigmoid", _float_sigmoid, _numpy_sigmoid, lambda sp: lambda x: 1 / (1 + sp.exp(-x)), row="sigmoid"),
    Primitive("softplus", lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))),
              lambda np: lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
              lambda sp: lambda x: sp.log(1 + sp.exp(x)), row="softplus"),
    # NOTE: on graph nodes the condition is a plain bool (comparing Values compares their data).
    Primitive("where", lambda c, a, b: a if c else b, lambda np: np.where,
              lambda sp: lambda c, a, b: sp.Piecewise((a, c), (b, True)), on_node=lambda F, c, a, b: a if c else b),
    # NOTE: NumPy's relu is one pass, and -0.0 comes out as 0.0, as where(x > 0, x, 0.0) gives; SymPy's is the
    # form where(x > 0, x, 0.0) gives.
    Primitive("relu", lambda x: x if x > 0 else 0.0, lambda np: lambda x: np.maximum(x, 0.0),
              lambda sp: lambda x: sp.Piecewise((x, x > 0), (0.0, True)), row="relu"),
    Primitive("maximum", lambda a, b: a if a >= b else b, lambda np: np.maximum, lambda sp: sp.Max, row="max"),
    Primitive("minimum", lambda a, b: a if a <= b else b, lambda np: np.minimum, lambda sp: sp.Min, row="min"),
)


def namespace(name: str, functions: dict[str, Callable[..., Any]]) -> Any:
    """An object whose attributes are ``functions`` (plain functions, never bound as methods): a maths
    namespace ``F``. ``namespace("Half", {"half": lambda x: x / 2}).half(3.0) == 1.5``."""
    return type(name, (), {k: staticmethod(f) for k, f in functions.items()})()


FLOAT = namespace("FloatMath", {p.name: p.on_float for p in PRIMITIVES})

_NUMPY_MATH = None
_SYMPY_MATH = None


def numpy_math() -> Any:
    """The maths namespace on NumPy arrays (imports NumPy on first use): ``numpy_math().tanh(arr)``."""
    global _NUMPY_MATH
    if _NUMPY_MATH is None:
        import numpy as np

        _NUMPY_MATH = namespace("NumpyMath", {p.name: p.numpy(np) for p in PRIMITIVES})
    return _NUMPY_MATH


def sympy_math() -> Any:
    """The maths namespace on SymPy expressions (imports SymPy on first use): ``sympy_math().exp(x)``."""
    global _SYMPY_MATH
    if _SYMPY_MATH is None:
        import sympy as sp

        _SYMPY_MATH = namespace("SympyMath", {p.name: p.sympy(sp) for p in PRIMITIVES})
    return _SYMPY_MATH


# ---------------------------------------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Op:
    """One primitive operation; see the module docstring. ``OPS["tanh"].forward(FLOAT, 0.5)`` is tanh(0.5)."""

    name: str
    arity: int
    forward: Callable[..., Any]   # forward(F, *inputs[, param]) -> out
    partials: Callable[..., tuple]  # partials(F, out, *inputs[, param]) -> one local derivative per input
    label: str                    # short text for drawings; may use {p} for the parameter
    template: str                 # formula with {0}, {1} for inputs, {p} the parameter, {pa} ", p" if not default
    doc: str
    domain: tuple[Domain, ...] | Callable[[Any], tuple[Domain, ...]] = ()
    param: str | None = None      # name of a non-differentiable number parameter (alpha, slope, exponent)
    default: float | None = None
    kink: Callable[..., float] | None = None  # distance from the inputs to the nearest kink
    subgradient: str = ""         # what the derivative is at a kink, and why
    methods: tuple[str, ...] = field(default=())
    # How Python spells the op: the operator ("+"), the method it calls ("__add__") and the method it calls
    # when the left operand does not know the op ("__radd__"); None for an op spelled only as a method.
    operator: str | None = None
    dunder: str | None = None
    reflected: str | None = None
    # True when finite inputs always give a finite output and partials of magnitude at most 1, so that a finite
    # upstream gradient times a partial is finite too: the tensor path then skips this row's finiteness scans.
    bounded: bool = False
    checked: bool = field(init=False, repr=False)  # False when every argument may be any real number

    def __post_init__(self) -> None:
        checked = callable(self.domain) or any(d is not REAL for d in self.domain)
        if self.bounded and (checked or self.param is not None):
            raise ValueError(f"{self.name}: a bounded row takes every real input and no parameter (a parameter "
                             "could scale its partials past 1)")
        object.__setattr__(self, "checked", checked)  # frozen: computed once, read on every forward

    def domains(self, param: Any = None) -> tuple[Domain, ...]:
        """Each argument's domain (for pow it depends on the exponent): ``OPS["log"].domains()[0].text``."""
        if callable(self.domain):
            return self.domain(param)
        return self.domain or (REAL,) * self.arity

    def sym(self, *inputs: Any, param: Any = None) -> Any:
        """The forward as a SymPy expression: ``OPS["tanh"].sym(sympy.Symbol("x"))`` is ``tanh(x)``."""
        args = (*inputs, param) if self.param else inputs
        return self.forward(sympy_math(), *args)

    def format(self, *inputs: str, param: Any = None) -> str:
        """The op written as a formula: ``OPS["add"].format("a", "b")`` is ``'a + b'``."""
        # {pa} shows a parameter only when it differs from the default: sigmoid(z) but sigmoid(z, 2).
        shown = "" if param is None or param == self.default else f", {_num(param)}"
        return self.template.format(*inputs, p=_num(param), pa=shown)

    def display(self, param: Any = None) -> str:
        """The short label for a drawing: ``OPS["pow"].display(2)`` is ``'**2'``."""
        return self.label.format(p=_num(param))

    def __repr__(self) -> str:
        return f"<op {self.name}>"

    def __reduce__(self) -> tuple:
        # NOTE: a row is pickled (and deep-copied) as its name, so a graph that uses it unpickles onto the
        # same table row; its lambdas could not be pickled anyway.
        if OPS.get(self.name) is not self:
            raise TypeError(f"cannot pickle the row {self.name!r}: it is not the op table's row of that name")
        return (_row, (self.name,))


def _num(p: Any) -> str:
    if isinstance(p, float) and p.is_integer():
        return str(int(p))
    return "" if p is None else f"{p:g}" if isinstance(p, float) else str(p)


OPS: dict[str, Op] = {}


def _row(name: str) -> Op:
    return OPS[name]


def defop(name: str, arity: int, forward, partials, label: str, template: str, doc: str, **kw: Any) -> Op:
    """Declare an op and add it to ``OPS``; the row's name is also its Value method unless ``methods`` says."""
    kw.setdefault("methods", (name,))
    op = Op(name, arity, forward, partials, label, template, doc, **kw)
    OPS[name] = op
    return op


def method_names(arity: int | None = None) -> dict[str, Op]:
    """{method name: row} for the ops spelled as methods (operators are the rows' ``dunder``), optionally only
    those taking ``arity`` inputs: ``"tanh" in method_names(1)``."""
    return {m: op for op in OPS.values() if arity in (None, op.arity) for m in op.methods}


def operator_rows() -> dict[str, tuple[Op, ...]]:
    """{dunder or reflected name: the rows it may apply}: ``__pow__`` applies ``pow`` (a number exponent) or
    ``power`` (a node exponent). Value and Tensor attach their operator methods from it.

    >>> [op.name for op in operator_rows()["__pow__"]]
    ['pow', 'power']
    """
    found: dict[str, tuple[Op, ...]] = {}
    for op in OPS.values():
        for dunder in (op.dunder, op.reflected):
            if dunder:
                found[dunder] = (*found.get(dunder, ()), op)
    return found


def operator_roles(rows: tuple[Op, ...]) -> tuple[Op | None, Op | None, Op | None]:
    """The rows one operator method chooses between, as (unary, binary, with a number parameter): ``__pow__``
    has no unary row, ``power`` for a node exponent and ``pow`` for a number one.

    >>> [r and r.name for r in operator_roles(operator_rows()["__pow__"])]
    [None, 'power', 'pow']
    """
    unary = next((r for r in rows if r.arity == 1 and r.param is None), None)
    binary = next((r for r in rows if r.arity == 2), None)
    numeric = next((r for r in rows if r.arity == 1 and r.param is not None), None)  # x ** 3: a number n
    return unary, binary, numeric


def op_error(op: Op, names: str, param: Any, why: str, value: Any = None, label: str | None = None,
             cls: type[DomainError] = DomainError) -> DomainError:
    """The error for ``op`` applied to nodes called ``names``, in the words every engine uses:
    ``op_error(OPS["log"], "x", None, "needs x > 0, got -1.0")`` says ``log(x): log needs x > 0, got -1.0``."""
    shown = f"{op.name} with {op.param}={param:g}" if op.param and op.arity == 1 and param is not None else op.name
    return cls(f"{op.name}({names}): {shown} {why}", op.name, value, label)


def domain_error(op: Op, names: str, param: Any, k: int, dom: Domain, value: float, where: str = "",
                 label: str | None = None, data: Any = None) -> DomainError:
    """The error for argument ``k`` of ``op`` being ``value`` (``where``: at which index), outside ``dom``; a
    DivisionByZeroError when leaving the domain at 0 divides by zero. ``data`` (default ``value``) is what the
    error carries as its ``value``."""
    cls = DivisionByZeroError if dom.zero_division and value == 0 else DomainError
    return op_error(op, names, param, f"needs {'xy'[k]} {dom.text}, got {value!r}{where}",
                    value if data is None else data, label, cls)


def _pow_domain(n: float) -> tuple[Domain, ...]:
    # NOTE: x**n with a fractional n is real only for x >= 0, and its derivative n*x**(n-1) is finite at 0
    # only when n >= 1; a negative integer n only excludes 0.
    integer = float(n).is_integer()
    if integer:
        return (REAL,) if n >= 0 else (NONZERO,)
    if n >= 1:
        return (NONNEG,)
    return (Domain("> 0", lo=0.0, zero_division=n < 0),)


def _dist0(x, *_):
    return abs(x)


# ---------------------------------------------------------------------------------------------------------
# The rows. Arithmetic first, then elementary functions, then activations.
# ---------------------------------------------------------------------------------------------------------

ADD = defop("add", 2, lambda F, x, y: x + y, lambda F, out, x, y: (1.0, 1.0),
            "+", "{0} + {1}", "x + y", methods=(),
            operator="+", dunder="__add__", reflected="__radd__")
SUB = defop("sub", 2, lambda F, x, y: x - y, lambda F, out, x, y: (1.0, -1.0),
            "-", "{0} - {1}", "x - y", methods=(),
            operator="-", dunder="__sub__", reflected="__rsub__")
MUL = defop("mul", 2, lambda F, x, y: x * y, lambda F, out, x, y: (y, x),
            "*", "{0} * {1}", "x * y", methods=(),
            operator="*", dunder="__mul__", reflected="__rmul__")
DIV = defop("div", 2, lambda F, x, y: x / y, lambda F, out, x, y: (1.0 / y, -out / y),
            "/", "{0} / {1}", "x / y", domain=(REAL, NONZERO), methods=(),
            operator="/", dunder="__truediv__", reflected="__rtruediv__")
NEG = defop("neg", 1, lambda F, x: -x, lambda F, out, x: (-1.0,),
            "neg", "-{0}", "-x", methods=(), bounded=True, operator="-", dunder="__neg__")
POW = defop("pow", 1, lambda F, x, n: x ** n,
            lambda F, out, x, n: (0.0,) if n == 0 else (n * x ** (n - 1),),
            "**{p}", "{0}**{p}", "x ** n for a number n (the exponent is not differentiated)",
            domain=_pow_domain, param="n", methods=(), operator="**", dunder="__pow__")
POWER = defop("power", 2, lambda F, x, y: x ** y, lambda F, out, x, y: (y * x ** (y - 1), out * F.log(x)),
              "**", "{0}**{1}", "x ** y for a graph-node exponent y; needs x > 0",
              domain=(POSITIVE, REAL), methods=(), operator="**", dunder="__pow__",
              reflected="__rpow__")
EXP = defop("exp", 1, lambda F, x: F.exp(x), lambda F, out, x: (out,), "exp", "exp({0})", "e ** x")
LOG = defop("log", 1, lambda F, x: F.log(x), lambda F, out, x: (1.0 / x,), "log", "log({0})",
            "natural logarithm", domain=(POSITIVE,))
SQRT = defop("sqrt", 1, lambda F, x: F.sqrt(x), lambda F, out, x: (0.5 / out,), "sqrt", "sqrt({0})",
             "square root; needs x > 0 because its derivative is infinite at 0",
             domain=(Domain("> 0 (its derivative is infinite at 0)", lo=0.0),))
SIN = defop("sin", 1, lambda F, x: F.sin(x), lambda F, out, x: (F.cos(x),), "sin", "sin({0})", "sine",
             bounded=True)
COS = defop("cos", 1, lambda F, x: F.cos(x), lambda F, out, x: (-F.sin(x),), "cos", "cos({0})", "cosine",
             bounded=True)
TAN = defop("tan", 1, lambda F, x: F.tan(x), lambda F, out, x: (1.0 + out * out,), "tan", "tan({0})",
            "tangent")
ARCTAN = defop("arctan", 1, lambda F, x: F.atan(x), lambda F, out, x: (1.0 / (1.0 + x * x),),
               "arctan", "arctan({0})", "inverse tangent (Blain's arctan activation)", bounded=True)
TANH = defop("tanh", 1, lambda F, x: F.tanh(x), lambda F, out, x: (1.0 - out * out,), "tanh", "tanh({0})",
             "hyperbolic tangent", bounded=True)
SINH = defop("sinh", 1, lambda F, x: F.sinh(x), lambda F, out, x: (F.cosh(x),), "sinh", "sinh({0})",
             "hyperbolic sine")
COSH = defop("cosh", 1, lambda F, x: F.cosh(x), lambda F, out, x: (F.sinh(x),), "cosh", "cosh({0})",
             "hyperbolic cosine")
_SQRT_HALF = math.sqrt(0.5)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
LOG1P = defop("log1p", 1, lambda F, x: F.log1p(x), lambda F, out, x: (1.0 / (1.0 + x),), "log1p", "log1p({0})",
              "log(1 + x), accurate for small x", domain=(Domain("> -1", lo=-1.0),))
EXPM1 = defop("expm1", 1, lambda F, x: F.expm1(x), lambda F, out, x: (out + 1.0,), "expm1", "expm1({0})",
              "e ** x - 1, accurate for small x")
ERF = defop("erf", 1, lambda F, x: F.erf(x), lambda F, out, x: (_TWO_OVER_SQRT_PI * F.exp(-x * x),),
            "erf", "erf({0})", "the error function, 2/sqrt(pi) times the integral of e**(-t**2) from 0 to x")
SIGN = defop("sign", 1, lambda F, x: F.sign(x), lambda F, out, x: (0.0,), "sign", "sign({0})",
             "-1, 0 or 1: its derivative is 0, so it cannot train", kink=_dist0,
             subgradient="sign'(0) := 0, as PyTorch (the jump has no derivative)", bounded=True)
SIGMOID = defop("sigmoid", 1, lambda F, x, a: F.sigmoid(a * x), lambda F, out, x, a: (a * out * (1.0 - out),),
                "sigmoid", "sigmoid({0}{pa})", "1 / (1 + e**(-a*x)), slope a (Slettevold's thesis eq. 3)",
                param="a", default=1.0)
RELU = defop("relu", 1, lambda F, x: F.relu(x), lambda F, out, x: (F.where(x > 0, 1.0, 0.0),),
             "relu", "relu({0})", "max(0, x)", kink=_dist0,
             subgradient="relu'(0) := 0, as PyTorch", bounded=True)
LEAKY_RELU = defop("leaky_relu", 1, lambda F, x, a: F.where(x > 0, x, a * x),
                   lambda F, out, x, a: (F.where(x > 0, 1.0, a),),
                   "leaky_relu", "leaky_relu({0}{pa})", "x for x > 0, alpha*x otherwise",
                   param="alpha", default=0.01, kink=_dist0,
                   subgradient="leaky_relu'(0) := alpha, as PyTorch")
PRELU = defop("prelu", 2, lambda F, x, a: F.where(x > 0, x, a * x),
              lambda F, out, x, a: (F.where(x > 0, 1.0, a), F.where(x > 0, 0.0, x)),
              "prelu", "prelu({0}, {1})", "leaky relu whose slope is a learnable graph node",
              kink=_dist0, subgradient="prelu'(0) := slope, as PyTorch")
# NOTE: min(x, 0) keeps exp from overflowing on the branch that where() discards.
ELU = defop("elu", 1, lambda F, x, a: F.where(x > 0, x, a * F.expm1(F.minimum(x, 0.0))),
            lambda F, out, x, a: (F.where(x > 0, 1.0, out + a),),
            "elu", "elu({0}{pa})", "x for x > 0, alpha*(e**x - 1) otherwise",
            param="alpha", default=1.0, kink=_dist0, subgradient="elu'(0) := alpha, as PyTorch")
SOFTPLUS = defop("softplus", 1, lambda F, x: F.softplus(x), lambda F, out, x: (F.sigmoid(x),),
                 "softplus", "softplus({0})", "log(1 + e**x)", bounded=True)
SOFTSIGN = defop("softsign", 1, lambda F, x: x / (1.0 + F.abs(x)),
                 lambda F, out, x: (1.0 / ((1.0 + F.abs(x)) * (1.0 + F.abs(x))),),
                 "softsign", "softsign({0})", "x / (1 + |x|) (Blain's report eq. 11)", bounded=True)


def _swish_partials(F, out, x):
    s = F.sigmoid(x)
    return (s + out * (1.0 - s),)


SWISH = defop("swish", 1, lambda F, x: x * F.sigmoid(x), _swish_partials, "swish", "swish({0})",
              "x * sigmoid(x), also called SiLU (Ajmaldeen's assignment gets it wrong)", methods=("swish", "silu"))

_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu_forward(F, x):
    return 0.5 * x * (1.0 + F.tanh(_GELU_C * (x + 0.044715 * x * x * x)))


def _gelu_partials(F, out, x):
    t = F.tanh(_GELU_C * (x + 0.044715 * x * x * x))
    # NOTE: for |x| >= 20 the tanh is saturated (1 - t*t is exactly 0 in floats) and the term vanishes; taking
    # it at 0 there keeps x*x from overflowing into 0 * inf (the derivative of gelu(1e155) is 1).
    xs = F.where(F.abs(x) < 20.0, x, 0.0)
    return (0.5 * (1.0 + t) + 0.5 * xs * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * xs * xs),)


GELU_TANH = defop("gelu_tanh", 1, _gelu_forward, _gelu_partials, "gelu_tanh", "gelu_tanh({0})",
                  "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3))), the tanh form (PyTorch's approximate='tanh')")
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _gelu_exact_partials(F, out, x):
    # Phi(x) + x phi(x), Phi and phi the standard normal CDF and density.
    # NOTE: for |x| >= 40, x phi(x) is below the smallest float (e**-800); taking it at 0 there keeps x*x from
    # overflowing (a Value node would refuse the inf).
    xs = F.where(F.abs(x) < 40.0, x, 0.0)
    return (0.5 * (1.0 + F.erf(x * _SQRT_HALF)) + xs * F.exp(-0.5 * xs * xs) / _SQRT_2PI,)


GELU = defop("gelu", 1, lambda F, x: 0.5 * x * (1.0 + F.erf(x * _SQRT_HALF)), _gelu_exact_partials,
             "gelu", "gelu({0})", "x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form (PyTorch's default)")
# The spellings of PyTorch's ``approximate=`` argument, read by x.gelu(approximate=...) and nn.GELU.
GELU_FORMS = {"none": GELU, "tanh": GELU_TANH}


def gelu_row(approximate: str = "none") -> Op:
    """The gelu row for PyTorch's ``approximate`` spelling: ``gelu_row("tanh").name == "gelu_tanh"``."""
    row = GELU_FORMS.get(approximate) if isinstance(approximate, str) else None
    if row is None:
        raise ValueError(f"gelu: approximate must be one of {sorted(GELU_FORMS)}, got {approximate!r}")
    return row
HARD_TANH = defop("hard_tanh", 1, lambda F, x: F.where(x > 1, 1.0, F.where(x < -1, -1.0, x)),
                  lambda F, out, x: (F.where(x >= 1, 0.0, F.where(x <= -1, 0.0, 1.0)),),
                  "hard_tanh", "hard_tanh({0})", "x clipped to [-1, 1] (the Unit 1 lecture)",
                  kink=lambda x: min(abs(x - 1.0), abs(x + 1.0)),
                  subgradient="hard_tanh'(+-1) := 0, as PyTorch's hardtanh", bounded=True)
ABS = defop("abs", 1, lambda F, x: F.abs(x),
            lambda F, out, x: (F.where(x > 0, 1.0, F.where(x < 0, -1.0, 0.0)),),
            "abs", "|{0}|", "absolute value", kink=_dist0, subgradient="abs'(0) := 0, as PyTorch",
            methods=("abs",), dunder="__abs__", bounded=True)
# NOTE: on a tie the gradient is split evenly, as PyTorch's maximum/minimum and SymPy's Heaviside(0) = 1/2;
# so max(x, x) has derivative exactly 1.
MAX = defop("max", 2, lambda F, x, y: F.maximum(x, y),
            lambda F, out, x, y: (F.where(x > y, 1.0, F.where(x < y, 0.0, 0.5)),
                                  F.where(x > y, 0.0, F.where(x < y, 1.0, 0.5))),
            "max", "max({0}, {1})", "the larger of two values (the Unit 1 lecture's max gate)",
            kink=lambda x, y: abs(x - y), subgradient="on a tie each input gets half the gradient",
            methods=("max", "maximum"), bounded=True)
MIN = defop("min", 2, lambda F, x, y: F.minimum(x, y),
            lambda F, out, x, y: (F.where(x < y, 1.0, F.where(x > y, 0.0, 0.5)),
                                  F.where(x < y, 0.0, F.where(x > y, 1.0, 0.5))),
            "min", "min({0}, {1})", "the smaller of two values",
            kink=lambda x, y: abs(x - y), subgradient="on a tie each input gets half the gradient",
            methods=("min", "minimum"), bounded=True)
BINARY_STEP = defop("binary_step", 1, lambda F, x: F.where(x >= 0, 1.0, 0.0), lambda F, out, x: (0.0,),
                    "step", "step({0})", "1 for x >= 0, else 0: its derivative is 0, so it cannot train",
                    kink=_dist0, subgradient="step'(0) := 0 (the jump has no derivative)", bounded=True)
LINEAR = defop("linear", 1, lambda F, x, a: a * x, lambda F, out, x, a: (a,), "linear", "{p}*{0}",
               "a * x (Ajmaldeen's linear activation)", param="a", default=1.0)
