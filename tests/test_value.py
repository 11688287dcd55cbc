"""The Value API: construction, operators, recorded graph, accumulation semantics, higher order."""

import math

import pytest
import sympy

import microgradx
from microgradx import DomainError, Value, grad, zero_grad


def test_accepts_ints_and_floats_only():
    assert Value(2).data == 2.0 and isinstance(Value(2).data, float)
    for bad in ("2", None, [1.0], 1 + 2j, True):
        with pytest.raises(TypeError, match=type(bad).__name__):
            Value(bad)


def test_rejects_non_finite_data():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(DomainError, match="finite"):
            Value(bad)


def test_reflected_operators_and_parent_order():
    x = Value(3.0, label="x")
    cases = [(2 * x + 1, 7.0), (1 - x, -2.0), (6 / x, 2.0), (2 ** x, 8.0), (x - 1, 2.0), (x / 2, 1.5), (-x, -3.0),
             (x ** 2, 9.0), (+x, 3.0), (abs(-x), 3.0)]
    for v, expected in cases:
        assert v.data == expected
    d = 6 / x
    assert d.op.name == "div" and d.parents[1] is x and d.parents[0].data == 6.0
    sq = x * x
    assert sq.parents == (x, x) and sq.partials == (3.0, 3.0)


def test_unsupported_operand_is_a_type_error():
    with pytest.raises(TypeError):
        Value(1.0) + "a"
    with pytest.raises(TypeError, match="str"):
        Value(1.0).max("a")


def test_identity_not_value_equality():
    a, b = Value(1.0), Value(1.0)
    assert a != b and a == a
    assert len({a, b}) == 2
    assert a <= b and not a < b and Value(2.0) > 1


def test_leaf_attributes():
    w = Value(2.0, label="w1")
    assert (w.data, w.grad, w.op, w.parents, w.label, w.partials) == (2.0, 0.0, None, (), "w1", ())


def test_a_method_for_every_op_row_with_methods():
    for op in microgradx.OPS.values():
        for name in op.methods:
            assert callable(getattr(Value, name)), name


def test_backward_accumulates_like_pytorch():
    x = Value(3.0)
    y = x * x + x
    y.backward()
    assert x.grad == 7.0 and y.grad == 1.0
    y.backward()  # a second backward adds the same amounts again, at every node
    assert x.grad == 14.0 and y.grad == 2.0
    zero_grad(y)
    assert x.grad == 0.0 and y.grad == 0.0
    y.backward()
    assert x.grad == 7.0


def test_functional_grad_has_no_side_effects():
    x, y = Value(2.0), Value(5.0)
    out = x * y + x.sin()
    gx, gy = grad(out, [x, y])
    assert gx == pytest.approx(5.0 + math.cos(2.0)) and gy == 2.0
    assert x.grad == 0.0 and y.grad == 0.0 and out.grad == 0.0
    assert grad(out, [Value(1.0)]) == [0.0]  # not in the graph


def test_second_and_third_derivatives_match_sympy():
    s = sympy.Symbol("s", real=True)
    f_sym = sympy.sin(s**2) * sympy.exp(-s) + s**3 / (1 + s**2)
    x = Value(0.7)
    f = (x**2).sin() * (-x).exp() + x**3 / (1 + x**2)
    g1, = grad(f, [x], create_graph=True)
    g2, = grad(g1, [x], create_graph=True)
    g3, = grad(g2, [x])
    for order, got in ((1, g1.data), (2, g2.data), (3, g3)):
        assert got == pytest.approx(float(sympy.diff(f_sym, s, order).subs(s, 0.7)), rel=1e-10)


def test_backward_create_graph_stores_values():
    x = Value(1.5)
    y = x.tanh() * x
    y.backward(create_graph=True)
    assert isinstance(x.grad, Value)
    assert grad(x.grad, [x])[0] == pytest.approx(
        float(sympy.diff(sympy.tanh(sympy.Symbol("t")) * sympy.Symbol("t"), "t", 2).subs("t", 1.5)), rel=1e-12)


def test_mixed_second_derivative_through_power():
    """d2/dx dy of x**y with a Value exponent, against SymPy."""
    X, Y = sympy.symbols("X Y", positive=True)
    x, y = Value(1.7), Value(0.6)
    gx, = grad(x ** y, [x], create_graph=True)
    gxy, = grad(gx, [y])
    assert gxy == pytest.approx(float(sympy.diff(X**Y, X, Y).subs({X: 1.7, Y: 0.6})), rel=1e-12)


def test_million_node_chain_backprops_without_recursion():
    x, c = Value(1.0, label="x"), Value(1.0000001)
    y = x
    for _ in range(1_000_000):
        y = y * c
    y.backward()
    assert x.grad == pytest.approx(1.0000001 ** 1_000_000, rel=1e-9)
    del y  # freeing a 10**6-deep chain must not overflow the C stack either


def test_repr_shows_data_grad_label():
    assert repr(Value(0.5, label="w")) == "Value(data=0.5, grad=0, label='w')"
