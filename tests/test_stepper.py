"""The stepper is the backward pass: same gradients as backward() on random DAGs with shared subexpressions,
exact undo, the seed's worked numbers, and readable table, repr and drawings."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

import microgradx
from microgradx import Value, step
from microgradx.examples import example3, two_paths

# Ops that are smooth and defined on every real number, so any random recipe builds without a domain error.
UNARY = {"tanh": lambda v: v.tanh(), "sin": lambda v: v.sin(), "sigmoid": lambda v: v.sigmoid(),
         "square": lambda v: v ** 2, "neg": lambda v: -v, "arctan": lambda v: v.arctan()}
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "scaled": lambda a, b: 0.5 * a + b * 3.0}


@st.composite
def recipes(draw):
    """A DAG recipe: leaf values, then ops whose operands are any earlier nodes (so nodes get reused)."""
    leaves = draw(st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=4))
    steps = []
    for k in range(draw(st.integers(1, 14))):
        n = len(leaves) + k
        if draw(st.booleans()):
            steps.append((draw(st.sampled_from(sorted(UNARY))), draw(st.integers(0, n - 1)), None))
        else:
            # Biased towards recent nodes and repeats, which is where fan-out accumulation happens.
            i = draw(st.integers(0, n - 1))
            j = draw(st.one_of(st.just(i), st.integers(0, n - 1)))
            steps.append((draw(st.sampled_from(sorted(BINARY))), i, j))
    return leaves, steps


def build(recipe):
    leaves, steps = recipe
    nodes = [Value(x, label=f"x{i}") for i, x in enumerate(leaves)]
    for name, i, j in steps:
        nodes.append(UNARY[name](nodes[i]) if j is None else BINARY[name](nodes[i], nodes[j]))
    out = nodes[-1]
    for n in nodes[:-1]:  # make sure a node used twice feeds the output through two routes
        if n.parents:
            out = out + n * 0.25
    return out, nodes


@settings(deadline=None)
@given(recipes())
def test_stepper_run_gives_exactly_the_gradients_of_backward(recipe):
    out_a, nodes_a = build(recipe)
    out_b, nodes_b = build(recipe)
    out_a.backward()
    s = step(out_b)
    finished = {}
    for ev in s:
        finished[id(ev.node)] = ev.grad
        for _, z, c in zip(ev.parents, ev.partials, ev.contributions, strict=True):
            assert c == ev.grad * z
    assert s.done and len(s.events) == len(microgradx.topological_order(out_b))
    for a, b in zip(nodes_a, nodes_b, strict=True):
        assert a.grad == b.grad  # exact, not approximate: it is the same code
        assert finished.get(id(b), 0.0) == b.grad  # an input the output does not use is never visited


@settings(deadline=None)
@given(recipes(), st.data())
def test_back_then_next_returns_to_the_same_state(recipe, data):
    out, nodes = build(recipe)
    s = step(out)
    k = data.draw(st.integers(1, len(microgradx.topological_order(out))))
    for _ in range(k):
        next(s)
    before = ([n.grad for n in nodes], list(s.events), s.gradients)
    s.back()
    assert len(s.events) == k - 1
    s.next()
    after = ([n.grad for n in nodes], list(s.events), s.gradients)
    assert after == before


def test_back_to_the_start_restores_grads_from_before_stepping():
    o, w = two_paths()
    o.backward()
    g = w.grad
    s = step(o).run()
    assert w.grad == 2 * g  # gradients accumulate, exactly as a second backward() would
    while s.events:
        s.back()
    assert w.grad == g and s.back() is s


def test_seed_001_example_3_numbers():
    ex = example3()
    s = step(ex.J).run()
    # Seed 001 works these out by hand: dJ/dw1 ~ 0.02510, dJ/dw2 ~ 0.13757.
    assert round(ex.w1.grad, 5) == 0.02510 and round(ex.w2.grad, 5) == 0.13757
    assert s.current is not None and not s.current.parents


def test_each_event_shows_node_S_and_per_parent_z_contribution_and_total():
    o, w = two_paths(2.0)
    s = step(o)
    assert "0 steps" not in repr(s) and "none taken yet" in repr(s)
    ev = next(s)
    assert ev.node is o and ev.grad == 1.0
    for _ in range(3):
        s.next()
    # Step 4 processes a = w**2: S(a) = cos 4 - sin 4, z = 2w = 4, S*z = S(w) = 4 (cos 4 - sin 4).
    last = s.events[-1]
    assert last.node.label == "a"
    assert last.grad == pyapprox(math.cos(4) - math.sin(4))
    assert last.partials == (4.0,) and last.contributions[0] == pyapprox(4 * (math.cos(4) - math.sin(4)))
    text = repr(s)
    assert "step 4 of 5" in text and "a = w**2" in text and "z = 4" in text
    table = s.table().splitlines()
    assert table[0].split()[:4] == ["step", "node", "S(node)", "parent"]
    assert len(table) == 1 + 2 + 1 + 1 + 1  # o has two parents, sin and cos one each, a one
    s.run()
    assert "done" in repr(s) and w.grad == pyapprox(4 * (math.cos(4) - math.sin(4)))
    assert s.next() is s and len(s.events) == 5


def pyapprox(x):
    import pytest

    return pytest.approx(x, rel=1e-12)


def test_draw_shows_only_reached_gradients_and_marks_the_current_node():
    import re

    o, w = two_paths()
    s = step(o)

    def grads_shown(src):
        return len(re.findall(r"<td>grad ", src))

    assert grads_shown(s.draw().source) == 0  # nothing reached yet: no grad cell, not an empty one
    s.next()
    src = s.draw().source
    # o is finished; cos and sin hold running totals; a and w are not reached yet.
    assert grads_shown(src) == 3 and src.count("so far") == 2
    assert microgradx.render.THEMES["default"].current_fill in src
    s.run()
    assert grads_shown(s.draw().source) == 5 and "so far" not in s.draw().source


def test_notebook_display_shows_the_step_text_and_the_drawing(monkeypatch):
    o, _ = two_paths()
    s = step(o).next()
    monkeypatch.setenv("MICROGRADX_DOT", "pure")
    bundle = s._repr_mimebundle_()
    assert "step 1 of 5" in bundle["text/html"] and "<svg" in bundle["text/html"]
    monkeypatch.setenv("MICROGRADX_DOT", "/nonexistent/dot")
    assert set(s._repr_mimebundle_()) == {"text/plain"}
