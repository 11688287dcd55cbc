"""Tests of the NumPy Tensor: every op-table row and every tensor-only op against float64 central differences,
agreement with the scalar Value engine, broadcasting, dtypes, gradient bookkeeping and error messages."""

from __future__ import annotations

import math
import operator
import zlib

import numpy as np
import pytest

import microgradx as mgx
from microgradx import graph
from microgradx.ops import OPS, REAL, DivisionByZeroError, DomainError, MicrogradxError
from microgradx.tensor import FUSABLE_ACTIVATIONS, ShapeError, Tensor, concatenate, linear, where

H = 1e-6


def central_grad(f, arrays: list[np.ndarray], k: int) -> np.ndarray:
    """d f / d arrays[k] by float64 central differences, entry by entry."""
    x = arrays[k]
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + H
        up = f(*arrays)
        x[i] = old - H
        down = f(*arrays)
        x[i] = old
        g[i] = (up - down) / (2 * H)
    return g


def check_against_differences(build, arrays: list[np.ndarray], rng: np.random.Generator, rtol=1e-5, atol=1e-6):
    """Compare backward() with central differences of L = sum(build(*tensors) * W), W random and fixed."""
    tensors = [Tensor(a.copy(order="K")) for a in arrays]  # keep each array's memory layout
    out = build(*tensors)
    W = rng.normal(size=out.shape)
    (out * Tensor(W, requires_grad=False)).sum().backward()

    def f(*arrs):
        return float((build(*(Tensor(a, requires_grad=False) for a in arrs)).data * W).sum())
    for k, t in enumerate(tensors):
        expected = central_grad(f, [a.copy() for a in arrays], k)
        np.testing.assert_allclose(t.grad, expected, rtol=rtol, atol=atol, err_msg=f"input {k}")


# ---------------------------------------------------------------------------------------------------------
# Op-table rows: sampled inside each row's domain, away from each row's kinks
# ---------------------------------------------------------------------------------------------------------

def sample_in(domain, shape, rng) -> np.ndarray:
    """Values inside ``domain`` at distance >= 0.3 from its edges (and from 0 when 0 is excluded)."""
    if domain is REAL:
        return rng.uniform(-2.0, 2.0, size=shape)
    if domain.nonzero:
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 2.0, size=shape)
    assert math.isfinite(domain.lo) and not math.isfinite(domain.hi)
    return domain.lo + rng.uniform(0.3, 2.0, size=shape)


def params_of(op):
    if op.param is None:
        return [None]
    if op.name == "pow":
        return [2.0, 3.0, -1.0, 0.5, 2.5, 0.0]
    return [op.default, 0.3]


def shapes_of(op):
    return [((3, 4),)] if op.arity == 1 else [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4))]


def stable_seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


SCALAR_OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
                    "neg": operator.neg, "power": operator.pow}


def scalar_apply(op, args, param):
    """The same row on Values: through its Value method, or the operator for arithmetic rows."""
    if op.name == "pow":
        return args[0] ** param
    if op.name in SCALAR_OPERATORS:
        return SCALAR_OPERATORS[op.name](*args)
    method = getattr(args[0], op.methods[0])
    return method(param) if op.param is not None and op.arity == 1 else method(*args[1:])


CASES = [(op, p, shapes) for op in OPS.values() for p in params_of(op) for shapes in shapes_of(op)]


def away_from_kinks(op, arrays, rng, domains, shapes, min_dist=1e-2):
    """Resample until every entry is at least ``min_dist`` from the row's kink (the row says where it is)."""
    if op.kink is None:
        return arrays
    for _ in range(100):
        grids = np.broadcast_arrays(*arrays)
        dist = np.vectorize(lambda *xs: op.kink(*xs))(*grids)
        if (dist >= min_dist).all():
            return arrays
        arrays = [sample_in(d, s, rng) for d, s in zip(domains, shapes, strict=True)]
    raise AssertionError(f"{op.name}: could not sample away from kinks")


@pytest.mark.parametrize(("op", "param", "shapes"), CASES,
                         ids=[f"{op.name}-{p}-{'x'.join(map(str, s))}" for op, p, s in CASES])
