"""Why an engine's answer is wrong: replay the program with each classic student mistake and name the one that
reproduces the engine's numbers (a mistake that reproduces them all is the likely cause; none is "unknown").

>>> from microgradx.strategies import Program, Step
>>> p = Program((3.0,), (Step("mul", (0, 0)),))
>>> diagnose(p, [3.0]).kind
'overwrite'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..ops import FLOAT, OPS
from ..strategies import Program, spelling
from .protocol import OPERATORS

__all__ = ["Mistake", "reflected", "replay", "replay_kept", "diagnose", "diagnose_forward", "candidates", "ORDINAL"]

ORDINAL = ("first", "second", "third")


@dataclass(frozen=True)
class Mistake:
    """One classic mistake: ``kind`` (overwrite, no-chain, sign, unlowered, no-visited, forward-order,
    breadth-first, no-seed, swapped), the op it sits in and, for a sign or a one-sided overwrite, which input."""

    kind: str
    op: str | None = None
    arg: int | None = None

    def text(self) -> str:
        """The hint that names this mistake."""
        op, k = self.op, self.kind
        if k == "overwrite":
            which = "" if self.arg is None else f" (for its {ORDINAL[self.arg]} input)"
            return (f"`=` where `+=` is needed in {op}'s backward{which}: a value used twice must receive the sum "
                    f"of both contributions")
        if k == "no-chain":
            return f"{op}'s backward forgets the chain rule: multiply its local derivative by out.grad"
        if k == "sign":
            return (f"{op}'s derivative for its {ORDINAL[self.arg or 0]} input has the wrong sign "
                    f"({_derivative(op)})")
        if k == "unlowered":
            return "pow's derivative does not lower the exponent: d/dx x**n = n*x**(n - 1), not n*x**n"
        if k == "no-visited":
            return ("a node reached by two paths is processed twice: build the topological order with a visited "
                    "set, so each node is processed once")
        if k == "forward-order":
            return ("backward processes the nodes inputs first: walk the topological order in reverse, output "
                    "first, so a node's grad is complete before it is passed on")
        if k == "breadth-first":
            return ("breadth-first from the output is not a topological order when paths of different lengths "
                    "meet: sort depth-first (with a visited set) and walk that order in reverse")
        if k == "no-seed":
            return "backward() must set out.grad = 1 before propagating (every gradient is 0)"
        if k == "swapped":
            sym = OPS[op].label
            return (f"the reflected operator swaps its operands: `2 {sym} x` calls x.{reflected(op)}(2), which "
                    f"must compute 2 {sym} x, not x {sym} 2")
        raise ValueError(f"unknown mistake {k!r}")


def reflected(op: str) -> str:
    """The method Python calls for a plain number on the left of a binary operator: ``__rsub__`` for sub.

    >>> reflected("div")
    '__rtruediv__'
    """
    return "__r" + OPERATORS[spelling(op)][2:]


def _derivative(op: str | None) -> str:
    """The op's partial derivatives read off its row, as text."""
    import sympy

    row = OPS[op]
    xs = sympy.symbols("x y", real=True)[: row.arity]
    f = row.sym(*xs, param=sympy.Symbol(row.param, real=True) if row.param else None)
    return ", ".join(f"d/d{x} = {sympy.diff(f, x)}" for x in xs)


def _values(program: Program) -> list[float]:
    vals = list(program.inputs)
    for s in program.steps:
        row = OPS[s.op]
        args = [vals[i] for i in s.args] + ([s.param] if row.param else [])
        vals.append(row.forward(FLOAT, *args))
    return vals


def _order(program: Program, outputs: int, *, visited: bool = True, reverse_children: bool = False) -> list[int]:
    """Depth-first post-order from node ``outputs`` (with duplicates when ``visited`` is False)."""
    n = len(program.inputs)
    seen: set[int] = set()
    post: list[int] = []

    def visit(v: int, depth: int) -> None:
        if depth > 200 or len(post) > 100_000:
            raise RecursionError("too many paths")
        if visited:
            if v in seen:
                return
            seen.add(v)
        if v >= n:
            kids = program.steps[v - n].args
            for c in (reversed(kids) if reverse_children else kids):
                visit(c, depth + 1)
        post.append(v)

    visit(outputs, 0)
    return post


def _bfs(program: Program, out: int) -> list[int]:
    n = len(program.inputs)
    order, seen = [out], {out}
    for v in order:
        if v >= n:
            for c in program.steps[v - n].args:
                if c not in seen:
                    seen.add(c)
                    order.append(c)
    return order


