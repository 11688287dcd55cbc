"""SymPy bridge and gradient check: every op, random DAGs with sharing, order 2, round trips, LaTeX, the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator

import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import microgradx
from microgradx import OPS, DomainError, Value
from microgradx import value as value_module
from microgradx.cli import main
from microgradx.examples import example3, two_paths
from microgradx.symbolic import (
    ACCUMULATION,
    EDGES,
    WHOLE,
    TranslationError,
    check_with_sympy,
    compare_formula,
    derivative_latex,
    from_sympy,
    latex,
    leaf_symbols,
    to_sympy,
)
from microgradx.symbolic_parse import parse

# The arithmetic rows have no method name: they are reached through Python's operators.
_OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
              "neg": operator.neg, "power": operator.pow}
_EXPONENTS = (2.0, 3.0, -1.0, 0.5, 2.5)


def _apply(op, inputs, param=None):
    if op.name == "pow":
        return inputs[0] ** param
    if op.name in _OPERATORS:
        return _OPERATORS[op.name](*inputs)
    method = getattr(inputs[0], op.methods[0])
    return method(*inputs[1:], param) if op.param else method(*inputs[1:])


def _points(op, param):
    """Points inside each argument's domain (read from the row) and at least 0.05 from any kink."""
    per_arg = []
    for dom in op.domains(param):
        candidates = (-1.3, -0.4, 0.3, 0.7, 1.9)
        per_arg.append([c for c in candidates if dom.contains(c)])
    pts = list(itertools.product(*per_arg))
    if op.kink is not None:
        pts = [p for p in pts if op.kink(*p) > 0.05]
    return pts


def _cases():
    for op in OPS.values():
        params = _EXPONENTS if op.name == "pow" else (op.default,) if op.param else (None,)
        if op.param and op.name != "pow":
            params = (op.default, 0.3)
        for param in params:
            for pt in _points(op, param):
                yield pytest.param(op, param, pt, id=f"{op.name}-{param}-{pt}")


@pytest.mark.parametrize("op, param, point", list(_cases()))
def test_every_op_passes_every_layer(op, param, point):
    leaves = [Value(v, label=n) for v, n in zip(point, "xy", strict=False)]
    out = _apply(op, leaves, param)
    report = check_with_sympy(out)
    assert report.ok, str(report)
    assert report.edges == op.arity
    assert all(v.startswith("ran") for v in report.layers.values()), report.layers
    # The SymPy-derived gradient also matches float64 central differences of the forward.
    for k, row in enumerate(report.gradients):
        h = 1e-6
        up = list(point)
        down = list(point)
        up[k] += h
        down[k] -= h
        f_up, f_down = (_apply(op, [Value(v) for v in pt], param).data for pt in (up, down))
        fd = (f_up - f_down) / (2 * h)
        assert row.sympy == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_every_op_has_a_case():
    assert {c.values[0].name for c in _cases()} == set(OPS)


# ---------------------------------------------------------------------------------------------------------
# A wrong derivative is caught, and named
# ---------------------------------------------------------------------------------------------------------

def test_a_wrong_partial_fails_and_names_the_op_and_edge():
    bad = dataclasses.replace(OPS["tanh"], partials=lambda F, out, x: (1.0 + out * out,))
    x = Value(0.5, label="x")
    t = value_module._unary(bad, x)
    out = t * x + x
    report = check_with_sympy(out)
    assert not report.ok
    assert len(report.failed_edges) == 1
    edge = report.failed_edges[0]
    assert (edge.op, edge.index, edge.parent, edge.node) == ("tanh", 0, x, t)
    assert edge.engine == pytest.approx(1 + math.tanh(0.5) ** 2)
    assert edge.sympy == pytest.approx(1 - math.tanh(0.5) ** 2)
    assert "tanh edge 0 (x -> tanh(x))" in str(report)
    (row,) = report.gradients
    assert not row.ok and row.layers == (EDGES, ACCUMULATION, WHOLE)
    # d/dx (x tanh x + x), written out by hand.
    assert row.sympy == pytest.approx(math.tanh(0.5) + 0.5 * (1 - math.tanh(0.5) ** 2) + 1)


class _DoublingBackward(Value):
    """A node whose partials are right but whose backward passes twice the gradient."""

    __slots__ = ()

    def vjp(self, g, create_graph=False):
        return tuple(2 * c for c in super().vjp(g, create_graph))


