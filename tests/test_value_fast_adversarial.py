"""The scalar fast path attacked where its speed tricks could show: an interrupt at any bytecode of the pass, grads
that are not floats, data set by hand, gradients that overflow only when added to an earlier backward's, and the
second derivatives built on the kernels. Oracles: ``fast.reference_only()``, bit for bit, and PyTorch."""

from __future__ import annotations

import math
import sys
import threading
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microgradx import MLP, OPS, DomainError, Layer, Neuron, Value, fast, graph, topological_order, zero_grad
from microgradx.examples import example3, two_paths
from microgradx.stepper import Stepper, describe
from microgradx.strategies import DEFAULT_OPS, Program, Step, programs


def bits(x):
    """A float as its exact bits (so 0.0 and -0.0 differ), with its type; anything else as itself."""
    return x.hex() if type(x) is float else x

# ---------------------------------------------------------------------------------------------------------
# An interrupt (Ctrl-C) anywhere in the fast pass leaves every grad as it was
# ---------------------------------------------------------------------------------------------------------

# The functions an interrupt is injected into: the fast pass, its helpers, and the reference it re-runs to raise
# its error. (Not the two public functions, whose only statement is the ``with`` holding the pass's lock: at a
# bytecode where no real interrupt can arrive, on leaving the block, a traced one would keep the lock.)
_INTERRUPTIBLE = {f.__code__ for f in (fast._backward, fast._order, fast._order_marking, fast._add_kept,
                                       fast._give_back, fast._reference_backward, graph.backprop,
                                       graph.topological_order)}


def _interrupt_at(k: int):
    """A trace function raising KeyboardInterrupt at the ``k``-th bytecode run inside ``_INTERRUPTIBLE``: once, and
    only while no other exception is on its way (an interrupt during the clean-up after an error is a second
    exception, which no Python code can promise to survive)."""
    count = [0]

    def local(frame, event, arg):
        if event == "exception":
            count[0] = -sys.maxsize
        elif event == "opcode":
            count[0] += 1
            if count[0] == k:
                raise KeyboardInterrupt
        return local

    def enter(frame, event, arg):
        if frame.f_code in _INTERRUPTIBLE:
            frame.f_trace_opcodes, frame.f_trace_lines = True, False
            return local
        return None
    return enter


def _chain_with_shared_nodes(x, w):
    return (x * w + x).tanh() * w + (x * w).relu()


def _overflowing(x, w):
    u = x * 1e300
    return u + u * w  # backward with seed 1e10: the contributions overflow, the reference raises


@pytest.mark.parametrize("build, seed", [(_chain_with_shared_nodes, 1.0), (_overflowing, 1e10),
                                         (lambda x, w: x, 2.0)])  # a root that is a leaf
@pytest.mark.parametrize("call", ["backward", "value_order"])
def test_an_interrupt_at_any_bytecode_leaves_every_grad_as_it_was(build, seed, call):
    def fresh():
        x, w = Value(0.5, label="x"), Value(-1.5, label="w")
        y = build(x, w)
        order = topological_order(y)
        earlier = [0.0, -0.0, 0.25, None, 0.0, 3]  # fresh, signed zero, an earlier sum, cleared, ...
        for k, n in enumerate(order):
            n.grad = earlier[k % len(earlier)]
        return y, order, [bits(n.grad) for n in order]

    def run(y):
        if call == "value_order":
            return fast.value_order(y)
        try:
            y.backward(seed)
        except DomainError as e:
            return str(e)
    y, order, before = fresh()
    with fast.reference_only():
        completed = run(y), [bits(n.grad) for n in order]
    y, order, before = fresh()
    interrupted = 0
    for k in range(1, 100_000):
        y, order, before = fresh()
        sys.settrace(_interrupt_at(k))
        try:
            result = run(y)
        except KeyboardInterrupt:
            result = KeyboardInterrupt
        finally:
            sys.settrace(None)
        after = [bits(n.grad) for n in order]
        if result is KeyboardInterrupt:  # all or nothing: as before, or (interrupted on returning) as completed
            interrupted += 1
            assert after == before or (call == "backward" and after == completed[1]), f"interrupted at bytecode {k}"
            continue
        if call == "value_order":
            assert after == before and [id(n) for n in result] == [id(n) for n in order]
        else:  # the reference's gradients, or its error with every grad as it was
            assert (result, after) == completed
        break
    assert interrupted > 50  # the trace reached the pass


# ---------------------------------------------------------------------------------------------------------
# Data set by hand to a non-finite float: refused by every op, fast or not, never absorbed
# ---------------------------------------------------------------------------------------------------------

NON_FINITE = [math.inf, -math.inf, math.nan]