def test_every_row_matches_central_differences(op, param, shapes):
    rng = np.random.default_rng(stable_seed(op.name, param, shapes))
    domains = op.domains(param)
    arrays = [sample_in(d, s, rng) for d, s in zip(domains, shapes, strict=True)]
    arrays = away_from_kinks(op, arrays, rng, domains, shapes)
    check_against_differences(lambda *ts: ts[0].apply(op, *ts[1:], param=param), arrays, rng)


@pytest.mark.parametrize(("op", "param", "shapes"), CASES,
                         ids=[f"{op.name}-{p}-{'x'.join(map(str, s))}" for op, p, s in CASES])
def test_every_row_agrees_with_the_scalar_engine(op, param, shapes):
    """Forward values and gradients equal those of Values, entry by entry (broadcast entries summed)."""
    rng = np.random.default_rng(stable_seed(7, op.name, param, shapes))
    domains = op.domains(param)
    arrays = [sample_in(d, s, rng) for d, s in zip(domains, shapes, strict=True)]
    arrays = away_from_kinks(op, arrays, rng, domains, shapes)
    tensors = [Tensor(a) for a in arrays]
    out = tensors[0].apply(op, *tensors[1:], param=param)
    out.sum().backward()

    values = [np.vectorize(mgx.Value, otypes=[object])(a) for a in arrays]
    grids = np.broadcast_arrays(*values)
    total = mgx.Value(0.0)
    for i in np.ndindex(grids[0].shape):
        args = [g[i] for g in grids]
        v = scalar_apply(op, args, param)
        assert abs(v.data - out.data[i]) <= 1e-12 * max(1.0, abs(v.data))
        total = total + v
    total.backward()
    for t, vs in zip(tensors, values, strict=True):
        expected = np.vectorize(lambda v: v.grad)(vs)
        np.testing.assert_allclose(t.grad, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Tensor-only ops
# ---------------------------------------------------------------------------------------------------------

TENSOR_OPS = {
    "matmul 2-D": (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "matmul vector-matrix": (lambda a, b: a @ b, [(4,), (4, 2)]),
    "matmul matrix-vector": (lambda a, b: a @ b, [(3, 4), (4,)]),
    "matmul batched, broadcast": (lambda a, b: a @ b, [(2, 3, 4), (4, 2)]),
    "linear": (lambda x, w, b: linear(x, w, b), [(5, 3), (4, 3), (4,)]),
    "linear 3-D input": (lambda x, w, b: linear(x, w, b), [(2, 5, 3), (4, 3), (4,)]),
    "linear without bias": (lambda x, w: linear(x, w), [(5, 3), (4, 3)]),
    "sum all": (lambda x: x.sum(), [(3, 4)]),
    "sum axis": (lambda x: x.sum(axis=0), [(3, 4)]),
    "sum axes keepdims": (lambda x: x.sum(axis=(0, 2), keepdims=True), [(2, 3, 4)]),
    "mean axis": (lambda x: x.mean(axis=1), [(3, 4)]),
    "mean keepdims": (lambda x: x.mean(axis=-1, keepdims=True), [(3, 4)]),
    "max axis": (lambda x: x.max(axis=1), [(3, 4)]),
    "max all": (lambda x: x.max(), [(3, 4)]),
    "min keepdims": (lambda x: x.min(axis=0, keepdims=True), [(3, 4)]),
    "reshape": (lambda x: x.reshape(4, 3) * x.reshape(4, 3), [(3, 4)]),
    "transpose": (lambda x: x.transpose(2, 0, 1), [(2, 3, 4)]),
    "T": (lambda x: x.T @ x, [(3, 4)]),
    "slice": (lambda x: x[1:, ::2], [(3, 4)]),
    "fancy index with repeats": (lambda x: x[[0, 2, 0]], [(3, 4)]),
    "row-wise pick": (lambda x: x[np.arange(3), [1, 0, 3]], [(3, 4)]),
    "gather": (lambda x: x.gather(np.array([[1, 1], [0, 3], [2, 2]]), axis=1), [(3, 4)]),
    "concatenate": (lambda a, b: concatenate([a, b], axis=1), [(3, 2), (3, 4)]),
    "where": (lambda a, b: where(a.data > 0, a, b), [(3, 4), (4,)]),
    "clip": (lambda x: x.clip(-1.0, 1.0), [(3, 4)]),
    "softmax": (lambda x: x.softmax(axis=1), [(3, 4)]),
    "softmax axis 0": (lambda x: x.softmax(axis=0), [(3, 4)]),
    "log_softmax": (lambda x: x.log_softmax(), [(3, 4)]),
    "logsumexp": (lambda x: x.logsumexp(axis=1), [(3, 4)]),
    "logsumexp keepdims": (lambda x: x.logsumexp(axis=0, keepdims=True), [(3, 4)]),
}


@pytest.mark.parametrize("name", list(TENSOR_OPS))
def test_tensor_only_op_matches_central_differences(name):
    build, shapes = TENSOR_OPS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    arrays = [rng.uniform(-2.0, 2.0, size=s) for s in shapes]
    if name == "clip":  # keep entries away from the clip bounds, where the derivative jumps
        arrays[0] = np.where(abs(abs(arrays[0]) - 1.0) < 0.05, 0.5, arrays[0])
    check_against_differences(build, arrays, rng)


# (input shape, weight shape): the last weight has more entries than linear's threshold for forming the input
# gradient as a transposed product, so both ways are covered.
LINEAR_SHAPES = [((5, 3), (4, 3)), ((2, 5, 3), (4, 3)), ((6, 150), (120, 150))]


@pytest.mark.parametrize("x_shape, w_shape", LINEAR_SHAPES)
def test_linear_with_a_column_major_weight_matches_central_differences(x_shape, w_shape):
    rng = np.random.default_rng(7)
    arrays = [rng.uniform(-1.0, 1.0, size=x_shape), np.asfortranarray(rng.uniform(-1.0, 1.0, size=w_shape)),
              rng.uniform(-1.0, 1.0, size=w_shape[0])]
    check_against_differences(lambda x, w, b: linear(x, w, b), arrays, rng)


@pytest.mark.parametrize("x_shape, w_shape", LINEAR_SHAPES)
def test_linear_gives_the_same_results_for_either_weight_layout(x_shape, w_shape):
    rng = np.random.default_rng(8)
    X, W, b, G = (rng.normal(size=s) for s in (x_shape, w_shape, w_shape[0], (*x_shape[:-1], w_shape[0])))
    results = []
    for layout in (np.ascontiguousarray, np.asfortranarray):
        x, w, bias = Tensor(X), Tensor(layout(W)), Tensor(b)
        y = linear(x, w, bias)
        y.backward(G)
        assert w.grad.flags.f_contiguous == w.data.flags.f_contiguous  # the gradient is laid out like W
        results.append((y.data, x.grad, w.grad, bias.grad))
    for row, col in zip(*results, strict=True):
        np.testing.assert_allclose(col, row, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(op.name for op in FUSABLE_ACTIVATIONS))
def test_linear_with_a_fused_activation_matches_central_differences(name):
    op = OPS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(200):  # resample until every pre-activation is clear of the row's kink
        arrays = [rng.uniform(-1.0, 1.0, size=(5, 3)), np.asfortranarray(rng.uniform(-1.0, 1.0, size=(4, 3))),
                  rng.uniform(-1.0, 1.0, size=4)]
        z = arrays[0] @ arrays[1].T + arrays[2]
        if op.kink is None or min(op.kink(float(v)) for v in z.ravel()) > 0.05:
            break
    else:
        raise AssertionError(f"{name}: could not sample away from its kink")
    check_against_differences(lambda x, w, b: linear(x, w, b, activation=name), arrays, rng)


def test_linear_takes_a_raw_batch_as_data_that_takes_no_gradient():
    w, b = Tensor(np.ones((2, 3))), Tensor(np.zeros(2))
    batch = np.ones((4, 3))
    y = linear(batch, w, b)
    assert y.parents[1:] == (w, b)
    assert y.parents[0].data is batch and not y.parents[0].requires_grad  # shared, not copied, no gradient
    y.sum().backward()
    np.testing.assert_array_equal(w.grad, np.full((2, 3), 4.0))
    np.testing.assert_array_equal(b.grad, np.full(2, 4.0))


def test_softmax_family_is_stable_and_matches_formulas():
    x = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])
    e = np.exp(x - x.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    t = Tensor(x)
    np.testing.assert_allclose(t.softmax().data, softmax, rtol=1e-14)
    np.testing.assert_allclose(t.log_softmax().data, np.log(softmax), rtol=1e-13)
    lse = np.array([1001.0 + math.log(math.exp(-1) + 1 + math.exp(-2)),
                    5.0 + math.log(math.exp(-10) + math.exp(-5) + 1)])
    np.testing.assert_allclose(t.logsumexp().data, lse, rtol=1e-15)


def test_max_splits_the_gradient_on_ties_like_the_table_row():
    x = Tensor([[2.0, 5.0, 5.0], [1.0, 1.0, 1.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


# ---------------------------------------------------------------------------------------------------------
# Broadcasting, dtypes and gradient bookkeeping
# ---------------------------------------------------------------------------------------------------------

def test_broadcasting_is_undone_in_gradients():
    a, b, c = Tensor(np.ones((3, 1))), Tensor(np.ones((1, 4))), Tensor(2.0)
    (a * b * c + 1.0).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4) and c.grad.shape == ()
    np.testing.assert_array_equal(a.grad, np.full((3, 1), 8.0))
    np.testing.assert_array_equal(b.grad, np.full((1, 4), 6.0))
    assert c.grad == 12.0


@pytest.mark.parametrize("op", [op for op in OPS.values() if op.arity == 1], ids=lambda op: op.name)
def test_float32_stays_float32_through_every_unary_row(op):
    x = Tensor(np.array([0.5, 1.5, 2.0], dtype=np.float32))
    param = op.default if op.name != "pow" else 2.0
    y = x.apply(op, param=param)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_stays_float32_through_tensor_ops_and_numbers():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(4, 3)).astype(np.float32), requires_grad=False)
    w = Tensor(rng.normal(size=(2, 3)).astype(np.float32))
    b = Tensor(np.zeros(2, np.float32))
    z = linear(x, w, b) * 0.5 + 1.0
    out = (z.softmax() + z.log_softmax() + z.logsumexp(keepdims=True)).mean() + (z @ z.T).max() + z[0].sum()
    assert out.dtype == np.float32
    out.backward()
    assert w.grad.dtype == np.float32 and b.grad.dtype == np.float32
    loss = mgx.losses.cross_entropy(z, np.array([0, 1, 1, 0]))
    assert loss.dtype == np.float32


def test_mixing_float32_and_float64_tensors_is_an_error_not_an_upcast():
    a = Tensor(np.ones(2, np.float32))
    b = Tensor(np.ones(2, np.float64))
    with pytest.raises(TypeError, match=r"add: dtypes differ \(float32 and float64\)"):
        a + b
    assert (a + np.ones(2)).dtype == np.float32  # a constant array takes the tensor's dtype
    assert Tensor([1, 2]).dtype == np.float64    # ints become float64


def test_data_tensors_get_no_gradient_and_record_no_graph():
    x = Tensor(np.ones((2, 2)), requires_grad=False)
    y = (x * 2.0).exp()
    assert y.parents == () and not y.requires_grad
    w = Tensor(np.ones((2, 2)))
    (y * w).sum().backward()
    assert x.grad is None and y.grad is None and w.grad is not None
    with pytest.raises(MicrogradxError, match="does not require a gradient"):
        y.sum().backward()


def test_intermediate_results_keep_no_gradient_unless_asked():
    w = Tensor([1.0, 2.0])
    h = w * 3.0
    k = (w * 2.0).retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    np.testing.assert_array_equal(k.grad, [3.0, 6.0])


def test_gradients_accumulate_and_are_never_shared_between_parameters():
    a, b = Tensor([1.0, 2.0]), Tensor([3.0, 4.0])
    out = (a + b).sum()
    out.backward()
    out.backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])
    a.grad *= 10.0  # an optimizer may update a gradient in place
    np.testing.assert_array_equal(b.grad, [2.0, 2.0])
    x = Tensor(np.ones((2, 2)))
    x.reshape(4).sum().backward()
    assert x.grad.flags.writeable and x.grad.base is None


