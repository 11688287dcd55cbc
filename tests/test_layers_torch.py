"""The layers a PyTorch tutorial reaches for (Embedding, LayerNorm, GroupNorm, Dropout2d, Identity, ModuleList,
multi-layer bidirectional RNN/LSTM/GRU, BatchNorm without affine and on (N, C, L)): gradients against float64
central differences and forward mode, outputs and gradients against PyTorch built independently with copied
weights (the ``torch`` fixture of conftest.py skips them without PyTorch), drawing, stepping, training and the
bridge's round trip."""

from __future__ import annotations

import numpy as np
import pytest

import microgradx as mx
from microgradx import MicrogradxError, nn
from microgradx import functional as F
from microgradx.graph import check_gradients, jvp
from microgradx.optim import SGD
from microgradx.tensor import ShapeError, Tensor

F64 = np.float64
H = 1e-6


def flat(y):
    """The output's tensors in order: (output, (h_n, c_n)) gives three."""
    return [t for item in y for t in flat(item)] if isinstance(y, tuple) else [y]


def loss_of(y, weights):
    """sum_k sum(y_k * C_k): a scalar whose gradient sends the fixed random C_k into every output."""
    return sum((t * Tensor(c, requires_grad=False)).sum() for t, c in zip(flat(y), weights))


def check_central(forward, leaves, rng, directions=3, rtol=1e-6):
    """For each leaf and random directions v: <dL/dleaf, v> from backward() equals the central difference
    (L(leaf + h v) - L(leaf - h v)) / 2h in float64, and forward mode's jvp gives the same number."""
    out = forward()
    weights = [rng.normal(size=t.shape) for t in flat(out)]
    for t in leaves:
        t.grad = None
    L = loss_of(out, weights)
    L.backward()
    for k, t in enumerate(leaves):
        for _ in range(directions):
            v = rng.normal(size=t.shape)
            t.data += H * v
            up = float(loss_of(forward(), weights).data)
            t.data -= 2 * H * v
            down = float(loss_of(forward(), weights).data)
            t.data += H * v
            numeric = (up - down) / (2 * H)
            reverse = float(np.sum(t.grad * v))
            assert abs(reverse - numeric) <= rtol * (1 + abs(numeric)), (k, reverse, numeric)
            forward_mode = float(jvp(loss_of(forward(), weights), {t: v}))
            assert abs(forward_mode - reverse) <= 1e-9 * (1 + abs(reverse)), (k, forward_mode, reverse)


def seq(rng, shape):
    return Tensor(rng.normal(size=shape))


# ---------------------------------------------------------------------------------------------------------
# Central differences and forward mode, float64
# ---------------------------------------------------------------------------------------------------------

RECURRENT = [
    ("lstm-2-layers-bidirectional", lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, rng=0, dtype=F64),
     (5, 2, 3)),
    ("gru-batch-first-2-layers", lambda: nn.GRU(3, 4, num_layers=2, batch_first=True, rng=1, dtype=F64), (2, 5, 3)),
    ("rnn-tanh-bidirectional-no-bias", lambda: nn.RNN(3, 4, bidirectional=True, bias=False, rng=2, dtype=F64),
     (4, 2, 3)),
]


@pytest.mark.parametrize("make,shape", [c[1:] for c in RECURRENT], ids=[c[0] for c in RECURRENT])
def test_recurrent_layers_match_central_differences_with_an_initial_state(make, shape):
    rng = np.random.default_rng(0)
    layer = make()
    x = seq(rng, shape)
    n = shape[0] if layer.batch_first else shape[1]
    states = [seq(rng, (layer.num_layers * layer.directions, n, 4)) for _ in range(2 if isinstance(layer, nn.LSTM)
                                                                                     else 1)]
    state = tuple(states) if isinstance(layer, nn.LSTM) else states[0]
    check_central(lambda: layer(x, state), [x, *states, *layer.parameters()], rng, directions=1)


NORMS = [
    ("layernorm-2-axes", lambda: nn.LayerNorm((3, 4), dtype=F64), (2, 3, 4)),
    ("layernorm-no-affine", lambda: nn.LayerNorm(4, elementwise_affine=False, dtype=F64), (5, 4)),
    ("groupnorm-images", lambda: nn.GroupNorm(2, 4, dtype=F64), (2, 4, 3, 3)),
    ("groupnorm-per-channel-no-affine", lambda: nn.GroupNorm(4, 4, affine=False, dtype=F64), (3, 4, 5)),
    ("batchnorm1d-sequences", lambda: nn.BatchNorm1d(3, dtype=F64), (4, 3, 5)),
    ("batchnorm2d-no-affine", lambda: nn.BatchNorm2d(3, affine=False, dtype=F64), (2, 3, 4, 4)),
]