def test_a_wrong_backward_is_caught_by_the_independent_accumulation():
    x = Value(0.8, label="x")
    y = x.sin()
    y.__class__ = _DoublingBackward
    report = check_with_sympy(y * 3.0, max_nodes=0)
    assert not report.failed_edges
    assert report.layers[WHOLE].startswith("skipped")
    assert not report.ok and not report.gradients[0].ok
    assert report.gradients[0].sympy == pytest.approx(3 * math.cos(0.8))


def test_a_partial_right_in_value_but_wrong_as_a_function_fails_only_at_order_2():
    x0 = 0.5
    bad = dataclasses.replace(OPS["tanh"], partials=lambda F, out, x: (1.0 - out * out + 7.0 * (x - x0),))
    x = Value(x0, label="x")
    out = value_module._unary(bad, x) * x
    assert check_with_sympy(out).ok
    report = check_with_sympy(out, order=2)
    assert not report.ok
    assert [r.ok for r in report.gradients] == [True] and [r.ok for r in report.hessian] == [False]


# ---------------------------------------------------------------------------------------------------------
# Random DAGs with shared subexpressions
# ---------------------------------------------------------------------------------------------------------

_UNARY = ["tanh", "sin", "cos", "exp", "sigmoid", "swish", "gelu", "softplus", "softsign", "arctan", "relu",
          "leaky_relu", "elu", "abs", "hard_tanh", "square", "cube", "log", "sqrt", "recip"]
_BINARY = ["add", "sub", "mul", "div", "max", "min", "prelu"]


def _unary(name, a):
    if name == "square":
        return a ** 2
    if name == "cube":
        return a ** 3
    if name in ("log", "sqrt"):  # keep the argument inside the domain
        return getattr(a * a + 0.5, name)()
    if name == "recip":
        return 1.0 / (a * a + 0.25)
    return getattr(a, name)()


def _binary(name, a, b):
    if name == "div":
        return a / (b * b + 0.5)
    if name in _OPERATORS:
        return _OPERATORS[name](a, b)
    return getattr(a, name)(b)


@st.composite
def dags(draw, max_steps=12):
    """A random graph over 1-4 inputs whose nodes pick their parents among all earlier nodes (so they share)."""
    n_in = draw(st.integers(1, 4))
    values = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)
    nodes = [Value(draw(values), label=f"x{i}") for i in range(n_in)]
    for _ in range(draw(st.integers(1, max_steps))):
        pick = st.integers(0, len(nodes) - 1)
        try:
            if draw(st.booleans()):
                nodes.append(_unary(draw(st.sampled_from(_UNARY)), nodes[draw(pick)]))
            else:
                nodes.append(_binary(draw(st.sampled_from(_BINARY)), nodes[draw(pick)], nodes[draw(pick)]))
        except DomainError:
            assume(False)
    out = nodes[-1]
    for extra in draw(st.lists(st.sampled_from(nodes), max_size=3)):
        out = out + extra  # more fan-out
    assume(all(abs(n.data) < 1e6 for n in nodes))
    return out


@settings(deadline=None)
@given(dags())
def test_random_dags_with_sharing_pass(out):
    report = check_with_sympy(out)
    assert report.ok, str(report)
    assert len(report.gradients) == sum(1 for n in microgradx.topological_order(out) if not n.parents)


@settings(deadline=None, max_examples=15)
@given(dags(max_steps=5))
def test_random_dags_pass_at_order_2(out):
    report = check_with_sympy(out, order=2)
    assert report.ok, str(report)


def test_a_deep_chain_checks_without_the_whole_expression():
    x = Value(0.9, label="x")
    out = x
    for _ in range(20_000):
        out = (out * 0.999).sin() + 0.001
    report = check_with_sympy(out, [x])
    assert report.ok
    assert report.edges == 100_000
    assert report.layers[WHOLE] == f"skipped: {report.nodes} nodes > max_nodes=60"
    assert report.gradients[0].layers == (EDGES, ACCUMULATION)


def test_heavy_sharing_skips_the_whole_expression_and_says_why():
    x = Value(0.3, label="x")
    out = x
    for _ in range(12):
        out = out.sin() * out.cos() + x
    report = check_with_sympy(out)
    assert report.nodes <= 60 and report.ok
    assert "written out without sharing" in report.layers[WHOLE]


