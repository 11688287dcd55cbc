"""Convolution, pooling, batch-norm and recurrent layers: every input and parameter gradient against float64
central differences; small cases against the scalar ``Value`` engine and formulas written out here; PyTorch
as a further oracle when it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microgradx import Value, nn
from microgradx import functional as F
from microgradx.losses import cross_entropy
from microgradx.tensor import ShapeError, Tensor

H = 1e-6
F64 = np.float64


def central(f, x: np.ndarray) -> np.ndarray:
    """d f / d x by central differences, perturbing ``x`` in place entry by entry (restored afterwards)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + H
        up = f()
        x[i] = old - H
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * H)
    return g


def check_grads(forward, leaves: dict[str, Tensor], rng: np.random.Generator, rtol=1e-5, atol=1e-7) -> None:
    """backward() of L = sum(forward() * C), C random and fixed, against central differences of L for every
    tensor in ``leaves`` (inputs and parameters, perturbed through their .data arrays)."""
    out = forward()
    C = rng.normal(size=out.shape)
    for t in leaves.values():
        t.grad = None
    (out * Tensor(C, requires_grad=False)).sum().backward()
    got = {name: t.grad.copy() for name, t in leaves.items()}

    def L() -> float:
        return float((forward().data * C).sum())
    for name, t in leaves.items():
        np.testing.assert_allclose(got[name], central(L, t.data), rtol=rtol, atol=atol, err_msg=name)


def params(module: nn.Module) -> dict[str, Tensor]:
    return dict(module.named_parameters())


# ---------------------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel, stride, padding", [
    ((3, 3), 1, 0), ((3, 3), 2, 1), ((2, 3), (1, 2), (1, 0)), ((1, 1), 1, 0), ((3, 3), 3, 2),
])
def test_conv2d_gradients_match_central_differences(kernel, stride, padding):
    rng = np.random.default_rng(hash((kernel, str(stride), str(padding))) % 2**32)
    x = Tensor(rng.normal(size=(2, 2, 5, 6)), label="x")
    conv = nn.Conv2d(2, 3, kernel, stride=stride, padding=padding, dtype=F64, rng=1)
    conv.bias.data[:] = rng.normal(size=3)
    check_grads(lambda: conv(x), {"x": x, **params(conv)}, rng)


def conv_by_loops(X, W, b, stride, padding):
    """out[n, o, p, q] = b[o] + sum_{c,i,j} W[o, c, i, j] xpad[n, c, p s + i, q s + j], written as loops."""
    n, c, h, w = X.shape
    o, _, kh, kw = W.shape
    Xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
    Xp[:, :, padding:padding + h, padding:padding + w] = X
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for a in range(n):
        for k in range(o):
            for p in range(ho):
                for q in range(wo):
                    out[a, k, p, q] = b[k] + sum(W[k, ch, i, j] * Xp[a, ch, p * stride + i, q * stride + j]
                                                 for ch in range(c) for i in range(kh) for j in range(kw))
    return out


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (1, 2)])
def test_conv2d_forward_is_the_cross_correlation_sum(stride, padding):
    rng = np.random.default_rng(3)
    X, W, b = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
    out = F.conv2d(Tensor(X), Tensor(W), Tensor(b), stride=stride, padding=padding)
    np.testing.assert_allclose(out.data, conv_by_loops(X, W, b, stride, padding), rtol=1e-12, atol=1e-12)


def test_one_channel_conv_agrees_with_the_scalar_engine():
    """A 3x3 kernel on a 4x4 image, built from labelled scalar Values: outputs and every gradient agree."""
    rng = np.random.default_rng(4)
    X, W, b, C = rng.normal(size=(4, 4)), rng.normal(size=(3, 3)), 0.3, rng.normal(size=(2, 2))
    xs = [[Value(X[r, s], label=f"x{r}{s}") for s in range(4)] for r in range(4)]
    ws = [[Value(W[i, j], label=f"C1.k0.w{i}{j}") for j in range(3)] for i in range(3)]
    bv = Value(b, label="C1.k0.b")
    loss = Value(0.0)
    for p in range(2):
        for q in range(2):
            acc = bv
            for i in range(3):
                for j in range(3):
                    acc = acc + ws[i][j] * xs[p + i][q + j]
            loss = loss + acc * C[p, q]
    loss.backward()

    x, w, bt = Tensor(X.reshape(1, 1, 4, 4)), Tensor(W.reshape(1, 1, 3, 3)), Tensor([b])
    out = F.conv2d(x, w, bt)
    (out * Tensor(C.reshape(1, 1, 2, 2), requires_grad=False)).sum().backward()
    assert float((out.data[0, 0] * C).sum()) == pytest.approx(loss.data, rel=1e-13)
    np.testing.assert_allclose(x.grad[0, 0], [[v.grad for v in row] for row in xs], rtol=1e-13)
    np.testing.assert_allclose(w.grad[0, 0], [[v.grad for v in row] for row in ws], rtol=1e-13)
    assert bt.grad[0] == pytest.approx(bv.grad, rel=1e-13)