@pytest.mark.parametrize("make,shape", [c[1:] for c in NORMS], ids=[c[0] for c in NORMS])
def test_normalisation_layers_match_central_differences(make, shape):
    rng = np.random.default_rng(1)
    layer = make()
    for p in layer.parameters():  # away from gamma = 1, beta = 0, so that both gradients matter
        p.data[...] = rng.normal(size=p.shape)
    x = Tensor(rng.normal(size=shape) * 2.0 + 1.0)
    if isinstance(layer, nn._BatchNorm):  # the running statistics move on every call: compare in evaluation
        layer.running_mean[...] = rng.normal(size=layer.num_features)
        layer.running_var[...] = rng.uniform(0.5, 2.0, size=layer.num_features)
        layer.eval()
        check_central(lambda: layer(x), [x, *layer.parameters()], rng)
        layer.train()
        out = layer(x)  # and the training graph, node by node
        assert check_gradients((out * out.tanh()).sum()).ok
        return
    check_central(lambda: layer(x), [x, *layer.parameters()], rng)


def test_the_normalize_row_passes_the_per_node_gradient_check():
    rng = np.random.default_rng(13)
    x = Tensor(rng.normal(size=(3, 4, 5)))
    gamma, beta = Tensor(rng.normal(size=(4, 1))), Tensor(rng.normal(size=(5,)))  # broadcast two ways
    y = F.normalize(x, gamma, beta, axes=(1, 2))
    report = check_gradients((y * y.tanh()).sum())
    assert report.ok, report


def test_normalisation_layers_normalise():
    rng = np.random.default_rng(2)
    x = Tensor(rng.normal(size=(3, 4, 5)) * 5 + 2)
    y = nn.LayerNorm((4, 5), eps=1e-12, dtype=F64)(x).data
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1.0, rtol=1e-9)
    g = nn.GroupNorm(2, 4, eps=1e-12, dtype=F64)(x).data.reshape(3, 2, 10)
    np.testing.assert_allclose(g.mean(axis=2), 0.0, atol=1e-12)
    np.testing.assert_allclose(g.var(axis=2), 1.0, rtol=1e-9)
    b = nn.BatchNorm1d(4, eps=1e-12, affine=False, dtype=F64)(x).data
    np.testing.assert_allclose(b.mean(axis=(0, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(b.var(axis=(0, 2)), 1.0, rtol=1e-9)


def test_embedding_gradient_matches_central_differences_and_skips_the_padding_row():
    rng = np.random.default_rng(3)
    emb = nn.Embedding(6, 3, rng=0, dtype=F64)
    ids = np.array([[1, 4, 4, 0], [5, 1, 2, 2]])
    check_central(lambda: emb(ids), [emb.weight], rng)
    # with padding_idx = 2 the row for id 2 gets nothing, the others exactly what they got before
    padded = nn.Embedding(6, 3, padding_idx=2, rng=0, dtype=F64)
    assert np.all(padded.weight.data[2] == 0.0)
    padded.weight.data[...] = emb.weight.data
    C = rng.normal(size=(2, 4, 3))
    emb.weight.grad = None
    (emb(ids) * Tensor(C, requires_grad=False)).sum().backward()
    (padded(ids) * Tensor(C, requires_grad=False)).sum().backward()
    np.testing.assert_array_equal(padded.weight.grad[2], 0.0)
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(padded.weight.grad[keep], emb.weight.grad[keep])
    # the node's vjp and jvp agree with each other with padding too (forward mode sees no tangent there)
    v = rng.normal(size=(6, 3))
    out = (padded(ids) * Tensor(C, requires_grad=False)).sum()
    assert abs(float(jvp(out, {padded.weight: v})) - float(np.sum(padded.weight.grad * v))) < 1e-12
    assert check_gradients((emb(ids) * emb(ids)).sum()).ok


def test_embedding_counts_every_use_of_an_id_like_a_hand_written_sum():
    W = Tensor(np.arange(12.0).reshape(4, 3))
    y = F.embedding(np.array([3, 3, 3, 1]), W)
    np.testing.assert_array_equal(y.data, W.data[[3, 3, 3, 1]])
    y.sum().backward()
    assert W.grad[:, 0].tolist() == [0.0, 1.0, 0.0, 3.0]


def test_a_one_layer_lstm_is_the_unrolled_cell():
    rng = np.random.default_rng(4)
    lstm = nn.LSTM(2, 3, batch_first=True, rng=0, dtype=F64)
    old = nn.RNN(nn.LSTMCell(2, 3, rng=9, dtype=F64), return_sequences=True)  # the older spelling
    assert isinstance(old, nn.Unroll) and isinstance(nn.RNN(cell=nn.GRUCell(2, 3)), nn.Unroll)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(old.cell, name).data[...] = getattr(lstm, name + "_l0").data
    x = rng.normal(size=(4, 6, 2))
    out, (h_n, c_n) = lstm(x)
    np.testing.assert_allclose(out.data, old(x).data, rtol=0, atol=1e-15)
    np.testing.assert_allclose(h_n.data[0], out.data[:, -1], rtol=0, atol=0)


def test_sequence_first_and_batch_first_are_transposes():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 2, 3))
    a = nn.GRU(3, 4, num_layers=2, bidirectional=True, rng=0, dtype=F64)
    b = nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, rng=0, dtype=F64)
    (ya, ha), (yb, hb) = a(x), b(x.transpose(1, 0, 2))
    np.testing.assert_allclose(ya.data, yb.data.transpose(1, 0, 2), atol=1e-15)
    np.testing.assert_allclose(ha.data, hb.data, atol=1e-15)
    # the backward direction's final state is its state after reading step 0: h_n[1] = output[0, :, H:]
    np.testing.assert_allclose(ha.data[3], ya.data[0, :, 4:], atol=0)
    np.testing.assert_allclose(ha.data[2], ya.data[-1, :, :4], atol=0)


