"""Public Hypothesis strategies for autodiff tests, in the style of ``hypothesis.extra.numpy``.

``programs()`` draws straight-line programs that reuse earlier results (fan-out is where accumulation bugs
live); a ``Program`` builds itself on microgradx or on any micrograd-like engine, so two engines can be
compared on the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from .ops import FLOAT, OPS, Domain, Op

__all__ = ["Step", "Program", "programs", "floats_in", "op_inputs", "DEFAULT_OPS", "PARAMS"]

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


def op_inputs(op: Op | str, *, bound: float = 5.0, kink_margin: float = 1e-3,
              edge_margin: float = 0.0) -> st.SearchStrategy[tuple]:
    """``(inputs, param)`` for an op: inputs inside its domains, away from its kinks and ``edge_margin``
    away from a closed end of a domain.

    >>> from hypothesis import find
    >>> inputs, param = find(op_inputs("log"), lambda _: True); inputs[0] > 0
    True
    """
    row = OPS[op] if isinstance(op, str) else op
    params = st.sampled_from(PARAMS.get(row.name, (row.default,))) if row.param else st.none()

    @st.composite
    def draw(draw_: Any) -> tuple:
        p = draw_(params)
        xs = tuple(draw_(floats_in(d, bound=bound, closed_margin=edge_margin)) for d in row.domains(p))
        args = (*xs, p) if row.param else xs
        if row.kink is not None and row.kink(*args) < kink_margin:
            xs = tuple(x + 2 * kink_margin for x in xs[:1]) + xs[1:]
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

    >>> p = Program((2.0, 3.0), (Step("mul", (0, 1)), Step("add", (2, 0))))
    >>> out, leaves = p.build(); out.data
    8.0
    >>> p.formula()
    'v3 = v2 + v0 where v2 = v0 * v1; v0 = 2, v1 = 3'
    """

    inputs: tuple[float, ...]
    steps: tuple[Step, ...]

    def build(self, value: Any = None) -> tuple[Any, list]:
        """Run the program on a Value class (microgradx's by default); returns (output, input leaves)."""
        if value is None:
            from .value import Value as value
        leaves = [value(x) for x in self.inputs]
        nodes: list = list(leaves)
        for s in self.steps:
            nodes.append(apply_op(s.op, [nodes[i] for i in s.args], s.param))
        if hasattr(leaves[0], "label"):
            for k, leaf in enumerate(leaves):
                try:
                    leaf.label = f"v{k}"
                except AttributeError:  # an engine without a settable label
                    break
        return nodes[-1], leaves

    def formula(self) -> str:
        """The program as readable text, output first."""
        n = len(self.inputs)
        lines = []
        for k, s in enumerate(self.steps):
            row = OPS[s.op]
            lines.append(f"v{n + k} = " + row.format(*(f"v{i}" for i in s.args), param=s.param))
        head = lines[-1] if lines else f"v{n - 1}"
        rest = "; ".join(reversed(lines[:-1]))
        ins = ", ".join(f"v{k} = {x:g}" for k, x in enumerate(self.inputs))
        return f"{head} where {rest}; {ins}" if rest else f"{head}; {ins}"

    def __len__(self) -> int:
        return len(self.steps)


def apply_op(name: str, args: Sequence[Any], param: float | None = None) -> Any:
    """Apply an op through the plain Python protocol any micrograd-like engine has (operators, methods)."""
    a = args[0]
    if name == "add":
        return a + args[1]
    if name == "sub":
        return a - args[1]
    if name == "mul":
        return a * args[1]
    if name == "div":
        return a / args[1]
    if name == "neg":
        return -a
    if name == "pow":
        return a ** param
    if name == "power":
        return a ** args[1]
    method = getattr(a, OPS[name].methods[0])
    if OPS[name].param:
        return method(param)
    return method(*args[1:])


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
             max_steps: int = 8, bound: float = 3.0) -> Program:
    """Random straight-line programs over ``ops`` that reuse earlier values, ending in one output.

    Every step's inputs are chosen among earlier values that lie in the op's domain and away from its kinks;
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
        param = draw(st.sampled_from(PARAMS.get(row.name, (row.default,)))) if row.param else None
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
