"""Public Hypothesis strategies for autodiff tests, in the style of ``hypothesis.extra.numpy``.

``programs()`` draws straight-line programs that reuse earlier results (fan-out is where accumulation bugs
live); ``number_programs()`` puts plain numbers on either side of an operator and ``reuse_programs()`` uses one
value twice through a chosen op. A ``Program`` builds itself on microgradx or on any micrograd-like engine, and
``pairs()`` builds each drawn program on two engines, so they can be compared on the same inputs.
``tensor_programs()`` draws programs on small NumPy tensors whose operands broadcast, for Tensor engines.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from .ops import FLOAT, OPS, Domain, Op

__all__ = ["Step", "Program", "programs", "number_programs", "reuse_programs", "pairs", "Pair", "floats_in",
           "op_inputs", "apply_op", "spelling", "DEFAULT_OPS", "PARAMS", "STUDENT_OPS", "STUDENT_PARAMS",
           "TensorStep", "TensorProgram", "tensor_programs", "TENSOR_POWERS"]

# Simplest first: Hypothesis shrinks a sampled op towards the front of the list.
DEFAULT_OPS: tuple[str, ...] = ("add", "mul", "sub", "neg", "div", "pow", "tanh", "exp", "log", "relu",
                                "sigmoid", "sin", "cos")
# Parameters drawn for ops that take one (kept to a few readable values so counterexamples stay readable).
PARAMS: dict[str, tuple[float, ...]] = {
    "pow": (2.0, 3.0, -1.0, 0.5, 1.5, -2.0),
    "leaky_relu": (0.01, 0.1, 0.2),
    "elu": (1.0, 0.5),
    "sigmoid": (1.0, 2.0, 0.5),
    "linear": (2.0, -0.5),
}
# The micrograd-style student protocol: operators, `** number`, and parameterless methods (sigmoid has slope 1).
STUDENT_OPS: tuple[str, ...] = ("add", "mul", "sub", "neg", "div", "pow", "relu", "tanh", "exp", "log", "sigmoid")
STUDENT_PARAMS: dict[str, tuple[float, ...]] = {"pow": (2.0, 3.0, -1.0, 0.5, -2.0, 1.5), "sigmoid": (1.0,)}
_LIMIT = 1e4  # keep every intermediate value moderate so float64 checks stay meaningful


def floats_in(domain: Domain, *, bound: float = 10.0, margin: float = 1e-3,
              closed_margin: float = 0.0) -> st.SearchStrategy[float]:
    """Finite floats inside ``domain``, within ``[-bound, bound]``, ``margin`` away from an open end and
    ``closed_margin`` away from a closed one (room for finite differences).

    >>> from hypothesis import find
    >>> from microgradx.ops import POSITIVE
    >>> find(floats_in(POSITIVE), lambda x: True) > 0
    True
    """
    lo = max(domain.lo + (closed_margin if domain.lo_closed else margin), -bound)
    hi = min(domain.hi - (closed_margin if domain.hi_closed else margin), bound)
    base = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if domain.nonzero:
        return base.filter(lambda x: abs(x) >= margin)
    return base


def _params(row: Op, params: dict[str, tuple[float, ...]] | None) -> tuple:
    return (params or {}).get(row.name) or PARAMS.get(row.name, (row.default,))


def op_inputs(op: Op | str, *, bound: float = 5.0, kink_margin: float = 1e-3, edge_margin: float = 0.0,
              params: dict[str, tuple[float, ...]] | None = None) -> st.SearchStrategy[tuple]:
    """``(inputs, param)`` for an op: inputs inside its domains, away from its kinks and ``edge_margin``
    away from a closed end of a domain; ``params`` overrides the parameters tried (e.g. ``STUDENT_PARAMS``).

    >>> from hypothesis import find
    >>> inputs, param = find(op_inputs("log"), lambda _: True); inputs[0] > 0
    True
    """
    row = OPS[op] if isinstance(op, str) else op
    choices = st.sampled_from(_params(row, params)) if row.param else st.none()

    @st.composite
    def draw(draw_: Any) -> tuple:
        p = draw_(choices)
        xs = tuple(draw_(floats_in(d, bound=bound, closed_margin=edge_margin)) for d in row.domains(p))
        args = (*xs, p) if row.param else xs
        # Kinks are excluded by the row's own kink distance, not moved away from.
        assume(row.kink is None or row.kink(*args) >= kink_margin)
        return xs, p

    return draw()


@dataclass(frozen=True)
class Step:
    """One instruction: apply ``op`` (a row name) to earlier results ``args`` (indices), with ``param``."""

    op: str
    args: tuple[int, ...]
    param: float | None = None


@dataclass(frozen=True)
class Program:
    """A straight-line program: ``inputs`` are v0..v(n-1); step k computes v(n+k) from earlier values.

    Inputs listed in ``numbers`` stay plain Python numbers (so ``2 - v1`` exercises ``__rsub__``); the others
    become leaves of the engine.

    >>> p = Program((2.0, 3.0), (Step("mul", (0, 1)), Step("add", (2, 0))))
    >>> out, leaves = p.build(); out.data
    8.0
    >>> p.formula()
    'v3 = v2 + v0 where v2 = v0 * v1; v0 = 2, v1 = 3'
    >>> Program((2.0, 5.0), (Step("sub", (0, 1)),), numbers=frozenset({0})).formula()
    'v2 = 2 - v1; v1 = 5'
    """

    inputs: tuple[float, ...]
    steps: tuple[Step, ...]
    numbers: frozenset[int] = frozenset()

    @property
    def variables(self) -> list[int]:
        """Indices of the inputs that are engine leaves (not plain numbers), in order."""
        return [k for k in range(len(self.inputs)) if k not in self.numbers]

    def build(self, value: Any = None) -> tuple[Any, list]:
        """Run the program on a Value class (microgradx's by default); returns (output, leaves), one leaf per
        index in ``variables``."""
        if value is None:
            from .value import Value as value
        nodes: list = [x if k in self.numbers else value(x) for k, x in enumerate(self.inputs)]
        leaves = [nodes[k] for k in self.variables]
        for s in self.steps:
            nodes.append(apply_op(s.op, [nodes[i] for i in s.args], s.param))
        if leaves and hasattr(leaves[0], "label"):
            for k, leaf in zip(self.variables, leaves):
                try:
                    leaf.label = f"v{k}"
                except AttributeError:  # an engine without a settable label
                    break
        return nodes[-1], leaves

    def _name(self, i: int) -> str:
        return f"{self.inputs[i]:g}" if i in self.numbers else f"v{i}"

    def formula(self) -> str:
        """The program as readable text, output first."""
        n = len(self.inputs)
        lines = []
        for k, s in enumerate(self.steps):
            row = OPS[s.op]
            lines.append(f"v{n + k} = " + row.format(*(self._name(i) for i in s.args), param=s.param))
        head = lines[-1] if lines else f"v{n - 1}"
        rest = "; ".join(reversed(lines[:-1]))
        ins = ", ".join(f"v{k} = {self.inputs[k]:g}" for k in self.variables)
        return f"{head} where {rest}; {ins}" if rest else f"{head}; {ins}"

    def __len__(self) -> int:
        return len(self.steps)


def spelling(name: str) -> str:
    """How a row is written in plain Python on any micrograd-like engine: an operator or ``.method``.

    >>> spelling("sub"), spelling("tanh"), spelling("swish")
    ('-', '.tanh', '.swish')
    """
    row = OPS[name]
    if row.operator is None:
        return "." + row.methods[0]
    # NOTE: a one-input operator (unary -) is spelled by its row's name: "-" alone would read as subtraction.
    return row.operator if row.arity == 2 or row.param is not None else row.name


def apply_op(name: str, args: Sequence[Any], param: float | None = None) -> Any:
    """Apply an op through the plain Python protocol any micrograd-like engine has: Python's own operator
    (so ``2 - x`` reaches ``x.__rsub__``) or the row's method.

    >>> apply_op("sub", [5.0, 2.0]), apply_op("pow", [3.0], 2.0)
    (3.0, 9.0)
    """
    row = OPS[name]
    if row.methods:
        method = getattr(args[0], row.methods[0])
        return method(*args[1:]) if param is None or not row.param else method(param)
    # NOTE: the operator module has a function for each dunder (operator.__add__ is a + b), so the row's own
    # dunder field names Python's operation: no second table of spellings.
    fn = getattr(operator, row.dunder)
    return fn(*args, param) if row.param else fn(*args)


def _forward(row: Op, vals: Sequence[float], param: float | None) -> float | None:
    """The op's float forward, or None when it is outside its domain, near a kink or too large."""
    # Stay clear of domain edges too: at x = 0, x**1.5 has no finite second derivative.
    if not all(d.contains(v) and abs(v) < _LIMIT and min(abs(v - d.lo), abs(v - d.hi)) >= 1e-3
               for d, v in zip(row.domains(param), vals)):
        return None
    args = (*vals, param) if row.param else tuple(vals)
    if row.kink is not None and row.kink(*args) < 1e-3:
        return None
    try:
        out = row.forward(FLOAT, *args)
        zs = row.partials(FLOAT, out, *args)
    except (ArithmeticError, ValueError):
        return None
    if not math.isfinite(out) or abs(out) > _LIMIT or not all(math.isfinite(z) and abs(z) < _LIMIT for z in zs):
        return None
    return out


@st.composite
def programs(draw: Any, ops: Sequence[str] = DEFAULT_OPS, *, min_inputs: int = 1, max_inputs: int = 3,
             max_steps: int = 8, bound: float = 3.0, params: dict[str, tuple[float, ...]] | None = None) -> Program:
    """Random straight-line programs over ``ops`` that reuse earlier values, ending in one output.

    ``ops`` is listed simplest first (Hypothesis shrinks towards the front); ``params`` overrides the
    parameters tried for ops that take one (``STUDENT_PARAMS`` for the micrograd-style protocol). Every step's
    inputs are chosen among earlier values that lie in the op's domain and away from its kinks;
    values that no later step uses are added into the output, so every step matters.

    >>> from hypothesis import given
    >>> @given(programs())
    ... def test_builds(p):
    ...     out, leaves = p.build()
    >>> test_builds()
    """
    rows = [OPS[name] for name in ops]
    n_in = draw(st.integers(min_inputs, max_inputs))
    inputs = tuple(draw(st.floats(-bound, bound, allow_nan=False).map(lambda x: round(x, 3)))
                   for _ in range(n_in))
    vals = list(inputs)
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, max_steps))):
        row = draw(st.sampled_from(rows))
        param = draw(st.sampled_from(_params(row, params))) if row.param else None
        # Prefer recent values as the first argument, so graphs grow deep as well as wide.
        first = len(vals) - 1 - draw(st.integers(0, len(vals) - 1))
        args = [first] + [draw(st.integers(0, len(vals) - 1)) for _ in range(row.arity - 1)]
        out = _forward(row, [vals[i] for i in args], param)
        if out is None:
            row, param = OPS["add"], None
            args = [first, draw(st.integers(0, len(vals) - 1))]
            out = _forward(row, [vals[i] for i in args], None)
            if out is None:
                continue
        steps.append(Step(row.name, tuple(args), param))
        vals.append(out)
    used = {i for s in steps for i in s.args}
    sinks = [i for i in range(n_in, len(vals)) if i not in used] or [len(vals) - 1]
    acc = sinks[0]
    for i in sinks[1:]:
        out = _forward(OPS["add"], [vals[acc], vals[i]], None)
        if out is None:
            break
        steps.append(Step("add", (acc, i)))
        vals.append(out)
        acc = len(vals) - 1
    if not steps:
        steps.append(Step("add", (0, 0)))
    return Program(inputs, tuple(steps))


