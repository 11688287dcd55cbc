"""The tensor kind of engine (``microgradx grade --kind tensor engine.py``): a student's NumPy ``Tensor`` with
``+ - * / @ **``, ``sum``/``mean`` over axes, ``reshape``, ``transpose``, ``exp``, ``log``, ``relu`` and
``backward()``. Its rules (forward values, each op's vector-Jacobian product, broadcasting, accumulation, order,
random broadcasting programs) run through the scalar grader's machinery: the same Context, root-cause ordering,
Hypothesis loop, sandbox and reports. microgradx's ``Tensor`` and float64 central differences decide.

>>> [r.name for r in build_tensor_rules(("add", "mul"))][:5]
['forward[add]', 'forward[mul]', 'seed', 'gradient[mul]', 'gradient[add]']
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..ops import MicrogradxError
from ..strategies import TENSOR_POWERS, TensorProgram, TensorStep, format_array, tensor_programs
from .assignment import Assignment, AssignmentError, check_ops, check_rule_patterns, matches
from .report import Report, RuleResult
from .rules import UNKNOWN, Blocked, Context, Draw, Kind, Rule, _ensure, _error_hint, _finding, expand_rules, run_rule
from .sandbox import EngineCrash, Sandbox, _false, _number, _numbers, _text, _text_map, _texts, _true, validate_reply
from .tensor_protocol import CHOICES, CONVENTIONS, SPELLINGS, TENSOR_OPS

__all__ = ["grade_tensor", "build_tensor_rules", "TENSOR_KINDS", "WORKER", "FIELDS", "sizes", "wire", "reference",
           "central", "CAUSES", "DEFAULT_CLASS"]

DEFAULT_CLASS = "Tensor"
# The child's program (the sandbox copies the grader modules it loads).
WORKER = "tensor_worker.py"
ELEMENTWISE = ("add", "sub", "mul", "div")
SAME_SHAPES = ("forward", "gradient")  # the per-op rules whose programs do not broadcast
MAX_DIMS, MAX_SIZE = 6, 10_000


# ---------------------------------------------------------------------------------------------------------
# Replies: what the tensor worker may send, checked by validate_reply
# ---------------------------------------------------------------------------------------------------------

def _shape(x: Any) -> bool:
    return type(x) is list and len(x) <= MAX_DIMS and all(type(d) is int and 0 <= d <= MAX_SIZE for d in x)


def _each(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: type(x) is list and all(ok(v) for v in x)


def _conventions(x: Any) -> bool:
    return _text_map(x) and set(x) == set(CHOICES) and all(x[k] in CHOICES[k] for k in CHOICES)


FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "greeting": {"ok": _true, "methods": _texts, "module": _text, "missing": _text_map, "conventions": _conventions},
    "failure": {"ok": _false, "stage": _text, "error": _text, "where": _text},
    "forward": {"ok": _true, "data": _numbers, "shape": _shape, "dtype": _text},
    "backward": {"ok": _true, "data": _numbers, "shape": _shape, "dtype": _text, "seconds": _number,
                 "grads": _each(_numbers), "grad_shapes": _each(_shape), "none": _each(lambda v: type(v) is int),
                 "before": _each(_numbers), "after": _each(_numbers)},
}


def sizes(reply: dict, asked: dict) -> str | None:
    """What is wrong with the lengths of a backward reply to ``asked``, or None: one gradient, shape and data
    list per leaf, each as long as its shape says.

    >>> asked = {"inputs": [[[2], [1.0, 2.0]]]}
    >>> ok = {"data": [3.0], "shape": [], "grads": [[1.0, 1.0]], "grad_shapes": [[2]], "none": [],
    ...       "before": [[1.0, 2.0]], "after": [[1.0, 2.0]]}
    >>> sizes(ok, asked), sizes({**ok, "grad_shapes": [[3]]}, asked)
    (None, 'v0.grad has 2 numbers, its shape [3] has 3')
    """
    n = len(asked.get("inputs", ()))
    for key in ("grads", "grad_shapes", "before", "after"):
        if len(reply[key]) != n:
            return f"{key} has {len(reply[key])} entries, the program has {n} leaves"
    if len(reply["data"]) != math.prod(reply["shape"]):
        return f"data has {len(reply['data'])} numbers, its shape {reply['shape']} has {math.prod(reply['shape'])}"
    none = reply["none"]
    if len(set(none)) != len(none) or not all(0 <= k < n for k in none):
        return f"none lists leaves the program does not have: {none}"
    for k, ((shape, _), grad, gshape) in enumerate(zip(asked["inputs"], reply["grads"], reply["grad_shapes"])):
        want = 0 if k in none else math.prod(gshape)
        if len(grad) != want:
            return f"v{k}.grad has {len(grad)} numbers, its shape {gshape} has {want}"
        for key in ("before", "after"):
            if len(reply[key][k]) != math.prod(shape):
                return f"{key}[{k}] has {len(reply[key][k])} numbers, v{k} has {math.prod(shape)}"
    return None


def wire(program: TensorProgram, backward: bool, conventions: dict[str, str]) -> dict:
    """The program as the tensor worker reads it.

    >>> p = TensorProgram((((2,), (1.0, 2.0)),), (TensorStep("sum", (0,), (0, True)),))
    >>> wire(p, False, {})["steps"]
    [['sum', [0], [0, True]]]
    """
    steps = [[s.op, list(s.args), list(s.param) if isinstance(s.param, tuple) else s.param] for s in program.steps]
    return {"inputs": [[list(shape), list(flat)] for shape, flat in program.inputs], "steps": steps,
            "backward": backward, "conv": dict(conventions)}


# ---------------------------------------------------------------------------------------------------------
# Oracles: microgradx's Tensor, and float64 central differences on its forward
# ---------------------------------------------------------------------------------------------------------

def reference(program: TensorProgram, backward: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """The output's data and, after backward() on it, each leaf's gradient, computed by microgradx's Tensor.

    >>> p = TensorProgram((((2,), (1.0, 3.0)),), (TensorStep("mul", (0, 0)), TensorStep("sum", (1,))))
    >>> out, grads = reference(p); float(out), grads[0].tolist()
    (10.0, [2.0, 6.0])
    """
    out, leaves = program.build()
    if not backward:
        return np.array(out.data, dtype=np.float64), []
    out.backward()
    return np.array(out.data, dtype=np.float64), [np.zeros_like(leaf.data) if leaf.grad is None
                                                  else np.array(leaf.grad, dtype=np.float64) for leaf in leaves]


def _with_inputs(program: TensorProgram, arrays: Sequence[np.ndarray]) -> TensorProgram:
    return TensorProgram(tuple((tuple(a.shape), tuple(float(v) for v in a.ravel())) for a in arrays), program.steps)


def central(program: TensorProgram) -> list[np.ndarray]:
    """d output / d each leaf element by float64 central differences on microgradx's forward.

    >>> p = TensorProgram((((2,), (1.0, 3.0)),), (TensorStep("mul", (0, 0)), TensorStep("sum", (1,))))
    >>> np.round(central(p)[0], 6).tolist()
    [2.0, 6.0]
    """
    xs = program.arrays()
    out = []
    for k, x in enumerate(xs):
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            h = 1e-6 * max(1.0, abs(x[idx]))
            vals = []
            for sign in (1, -1):
                ys = [a.copy() for a in xs]
                ys[k][idx] += sign * h
                vals.append(float(np.sum(_with_inputs(program, ys).build()[0].data)))
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        out.append(g)
    return out


def _close(got: np.ndarray, want: np.ndarray, asg: Assignment) -> bool:
    return got.shape == want.shape and bool(np.all(np.isfinite(got))) and \
        bool(np.allclose(got, want, rtol=asg.rel, atol=asg.abs))


def _same_shape(got: tuple, want: tuple) -> bool:
    # A full reduction may come back as shape () or (1,): both are one number.
    return got == want or (math.prod(got) == math.prod(want) == 1 and len(got) <= 1 and len(want) <= 1)


def _show(a: np.ndarray | None) -> str:
    return "None" if a is None else format_array(tuple(a.shape), tuple(float(v) for v in a.ravel()))


def _got(reply: dict) -> list[np.ndarray | None]:
    return [None if k in reply["none"] else np.array(flat, dtype=np.float64).reshape(shape)
            for k, (flat, shape) in enumerate(zip(reply["grads"], reply["grad_shapes"]))]


def _check_grads(program: TensorProgram, reply: dict, grads: list, asg: Assignment, calls: Any) -> dict | None:
    got = _got(reply)
    wrong = []
    for g, want in zip(got, grads):
        wrong.append(bool(np.any(want != 0)) if g is None else not _close(g, want, asg))
    if not any(wrong):
        return None
    rows = [{"name": f"v{k}.grad", "expected": _show(want), "got": _show(g), "wrong": w}
            for k, (g, want, w) in enumerate(zip(got, grads, wrong))]
    return _finding(program, "gradients differ", rows,
                    got=[None if g is None else [list(g.shape), g.ravel().tolist()] for g in got])


def judge(rule: Rule, program: TensorProgram, reply: dict, asg: Assignment) -> dict | None:
    """None when the engine's reply is right, else a finding: an exception, a wrong forward result (shape,
    then values), a changed input, then the rule kind's own check of the gradients."""
    if not reply.get("ok"):
        where = f" at {reply['where']}" if reply.get("where") else ""
        return _finding(program, f"{reply.get('stage', 'forward')} raised {reply.get('error')}{where}",
                        error=str(reply.get("error", "")))
    try:
        want, grads = reference(program, rule.kind.backward)
    except (MicrogradxError, ArithmeticError, ValueError):
        from hypothesis import reject

        reject()  # a drawn program outside an op's domain asks nothing of the engine
    shape = tuple(reply["shape"])
    if len(reply["data"]) != math.prod(shape):
        return _finding(program, f"the engine sent {len(reply['data'])} numbers for a result of shape {shape}")
    got = np.array(reply["data"], dtype=np.float64).reshape(shape)
    if not _same_shape(shape, want.shape):
        return _finding(program, f"the result has shape {shape}, not {want.shape}",
                        [{"name": "output", "expected": _show(want), "got": _show(got)}], cause="forward-shape")
    if not _close(got.reshape(want.shape), want, asg):
        return _finding(program, "the forward value is wrong",
                        [{"name": "output", "expected": _show(want), "got": _show(got)}], cause="forward")
    if not rule.kind.backward:
        return None
    # The engine's own data before backward is the reference (a float32 engine has rounded it already).
    changed = [k for k, (before, after) in enumerate(zip(reply["before"], reply["after"])) if before != after]
    if changed:
        rows = [{"name": f"v{k}.data", "expected": _show(np.array(reply["before"][k]).reshape(program.inputs[k][0])),
                 "got": _show(np.array(reply["after"][k]).reshape(program.inputs[k][0]))}
                for k in changed]
        return _finding(program, "backward() changed an input's data", rows, cause="data-changed")
    return rule.kind.check(program, reply, grads, asg, None)


