"""The grading rules: each one named, weighted and explained, checked by Hypothesis in this process against two
oracles (microgradx's own backward and central differences) on programs evaluated in the sandbox.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

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
from .sandbox import EngineCrash, Sandbox

__all__ = ["Rule", "RULE_KINDS", "build_rules", "run_rule", "wire", "check", "explain", "Outcome"]

ARITHMETIC = ("add", "sub", "mul", "div")
DIAMONDS = 40

# kind -> (default weight, title with {op}, hint with {op} and {derivative})
RULE_KINDS: dict[str, tuple[float, str, str]] = {
    "forward": (1.0, "forward value of {op}",
                "the value computed by {op} is wrong: check its formula ({doc})"),
    "gradient": (2.0, "local gradient of {op}, times the upstream gradient",
                 "{op} must add upstream * ({derivative}) to its input's grad{pow_note}"),
    "numbers": (1.0, "a plain number on either side of {symbol}",
                "`2 {symbol} x` calls x.__r{dunder}__(2) and must compute 2 {symbol} x, not x {symbol} 2; "
                "`x {symbol} 2` must wrap the number in a Value"),
    "accumulate": (2.0, "a value reused through {op} gets the sum of its gradients",
                   "a value used twice must receive the sum of both contributions: `=` where `+=` is needed "
                   "in {op}'s backward?"),
    "order": (3.0, "correct gradients on random graphs with shared subexpressions",
              "process each node once, after every node that uses it: walk a topological order (with a visited "
              "set) in reverse"),
    "seed": (1.0, "backward() seeds the output's gradient with 1",
             "backward() must set out.grad = 1 before propagating"),
    "inputs-unchanged": (1.0, "backward leaves every input's data unchanged",
                         "backward must only change .grad, never .data"),
    "deep-graph": (1.0, "a graph {depth} nodes deep",
                   "a recursive topological sort hits Python's recursion limit on deep graphs: use an explicit "
                   "stack (a loop) instead of recursion"),
    "linear-time": (2.0, "backward takes linear time ({diamonds} diamonds in a chain)",
                    "visit each node once (topological order + visited set): walking every path would take "
                    "2**{diamonds} steps here"),
}


@dataclass(frozen=True)
class Rule:
    """One graded property: ``name`` like ``gradient[pow]``, its ``kind`` (a key of ``RULE_KINDS``) and op."""

    name: str
    kind: str
    op: str | None
    title: str
    hint: str
    weight: float


@dataclass
class Outcome:
    """What running a rule found: ``status`` is passed, failed or warning; ``finding`` explains a failure."""

    status: str
    examples: int
    finding: dict | None = None
    seconds: float = 0.0


class Mismatch(Exception):
    """An example on which the engine disagrees with the oracles (Hypothesis shrinks these)."""

    def __init__(self, finding: dict):
        super().__init__(finding["problem"])
        self.finding = finding


class _Abort(BaseException):
    """Stop Hypothesis at once (not an Exception, so it is not shrunk): the engine crashed, hung or ran out
    of time; shrinking would mean waiting for a timeout on every attempt."""

    def __init__(self, finding: dict):
        super().__init__(finding["problem"])
        self.finding = finding


# ---------------------------------------------------------------------------------------------------------
# Rules for an op set
# ---------------------------------------------------------------------------------------------------------

def explain(rule: Rule, finding: dict | None) -> str:
    """The rule's hint, with the op's derivative filled in for the counterexample's parameter."""
    if rule.kind != "gradient" or finding is None:
        return rule.hint
    param = finding.get("param")
    note = ""
    if rule.op == "pow":
        note = (" for every exponent n" if param is None  # no counterexample program: the engine did not import
                else f" for every exponent n, not only n = 2 (the counterexample has n = {param:g})")
    return rule.hint.format(derivative=_derivative(rule.op, param), pow_note=note)


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


