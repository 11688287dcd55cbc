"""The grading rules, one record each in ``KINDS``: name, weight, what must pass first, how programs are drawn,
how a reply is checked and how a failure is explained. Hypothesis draws and shrinks in this process; each
program runs on the student's engine in the sandbox; microgradx's backward and central differences decide.

>>> [k.name for k in KINDS][:4]
['forward', 'seed', 'gradient', 'numbers']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..graph import topological_order
from ..ops import OPS, DomainError
from ..strategies import (
    DEFAULT_OPS,
    STUDENT_PARAMS,
    Program,
    Step,
    number_programs,
    op_inputs,
    programs,
    reuse_programs,
    spelling,
)
from .assignment import Assignment
from .causes import Mistake, diagnose, diagnose_forward, reflected
from .sandbox import EngineCrash, Sandbox

__all__ = ["Kind", "KINDS", "Rule", "Context", "Outcome", "build_rules", "run_rule", "wire", "check", "needs",
           "deep_program", "diamond_program", "EXPONENTS", "DERIVED"]

ARITHMETIC = ("add", "sub", "mul", "div")
DIAMONDS = 40
# pow is tried with these exponents; x = 0 too where the derivative n*x**(n - 1) is finite there (n >= 1).
EXPONENTS: tuple[float, ...] = (*STUDENT_PARAMS["pow"], 0.0, 1.0)
# The classic engine builds these ops from others (-x = x * -1, x - y = x + (-y), x / y = x * y**-1): their
# rules wait for the rules of the ops they are built from, so one broken op is reported once.
DERIVED: dict[str, tuple[str, ...]] = {"neg": ("mul",), "sub": ("add", "neg"), "div": ("mul", "pow")}
# Ops whose exp-based textbook formulas overflow for large inputs (micrograd's tanh among them).
EXTREME_OPS = ("tanh", "sigmoid", "exp")
# Mistakes in backward() itself rather than in one op: once found, every later backward rule would only
# repeat them, so they block the rest.
GLOBAL_MISTAKES = ("no-visited", "forward-order", "breadth-first", "no-seed")


@dataclass(frozen=True)
class Rule:
    """One graded property: ``name`` like ``gradient[pow]``, its kind and op, title and weight."""

    name: str
    kind: Kind
    op: str | None
    title: str
    weight: float


@dataclass
class Outcome:
    """What running a rule found: ``status`` passed, failed, warning or blocked; ``finding`` and ``hint``
    explain anything but a pass."""

    status: str
    examples: int
    finding: dict | None = None
    seconds: float = 0.0
    hint: str = ""


@dataclass
class Context:
    """What grading one engine knows so far: the graded ops, the protocol pieces missing, each rule's status."""

    ops: tuple[str, ...]
    asg: Assignment
    missing: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    blocked_by: dict[str, str] = field(default_factory=dict)
    broken_backward: str | None = None  # the rule whose failure named a mistake in backward() itself
    planned: set[str] = field(default_factory=set)  # the rules this grading runs

    def record(self, rule: Rule, outcome: Outcome) -> None:
        """Remember a rule's outcome for the rules after it."""
        self.status[rule.name] = outcome.status
        if outcome.status == "blocked":
            self.blocked_by[rule.name] = outcome.finding["blocked_by"]
        if outcome.status == "failed" and (outcome.finding or {}).get("cause") in GLOBAL_MISTAKES:
            self.broken_backward = self.broken_backward or rule.name

    def ok(self, name: str) -> bool:
        """True when rule ``name`` passed, or is not run at all (outside ``--rules``: no reason to hold anything
        back); False while it is still to run."""
        if name in self.status:
            return self.status[name] in ("passed", "warning")
        return name not in self.planned

    def held(self, name: str) -> bool:
        """True when rule ``name`` ran and passed (or kept its points with a warning)."""
        return self.status.get(name) in ("passed", "warning")

    def clean(self) -> tuple[str, ...]:
        """The graded ops every one of whose per-op rules run so far passed: the general rules draw from these."""
        return tuple(o for o in self.ops
                     if all(self.ok(n) for n in self.status if n.endswith(f"[{o}]")))


@dataclass(frozen=True)
class Draw:
    """How a rule's programs come: a Hypothesis strategy and explicit examples tried first, or one fixed program."""

    strategy: Any = None
    examples: tuple[Program, ...] = ()
    fixed: Program | None = None
    shown: str = ""          # how a fixed program is described in the report
    timeout: float | None = None


class Blocked(Exception):
    """A rule cannot draw a program: the ops it needs all failed (``rule`` is the first that failed)."""

    def __init__(self, rule: str):
        super().__init__(rule)
        self.rule = rule


@dataclass(frozen=True)
class Kind:
    """One row of the rule table: every rule of this kind (``forward[add]``, ``forward[mul]``...) is built,
    blocked, drawn, checked and explained through these fields."""

    name: str
    weight: float
    title: str                                        # may use {op}, {symbol}, {depth}, {diamonds}
    needs: Callable[[Rule, Context], list[str]]       # rules (or protocol:PIECE) that must pass first
    draw: Callable[[Rule, Context], Draw]
    check: Callable[..., dict | None]                 # (program, reply, expected grads, asg, calls) -> finding
    hint: Callable[[Rule, dict, Program | None, Context], str]
    per_op: Callable[[str], bool] | None = None       # which graded ops get one; None: one rule per engine
    calls: Callable[[Program], list[int]] | None = None  # nodes backward() is called on (default: the output)
    warn: Callable[[Assignment], bool] = lambda asg: False  # failures whose cause is the rule's own only warn
    own: Callable[[dict, Program | None], bool] = lambda finding, program: False
    backward: bool = True