def _inputs(draw: Any, n: int, bound: float) -> tuple[float, ...]:
    # Three decimals keep counterexamples readable; Hypothesis shrinks each towards 0.
    return tuple(draw(st.floats(-bound, bound, allow_nan=False).map(lambda x: round(x, 3))) for _ in range(n))


def _checked(inputs: Sequence[float], steps: Sequence[Step]) -> None:
    """Reject (``assume``) a program one of whose steps leaves its op's domain or comes near a kink."""
    vals = list(inputs)
    for s in steps:
        out = _forward(OPS[s.op], [vals[i] for i in s.args], s.param)
        assume(out is not None)
        vals.append(out)


@st.composite
def number_programs(draw: Any, op: str, *, rest: Sequence[str] = ("add", "mul"), max_steps: int = 3,
                    bound: float = 3.0) -> Program:
    """Programs in which the binary ``op`` has a plain number on its left or its right (``2 - x``, ``x / 3``),
    followed by a few steps over ``rest``; the number is input v0 and is listed in ``Program.numbers``.

    >>> from hypothesis import find
    >>> p = find(number_programs("sub"), lambda p: p.steps[0].args == (0, 1)); p.formula()
    'v2 = 0 - v1; v1 = 0'
    """
    row = OPS[op]
    number = draw(st.sampled_from((0.0, 2.0, -1.5, 3.0, 0.5)))
    n_in = draw(st.integers(1, 2))
    inputs = (number, *_inputs(draw, n_in, bound))
    first = draw(st.booleans())
    args = (0, 1) if first else (1, 0)
    steps = [Step(row.name, args)]
    for _ in range(draw(st.integers(0, max_steps))):
        nxt = OPS[draw(st.sampled_from(tuple(rest)))]
        # Engine values only: v0 (the number) is used once, by the first step.
        picks = tuple(draw(st.integers(1, len(inputs) + len(steps) - 1)) for _ in range(nxt.arity))
        steps.append(Step(nxt.name, (len(inputs) + len(steps) - 1, *picks[1:]), None))
    _checked(inputs, steps)
    return Program(inputs, tuple(steps), numbers=frozenset({0}))