def test_graph_core_grad_works_on_tensors():
    w = Tensor([1.0, -2.0])
    loss = (w * w * w).sum()
    (g,) = mgx.grad(loss, [w])
    np.testing.assert_array_equal(g, [3.0, 12.0])
    assert w.grad is None  # grad() leaves .grad untouched
    order = graph.topological_order(loss)
    assert order[-1] is loss and w in order


def test_create_graph_is_refused_with_a_clear_message():
    w = Tensor([1.0])
    with pytest.raises(MicrogradxError, match="create_graph"):
        graph.run(graph.backprop((w * w).sum(), np.ones(()), create_graph=True))


# ---------------------------------------------------------------------------------------------------------
# Errors name the op, the offending value and the shapes
# ---------------------------------------------------------------------------------------------------------

def test_domain_errors_name_the_op_the_value_and_where():
    with pytest.raises(DomainError, match=r"log\(x\): log needs x > 0, got -1\.5 at index \(1,\)"):
        Tensor([2.0, -1.5], label="x").log()
    with pytest.raises(DivisionByZeroError, match=r"div.*needs y != 0, got 0\.0"):
        Tensor([1.0, 2.0]) / Tensor([1.0, 0.0])
    with pytest.raises(DomainError, match=r"pow.*n=0\.5 needs x > 0, got -4\.0"):
        Tensor([-4.0]) ** 0.5