def test_dropout_between_recurrent_layers_only_in_training():
    x = np.random.default_rng(6).normal(size=(5, 2, 3))
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5, rng=0, dtype=F64)
    plain = nn.LSTM(3, 4, num_layers=2, rng=0, dtype=F64)
    assert not np.allclose(lstm(x)[0].data, plain(x)[0].data)
    lstm.eval()
    np.testing.assert_array_equal(lstm(x)[0].data, plain(x)[0].data)


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest():
    x = Tensor(np.random.default_rng(7).normal(size=(20, 10, 3, 3)))
    drop = nn.Dropout2d(0.3, rng=0)
    y = drop(x)
    factor = np.where(y.data[:, :, :1, :1] == 0.0, 0.0, 1 / 0.7)  # read off one pixel per (example, channel)
    np.testing.assert_allclose(y.data, x.data * factor, rtol=1e-15, atol=0)  # ... and it holds for every pixel
    assert 0.15 < np.mean(factor == 0.0) < 0.45   # 200 channels, p = 0.3
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.broadcast_to(factor, x.shape), rtol=1e-15)  # mask / (1 - p)
    assert drop.eval()(x) is x
    assert nn.Dropout2d(0.5, rng=0)(Tensor(np.ones((4, 2, 2)))).shape == (4, 2, 2)  # (C, H, W)
    assert not nn.Dropout2d(1.0, rng=0)(x).data.any() and nn.Dropout2d(0.0)(x) is x


# ---------------------------------------------------------------------------------------------------------
# PyTorch, built on its own, with copied weights (float64)
# ---------------------------------------------------------------------------------------------------------

def torch_state(torch, module):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in module.state_dict().items()}


def compare_with_torch(torch, ours, theirs, inputs, torch_inputs=None, call=lambda m, *xs: m(*xs), rtol=1e-10):
    """Forward both on the same inputs (Tensors here, leaf tensors there; ``call(module, *inputs)``), backward
    the same random weighting of the outputs, and compare outputs, input gradients and parameter gradients by
    PyTorch's names."""
    theirs = theirs.double()
    missing, unexpected = theirs.load_state_dict(torch_state(torch, ours), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    xs = [Tensor(a.copy()) if a.dtype.kind == "f" else a for a in inputs]
    ts = torch_inputs or [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    ym, yt = flat(call(ours, *xs)), flat(call(theirs, *ts))
    assert [t.shape for t in ym] == [tuple(t.shape) for t in yt]
    rng = np.random.default_rng(11)
    weights = [rng.normal(size=t.shape) for t in ym]
    ours.zero_grad()
    theirs.zero_grad()
    loss_of(tuple(ym), weights).backward()
    sum((t * torch.from_numpy(c)).sum() for t, c in zip(yt, weights)).backward()
    for a, b in zip(ym, yt):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=rtol, atol=rtol)
    for a, b in zip(xs, ts):
        if isinstance(a, Tensor):
            np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=rtol, atol=rtol)
    tparams = dict(theirs.named_parameters())
    assert sorted(tparams) == sorted(name for name, _ in ours.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (2, True, False), (3, True, True),
                                                              (2, False, True)])