def _outcome(fn):
    """The node ``fn()`` builds (data and partials as bits), or the type and words of the error it raises."""
    try:
        v = fn()
    except Exception as e:  # noqa: BLE001 - the type and words of every error are compared
        return type(e), str(e)
    return bits(v.data), tuple(map(bits, v.partials))


@pytest.mark.parametrize("op", [op for op in OPS.values() if op.methods], ids=lambda op: op.name)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_an_input_whose_data_was_set_to_a_non_finite_float_is_refused_by_every_row(op, bad):
    # relu(nan) = 0, sigmoid(-inf) = 0, max(-inf, 0.5) = 0.5: a saturating row would hide the bad number
    for k in range(op.arity):
        def build(k=k):
            xs = [Value(0.5, label=f"v{i}") for i in range(op.arity)]
            xs[k].data = bad  # as an update p.data -= lr * p.grad that overflowed leaves it
            return getattr(xs[0], op.methods[0])(*xs[1:])
        fast_outcome = _outcome(build)
        with fast.reference_only():
            assert _outcome(build) == fast_outcome
        assert fast_outcome[0] is DomainError and f"v{k}" in fast_outcome[1] and op.name in fast_outcome[1]


@pytest.mark.parametrize("name", fast.VALUE_KERNELS)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_each_kernel_refuses_a_non_finite_operand_as_the_reference(name, bad):
    unary = name in ("__neg__", "relu", "tanh")
    for k in range(1 if unary else 2):
        def build(k=k):
            x, y = Value(0.5, label="x"), Value(-2.0, label="y")
            (x, y)[k].data = bad
            return getattr(Value, name)(x) if unary else getattr(Value, name)(x, y)
        fast_outcome = _outcome(build)
        with fast.reference_only():
            assert _outcome(build) == fast_outcome
        assert fast_outcome[0] is DomainError


@pytest.mark.parametrize("where", ["w1", "x0", "b"])
@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_neuron_refuses_a_parameter_or_input_set_to_a_non_finite_float(where, bad):
    def build():
        n = Neuron(2, "relu", label="n", seed=0)
        xs = [Value(0.5, label="x0"), Value(-1.0, label="x1")]
        {p.label: p for p in [*n.parameters(), *xs]}[f"n.{where}" if where != "x0" else "x0"].data = bad
        return n(xs)
    fast_outcome = _outcome(build)
    with fast.reference_only():
        assert _outcome(build) == fast_outcome
    assert fast_outcome[0] is DomainError


# ---------------------------------------------------------------------------------------------------------
# Grads that are not Python floats before backward: summed exactly as the reference sums them
# ---------------------------------------------------------------------------------------------------------

def _grad_record(g):
    """A grad as what a user sees of it: its type and value (floats as bits, a Value as its data)."""
    if isinstance(g, Value):
        return "Value", bits(g.data)
    if isinstance(g, np.ndarray):
        return "ndarray", g.dtype.name, g.shape, g.tolist()
    return type(g).__name__, bits(float(g)) if isinstance(g, (float, np.floating)) else repr(g)


EARLIER_GRADS = [np.float64(0.0), np.float64(-0.0), np.float32(0.0), np.float64(1.5), np.zeros(()), np.zeros(2),
                 Fraction(0), Fraction(1, 3), 0, False, True, -0.0, None, Value(0.5)]


@pytest.mark.parametrize("earlier", EARLIER_GRADS, ids=repr)
@pytest.mark.parametrize("seed", [1.0, 0.0, -0.0])
def test_an_earlier_grad_of_any_number_type_gets_the_reference_sum(earlier, seed):
    def run():
        x, w = Value(2.0, label="x"), Value(-0.0, label="w")
        y = x * w + x * 0.0 + (x * w).relu()  # zero and signed-zero gradients on several nodes
        order = topological_order(y)
        for n in order:
            n.grad = earlier
        try:
            y.backward(seed)
        except Exception as e:  # noqa: BLE001 - the type and words of every error are compared
            return type(e), str(e), [_grad_record(n.grad) for n in order]
        return [_grad_record(n.grad) for n in order]
    fast_result = run()
    with fast.reference_only():
        assert run() == fast_result


# ---------------------------------------------------------------------------------------------------------
# A backward pass that fails leaves every grad as it was, on both paths
# ---------------------------------------------------------------------------------------------------------

class _Interrupts:
    """An earlier grad whose sum with this pass's gradient is interrupted (as by Ctrl-C)."""

    def __add__(self, other):
        raise KeyboardInterrupt

    __radd__ = __add__