# ---------------------------------------------------------------------------------------------------------
# Programs each rule draws
# ---------------------------------------------------------------------------------------------------------

def _values(shape: tuple[int, ...], domain: str) -> Any:
    """Tenths in [-2, 2] (Hypothesis shrinks them towards 0), kept inside a domain: ``positive`` (log, x**-1,
    x**0.5), ``nonzero`` (relu away from its kink, divisors, weights)."""
    from hypothesis import strategies as st

    ints = {"any": st.integers(-20, 20), "positive": st.integers(2, 20),
            "nonzero": st.integers(3, 20).flatmap(lambda k: st.sampled_from((k, -k)))}[domain]
    size = math.prod(shape)
    return st.lists(ints, min_size=size, max_size=size).map(lambda ks: tuple(k / 10 for k in ks))


def _domains(op: str, param: Any) -> tuple[str, str]:
    """The domain of each operand of ``op``."""
    if op == "log" or (op == "pow" and param not in (2.0, 3.0)):
        return ("positive", "any")
    if op == "relu":
        return ("nonzero", "any")
    if op == "div":
        return ("any", "nonzero")
    return ("any", "any")


def _out_shape(op: str, shapes: Sequence[tuple[int, ...]], param: Any) -> tuple[int, ...]:
    from ..tensor import Tensor
    from .tensor_protocol import call

    return np.shape(call(op, [Tensor(np.ones(s)) for s in shapes], param, CONVENTIONS).data)