def test_recurrent_layers_equal_pytorch_with_initial_states(torch, kind, layers, bidirectional, batch_first):
    rng = np.random.default_rng(layers)
    extra = {"nonlinearity": "relu"} if kind == "RNN" and layers == 2 else {}
    ours = getattr(nn, kind)(3, 5, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                             rng=0, dtype=F64, **extra)
    theirs = getattr(torch.nn, kind)(3, 5, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                                     **extra)
    x = rng.normal(size=(2, 4, 3) if batch_first else (4, 2, 3))
    h0 = rng.normal(size=(layers * (2 if bidirectional else 1), 2, 5))
    if kind == "LSTM":
        c0 = rng.normal(size=h0.shape)
        compare_with_torch(torch, ours, theirs, [x, h0, c0], call=lambda m, x, h, c: m(x, (h, c)))
    else:
        compare_with_torch(torch, ours, theirs, [x, h0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_one_unbatched_sequence_equals_pytorch(torch, kind):
    rng = np.random.default_rng(12)
    ours = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True, batch_first=True, rng=0, dtype=F64)
    theirs = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x, h0 = rng.normal(size=(6, 3)), rng.normal(size=(4, 4))
    if kind == "LSTM":
        compare_with_torch(torch, ours, theirs, [x, h0, rng.normal(size=(4, 4))],
                           call=lambda m, x, h, c: m(x, (h, c)))
    else:
        compare_with_torch(torch, ours, theirs, [x, h0])


def test_dropout_between_layers_is_pytorchs_in_evaluation(torch):
    x = np.random.default_rng(8).normal(size=(4, 2, 3))
    ours = nn.GRU(3, 5, num_layers=2, dropout=0.4, rng=0, dtype=F64).eval()
    theirs = torch.nn.GRU(3, 5, num_layers=2, dropout=0.4).eval()
    compare_with_torch(torch, ours, theirs, [x])


NORMS_TORCH = [
    ("layernorm", lambda: nn.LayerNorm((3, 4), eps=1e-3, dtype=F64),
     lambda t: t.nn.LayerNorm((3, 4), eps=1e-3), (2, 5, 3, 4)),
    ("layernorm-no-affine", lambda: nn.LayerNorm(4, elementwise_affine=False, dtype=F64),
     lambda t: t.nn.LayerNorm(4, elementwise_affine=False), (5, 4)),
    ("groupnorm", lambda: nn.GroupNorm(3, 6, dtype=F64), lambda t: t.nn.GroupNorm(3, 6), (2, 6, 3, 2)),
    ("groupnorm-sequences-no-affine", lambda: nn.GroupNorm(2, 4, eps=1e-4, affine=False, dtype=F64),
     lambda t: t.nn.GroupNorm(2, 4, eps=1e-4, affine=False), (3, 4, 7)),
    ("batchnorm1d-ncl", lambda: nn.BatchNorm1d(4, dtype=F64), lambda t: t.nn.BatchNorm1d(4), (3, 4, 6)),
    ("batchnorm1d-no-affine", lambda: nn.BatchNorm1d(4, affine=False, dtype=F64),
     lambda t: t.nn.BatchNorm1d(4, affine=False), (6, 4)),
    ("batchnorm2d-no-affine", lambda: nn.BatchNorm2d(2, affine=False, dtype=F64),
     lambda t: t.nn.BatchNorm2d(2, affine=False), (3, 2, 4, 4)),
]


@pytest.mark.parametrize("make,make_torch,shape", [c[1:] for c in NORMS_TORCH], ids=[c[0] for c in NORMS_TORCH])
def test_normalisation_layers_equal_pytorch(torch, make, make_torch, shape):
    rng = np.random.default_rng(9)
    ours, theirs = make(), make_torch(torch)
    for p in ours.parameters():
        p.data[...] = rng.normal(size=p.shape)
    x = rng.normal(size=shape) * 3 + 1
    compare_with_torch(torch, ours, theirs, [x])
    if isinstance(ours, nn._BatchNorm):  # the running statistics (N, C, L: over N and L) moved alike
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
        ours.eval(), theirs.eval()
        compare_with_torch(torch, ours, theirs, [rng.normal(size=shape)])


def test_embedding_equals_pytorch_with_padding(torch):
    ours = nn.Embedding(7, 3, padding_idx=-2, rng=0, dtype=F64)
    assert ours.padding_idx == 5
    theirs = torch.nn.Embedding(7, 3, padding_idx=5)
    ours.weight.data[5] = 0.5  # a padding row that is not zero still reads as itself and learns nothing
    ids = np.array([[5, 1, 1], [0, 5, 6]])
    compare_with_torch(torch, ours, theirs, [ids], [torch.from_numpy(ids)])
    assert ours.weight.grad[5].tolist() == [0.0, 0.0, 0.0]


def test_default_inits_follow_pytorch():
    emb = nn.Embedding(2000, 8, rng=0, dtype=F64)
    assert abs(emb.weight.data.mean()) < 0.03 and abs(emb.weight.data.std() - 1.0) < 0.03  # N(0, 1)
    lstm = nn.LSTM(3, 16, num_layers=2, bidirectional=True, rng=0, dtype=F64)
    for name, p in lstm.named_parameters():
        assert np.abs(p.data).max() <= 0.25 and np.abs(p.data).max() > 0.2, name  # U(-1/sqrt(16), 1/sqrt(16))
    assert lstm.weight_ih_l1.shape == (64, 32) and lstm.weight_hh_l1_reverse.shape == (64, 16)
    ln = nn.LayerNorm(3)
    assert ln.weight.data.tolist() == [1.0, 1.0, 1.0] and ln.bias.data.tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------------------
# ModuleList, Identity
# ---------------------------------------------------------------------------------------------------------

class Tower(nn.Module):
    """A model that keeps its blocks in a ModuleList, as PyTorch tutorials do."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 3, rng=k, dtype=F64) for k in range(2)])
        self.blocks.append(nn.Identity())
        self.head = nn.Linear(3, 1, rng=5, dtype=F64)

    def forward(self, x):
        for block in self.blocks:
            x = block(x).tanh() if isinstance(block, nn.Linear) else block(x)
        return self.head(x)


def test_modulelist_registers_indexes_iterates_and_appends():
    net = Tower()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias", "head.weight",
                     "head.bias"]
    blocks = net.blocks
    assert len(blocks) == 3 and isinstance(blocks[-1], nn.Identity) and isinstance(blocks[1:], nn.ModuleList)
    assert [type(b).__name__ for b in blocks] == ["Linear", "Linear", "Identity"]
    blocks.insert(0, nn.Linear(3, 3, rng=7, dtype=F64))
    blocks[3] = nn.Linear(3, 3, rng=8, dtype=F64)
    assert len(net.parameters()) == 10 and "blocks.3.weight" in dict(net.named_parameters())
    del blocks[3]
    assert len(net.parameters()) == 8
    with pytest.raises(TypeError, match="ModuleList: item 3 is int, not a Module"):
        blocks.append(3)
    with pytest.raises(TypeError, match="ModuleList has no forward"):
        blocks(np.ones((1, 3)))
    # the optimizer trains what the list holds
    x, y = np.random.default_rng(0).normal(size=(8, 3)), np.ones((8, 1))
    opt = SGD(net.parameters(), lr=0.1)
    first = None
    for _ in range(5):
        net.zero_grad()
        loss = ((net(x) - Tensor(y, requires_grad=False)) ** 2).mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first
    clone = Tower()
    clone.blocks.insert(0, nn.Linear(3, 3, rng=9, dtype=F64))
    clone.load_state_dict(net.state_dict())
    np.testing.assert_array_equal(clone(x).data, net(x).data)


def test_identity_passes_its_input_and_takes_any_arguments():
    x = Tensor([1.0, 2.0])
    assert nn.Identity(3, bias=False)(x) is x
    assert repr(nn.Identity()) == "Identity()"


# ---------------------------------------------------------------------------------------------------------
# Drawable, steppable, trainable
# ---------------------------------------------------------------------------------------------------------

class Tagger(nn.Module):
    """Embedding -> bidirectional 2-layer LSTM -> LayerNorm -> Linear: a small sequence tagger."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4, padding_idx=0, rng=0, dtype=F64)
        self.lstm = nn.LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True, rng=1, dtype=F64)
        self.norm = nn.LayerNorm(6, dtype=F64)
        self.out = nn.Linear(6, 2, rng=2, dtype=F64)

    def forward(self, ids):
        h, _ = self.lstm(self.embed(ids))
        return self.out(self.norm(h))