@st.composite
def reuse_programs(draw: Any, op: str, *, combine: Sequence[str] = ("add", "mul"), bound: float = 3.0,
                   params: dict[str, tuple[float, ...]] | None = None) -> Program:
    """Programs in which one value is used twice through ``op``: ``op(x)`` twice, ``op(x)`` used twice, or
    ``op(x)`` and ``x`` together; for a binary op also ``x op x`` and diamonds. Accumulation bugs live here.

    >>> from hypothesis import find
    >>> p = find(reuse_programs("relu"), lambda p: len(p.steps) == 3); p.formula()
    'v3 = v1 + v2 where v2 = relu(v0); v1 = relu(v0); v0 = 1'
    """
    row = OPS[op]
    param = draw(st.sampled_from(_params(row, params))) if row.param else None
    n_in = draw(st.integers(1, 2))
    inputs = _inputs(draw, n_in, bound)
    args = (0, *(draw(st.integers(0, n_in - 1)) for _ in range(row.arity - 1)))
    comb = draw(st.sampled_from(tuple(combine)))
    u = n_in  # index of the first op(x)
    shape = draw(st.sampled_from(("twice", "square", "with-input", "diamond")))
    steps = [Step(row.name, args, param)]
    if shape == "twice":
        steps += [Step(row.name, args, param), Step(comb, (u, u + 1))]
    elif shape == "square":
        steps += [Step(comb, (u, u))]
    elif shape == "with-input":
        steps += [Step(comb, (u, 0))]
    else:
        steps += [Step(comb, (0, n_in - 1)), Step(comb, (u, u + 1))]
    _checked(inputs, steps)
    return Program(inputs, tuple(steps))


