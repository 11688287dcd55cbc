"""Every op-table row against independent oracles: math references and central differences (SymPy: test_symbolic)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgradx import OPS, Value
from microgradx.ops import FLOAT, numpy_math
from microgradx.strategies import op_inputs

# Forward references written here, independently of the op table (seed 002's definitions where it has them).
REFERENCE = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "neg": lambda x: -x,
    "pow": lambda x, n: math.pow(x, n),
    "power": lambda x, y: math.pow(x, y),
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "arctan": math.atan,
    "tanh": math.tanh,
    "sinh": lambda x: (math.exp(x) - math.exp(-x)) / 2,
    "cosh": lambda x: (math.exp(x) + math.exp(-x)) / 2,
    "sigmoid": lambda x, a: 1 / (1 + math.exp(-a * x)),
    "relu": lambda x: max(0.0, x),
    "leaky_relu": lambda x, a: x if x >= 0 else a * x,
    "prelu": lambda x, a: x if x >= 0 else a * x,
    "elu": lambda x, a: x if x >= 0 else a * (math.exp(x) - 1),
    "softplus": lambda x: math.log1p(math.exp(x)),
    "softsign": lambda x: x / (1 + abs(x)),
    "swish": lambda x: x / (1 + math.exp(-x)),
    "gelu_tanh": lambda x: 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "gelu": lambda x: x * 0.5 * math.erfc(-x / math.sqrt(2)),   # x times the standard normal CDF
    "log1p": lambda x: math.log(1 + x),
    "expm1": lambda x: math.exp(x) - 1,
    "erf": lambda x: 1 - math.erfc(x),
    "sign": lambda x: math.copysign(1.0, x) if x else 0.0,
    "hard_tanh": lambda x: min(1.0, max(-1.0, x)),
    "abs": abs,
    "max": max,
    "min": min,
    "binary_step": lambda x: 0.0 if x < 0 else 1.0,
    "linear": lambda x, a: a * x,
}

ROWS = list(OPS.values())


def apply(row, xs, p):
    """Build the op on Values through its public spelling (operator or method)."""
    from microgradx.strategies import apply_op
    return apply_op(row.name, [Value(x, label=f"x{k}") for k, x in enumerate(xs)], p)


def test_every_row_has_a_reference():
    assert set(REFERENCE) == set(OPS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
@settings(max_examples=25)
@given(data=st.data())
def test_forward_matches_reference(row, data):
    xs, p = data.draw(op_inputs(row))
    args = (*xs, p) if row.param else xs
    assert apply(row, xs, p).data == pytest.approx(REFERENCE[row.name](*args), rel=1e-12, abs=1e-12)


def central(f, xs, k, h=1e-6):
    up = list(xs)
    down = list(xs)
    up[k] += h
    down[k] -= h
    return (f(*up) - f(*down)) / (2 * h)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
@settings(max_examples=25)
@given(data=st.data())
def test_partials_match_central_differences(row, data):
    xs, p = data.draw(op_inputs(row, kink_margin=1e-3, edge_margin=1e-3))
    node = apply(row, xs, p)
    ref = (lambda *v: REFERENCE[row.name](*v, p)) if row.param else REFERENCE[row.name]
    for k, z in enumerate(node.partials):
        if row.name == "binary_step":
            assert z == 0.0
            continue
        assert z == pytest.approx(central(ref, xs, k), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("row", [r for r in ROWS if r.kink is not None], ids=lambda r: r.name)
def test_kink_subgradients_are_the_documented_ones(row):
    """At a kink the derivative is the chosen subgradient the row documents (PyTorch's choice)."""
    expected = {
        "relu": (0.0,), "leaky_relu": (0.01,), "prelu": (0.25, 0.0), "elu": (1.0,), "abs": (0.0,),
        "binary_step": (0.0,), "max": (0.5, 0.5), "min": (0.5, 0.5), "sign": (0.0,),
    }
    if row.name == "hard_tanh":
        assert Value(1.0).hard_tanh().partials == (0.0,)
        assert Value(-1.0).hard_tanh().partials == (0.0,)
        return
    xs = {"prelu": (0.0, 0.25), "max": (1.5, 1.5), "min": (1.5, 1.5)}.get(row.name, (0.0,))
    assert apply(row, xs, row.default).partials == expected[row.name]
    assert row.subgradient


def test_seed002_printed_outputs():
    """Seed 002 prints these outputs of its activation functions."""
    assert Value(7).sigmoid().data == pytest.approx(0.9990889488055994, rel=1e-15)
    assert Value(-22).sigmoid().data == pytest.approx(2.7894680920908113e-10, rel=1e-12)
    assert Value(0.5).tanh().data == pytest.approx(0.4621171572600098, rel=1e-15)
    assert Value(-1).tanh().data == pytest.approx(-0.7615941559557646, rel=1e-15)
    assert (Value(7).relu().data, Value(-7).relu().data) == (7, 0)
    assert (Value(7).leaky_relu().data, Value(-7).leaky_relu().data) == (7, pytest.approx(-0.07))
    assert Value(-5).elu(0.1).data == pytest.approx(-0.09932620530009145, rel=1e-14)
    assert Value(5).elu(0.1).data == 5
    assert (Value(5).binary_step().data, Value(-1).binary_step().data) == (1, 0)
    assert (Value(4).linear(4).data, Value(-2).linear(4).data) == (16, -8)


def test_sigmoid_slope_derivative_is_seed001_eq3():
    """g'(z) = a g(z) (1 - g(z)) for g(z) = 1 / (1 + e^(-a z))."""
    a, z = 2.5, 0.3
    g = 1 / (1 + math.exp(-a * z))
    assert Value(z).sigmoid(a).partials[0] == pytest.approx(a * g * (1 - g), rel=1e-14)


@pytest.mark.parametrize("x", [-800.0, -40.0, 40.0, 800.0])
def test_stable_forms_do_not_overflow(x):
    for name in ("sigmoid", "softplus", "swish", "elu", "gelu", "gelu_tanh", "tanh", "erf"):
        v = getattr(Value(x), name)()
        assert math.isfinite(v.data) and all(math.isfinite(z) for z in v.partials)


# A bounded row promises: finite inputs give a finite output and partials of magnitude at most 1 (the tensor path
# skips that row's finiteness scans on the strength of it). Tried at the extremes of each float type: the largest
# and smallest normal and subnormal numbers, signed zeros, the kinks, and a log-spaced sweep over every exponent.
def _extremes(dtype):
    import numpy as np
    fi = np.finfo(dtype)
    edge = [fi.max, fi.max / 2, fi.tiny, fi.smallest_subnormal, 0.0, 1.0, 1.5, np.pi / 2, 1e4, 1e15]
    with np.errstate(over="ignore"):  # the last power may round past the largest float: dropped below
        sweep = np.geomspace(fi.smallest_subnormal, fi.max, 400, dtype=dtype)
    sweep = sweep[np.isfinite(sweep)]
    near_one = [np.nextafter(dtype.type(1), dtype.type(2)), np.nextafter(dtype.type(1), dtype.type(0))]
    vals = np.concatenate([np.asarray(edge, dtype=dtype), sweep, np.asarray(near_one, dtype=dtype)])
    return np.concatenate([vals, -vals])


BOUNDED = [r for r in ROWS if r.bounded]


def test_the_bounded_flag_is_claimed_by_the_activations_the_mlp_uses():
    assert {"relu", "tanh", "sin", "cos", "abs", "hard_tanh"} <= {r.name for r in BOUNDED}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("row", BOUNDED, ids=lambda r: r.name)
def test_bounded_rows_keep_finite_inputs_finite_with_partials_at_most_one(row, dtype):
    import numpy as np

    from microgradx.fast import array_math
    x = _extremes(np.dtype(dtype))
    args = (x,) if row.arity == 1 else tuple(np.meshgrid(x, x))
    with np.errstate(all="ignore"):  # an overflowing intermediate is fine as long as the results stay finite
        for F in (array_math(np.dtype(dtype)), numpy_math()):
            out = np.asarray(row.forward(F, *args), dtype=float)
            assert np.isfinite(out).all(), (row.name, args[0][~np.isfinite(out)][:3])
            for z in row.partials(F, out.astype(dtype), *args):
                z = np.broadcast_to(np.asarray(z, dtype=float), out.shape)
                assert np.isfinite(z).all() and (np.abs(z) <= 1.0).all(), (row.name, z[np.abs(z) > 1][:3])


@pytest.mark.parametrize("row", BOUNDED, ids=lambda r: r.name)
def test_bounded_rows_on_python_floats(row):
    import numpy as np
    xs = [float(v) for v in _extremes(np.dtype("float64"))[::7]]
    for args in (((x,) for x in xs) if row.arity == 1 else ((x, y) for x in xs[::5] for y in xs[::5])):
        out = row.forward(FLOAT, *args)
        zs = row.partials(FLOAT, out, *args)
        assert math.isfinite(out) and all(math.isfinite(z) and abs(z) <= 1.0 for z in zs), (row.name, args)


def test_a_parameter_row_cannot_be_bounded():
    from microgradx.ops import Op
    with pytest.raises(ValueError, match="bounded"):
        Op("scaled", 1, lambda F, x, a: a * x, lambda F, out, x, a: (a,), "s", "{0}", "a x", param="a",
           default=1.0, bounded=True)


def test_every_primitive_agrees_across_its_namespaces():
    """One list builds the float, NumPy, SymPy and Value namespaces: each primitive gives one number in all."""
    import numpy as np
    import sympy as sp

    from microgradx.ops import PRIMITIVES, sympy_math
    from microgradx.value import VALUE_MATH

    for p in PRIMITIVES:
        args = (True, 0.3, -0.7) if p.name == "where" else (0.3, -0.7)[:2 if p.name in ("maximum", "minimum") else 1]
        want = getattr(FLOAT, p.name)(*args)
        assert float(getattr(numpy_math(), p.name)(*(np.float64(a) for a in args))) == pytest.approx(want), p.name
        assert float(sp.N(getattr(sympy_math(), p.name)(*(sp.Float(a) if not isinstance(a, bool) else sp.true
                                                          for a in args)))) == pytest.approx(want), p.name
        nodes = [a if isinstance(a, bool) else Value(a) for a in args]
        assert getattr(VALUE_MATH, p.name)(*nodes).data == pytest.approx(want), p.name


def test_sinh_and_cosh_rows_differentiate_twice_on_values():
    from microgradx import grad

    x = Value(0.4)
    g, = grad(x.sinh() * x.cosh(), [x], create_graph=True)   # d/dx sinh cosh = cosh(2x)
    assert g.data == pytest.approx(math.cosh(0.8))
    assert grad(g, [x])[0] == pytest.approx(2 * math.sinh(0.8))