def test_conv2d_keeps_float32_and_checks_shapes():
    conv = nn.Conv2d(1, 2, 3, rng=0)
    y = conv(np.ones((1, 1, 4, 4), np.float32))
    y.sum().backward()
    assert y.dtype == np.float32 and conv.weight.grad.dtype == np.float32
    with pytest.raises(ShapeError, match=r"conv2d: weight of shape \(2, 1, 3, 3\) does not fit input of shape "
                                         r"\(1, 3, 4, 4\)"):
        conv(np.ones((1, 3, 4, 4), np.float32))
    with pytest.raises(ShapeError, match=r"conv2d: input must have shape \(N, C, H, W\), got \(4, 4\)"):
        conv(np.ones((4, 4), np.float32))
    with pytest.raises(ShapeError, match="does not fit input"):
        conv(np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="conv2d: stride must be an integer >= 1"):
        F.conv2d(Tensor(np.ones((1, 1, 4, 4))), Tensor(np.ones((1, 1, 2, 2))), stride=0)


def test_conv2d_he_init_follows_fan_in_of_channels_times_kernel():
    conv = nn.Conv2d(8, 64, 3, rng=0)
    bound = math.sqrt(6.0 / (8 * 9))
    W = conv.weight.data
    assert W.shape == (64, 8, 3, 3) and np.abs(W).max() <= bound
    assert W.var() == pytest.approx(bound ** 2 / 3, rel=0.05)  # U[-a, a] has variance a**2 / 3
    assert not conv.bias.data.any()


# ---------------------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, stride", [(2, None), (3, 2), (2, 1), ((2, 3), (2, 1))])
def test_max_pool_gradients_match_central_differences(k, stride):
    rng = np.random.default_rng(5)
    x = Tensor(rng.permutation(2 * 3 * 5 * 6).reshape(2, 3, 5, 6) * 0.1)  # distinct values: no ties
    check_grads(lambda: F.max_pool2d(x, k, stride), {"x": x}, rng)


def test_max_pool_agrees_with_the_table_max_rows_on_values():
    rng = np.random.default_rng(6)
    X, C = rng.normal(size=(4, 4)), rng.normal(size=(2, 2))
    xs = [[Value(X[r, s], label=f"x{r}{s}") for s in range(4)] for r in range(4)]
    loss = Value(0.0)
    for p in range(2):
        for q in range(2):
            m = xs[2 * p][2 * q]
            for i, j in ((0, 1), (1, 0), (1, 1)):
                m = m.max(xs[2 * p + i][2 * q + j])
            loss = loss + m * C[p, q]
    loss.backward()
    x = Tensor(X.reshape(1, 1, 4, 4))
    out = nn.MaxPool2d(2)(x)
    (out * Tensor(C.reshape(1, 1, 2, 2), requires_grad=False)).sum().backward()
    assert float((out.data[0, 0] * C).sum()) == pytest.approx(loss.data, rel=1e-14)
    np.testing.assert_allclose(x.grad[0, 0], [[v.grad for v in row] for row in xs], rtol=1e-14)