def test_a_tagger_draws_with_module_boxes_steps_and_trains():
    net = Tagger()
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    target = np.random.default_rng(0).normal(size=(2, 4, 2))
    loss = ((net(ids) - Tensor(target, requires_grad=False)) ** 2).mean()
    src = mx.draw(loss, model=net, max_nodes=10_000).source
    for name in ("embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l1_reverse", "norm.weight", "out.bias"):
        assert f"<b>{name}</b>" in src, name
    boxes = mx.draw(loss, model=net, collapse=1).source
    for box in ("embed", "lstm", "norm", "out"):
        assert f"<b>{box}</b>" in boxes, box
    stepper = mx.step(loss).run()
    assert stepper.done
    grads = stepper.gradients
    assert any(np.shape(g) == net.lstm.weight_ih_l0.shape for g in grads.values())
    opt = SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(10):
        net.zero_grad()
        loss = ((net(ids) - Tensor(target, requires_grad=False)) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert np.all(net.embed.weight.data[0] == 0.0)  # the padding row never moved


# ---------------------------------------------------------------------------------------------------------
# The bridge: to_torch and back
# ---------------------------------------------------------------------------------------------------------

BRIDGED = [
    ("embedding", lambda: nn.Embedding(9, 4, padding_idx=3, rng=0)),
    ("layernorm", lambda: nn.LayerNorm((2, 3))),
    ("groupnorm", lambda: nn.GroupNorm(2, 4)),
    ("dropout2d", lambda: nn.Dropout2d(0.2)),
    ("identity", lambda: nn.Identity()),
    ("modulelist", lambda: nn.ModuleList([nn.Linear(2, 3, rng=0), nn.BatchNorm1d(3, affine=False),
                                          nn.LSTM(3, 2, rng=1)])),
    ("lstm", lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, rng=0)),
    ("gru", lambda: nn.GRU(3, 4, bias=False, batch_first=True, rng=0)),
    ("rnn", lambda: nn.RNN(3, 4, num_layers=3, nonlinearity="relu", dropout=0.2, rng=0)),
]


