"""Tests of nn modules and init schemes: agreement of a Tensor network with the same network of scalar Values,
seed 002's printed activation values, dropout (seed 003), init statistics against seed 003's formulas,
parameter naming, modes and state dicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

import microgradx as mgx
from microgradx import graph, init, nn
from microgradx.losses import cross_entropy, mse
from microgradx.ops import OPS, numpy_math
from microgradx.tensor import FUSABLE_ACTIVATIONS, ShapeError, Tensor, linear

# ---------------------------------------------------------------------------------------------------------
# The same network from Values and from Tensors
# ---------------------------------------------------------------------------------------------------------


def value_layer(x: list, W: np.ndarray, b: np.ndarray, act: str | None) -> tuple[list, list, list]:
    """One dense layer on Values; returns outputs and the weight and bias Values (for their gradients)."""
    Wv = [[mgx.Value(float(w)) for w in row] for row in W]
    bv = [mgx.Value(float(c)) for c in b]
    out = []
    for row, bias in zip(Wv, bv, strict=True):
        z = bias
        for w, xi in zip(row, x, strict=True):
            z = z + w * xi
        out.append(getattr(z, act)() if act else z)
    return out, Wv, bv


def test_a_small_network_gives_the_same_loss_and_gradients_on_both_engines():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3))
    Y = rng.normal(size=(5, 2))
    net = nn.Sequential(nn.Linear(3, 4, dtype=np.float64, init="xavier_uniform", rng=1), nn.Tanh(),
                        nn.Linear(4, 4, dtype=np.float64, bias_init=0.1, rng=2), nn.Swish(),
                        nn.Linear(4, 2, dtype=np.float64, rng=3))
    loss = mse(net(X), Y)
    loss.backward()

    layers = [net[0], net[2], net[4]]
    acts = ["tanh", "swish", None]
    total = mgx.Value(0.0)
    params = []
    for x, y in zip(X, Y, strict=True):
        h = [mgx.Value(float(v)) for v in x]
        for k, (layer, act) in enumerate(zip(layers, acts, strict=True)):
            h, Wv, bv = value_layer(h, layer.weight.data, layer.bias.data, act)
            params.append((k, Wv, bv))
        for hv, yv in zip(h, y, strict=True):
            total = total + (hv - float(yv)) ** 2
    total = total / float(Y.size)
    total.backward()

    assert abs(loss.item() - total.data) <= 1e-10
    for k, layer in enumerate(layers):
        gW = sum(np.array([[w.grad for w in row] for row in Wv]) for kk, Wv, _ in params if kk == k)
        gb = sum(np.array([c.grad for c in bv]) for kk, _, bv in params if kk == k)
        np.testing.assert_allclose(layer.weight.grad, gW, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.bias.grad, gb, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Activations: one generic module built from op-table rows; seed 002's printed outputs
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("layer", "inputs", "printed"), [
    (nn.Sigmoid(), [7.0, -22.0], [0.9990889488055994, 2.7894680920908113e-10]),
    (nn.Tanh(), [0.5, -1.0], [0.4621171572600098, -0.7615941559557646]),
    (nn.ReLU(), [7.0, -7.0], [7.0, 0.0]),
    (nn.LeakyReLU(), [7.0, -7.0], [7.0, -0.07]),
    (nn.ELU(alpha=0.1), [5.0, -5.0], [5.0, -0.09932620530009145]),
    (nn.BinaryStep(), [5.0, -1.0], [1.0, 0.0]),
    (nn.LinearActivation(4.0), [4.0, -2.0], [16.0, -8.0]),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None)
def test_activation_modules_reproduce_seed_002_outputs(layer, inputs, printed):
    out = layer(Tensor(inputs, requires_grad=False))
    np.testing.assert_allclose(out.data, printed, rtol=1e-14)


def test_swish_is_x_times_sigmoid_not_seed_002_formula():
    x = np.array([-67.0, 4.0])
    np.testing.assert_allclose(nn.Swish()(Tensor(x)).data, x / (1 + np.exp(-x)), rtol=1e-14)
    assert nn.SiLU is nn.Swish


@pytest.mark.parametrize("cls", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Swish, nn.Softplus,
                                 nn.Softsign, nn.HardTanh, nn.Arctan, nn.BinaryStep, nn.LinearActivation])
def test_every_named_activation_is_its_table_row(cls):
    layer = cls()
    row = cls.row
    assert row is OPS[row.name] and row.arity == 1
    x = np.linspace(-3, 3, 13)
    args = (x, row.default) if row.param else (x,)
    expected = row.forward(numpy_math(), *args)
    np.testing.assert_allclose(layer(Tensor(x)).data, expected, rtol=1e-15)


def test_activation_parameters_by_position_keyword_and_generic_name():
    x = Tensor([-2.0, 3.0])
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(x).data, [-0.4, 3.0])
    np.testing.assert_allclose(nn.LeakyReLU(alpha=0.2)(x).data, [-0.4, 3.0])
    np.testing.assert_allclose(nn.Activation("leaky_relu", alpha=0.2)(x).data, [-0.4, 3.0])
    with pytest.raises(TypeError, match="leaky_relu takes alpha"):
        nn.LeakyReLU(slope=0.2)
    with pytest.raises(TypeError, match="tanh takes no parameter"):
        nn.Tanh(0.5)
    with pytest.raises(TypeError, match="one-input op-table row"):
        nn.Activation("add")


def test_prelu_slope_is_learned_and_matches_differences():
    layer = nn.PReLU(num_parameters=2, init=0.25, dtype=np.float64)
    x = np.array([[-1.0, 2.0], [-3.0, -0.5]])
    layer(Tensor(x, requires_grad=False)).sum().backward()
    # d/d slope_j of sum_i prelu(x_ij) is the sum of the negative x_ij in column j
    np.testing.assert_allclose(layer.slope.grad, [-4.0, -0.5])
    assert [name for name, _ in layer.named_parameters()] == ["slope"]


def test_softmax_module_rows_sum_to_one():
    out = nn.Softmax()(Tensor(np.random.default_rng(0).normal(size=(3, 5))))
    np.testing.assert_allclose(out.data.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.exp(nn.LogSoftmax()(Tensor(out.data)).data).sum(axis=1), 1.0, rtol=1e-14)


# ---------------------------------------------------------------------------------------------------------
# Dropout (seed 003): m ~ Bernoulli(1 - p), z' = z * m / (1 - p), dz'/dz = m / (1 - p)
# ---------------------------------------------------------------------------------------------------------

def test_dropout_in_training_zeroes_units_and_scales_the_rest():
    p, n = 0.3, 200_000
    drop = nn.Dropout(p, rng=0)
    x = Tensor(np.ones(n))
    out = drop(x)
    values = set(np.unique(out.data).tolist())
    assert values == {0.0, 1.0 / (1.0 - p)}
    kept = float((out.data != 0).mean())
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)       # binomial: 5 standard deviations
    assert abs(out.data.mean() - 1.0) < 5 * math.sqrt(p / (1 - p) / n)  # inverted scaling keeps the mean
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, (out.data != 0) / (1.0 - p))  # no gradient for dropped units


def test_dropout_in_eval_is_the_identity_and_modes_propagate():
    net = nn.Sequential(nn.Linear(3, 3, rng=0), nn.Dropout(0.5, rng=1), nn.Residual(nn.Dropout(0.9)))
    net.eval()
    assert all(not m.training for m in net.modules())
    x = Tensor(np.ones((2, 3), np.float32))
    assert net[1](x) is x
    np.testing.assert_array_equal(net(x).data, net(x).data)
    net.train()
    assert all(m.training for m in net.modules())


def test_dropout_edge_probabilities_and_seeding():
    x = Tensor(np.ones(10))
    assert nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).data, np.zeros(10))
    np.testing.assert_array_equal(nn.Dropout(0.5, rng=3)(x).data, nn.Dropout(0.5, rng=3)(x).data)
    with pytest.raises(ValueError, match=r"Dropout: p is a probability in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)


# ---------------------------------------------------------------------------------------------------------
# Initialisation against seed 003's formulas (A in R^{m x n}: m = fan_out, n = fan_in)
# ---------------------------------------------------------------------------------------------------------

M, N = 300, 200  # 60,000 samples


def check_moments(W: np.ndarray, variance: float, relative_sd_of_variance: float):
    """Mean 0 and the given variance, each within 5 standard deviations of its estimator."""
    n = W.size
    assert abs(W.mean()) < 5 * math.sqrt(variance / n)
    assert abs(W.var() / variance - 1.0) < 5 * relative_sd_of_variance / math.sqrt(n)


UNIFORM_SD = math.sqrt(0.8)  # a uniform's sample variance has relative sd sqrt((mu4 - s**4) / n) / s**2 = sqrt(0.8/n)
NORMAL_SD = math.sqrt(2.0)   # a normal's: sqrt(2/n)


def test_xavier_uniform_follows_seed_003():
    bound = math.sqrt(6) / math.sqrt(M + N)
    W = init.xavier_uniform((M, N), rng=0, dtype=np.float64)
    assert W.shape == (M, N) and abs(W).max() <= bound and abs(W).max() > 0.99 * bound
    check_moments(W, bound ** 2 / 3, UNIFORM_SD)


def test_he_uniform_follows_seed_003():
    bound = math.sqrt(6) / math.sqrt(N)
    W = init.he_uniform((M, N), rng=0, dtype=np.float64)
    assert abs(W).max() <= bound and abs(W).max() > 0.99 * bound
    check_moments(W, bound ** 2 / 3, UNIFORM_SD)


def test_normal_variants_have_the_same_variance_as_the_uniform_ones():
    check_moments(init.xavier_normal((M, N), rng=0, dtype=np.float64), 2.0 / (M + N), NORMAL_SD)
    check_moments(init.he_normal((M, N), rng=0, dtype=np.float64), 2.0 / N, NORMAL_SD)


def test_linear_init_bias_dtype_and_seeding():
    layer = nn.Linear(N, M, rng=5)
    assert layer.weight.shape == (M, N) and layer.weight.dtype == np.float32
    assert abs(layer.weight.data).max() <= math.sqrt(6 / N)   # default He uniform
    np.testing.assert_array_equal(layer.bias.data, 0.0)
    np.testing.assert_array_equal(nn.Linear(3, 2, bias_init=0.01).bias.data, np.float32(0.01))
    np.testing.assert_array_equal(nn.Linear(4, 3, rng=5).weight.data, nn.Linear(4, 3, rng=5).weight.data)
    assert not np.array_equal(nn.Linear(4, 3, rng=5).weight.data, nn.Linear(4, 3, rng=6).weight.data)
    assert nn.Linear(4, 3, bias=False).bias is None
    with pytest.raises(ValueError, match="unknown init 'lecun'"):
        nn.Linear(2, 2, init="lecun")


# ---------------------------------------------------------------------------------------------------------
# Module bookkeeping
# ---------------------------------------------------------------------------------------------------------

def test_named_parameters_order_names_and_sharing():
    shared = nn.Linear(3, 3, rng=0)
    net = nn.Sequential(nn.Linear(2, 3, rng=0), nn.PReLU(), nn.Residual(shared), nn.Residual(shared))
    names = [name for name, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.slope", "2.block.weight", "2.block.bias"]
    assert len(net.parameters()) == 5


def test_zero_grad_state_dict_and_load_state_dict():
    net = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    cross_entropy(net(np.ones((4, 2))), [0, 1, 0, 1]).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())

    state = net.state_dict()
    state["0.weight"][...] = 0.0  # a copy: the model is unchanged
    assert abs(net[0].weight.data).sum() > 0
    other = nn.Sequential(nn.Linear(2, 3, rng=7), nn.ReLU(), nn.Linear(3, 2, rng=8))
    other.load_state_dict(net.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_array_equal(other(x).data, net(x).data)
    with pytest.raises(KeyError, match=r"missing \['2.bias'\]"):
        other.load_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(ShapeError, match=r"0.weight has shape \(2, 3\), the parameter \(3, 2\)"):
        other.load_state_dict({**state, "0.weight": np.zeros((2, 3))})


def test_linear_keeps_its_weight_column_major_through_training_and_loading():
    # The layout makes both products of a training step reach BLAS untransposed (see tensor.linear); every path
    # that writes a weight must keep it.
    net = nn.Sequential(nn.Linear(6, 4, rng=0), nn.ReLU(), nn.Linear(4, 3, rng=1))
    weights = [net[0].weight, net[2].weight]
    assert all(w.data.flags.f_contiguous and not w.data.flags.c_contiguous for w in weights)
    opt = mgx.optim.Adam(net.parameters(), lr=0.01)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    cross_entropy(net(x), [0, 1, 2, 0, 1]).backward()
    assert all(w.grad.flags.f_contiguous for w in weights)
    opt.step()
    net.load_state_dict({k: np.ascontiguousarray(v) for k, v in net.state_dict().items()})
    assert all(w.data.flags.f_contiguous and not w.data.flags.c_contiguous for w in weights)


FUSED = sorted(op.name for op in FUSABLE_ACTIVATIONS)


@pytest.mark.parametrize("name", FUSED)
def test_sequential_fuses_linear_and_activation_with_the_same_numbers(name):
    net = nn.Sequential(nn.Linear(5, 4, dtype=np.float64, rng=0), nn.Activation(name),
                        nn.Linear(4, 3, dtype=np.float64, rng=1))
    x = Tensor(np.random.default_rng(2).normal(size=(6, 5)) * 2.0)
    labels = [0, 1, 2, 0, 1, 2]
    fused = cross_entropy(net(x), labels)
    assert [n.op_name for n in graph.topological_order(fused) if n.parents][0] == f"linear+{name}"
    fused.backward()
    grads = [p.grad.copy() for p in [x, *net.parameters()]]
    net.zero_grad()
    x.grad = None
    h = x
    for layer in net.layers:  # the same layers called one by one: three separate nodes
        h = layer(h)
    separate = cross_entropy(h, labels)
    separate.backward()
    assert separate.item() == fused.item()
    for g, p in zip(grads, [x, *net.parameters()], strict=True):
        np.testing.assert_allclose(g, p.grad, rtol=1e-13, atol=1e-15)


def test_sequential_fuses_only_plain_linear_and_activation_layers():
    class Scaled(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2.0

    class Shifted(nn.ReLU):
        def forward(self, x):
            return super().forward(x) + 1.0

    x = np.ones((2, 3))
    for net in (nn.Sequential(Scaled(3, 2, dtype=np.float64, rng=0), nn.ReLU()),
                nn.Sequential(nn.Linear(3, 2, dtype=np.float64, rng=0), Shifted()),
                nn.Sequential(nn.Linear(3, 2, dtype=np.float64, rng=0), nn.LeakyReLU()),
                nn.Sequential(nn.Linear(3, 2, dtype=np.float64, rng=0), nn.Dropout(0.5, rng=0), nn.ReLU())):
        ops = [n.op_name for n in graph.topological_order(net(x)) if n.parents]
        assert not any("+" in op for op in ops), (net, ops)
    w = nn.Linear(3, 2, dtype=np.float64).weight
    for bad in ("leaky_relu", "log", "no_such_row"):
        with pytest.raises(ValueError, match=f"activation '{bad}' cannot be fused"):
            linear(x, w, activation=bad)


def test_residual_adds_the_skip_and_checks_shapes():
    block = nn.Linear(3, 3, dtype=np.float64, rng=0)
    res = nn.Residual(block)
    x = Tensor(np.random.default_rng(1).normal(size=(2, 3)))
    np.testing.assert_allclose(res(x).data, x.data + block(x).data)
    res(x).sum().backward()
    # d/dx of sum(x + x W^T + b) is 1 + column sums of W
    np.testing.assert_allclose(x.grad, 1.0 + np.tile(block.weight.data.sum(axis=0), (2, 1)))
    with pytest.raises(ShapeError, match=r"Residual: the block maps shape \(2, 3\) to \(2, 4\)"):
        nn.Residual(nn.Linear(3, 4, dtype=np.float64))(x)


def test_sequential_rejects_non_modules_and_repr_lists_layers():
    with pytest.raises(TypeError, match="Sequential: item 1 is int"):
        nn.Sequential(nn.ReLU(), 3)
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(0.2), nn.Dropout(0.1)))
    assert "(0): Linear(2, 3, bias=True)" in text and "LeakyReLU(negative_slope=0.2)" in text
    assert "Dropout(p=0.1)" in text


def test_training_reduces_the_loss_on_a_separable_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = nn.Sequential(nn.Linear(2, 16, rng=1), nn.ReLU(), nn.Linear(16, 2, rng=2))
    params = net.parameters()
    first = None
    for _ in range(100):
        loss = cross_entropy(net(X), y)
        first = loss.item() if first is None else first
        net.zero_grad()
        loss.backward()
        for p in params:
            p.data -= 0.5 * p.grad
    assert loss.item() < 0.25 * first
    accuracy = (net(X).data.argmax(axis=1) == y).mean()
    assert accuracy > 0.95


def test_plain_import_reaches_tensor_nn_and_losses():
    import microgradx
    assert microgradx.Tensor is Tensor
    assert microgradx.nn.Linear is nn.Linear and microgradx.losses.cross_entropy is cross_entropy
    assert {"Tensor", "nn", "losses", "init"} <= set(microgradx.__all__)


def test_activation_modules_accept_plain_arrays_like_linear_does():
    np.testing.assert_array_equal(nn.ReLU()(np.array([-1.0, 2.0])).data, [0.0, 2.0])


# ---------------------------------------------------------------------------------------------------------
# PyTorch's argument names, and PyTorch's default initialisation
# ---------------------------------------------------------------------------------------------------------


def _same_layer(a: nn.Module, b: nn.Module, x: np.ndarray) -> None:
    """Two layers are one: the same class, attributes, repr and output on ``x``."""
    assert type(a) is type(b) and repr(a) == repr(b)
    assert {k: v for k, v in vars(a).items() if k != "rng"} == {k: v for k, v in vars(b).items() if k != "rng"}
    np.testing.assert_array_equal(a(Tensor(x)).data, b(Tensor(x)).data)


@pytest.mark.parametrize("ours, torchs", [
    (lambda: nn.MaxPool2d(k=3, stride=2), lambda: nn.MaxPool2d(kernel_size=3, stride=2)),
    (lambda: nn.MaxPool2d(2), lambda: nn.MaxPool2d(kernel_size=2)),
    (lambda: nn.AvgPool2d(k=(2, 3)), lambda: nn.AvgPool2d(kernel_size=(2, 3))),
    (lambda: nn.LeakyReLU(alpha=0.2), lambda: nn.LeakyReLU(negative_slope=0.2)),
    (lambda: nn.Activation("leaky_relu", 0.2), lambda: nn.Activation("leaky_relu", negative_slope=0.2)),
    (lambda: nn.ELU(0.5), lambda: nn.ELU(alpha=0.5)),
    (lambda: nn.Dropout(0.3, rng=0), lambda: nn.Dropout(p=0.3, rng=0)),
    (lambda: nn.Softmax(axis=1), lambda: nn.Softmax(dim=1)),
    (lambda: nn.LogSoftmax(axis=0), lambda: nn.LogSoftmax(dim=0)),
])
def test_pytorch_spellings_build_the_same_layer(ours, torchs):
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    _same_layer(ours(), torchs(), x)


def test_pytorch_spellings_match_the_reference_values():
    x = Tensor(np.array([[-2.0, 1.0], [0.5, -4.0]]))
    np.testing.assert_allclose(nn.LeakyReLU(negative_slope=0.25)(x).data, [[-0.5, 1.0], [0.5, -1.0]])
    np.testing.assert_allclose(nn.Softmax(dim=0)(x).data[:, 0], np.exp([-2.0, 0.5]) / np.exp([-2.0, 0.5]).sum())
    pooled = nn.MaxPool2d(kernel_size=2)(Tensor(np.arange(16.0).reshape(1, 1, 4, 4))).data[0, 0]
    assert pooled.tolist() == [[5.0, 7.0], [13.0, 15.0]]
    assert nn.AvgPool2d(kernel_size=2).k == 2                 # the old attribute name still reads


@pytest.mark.parametrize("make, match", [
    (lambda: nn.MaxPool2d(2, k=2), "kernel_size and k are spellings of one argument"),
    (lambda: nn.MaxPool2d(), "MaxPool2d needs kernel_size"),
    (lambda: nn.Softmax(1, dim=1), "axis and dim are spellings"),
    (lambda: nn.LeakyReLU(0.1, negative_slope=0.1), "leaky_relu: the positional parameter and negative_slope"),
    (lambda: nn.LeakyReLU(alpha=0.1, negative_slope=0.1), "alpha and negative_slope"),
    (lambda: nn.ELU(negative_slope=0.1), "elu takes alpha, got"),
])
def test_two_spellings_at_once_or_none_is_a_clear_error(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def _torch_bounds(shape: tuple[int, ...]) -> tuple[float, float]:
    """(weight bound, bias bound) of PyTorch's own reset_parameters for a weight of ``shape``."""
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra")
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    return math.sqrt(3.0) * gain / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)