@pytest.mark.parametrize("build, seed, earlier, error", [
    (lambda x: (x * 1e300) * 1.0, 1e10, 0.25, DomainError),         # a contribution overflows on an edge
    (lambda x: x * 1e300 + x * 1e300, 1e8, 0.25, DomainError),      # a leaf's sum over its uses overflows
    (lambda x: (x * 2.0).tanh() * 3.0, 1.0, Decimal(1), TypeError),  # an earlier grad that cannot be added to
    (lambda x: (x * 2.0).tanh() * 3.0, 1.0, _Interrupts(), KeyboardInterrupt),
])
@pytest.mark.parametrize("create_graph", [False, True])
def test_a_backward_that_fails_leaves_every_grad_as_it_was_on_both_paths(build, seed, earlier, error, create_graph):
    def run():
        x = Value(1.0, label="x")
        y = build(x)
        order = topological_order(y)
        for k, n in enumerate(order):
            n.grad = earlier if n is x else [0.0, -0.0, 0.5][k % 3]
        before = [bits(n.grad) for n in order]
        with pytest.raises(error) as info:
            y.backward(seed, create_graph=create_graph)
        assert [bits(n.grad) for n in order] == before
        return str(info.value)
    fast_error = run()
    with fast.reference_only():
        assert run() == fast_error


# ---------------------------------------------------------------------------------------------------------
# An earlier grad plus this pass's gradient that is not a finite float: refused, never a silent inf or nan
# ---------------------------------------------------------------------------------------------------------

def test_a_second_backward_whose_sum_overflows_names_the_node_and_changes_nothing():
    x = Value(1.0, label="x")
    y = x * 1.0
    y.label = "y"
    y.backward(1e308)
    with pytest.raises(DomainError, match=r"'y'.*1e\+308.*zero_grad") as info:
        y.backward(1e308)  # 1e308 + 1e308 overflows in y's (and x's) grad
    assert (info.value.op, info.value.label) == ("backward", "y")
    assert (x.grad, y.grad) == (1e308, 1e308)


@settings(max_examples=60)
@given(programs(DEFAULT_OPS, max_steps=8),
       st.lists(st.sampled_from(["fresh", 1e308, -1e308, 0.5, math.inf, math.nan, -0.0]), min_size=20, max_size=20),
       st.sampled_from([1.0, 1e308, -1e308, 1e-300]))
def test_no_backward_leaves_a_non_finite_grad_and_both_paths_agree(program, earlier, seed):
    def run():
        out, _ = program.build()
        order = topological_order(out)
        for n, g in zip(order, earlier):
            if g != "fresh":
                n.grad = g
        before = [bits(n.grad) for n in order]
        try:
            out.backward(seed)
        except DomainError as e:
            assert [bits(n.grad) for n in order] == before
            return str(e)
        assert all(math.isfinite(n.grad) for n in order)
        return [bits(n.grad) for n in order]
    fast_result = run()
    with fast.reference_only():
        assert run() == fast_result


# ---------------------------------------------------------------------------------------------------------
# Threads: backward calls on graphs that share parameters, each one whole
# ---------------------------------------------------------------------------------------------------------

def test_backward_calls_in_threads_sharing_parameters_give_the_one_thread_gradients():
    # The fast pass marks nodes in their grad slots while it runs: two passes over shared parameters at once
    # must not see each other's marks (they did: gradients off by tens, silently).
    def train(model, k):
        for i in range(25):
            model([0.1 * k, -0.2 * i]).backward()
    shared, alone = MLP(2, [8, 8, 1], seed=0), MLP(2, [8, 8, 1], seed=0)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=train, args=(shared, k), daemon=True) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(interval)
    for k in range(3):
        train(alone, k)
    # the same sums, added in another order: equal to rounding
    assert [p.grad for p in shared.parameters()] == pytest.approx([p.grad for p in alone.parameters()], rel=1e-9,
                                                                  abs=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Independent oracles: PyTorch for the kernels' gradients, the reference for second derivatives
# ---------------------------------------------------------------------------------------------------------

KERNEL_OPS = ("add", "sub", "mul", "neg", "relu", "tanh")


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(programs(KERNEL_OPS, max_steps=10))
def test_the_kernels_gradients_match_pytorch(torch, program):
    out, leaves = program.build()
    out.backward()
    t_out, t_leaves = program.build(lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True))
    t_out.backward()
    assert out.data == pytest.approx(t_out.item(), rel=1e-12, abs=1e-15)
    got = [leaf.grad for leaf in leaves]
    want = [0.0 if t.grad is None else t.grad.item() for t in t_leaves]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


@settings(max_examples=20)
@given(programs(("add", "sub", "mul", "neg", "relu", "tanh", "exp", "div"), max_steps=6, max_inputs=2))
@example(Program(inputs=(-0.0,), steps=(Step(op="mul", args=(0, 0), param=None),), numbers=frozenset()))  # -0.0 * 2
def test_second_derivatives_built_on_the_kernels_are_the_reference_s_bit_for_bit(program):
    def number(g):  # a grad is a Value after create_graph, the float 0.0 where no path leads
        return bits(g.data if isinstance(g, Value) else g)

    def hessian():
        out, leaves = program.build()
        first = graph.grad(out, leaves, create_graph=True)
        out.backward(create_graph=True)  # the same, added to the fresh grads (0.0 + -0.0 is +0.0)
        assert [number(0.0 + g) for g in first] == [number(leaf.grad) for leaf in leaves]
        second = [graph.grad(g, leaves) for g in first]
        first[0].backward()  # the fast pass on a graph whose leaves hold Values in their grads
        return [bits(h) for row in second for h in row], [number(leaf.grad) for leaf in leaves]
    fast_result = hessian()
    with fast.reference_only():
        assert hessian() == fast_result