# ---------------------------------------------------------------------------------------------------------
# Building the rules of an op set
# ---------------------------------------------------------------------------------------------------------

def _order_ops(kind: str, ops: tuple[str, ...]) -> tuple[str, ...]:
    """Simplest first, each op after the ops it is built from; for gradients mul first (the others multiply
    their output by a weight)."""
    ordered: list[str] = []

    def put(o: str) -> None:
        if o in ops and o not in ordered:
            for b in DERIVED.get(o, ()):
                put(b)
            ordered.append(o)

    if kind == "gradient":
        put("mul")
    for o in DEFAULT_OPS:
        put(o)
    return tuple(ordered)


def build_rules(ops: tuple[str, ...], assignment: Assignment | None = None) -> list[Rule]:
    """The rules for an engine with ``ops``, in the order they run, without the ones the assignment skips.

    >>> [r.name for r in build_rules(("add", "relu"))][:5]
    ['forward[add]', 'forward[relu]', 'seed', 'gradient[add]', 'gradient[relu]']
    """
    asg = assignment or Assignment()
    return expand_rules(KINDS, lambda kind: _order_ops(kind, ops), asg, lambda kind, op: kind.title.format(
        op=op, symbol=OPS[op].label if op else "", depth=asg.deep_depth, diamonds=DIAMONDS))


def expand_rules(kinds: Sequence[Kind], ordered_ops: Callable[[str], Sequence[str]], asg: Assignment,
                 title: Callable[[Kind, str | None], str]) -> list[Rule]:
    """One rule per kind, or per op for a per-op kind (``forward[add]``), in order, without the ones ``asg`` skips.

    ``ordered_ops(kind name)`` gives the ops in the order their rules run; ``title(kind, op)`` the rule's title.
    """
    rules = []
    for kind in kinds:
        targets = [o for o in ordered_ops(kind.name) if kind.per_op(o)] if kind.per_op else [None]
        for op in targets:
            name = f"{kind.name}[{op}]" if op else kind.name
            if not asg.skipped(name):
                rules.append(Rule(name, kind, op, title(kind, op), asg.weight(name, kind.weight)))
    return rules


def needs(rule: Rule, ctx: Context) -> str | None:
    """The rule (or ``protocol``) that blocks ``rule``: the first thing it needs that did not pass, or the rule
    that found a mistake in backward() itself (the order of nodes, the seed), which every backward rule needs."""
    if rule.kind.backward and ctx.broken_backward:
        return ctx.broken_backward
    for need in rule.kind.needs(rule, ctx):
        if need.startswith("protocol:"):
            if need[len("protocol:"):] in ctx.missing:
                return "protocol"
        elif need in ctx.status and not ctx.ok(need):
            return ctx.blocked_by.get(need, need)
    return None


def _base(op: str, ctx: Context) -> list[str]:
    return [b for b in DERIVED.get(op, ()) if b in ctx.ops]


# ---------------------------------------------------------------------------------------------------------
# Programs
# ---------------------------------------------------------------------------------------------------------

def _weighted(ctx: Context) -> bool:
    """Scale the upstream gradient by a weight (so a missing chain rule shows) when the engine's `*` works."""
    return "mul" in ctx.ops and "*" not in ctx.missing


def _single(op: str, xs: tuple, p: Any, w: float | None) -> Program:
    n = len(xs)
    if w is None:
        return Program(tuple(xs), (Step(op, tuple(range(n)), p),))
    return Program((*xs, w), (Step(op, tuple(range(n)), p), Step("mul", (n + 1, n))))


def _op_strategy(op: str, weighted: bool, forward: bool) -> Any:
    from hypothesis import assume
    from hypothesis import strategies as st

    row = OPS[op]
    inputs = op_inputs(op, params={**STUDENT_PARAMS, "pow": EXPONENTS})
    weights = st.sampled_from((2.0, -1.5, 0.5, 3.0))

    @st.composite
    def single(draw: Any) -> Program:
        xs, p = draw(inputs)
        xs = tuple(round(x, 3) if row.domains(p)[k].contains(round(x, 3)) else x for k, x in enumerate(xs))
        # x**0 at 0: the textbook n*x**(n - 1) is 0 * 0**-1, an error in micrograd too; not asked.
        assume(not (op == "pow" and p == 0 and xs[0] == 0))
        if forward:
            return _single(op, xs, p, None)
        # A second input w scales the upstream gradient, so forgetting `* out.grad` shows.
        return _single(op, xs, p, draw(weights) if weighted else None)

    return single()


def _draw_forward(rule: Rule, ctx: Context) -> Draw:
    return Draw(_op_strategy(rule.op, False, True))


