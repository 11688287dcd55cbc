"""Tensor graphs as graphs: the tensor-op rows, the node protocol, forward mode, the gradient check, the fast path
against its reference, and the bugs found on the way, each against an independent oracle."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from microgradx import MicrogradxError, Value, fast, graph, losses, nn
from microgradx.functional import avg_pool2d, batch_norm, conv2d, max_pool2d
from microgradx.graph import Event, Node, backprop, check_gradients, jvp
from microgradx.ops import OPS, Op
from microgradx.tensor import (
    TENSOR_OPS,
    Kernel,
    Tensor,
    TensorOp,
    concatenate,
    einsum,
    linear,
    node,
    pad,
    stack,
    where,
)

DEMOS = Path(__file__).resolve().parent.parent / "demos"


def _demo(name: str):
    """Import a demo script (they import their shared ``_common`` helper from the demos folder)."""
    sys.path.insert(0, str(DEMOS))
    try:
        spec = importlib.util.spec_from_file_location(f"graph_demo_{name}", DEMOS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DEMOS))
    return module


def mlp_graph(rng):
    from microgradx.train import mlp

    net = mlp([64, 32, 10], rng=0)
    x = rng.random((8, 64), dtype=np.float32)
    return losses.cross_entropy(net(x), rng.integers(0, 10, 8)), net


def cnn_graph(rng):
    net = _demo("cnn_digits").build(seed=0)
    x = rng.random((4, 1, 8, 8), dtype=np.float32)
    return losses.cross_entropy(net(x), rng.integers(0, 10, 4)), net


def lstm_graph(rng):
    demo = _demo("lstm_sequence")
    model = demo.Adder(hidden=6, seed=0)
    X, y = demo.make_adding(5, 6, seed=0)
    return losses.mse(model(X), y), model


GRAPHS = {"mlp": mlp_graph, "cnn": cnn_graph, "lstm": lstm_graph}


# ---------------------------------------------------------------------------------------------------------
# Rows and the node protocol
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(GRAPHS))
def test_every_tensor_node_has_a_row_never_a_string(name):
    loss, _ = GRAPHS[name](np.random.default_rng(0))
    for n in graph.topological_order(loss):
        assert isinstance(n, Node)
        if n.parents:
            assert type(n.op) in (Op, TensorOp), n.op
            assert isinstance(n.op.display(n.arg), str) and n.op.display(n.arg)
            assert n.partials is None


def test_value_satisfies_the_node_protocol_too():
    x = Value(2.0)
    assert isinstance(x * x, Node) and isinstance(x, Node)


def test_builder_refuses_nothing_it_should_check_and_records_rows():
    x = Tensor([1.0, -2.0], label="x")
    y = node(OPS["leaky_relu"], (x,), 0.5)
    assert y.op is OPS["leaky_relu"] and y.arg == 0.5 and y.data.tolist() == [1.0, -1.0]
    s = node(TENSOR_OPS["sum"], (x,), {"axis": 0})
    assert s.op is TENSOR_OPS["sum"] and s.item() == -1.0
    with pytest.raises(MicrogradxError, match=r"log\(x\): log needs x > 0, got -2.0 at index \(1,\)"):
        node(OPS["log"], (x,))
    big = Tensor([1e200, 1e200])
    with pytest.raises(MicrogradxError, match="matmul"):
        node(TENSOR_OPS["matmul"], (big, big))


def test_backprop_events_on_tensors_carry_contributions_and_no_partials():
    w = Tensor([1.0, 2.0], label="w")
    loss = (w * w).sum()
    events = [e for e in backprop(loss, trace=True, accumulate=False)]
    assert all(isinstance(e, Event) for e in events)
    by_node = {id(e.node): e for e in events}
    mul = loss.parents[0]
    e = by_node[id(mul)]
    assert e.partials is None
    np.testing.assert_array_equal(e.grad, [1.0, 1.0])
    # d(w*w)/dw through each of the two uses: g * w, and the running total 2 w after the second
    np.testing.assert_array_equal(e.contributions[0], [1.0, 2.0])
    np.testing.assert_array_equal(e.totals[1], [2.0, 4.0])
    # Values keep their per-edge partials
    x = Value(3.0)
    ev = [e for e in backprop(x * x, trace=True) if e.parents][0]
    assert ev.partials == (3.0, 3.0)


def test_paths_on_a_tensor_graph_points_to_the_scalar_engine():
    w = Tensor([1.0, 2.0])
    with pytest.raises(MicrogradxError, match=r"paths works on scalar \(Value\) graphs.*Value"):
        graph.paths((w * w).sum(), w)
    with pytest.raises(MicrogradxError, match="Value"):
        graph.count_paths((w * w).sum(), w)


def test_readers_given_something_else_say_what_they_support():
    with pytest.raises(MicrogradxError, match="Value or a Tensor"):
        graph.topological_order(3.0)
    with pytest.raises(TypeError, match="keys of tangents must be graph nodes"):
        jvp(Value(1.0) * 2, {"x": 1.0})


# ---------------------------------------------------------------------------------------------------------
# Forward mode equals reverse mode's directional derivative
# ---------------------------------------------------------------------------------------------------------

UNARY = ["tanh", "sigmoid", "sin", "softplus", "exp", "relu", "gelu", "sinh", "arctan", "elu", "abs"]


@st.composite
def tensor_programs(draw):
    """A random program on two (3, 4) leaves that reuses earlier results: elementwise rows and tensor rows."""
    seed = draw(st.integers(0, 2**32 - 1))
    steps = draw(st.lists(st.tuples(st.sampled_from(
        ["unary", "add", "mul", "sub", "matmul_t", "sum0", "mean1k", "softmax", "log_softmax", "logsumexp",
         "reshape", "transpose_back", "getitem", "concat", "where", "max1k", "clip", "linear", "cumsum", "prod1k",
         "var0k", "norm1k", "einsum", "stack", "index_put", "scatter_add", "tile_flip", "pad", "expand"]),
        st.integers(0, 100), st.sampled_from(UNARY)), min_size=1, max_size=7))
    return seed, steps


STEPS = {
    "unary": lambda x, y, un: getattr(x.clip(-3.0, 3.0), un)(),
    "add": lambda x, y, un: x + y, "mul": lambda x, y, un: x * y, "sub": lambda x, y, un: x - y,
    "matmul_t": lambda x, y, un: (x @ y.T) @ Tensor(np.full((3, 4), 0.1), requires_grad=False),
    "sum0": lambda x, y, un: x.sum(axis=0, keepdims=True) * Tensor(np.ones((3, 4)), requires_grad=False),
    "mean1k": lambda x, y, un: x.mean(axis=1, keepdims=True) + y,
    "softmax": lambda x, y, un: x.softmax(axis=1), "log_softmax": lambda x, y, un: x.log_softmax(axis=0),
    "logsumexp": lambda x, y, un: x.logsumexp(axis=1, keepdims=True) * y,
    "reshape": lambda x, y, un: x.reshape(4, 3).reshape(3, 4),
    "transpose_back": lambda x, y, un: x.T.T,
    "getitem": lambda x, y, un: concatenate([x[1:], x[:1]], axis=0),
    "concat": lambda x, y, un: concatenate([x, y], axis=1)[:, ::2],
    "where": lambda x, y, un: where(x.data > 0, x, y),
    "max1k": lambda x, y, un: x.max(axis=1, keepdims=True) * y,
    "clip": lambda x, y, un: x.clip(-0.5, 0.5) + y,
    "linear": lambda x, y, un: linear(x, Tensor(np.full((4, 4), 0.2) + np.eye(4)), Tensor(np.ones(4)),
                             activation="tanh"),
    "cumsum": lambda x, y, un: x.cumsum(axis=1), "prod1k": lambda x, y, un: x.prod(axis=1, keepdims=True) * y,
    "var0k": lambda x, y, un: x.var(axis=0, keepdims=True) + y,
    "norm1k": lambda x, y, un: x.norm(axis=1, keepdims=True) * y,
    "einsum": lambda x, y, un: einsum("ij,kj,kl->il", x, y, Tensor(np.full((3, 4), 0.1), requires_grad=False)),
    "stack": lambda x, y, un: stack([x, y], axis=2).mean(axis=2),
    "index_put": lambda x, y, un: x.index_put(np.array([0, 2]), y[1], accumulate=True),
    "scatter_add": lambda x, y, un: x.scatter_add(0, np.array([[2, 0, 1, 2], [0, 0, 2, 1]]), y[:2]),
    "tile_flip": lambda x, y, un: x.flip(axis=1).tile(1, 2)[:, 3:7],
    "pad": lambda x, y, un: pad(x, ((1, 0), (0, 0)), value=0.5)[:3] * y,
    "expand": lambda x, y, un: x[1:2].expand(3, 4) - y,
}


def run_program(program, a, b):
    _, steps = program
    vals = [a, b]
    for kind, pick, un in steps:
        x = vals[pick % len(vals)]
        y = vals[(pick // 7) % len(vals)]
        if x.shape != (3, 4):
            x = x.reshape(-1)[:1].reshape(1, 1) * Tensor(np.ones((3, 4)), requires_grad=False)
        if y.shape != (3, 4):
            y = y.reshape(-1)[:1].reshape(1, 1) * Tensor(np.ones((3, 4)), requires_grad=False)
        vals.append(STEPS[kind](x, y, un))
    return vals[-1]


@settings(max_examples=40, deadline=None)
@given(tensor_programs())
def test_jvp_equals_reverse_mode_on_random_tensor_programs(program):
    rng = np.random.default_rng(program[0])
    a = Tensor(rng.normal(size=(3, 4)), label="a")
    b = Tensor(rng.normal(size=(3, 4)), label="b")
    out = run_program(program, a, b)
    va, vb = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    g = rng.normal(size=out.shape)
    forward = jvp(out, {a: va, b: vb})
    if out.requires_grad:
        out.backward(g)
    ga = a.grad if a.grad is not None else 0.0
    gb = b.grad if b.grad is not None else 0.0
    reverse = float(np.sum(ga * va) + np.sum(gb * vb))
    assert float(np.sum(g * forward)) == pytest.approx(reverse, rel=1e-9, abs=1e-9)


def _backward_state(program, fast_pass, bad_seed=False):
    """Run ``program`` once and its backward pass with the fast twin or the reference generator, over gradients
    already held (so sums accumulate) and a retained intermediate; returns every grad and the error, if any."""
    rng = np.random.default_rng(program[0])
    a = Tensor(rng.normal(size=(3, 4)), label="a")
    b = Tensor(rng.normal(size=(3, 4)), label="b")
    a.grad = rng.normal(size=(3, 4))
    mid = (a * b).retain_grad()
    out = run_program(program, mid, b)
    seed = rng.normal(size=out.shape)
    if bad_seed:  # finite, but large enough that some vjp downstream overflows
        seed = seed * 1e307
    error = None
    if out.requires_grad:
        try:
            if fast_pass:
                fast.tensor_backward(out, seed, graph.topological_order(out))
            else:
                graph.run(backprop(out, seed))
        except MicrogradxError as e:
            error = str(e)
    return [t.grad for t in (a, b, mid)], error


@pytest.mark.filterwarnings("ignore:overflow encountered")
@settings(max_examples=60, deadline=None)
@given(tensor_programs(), st.booleans())
def test_fast_tensor_backward_agrees_with_the_reference_pass_bit_for_bit(program, bad_seed):
    # Oracle: graph.backprop, the pass the stepper draws, on an identical graph: the same gradients (accumulated
    # onto existing ones, kept on a retain_grad() result) bit for bit, and the same error where a vjp overflows.
    fast_grads, fast_error = _backward_state(program, True, bad_seed)
    ref_grads, ref_error = _backward_state(program, False, bad_seed)
    assert fast_error == ref_error
    event("refused" if ref_error else "passed")
    for f, r in zip(fast_grads, ref_grads, strict=True):
        if r is None:
            assert f is None
        else:
            np.testing.assert_array_equal(f, r)
            assert f.dtype == r.dtype


def test_tensor_backward_runs_the_fast_pass_and_reference_only_runs_the_generator(monkeypatch):
    calls = []
    monkeypatch.setattr(fast, "tensor_backward", lambda *a: calls.append("fast"))
    w = Tensor([1.0, 2.0])
    (w * w).sum().backward()
    with fast.reference_only():
        (w * w).sum().backward()
    assert calls == ["fast"] and w.grad.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("name", list(GRAPHS))
def test_jvp_on_the_demo_graphs_equals_reverse_mode(name):
    rng = np.random.default_rng(1)
    loss, net = GRAPHS[name](rng)
    p = next(iter(net.parameters()))
    v = rng.normal(size=p.data.shape).astype(p.data.dtype)
    forward = float(jvp(loss, {p: v}))
    loss.backward()
    assert forward == pytest.approx(float(np.sum(p.grad * v)), rel=1e-3, abs=1e-5)


def test_jvp_tangents_are_checked_like_data():
    w = Tensor([1.0, 2.0])
    with pytest.raises(MicrogradxError, match="jvp tangent: shape"):
        jvp(w * w, {w: np.ones(3)})
    with pytest.raises(MicrogradxError, match="finite"):
        jvp(w * w, {w: np.array([1.0, np.nan])})


# ---------------------------------------------------------------------------------------------------------
# Gradient checks
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(GRAPHS))
def test_check_gradients_passes_on_the_demo_graphs(name):
    loss, _ = GRAPHS[name](np.random.default_rng(2))
    report = check_gradients(loss)
    assert report.ok, str(report)
    assert report.checked >= 3


def test_check_gradients_names_a_broken_vjp_by_row(monkeypatch):
    x = Tensor(np.random.default_rng(3).normal(size=(4, 5)), label="x")
    out = (x.softmax(axis=1) * x).tanh().sum()
    assert check_gradients(out).ok
    row = TENSOR_OPS["softmax"]
    right = row.vjp
    monkeypatch.setattr(row, "vjp", lambda g, res, needs: tuple(1.1 * c for c in right(g, res, needs)))
    report = check_gradients(out)
    assert not report.ok and report.first == "softmax"
    assert "softmax" in str(report) and "central differences" in str(report)


def test_check_gradients_names_a_broken_fast_kernel(monkeypatch):
    net = nn.Sequential(nn.Linear(5, 4, rng=0), nn.ReLU(), nn.Linear(4, 3, rng=1))
    loss = losses.cross_entropy(net(np.ones((2, 5), np.float32)), [0, 1])
    row = TENSOR_OPS["linear"]
    bad = Kernel(row.fast.forward, lambda g, res, needs: tuple(
        None if c is None else 2 * c for c in fast.linear_vjp(g, res, needs)))
    monkeypatch.setattr(row, "fast", bad)
    assert check_gradients(loss).first == "linear"


def test_check_gradients_checks_elementwise_rows_against_sympy(monkeypatch):
    x = Tensor(np.array([0.3, 0.7]), label="x")
    out = x.sinh().sum()
    assert check_gradients(out).ok
    wrong = Op(**{**{f: getattr(OPS["sinh"], f) for f in ("name", "arity", "forward", "label", "template", "doc")},
                  "partials": lambda F, o, x: (F.cosh(x) * 1.01,)})
    report = check_gradients(node(wrong, (x,)).sum())
    assert report.first == "sinh" and "SymPy" in str(report)
    v = Value(0.4)
    assert check_gradients(v.sinh() * v).ok


def test_check_gradients_skips_kinks_instead_of_blaming_them():
    x = Tensor(np.array([[0.0, 0.0, 1.0, 1.0]]).reshape(1, 1, 2, 2))
    assert check_gradients(max_pool2d(x.relu(), 2).sum()).ok  # every window a tie


# ---------------------------------------------------------------------------------------------------------
# The fast path agrees with the reference
# ---------------------------------------------------------------------------------------------------------

def both_paths(build, arrays):
    """(output, gradients) of build(*tensors) with the fast kernels and with the reference ones."""
    found = []
    for reference in (False, True):
        ts = [Tensor(a.copy(order="K")) for a in arrays]
        g = np.random.default_rng(5).normal(size=build(*ts).shape).astype(arrays[0].dtype)
        if reference:
            with fast.reference_only():
                out = build(*ts)
                out.backward(g)
        else:
            out = build(*ts)
            out.backward(g)
        found.append((out.data, [t.grad for t in ts]))
    return found


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 7), st.sampled_from([None, "relu", "tanh", "softplus"]),
       st.booleans(), st.sampled_from(["float32", "float64"]), st.integers(0, 2**31))
def test_fast_linear_agrees_with_the_reference(n, k, m, act, column_major, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)).astype(dtype)
    W = rng.normal(size=(m, k)).astype(dtype)
    W = np.asfortranarray(W) if column_major else W
    b = rng.normal(size=m).astype(dtype)
    (fo, fg), (ro, rg) = both_paths(lambda x, w, c: linear(x, w, c, activation=act), [X, W, b])
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(fo, ro, rtol=tol, atol=tol)
    for a, r in zip(fg, rg):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([((5, 7), (7, 3)), ((1, 300), (300, 40)), ((7,), (7, 3)), ((5, 7), (7,)), ((2, 5, 7), (7, 3)),
                        ((2, 5, 7), (2, 7, 3))]),
       st.sampled_from(["float32", "float64"]), st.integers(0, 2**31))
def test_fast_matmul_agrees_with_the_reference(shapes, dtype, seed):
    # (1, 300) @ (300, 40): the weight gradient is proved finite from norms, without a scan.
    rng = np.random.default_rng(seed)
    A, B = (rng.normal(size=s).astype(dtype) for s in shapes)
    (fo, fg), (ro, rg) = both_paths(lambda a, b: a @ b, [A, B])
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(fo, ro, rtol=tol, atol=tol)
    for a, r in zip(fg, rg):
        assert a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)

def test_fast_linear_agrees_with_the_reference_on_a_large_weight():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 300)).astype(np.float64)
    W = np.asfortranarray(rng.normal(size=(100, 300)))  # above the size where the input gradient is transposed
    (fo, fg), (ro, rg) = both_paths(lambda x, w: linear(x, w, activation="relu"), [X, W])
    np.testing.assert_allclose(fo, ro, rtol=1e-10, atol=1e-10)
    for a, r in zip(fg, rg):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 6), st.sampled_from(["float32", "float64"]), st.integers(0, 2**31),
       st.floats(0.1, 300.0))
def test_fast_cross_entropy_agrees_with_the_reference(n, c, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    Z = (rng.normal(size=(n, c)) * scale).astype(dtype)
    y = rng.integers(0, c, n)
    (fo, fg), (ro, rg) = both_paths(lambda z: losses.cross_entropy(z, y), [Z])
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(fo, ro, rtol=tol, atol=tol)
    np.testing.assert_allclose(fg[0], rg[0], rtol=tol, atol=tol)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(op.name for op in OPS.values() if op.arity == 1 and not op.checked)),
       st.sampled_from(["float32", "float64"]), st.integers(0, 2**31))
def test_fast_elementwise_rows_with_mask_arithmetic_agree_with_the_reference(name, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3, 5)).astype(dtype) * 3
    X[0, 0] = 0.0  # a kink, where the mask decides
    (fo, fg), (ro, rg) = both_paths(lambda x: x.apply(name), [X])
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert fo.dtype == ro.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fo, ro, rtol=tol, atol=tol)
    np.testing.assert_allclose(fg[0], rg[0], rtol=tol, atol=tol)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["float32", "float64"]), st.integers(0, 40), st.integers(0, 2**31),
       st.sampled_from([0.0, np.inf, -np.inf, np.nan]), st.sampled_from([1.0, 1e18, 1e30, 1e160, 1e300]),
       st.sampled_from(["C", "F", "strided"]))
def test_fast_finiteness_proof_agrees_with_the_exact_scan(dtype, n, seed, bad, scale, layout):
    # The oracle is NumPy's own elementwise isfinite; huge finite entries make the sum of squares overflow, so
    # the fast path must fall back to the scan and still say True.
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        a = (rng.normal(size=(n, 3)) * scale).astype(dtype)
    if n and bad != 0.0:
        a[rng.integers(n), rng.integers(3)] = bad
    a = np.asfortranarray(a) if layout == "F" else a[::2] if layout == "strided" else a
    want = bool(np.isfinite(a).all())
    assert fast.all_finite(a) is want
    with fast.reference_only():
        assert fast.all_finite(a) is want
    with np.errstate(over="raise"):  # as inside an optimizer step
        assert fast.all_finite(a) is want

# ---------------------------------------------------------------------------------------------------------
# Bugs found on the way
# ---------------------------------------------------------------------------------------------------------

def test_vector_dot_vector_backward():
    a, b = Tensor([1.0, 2.0]), Tensor([3.0, 4.0])
    y = a @ b
    y.backward()
    assert y.item() == 11.0
    assert a.grad.tolist() == [3.0, 4.0] and b.grad.tolist() == [1.0, 2.0]  # d(a.b)/da = b, d/db = a


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,)),
                                    ((3,), (4, 3, 2))])
def test_matmul_with_vector_operands_matches_central_differences(sa, sb):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=sa), rng.normal(size=sb)
    assert check_gradients((Tensor(A) @ Tensor(B)).sum() if A.ndim + B.ndim > 2 else Tensor(A) @ Tensor(B)).ok
    ta, tb = Tensor(A), Tensor(B)
    out = ta @ tb
    g = rng.normal(size=out.shape)
    out.backward(g)
    h = 1e-6
    for t, X, other, first in ((ta, A, B, True), (tb, B, A, False)):
        num = np.zeros_like(X)
        for i in np.ndindex(X.shape):
            E = np.zeros_like(X)
            E[i] = h
            up, down = ((X + E) @ other, (X - E) @ other) if first else (other @ (X + E), other @ (X - E))
            num[i] = np.sum(g * (up - down)) / (2 * h)
        np.testing.assert_allclose(t.grad, num, rtol=1e-6, atol=1e-8)


def test_prelu_slopes_act_along_the_channel_axis_as_pytorch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 3, 4, 5)).astype(np.float64)   # NCHW; width 5 != 3 channels
    act = nn.PReLU(num_parameters=3, dtype=np.float64)
    act.slope.data[:] = [0.1, 0.2, 0.3]
    x = Tensor(X)
    y = act(x)
    a = np.array([0.1, 0.2, 0.3])[None, :, None, None]
    np.testing.assert_allclose(y.data, np.where(X > 0, X, a * X))   # torch.nn.functional.prelu's definition
    g = rng.normal(size=X.shape)
    y.backward(g)
    np.testing.assert_allclose(act.slope.grad, np.where(X > 0, 0.0, X * g).sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(x.grad, np.where(X > 0, g, a * g))
    # width equal to the channel count: still channels, not the last axis
    X2 = rng.normal(size=(2, 3, 3)).astype(np.float64)
    np.testing.assert_allclose(act(Tensor(X2)).data, np.where(X2 > 0, X2, np.array([0.1, 0.2, 0.3])[None, :, None]
                                                              * X2))
    with pytest.raises(MicrogradxError, match="channels on axis 1"):
        act(Tensor(np.ones((2, 4))))


@pytest.mark.parametrize("which", ["max", "min"])
def test_extreme_reduction_backward_makes_no_float64_temporary(which):
    n = 50_000
    X = np.zeros((n, 20), np.float32)
    X[:, ::2] = (np.arange(n) % 3)[:, None]   # ties in every row
    x = Tensor(X)
    m = getattr(x, which)(axis=1)
    tracemalloc.start()
    m.backward(np.ones(n, np.float32))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.grad.dtype == np.float32
    # the gradient, a boolean mask and reduced-size arrays: well under what one float64 copy (2x) would add
    assert peak < 1.8 * X.nbytes, peak / X.nbytes
    hit = X == (X.max(axis=1, keepdims=True) if which == "max" else X.min(axis=1, keepdims=True))
    np.testing.assert_allclose(x.grad, hit / hit.sum(axis=1, keepdims=True), rtol=1e-6)


def test_functional_rows_check_against_central_differences():
    rng = np.random.default_rng(4)
    x = Tensor(rng.normal(size=(2, 2, 5, 5)))
    w = Tensor(rng.normal(size=(3, 2, 3, 3)))
    b = Tensor(rng.normal(size=3))
    y = conv2d(x, w, b, stride=(2, 1), padding=1)
    gamma, beta = Tensor(rng.normal(size=3)), Tensor(rng.normal(size=3))
    z = batch_norm(y, gamma, beta, np.zeros(3), np.ones(3))
    out = avg_pool2d(max_pool2d(z.tanh(), 2, stride=1), 2).sum()
    report = check_gradients(out)
    assert report.ok, str(report)
    direction = rng.normal(size=w.data.shape)
    t = jvp(out, {w: direction})
    out.backward()
    assert float(t) == pytest.approx(float(np.sum(w.grad * direction)), rel=1e-9)


@pytest.mark.parametrize("shape, other", [((), (3,)), ((), (2, 3)), ((1,), (2, 3)), ((3,), (2, 3)), ((2, 1), (2, 3))])
def test_a_broadcast_operand_gets_an_owned_array_gradient_of_its_own_shape_and_dtype(shape, other):
    # d sum(a * b) / da = b summed over the axes a was broadcast along (the oracle sums with NumPy directly).
    rng = np.random.default_rng(0)
    a = Tensor(rng.normal(size=shape).astype(np.float32))
    B = rng.normal(size=other).astype(np.float32)
    (a * Tensor(B, requires_grad=False)).sum().backward()
    assert type(a.grad) is np.ndarray and a.grad.shape == shape and a.grad.dtype == np.float32
    assert a.grad.base is None  # owned, so an optimizer may update it in place
    lead = len(other) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and other[lead + i] != 1)
    want = B.sum(axis=axes, keepdims=True).reshape(shape)
    np.testing.assert_allclose(a.grad, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul")
def test_matmul_with_an_unscanned_raw_batch_still_refuses_a_non_finite_entry(dtype, bad, side):
    # A raw array operand is not scanned on its own; the product's check must catch it, even where the other
    # factor is zero (inf * 0 is NaN).
    rng = np.random.default_rng(3)
    W = Tensor(rng.normal(size=(4, 3)).astype(dtype), label="W")
    W.data[2] = 0.0
    X = rng.normal(size=(5, 4)).astype(dtype)
    X[3, 2] = bad
    with pytest.raises(MicrogradxError, match=r"matmul\(.*\): gives .*not a finite number"):
        _ = X @ W if side == "left" else W.T @ X.T


@pytest.mark.filterwarnings("ignore:overflow encountered")
@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.integers(1, 300), st.integers(1, 40), st.sampled_from([np.float32, np.float64]),
       st.integers(-30, 36), st.booleans(), st.integers(0, 2**32 - 1))
def test_the_bounds_a_fast_vjp_hands_on_cover_every_gradient_entry(n, k, m, dtype, exponent, column_major, seed):
    # Oracle: the gradients' own largest magnitudes, in float64. The optimizer trusts these bounds instead of a
    # pass of its own, so each must be >= every entry, whether it came from a norm proof or from a scan; sizes
    # reach both (a long inner dimension with few outputs is proved, a short one scanned), magnitudes reach
    # float32's overflow (a refused gradient hands on nothing).
    rng = np.random.default_rng(seed)
    scale = 10.0 ** (exponent / 2)
    X = (rng.normal(size=(n, k)) * scale).astype(dtype)
    W = (rng.normal(size=(m, k)) * scale).astype(dtype)
    W = np.asfortranarray(W) if column_major else W
    b = rng.normal(size=m).astype(dtype)
    g = (rng.normal(size=(n, m)) * scale).astype(dtype)
    kernels = {"linear": lambda: fast.linear_vjp(g, fast.linear_forward(X, W, b)[1], (True, True, True)),
               "matmul": lambda: fast.matmul_vjp(g, (X, np.ascontiguousarray(W.T)), (True, True),
                                                 reference=TENSOR_OPS["matmul"].vjp)}
    for name, vjp in kernels.items():
        try:
            grads = vjp()
        except fast.NonFiniteGradient:
            continue
        assert isinstance(grads, fast.BoundedGrads), name
        for c, bound in zip(grads, grads.bounds, strict=True):
            assert np.all(np.isfinite(c))
            if bound is not None:
                assert bound >= float(np.max(np.abs(c.astype(np.float64)))), name


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("build", ["linear+relu", "nn.Sequential"])
def test_a_fused_activation_does_not_hide_an_overflowing_pre_activation(reference, build):
    # relu(-inf) is 0: the fused node must refuse the overflow as the separate ops do (x @ W.T gives -inf).
    x = np.array([[1e38, 1e38]], np.float32)
    W = np.array([[-3.0, -3.0], [1.0, 0.0]], np.float32)
    with fast.reference_only() if reference else contextlib.nullcontext():
        with pytest.raises(MicrogradxError, match=r"linear\(.*\): gives -inf at index \(0, 0\)"):
            if build == "linear+relu":
                linear(x, Tensor(W), activation="relu")
            else:
                net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
                net.load_state_dict({"0.weight": W, "0.bias": np.zeros(2, np.float32)})
                net(x)