class Pair(tuple):
    """``(program, (out_a, leaves_a), (out_b, leaves_b))``: one program built on two engines."""

    __slots__ = ()

    @property
    def program(self) -> Program:
        return self[0]


def pairs(strategy: st.SearchStrategy[Program], first: Any, second: Any = None) -> st.SearchStrategy[Pair]:
    """Each drawn program built on two Value classes (``second`` defaults to microgradx's), for comparing
    engines on identical inputs.

    >>> from hypothesis import given
    >>> from microgradx import Value
    >>> @given(pairs(programs(("add", "mul")), Value))
    ... def test_same(pair):
    ...     program, (out_a, _), (out_b, _) = pair
    ...     assert out_a.data == out_b.data
    >>> test_same()
    """
    return strategy.map(lambda p: Pair((p, p.build(first), p.build(second))))


# ---------------------------------------------------------------------------------------------------------
# NumPy Tensor programs
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorStep:
    """One tensor instruction: ``op`` (a name of ``TENSOR_OPS``) on earlier results ``args``, with ``param``:
    the exponent of ``pow``, ``(axis, keepdims)`` of ``sum``/``mean``, the new shape of ``reshape``."""

    op: str
    args: tuple[int, ...]
    param: Any = None


def format_array(shape: tuple[int, ...], flat: tuple[float, ...]) -> str:
    import numpy as np

    if not shape:
        return f"{flat[0]:g} shape ()"
    text = np.array2string(np.array(flat, dtype=float).reshape(shape), separator=", ", precision=4,
                           suppress_small=True, max_line_width=10_000).replace("\n", "")
    return f"{text} shape {shape}" if len(shape) != 1 else text