def test_a_leaf_the_output_does_not_depend_on_has_gradient_zero():
    x, y, unused = Value(0.2, label="x"), Value(0.4), Value(1.0)
    report = check_with_sympy(x * y, [x, y, unused])
    assert report.ok
    assert [(r.name, r.autodiff, r.sympy) for r in report.gradients] == [("x", 0.4, 0.4), ("v0", 0.2, 0.2),
                                                                          ("v1", 0.0, 0.0)]


def test_kinks_are_skipped_with_the_rows_subgradient():
    x = Value(0.0, label="x")
    y = Value(2.0, label="y")
    report = check_with_sympy(x.relu() * y + x.max(x) + y.hard_tanh())
    assert report.ok
    texts = {e.op: e.note for e in report.kinks}
    assert texts == {"relu": OPS["relu"].subgradient, "max": OPS["max"].subgradient}  # max(x, x): two edges
    assert report.layers[WHOLE].startswith("skipped: 3 edge(s) at kinks")
    assert "edges skipped at kinks (3)" in str(report)


# ---------------------------------------------------------------------------------------------------------
# Order 2
# ---------------------------------------------------------------------------------------------------------

def test_seed001_hessian():
    ex = example3()
    report = check_with_sympy(ex.J, [ex.w1, ex.w2], order=2)
    assert report.ok
    assert [r.name for r in report.hessian] == ["d2/dw1dw1", "d2/dw1dw2", "d2/dw2dw2"]
    assert all(r.layers == (EDGES, ACCUMULATION, WHOLE) for r in report.hessian)


def test_two_paths_second_derivative_by_hand():
    o, w = two_paths(2.0)
    report = check_with_sympy(o, order=2)
    (h,) = report.hessian
    a = 4.0  # o = cos(w^2) + sin(w^2): o'' = -4w^2 (cos a + sin a) + 2 (cos a - sin a)
    assert h.sympy == pytest.approx(-16 * (math.cos(a) + math.sin(a)) + 2 * (math.cos(a) - math.sin(a)))
    assert report.ok


def test_order_2_on_a_larger_graph_uses_the_forward_sweep():
    xs = [Value(0.1 * k - 0.3, label=f"x{k}") for k in range(4)]
    out = xs[0]
    for k in range(40):
        out = (out * xs[k % 4]).tanh() + xs[(k + 1) % 4] ** 2 * 0.1
    report = check_with_sympy(out, xs, order=2)
    assert report.ok
    assert len(report.hessian) == 10
    assert report.layers[WHOLE].startswith("skipped")


# ---------------------------------------------------------------------------------------------------------
# to_sympy / from_sympy
# ---------------------------------------------------------------------------------------------------------

X, Y = sp.symbols("x y", real=True)


@pytest.mark.parametrize("expr", [
    X * Y + sp.sin(X), sp.exp(-X) / (1 + Y ** 2), sp.tanh(X * Y) ** 2 - sp.tanh(X * Y), sp.sqrt(X ** 2 + 1),
    sp.log(1 + sp.exp(X)), 1 / (1 + sp.exp(-X)), sp.Max(X, Y) + sp.Min(X, 2 * Y), sp.Abs(X - Y) * 3,
    sp.Piecewise((X, X > 0), (0, True)), sp.Piecewise((X, X > 0), (X / 100, True)), X ** Y, sp.atan(X) / 7,
])
def test_from_sympy_to_sympy_round_trip(expr):
    out, leaves = from_sympy(expr, {"x": 0.7, "y": 1.3})
    assert to_sympy(out) == expr
    assert out.data == pytest.approx(float(expr.subs({X: 0.7, Y: 1.3})))
    assert set(leaves) == {str(s) for s in expr.free_symbols}
    assert check_with_sympy(out).ok


def test_graph_to_sympy_and_back_keeps_values_and_gradients():
    ex = example3()
    again, leaves = from_sympy(to_sympy(ex.J), {n.label: n.data for n in (ex.x, ex.y, ex.w1, ex.w2)})
    assert again.data == pytest.approx(ex.J.data, rel=1e-14)
    mine = microgradx.grad(ex.J, [ex.w1, ex.w2])
    theirs = microgradx.grad(again, [leaves["w1"], leaves["w2"]])
    assert theirs == pytest.approx(mine, rel=1e-12)