def test_max_pool_tie_sends_the_gradient_to_the_first_maximum_in_row_major_order():
    x = Tensor([[[[1.0, 7.0, 0.0, 0.0], [7.0, 7.0, 0.0, 0.0]]]])
    F.max_pool2d(x, 2).sum().backward()
    assert x.grad[0, 0].tolist() == [[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_max_pool_overlapping_windows_add_their_gradients():
    x = Tensor([[[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]]])
    F.max_pool2d(x, 2, stride=1).sum().backward()  # the centre is the maximum of all four windows
    assert x.grad[0, 0, 1, 1] == 4.0 and x.grad.sum() == 4.0


@pytest.mark.parametrize("k, stride", [(2, None), (3, 2), (2, 1)])
def test_avg_pool_gradients_match_central_differences_and_the_mean(k, stride):
    rng = np.random.default_rng(7)
    x = Tensor(rng.normal(size=(2, 2, 5, 5)))
    check_grads(lambda: F.avg_pool2d(x, k, stride), {"x": x}, rng)
    s = k if stride is None else stride
    out = F.avg_pool2d(x, k, stride).data
    assert out[1, 0, 1, 1] == pytest.approx(x.data[1, 0, s:s + k, s:s + k].mean(), rel=1e-14)


def test_global_avg_pool_and_flatten():
    rng = np.random.default_rng(8)
    x = Tensor(rng.normal(size=(2, 3, 4, 5)))
    check_grads(lambda: nn.GlobalAvgPool2d()(x), {"x": x}, rng)
    np.testing.assert_allclose(nn.GlobalAvgPool2d()(x).data, x.data.mean(axis=(2, 3)))
    check_grads(lambda: nn.Flatten()(x), {"x": x}, rng)
    assert nn.Flatten()(x).data.tolist() == x.data.reshape(2, 60).tolist()
    with pytest.raises(ShapeError, match="max_pool2d: a 3x3 window does not fit input of shape"):
        F.max_pool2d(np.ones((1, 1, 2, 2)), 3)


# ---------------------------------------------------------------------------------------------------------
# batch normalisation
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm2d, (3, 2, 3, 4))])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients_match_central_differences(layer, shape, training):
    rng = np.random.default_rng(9)
    bn = layer(shape[1], dtype=F64)
    bn.weight.data[:] = rng.normal(size=shape[1])
    bn.bias.data[:] = rng.normal(size=shape[1])
    bn.running_mean[:] = rng.normal(size=shape[1])
    bn.running_var[:] = rng.uniform(0.5, 2.0, size=shape[1])
    bn.train(training)
    x = Tensor(rng.normal(2.0, 3.0, size=shape))
    check_grads(lambda: bn(x), {"x": x, **params(bn)}, rng, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 5)])