def build_rules(ops: tuple[str, ...], assignment: Assignment | None = None) -> list[Rule]:
    """The rules for an engine with ``ops``, in the order they run, without the ones the assignment skips.

    >>> [r.name for r in build_rules(("add", "relu"))][:5]
    ['forward[add]', 'forward[relu]', 'gradient[add]', 'gradient[relu]', 'numbers[add]']
    """
    assignment = assignment or Assignment()
    ops = tuple(o for o in DEFAULT_OPS if o in ops)  # simplest first
    names: list[tuple[str, str, str | None]] = []
    names += [(f"forward[{o}]", "forward", o) for o in ops]
    names += [(f"gradient[{o}]", "gradient", o) for o in ops]
    names += [(f"numbers[{o}]", "numbers", o) for o in ops if o in ARITHMETIC]
    names += [(f"accumulate[{o}]", "accumulate", o) for o in ops]
    names += [(k, k, None) for k in ("order", "seed", "inputs-unchanged", "deep-graph", "linear-time")]
    rules = []
    for name, kind, op in names:
        if assignment.skipped(name):
            continue
        weight, title, hint = RULE_KINDS[kind]
        fill = {"op": op, "symbol": OPS[op].label if op else "", "dunder": _DUNDER.get(op or "", ""),
                "doc": OPS[op].doc if op else "", "depth": assignment.deep_depth, "diamonds": DIAMONDS,
                "derivative": "{derivative}", "pow_note": "{pow_note}"}
        rules.append(Rule(name, kind, op, title.format(**fill), hint.format(**fill),
                          assignment.weight(name, weight)))
    return rules


_DUNDER = {"add": "add", "sub": "sub", "mul": "mul", "div": "truediv"}


def _strategy(rule: Rule, ops: tuple[str, ...]) -> Any:
    from hypothesis import strategies as st

    op = rule.op
    if rule.kind in ("forward", "gradient"):
        row = OPS[op]

        @st.composite
        def single(draw: Any) -> Program:
            xs, p = draw(op_inputs(op, params=STUDENT_PARAMS))
            xs = tuple(round(x, 3) if row.domains(p)[k].contains(round(x, 3)) else x for k, x in enumerate(xs))
            if rule.kind == "forward":
                return Program(xs, (Step(op, tuple(range(len(xs))), p),))
            # A second input w scales the upstream gradient, so forgetting `* out.grad` shows.
            w = draw(st.sampled_from((2.0, -1.5, 0.5, 3.0)))
            n = len(xs)
            return Program((*xs, w), (Step(op, tuple(range(n)), p), Step("mul", (n + 1, n))))

        return single()
    if rule.kind == "numbers":
        return number_programs(op)
    if rule.kind == "accumulate":
        return reuse_programs(op, params=STUDENT_PARAMS)
    ordered = tuple(o for o in DEFAULT_OPS if o in ops)
    if rule.kind == "seed":
        return programs(ordered, max_steps=3, params=STUDENT_PARAMS)
    return programs(ordered, max_steps=10, params=STUDENT_PARAMS)


def wire(program: Program, backward: bool = True) -> dict:
    """The program as the worker reads it: operators and method names, numbers kept as numbers.

    >>> wire(Program((2.0,), (Step("tanh", (0,)),)))["steps"]
    [['.tanh', [0], None]]
    """
    steps = [[spelling(s.op), list(s.args), s.param if s.op == "pow" else None] for s in program.steps]
    return {"inputs": list(program.inputs), "numbers": sorted(program.numbers), "steps": steps,
            "backward": backward}


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


# ---------------------------------------------------------------------------------------------------------
# Oracles and comparison
# ---------------------------------------------------------------------------------------------------------

def _oracle(program: Program) -> tuple[float, list[float]]:
    out, leaves = program.build()
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


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
    return isinstance(got, (int, float)) and math.isfinite(got) and \
        math.isclose(got, expected, rel_tol=asg.rel, abs_tol=asg.abs)


def _finding(program: Program, problem: str, rows: list | None = None, **extra: Any) -> dict:
    param = program.steps[0].param if program.steps else None
    return {"formula": program.formula(), "problem": problem, "rows": rows or [], "steps": len(program.steps),
            "param": param, **extra}