def _assemble(op: str, inputs: list, param: Any, how: str, weight: tuple[float, ...] | None) -> TensorProgram:
    """``op`` on the inputs, then for a gradient rule ``(result * w).sum()`` (or ``result.sum()`` when ``weight``
    is None), so the upstream gradient of the op is w, not ones."""
    n = len(inputs)
    steps = [TensorStep(op, tuple(range(n)), param)]
    if how != "forward":
        shape = _out_shape(op, [s for s, _ in inputs], param)
        if weight is not None:
            inputs = [*inputs, (tuple(shape), weight)]
            steps.append(TensorStep("mul", (n + 1, n)))
        steps.append(TensorStep("sum", (len(inputs) + len(steps) - 1,)))
    return TensorProgram(tuple(inputs), tuple(steps))


def _reshapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    size = math.prod(shape)
    out = [(size,), tuple(reversed(shape)), (1, size), (*shape, 1)]
    return [s for k, s in enumerate(out) if s != shape and s not in out[:k]]


def _op_programs(op: str, how: str) -> Any:
    """Programs that apply ``op`` once: ``how`` is forward, gradient (same shapes), broadcast (operands of
    different shapes that broadcast), seed (``x.sum()``) or plain (``(x op y).sum()``, no weight)."""
    from hypothesis import strategies as st

    from ..strategies import _family_shape

    @st.composite
    def draw(d: Any) -> TensorProgram:
        dims = st.integers(1, 3)
        param: Any = None
        if op == "matmul":
            m, k, n = d(dims), d(dims), d(dims)
            shapes = [(m, k), (k, n)]
        elif op == "transpose":
            shapes = [(d(dims), d(dims))]
        else:
            # Reductions get two axes, so that a gradient broadcast along the wrong one shows.
            full = tuple(d(st.lists(dims, min_size=2 if op in ("sum", "mean") else 1, max_size=2)))
            shapes = [full]
            if op in ELEMENTWISE:
                other = full
                if how == "broadcast":
                    other = _family_shape(d, full)
                    if other == full:
                        other = full[1:] if len(full) > 1 else (1,) if full != (1,) else ()
                shapes = [full, other] if d(st.booleans()) else [other, full]
        if op == "pow":
            param = d(st.sampled_from(TENSOR_POWERS))
        elif op in ("sum", "mean"):
            axis = d(st.sampled_from((None, *range(len(shapes[0])))))
            param = (axis, d(st.booleans()) if axis is not None else False)
        elif op == "reshape":
            param = d(st.sampled_from(_reshapes(shapes[0])))
        doms = _domains(op, param)
        inputs = [(s, d(_values(s, doms[k]))) for k, s in enumerate(shapes)]
        if how == "seed":
            return TensorProgram(tuple(inputs), (TensorStep("sum", (0,)),))
        weight = None
        if how not in ("forward", "plain"):
            weight = d(_values(_out_shape(op, shapes, param), "nonzero"))
        return _assemble(op, inputs, param, how, weight)

    return draw()


def _fixed_values(shape: tuple[int, ...], domain: str, salt: int = 0) -> tuple[float, ...]:
    """Readable, distinct, non-symmetric values for the examples tried first."""
    out = []
    for j in range(math.prod(shape)):
        v = ((j * 7 + salt * 3) % 11 - 5) / 4
        if domain == "positive":
            v = abs(v) + 0.5
        elif domain == "nonzero" and abs(v) < 0.3:
            v = 0.75 if v >= 0 else -0.75
        out.append(v)
    return tuple(out)


def _example(op: str, how: str, shapes: list[tuple[int, ...]], param: Any = None) -> TensorProgram:
    doms = _domains(op, param)
    inputs = [(s, _fixed_values(s, doms[k], k)) for k, s in enumerate(shapes)]
    if how == "seed":
        return TensorProgram(tuple(inputs), (TensorStep("sum", (0,)),))
    weight = None if how == "plain" else _fixed_values(_out_shape(op, shapes, param), "nonzero", 5)
    return _assemble(op, inputs, param, how, weight)


def _examples(op: str, how: str) -> tuple[TensorProgram, ...]:
    """The example tried before Hypothesis draws, for a reduction or ``@``."""
    if op == "matmul":
        return (_example(op, how, [(2, 3), (3, 1)]),)
    return (_example(op, how, [(2, 3)], (1, False)),)


def _draw_forward(rule: Rule, ctx: Context) -> Draw:
    return Draw(_op_programs(rule.op, "forward"))


def _draw_seed(rule: Rule, ctx: Context) -> Draw:
    return Draw(_op_programs("sum", "seed"), (_example("sum", "seed", [(2, 3)]),))


def _draw_gradient(rule: Rule, ctx: Context) -> Draw:
    how = "plain" if rule.op == "mul" else "gradient"
    # Reductions and @ first try a small example Hypothesis rarely draws: a reduction over the last of two
    # axes without keepdims, a product of non-square matrices.
    first = _examples(rule.op, how) if rule.op in ("sum", "mean", "matmul") else ()
    return Draw(_op_programs(rule.op, how), first)


def _draw_broadcast(rule: Rule, ctx: Context) -> Draw:
    return Draw(_op_programs(rule.op, "broadcast"))