@dataclass(frozen=True)
class TensorProgram:
    """A straight-line program on NumPy tensors: ``inputs`` are v0..v(n-1), each ``(shape, flat values)``;
    step k computes v(n+k) from earlier values; the last value is the (scalar) output.

    >>> p = TensorProgram((((2, 2), (1.0, 2.0, 3.0, 4.0)), ((2,), (0.5, -1.0))),
    ...                   (TensorStep("mul", (0, 1)), TensorStep("sum", (2,), (0, False)), TensorStep("sum", (3,))))
    >>> out, leaves = p.build(); float(out.data), leaves[1].grad
    (-4.0, None)
    >>> p.formula()
    'v4 = v3.sum() where v3 = v2.sum(axis=0); v2 = v0 * v1; v0 = [[1., 2.], [3., 4.]] shape (2, 2), v1 = [ 0.5, -1. ]'
    """

    inputs: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]
    steps: tuple[TensorStep, ...]

    def arrays(self) -> list:
        """The inputs as float64 ndarrays (fresh copies)."""
        import numpy as np

        return [np.array(flat, dtype=np.float64).reshape(shape) for shape, flat in self.inputs]

    def build(self, tensor: Any = None, conventions: dict[str, str] | None = None) -> tuple[Any, list]:
        """Run the program on a Tensor class (microgradx's by default), spelled as ``conventions`` say (see
        ``microgradx.grading.tensor_protocol``); returns (output, leaves)."""
        from .grading.tensor_protocol import CONVENTIONS, call

        if tensor is None:
            from .tensor import Tensor as tensor
        conv = {**CONVENTIONS, **(conventions or {})}
        leaves = [tensor(a) for a in self.arrays()]
        nodes = list(leaves)
        for s in self.steps:
            nodes.append(call(s.op, [nodes[i] for i in s.args], s.param, conv))
        return nodes[-1], leaves

    def _expr(self, s: TensorStep) -> str:
        a = [f"v{i}" for i in s.args]
        if s.op in _INFIX:
            return f"{a[0]} {_INFIX[s.op]} {a[1]}"
        if s.op == "pow":
            return f"{a[0]} ** {s.param:g}"
        if s.op in ("sum", "mean"):
            if s.param is None or s.param[0] is None:
                return f"{a[0]}.{s.op}()"
            keep = ", keepdims=True" if s.param[1] else ""
            return f"{a[0]}.{s.op}(axis={s.param[0]}{keep})"
        if s.op == "reshape":
            return f"{a[0]}.reshape({tuple(s.param)})"
        if s.op == "transpose":
            return f"{a[0]}.T"
        return f"{a[0]}.{s.op}()"

    def formula(self) -> str:
        """The program as readable text, output first, then the inputs with their shapes."""
        n = len(self.inputs)
        lines = [f"v{n + k} = {self._expr(s)}" for k, s in enumerate(self.steps)]
        head = lines[-1] if lines else f"v{n - 1}"
        rest = "; ".join(reversed(lines[:-1]))
        ins = ", ".join(f"v{k} = {format_array(shape, flat)}" for k, (shape, flat) in enumerate(self.inputs))
        return f"{head} where {rest}; {ins}" if rest else f"{head}; {ins}"

    def __len__(self) -> int:
        return len(self.steps)


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@"}
TENSOR_POWERS: tuple[float, ...] = (2.0, 3.0, -1.0, 0.5)


