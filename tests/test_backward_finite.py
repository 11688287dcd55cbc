"""No silent inf or NaN in a backward pass, and seeds and tangents checked like data (Value, grad, jvp, Tensor)."""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgradx import DomainError, MicrogradxError, Value, fast, grad, jvp, nn
from microgradx.tensor import Tensor, linear


def test_value_backward_overflow_names_node_op_and_parent():
    w, x = Value(1e200, label="w"), Value(1e-200, label="x")
    z = (w * x) * w
    with pytest.raises(DomainError, match=r"backward: the gradient flowing from .* \(op mul\) to its parent x is inf"):
        z.backward()
    with pytest.raises(DomainError, match="parent x"):
        grad(z, [x])


def test_leaf_total_that_overflows_is_refused():
    x = Value(1e-300, label="x")
    y = x * 1e308 + x * 1e308   # finite forward; each use passes 1e308 back, their sum is not finite
    with pytest.raises(DomainError, match="reaching .*'x'.* sums to inf"):
        y.backward()


@pytest.mark.parametrize("call, error", [
    (lambda x: grad(x * x, [x], seed=float("nan")), DomainError),
    (lambda x: grad(x * x, [x], seed=1e308), DomainError),        # 6e308 overflows in backward
    (lambda x: grad(x * x, [x], seed="1"), TypeError),
    (lambda x: jvp(x * x, {x: float("nan")}), DomainError),
    (lambda x: jvp(x * 2, {"x": 1.0}), TypeError),
    (lambda x: grad(3.0, [x]), MicrogradxError),
    (lambda x: Value(10**400), DomainError),
    (lambda x: Value(2.0) ** (10**400), DomainError),
])
def test_bad_seeds_tangents_and_numbers_get_clear_errors(call, error):
    with pytest.raises(error) as info:
        call(Value(3.0, label="x"))
    assert "Traceback" not in str(info.value) and str(info.value)


GELU_FORMS = {  # PyTorch's approximate= spelling: the form written independently of the op table
    "tanh": lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
    "none": lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2)),
}


@pytest.mark.parametrize("approximate", list(GELU_FORMS))
def test_gelu_of_a_huge_value_has_derivative_one(approximate):
    # gelu(x) = x Phi(x) (or 0.5 x (1 + tanh(u)) with u -> inf): the derivative tends to 1 (0 for x -> -inf)
    for x0, want in ((1e155, 1.0), (-1e155, 0.0), (30.0, 1.0)):
        x = Value(x0)
        x.gelu(approximate=approximate).backward()
        assert x.grad == want
    t = Tensor(np.array([1e155, -1e155, 0.5]))
    t.gelu(approximate=approximate).sum().backward()
    h = 1e-6
    u = GELU_FORMS[approximate]
    assert t.grad.tolist()[:2] == [1.0, 0.0]
    assert t.grad[2] == pytest.approx((u(0.5 + h) - u(0.5 - h)) / (2 * h), rel=1e-8)


def test_matmul_backward_overflow_in_float32_is_refused():
    x = Tensor(np.full((1, 2), 1e-30, np.float32), label="x")
    W = Tensor(np.full((2, 1), 1e30, np.float32), label="W")
    with pytest.raises(DomainError, match=r"the gradient flowing from .* \(op matmul\) to its parent 0 \(x\)"):
        ((x @ W) * 1e10).sum().backward()


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_batched_and_wide_matmul_backward_overflow_is_refused(reference):
    # A stack of matrices (the reference vjp, then a scan) and a wide product (the norm bound fails, then a scan).
    with fast.reference_only() if reference else contextlib.nullcontext():
        x = Tensor(np.full((2, 1, 2), 1e-30, np.float32), label="x")
        W = Tensor(np.full((2, 2, 1), 1e30, np.float32), label="W")
        with pytest.raises(DomainError, match=r"\(op matmul\) to its parent 0 \(x\) is inf"):
            ((x @ W) * 1e10).sum().backward()
        a = Tensor(np.full((1, 300), 1e30, np.float32), label="a", requires_grad=False)
        B = Tensor(np.full((300, 40), 1e-32, np.float32), label="B")
        with pytest.raises(DomainError, match=r"\(op matmul\) to its parent 1 \(B\) is inf"):
            ((a @ B) * 1e10).sum().backward()

LINEARS = {"linear": lambda x, W: linear(x, W),
           "linear+relu": lambda x, W: linear(x, W, activation="relu"),
           "nn.Linear": None}


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("kind", sorted(LINEARS))
@pytest.mark.parametrize("dtype, tiny, huge", [(np.float32, 1e-30, 1e30), (np.float64, 1e-200, 1e300)])
def test_linear_backward_overflow_is_refused_naming_node_op_and_parent(kind, dtype, tiny, huge, reference):
    # x @ W.T = 2 tiny * huge is finite; the gradient to x is g @ W = 1e10 * huge, past the dtype's largest float.
    x = Tensor(np.full((1, 2), tiny, dtype), label="x")
    if LINEARS[kind] is None:
        layer = nn.Linear(2, 1, bias=False, dtype=dtype)
        layer.weight.data[...] = huge
        build, op = layer, "linear"
    else:
        W = Tensor(np.full((1, 2), huge, dtype), label="weight")
        build, op = (lambda v: LINEARS[kind](v, W)), kind
    with fast.reference_only() if reference else contextlib.nullcontext():
        out = build(x) * 1e10
        with pytest.raises(DomainError, match=rf"the gradient flowing from .* \(op {re.escape(op)}\) to its parent 0 "
                                              r"\(x\) is inf"):
            out.sum().backward()


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_linear_weight_gradient_overflow_is_refused(reference):
    # The other product: d/dW = g.T @ x with a huge batch entry and a large upstream gradient.
    x = np.full((1, 2), 1e30, np.float32)
    layer = nn.Linear(2, 1, bias=True)
    layer.weight.data[...] = 1e-30
    with fast.reference_only() if reference else contextlib.nullcontext():
        out = layer(x) * 1e10
        with pytest.raises(DomainError, match=r"\(op linear\) to its parent 1 \(weight\) is inf"):
            out.sum().backward()
    assert layer.weight.grad is None  # nothing reached the parameter


