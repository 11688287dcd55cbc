"""The scalar fast path (``microgradx.fast``: Value's operator kernels, topological order and backward pass)
builds the same nodes and gives the same gradients as its readable reference (``fast.reference_only()``), bit
for bit, on random graphs with shared subexpressions, including the errors it raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgradx import DomainError, Neuron, Value, fast, grad, topological_order
from microgradx.strategies import DEFAULT_OPS, programs

# Any float a node can hold, with the extremes that overflow and the two zeros.
finite = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e308, -1e308])
operand = finite | st.integers(-3, 3) | st.just(True) | st.just("2")


def bits(x):
    """A float as its exact bits (so 0.0 and -0.0 differ); anything else as itself."""
    return x.hex() if type(x) is float else x


def node_record(v):
    """Everything a node records, floats as bits; parents by identity."""
    return (bits(v.data), bits(v.grad), v.op, v.label, tuple(map(id, v.parents)), tuple(map(bits, v.partials)),
            bits(v.arg))


def outcome(fn, *args):
    """What ``fn(*args)`` gives: the node it records (its number operand as data), or the error it raises."""
    try:
        out = fn(*args)
    except Exception as e:  # noqa: BLE001 - the type and words of every error are compared
        return ("raises", type(e), str(e))
    if out is NotImplemented:
        return ("NotImplemented",)
    rec = node_record(out)
    # A number operand becomes a fresh leaf on both paths: compare it by what it holds, not by identity.
    parents = tuple((bits(p.data), p.op, p.label) if p not in args else args.index(p) for p in out.parents)
    return rec[:4] + (parents,) + rec[5:]


@pytest.mark.parametrize("name", fast.VALUE_KERNELS)
@given(x=finite, y=finite, other=operand)
def test_each_kernel_records_the_node_the_reference_records(name, x, y, other):
    a = Value(x, label="a")
    method = getattr(Value, name)
    unary = name in ("__neg__", "relu", "tanh")
    for args in [(a,)] if unary else [(a, other), (a, Value(y))]:  # a number operand, and a Value one
        fast_out = outcome(method, *args)
        with fast.reference_only():
            assert outcome(method, *args) == fast_out


@given(programs(DEFAULT_OPS, max_steps=12))
def test_the_order_is_the_reference_order(program):
    out, _ = program.build()
    order = fast.value_order(out)
    assert [id(n) for n in order] == [id(n) for n in topological_order(out)]
    assert all(type(n.grad) is float for n in order)  # the marks are gone


def _build(program, earlier):
    """The program's graph with ``earlier`` gradients already on its nodes (as after an earlier backward; "fresh"
    leaves a node's grad as the node was built)."""
    out, _ = program.build()
    order = topological_order(out)
    for n, g in zip(order, earlier):
        if g != "fresh":
            n.grad = g
    return out, order


@given(programs(DEFAULT_OPS, max_steps=12), st.lists(st.sampled_from(["fresh", 0.0, -0.0, 0, 0.5, -3.25, None]),
                                                     min_size=40, max_size=40),
       st.sampled_from([1.0, -1.0, 0.0, -0.0, 2.5, 1e-300]))
def test_backward_gives_the_reference_gradients_bit_for_bit(program, earlier, seed):
    out, order = _build(program, earlier)
    out.backward(seed)
    with fast.reference_only():
        ref_out, ref_order = _build(program, earlier)
        ref_out.backward(seed)
    assert [node_record(n)[:2] for n in order] == [node_record(n)[:2] for n in ref_order]
    assert [bits(n.data) for n in order] == [bits(n.data) for n in ref_order]


@given(programs(DEFAULT_OPS, max_steps=12))
def test_backward_twice_accumulates_as_the_reference(program):
    out, order = _build(program, [])
    out.backward()
    out.backward()
    with fast.reference_only():
        ref_out, ref_order = _build(program, [])
        ref_out.backward()
        ref_out.backward()
    assert [bits(n.grad) for n in order] == [bits(n.grad) for n in ref_order]


@given(programs(DEFAULT_OPS, max_steps=12), st.sampled_from([1e308, -1e308, 1e300, 1e154, 1.0]))
def test_a_nonfinite_gradient_anywhere_raises_the_reference_error_and_leaves_every_grad(program, seed):
    def run():
        out, order = _build(program, [0.25] * 40)
        try:
            out.backward(seed)
        except DomainError as e:
            return str(e), [bits(n.grad) for n in order]
        return None, [bits(n.grad) for n in order]
    fast_error, fast_grads = run()
    with fast.reference_only():
        ref_error, ref_grads = run()
    assert (fast_error, fast_grads) == (ref_error, ref_grads)
    if fast_error is not None:
        assert fast_grads == [bits(0.25)] * len(fast_grads)  # every grad given back, on both paths


@pytest.mark.parametrize("build, fails", [
    (lambda x: x * 1e200, True),                     # a contribution overflows on an edge
    (lambda x: x + x, True),                         # a leaf's sum over its uses overflows
    (lambda x: (x * 1.0 + x * 1.0) * 0.5, True),     # ... one step further up
    (lambda x: (lambda u: u + u)(x * 1.0), True),    # an inner node's sum overflows, then its edge
    (lambda x: (lambda u: u + u)(x.relu()), True),   # ... through a relu
    (lambda x: (x * 0.1).tanh() * 0.5, False),       # no error: the control
])
def test_a_nonfinite_gradient_raises_the_reference_error_and_leaves_every_grad(build, fails):
    x = Value(2.0, label="x")
    y = build(x)
    order = topological_order(y)
    for n in order:
        n.grad = 0.25
    seed = 1e308
    try:
        y.backward(seed)
        fast_error = None
    except DomainError as e:
        fast_error = str(e)
        assert [n.grad for n in order] == [0.25] * len(order)  # the fast pass gives every grad back
    with fast.reference_only():
        x2 = Value(2.0, label="x")
        y2 = build(x2)
        try:
            y2.backward(seed)
            ref_error = None
        except DomainError as e:
            ref_error = str(e)
    assert fast_error == ref_error
    assert (ref_error is not None) == fails