def test_non_finite_results_and_data_raise():
    with pytest.raises(DomainError, match=r"exp\(tensor\(2,\)\): gives inf at index \(1,\)"):
        with np.errstate(over="ignore"):
            Tensor(np.array([1.0, 100.0], dtype=np.float32)).exp()
    with pytest.raises(DomainError, match=r"data must be finite, got nan"):
        Tensor([1.0, float("nan")])
    with pytest.raises(DomainError, match="linear"):
        linear(np.array([[np.nan, 1.0]]), Tensor(np.ones((2, 2))))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3))), r"matmul: shapes \(2, 3\) and \(2, 3\) do not align"),
    (lambda: Tensor(np.ones((2, 3))) + Tensor(np.ones(4)), r"add: shapes \(2, 3\) and \(4,\) do not broadcast"),
    (lambda: linear(Tensor(np.ones((2, 5))), Tensor(np.ones((3, 4)))), r"linear: input of shape \(2, 5\) .* \(3, 4\)"),
    (lambda: Tensor(np.ones(6)).reshape(4, 2), r"reshape: cannot reshape .* \(6,\) .* to \(4, 2\)"),
    (lambda: Tensor(np.ones((2, 2))).sum(axis=3), r"sum: axis 3 does not fit .* \(2, 2\)"),
    (lambda: concatenate([Tensor(np.ones((2, 2))), Tensor(np.ones((3, 3)))], axis=1),
     r"concatenate: shapes \(2, 2\), \(3, 3\)"),
    (lambda: Tensor(np.ones(3))[5], r"getitem: index 5 does not fit .* \(3,\)"),
    (lambda: Tensor(np.ones((2, 2))).backward(), r"backward: .* shape \(2, 2\) is not a scalar"),
])
def test_shape_errors_name_the_op_and_the_shapes(build, message):
    with pytest.raises(ShapeError, match=message):
        build()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_on_arrays_is_max_with_zero_keeping_dtype_and_a_positive_zero(dtype):
    x = Tensor(np.array([-0.0, -2.5, 0.0, 3.0, 1e-30], dtype=dtype))
    y = x.relu()
    y.sum().backward()
    assert y.data.dtype == dtype
    assert y.data.tolist() == [0.0, 0.0, 0.0, 3.0, float(dtype(1e-30))]
    assert not np.signbit(y.data).any()  # relu(-0.0) is +0.0, as max(0, x) written with a comparison
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # relu'(0) := 0


def test_logsumexp_over_all_axes_backpropagates_to_softmax():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    t = Tensor(x)
    t.logsumexp(axis=None).backward()
    np.testing.assert_allclose(t.grad, np.exp(x) / np.exp(x).sum(), rtol=1e-12)