def test_shared_subexpressions_stay_shared():
    x = Value(0.4, label="x")
    y = Value(1.1, label="y")
    a = (x * y).tanh()
    expr = to_sympy(a * a + a)
    tanhs = [t for t in sp.preorder_traversal(expr) if isinstance(t, sp.tanh)]
    assert len(tanhs) == 2 and tanhs[0] is tanhs[1]
    out, _ = from_sympy(expr, {"x": 0.4, "y": 1.1})
    assert sum(1 for n in microgradx.topological_order(out) if n.op is OPS["tanh"]) == 1


def test_leaf_names_constants_and_duplicates():
    x = Value(2.0, label="x")
    x_again = Value(3.0, label="x")
    c = Value(0.1)
    assert to_sympy(x * c + 1) == X / 10 + 1  # an unlabelled leaf is the exact number its float spells
    assert to_sympy(x * c, inputs=[c]) == X * sp.Symbol("v0", real=True)
    names = sorted(str(s) for s in leaf_symbols(x + x_again).values())
    assert names == ["x", "x_2"]
    report = check_with_sympy(x * x_again * c)
    assert [r.name for r in report.gradients] == ["x", "x_2", "v0"] and report.ok


def test_from_sympy_refuses_what_it_cannot_build():
    with pytest.raises(TranslationError, match="besselj"):
        from_sympy(sp.besselj(0, X), {"x": 1.0})
    with pytest.raises(TranslationError, match="no value for the symbol 'y'"):
        from_sympy(X + Y, {"x": 1.0})
    with pytest.raises(TypeError, match="never evaluated"):
        from_sympy("x + 1", {"x": 1.0})
    with pytest.raises(DomainError, match="log"):
        from_sympy(sp.log(X), {"x": -1.0})


# ---------------------------------------------------------------------------------------------------------
# LaTeX and the report's displays
# ---------------------------------------------------------------------------------------------------------

def test_latex_structure():
    ex = example3()
    text = latex(ex.J)
    assert r"e^{- w_{1} x}" in text and r"\frac{w_{2}}" in text and text.endswith(r"\right)^{2}")
    d = derivative_latex(ex.J, ex.w2)
    assert d.startswith(r"\frac{\partial J}{\partial w_{2}} = ")
    x = Value(0.3, label="x")
    assert latex((x ** 2).sin(), simplify=True) == r"\sin{\left(x^{2} \right)}"
    expected = r"\frac{\partial f}{\partial x} = 2 x \cos{\left(x^{2} \right)}"
    assert derivative_latex((x ** 2).sin(), x, simplify=True) == expected


def test_report_text_and_html():
    x = Value(0.5, label="x<1>")
    report = check_with_sympy(x.exp() * x)
    text = str(report)
    assert text.startswith("SymPy check: ok") and "whole-expression  ran" in text
    page = report._repr_html_()
    assert "<table>" in page and "x&lt;1&gt;" in page and "x<1>" not in page


# ---------------------------------------------------------------------------------------------------------
# Seed 002's swish formula
# ---------------------------------------------------------------------------------------------------------

def test_seed002_printed_swish_formula_is_not_swish():
    x = sp.Symbol("x", real=True)
    printed = x / (1 - sp.exp(-x))
    cmp = compare_formula(printed, "swish", at=[-67.0, 4.0])
    assert not cmp.ok
    assert [p[-1] for p in cmp.points] == [False, False]
    # The seed's printed outputs are the wrong formula's values, not swish's.
    assert [p[1] for p in cmp.points] == pytest.approx([5.349885844610276e-28, 4.074629441455096], rel=1e-12)
    assert cmp.points[1][2] == pytest.approx(4 / (1 + math.exp(-4)))
    assert "<- differs" in str(cmp)
    assert compare_formula(x * 1 / (1 + sp.exp(-x)), "swish", at=[-67.0, -1.0, 4.0]).ok


def test_compare_formula_reads_text_safely_and_marks_undefined_points():
    cmp = compare_formula("x / (1 - exp(-x))", "swish", at=[-67.0, 0.5])
    assert [p[-1] for p in cmp.points] == [False, False]
    assert cmp.points[0][1] == pytest.approx(5.349885844610276e-28, rel=1e-12)
    x = sp.Symbol("x", real=True)
    undefined = compare_formula(x / (1 - sp.exp(-x)), "swish", at=[0.0])
    assert undefined.points[0][1] is None and not undefined.ok and "undefined" in str(undefined)
    with pytest.raises(microgradx.ParseError):
        compare_formula("__import__('os')", "swish")
    with pytest.raises(TypeError, match="text or a SymPy expression"):
        compare_formula(lambda t: t, "swish")


