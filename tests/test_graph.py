"""The graph core on random DAGs with shared subexpressions: DP = path sums = forward mode = finite differences."""

import math

import pytest
import sympy
from hypothesis import given, settings

from microgradx import OPS, DomainError, PathLimitError, Value, count_paths, grad, jvp, paths, topological_order
from microgradx.examples import two_paths
from microgradx.graph import backprop, run
from microgradx.strategies import Program, Step, apply_op, programs


def rebuild(program: Program, inputs):
    return Program(tuple(inputs), program.steps).build()[0].data


def central_gradient(program: Program, h=1e-6):
    out = []
    for k in range(len(program.inputs)):
        up, down = list(program.inputs), list(program.inputs)
        up[k] += h
        down[k] -= h
        try:
            out.append((rebuild(program, up) - rebuild(program, down)) / (2 * h))
        except DomainError:  # a step left its domain within h of the point: no finite-difference oracle
            out.append(None)
    return out


@given(programs(max_steps=10))
def test_backward_equals_forward_mode_and_central_differences(program):
    out, leaves = program.build()
    out.backward()
    fd = central_gradient(program)
    for k, leaf in enumerate(leaves):
        assert jvp(out, {leaf: 1.0}) == pytest.approx(leaf.grad, rel=1e-9, abs=1e-12)
        if fd[k] is not None:
            assert leaf.grad == pytest.approx(fd[k], rel=1e-4, abs=1e-5)


@given(programs(max_steps=7, max_inputs=2))
def test_path_sums_equal_dynamic_programming(program):
    out, leaves = program.build()
    for leaf, g in zip(leaves, grad(out, leaves)):
        found = paths(out, leaf, limit=5000)
        assert len(found) == count_paths(out, leaf)
        assert math.fsum(p.product for p in found) == pytest.approx(g, rel=1e-9, abs=1e-12)
        for p in found:
            assert p.nodes[0] is leaf and p.nodes[-1] is out and len(p.derivatives) == len(p.nodes) - 1


def sympy_of(program: Program):
    """The program as a SymPy expression, through each row's SymPy forward."""
    syms = sympy.symbols(f"v0:{len(program.inputs)}", real=True)
    vals = list(syms)
    for s in program.steps:
        p = sympy.nsimplify(s.param) if s.param is not None else None
        vals.append(OPS[s.op].sym(*(vals[i] for i in s.args), param=p))
    return vals[-1], syms


@settings(max_examples=20)
@given(programs(ops=("add", "mul", "sub", "tanh", "exp", "sin", "pow", "div"), max_steps=5, max_inputs=2))
def test_second_derivatives_match_sympy(program):
    out, leaves = program.build()
    expr, syms = sympy_of(program)
    subs = {s: sympy.Float(x, 30) for s, x in zip(syms, program.inputs)}
    first = grad(out, leaves, create_graph=True)
    for i, gi in enumerate(first):
        second = grad(gi, leaves)
        for j, hij in enumerate(second):
            exact = float(sympy.diff(expr, syms[i], syms[j]).subs(subs))
            assert hij == pytest.approx(exact, rel=1e-8, abs=1e-9)


def test_seed004_two_path_example():
    """o = cos(w**2) + sin(w**2): do/dw = -2w sin(w**2) + 2w cos(w**2), the sum of two paths."""
    for w0 in (0.3, 2.0, -1.1):
        o, w = two_paths(w0)
        found = paths(o, w)
        assert len(found) == 2
        expected = -2 * w0 * math.sin(w0**2) + 2 * w0 * math.cos(w0**2)
        assert sorted(p.product for p in found) == pytest.approx(
            sorted([-2 * w0 * math.sin(w0**2), 2 * w0 * math.cos(w0**2)]))
        o.backward()
        assert w.grad == pytest.approx(expected, rel=1e-13)


def layered(depth: int):
    """Seed 004: ``depth`` layers of 2 nodes, each fed by both nodes below: 2**depth paths from w to o."""
    w = Value(0.5, label="w")
    a, b = (w * 0.9).tanh(), (w * -1.1).tanh()
    for _ in range(depth - 1):
        a, b = (a * 0.8 + b * 0.3).tanh(), (a * -0.5 + b * 0.7).tanh()
    return a + b, w


def test_ten_layers_of_two_nodes_have_1024_paths():
    o, w = layered(10)
    assert count_paths(o, w) == 1024
    found = paths(o, w, limit=2000)
    assert len(found) == 1024
    assert math.fsum(p.product for p in found) == pytest.approx(grad(o, [w])[0], rel=1e-12)


def test_path_limit_states_the_count():
    o, w = layered(20)
    with pytest.raises(PathLimitError, match="1048576 paths"):
        paths(o, w)


def test_topological_order_puts_parents_first_and_each_node_once():
    x = Value(1.0)
    y = x * x
    z = y + y * x
    order = topological_order(z)
    assert len(order) == len({id(n) for n in order}) == 4
    pos = {id(n): k for k, n in enumerate(order)}
    assert all(pos[id(p)] < pos[id(n)] for n in order for p in n.parents)


def test_traced_backward_events_follow_the_dynamic_program():
    x = Value(2.0, label="x")
    y = x * x + x
    events = list(backprop(y, trace=True, accumulate=False))
    assert [e.node for e in events][0] is y
    for e in events:
        for c, z, in zip(e.contributions, e.partials):
            assert c == e.grad * z
    assert x.grad == 0.0  # accumulate=False leaves .grad alone
    assert run(backprop(y, accumulate=False))[x] == 5.0


def test_apply_op_spells_every_row():
    for name, row in OPS.items():
        xs = [Value(1.3), Value(0.4)][: row.arity]
        assert apply_op(name, xs, 2.0 if row.param else None).op is row


def test_program_strategy_shares_subexpressions():
    p = Program((1.0,), (Step("mul", (0, 0)), Step("add", (1, 1))))
    out, (x,) = p.build()
    out.backward()
    assert x.grad == 4.0


def test_running_totals_grow_edge_by_edge_when_a_parent_is_used_twice():
    x = Value(3.0, label="x")
    (event, *_) = backprop(x * x, trace=True)
    assert event.totals == (3.0, 6.0)


def test_paths_through_the_two_edges_of_x_times_x_are_told_apart():
    x = Value(3.0, label="x")
    first, second = paths(x * x, x)
    assert (first.slots, second.slots) == ((0,), (1,))


def test_paths_walks_a_long_single_path_chain():
    """A 20,000-deep chain has one path; its product equals backward's gradient (the walk keeps one path under
    construction, so a deep chain costs linear work, see benchmarks/paths.py)."""
    x = Value(1.0, label="x")
    y = x
    for _ in range(20_000):
        y = y * 1.00001
    (found,) = paths(y, x)
    assert len(found.nodes) == 20_001 and found.nodes[0] is x and found.nodes[-1] is y
    assert found.slots == (0,) * 20_000
    assert found.product == pytest.approx(1.00001 ** 20_000, rel=1e-9)
    assert found.product == pytest.approx(grad(y, [x])[0], rel=1e-12)