@pytest.mark.parametrize("make", [c[1] for c in BRIDGED], ids=[c[0] for c in BRIDGED])
def test_to_torch_and_load_torch_state_dict_round_trip(torch, make):
    from microgradx.torch_bridge import load_torch_state_dict, to_torch, torch_names

    module = make()
    rng = np.random.default_rng(0)
    for p in module.parameters():
        p.data[...] = rng.normal(size=p.shape)
    tmod = to_torch(module)
    names = torch_names(module)
    tstate = tmod.state_dict()
    for name, a in module.state_dict().items():
        np.testing.assert_array_equal(tstate[names[name]].numpy(), a)
    with torch.no_grad():
        for t in tmod.parameters():
            t.add_(1.0)
    load_torch_state_dict(module, tmod)
    for name, a in module.state_dict().items():
        np.testing.assert_array_equal(a, tmod.state_dict()[names[name]].numpy())
    if isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
        assert (tmod.num_layers, tmod.bidirectional, tmod.batch_first, tmod.bias, tmod.dropout) == (
            module.num_layers, module.bidirectional, module.batch_first, module.bias, module.dropout)


def test_an_rnn_pytorch_lacks_is_refused_by_the_bridge():
    from microgradx.torch_bridge import torch_names

    with pytest.raises(MicrogradxError, match="torch.nn.RNN takes tanh or relu, not 'softsign'"):
        torch_names(nn.RNN(2, 3, nonlinearity="softsign"))