def _tensor_values(draw: Any, shape: tuple[int, ...]) -> tuple[float, ...]:
    # Tenths from -2 to 2: readable counterexamples that Hypothesis shrinks towards 0.
    size = math.prod(shape)
    return tuple(draw(st.lists(st.integers(-20, 20), min_size=size, max_size=size).map(
        lambda ks: [k / 10 for k in ks])))


def _family_shape(draw: Any, full: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts against ``full`` to ``full``: leading axes dropped, some axes of size 1."""
    dropped = full[draw(st.integers(0, len(full))):]
    return tuple(d if draw(st.booleans()) else 1 for d in dropped)


def _tensor_forward(op: str, vals: Sequence[Any], param: Any, full: tuple[int, ...]) -> Any:
    """The op's float64 result, or None when it leaves the op's domain, a kink, moderate sizes or the shapes that
    broadcast to ``full``."""
    import numpy as np

    from .grading.tensor_protocol import CONVENTIONS, call
    from .tensor import Tensor

    a = vals[0]
    if op == "log" and not (a > 0.2).all():
        return None
    if op == "relu" and not (np.abs(a) > 1e-3).all():
        return None  # relu'(0) is 0 in some engines and 1 in others: never asked
    if op == "div" and not (np.abs(vals[1]) > 0.3).all():
        return None
    if op == "pow" and param not in (2.0, 3.0) and not (a > 0.2).all():
        return None
    if op == "exp" and not (a < 3).all():
        return None
    with np.errstate(all="ignore"):
        out = np.asarray(call(op, [Tensor(v) for v in vals], param, CONVENTIONS).data, dtype=np.float64)
    if not np.isfinite(out).all() or (np.abs(out) > 1e3).any():
        return None
    try:
        if np.broadcast_shapes(out.shape, full) != full:
            return None
    except ValueError:
        return None
    return out


@st.composite
def tensor_programs(draw: Any, ops: Sequence[str] | None = None, *, max_steps: int = 6,
                    max_inputs: int = 3) -> TensorProgram:
    """Random straight-line programs on small NumPy tensors whose operands broadcast: every value has a shape
    that broadcasts to one drawn full shape (axes dropped in front, axes of size 1), so ``+ - * /`` between any
    two values broadcast, and un-reduced broadcast gradients show. Values are reused (fan-out); the program ends
    in ``(out * w).sum()`` with a weight leaf ``w``, so every leaf's gradient is non-uniform and the output a
    scalar. ``ops`` come from ``microgradx.grading.tensor_protocol.TENSOR_OPS``, simplest first.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=20)
    ... @given(tensor_programs(("add", "mul", "sum")))
    ... def test_builds(p):
    ...     out, leaves = p.build()
    ...     out.backward()
    ...     assert all(leaf.grad.shape == leaf.data.shape for leaf in leaves)
    >>> test_builds()
    """
    import numpy as np

    from .grading.tensor_protocol import TENSOR_OPS

    ops = tuple(ops or TENSOR_OPS)
    full = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    # Nodes in the order they are made: ("input", shape, flat) or ("step", op, args, param); inputs are renumbered
    # first at the end.
    nodes: list[tuple] = []
    vals: list[Any] = []

    def new_input(shape: tuple[int, ...]) -> int:
        flat = _tensor_values(draw, shape)
        nodes.append(("input", shape, flat))
        vals.append(np.array(flat, dtype=np.float64).reshape(shape))
        return len(nodes) - 1

    new_input(full)
    for _ in range(draw(st.integers(0, max_inputs - 1))):
        new_input(_family_shape(draw, full))
    for _ in range(draw(st.integers(1, max_steps))):
        op = draw(st.sampled_from(ops))
        first = len(vals) - 1 - draw(st.integers(0, len(vals) - 1))
        param: Any = None
        args: tuple[int, ...] = (first,)
        if op in _INFIX and op != "matmul":
            n_inputs = sum(n[0] == "input" for n in nodes)
            fresh = n_inputs < max_inputs + 1 and draw(st.booleans())
            second = new_input(_family_shape(draw, full)) if fresh else draw(st.integers(0, len(vals) - 1))
            args = (first, second) if draw(st.booleans()) else (second, first)
        elif op == "matmul":
            shape = vals[first].shape
            if len(shape) != 2:
                continue
            args = (first, new_input((shape[1], shape[1])))
        elif op == "pow":
            param = draw(st.sampled_from(TENSOR_POWERS))
        elif op in ("sum", "mean"):
            nd = vals[first].ndim
            axis = draw(st.sampled_from((None, *range(nd)))) if nd else None
            param = (axis, draw(st.booleans()) if axis is not None else False)
        elif op == "reshape":
            size = vals[first].size
            same = [s for s in _family_shapes(full) if math.prod(s) == size and s != vals[first].shape]
            if not same:
                continue
            param = draw(st.sampled_from(same))
        out = _tensor_forward(op, [vals[i] for i in args], param, full)
        if out is None:
            continue
        nodes.append(("step", op, args, param))
        vals.append(out)
    # Every value matters: the ones no step uses are added into the output (their shapes broadcast).
    used = {i for n in nodes if n[0] == "step" for i in n[2]}
    steps_made = [k for k, n in enumerate(nodes) if n[0] == "step"]
    out_index = steps_made[-1] if steps_made else 0
    for k in range(len(nodes)):
        if k not in used and k != out_index:
            nodes.append(("step", "add", (out_index, k), None))
            vals.append(vals[out_index] + vals[k])
            out_index = len(nodes) - 1
    weight = new_input(vals[out_index].shape)
    nodes.append(("step", "mul", (out_index, weight), None))
    vals.append(vals[out_index] * vals[weight])
    nodes.append(("step", "sum", (len(nodes) - 1,), None))
    order = [k for k, n in enumerate(nodes) if n[0] == "input"] + [k for k, n in enumerate(nodes) if n[0] == "step"]
    where = {old: new for new, old in enumerate(order)}
    inputs = tuple((nodes[k][1], nodes[k][2]) for k in order if nodes[k][0] == "input")
    steps = tuple(TensorStep(nodes[k][1], tuple(where[i] for i in nodes[k][2]), nodes[k][3])
                  for k in order if nodes[k][0] == "step")
    return TensorProgram(inputs, steps)


def _family_shapes(full: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every shape that broadcasts to ``full``: ``(2, 3)`` gives (2, 3), (1, 3), (2, 1), (1, 1), (3,), (1,), ()."""
    import itertools

    out = []
    for start in range(len(full) + 1):
        tail = full[start:]
        for keep in itertools.product((True, False), repeat=len(tail)):
            shape = tuple(d if k else 1 for d, k in zip(tail, keep))
            if shape not in out:
                out.append(shape)
    return out