SHAPES = [(7, 3), (1, 1), (64, 300), (8, 3, 3, 3), (4, 16, 5, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_torch_init_bound_is_one_over_sqrt_fan_in(shape):
    fan_in = math.prod(shape[1:])
    assert init.kaiming_uniform_bound(fan_in, math.sqrt(5)) == pytest.approx(1 / math.sqrt(fan_in), rel=1e-15)
    # The same helper gives He's bound sqrt(6 / n) for a = 0 (the he_uniform scheme).
    assert init.kaiming_uniform_bound(fan_in) == pytest.approx(math.sqrt(6 / fan_in), rel=1e-15)


@pytest.mark.parametrize("shape", SHAPES)
def test_torch_init_bounds_equal_pytorchs(shape):
    w_bound, b_bound = _torch_bounds(shape)
    fan_in = math.prod(shape[1:])
    assert init.kaiming_uniform_bound(fan_in, init.TORCH_A) == pytest.approx(w_bound, rel=1e-12)
    assert 1 / math.sqrt(fan_in) == pytest.approx(b_bound, rel=1e-12)


def _check_uniform(a: np.ndarray, bound: float) -> None:
    """``a`` lies in [-bound, bound], reaches near both ends and has the variance bound**2 / 3 of U[-bound, bound]."""
    a = a.astype(np.float64).ravel()
    assert np.abs(a).max() <= bound * (1 + 1e-6)
    assert a.max() > 0.99 * bound and a.min() < -0.99 * bound
    assert a.var() == pytest.approx(bound**2 / 3, rel=0.05)
    assert abs(a.mean()) < 0.05 * bound


def test_linear_and_conv2d_torch_init_draw_weight_and_bias_from_the_bounds():
    lin = nn.Linear(50, 2000, init="torch", rng=0)             # 2000 biases, 100000 weights
    _check_uniform(lin.weight.data, 1 / math.sqrt(50))
    _check_uniform(lin.bias.data, 1 / math.sqrt(50))
    conv = nn.Conv2d(3, 1000, 3, init="torch", rng=1)           # fan_in = 27
    _check_uniform(conv.weight.data, 1 / math.sqrt(27))
    _check_uniform(conv.bias.data, 1 / math.sqrt(27))
    assert nn.Linear(3, 2, bias=False, init="torch", rng=0).bias is None
    # The default stays He uniform with a zero bias.
    default = nn.Linear(50, 2000, rng=0)
    _check_uniform(default.weight.data, math.sqrt(6 / 50))
    assert not default.bias.data.any() and not nn.Conv2d(3, 4, 3, rng=0).bias.data.any()
    with pytest.raises(ValueError, match="draws the bias itself"):
        nn.Linear(3, 2, init="torch", bias_init=0.01)


def test_torch_init_samples_match_pytorchs_layers():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra")
    torch.manual_seed(0)
    for ours, theirs in [(nn.Linear(40, 3000, init="torch", rng=0), torch.nn.Linear(40, 3000)),
                         (nn.Conv2d(2, 800, (3, 4), init="torch", rng=0), torch.nn.Conv2d(2, 800, (3, 4)))]:
        for name in ("weight", "bias"):
            mine = getattr(ours, name).data.astype(np.float64)
            ref = getattr(theirs, name).detach().numpy().astype(np.float64)
            assert mine.shape == ref.shape
            # Both draw from one uniform: equal ranges and variances within sampling error.
            assert max(abs(mine.max() - ref.max()), abs(mine.min() - ref.min())) < 0.02 * ref.max()
            assert mine.var() == pytest.approx(ref.var(), rel=0.1)