# ---------------------------------------------------------------------------------------------------------
# A layer's number inputs become leaves by Value's own rule (the weighted sum reads only Values)
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, error", [("1", TypeError), (True, TypeError), (None, TypeError),
                                        (math.nan, DomainError), (10**400, DomainError)],
                         ids=["str", "bool", "None", "nan", "10**400"])
def test_a_layer_refuses_an_input_value_would_refuse_naming_the_layer_and_input(bad, error):
    with pytest.raises(error, match=r"L1: input x1"):
        Layer(2, 1, label="L1", seed=0)([0.5, bad])  # float("1") and float(True) used to pass as 1.0
    with pytest.raises(error):
        Value(bad)


def test_a_layer_takes_ints_and_numpy_numbers_as_value_does():
    out = Layer(3, 1, label="L1", seed=0)([1, np.float32(0.5), np.float64(-2.0)])[0]
    with fast.reference_only():
        ref = Layer(3, 1, label="L1", seed=0)([Value(1.0, label="x0"), Value(0.5, label="x1"),
                                               Value(-2.0, label="x2")])[0]
    assert bits(out.data) == bits(ref.data)


# ---------------------------------------------------------------------------------------------------------
# The course's worked examples: the same steps and gradients on both paths, and SymPy's derivatives
# ---------------------------------------------------------------------------------------------------------

def _example_steps(build):
    """The stepper's text for every step of the graph ``build()``, and each node's grad after backward (bits),
    which must be the grads the stepper's pass left."""
    out, wrt = build()
    steps = [describe(ev) for ev in Stepper(out)]
    stepped = [bits(n.grad) for n in topological_order(out)]
    zero_grad(out)
    out.backward()
    assert [bits(n.grad) for n in topological_order(out)] == stepped
    return steps, stepped, wrt.grad


@pytest.mark.parametrize("name", ["example 3 (thesis)", "two paths (Unit 1)"])
def test_the_worked_examples_step_and_backpropagate_as_the_reference_and_sympy(name):
    w = sympy.Symbol("w", real=True)
    if name == "two paths (Unit 1)":
        build, expr, at = (lambda: two_paths(2.0)), sympy.cos(w**2) + sympy.sin(w**2), 2.0
    else:
        def build():
            ex = example3()
            return ex.J, ex.w1
        sig = lambda z: 1 / (1 + sympy.exp(-z))  # noqa: E731 - the thesis' g
        expr, at = (sig(sig(2 * w) * sympy.Rational(1, 2)) - sympy.Rational(1, 4)) ** 2, 0.75
    fast_result = _example_steps(build)
    with fast.reference_only():
        assert _example_steps(build) == fast_result
    assert fast_result[2] == pytest.approx(float(sympy.diff(expr, w).subs(w, at)), rel=1e-13)


# ---------------------------------------------------------------------------------------------------------
# A subclass of Value that redefines how its nodes pass gradients back
# ---------------------------------------------------------------------------------------------------------

class _DoublingVjp(Value):
    """A node whose backward passes twice the gradient (a student's experiment, or a deliberately wrong engine)."""

    __slots__ = ()

    def vjp(self, g, create_graph=False):
        return tuple(2 * c for c in super().vjp(g, create_graph))


class _OnlyAMethod(Value):
    """A subclass that adds a method and changes nothing about backward."""

    __slots__ = ()

    def double(self):
        return self * 2.0


def test_backward_honours_a_subclass_s_vjp_as_grad_and_the_reference_do(monkeypatch):
    def run():
        x = Value(0.8, label="x")
        y = x.sin()
        y.__class__ = _DoublingVjp
        z = y * 3.0 + x
        z.backward()
        return x.grad, graph.grad(z, [x])[0]
    fast_grads = run()
    with fast.reference_only():
        assert run() == fast_grads
    assert fast_grads == (6.0 * math.cos(0.8) + 1.0, 6.0 * math.cos(0.8) + 1.0)
    calls = []  # a subclass that leaves backward alone still runs the fast pass
    monkeypatch.setattr(fast, "value_backward", lambda *a: calls.append(a))
    x = Value(0.8)
    y = x * 2.0
    y.__class__ = _OnlyAMethod
    y.double().backward()
    assert len(calls) == 1