def _draw_gradient(rule: Rule, ctx: Context) -> Draw:
    w = 2.0 if _weighted(ctx) else None
    examples = ()
    if rule.op == "pow":
        examples = tuple(_single("pow", (x,), n, w) for x, n in ((1.5, 0.0), (0.0, 1.0), (2.0, 1.0), (0.0, 2.0),
                                                                 (0.0, 3.0), (0.0, 1.5)))
    return Draw(_op_strategy(rule.op, _weighted(ctx), False), examples)


def _draw_numbers(rule: Rule, ctx: Context) -> Draw:
    op = rule.op
    # The plain `2 op x` and `x op 2` first; then a number on either side, one step (no reuse, so an
    # accumulation bug cannot show here).
    first = tuple(Program((2.0, 3.0), (Step(op, args),), numbers=frozenset({0})) for args in ((0, 1), (1, 0)))
    return Draw(number_programs(op, max_steps=0), first)


def _combine(rule: Rule, ctx: Context) -> tuple[str, ...]:
    own = (rule.op,) if rule.op in ("add", "mul") else ()
    others = tuple(c for c in ("add", "mul") if c != rule.op and c in ctx.ops and
                   all(ctx.ok(f"{k}[{c}]") for k in ("forward", "gradient", "accumulate")))
    combine = own + others
    if not combine:
        failed = [f"accumulate[{c}]" for c in ("add", "mul") if c in ctx.ops]
        raise Blocked(ctx.blocked_by.get(failed[0], failed[0]) if failed else "protocol")
    return combine


def _draw_accumulate(rule: Rule, ctx: Context) -> Draw:
    return Draw(reuse_programs(rule.op, combine=_combine(rule, ctx), params=STUDENT_PARAMS))


def _general_ops(ctx: Context) -> tuple[str, ...]:
    ops = ctx.clean()
    if "add" not in ops:
        # programs() joins values with `+`: nothing general can be asked of an engine whose add is broken.
        bad = [n for n in ctx.status if n.endswith("[add]") and not ctx.ok(n)]
        raise Blocked(ctx.blocked_by.get(bad[0], bad[0]) if bad else "protocol")
    return ops


def _draw_general(max_steps: int) -> Callable[[Rule, Context], Draw]:
    def draw(rule: Rule, ctx: Context) -> Draw:
        return Draw(programs(_general_ops(ctx), max_steps=max_steps, params=STUDENT_PARAMS))
    return draw


def _draw_seed(rule: Rule, ctx: Context) -> Draw:
    # Sums only: the seed is checked before any op's backward is trusted, so no op's bug can show here.
    if "add" not in ctx.ops or not ctx.ok("forward[add]"):
        bad = "forward[add]" if "add" in ctx.ops else "protocol"
        raise Blocked(ctx.blocked_by.get(bad, bad))
    return Draw(programs(("add",), max_steps=3))


def _draw_extremes(rule: Rule, ctx: Context) -> Draw:
    from hypothesis import strategies as st

    op = rule.op
    hi = 700.0 if op == "exp" else 800.0  # exp(709.8) is the largest finite float
    big = st.floats(20.0, 800.0).map(lambda x: round(x, 1))
    xs = st.one_of(big.map(lambda x: -x), big.filter(lambda x: x <= hi))
    shown = {"tanh": (400.0, 380.0, -400.0), "sigmoid": (-800.0, 800.0), "exp": (700.0, -800.0)}[op]
    return Draw(xs.map(lambda x: _single(op, (x,), None, None)), tuple(_single(op, (x,), None, None)
                                                                       for x in shown))


def _draw_twice(rule: Rule, ctx: Context) -> Draw:
    return Draw(programs(_general_ops(ctx), max_steps=4, params=STUDENT_PARAMS))


def _draw_shared(rule: Rule, ctx: Context) -> Draw:
    ops = _general_ops(ctx)
    second = "mul" if "mul" in ops else "add"

    def two_outputs(p: Program) -> Program:
        # out1 = s + v0 and out2 = s * v0 (or s + s) share the node s, the program's own output.
        s = len(p.inputs) + len(p.steps) - 1
        return Program(p.inputs, (*p.steps, Step("add", (s, 0)), Step(second, (s, 0))), p.numbers)

    return Draw(programs(ops, max_steps=4, params=STUDENT_PARAMS).map(two_outputs))


def deep_program(depth: int) -> Program:
    """A chain ``depth`` nodes deep: v(k+1) = v(k) + v1, so d/dv0 = 1 and d/dv1 = depth."""
    steps = [Step("add", (0, 1))] + [Step("add", (k, 1)) for k in range(2, depth + 1)]
    return Program((0.5, 0.001), tuple(steps))


def diamond_program(levels: int = DIAMONDS) -> Program:
    """``levels`` diamonds in a chain, v <- v*w1 + v*w2: 2**levels paths from v0 to the output."""
    steps: list[Step] = []
    v = 0
    for _ in range(levels):
        n = 3 + len(steps)
        steps += [Step("mul", (v, 1)), Step("mul", (v, 2)), Step("add", (n, n + 1))]
        v = n + 2
    return Program((0.7, 0.5, 0.5), tuple(steps))