@pytest.mark.parametrize("scale, w_scale, expect", [(1.0, 1.0, "proved"), (3e18, 1.0, "scanned"),
                                                    (1e20, 1e-20, "refused")])
def test_fast_linear_proves_its_gradients_finite_from_norms_and_scans_when_it_cannot(monkeypatch, scale, w_scale,
                                                                                      expect):
    # A wide layer and a batch of one: the norms of g and x are cheaper than a scan of the 300 x 400 weight
    # gradient s * 1 x^T. Ordinary magnitudes are proved finite without that scan; near the top of the range
    # the norm bound fails and the gradient is scanned, and one that really overflows is refused naming the
    # weight, exactly as the reference refuses it.
    rng = np.random.default_rng(0)
    s = np.float32(scale)
    x = rng.normal(size=(1, 400)).astype(np.float32) * s
    layer = nn.Linear(400, 300, rng=1)
    layer.weight.data *= np.float32(w_scale)  # keeps the forward finite when the gradient is meant to overflow
    scanned = []
    original = fast.all_finite
    monkeypatch.setattr(fast, "all_finite", lambda a: scanned.append(a.shape) or original(a))
    outcomes = []
    for reference in (False, True):
        layer.weight.grad = None
        with fast.reference_only() if reference else contextlib.nullcontext():
            out = layer(x) * s
            try:
                out.sum().backward()
                outcomes.append(layer.weight.grad.copy())
            except DomainError as e:
                assert "(op linear) to its parent 1 (weight)" in str(e)
                outcomes.append(None)
        if not reference:
            assert ((300, 400) in scanned) == (expect != "proved")
    if expect == "refused":
        assert outcomes == [None, None]
    else:
        np.testing.assert_allclose(outcomes[0], outcomes[1], rtol=1e-6)
        np.testing.assert_allclose(outcomes[0], s * np.ones((300, 1), np.float32) * x, rtol=1e-6)  # d/dW = s 1 x^T


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_matmul_and_linear_gradients_near_the_top_of_the_range_stay_exact(reference):
    # Large but finite gradients (squares overflow, so the fast proof falls back to the exact scan) pass.
    x = Tensor(np.full((1, 2), 1.0, np.float32), label="x")
    W = Tensor(np.full((1, 2), 1e20, np.float32), label="W")
    with fast.reference_only() if reference else contextlib.nullcontext():
        (linear(x, W) * 1e10).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((1, 2), np.float32(1e20) * np.float32(1e10)))
    assert np.isfinite(x.grad).all()

STEPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
         "div": lambda a, b: a / b, "tanh": lambda a, b: a.tanh(), "exp": lambda a, b: a.exp(),
         "sin": lambda a, b: a.sin(), "square": lambda a, b: a ** 2}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([1e-300, 1e-150, 1e-20, 0.5, 3.0, 1e20, 1e150, 1e300, -1e300, -1e150]),
                min_size=2, max_size=4),
       st.lists(st.tuples(st.sampled_from(["add", "sub", "mul", "div", "tanh", "exp", "sin", "square"]),
                          st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=8))
def test_extreme_magnitudes_give_finite_gradients_or_a_clear_error(inputs, steps):
    leaves = [Value(v) for v in inputs]
    nodes = list(leaves)
    try:
        for op, i, j in steps:
            a, b = nodes[i % len(nodes)], nodes[j % len(nodes)]
            nodes.append(STEPS[op](a, b))
        gs = grad(nodes[-1], leaves)
    except MicrogradxError:
        return
    assert all(math.isfinite(g) for g in gs), gs


def test_math_functions_refuse_a_value_instead_of_cutting_the_graph():
    with pytest.raises(TypeError, match=r"x\.sin\(\)"):
        math.sin(Value(1.0))
    with pytest.raises(TypeError, match="x.data"):
        float(Value(2.0))


def test_pickle_and_deepcopy_of_a_deep_graph_keep_values_and_sharing():
    import copy
    import pickle

    x = Value(0.5, label="x")
    y = x
    for _ in range(20_000):      # far deeper than Python's recursion limit
        y = (y * 0.999).tanh() + x * 1e-4
    for clone in (pickle.loads(pickle.dumps(y)), copy.deepcopy(y)):
        assert clone is not y and clone.data == y.data
        leaves = [n for n in __import__("microgradx").topological_order(clone) if not n.parents]
        xs = [n for n in leaves if n.label == "x"]
        assert len(xs) == 1     # the one x, shared by every level, stays one node
        g_clone, = grad(clone, xs)
        assert g_clone == grad(y, [x])[0]
        assert clone.op is y.op  # the same op-table row