def test_old_unroller_pickles_and_new_layers_pickle():
    import pickle

    lstm = nn.LSTM(2, 3, num_layers=2, rng=0, dtype=F64)
    back = pickle.loads(pickle.dumps(lstm))
    x = np.ones((4, 1, 2))
    np.testing.assert_array_equal(back(x)[0].data, lstm(x)[0].data)
    assert isinstance(pickle.loads(pickle.dumps(nn.RNN(nn.GRUCell(2, 3, rng=0)))), nn.Unroll)


# ---------------------------------------------------------------------------------------------------------
# Bad input: clear errors
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,error,message", [
    (lambda: nn.Embedding(5, 2)(np.array([1, 5])), IndexError, r"embedding: index 5 is out of range for 5"),
    (lambda: nn.Embedding(5, 2)(np.array([-1, 2])), IndexError, r"index -1 is out of range"),
    (lambda: nn.Embedding(5, 2)(np.array([1.0, 2.0])), TypeError, "indices must be integers, got dtype float64"),
    (lambda: nn.Embedding(5, 2, padding_idx=5), ValueError, "padding_idx must be within num_embeddings = 5"),
    (lambda: nn.LayerNorm(4)(np.ones((2, 3))), ShapeError, r"does not end in normalized_shape \(4,\)"),
    (lambda: nn.LayerNorm(4, eps=0.0), ValueError, r"LayerNorm: eps must be a number > 0"),
    (lambda: nn.GroupNorm(2, 4, eps=float("nan")), ValueError, r"GroupNorm: eps must be a number > 0"),
    (lambda: F.normalize(Tensor(np.ones((2, 3))), Tensor(np.ones(2)), Tensor(np.zeros(3)), (1,)), ShapeError,
     r"normalize: gamma of shape \(2,\) does not broadcast against input of shape \(2, 3\)"),
    (lambda: F.normalize(Tensor(np.ones((2, 3))), Tensor(np.ones(3)), Tensor(np.zeros(3)), (2,)), ShapeError,
     r"normalize: axes \(2,\) do not fit input of shape \(2, 3\)"),
    (lambda: nn.GroupNorm(3, 4), ValueError, r"num_channels \(4\) must be a positive multiple of num_groups \(3\)"),
    (lambda: nn.GroupNorm(2, 4)(np.ones((2, 6, 3))), ShapeError, r"GroupNorm: input must have shape \(N, 4, ...\)"),
    (lambda: nn.BatchNorm1d(3)(np.ones((2, 3, 4, 4), np.float32)), ShapeError,
     r"BatchNorm1d: input must have shape \(N, C\) or \(N, C, L\)"),
    (lambda: nn.Dropout2d()(Tensor(np.ones((2, 3)))), ShapeError, "Dropout2d: input must have shape"),
    (lambda: nn.LSTM(3, 4)(np.ones((5, 2, 2))), ShapeError,
     r"LSTM: input must have shape \(T, N, input_size\) \(or one sequence, \(T, input_size\)\) with input_size = 3, "
     r"got \(5, 2, 2\)"),
    (lambda: nn.GRU(3, 4, batch_first=True)(np.ones((5, 2))), ShapeError, r"\(N, T, input_size\)"),
    (lambda: nn.GRU(3, 4)(np.ones((5, 3)), np.zeros((1, 1, 4))), ShapeError,
     r"for one sequence the initial state must have shape \(num_layers \* directions, hidden_size\) = \(1, 4\)"),
    (lambda: nn.GRU(3, 4, num_layers=2)(np.ones((5, 2, 3)), np.zeros((1, 2, 4))), ShapeError,
     r"initial state must have shape \(num_layers \* directions, N, hidden_size\) = \(2, 2, 4\), got \(1, 2, 4\)"),
    (lambda: nn.LSTM(3, 4, num_layers=0), ValueError, "num_layers must be an integer >= 1"),
    (lambda: nn.LSTM(3, 4, dropout=1.5), ValueError, r"dropout is a probability in \[0, 1\]"),
    (lambda: nn.RNN(3, 4, nonlinearity="nope"), ValueError, "nonlinearity must be a one-input op-table row"),
])
def test_bad_input_is_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_layer_reprs_use_pytorchs_argument_names():
    assert repr(nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)) == \
        "LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)"
    assert repr(nn.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert repr(nn.Embedding(5, 2, padding_idx=0)) == "Embedding(5, 2, padding_idx=0)"
    assert repr(nn.GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05, affine=True)"
    assert repr(nn.BatchNorm1d(3, affine=False)) == "BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=False)"