def _draw_deep(rule: Rule, ctx: Context) -> Draw:
    return Draw(fixed=deep_program(ctx.asg.deep_depth), timeout=ctx.asg.limits.deep,
                shown=f"a chain of {ctx.asg.deep_depth} additions, v(k+1) = v(k) + v1")


def _draw_linear(rule: Rule, ctx: Context) -> Draw:
    return Draw(fixed=diamond_program(), timeout=ctx.asg.limits.linear,
                shown=f"{DIAMONDS} diamonds in a chain, v <- v*v1 + v*v2 starting from v0 = 0.7, v1 = v2 = 0.5")


def prune(program: Program) -> Program:
    """The program without inputs no step uses (renumbered), so counterexamples show only what matters.

    >>> prune(Program((1.0, 2.0), (Step("tanh", (1,)),))).formula()
    'v1 = tanh(v0); v0 = 2'
    """
    used = sorted({i for s in program.steps for i in s.args if i < len(program.inputs)})
    if len(used) == len(program.inputs):
        return program
    n = len(program.inputs)
    new = {old: k for k, old in enumerate(used)}
    shift = n - len(used)
    steps = tuple(Step(s.op, tuple(new[i] if i < n else i - shift for i in s.args), s.param) for s in program.steps)
    return Program(tuple(program.inputs[i] for i in used), steps,
                   frozenset(new[i] for i in program.numbers if i in new))


# ---------------------------------------------------------------------------------------------------------
# Oracles and comparison
# ---------------------------------------------------------------------------------------------------------

def _upto(program: Program, node: int) -> Program:
    return Program(program.inputs, program.steps[: node - len(program.inputs) + 1], program.numbers)


def _oracle(program: Program, calls: list[int] | None = None) -> tuple[float, list[float]]:
    """The output's data and each leaf's grad after backward() on each node of ``calls``, where each call
    adds d node / d leaf into every leaf's grad (the protocol's semantics)."""
    out, leaves = program.build()
    data = out.data
    if not calls:
        out.backward()
        return data, [leaf.grad for leaf in leaves]
    total = [0.0] * len(program.variables)
    for c in calls:
        o, ls = _upto(program, c).build()
        o.backward()
        total = [t + leaf.grad for t, leaf in zip(total, ls)]
    return data, total


def _central(program: Program, k: int) -> float | None:
    """d out / d input k by central differences on microgradx's forward (None outside the domain)."""
    x = program.inputs[k]
    h = 1e-6 * max(1.0, abs(x))
    vals = []
    for sign in (1, -1):
        ins = list(program.inputs)
        ins[k] = x + sign * h
        try:
            vals.append(Program(tuple(ins), program.steps, program.numbers).build()[0].data)
        except (DomainError, ArithmeticError):
            return None
    return (vals[0] - vals[1]) / (2 * h)


def _close(got: Any, expected: float, asg: Assignment) -> bool:
    return isinstance(got, (int, float)) and not isinstance(got, bool) and math.isfinite(got) and \
        math.isclose(got, expected, rel_tol=asg.rel, abs_tol=asg.abs)


def _path_magnitudes(program: Program, calls: list[int] | None) -> list[float]:
    """Each leaf's sum over paths of the product of |edge derivatives|: the size of the terms its gradient adds.

    A correct engine that rounds differently (float32 storage, ``a * b**-1`` for ``a / b``) is off by a few
    roundings of these terms, not of their sum, which can cancel to 0 (d(x/x)/dx), so the tolerance scales with
    them.

    >>> _path_magnitudes(Program((2.0,), (Step("div", (0, 0)),)), None)
    [1.0]
    """
    total = [0.0] * len(program.variables)
    for c in calls or [None]:
        out, leaves = (program if c is None else _upto(program, c)).build()
        size = {id(out): 1.0}
        for node in reversed(topological_order(out)):
            s = size.get(id(node), 0.0)
            for parent, z in zip(node.parents, node.partials if s else ()):
                size[id(parent)] = size.get(id(parent), 0.0) + s * abs(z)
        total = [t + size.get(id(leaf), 0.0) for t, leaf in zip(total, leaves)]
    return total


def _close_terms(got: Any, expected: float, magnitude: float, asg: Assignment) -> bool:
    """``_close`` with the relative tolerance taken of the gradient's terms when they are larger than it."""
    return _close(got, expected, asg) or (
        isinstance(got, (int, float)) and not isinstance(got, bool) and math.isfinite(got)
        and math.isfinite(magnitude) and abs(got - expected) <= asg.rel * magnitude)


def _finding(program: Program, problem: str, rows: list | None = None, **extra: Any) -> dict:
    param = next((s.param for s in program.steps if s.param is not None), None)
    return {"formula": program.formula(), "problem": problem, "rows": rows or [], "steps": len(program.steps),
            "param": param, **extra}


def check(rule: Rule, program: Program, reply: dict, asg: Assignment) -> dict | None:
    """None when the engine's reply is right for this rule, else a finding that explains what is wrong: an
    exception, a wrong forward value, then the rule kind's own check."""
    if not reply.get("ok"):
        where = f" at {reply['where']}" if reply.get("where") else ""
        return _finding(program, f"{reply.get('stage', 'forward')} raised {reply.get('error')}{where}",
                        error=str(reply.get("error", "")))
    calls = rule.kind.calls(program) if rule.kind.calls else None
    data, grads = _oracle(program, calls)
    if not _close(reply["data"], data, asg):
        return _finding(program, "the forward value is wrong",
                        [{"name": "output", "expected": data, "got": reply["data"]}], got_data=reply["data"])
    return rule.kind.check(program, reply, grads, asg, calls)