def test_batch_norm_output_and_running_statistics_follow_the_formulas(shape):
    rng = np.random.default_rng(10)
    X = rng.normal(1.0, 2.0, size=shape)
    bn = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(3, momentum=0.25, dtype=F64)
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    bn.weight.data[:], bn.bias.data[:] = gamma, beta
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    b = (1, 3) + (1,) * (len(shape) - 2)
    y = bn(Tensor(X)).data
    mu, var = X.mean(axis=axes), X.var(axis=axes)
    np.testing.assert_allclose(y, gamma.reshape(b) * (X - mu.reshape(b)) / np.sqrt(var.reshape(b) + 1e-5)
                               + beta.reshape(b), rtol=1e-12, atol=1e-12)
    m = X.size // 3
    np.testing.assert_allclose(bn.running_mean, 0.25 * mu, rtol=1e-14)
    # PyTorch's convention: the running variance is fed the unbiased batch variance (ddof = 1).
    np.testing.assert_allclose(bn.running_var, 0.75 + 0.25 * var * m / (m - 1), rtol=1e-14)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    bn.eval()
    X2 = rng.normal(size=shape)
    y2 = bn(Tensor(X2)).data
    np.testing.assert_allclose(y2, gamma.reshape(b) * (X2 - rm.reshape(b)) / np.sqrt(rv.reshape(b) + 1e-5)
                               + beta.reshape(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, rm)  # evaluation leaves the statistics alone
    # In evaluation one example's output does not depend on the rest of the batch.
    np.testing.assert_allclose(bn(Tensor(X2[:1])).data, y2[:1], rtol=1e-14)


def test_batch_norm_errors():
    with pytest.raises(ShapeError, match="BatchNorm2d: input must have shape"):
        nn.BatchNorm2d(3)(np.ones((4, 3), np.float32))
    with pytest.raises(ShapeError, match="batch_norm: training needs more than one value per channel"):
        nn.BatchNorm1d(3)(np.ones((1, 3), np.float32))
    with pytest.raises(ShapeError, match=r"batch_norm: gamma of shape \(2,\) does not fit input of shape \(4, 3\)"):
        nn.BatchNorm1d(2)(np.ones((4, 3), np.float32))


# ---------------------------------------------------------------------------------------------------------
# recurrent cells and the unroller
# ---------------------------------------------------------------------------------------------------------

def test_rnn_cell_gradients_match_central_differences():
    rng = np.random.default_rng(11)
    cell = nn.RNNCell(3, 4, dtype=F64, rng=0)
    x, h = Tensor(rng.normal(size=(2, 3))), Tensor(rng.normal(size=(2, 4)))
    check_grads(lambda: cell(x, h), {"x": x, "h": h, **params(cell)}, rng)
    expected = np.tanh(x.data @ cell.weight_ih.data.T + cell.bias_ih.data + h.data @ cell.weight_hh.data.T
                       + cell.bias_hh.data)
    np.testing.assert_allclose(cell(x, h).data, expected, rtol=1e-14)


def test_lstm_cell_gradients_match_central_differences():
    rng = np.random.default_rng(12)
    cell = nn.LSTMCell(3, 4, dtype=F64, rng=0)
    x, h, c = (Tensor(rng.normal(size=s)) for s in ((2, 3), (2, 4), (2, 4)))
    check_grads(lambda: cell(x, (h, c))[0], {"x": x, "h": h, "c": c, **params(cell)}, rng)
    check_grads(lambda: cell(x, (h, c))[1], {"x": x, "h": h, "c": c, **params(cell)}, rng)


def test_gru_cell_gradients_match_central_differences():
    rng = np.random.default_rng(13)
    cell = nn.GRUCell(3, 4, dtype=F64, rng=0)
    x, h = Tensor(rng.normal(size=(2, 3))), Tensor(rng.normal(size=(2, 4)))
    check_grads(lambda: cell(x, h), {"x": x, "h": h, **params(cell)}, rng)


def sig(v: Value) -> Value:
    return v.sigmoid()


def test_lstm_step_agrees_with_the_scalar_engine():
    """One LSTM step with I = 2, H = 2 written gate by gate on scalar Values (i, f, g, o order)."""
    rng = np.random.default_rng(14)
    cell = nn.LSTMCell(2, 2, dtype=F64, rng=3)
    X, Hh, Cc = rng.normal(size=2), rng.normal(size=2), rng.normal(size=2)
    A, B = rng.normal(size=2), rng.normal(size=2)  # loss = sum(A h') + sum(B c')
    Wi, Wh, bi, bh = (cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data, cell.bias_hh.data)
    wi = [[Value(Wi[r, s]) for s in range(2)] for r in range(8)]
    wh = [[Value(Wh[r, s]) for s in range(2)] for r in range(8)]
    vbi, vbh = [Value(v) for v in bi], [Value(v) for v in bh]
    xs, hs, cs = [Value(v) for v in X], [Value(v) for v in Hh], [Value(v) for v in Cc]

    def z(r: int) -> Value:
        return (wi[r][0] * xs[0] + wi[r][1] * xs[1] + vbi[r] + wh[r][0] * hs[0] + wh[r][1] * hs[1] + vbh[r])
    loss = Value(0.0)
    for k in range(2):
        i, f, g, o = sig(z(k)), sig(z(2 + k)), z(4 + k).tanh(), sig(z(6 + k))
        c2 = f * cs[k] + i * g
        loss = loss + A[k] * (o * c2.tanh()) + B[k] * c2
    loss.backward()

    x, h, c = Tensor(X[None]), Tensor(Hh[None]), Tensor(Cc[None])
    h2, c2 = cell(x, (h, c))
    total = (h2 * Tensor(A[None], requires_grad=False)).sum() + (c2 * Tensor(B[None], requires_grad=False)).sum()
    total.backward()
    assert total.item() == pytest.approx(loss.data, rel=1e-13)
    for t, vs in ((x, xs), (h, hs), (c, cs)):
        np.testing.assert_allclose(t.grad[0], [v.grad for v in vs], rtol=1e-12)
    np.testing.assert_allclose(cell.weight_ih.grad, [[v.grad for v in row] for row in wi], rtol=1e-12)
    np.testing.assert_allclose(cell.weight_hh.grad, [[v.grad for v in row] for row in wh], rtol=1e-12)
    np.testing.assert_allclose(cell.bias_ih.grad, [v.grad for v in vbi], rtol=1e-12)
    np.testing.assert_allclose(cell.bias_hh.grad, [v.grad for v in vbh], rtol=1e-12)


@pytest.mark.parametrize("cell_type", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_rnn_unroller_backpropagates_through_time(cell_type, return_sequences):
    rng = np.random.default_rng(15)
    rnn = nn.RNN(cell_type(2, 3, dtype=F64, rng=0), return_sequences=return_sequences)
    x = Tensor(rng.normal(size=(2, 4, 2)))
    check_grads(lambda: rnn(x), {"x": x, **params(rnn)}, rng)
    out = rnn(x)
    assert out.shape == ((2, 4, 3) if return_sequences else (2, 3))


def test_rnn_unroller_equals_the_cell_applied_step_by_step():
    rng = np.random.default_rng(16)
    cell = nn.GRUCell(2, 3, dtype=F64, rng=0)
    X = rng.normal(size=(2, 3, 2))
    h = None
    steps = []
    for t in range(3):
        h = cell(X[:, t], h)
        steps.append(h.data)
    seq = nn.RNN(cell, return_sequences=True)(X).data
    np.testing.assert_array_equal(seq, np.stack(steps, axis=1))
    np.testing.assert_array_equal(nn.RNN(cell)(X).data, steps[-1])
    with pytest.raises(ShapeError, match=r"Unroll: input must have shape \(N, T, 2\), got \(3, 2\)"):
        nn.RNN(cell)(X[0])


def test_a_small_cnn_end_to_end_gradient_matches_central_differences():
    rng = np.random.default_rng(17)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=F64, rng=0), nn.BatchNorm2d(2, dtype=F64), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3, dtype=F64, rng=1))
    X, y = rng.normal(size=(3, 1, 4, 4)), np.array([0, 2, 1])

    def loss() -> float:
        return cross_entropy(net(X), y).item()
    net.zero_grad()
    cross_entropy(net(X), y).backward()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, central(loss, p.data), rtol=1e-5, atol=1e-7, err_msg=name)