def _clean(ctx: Context, wanted: Sequence[str], need: Sequence[str],
           kinds: Sequence[str] | None = None) -> tuple[str, ...]:
    """The graded ops among ``wanted`` whose per-op rules (of ``kinds``, else all) passed; Blocked when one of
    ``need`` is not among them."""
    def rules_of(o: str) -> list[str]:
        return [n for n in ctx.status if n.endswith(f"[{o}]") and (kinds is None or n.split("[")[0] in kinds)]

    ops = tuple(o for o in ctx.ops if all(ctx.ok(n) for n in rules_of(o)))
    for o in need:
        if o not in ops:
            bad = [n for n in rules_of(o) if not ctx.ok(n)] or ["protocol"]
            raise Blocked(ctx.blocked_by.get(bad[0], bad[0]))
    return tuple(o for o in wanted if o in ops)


def _draw_accumulate(rule: Rule, ctx: Context) -> Draw:
    from hypothesis import strategies as st

    # Same shapes only: a broadcasting mistake does not keep accumulation from being graded.
    combine = _clean(ctx, ("add", "mul"), ("add", "mul"), SAME_SHAPES)
    unary = _clean(ctx, ("mul", "add", "sub", "div", "exp", "log", "relu", "pow"), (), SAME_SHAPES)

    @st.composite
    def draw(d: Any) -> TensorProgram:
        # Only leaves are shared (x used twice), never an intermediate result: the order of backward does not
        # matter here, only that every use adds its contribution.
        shape = tuple(d(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        x = (shape, d(_values(shape, "positive")))
        y = (shape, d(_values(shape, "nonzero")))
        w = (shape, d(_values(shape, "nonzero")))
        comb = d(st.sampled_from(combine))
        op = d(st.sampled_from(unary))
        param = d(st.sampled_from(TENSOR_POWERS)) if op == "pow" else None
        args = (0, 1) if op in ELEMENTWISE else (0,)
        pattern = d(st.sampled_from(("square", "with-input", "twice")))
        steps = [TensorStep(comb, (0, 0))] if pattern == "square" else [TensorStep(op, args, param)]
        if pattern == "with-input":
            steps.append(TensorStep(comb, (3, 0)))
        elif pattern == "twice":
            steps += [TensorStep(op, args, param), TensorStep(comb, (3, 4))]
        steps += [TensorStep("mul", (2 + len(steps), 2)), TensorStep("sum", (3 + len(steps),))]
        return TensorProgram((x, y, w), tuple(steps))

    x = ((2, 3), _fixed_values((2, 3), "positive"))
    w = ((2, 3), _fixed_values((2, 3), "nonzero", 5))
    first = tuple(TensorProgram((x, x, w), (TensorStep(c, (0, 0)), TensorStep("mul", (3, 2)),
                                            TensorStep("sum", (4,)))) for c in combine)
    return Draw(draw(), first)


def diamonds(levels: int, shape: tuple[int, ...] = (2, 3)) -> TensorProgram:
    """``levels`` diamonds in a chain, v <- v*a + v*b with a + b = 1 (so values stay put), then (v * w).sum():
    each intermediate v feeds two nodes, so backward must finish a node's consumers before the node."""
    size = math.prod(shape)
    a = tuple(0.25 + 0.5 * (j % 2) for j in range(size))
    inputs = ((shape, _fixed_values(shape, "positive")), (shape, a), (shape, tuple(1 - v for v in a)),
              (shape, _fixed_values(shape, "nonzero", 5)))
    steps: list[TensorStep] = []
    v = 0
    for _ in range(levels):
        n = 4 + len(steps)
        steps += [TensorStep("mul", (v, 1)), TensorStep("mul", (v, 2)), TensorStep("add", (n, n + 1))]
        v = n + 2
    steps += [TensorStep("mul", (v, 3)), TensorStep("sum", (v + 1,))]
    return TensorProgram(inputs, tuple(steps))


def chain(depth: int, shape: tuple[int, ...] = (3,)) -> TensorProgram:
    """A chain ``depth`` nodes deep, v <- v + b, then (v * w).sum(): b's gradient is depth * w."""
    inputs = ((shape, _fixed_values(shape, "any")), (shape, (0.01,) * math.prod(shape)),
              (shape, _fixed_values(shape, "nonzero", 5)))
    steps = [TensorStep("add", (0, 1))] + [TensorStep("add", (k, 1)) for k in range(3, depth + 2)]
    steps += [TensorStep("mul", (depth + 2, 2)), TensorStep("sum", (depth + 3,))]
    return TensorProgram(inputs, tuple(steps))


def _draw_order(rule: Rule, ctx: Context) -> Draw:
    from hypothesis import strategies as st

    _clean(ctx, (), ("add", "mul"), SAME_SHAPES)
    unary = _clean(ctx, ("exp", "relu", "log"), (), SAME_SHAPES)

    @st.composite
    def draw(d: Any) -> TensorProgram:
        # An intermediate u feeds two nodes (p and q) that meet again: a diamond, one to three in a chain.
        shape = tuple(d(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        inputs = [(shape, d(_values(shape, "positive"))) for _ in range(3)]
        steps: list[TensorStep] = []
        v = 0
        for level in range(d(st.integers(1, 3))):
            n = 3 + len(steps)
            f = d(st.sampled_from((None, *unary)))
            # Unary ops of the inputs only (positive, moderate): no later level leaves log's domain, overflows
            # exp or lands on relu's kink.
            if f is None or level > 0:
                steps.append(TensorStep("mul", (v, 1)))
            else:
                steps.append(TensorStep(f, (v,)))
            u = n
            steps += [TensorStep(d(st.sampled_from(("mul", "add"))), (u, 1)),
                      TensorStep(d(st.sampled_from(("mul", "add"))), (u, 2)), TensorStep("add", (n + 1, n + 2))]
            v = n + 3
        inputs.append((shape, d(_values(shape, "nonzero"))))
        # Renumber: the weight is the fourth input, so every step index moves up by one.
        moved = [TensorStep(s.op, tuple(i + 1 if i >= 3 else i for i in s.args), s.param) for s in steps]
        k = 4 + len(moved)
        moved += [TensorStep("mul", (k - 1, 3)), TensorStep("sum", (k,))]
        return TensorProgram(tuple(inputs), tuple(moved))

    return Draw(draw(), (diamonds(3), chain(60)))


def _draw_programs(rule: Rule, ctx: Context) -> Draw:
    ops = _clean(ctx, TENSOR_OPS, ("add", "mul", "sum"))
    return Draw(tensor_programs(ops, max_steps=6))


# ---------------------------------------------------------------------------------------------------------
# Hints: the actual mistake, recognised from the numbers
# ---------------------------------------------------------------------------------------------------------

# One sentence per recognised mistake; {k} is the leaf, {op} the op, {got}/{want} shapes, {n} a count.
CAUSES: dict[str, str] = {
    "unreduced": ("{op}'s backward gives v{k} a gradient of shape {got}, the broadcast result's shape, but v{k} "
                  "has shape {want}: sum the gradient over the axes broadcasting added (the leading ones, and "
                  "each axis where v{k} has size 1, with keepdims=True) before adding it to v{k}.grad"),
    "unreduced-error": ("{op}'s backward fails when its operands have different shapes: the gradient has the "
                        "broadcast result's shape; sum it down to each operand's shape (over the leading axes "
                        "broadcasting added, and each axis where the operand has size 1, keepdims=True)"),
    "reshape-back": "reshape's backward must give x a gradient of x's shape: x.grad += out.grad.reshape(x.shape)",
    "transpose-back": ("transpose's backward must transpose the gradient back (x.grad += out.grad.T), so x.grad "
                       "has x's shape and layout"),
    "matmul-swapped": ("in C = A @ B, A.grad += g @ B.T and B.grad += A.T @ g (each the shape of its operand): "
                       "{k}'s gradient is not that, but its transpose: the factors or the transposes are swapped"),
    "sum-axis": ("{op}(axis=...)'s backward must put the reduced axis back before broadcasting the gradient to "
                 "x's shape: np.expand_dims(g, axis) when keepdims is False (broadcast as it is, g lines up with "
                 "the wrong axis)"),
    "mean-divide": "mean's backward must divide the gradient by the number of elements averaged ({n} here)",
    "exp-input": "exp's derivative is exp(x), the output, not x: x.grad += out.data * out.grad",
    "log-sign": "log's derivative is +1/x: x.grad += out.grad / x.data (the sign is flipped)",
    "pow-minus-one": "the power rule is p * x**(p - 1): the gradient here is p * x**p (the - 1 is missing)",
    "pow-factor": "the power rule is p * x**(p - 1): the factor p is missing",
    "relu-mask": ("relu passes the gradient only where x > 0: here it also flows where x < 0 (out >= 0 holds "
                  "everywhere); take the mask from the input, x > 0, or from the output with out > 0"),
    "sign": "v{k}'s gradient has the wrong sign (in x - y, y gets -g; in x / y, y gets -g * x / y**2)",
    "no-chain": ("multiply the local derivative by the upstream gradient: v{k}.grad holds {op}'s local derivative "
                 "alone, without the factor out.grad"),
    "shape": "v{k}.grad has shape {got} but v{k} has shape {want}: a gradient always has its tensor's shape",
    "none": "v{k}.grad is still None after backward(): {op}'s backward never gave v{k} a gradient",
    "data-changed": "backward() must only add to .grad, never change .data (v{k}.data changed)",
    "no-seed": ("backward() must start from the output's gradient set to ones (out.grad = np.ones_like(out.data)), "
                "then go through the graph"),
    "sum-expand": ("sum's backward must give every element of x the upstream gradient: x.grad += "
                   "np.ones_like(x.data) * out.grad (a gradient has its tensor's shape)"),
    "overwrite": ("`=` where `+=` is needed: v{k} is used {n} times but its grad holds only one use's "
                  "contribution; every op's backward must add into .grad (self.grad = self.grad + ...), never "
                  "assign"),
    "order": ("every op is right and a tensor used twice gets both contributions, but an intermediate result that "
              "feeds two nodes gets a partial gradient: backward must process a node only after every node that "
              "uses it: build a topological order (a post-order depth-first walk with a visited set) and go through "
              "it in reverse"),
    "visits": ("an intermediate result that feeds two nodes passes its gradient on more than once: visit each node "
               "once (a visited set), after every node that uses it"),
}


def cause(kind: str, **fill: Any) -> str:
    """The hint for a recognised mistake: ``cause("mean-divide", n=3)``."""
    return CAUSES[kind].format(**fill)


def _upstream(program: TensorProgram, out_shape: tuple[int, ...]) -> np.ndarray:
    """The gradient arriving at the first step: the weight of ``(result * w).sum()``, or ones."""
    xs = program.arrays()
    if len(program.steps) > 2 and program.steps[1].op == "mul":
        return np.broadcast_to(xs[program.steps[1].args[1]], out_shape).astype(np.float64)
    return np.ones(out_shape)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    if len(g.shape) < len(shape):
        return None
    g = g.sum(axis=tuple(range(len(g.shape) - len(shape)))) if len(g.shape) > len(shape) else g
    if g.shape != tuple(max(a, b) for a, b in zip(g.shape, shape)) or \
            any(a != b and b != 1 for a, b in zip(g.shape, shape)):
        return None
    return g.sum(axis=tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1), keepdims=True)


def _near(a: np.ndarray | None, b: np.ndarray, asg: Assignment) -> bool:
    return a is not None and a.shape == b.shape and bool(np.allclose(a, b, rtol=max(asg.rel, 1e-6),
                                                                      atol=max(asg.abs, 1e-6)))


def _diagnose_op(op: str, program: TensorProgram, got: list, asg: Assignment) -> tuple[str, str] | None:
    """The mistake in ``op``'s backward that gives the engine's gradients, read off the first step's operands."""
    step = program.steps[0]
    xs = program.arrays()
    out_shape = _out_shape(op, [xs[i].shape for i in step.args], step.param)
    g = _upstream(program, out_shape)
    _, grads = reference(program)
    for k in dict.fromkeys(step.args):
        gk, want, x = got[k], grads[k], xs[k]
        if gk is None:
            if np.any(want != 0):
                return "none", cause("none", k=k, op=op)
            continue
        if _near(gk, want, asg):
            continue
        fill = {"k": k, "op": op, "got": tuple(gk.shape), "want": tuple(x.shape)}
        if gk.shape != want.shape:
            # Reshape, transpose and @ change shapes themselves: a wrong shape there is their own mistake.
            if op in SHAPE_CAUSES:
                return SHAPE_CAUSES[op], cause(SHAPE_CAUSES[op], k=f"v{k}")
            if gk.shape == tuple(out_shape) and _near(_unbroadcast(gk, x.shape), want, asg):
                return "unreduced", cause("unreduced", **fill)
            if op in ("sum", "mean") and step.param and step.param[0] is not None:
                return "sum-axis", cause("sum-axis", op=op)
            return "shape", cause("shape", **fill)
        if op in ("matmul", "transpose") and want.ndim == 2 and _near(gk, want.T, asg):
            return ("matmul-swapped", cause("matmul-swapped", k=f"v{k}")) if op == "matmul" else \
                ("transpose-back", cause("transpose-back"))
        if op in ("sum", "mean"):
            n = x.size // max(math.prod(out_shape), 1)
            if op == "mean" and _near(gk, want * n, asg):
                return "mean-divide", cause("mean-divide", n=n)
            try:
                flat = np.broadcast_to(g, x.shape) / (n if op == "mean" else 1)
            except ValueError:
                flat = None
            if flat is not None and step.param and step.param[0] is not None and _near(gk, flat, asg):
                return "sum-axis", cause("sum-axis", op=op)
        if op == "exp" and _near(gk, g * x, asg):
            return "exp-input", cause("exp-input")
        if op == "log" and _near(gk, -want, asg):
            return "log-sign", cause("log-sign")
        if op == "pow" and _near(gk, want * x, asg):
            return "pow-minus-one", cause("pow-minus-one")
        if op == "pow" and _near(gk, want / step.param, asg):
            return "pow-factor", cause("pow-factor")
        if op == "relu" and _near(gk, g, asg):
            return "relu-mask", cause("relu-mask")
        if _near(gk, -want, asg):
            return "sign", cause("sign", k=k)
        if len(program.steps) > 2:
            ones = [a if j != program.steps[1].args[1] else np.ones_like(a) for j, a in enumerate(xs)]
            if _near(gk, reference(_with_inputs(program, ones))[1][k], asg):
                return "no-chain", cause("no-chain", k=k, op=op)
    return None


def _got_of(finding: dict) -> list | None:
    got = finding.get("got")
    if got is None:
        return None
    return [None if g is None else np.array(g[1], dtype=np.float64).reshape(g[0]) for g in got]


def _with_cause(finding: dict, found: tuple[str, str] | None) -> str | None:
    if found is None:
        return None
    finding["cause"] = found[0]
    return found[1]


def _explained(hint: Callable[[Rule, dict, TensorProgram | None, Context], str]) -> Callable[..., str]:
    """``hint``, after the finding's rows get the second oracle, central differences, for the counterexample
    (once, after shrinking: the drawn programs stay clear of kinks, where the two oracles could differ)."""
    def explain(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
        if program is not None and finding.get("rows") and finding["rows"][0]["name"] != "output":
            cd = central(program)
            for row, c in zip(finding["rows"], cd):
                row["central"] = _show(c)
            _, grads = reference(program)
            if not all(np.allclose(c, w, rtol=1e-4, atol=1e-4) for c, w in zip(cd, grads)):
                finding["note"] = "central differences disagree with microgradx here (a kink?)"
            try:
                first = program in rule.kind.draw(rule, ctx).examples
            except Blocked:
                first = False
            if first:
                finding.update(shrunk=False, note="one of the examples tried first, not shrunk")
        return hint(rule, finding, program, ctx)
    return explain


def _hint_forward(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
    if finding.get("cause") == "forward-shape":
        return f"{SPELLINGS[rule.op]} must give the result NumPy gives (the same shape): compare with the same " \
               f"expression on the arrays themselves"
    return _error_hint(rule, finding) or f"{SPELLINGS[rule.op]} computes the wrong values: it must agree with " \
                                         f"NumPy on the .data arrays"


# The mistake a shape error in an op's backward points to.
SHAPE_CAUSES = {"matmul": "matmul-swapped", "transpose": "transpose-back", "reshape": "reshape-back"}


def _hint_op(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
    op = rule.op or "sum"
    got = _got_of(finding)
    if got is not None and program is not None:
        found = _with_cause(finding, _diagnose_op(op, program, got, ctx.asg))
        if found:
            return found
    err = finding.get("error", "")
    if err and rule.kind.name == "broadcast":
        finding["cause"] = "unreduced-error"
        return cause("unreduced-error", op=op)
    if err and op in SHAPE_CAUSES:
        finding["cause"] = SHAPE_CAUSES[op]
        return cause(SHAPE_CAUSES[op], k="the operand") + " (the shapes did not line up)"
    if err and op in ("sum", "mean") and program is not None and program.steps[0].param and \
            program.steps[0].param[0] is not None:
        finding["cause"] = "sum-axis"
        return cause("sum-axis", op=op)
    return _error_hint(rule, finding) or f"{UNKNOWN}: compare {op}'s backward with its vector-Jacobian product"


def _hint_seed(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
    if finding.get("cause") == "data-changed":
        return cause("data-changed", k=finding["rows"][0]["name"][1:].split(".")[0])
    got = _got_of(finding)
    if got is not None and program is not None:
        g = got[0]
        if g is None or not np.any(g):
            finding["cause"] = "no-seed"
            return cause("no-seed")
        if g.shape != program.arrays()[0].shape:
            finding["cause"] = "sum-expand"
            return cause("sum-expand")
    return _hint_op(rule, finding, program, ctx)


def _uses(program: TensorProgram) -> list[int]:
    return [sum(s.args.count(k) for s in program.steps) for k in range(len(program.inputs))]


def _split(program: TensorProgram) -> tuple[TensorProgram, list[list[int]]]:
    """The program with each use of a leaf made a leaf of its own (same values), and the new leaves of each old
    one: their gradients are the contributions of the uses.

    >>> p = TensorProgram((((1,), (3.0,)),), (TensorStep("mul", (0, 0)), TensorStep("sum", (1,))))
    >>> split, copies = _split(p); copies, [s.args for s in split.steps]
    ([[1, 2]], [(1, 2), (3,)])
    """
    n = len(program.inputs)
    extra = sum(a < n for s in program.steps for a in s.args)
    inputs = list(program.inputs)
    copies: list[list[int]] = [[] for _ in range(n)]
    steps = []
    for s in program.steps:
        args = []
        for a in s.args:
            if a < n:
                copies[a].append(len(inputs))
                args.append(len(inputs))
                inputs.append(program.inputs[a])
            else:
                args.append(a + extra)
        steps.append(TensorStep(s.op, tuple(args), s.param))
    return TensorProgram(tuple(inputs), tuple(steps)), copies


def _hint_accumulate(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
    got = _got_of(finding)
    if got is not None and program is not None:
        split, copies = _split(program)
        _, parts = reference(split)
        _, grads = reference(program)
        for k, uses in enumerate(_uses(program)):
            if uses < 2 or _near(got[k], grads[k], ctx.asg):
                continue
            contributions = [parts[c] for c in copies[k]]
            if any(_near(got[k], c, ctx.asg) for c in contributions):
                finding["cause"] = "overwrite"
                return cause("overwrite", k=k, n=uses)
    return _error_hint(rule, finding) or \
        f"{UNKNOWN}: a tensor used twice must receive the sum of both contributions (+=, never =)"


def _hint_order(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
    found = _error_hint(rule, finding)
    if found:
        return found
    got = _got_of(finding)
    if got is not None and program is not None:
        _, grads = reference(program)
        ratios = [np.abs(g).sum() / max(np.abs(w).sum(), 1e-12) for g, w in zip(got, grads) if g is not None]
        if ratios and max(ratios) > 1 + 1e-6 and all(r >= 1 - 1e-6 for r in ratios):
            finding["cause"] = "visits"
            return cause("visits")
    finding["cause"] = "order"
    return cause("order")


def _hint_programs(rule: Rule, finding: dict, program: TensorProgram | None, ctx: Context) -> str:
    got = _got_of(finding)
    if got is not None and program is not None:
        xs = program.arrays()
        for k, g in enumerate(got):
            if g is not None and g.shape != xs[k].shape:
                ops = sorted({s.op for s in program.steps if k in s.args})
                finding["cause"] = "shape"
                return cause("shape", k=k, got=tuple(g.shape), want=tuple(xs[k].shape)) + \
                    f" (v{k} is used by {', '.join(ops)}: look for an un-reduced broadcast gradient there)"
    return _error_hint(rule, finding) or (
        f"{UNKNOWN}: each op passed on its own, so look at how the ops of the smallest failing program above "
        f"combine (broadcasting, a value reused, reductions feeding elementwise ops)")


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------

def _protocol(*pieces: str) -> list[str]:
    return [f"protocol:{p}" for p in pieces]


def _needs_backward() -> list[str]:
    return _protocol("Tensor(data)", ".data", ".grad", "backward()")


def _needs_gradient(r: Rule, c: Context) -> list[str]:
    weight = ["gradient[mul]"] if r.op != "mul" else []
    return [*_needs_backward(), f"forward[{r.op}]", "seed", *weight]


TENSOR_KINDS: tuple[Kind, ...] = (
    Kind("forward", 1.0, "forward value and shape of {op}",
         lambda r, c: [*_protocol("Tensor(data)", ".data", SPELLINGS[r.op])], _draw_forward, lambda *a: None,
         _hint_forward, per_op=lambda op: True, backward=False),
    Kind("seed", 1.0, "backward() on x.sum() gives x a gradient of ones", lambda r, c: [*_needs_backward(),
                                                                                       "forward[sum]"],
         _draw_seed, _check_grads, _explained(_hint_seed)),
    Kind("gradient", 2.0, "gradient (vector-Jacobian product) of {op}, no broadcasting", _needs_gradient,
         _draw_gradient, _check_grads, _explained(_hint_op), per_op=lambda op: True),
    Kind("broadcast", 2.0, "{op} with operands that broadcast: each gradient reduced to its operand's shape",
         lambda r, c: [f"gradient[{r.op}]"], _draw_broadcast, _check_grads, _explained(_hint_op),
         per_op=lambda op: op in ELEMENTWISE),
    Kind("accumulate", 2.0, "a tensor used twice gets the sum of both contributions",
         lambda r, c: ["gradient[add]", "gradient[mul]"], _draw_accumulate, _check_grads, _explained(_hint_accumulate)),
    Kind("order", 2.0, "diamonds and deep chains: each node after every node that uses it",
         lambda r, c: ["accumulate"], _draw_order, _check_grads, _explained(_hint_order)),
    Kind("programs", 3.0, "random programs whose operands broadcast, shrunk to the smallest failing one",
         lambda r, c: ["order"], _draw_programs, _check_grads, _explained(_hint_programs)),
)


def _order_ops(kind: str, ops: tuple[str, ...]) -> tuple[str, ...]:
    """The graded ops in table order; for gradients mul first (the others are weighted by a product)."""
    ordered = [o for o in TENSOR_OPS if o in ops]
    if kind == "gradient" and "mul" in ordered:
        ordered.remove("mul")
        ordered.insert(0, "mul")
    return tuple(ordered)


def build_tensor_rules(ops: tuple[str, ...] = TENSOR_OPS, assignment: Assignment | None = None) -> list[Rule]:
    """The rules for a Tensor engine graded on ``ops``, in the order they run, without the ones skipped."""
    return expand_rules(TENSOR_KINDS, lambda kind: _order_ops(kind, ops), assignment or Assignment(kind="tensor"),
                        lambda kind, op: kind.title.format(op=SPELLINGS.get(op, "")))


# ---------------------------------------------------------------------------------------------------------
# Grading one engine
# ---------------------------------------------------------------------------------------------------------

_SAID = {"data": "the array is in .{v}", "grad": ".grad is None before backward() (read as zeros)",
         "seed": "backward() takes the seed (it is given ones)", "axis": "reductions take the axis as {v}",
         "keepdims": "reductions take keepdims as {v}=", "transpose": "transposes with the method transpose()",
         "reshape": "",
         "dtype": "the data is float32: compared with relative tolerance 1e-4"}


def _conventions_note(detected: dict[str, str], declared: dict[str, str]) -> str | None:
    """One sentence for the conventions that differ from microgradx's, each marked detected or declared."""
    parts = []
    for key, value in {**detected, **declared}.items():
        if value == CONVENTIONS[key] or key == "reshape":  # NOTE: NumPy itself takes both reshape spellings
            continue
        v = {"positional": "a plain argument, sum(0)"}.get(value, f"{value}=" if key == "axis" else value)
        parts.append(_SAID[key].format(v=v) + (" (declared)" if key in declared else " (detected)"))
    return "conventions: " + "; ".join(parts) if parts else None


def _tolerances(asg: Assignment, conv: dict[str, str]) -> Assignment:
    if conv.get("dtype") == "float32":
        return replace(asg, rel=max(asg.rel, 1e-4), abs=max(asg.abs, 1e-5))
    return asg


def grade_tensor(engine: str | os.PathLike, assignment: Assignment | None = None, *,
                 ops: Sequence[str] | None = None, seed: int | None = None, only: Sequence[str] | None = None,
                 progress: Callable[[RuleResult], None] | None = None) -> Report:
    """Grade the ``Tensor`` class in a student's file against every rule for its ops; never raises for anything
    the student's code does. ``ops`` (else ``assignment.ops``, else every op of ``TENSOR_OPS``) and ``only``
    work as in ``grade``."""
    from .runner import _hypothesis_home

    asg = replace(assignment or Assignment(), kind="tensor")
    path = Path(engine)
    if not path.is_file():
        raise AssignmentError(f"no such engine file: {engine}")
    check_ops(ops, TENSOR_OPS, "Tensor protocol")
    if only:
        check_rule_patterns(only, [r.name for r in build_tensor_rules(TENSOR_OPS, asg)])
    with _hypothesis_home():
        return _grade(path, str(engine), asg, ops, seed, only, progress)


def _ask(conv: dict[str, str]) -> Callable[..., dict]:
    def ask(rule: Rule, box: Sandbox, program: TensorProgram, timeout: float | None = None) -> dict:
        _ensure(box)
        return box.request(wire(program, rule.kind.backward, conv), timeout=timeout)
    return ask


def _grade(path: Path, engine: str, asg: Assignment, ops: Sequence[str] | None, seed: int | None,
           only: Sequence[str] | None, progress: Callable[[RuleResult], None] | None) -> Report:
    from .runner import _setup_report, run_rules

    start = time.monotonic()
    deadline = start + asg.limits.total
    graded = tuple(o for o in TENSOR_OPS if o in (tuple(ops or asg.ops or ()) or TENSOR_OPS))
    cls = DEFAULT_CLASS if asg.cls == "Value" else asg.cls
    setup_asg = replace(asg, cls=cls)
    box = None
    try:
        try:
            box = Sandbox(path, cls=cls, probes=graded, limits=asg.limits, worker=WORKER,
                          validate=functools.partial(validate_reply, fields=FIELDS, sizes=sizes))
        except EngineCrash as e:
            return _setup_report(path, engine, setup_asg, graded, f"import: the engine {e.reason}", start)
        hello = box.hello
        if not hello.get("ok"):
            where = f" at {hello['where']}" if hello.get("where") else ""
            error = str(hello.get("error"))
            problem = error if error.startswith("the file defines no class") else f"import raised {error}{where}"
            return _setup_report(path, engine, setup_asg, graded, problem, start)
        conv = {**hello["conventions"], **asg.conventions}
        notes: list[str] = []
        said = _conventions_note(hello["conventions"], asg.conventions)
        if said:
            notes.append(said)
        if hello.get("module") not in (None, path.stem):
            notes.append(f"{cls} is defined in module {hello['module']!r}, not in the submitted file")
        tol = _tolerances(asg, conv)
        missing = {str(k): str(v) for k, v in dict(hello.get("missing") or {}).items()}
        ctx = Context(graded, tol, missing)
        results = []
        if missing:
            results.append(RuleResult("protocol", "the class has every piece of the Tensor protocol", 0.0, 0.0,
                                      "failed", "visible", "the rules that need a missing piece are blocked",
                                      {"formula": "", "rows": [], "problem": "; ".join(missing.values()),
                                       "missing": sorted(missing)}))
            ctx.status["protocol"] = "failed"
        rules = build_tensor_rules(graded, asg)
        if only:
            rules = [r for r in rules if any(matches(r.name, pat) for pat in only)]
        ctx.planned = {r.name for r in rules}
        ask = _ask(conv)
        results += run_rules(rules, ctx, asg, deadline, lambda rule: run_rule(
            rule, box, ctx, seed, deadline, _ask=ask, check=judge, prune=lambda p: p), progress)
    finally:
        if box:
            box.close()
    return Report(engine, asg.name, graded, results, time.monotonic() - start, seed, notes)