def _check_nothing_more(program: Program, reply: dict, grads: list, asg: Assignment, calls: Any) -> dict | None:
    return None


def _check_seed(program: Program, reply: dict, grads: list, asg: Assignment, calls: Any) -> dict | None:
    if reply["grad_out"] != 1.0:
        return _finding(program, "the output's grad after backward() is not 1",
                        [{"name": "output.grad", "expected": 1.0, "got": reply["grad_out"]}])
    return None


def _check_unchanged(program: Program, reply: dict, grads: list, asg: Assignment, calls: Any) -> dict | None:
    # The engine's own .data before backward is the reference: an engine that stores float32 or rounds on
    # input has not mutated anything.
    rows = [{"name": f"v{k}.data", "expected": before, "got": after}
            for k, before, after in zip(program.variables, reply["before"], reply["after"]) if after != before]
    return _finding(program, "backward() changed an input's data", rows) if rows else None


def _check_grads(program: Program, reply: dict, grads: list, asg: Assignment, calls: Any) -> dict | None:
    bad = [j for j, (got, want) in enumerate(zip(reply["grads"], grads)) if not _close(got, want, asg)]
    if bad:
        size = _path_magnitudes(program, calls)
        bad = [j for j in bad if not _close_terms(reply["grads"][j], grads[j], size[j], asg)]
    if not bad:
        return None
    shown = program.formula()
    if calls:
        shown += "; then " + ", then ".join(f"v{c}.backward()" for c in calls)
    rows = []
    for j, k in enumerate(program.variables):
        fd = _central(program, k) if len(program.steps) <= 200 and not calls else None
        rows.append({"name": f"v{k}", "expected": grads[j], "got": reply["grads"][j], "central": fd,
                     "wrong": j in bad})
    return {**_finding(program, "gradients differ", rows, got=list(reply["grads"])), "formula": shown}


# ---------------------------------------------------------------------------------------------------------
# Hints: from what actually went wrong
# ---------------------------------------------------------------------------------------------------------

UNKNOWN = "unknown cause (none of the usual mistakes reproduces these numbers)"


def _derivative(op: str, param: float | None) -> str:
    """The op's local derivative as text, read off the op table's SymPy form; with no parameter value, in terms
    of the parameter's name (``n*x**(n - 1)`` for pow)."""
    import sympy

    x = sympy.Symbol("x", real=True)
    row = OPS[op]
    if row.arity == 2:
        y = sympy.Symbol("y", real=True)
        f = row.sym(x, y)
        return f"d/dx = {sympy.diff(f, x)}, d/dy = {sympy.diff(f, y)}"
    p = None
    if row.param:
        p = sympy.Symbol(row.param, real=True) if param is None else sympy.nsimplify(param)
    return str(sympy.powsimp(sympy.diff(row.sym(x, param=p), x)))


def _error_hint(rule: Rule, finding: dict) -> str | None:
    """A hint for an exception or a timeout, read off the error itself."""
    err = finding.get("error", "") or ""
    problem = finding.get("problem", "")
    if "RecursionError" in err or "segmentation fault" in problem:
        return ("a recursive topological sort hits Python's recursion limit on deep graphs: use an explicit stack "
                "(a loop) instead of recursion")
    if "OverflowError" in err or "math range error" in err:
        return ("the formula overflows for large inputs (math.exp(2x) or math.exp(-x) past x = 709): compute tanh "
                "with math.tanh, sigmoid from exp(-|x|), so no intermediate overflows")
    if rule.kind.name == "numbers" and ("has no attribute" in err or "unsupported operand" in err):
        sym = OPS[rule.op].label
        return (f"`x {sym} 2` must wrap the plain number in a Value (other = other if isinstance(other, Value) else "
                f"Value(other)), and `2 {sym} x` needs {reflected(rule.op)}")
    if "did not finish within" in problem or "did not read the program" in problem:
        return "backward() (or the forward pass) did not finish: an infinite loop?"
    if err or "engine process" in problem or "private pipe" in problem:
        return "the engine raised an error or died on this program: the problem line says where"
    return None


def _allowed(rule: Rule, ctx: Context) -> Callable[[Mistake], bool]:
    """The mistakes that could explain a failure of ``rule``: not those the rules that passed already rule out
    (a passed gradient[tanh] rules out a sign error in tanh), and in a per-op rule only the op's own."""
    kind = rule.kind.name

    def any_passed(prefix: str) -> bool:
        return any(ctx.held(n) for n in ctx.status if n.startswith(prefix + "["))

    def allowed(m: Mistake) -> bool:
        if m.kind == "no-seed":
            return not ctx.held("seed")
        if m.op is not None and rule.op is not None and m.op != rule.op:
            return False
        if m.kind in ("no-chain", "sign", "unlowered"):
            return not ctx.held(f"gradient[{m.op}]")
        if m.kind == "overwrite":
            return kind != "gradient" and not ctx.held(f"accumulate[{m.op}]")
        # A mistake in the order of nodes shows in the first rules of a kind that can see it.
        if kind == "gradient":
            return m.kind == "forward-order" and not any_passed("gradient")
        if kind == "accumulate":
            return not any_passed("accumulate")
        return True

    return allowed