# ---------------------------------------------------------------------------------------------------------
# PyTorch as a further oracle (skipped when it is not installed)
# ---------------------------------------------------------------------------------------------------------

def test_layers_agree_with_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    X = rng.normal(size=(2, 3, 7, 6))
    conv = nn.Conv2d(3, 4, (3, 2), stride=2, padding=1, dtype=F64, rng=0)
    tconv = torch.nn.Conv2d(3, 4, (3, 2), stride=2, padding=1).double()
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(conv.weight.data))
        tconv.bias.copy_(torch.from_numpy(conv.bias.data))
    bn, tbn = nn.BatchNorm2d(4, dtype=F64), torch.nn.BatchNorm2d(4).double()
    x, tx = Tensor(X), torch.from_numpy(X).requires_grad_()
    out = nn.MaxPool2d(2)(bn(conv(x)).tanh())
    tout = torch.nn.functional.max_pool2d(torch.tanh(tbn(tconv(tx))), 2)
    C = rng.normal(size=out.shape)
    (out * Tensor(C, requires_grad=False)).sum().backward()
    (tout * torch.from_numpy(C)).sum().backward()
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-12)

    cells = ((nn.LSTMCell(3, 4, dtype=F64, rng=1), torch.nn.LSTMCell(3, 4).double()),
             (nn.GRUCell(3, 4, dtype=F64, rng=2), torch.nn.GRUCell(3, 4).double()))
    Xs = rng.normal(size=(2, 3))
    for ours, theirs in cells:
        with torch.no_grad():
            for name, p in ours.named_parameters():
                getattr(theirs, name).copy_(torch.from_numpy(p.data))
        h = ours(Xs)
        th = theirs(torch.from_numpy(Xs))
        h, th = (h[0], th[0]) if isinstance(h, tuple) else (h, th)
        np.testing.assert_allclose(h.data, th.detach().numpy(), rtol=1e-12, err_msg=type(ours).__name__)


def test_batch_norm_running_statistics_are_saved_and_loaded(tmp_path):
    """The running statistics are state: saved with the parameters and restored, so eval() gives the same output."""
    from microgradx.train import CheckpointError, load_parameters, save_parameters

    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(4, 3, rng=0), nn.BatchNorm1d(3))
    for _ in range(3):
        net(Tensor(rng.normal(2.0, 3.0, (16, 4)).astype(np.float32), requires_grad=False))
    assert set(net.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"}
    x = Tensor(rng.normal(size=(5, 4)).astype(np.float32), requires_grad=False)
    expected = net.eval()(x).data.copy()
    fresh = nn.Sequential(nn.Linear(4, 3, rng=1), nn.BatchNorm1d(3))
    load_parameters(fresh, save_parameters(net, tmp_path / "bn.npz"))
    np.testing.assert_array_equal(fresh.eval()(x).data, expected)
    np.testing.assert_array_equal(fresh[1].running_var, net[1].running_var)
    np.savez(tmp_path / "old.npz", **{k: v for k, v in net.state_dict().items() if "running" not in k})
    with pytest.raises(CheckpointError, match="running_mean"):
        load_parameters(fresh, tmp_path / "old.npz")