@pytest.mark.parametrize("earlier", [-0.0, None, 0.0, 0, 2.0])
@pytest.mark.parametrize("seed", [-0.0, 0.0, -2.0])
def test_signed_zero_gradients_add_to_earlier_grads_as_the_reference(earlier, seed):
    def run():
        x = Value(3.0, label="x")
        u = x * 1.0
        y = u * 1.0 + u * -0.0
        for n in topological_order(y):
            n.grad = earlier
        y.backward(seed)
        return [bits(n.grad) for n in topological_order(y)]
    fast_grads = run()
    with fast.reference_only():
        assert run() == fast_grads


class Refuses:
    """A grad that cannot be added to: the backward pass fails on it, after every other node's sum is made."""

    def __add__(self, other):
        raise KeyboardInterrupt


def test_an_interrupted_backward_gives_every_grad_back():
    x, w = Value(0.5, label="x"), Value(-1.5, label="w")
    y = (x * w + x).tanh() * w
    refuses = Refuses()
    order = topological_order(y)
    before = [refuses if n is x else -0.0 if n is w else n.grad for n in order]
    for n, g in zip(order, before):
        n.grad = g
    with pytest.raises(KeyboardInterrupt):
        y.backward()
    assert [bits(n.grad) for n in order] == [bits(g) for g in before]
    assert fast.value_order(y) == order and [bits(n.grad) for n in order] == [bits(g) for g in before]


def test_the_backward_pass_matches_grad_and_the_stepper_s_generator():
    x, w = Value(0.5, label="x"), Value(-1.5, label="w")
    y = ((x * w).tanh() + x * x - w).relu() * 2.0 + (-x)
    gx, gw = grad(y, [x, w])  # the generic pass (no side effects)
    y.backward()              # the fast pass
    assert (x.grad, w.grad) == (gx, gw)


def test_reference_only_turns_the_kernels_and_the_fast_backward_off(monkeypatch):
    calls = []
    monkeypatch.setattr(fast, "value_backward", lambda *a: calls.append("fast backward"))
    x = Value(3.0)
    with fast.reference_only():
        y = x * x + 1.0
        y.backward()
    assert calls == [] and x.grad == 6.0
    y.backward()
    assert calls == ["fast backward"]


def test_a_labelled_inner_node_keeps_its_label_and_op():
    x = Value(2.0, label="x")
    y = x * x
    y.label = "y"
    assert (y.label, y.op.name, x.label, x.op) == ("y", "mul", "x", None)
    y.label = None
    assert (y.label, y.op.name) == (None, "mul")
    z = x ** 3
    assert (z.arg, z.parents, z.partials) == (3.0, (x,), (12.0,))


def graph_record(out):
    """Every node behind ``out`` in topological order: what it records, its parents as positions in the order."""
    order = topological_order(out)
    at = {id(n): k for k, n in enumerate(order)}
    return [(bits(n.data), bits(n.grad), n.op, n.label, tuple(at[id(p)] for p in n.parents),
             tuple(map(bits, n.partials))) for n in order]


def neuron_outcome(ws, xs, b, activation):
    """What a Neuron with weights ``ws`` and bias ``b`` gives on ``xs`` (a number at an odd position is passed as
    it is, any other as a labelled Value): its graph, or the error it raises."""
    n = Neuron(len(ws), activation, bias=b is not None, label="n")
    n.w = [Value(w, label=f"w{k}") for k, w in enumerate(ws)]
    if b is not None:
        n.b = Value(b, label="b")
    inputs = [x if k % 2 else Value(x, label=f"x{k}") for k, x in enumerate(xs)]
    try:
        out = n(inputs)
    except Exception as e:  # noqa: BLE001 - the type and words of every error are compared
        return ("raises", type(e), str(e))
    return graph_record(out)


@given(st.lists(finite, min_size=1, max_size=6), st.lists(finite | st.integers(-3, 3), min_size=1, max_size=6),
       st.none() | finite, st.sampled_from([None, "relu", "tanh"]))
def test_the_neuron_s_weighted_sum_builds_the_reference_nodes(ws, xs, b, activation):
    xs = (xs * 6)[:len(ws)]  # as many inputs as weights
    fast_out = neuron_outcome(ws, xs, b, activation)
    with fast.reference_only():
        assert neuron_outcome(ws, xs, b, activation) == fast_out


def test_the_weighted_sum_kernel_builds_the_sum_and_hands_back_what_it_does_not_handle():
    w, x = [Value(2.0), Value(3.0)], [Value(0.5), Value(-1.0)]
    out = fast.value_weighted_sum(Value, w, x, None)
    assert (out.data, out.op.name, out.parents[0].parents, out.parents[1].parents) == (-2.0, "add", (w[0], x[0]),
                                                                                        (w[1], x[1]))
    assert fast.value_weighted_sum(Value, w, [Value(0.5), 1.0], None) is None      # a float input
    assert fast.value_weighted_sum(Value, [Value(1e200)], [Value(1e200)], None) is None  # overflows
    assert fast.value_weighted_sum(Value, w, x, 1.0) is None                       # a float bias
    with fast.reference_only():
        assert fast.value_weighted_sum(Value, w, x, None) is None