def replay(program: Program, mistake: Mistake | None = None, order: str = "reverse") -> list[float]:
    """Every leaf's gradient after ``out.backward()`` on an engine that makes ``mistake`` (None: no mistake),
    visiting nodes in ``order``: reverse (the program's own topological order), dfs or dfs-r (depth-first, the
    children in order or reversed).

    >>> from microgradx.strategies import Step
    >>> replay(Program((3.0,), (Step("mul", (0, 0)),)))
    [6.0]
    """
    n = len(program.inputs)
    out = n + len(program.steps) - 1
    kind = mistake.kind if mistake else None
    if kind == "no-visited":
        seq = list(reversed(_order(program, out, visited=False, reverse_children=order == "dfs-r")))
    elif kind == "forward-order":
        seq = _order(program, out, reverse_children=order == "dfs-r")
    elif kind == "breadth-first":
        seq = _bfs(program, out)
    elif order == "reverse":
        seq = list(range(out, -1, -1))
    else:
        seq = list(reversed(_order(program, out, reverse_children=order == "dfs-r")))
    vals = _values(program)
    grad = [0.0] * len(vals)
    grad[out] = 0.0 if kind == "no-seed" else 1.0
    for v in seq:
        if v < n:
            continue
        s = program.steps[v - n]
        row = OPS[s.op]
        args = [vals[i] for i in s.args] + ([s.param] if row.param else [])
        partials = list(row.partials(FLOAT, vals[v], *args))
        if kind == "unlowered" and s.op == "pow":
            partials = [s.param * vals[s.args[0]] ** s.param]
        mine = mistake is not None and s.op == mistake.op
        for j, (a, z) in enumerate(zip(s.args, partials)):
            c = z if kind == "no-chain" and mine else z * grad[v]
            if kind == "sign" and mine and j == mistake.arg:
                c = -c
            if kind == "overwrite" and mine and (mistake.arg is None or j == mistake.arg):
                grad[a] = c
            else:
                grad[a] += c
    return [grad[k] for k in program.variables]


def replay_kept(program: Program, calls: Sequence[int]) -> list[float]:
    """Every leaf's grad after backward() on each node of ``calls`` in turn, on an engine that keeps every node's
    grad between calls (micrograd): a node's whole grad, old and new, flows again.

    >>> from microgradx.strategies import Step
    >>> replay_kept(Program((3.0,), (Step("tanh", (0,)), Step("mul", (1, 0)))), [2, 2]) != replay(
    ...     Program((3.0,), (Step("tanh", (0,)), Step("mul", (1, 0)))))
    True
    """
    n = len(program.inputs)
    vals = _values(program)
    grad = [0.0] * len(vals)
    for c in calls:
        grad[c] = 1.0
        for v in reversed(_order(program, c)):
            if v < n:
                continue
            s = program.steps[v - n]
            row = OPS[s.op]
            args = [vals[i] for i in s.args] + ([s.param] if row.param else [])
            for a, z in zip(s.args, row.partials(FLOAT, vals[v], *args)):
                grad[a] += z * grad[v]
    return [grad[k] for k in program.variables]


def _close(a: Sequence[float], b: Sequence[float], rel: float, abs_: float) -> bool:
    return len(a) == len(b) and all(isinstance(x, (int, float)) and math.isfinite(x) and
                                    math.isclose(x, y, rel_tol=rel, abs_tol=abs_) for x, y in zip(a, b))


def candidates(program: Program) -> list[Mistake]:
    """The mistakes worth trying on ``program``: per op in it, then the order and seed mistakes."""
    ops = list(dict.fromkeys(s.op for s in program.steps))
    out: list[Mistake] = [Mistake("no-seed")]
    for op in ops:
        out += [Mistake("overwrite", op), Mistake("no-chain", op)]
        if OPS[op].arity > 1:  # `=` on one side only
            out += [Mistake("overwrite", op, j) for j in range(OPS[op].arity)]
        out += [Mistake("sign", op, j) for j in range(OPS[op].arity)]
    if "pow" in ops:
        out.append(Mistake("unlowered", "pow"))
    out += [Mistake("no-visited"), Mistake("forward-order"), Mistake("breadth-first")]
    return out


def diagnose(program: Program, got: Sequence[float], *, rel: float = 1e-6, abs_: float = 1e-6,
             allowed: Callable[[Mistake], bool] = lambda m: True) -> Mistake | None:
    """The first classic mistake (among the ``allowed`` ones) whose replay gives exactly the engine's gradients
    ``got`` (and differs from the right ones), or None when no mistake explains them."""
    try:
        right = replay(program)
    except (ArithmeticError, ValueError, RecursionError):
        return None
    for mistake in filter(allowed, candidates(program)):
        for order in ("reverse", "dfs", "dfs-r"):
            try:
                guess = replay(program, mistake, order)
            except (ArithmeticError, ValueError, RecursionError):
                continue
            if _close(got, guess, rel, abs_) and not _close(right, guess, rel, abs_):
                return mistake
    return None


def diagnose_forward(program: Program, got: float, *, rel: float = 1e-6, abs_: float = 1e-6) -> Mistake | None:
    """``swapped`` when the engine's output equals the program with a plain number's operands swapped."""
    if not program.numbers:
        return None
    for k, s in enumerate(program.steps):
        if len(s.args) == 2 and any(a in program.numbers for a in s.args) and spelling(s.op) in OPERATORS:
            steps = list(program.steps)
            steps[k] = type(s)(s.op, s.args[::-1], s.param)
            try:
                value = _values(Program(program.inputs, tuple(steps), program.numbers))[-1]
                right = _values(program)[-1]
            except (ArithmeticError, ValueError):
                continue
            if _close([got], [value], rel, abs_) and not _close([right], [value], rel, abs_):
                return Mistake("swapped", s.op)
    return None