def check(rule: Rule, program: Program, reply: dict, asg: Assignment) -> dict | None:
    """None when the engine's reply is right for this rule, else a finding that explains what is wrong."""
    if not reply.get("ok"):
        where = f" at {reply['where']}" if reply.get("where") else ""
        return _finding(program, f"{reply.get('stage', 'forward')} raised {reply.get('error')}{where}")
    data, grads = _oracle(program)
    if not _close(reply["data"], data, asg):
        return _finding(program, "the forward value is wrong",
                        [{"name": "output", "expected": data, "got": reply["data"]}])
    if rule.kind == "forward":
        return None
    if rule.kind == "seed":
        if reply["grad_out"] != 1.0:
            return _finding(program, "the output's grad after backward() is not 1",
                            [{"name": "output.grad", "expected": 1.0, "got": reply["grad_out"]}])
        return None
    if rule.kind == "inputs-unchanged":
        rows = [{"name": f"v{k}.data", "expected": program.inputs[k], "got": got}
                for k, got in zip(program.variables, reply["after"]) if got != program.inputs[k]]
        return _finding(program, "backward() changed an input's data", rows) if rows else None
    bad = [k for k, (got, want) in enumerate(zip(reply["grads"], grads)) if not _close(got, want, asg)]
    if not bad:
        return None
    rows = []
    for j, k in enumerate(program.variables):
        fd = _central(program, k) if len(program.steps) <= 200 else None
        rows.append({"name": f"v{k}", "expected": grads[j], "got": reply["grads"][j], "central": fd,
                     "wrong": j in bad})
    return _finding(program, "gradients differ", rows)


# ---------------------------------------------------------------------------------------------------------
# Running a rule
# ---------------------------------------------------------------------------------------------------------

def _ensure(box: Sandbox) -> None:
    if box.proc is None:
        box.start()
        if not box.hello.get("ok"):
            raise EngineCrash(f"the engine failed to restart: {box.hello.get('error')}")


def _fixed(rule: Rule, box: Sandbox, asg: Assignment) -> Outcome:
    program = deep_program(asg.deep_depth) if rule.kind == "deep-graph" else diamond_program()
    timeout = asg.limits.deep if rule.kind == "deep-graph" else asg.limits.linear
    start = time.monotonic()
    try:
        _ensure(box)
        reply = box.request(wire(program), timeout=timeout)
        finding = check(rule, program, reply, asg)
    except EngineCrash as e:
        finding = _finding(program, e.reason)
    if finding is not None:
        finding["formula"] = (f"a chain of {asg.deep_depth} additions, v(k+1) = v(k) + v1"
                              if rule.kind == "deep-graph" else
                              f"{DIAMONDS} diamonds in a chain, v <- v*v1 + v*v2 starting from v0 = 0.7, "
                              f"v1 = v2 = 0.5")
        finding["shrunk"] = False
        finding["note"] = "a fixed program"
    status = "passed" if finding is None else "failed"
    if finding is not None and rule.kind == "deep-graph" and asg.deep_graph == "warn":
        status = "warning"
    return Outcome(status, 1, finding, time.monotonic() - start)


def run_rule(rule: Rule, box: Sandbox, asg: Assignment, ops: tuple[str, ...], seed: int | None = None,
             deadline: float | None = None) -> Outcome:
    """Check one rule on the engine in ``box``; Hypothesis draws and shrinks, the sandbox evaluates."""
    if rule.kind in ("deep-graph", "linear-time"):
        return _fixed(rule, box, asg)
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as with_seed
    from hypothesis.errors import Flaky

    start = time.monotonic()
    stop = start + asg.limits.rule if deadline is None else min(deadline, start + asg.limits.rule)
    state: dict[str, Any] = {"examples": 0, "best": None}

    def example(program: Program) -> None:
        if time.monotonic() > stop:
            best = state["best"]
            if best is not None:
                raise _Abort({**best, "shrunk": False, "note": "shrinking stopped at the rule's time limit"})
            raise _Abort(_finding(program, f"the rule did not finish within {asg.limits.rule:g} s "
                                           f"({state['examples']} examples ran): the engine is too slow"))
        state["examples"] += 1
        try:
            _ensure(box)
            reply = box.request(wire(program, backward=rule.kind != "forward"))
        except EngineCrash as e:
            raise _Abort({**_finding(program, e.reason), "shrunk": False}) from None
        finding = check(rule, program, reply, asg)
        if finding is not None:
            state["best"] = finding
            raise Mismatch(finding)

    test = settings(max_examples=asg.examples, derandomize=seed is None, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                    verbosity=Verbosity.quiet, print_blob=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink))(given(_strategy(rule, ops))(example))
    if seed is not None:
        test = with_seed(seed)(test)
    finding = None
    try:
        test()
    except Mismatch as m:
        finding = {**m.finding, "shrunk": True}
    except _Abort as a:
        finding = a.finding
    except Flaky:
        best = state["best"] or {"formula": "", "rows": [], "steps": 0}
        finding = {**best, "problem": "the engine gave different answers for the same program "
                                      "(state kept between calls, or randomness?)", "shrunk": False}
    return Outcome("passed" if finding is None else "failed", state["examples"], finding, time.monotonic() - start)