# ---------------------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------------------

def test_cli_check(capsys):
    assert main(["check", "x*y + sin(x)", "--at", "x=0.3,y=1.7", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "SymPy check: ok" in out and r"\frac{\partial \mathrm{out}}{\partial x} = y + \cos{\left(x \right)}" in out
    assert main(["check", "tanh(x)**2 * x", "--at", "x=0.3", "--order", "2"]) == 0
    assert "d2/dxdx" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["check", "x*y", "--at", "x=0.3"], ["check", "x*", "--at", "x=0.3"],
                                  ["check", "log(x)", "--at", "x=-1"], ["check", "x", "--at", "x"]])
def test_cli_check_usage_errors(argv, capsys):
    assert main(argv) == 2
    assert "microgradx check: error:" in capsys.readouterr().err


def test_cli_check_exit_status_1_when_a_derivative_is_wrong(monkeypatch, capsys):
    from microgradx import symbolic

    real = symbolic.check_with_sympy

    def with_bad_tanh(out, wrt, **kw):
        bad = dataclasses.replace(OPS["tanh"], partials=lambda F, o, x: (1.0 + o * o,))
        return real(value_module._unary(bad, out), wrt, **kw)
    monkeypatch.setattr(symbolic, "check_with_sympy", with_bad_tanh)
    assert main(["check", "x*y", "--at", "x=0.3,y=1.7"]) == 1
    assert "tanh edge 0" in capsys.readouterr().out


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_elu_with_any_alpha_translates_back(alpha):
    x = Value(-0.6, label="x")
    out, _ = from_sympy(to_sympy(x.elu(alpha)), {"x": -0.6})
    assert (out.op.name, out.arg) == ("elu", alpha)
    assert out.data == pytest.approx(alpha * math.expm1(-0.6), rel=1e-14)


def test_expression_swell_skips_the_whole_expression_layer_before_sympy_runs():
    """Seven nested gelus: an 8-node graph whose SymPy form written out has about 20,000 nodes (gelu writes its
    argument twice). The layer is refused from that size, before SymPy builds or differentiates anything; the
    other layers still check the gradients."""
    out, _ = parse("gelu(gelu(gelu(gelu(gelu(gelu(gelu(x*y)))))))", x=0.3, y=1.7)
    report = check_with_sympy(out)
    assert report.ok and report.nodes == 10
    assert report.layers[WHOLE].startswith("skipped: SymPy's form of the expression written out has")
    assert "> 10 * max_nodes=60" in report.layers[WHOLE]
    assert [r.layers for r in report.gradients] == [(EDGES, ACCUMULATION)] * 2
    small, _ = parse("gelu(gelu(x*y))", x=0.3, y=1.7)
    assert check_with_sympy(small).layers[WHOLE].startswith("ran:")


def test_the_time_budget_skips_the_whole_expression_layer_with_the_reason():
    out, _ = parse("tanh(x*y) + sin(x)", x=0.3, y=1.7)
    report = check_with_sympy(out, max_seconds=0.0)
    assert report.ok
    assert report.layers[WHOLE].startswith("skipped: SymPy took more than max_seconds=0 (differentiating by x)")


def test_hessian_entries_through_a_kink_are_skipped_with_the_node_named():
    """elu(x*y) at x*y = 0: elu'' there is a convention, so d2/dx2, d2/dxdy and d2/dy2 are skipped, named."""
    x, y = Value(0.0, label="x"), Value(1.0, label="y")
    z = Value(0.5, label="z")
    report = check_with_sympy((x * y).elu() + z.tanh() * z, order=2)
    assert report.ok, str(report)
    skipped = {r.name: r.skipped for r in report.hessian if r.skipped}
    assert set(skipped) == {"d2/dxdx", "d2/dxdy", "d2/dydy"}
    assert all("elu(x * y) is at a kink" in why for why in skipped.values())
    (zz,) = [r for r in report.hessian if r.name == "d2/dzdz"]
    assert not zz.skipped and zz.sympy == pytest.approx(2 * (1 - math.tanh(0.5) ** 2) * (1 - 0.5 * math.tanh(0.5)))
    assert "skipped: elu(x * y) is at a kink" in str(report)