def _mistake_hint(finding: dict, program: Program | None, rule: Rule, ctx: Context) -> str | None:
    if program is None or "got" not in finding:
        return None
    mistake = diagnose(program, finding["got"], rel=ctx.asg.rel, abs_=ctx.asg.abs, allowed=_allowed(rule, ctx))
    if mistake is None:
        return None
    finding["cause"] = mistake.kind
    return mistake.text()


def _hint_forward(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or f"{UNKNOWN}: {rule.op}'s forward value is wrong: check its formula " \
                                         f"({OPS[rule.op].doc})"


def _hint_seed(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or "backward() must set out.grad = 1 before propagating"


def _hint_gradient(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    found = _error_hint(rule, finding) or _mistake_hint(finding, program, rule, ctx)
    if found:
        return found
    param = finding.get("param")
    if rule.op == "pow":
        here = "" if param is None else f"; the counterexample has n = {param:g}: {_derivative('pow', param)}"
        return (f"{UNKNOWN}: pow must add upstream * ({_derivative('pow', None)}) to its input's grad for every "
                f"exponent n, not only n = 2{here}")
    return f"{UNKNOWN}: {rule.op} must add upstream * ({_derivative(rule.op, param)}) to its input's grad"


def _hint_numbers(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    found = _error_hint(rule, finding)
    if found:
        return found
    if program is not None and "got_data" in finding:
        mistake = diagnose_forward(program, finding["got_data"], rel=ctx.asg.rel, abs_=ctx.asg.abs)
        if mistake:
            finding["cause"] = mistake.kind
            return mistake.text()
    sym = OPS[rule.op].label
    return f"{UNKNOWN}: `2 {sym} x` calls x.{reflected(rule.op)}(2) and must compute 2 {sym} x"


def _hint_accumulate(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or _mistake_hint(finding, program, rule, ctx) or \
        f"{UNKNOWN}: a value used twice must receive the sum of both contributions through {rule.op}"


def _hint_order(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or _mistake_hint(finding, program, rule, ctx) or \
        f"{UNKNOWN}: process each node once, after every node that uses it: walk a topological order (with a " \
        f"visited set) in reverse"


def _hint_unchanged(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or "backward must only change .grad, never .data"


def _hint_extremes(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or (
        f"{rule.op} is wrong for large inputs (|x| in the hundreds): compute it from a formula that cannot "
        f"overflow or lose the answer (math.tanh; sigmoid from exp(-|x|)), and take the derivative from the output")


KEPT = ("backward() pushes each node's whole .grad, including what an earlier backward() left there, to its "
        "inputs: reset the grad of every non-leaf node to 0 before propagating (leaves keep theirs, so gradients "
        "of several backward() calls add up)")


def _kept(finding: dict, program: Program | None, calls: list[int]) -> bool:
    """True when the engine's grads are those of an engine that keeps intermediate grads between calls."""
    if program is None or "got" not in finding:
        return False
    from .causes import replay_kept

    try:
        guess = replay_kept(program, calls)
    except (ArithmeticError, ValueError):
        return False
    return all(math.isclose(g, x, rel_tol=1e-6, abs_tol=1e-6) for g, x in zip(finding["got"], guess))


def _hint_twice(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    if program is not None and _kept(finding, program, rule.kind.calls(program)):
        finding["cause"] = "kept"
        return KEPT
    return _error_hint(rule, finding) or f"{UNKNOWN}: each backward() call must add d out / d leaf into every " \
                                         f"leaf's grad"


def _hint_deep(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    return _error_hint(rule, finding) or f"{UNKNOWN}: the gradients of a deep chain are wrong"


def _hint_linear(rule: Rule, finding: dict, program: Program | None, ctx: Context) -> str:
    if "did not finish within" in finding.get("problem", ""):
        return (f"visit each node once (topological order + visited set): walking every path would take "
                f"2**{DIAMONDS} steps here")
    return _error_hint(rule, finding) or _mistake_hint(finding, program, rule, ctx) or \
        f"{UNKNOWN}: the gradients of a chain of diamonds are wrong"


def _own_recursion(finding: dict, program: Program | None) -> bool:
    return "RecursionError" in finding.get("problem", "") or "segmentation fault" in finding.get("problem", "")


def _own_extreme(finding: dict, program: Program | None) -> bool:
    err = finding.get("error", "")
    return finding.get("problem") in ("gradients differ", "the forward value is wrong") or \
        "OverflowError" in err or "math range error" in err or "not a number" in err or "nan" in err.lower()


def _own_kept(finding: dict, program: Program | None) -> bool:
    return finding.get("cause") == "kept"


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------

def _needs_forward(r: Rule, c: Context) -> list[str]:
    return [f"protocol:{spelling(r.op)}", "protocol:.data", "protocol:Value(data)",
            *(f"forward[{b}]" for b in _base(r.op, c))]


def _needs_backward() -> list[str]:
    return ["protocol:Value(data)", "protocol:.data", "protocol:.grad", "protocol:backward()"]


def _needs_gradient(r: Rule, c: Context) -> list[str]:
    weight = ["gradient[mul]"] if r.op != "mul" and _weighted(c) else []
    return [*_needs_backward(), f"forward[{r.op}]", "seed", *(f"gradient[{b}]" for b in _base(r.op, c)), *weight]


KINDS: tuple[Kind, ...] = (
    Kind("forward", 1.0, "forward value of {op}", _needs_forward, _draw_forward, _check_nothing_more, _hint_forward,
         per_op=lambda op: True, backward=False),
    Kind("seed", 1.0, "backward() seeds the output's gradient with 1",
         lambda r, c: [*_needs_backward(), "protocol:+"], _draw_seed, _check_seed, _hint_seed),
    Kind("gradient", 2.0, "local gradient of {op}, times the upstream gradient", _needs_gradient, _draw_gradient,
         _check_grads, _hint_gradient, per_op=lambda op: True),
    Kind("numbers", 1.0, "a plain number on either side of {symbol}",
         lambda r, c: [f"gradient[{r.op}]", *(f"numbers[{b}]" for b in _base(r.op, c) if b in ARITHMETIC)],
         _draw_numbers, _check_grads, _hint_numbers, per_op=lambda op: op in ARITHMETIC),
    Kind("accumulate", 2.0, "a value reused through {op} gets the sum of its gradients",
         lambda r, c: [f"gradient[{r.op}]", *(f"accumulate[{b}]" for b in _base(r.op, c))],
         _draw_accumulate, _check_grads, _hint_accumulate, per_op=lambda op: True),
    Kind("extremes", 1.0, "{op} and its gradient for large inputs (|x| up to 800)",
         lambda r, c: [f"gradient[{r.op}]"], _draw_extremes, _check_grads, _hint_extremes,
         per_op=lambda op: op in EXTREME_OPS,
         warn=lambda asg: asg.extremes == "warn", own=_own_extreme),
    Kind("order", 3.0, "correct gradients on random graphs with shared subexpressions",
         lambda r, c: ["seed"], _draw_general(10), _check_grads, _hint_order),
    Kind("inputs-unchanged", 1.0, "backward leaves every input's data unchanged",
         lambda r, c: ["seed"], _draw_general(10), _check_unchanged, _hint_unchanged),
    Kind("backward-twice", 1.0, "a second backward() adds the same gradients again to every input",
         lambda r, c: ["order", "inputs-unchanged"], _draw_twice, _check_grads, _hint_twice,
         calls=lambda p: [len(p.inputs) + len(p.steps) - 1] * 2, warn=lambda asg: True, own=_own_kept),
    Kind("shared-node", 1.0, "backward() on two outputs sharing a node adds both outputs' gradients",
         lambda r, c: ["order", "inputs-unchanged"], _draw_shared, _check_grads, _hint_twice,
         calls=lambda p: [len(p.inputs) + len(p.steps) - 2, len(p.inputs) + len(p.steps) - 1],
         warn=lambda asg: True, own=_own_kept),
    Kind("deep-graph", 1.0, "a graph {depth} nodes deep", lambda r, c: ["accumulate[add]"], _draw_deep,
         _check_grads, _hint_deep,
         warn=lambda asg: asg.deep_graph == "warn", own=_own_recursion),
    Kind("linear-time", 2.0, "backward takes linear time ({diamonds} diamonds in a chain)",
         lambda r, c: ["order", "accumulate[add]", "accumulate[mul]"], _draw_linear, _check_grads, _hint_linear),
)
KIND_NAMES = tuple(k.name for k in KINDS)


# ---------------------------------------------------------------------------------------------------------
# Running a rule
# ---------------------------------------------------------------------------------------------------------

def wire(program: Program, backward: bool = True, calls: list[int] | None = None) -> dict:
    """The program as the worker reads it: operators and method names, numbers kept as numbers.

    >>> wire(Program((2.0,), (Step("tanh", (0,)),)))["steps"]
    [['.tanh', [0], None]]
    """
    steps = [[spelling(s.op), list(s.args), s.param if s.op == "pow" else None] for s in program.steps]
    req = {"inputs": list(program.inputs), "numbers": sorted(program.numbers), "steps": steps,
           "backward": backward}
    if calls:
        req["backward_on"] = list(calls)
    return req


class Mismatch(Exception):
    """An example on which the engine disagrees with the oracles (Hypothesis shrinks these)."""

    def __init__(self, finding: dict, program: Program):
        super().__init__(finding["problem"])
        self.finding, self.program = finding, program


class _Abort(BaseException):
    """Stop Hypothesis at once (not an Exception, so it is not shrunk): the engine crashed, hung or ran out
    of time; shrinking would mean waiting for a timeout on every attempt."""

    def __init__(self, finding: dict, program: Program | None):
        super().__init__(finding["problem"])
        self.finding, self.program = finding, program


def _ensure(box: Sandbox) -> None:
    if box.proc is None:
        box.start()
        if not box.hello.get("ok"):
            raise EngineCrash(f"the engine failed to restart: {box.hello.get('error')}")


def _ask(rule: Rule, box: Sandbox, program: Program, timeout: float | None = None) -> dict:
    calls = rule.kind.calls(program) if rule.kind.calls else None
    _ensure(box)
    return box.request(wire(program, backward=rule.kind.backward, calls=calls), timeout=timeout)


NONDETERMINISTIC = ("the engine gave different answers for the same program (state kept between calls, such as "
                    "a class-level list or cache, or randomness)")


def _finish(rule: Rule, ctx: Context, finding: dict | None, program: Program | None, examples: int,
            seconds: float) -> Outcome:
    if finding is None:
        return Outcome("passed", examples, None, seconds)
    hint = NONDETERMINISTIC if finding.get("cause") == "nondeterministic" else \
        rule.kind.hint(rule, finding, program, ctx)
    status = "failed"
    if rule.kind.warn(ctx.asg) and rule.kind.own(finding, program):
        status = "warning"
    return Outcome(status, examples, finding, seconds, hint)


def _same(a: dict, b: dict) -> bool:
    keys = ("ok", "data", "grads", "grad_out", "error")
    return all(a.get(k) == b.get(k) for k in keys)


def run_rule(rule: Rule, box: Sandbox, ctx: Context, seed: int | None = None, deadline: float | None = None, *,
             _ask: Callable[..., dict] = _ask, check: Callable[..., dict | None] = check,
             prune: Callable[[Any], Any] = prune) -> Outcome:
    """Check one rule on the engine in ``box``; Hypothesis draws and shrinks, the sandbox evaluates. Another kind
    of engine passes its own ``_ask`` (rule, box, program, timeout -> reply), ``check`` and ``prune``."""
    # NOTE: the keywords keep the names of the functions they replace, so the Hypothesis test below reads the
    # same, and its derandomized draws (seeded from its source) stay those of the scalar grader.
    asg = ctx.asg
    start = time.monotonic()
    try:
        how = rule.kind.draw(rule, ctx)
    except Blocked as b:
        return Outcome("blocked", 0, {"formula": "", "rows": [], "problem": f"blocked by {b.rule}",
                                      "blocked_by": b.rule}, 0.0)
    if how.fixed is not None:
        program = how.fixed
        try:
            finding = check(rule, program, _ask(rule, box, program, how.timeout), asg)
        except EngineCrash as e:
            finding = _finding(program, e.reason)
        if finding is not None:
            finding.update(formula=how.shown, shrunk=False, note="a fixed program")
        return _finish(rule, ctx, finding, program, 1, time.monotonic() - start)

    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import example as explicit
    from hypothesis import seed as with_seed
    from hypothesis.errors import Flaky

    stop = start + asg.limits.rule if deadline is None else min(deadline, start + asg.limits.rule)
    state: dict[str, Any] = {"examples": 0, "best": None, "program": None}

    def example(program: Program) -> None:
        program = prune(program)
        if time.monotonic() > stop:
            best = state["best"]
            if best is not None:
                raise _Abort({**best, "shrunk": False, "note": "shrinking stopped at the rule's time limit"},
                             state["program"])
            raise _Abort(_finding(program, f"the rule did not finish within {asg.limits.rule:g} s "
                                           f"({state['examples']} examples ran): the engine is too slow"), program)
        state["examples"] += 1
        try:
            reply = _ask(rule, box, program)
        except EngineCrash as e:
            raise _Abort({**_finding(program, e.reason), "shrunk": False}, program) from None
        finding = check(rule, program, reply, asg)
        if finding is not None:
            state["best"], state["program"], state["reply"] = finding, program, reply
            raise Mismatch(finding, program)

    test = given(how.strategy)(example)
    for program in reversed(how.examples):
        test = explicit(program)(test)
    test = settings(max_examples=asg.examples, derandomize=seed is None, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                    verbosity=Verbosity.quiet, print_blob=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink))(test)
    if seed is not None:
        test = with_seed(seed)(test)
    finding, program = None, None
    try:
        test()
    except Mismatch as m:
        finding, program = {**m.finding, "shrunk": True}, m.program
        finding = _recheck(rule, box, ctx, finding, program, state, _ask)
    except _Abort as a:
        finding, program = a.finding, a.program
    except Flaky:
        best = state["best"] or {"formula": "", "rows": [], "steps": 0}
        finding, program = {**best, "problem": "the engine gave different answers for the same program",
                            "shrunk": False, "note": "not shrunk: the engine's answers change from run to run",
                            "cause": "nondeterministic"}, state["program"]
    return _finish(rule, ctx, finding, program, state["examples"], time.monotonic() - start)


def _recheck(rule: Rule, box: Sandbox, ctx: Context, finding: dict, program: Program, state: dict,
             _ask: Callable[..., dict] = _ask) -> dict:
    """Ask the shrunk counterexample once more: an engine whose answer changes is nondeterministic, and that,
    not the numbers, is what the report must say."""
    try:
        again = _ask(rule, box, program)
    except EngineCrash:
        return finding
    first = state.get("reply") if state.get("program") == program else None
    if first is not None and not _same(first, again):
        return {**finding, "problem": "the engine gave different answers for the same program", "shrunk": False,
                "note": "not shrunk: the engine's answers change from run to run", "cause": "nondeterministic"}
    return finding

