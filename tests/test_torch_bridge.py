"""The PyTorch bridge, checked against PyTorch itself: every convertible layer gives the same outputs and
gradients, an MLP and a CNN trained a few steps in both agree (float64, 1e-10), state dicts round-trip exactly,
and what cannot be converted or loaded is refused with a clear error. Tests that need PyTorch skip without it."""

from __future__ import annotations

import importlib.util
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from microgradx import MicrogradxError, Tensor, nn
from microgradx.losses import cross_entropy
from microgradx.optim import SGD, Adam
from microgradx.torch_bridge import TorchMissingError, load_torch_state_dict, to_torch, torch_names

F64 = np.float64
TOL = 1e-10
NO_TORCH = "PyTorch is not installed: it is the optional extra, pip install 'microgradx[torch]'"


def as_tuple(y):
    """The output's tensors in order: a recurrent layer's (output, (h_n, c_n)) is flattened to three."""
    return tuple(t for item in y for t in as_tuple(item)) if isinstance(y, tuple) else (y,)


def compare_layer(torch, module, x, train=True):
    """Forward both with a random upstream gradient; return the largest differences of outputs, input
    gradients, parameter gradients and buffers."""
    module.train(train)
    tmod = to_torch(module)
    assert tmod.training is train
    rng = np.random.default_rng(1)
    xm = Tensor(x.copy())
    xt = torch.tensor(x, requires_grad=True)
    ym, yt = as_tuple(module(xm)), as_tuple(tmod(xt))
    assert len(ym) == len(yt)
    gs = [rng.normal(size=y.shape) for y in ym]
    loss_m = sum((y * Tensor(g, requires_grad=False)).sum() for y, g in zip(ym, gs))
    loss_t = sum((y * torch.from_numpy(g)).sum() for y, g in zip(yt, gs))
    module.zero_grad()
    loss_m.backward()
    loss_t.backward()
    diffs = {"out": max(float(np.abs(a.data - b.detach().numpy()).max()) for a, b in zip(ym, yt)),
             "dx": float(np.abs(xm.grad - xt.grad.numpy()).max())}
    names = torch_names(module)
    tparams = dict(tmod.named_parameters())
    for name, p in module.named_parameters():
        diffs[name] = float(np.abs(p.grad - tparams[names[name]].grad.numpy()).max())
    tstate = tmod.state_dict()
    for name, buf in module.named_buffers():
        diffs[name] = float(np.abs(buf - tstate[names[name]].numpy()).max())
    return diffs


def cases():
    """(id, a float64 microgradx module, an input shape, input scale[, shift]): every layer the bridge converts."""
    return [
        ("linear", lambda: nn.Linear(5, 4, rng=0, dtype=F64), (6, 5), 1.0),
        ("linear-no-bias", lambda: nn.Linear(5, 4, bias=False, rng=0, dtype=F64), (6, 5), 1.0),
        ("conv", lambda: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1, rng=0, dtype=F64), (2, 2, 7, 6), 1.0),
        ("conv-no-bias", lambda: nn.Conv2d(2, 3, 3, bias=False, rng=0, dtype=F64), (2, 2, 5, 5), 1.0),
        ("conv-options", lambda: nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2, padding_mode="reflect",
                                           rng=0, dtype=F64), (2, 4, 7, 6), 1.0),
        ("conv1d", lambda: nn.Conv1d(2, 4, 3, stride=2, padding=2, padding_mode="circular", rng=0, dtype=F64),
         (2, 2, 9), 1.0),
        ("maxpool", lambda: nn.MaxPool2d(2), (2, 3, 6, 7), 1.0),
        ("maxpool-padding-ceil", lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 6, 7), 1.0),
        ("avgpool-padding-ceil", lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                      count_include_pad=False), (2, 3, 6, 7), 1.0),
        ("adaptive-avgpool", lambda: nn.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 5), 1.0),
        ("maxpool-overlap", lambda: nn.MaxPool2d(3, stride=2), (2, 3, 7, 7), 1.0),
        ("avgpool", lambda: nn.AvgPool2d((2, 3), stride=1), (2, 3, 5, 6), 1.0),
        ("global-avgpool", lambda: nn.GlobalAvgPool2d(), (2, 3, 4, 5), 1.0),
        ("flatten", lambda: nn.Flatten(), (2, 3, 4, 5), 1.0),
        ("batchnorm1d", lambda: nn.BatchNorm1d(4, eps=1e-3, momentum=0.3, dtype=F64), (8, 4), 2.0),
        ("batchnorm2d", lambda: nn.BatchNorm2d(3, dtype=F64), (4, 3, 5, 5), 2.0),
        ("relu", lambda: nn.ReLU(), (4, 6), 1.0),
        ("tanh", lambda: nn.Tanh(), (4, 6), 1.0),
        ("activation-tanh", lambda: nn.Activation("tanh"), (4, 6), 1.0),
        ("sigmoid", lambda: nn.Sigmoid(), (4, 6), 3.0),
        ("leaky-relu", lambda: nn.LeakyReLU(0.2), (4, 6), 1.0),
        ("elu", lambda: nn.ELU(0.7), (4, 6), 1.0),
        ("gelu", lambda: nn.GELU(), (4, 6), 2.0),
        ("silu", lambda: nn.SiLU(), (4, 6), 2.0),
        ("softplus", lambda: nn.Softplus(), (4, 6), 30.0),
        # just above PyTorch's default threshold of 20, where it would return x itself, 2e-9 off
        ("softplus-20", lambda: nn.Softplus(), (4, 6), 1.0, 21.0),
        ("softsign", lambda: nn.Softsign(), (4, 6), 2.0),
        ("hardtanh", lambda: nn.HardTanh(), (4, 6), 2.0),
        ("identity", lambda: nn.LinearActivation(), (4, 6), 1.0),
        ("prelu", lambda: nn.PReLU(dtype=F64), (4, 6), 1.0),
        ("prelu-per-feature", lambda: nn.PReLU(6, init=0.1, dtype=F64), (4, 6), 1.0),
        ("softmax", lambda: nn.Softmax(axis=0), (4, 6), 2.0),
        ("log-softmax", lambda: nn.LogSoftmax(), (4, 6), 2.0),
        ("sequential-fused", lambda: nn.Sequential(nn.Linear(5, 4, rng=0, dtype=F64), nn.ReLU(),
                                                   nn.Linear(4, 3, rng=1, dtype=F64)), (6, 5), 1.0),
        ("residual", lambda: nn.Residual(nn.Sequential(nn.Linear(5, 5, rng=0, dtype=F64), nn.Tanh())), (6, 5), 1.0),
        ("rnn-cell-tanh", lambda: nn.RNNCell(3, 4, rng=0, dtype=F64), (5, 3), 1.0),
        ("rnn-cell-relu", lambda: nn.RNNCell(3, 4, nonlinearity="relu", rng=0, dtype=F64), (5, 3), 1.0),
        ("lstm-cell", lambda: nn.LSTMCell(3, 4, rng=0, dtype=F64), (5, 3), 1.0),
        ("gru-cell", lambda: nn.GRUCell(3, 4, rng=0, dtype=F64), (5, 3), 1.0),
        ("rnn-lstm-last", lambda: nn.RNN(nn.LSTMCell(3, 4, rng=0, dtype=F64)), (2, 6, 3), 1.0),
        ("rnn-gru-sequence", lambda: nn.RNN(nn.GRUCell(3, 4, rng=0, dtype=F64), return_sequences=True), (2, 6, 3),
         1.0),
        ("rnn-relu", lambda: nn.RNN(nn.RNNCell(3, 4, nonlinearity="relu", rng=0, dtype=F64)), (2, 6, 3), 1.0),
        ("lstm-stacked-bidirectional", lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, rng=0, dtype=F64),
         (5, 2, 3), 1.0),
        ("gru-batch-first", lambda: nn.GRU(3, 4, num_layers=2, batch_first=True, rng=0, dtype=F64), (2, 5, 3), 1.0),
        ("rnn-stacked-relu-no-bias", lambda: nn.RNN(3, 4, num_layers=2, nonlinearity="relu", bias=False,
                                                    bidirectional=True, rng=0, dtype=F64), (5, 2, 3), 1.0),
        ("layernorm", lambda: nn.LayerNorm((4, 5), eps=1e-3, dtype=F64), (3, 4, 5), 2.0),
        ("layernorm-no-affine", lambda: nn.LayerNorm(5, elementwise_affine=False, dtype=F64), (3, 4, 5), 2.0),
        ("groupnorm", lambda: nn.GroupNorm(2, 6, dtype=F64), (3, 6, 4, 2), 2.0),
        ("groupnorm-no-affine", lambda: nn.GroupNorm(3, 6, affine=False, dtype=F64), (3, 6, 5), 2.0),
        ("batchnorm1d-sequence", lambda: nn.BatchNorm1d(4, dtype=F64), (3, 4, 5), 2.0),
        ("batchnorm2d-no-affine", lambda: nn.BatchNorm2d(3, affine=False, dtype=F64), (4, 3, 5, 5), 2.0),
        ("identity-layer", lambda: nn.Identity(), (4, 6), 1.0),
    ]


CASES = cases()


@pytest.mark.parametrize("make,shape,scale,shift", [(*c[1:], 0.0)[:4] for c in CASES], ids=[c[0] for c in CASES])
def test_every_layer_matches_pytorch_in_outputs_and_gradients(torch, make, shape, scale, shift):
    x = np.random.default_rng(0).normal(size=shape) * scale + shift
    diffs = compare_layer(torch, make(), x)
    assert max(diffs.values()) < TOL, diffs


@pytest.mark.parametrize("make,shape", [(lambda: nn.BatchNorm1d(4, dtype=F64), (8, 4)),
                                        (lambda: nn.BatchNorm2d(3, dtype=F64), (4, 3, 5, 5)),
                                        (lambda: nn.Dropout(0.4, rng=0), (4, 6)),
                                        (lambda: nn.Dropout2d(0.4, rng=0), (2, 3, 4, 4))],
                         ids=["bn1d", "bn2d", "dropout", "dropout2d"])
def test_evaluation_mode_matches_pytorch(torch, make, shape):
    module = make()
    rng = np.random.default_rng(3)
    if list(module.named_buffers()):  # give batch norm running statistics other than the initial 0 and 1
        for _ in range(3):
            module(Tensor(rng.normal(size=shape) * 3 + 1))
    diffs = compare_layer(torch, module, rng.normal(size=shape), train=False)
    assert max(diffs.values()) < TOL, diffs


def test_dropout_keeps_its_rate_and_the_mode(torch):
    drop = nn.Dropout(0.3, rng=0)
    t = to_torch(drop)
    assert isinstance(t, torch.nn.Dropout) and t.p == 0.3 and t.training
    assert not to_torch(nn.Sequential(nn.Linear(2, 2, rng=0), drop).eval())[1].training
    net = nn.Sequential(nn.GlobalAvgPool2d(), nn.Dropout(0.5), nn.RNN(nn.LSTMCell(1, 2, rng=0))).eval()
    net.layers[1].train()  # a module may differ from its parent
    modes = [m.training for m in to_torch(net).modules()]
    assert modes == [False, False, False, False, True, False, False], modes


# -- training the same networks in both ------------------------------------------------------------------------

def mlp():
    return nn.Sequential(nn.Linear(20, 32, rng=0, dtype=F64), nn.Tanh(), nn.Linear(32, 16, rng=1, dtype=F64),
                         nn.PReLU(16, dtype=F64), nn.BatchNorm1d(16, dtype=F64), nn.Linear(16, 5, rng=2, dtype=F64))


def cnn():
    # NOTE: no bias before batch norm: its gradient is rounding noise, which Adam would blow up to full steps.
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False, rng=0, dtype=F64), nn.BatchNorm2d(4, dtype=F64),
                         nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, rng=1, dtype=F64), nn.ELU(),
                         nn.Residual(nn.Sequential(nn.Conv2d(6, 6, 1, rng=2, dtype=F64), nn.Tanh())),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 5, rng=3, dtype=F64))


@pytest.mark.parametrize("make,shape,optimizers", [
    (mlp, (16, 20), lambda mp, tp, torch: (SGD(mp, lr=0.1, momentum=0.9), torch.optim.SGD(tp, lr=0.1, momentum=0.9))),
    (cnn, (8, 1, 8, 8), lambda mp, tp, torch: (Adam(mp, lr=0.01), torch.optim.Adam(tp, lr=0.01))),
], ids=["mlp-sgd-momentum", "cnn-adam"])
def test_training_a_few_steps_gives_equal_losses_and_gradients(torch, make, shape, optimizers):
    net = make()
    tnet = to_torch(net)
    names = torch_names(net)
    tparams = dict(tnet.named_parameters())
    mparams = dict(net.named_parameters())
    opt, topt = optimizers(list(mparams.values()), [tparams[names[k]] for k in mparams], torch)
    rng = np.random.default_rng(0)
    for step in range(5):
        x, y = rng.normal(size=shape), rng.integers(0, 5, size=shape[0])
        opt.zero_grad()
        loss = cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) < TOL, step
        for k, p in mparams.items():
            assert np.abs(p.grad - tparams[names[k]].grad.numpy()).max() < TOL, (step, k)
    tstate = tnet.state_dict()
    for k, a in net.state_dict().items():  # parameters after 5 updates and the running statistics
        assert np.abs(a - tstate[names[k]].numpy()).max() < TOL, k
    x = rng.normal(size=shape)
    net.eval()
    tnet.eval()
    assert np.abs(net(x).data - tnet(torch.from_numpy(x)).detach().numpy()).max() < TOL


# -- round trips ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_to_torch_and_back_is_exact(torch, dtype):
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=0, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype),
                        nn.ReLU(), nn.Flatten(), nn.Linear(75, 4, rng=1, dtype=dtype), nn.PReLU(4, dtype=dtype),
                        nn.BatchNorm1d(4, dtype=dtype))
    rng = np.random.default_rng(0)
    for _ in range(3):  # move every parameter and running statistic away from its initial value
        net.zero_grad()
        net(rng.normal(size=(6, 1, 5, 5)).astype(dtype)).tanh().sum().backward()
        for p in net.parameters():
            p.data -= dtype(0.1) * p.grad
    before = net.state_dict()
    tnet = to_torch(net)
    assert {str(t.dtype) for t in tnet.state_dict().values() if t.is_floating_point()} == {f"torch.{dtype.__name__}"}
    fresh = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=5, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype),
                          nn.ReLU(), nn.Flatten(), nn.Linear(75, 4, rng=6, dtype=dtype), nn.PReLU(4, dtype=dtype),
                          nn.BatchNorm1d(4, dtype=dtype))
    load_torch_state_dict(fresh, tnet)  # a module is read through its state_dict()
    after = fresh.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert after[k].dtype == before[k].dtype and np.array_equal(after[k], before[k]), k


def test_round_trip_from_torch_and_back_is_exact(torch):
    template = nn.Sequential(nn.Linear(3, 4, rng=0, dtype=F64), nn.BatchNorm1d(4, dtype=F64), nn.ReLU(),
                             nn.RNN(nn.LSTMCell(1, 2, rng=1, dtype=F64)))
    tnet = to_torch(template)
    opt = torch.optim.SGD(tnet.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):  # trained in PyTorch: new weights, running statistics, num_batches_tracked = 4
        opt.zero_grad()
        x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
        tnet[3](tnet[:3](x).unsqueeze(-1)).square().sum().backward()
        opt.step()
    state = {k: v.clone() for k, v in tnet.state_dict().items()}
    assert int(state["1.num_batches_tracked"]) == 4
    net = nn.Sequential(nn.Linear(3, 4, rng=7, dtype=F64), nn.BatchNorm1d(4, dtype=F64), nn.ReLU(),
                        nn.RNN(nn.LSTMCell(1, 2, rng=8, dtype=F64)))
    load_torch_state_dict(net, state)
    again = to_torch(net).state_dict()
    for k, v in state.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(again[k], v), k
    assert "3.rnn.weight_hh_l0" in state and np.array_equal(net.layers[3].cell.weight_hh.data,
                                                            state["3.rnn.weight_hh_l0"].numpy())


def test_a_shared_module_stays_shared(torch):
    layer, norm = nn.Linear(3, 3, rng=0, dtype=F64), nn.BatchNorm1d(3, dtype=F64)
    net = nn.Sequential(layer, norm, nn.Tanh(), layer, norm)
    tnet = to_torch(net)
    assert tnet[0] is tnet[3] and tnet[1] is tnet[4]
    x = np.random.default_rng(0).normal(size=(4, 3))
    assert np.abs(net(x).data - tnet(torch.from_numpy(x)).detach().numpy()).max() < TOL
    assert np.abs(norm.running_var - tnet[1].running_var.numpy()).max() < TOL  # updated twice in both
    state = tnet.state_dict()
    assert {"3.weight", "4.running_mean", "4.num_batches_tracked"} < set(state)
    fresh_layer, fresh_norm = nn.Linear(3, 3, rng=5, dtype=F64), nn.BatchNorm1d(3, dtype=F64)
    fresh = nn.Sequential(fresh_layer, fresh_norm, nn.Tanh(), fresh_layer, fresh_norm)
    load_torch_state_dict(fresh, state)
    names = torch_names(fresh)
    assert all(np.array_equal(a, state[names[k]].numpy()) for k, a in fresh.state_dict().items() if k in names)
    assert np.array_equal(fresh.state_dict()["4.running_var"], state["1.running_var"].numpy())
    state["3.weight"] = state["3.weight"] + 1.0
    with pytest.raises(MicrogradxError, match="3.weight and 0.weight are one shared module"):
        load_torch_state_dict(net, state)


# -- refusals ---------------------------------------------------------------------------------------------------

class Doubler(nn.Module):
    def forward(self, x):
        return x * 2.0


class SquaredLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) ** 2


@pytest.mark.parametrize("module,message", [
    (nn.Arctan(), r"Arctan\(\) has no PyTorch equivalent: PyTorch has no layer for the op-table row 'arctan'"),
    (nn.BinaryStep(), "no layer for the op-table row 'binary_step'"),
    (nn.Activation("exp"), "no layer for the op-table row 'exp'"),
    (nn.Sigmoid(2.0), "torch.nn.Sigmoid has a = 1, this one 2"),
    (nn.LinearActivation(3.0), "torch.nn.Identity has a = 1, this one 3"),
    (nn.RNNCell(2, 3, nonlinearity="sigmoid", rng=0), "torch.nn.RNNCell takes tanh or relu, not 'sigmoid'"),
    (nn.RNN(nn.RNNCell(2, 3, nonlinearity="softsign", rng=0)), "torch.nn.RNN takes tanh or relu"),
], ids=["arctan", "binary-step", "exp", "sigmoid-slope", "scaled-linear", "rnn-cell-sigmoid", "rnn-softsign"])
def test_a_layer_without_equivalent_is_refused_without_pytorch(module, message):
    net = nn.Sequential(nn.Linear(2, 2, rng=0), module)
    with pytest.raises(MicrogradxError, match=message):
        torch_names(net)
    with pytest.raises(MicrogradxError, match=message):
        load_torch_state_dict(net, {})


@pytest.mark.parametrize("module,where", [(Doubler(), "1, Doubler()"), (SquaredLinear(2, 2, rng=0), "1, SquaredLinear"),
                                          (nn.Residual(Doubler()), "1.block, Doubler()")],
                         ids=["custom", "subclass-with-own-forward", "nested"])
def test_an_unknown_module_is_refused_by_its_path_without_pytorch(module, where):
    net = nn.Sequential(nn.Linear(2, 2, rng=0), module)
    with pytest.raises(MicrogradxError, match=rf"torch_bridge: {where}.*has no PyTorch equivalent"):
        torch_names(net)  # the same walk that to_torch and load_torch_state_dict run first


def test_to_torch_refuses_what_torch_names_refuses(torch):
    with pytest.raises(MicrogradxError, match="no layer for the op-table row 'arctan'"):
        to_torch(nn.Sequential(nn.Linear(2, 2, rng=0), nn.Arctan()))
    with pytest.raises(MicrogradxError, match=r"torch_bridge: 0, Doubler\(\), has no PyTorch equivalent"):
        to_torch(nn.Sequential(Doubler()))


def test_mixed_dtypes_and_parameters_shared_between_modules_are_refused(torch):
    with pytest.raises(MicrogradxError, match="mixes dtypes"):
        to_torch(nn.Sequential(nn.Linear(2, 2, rng=0), nn.Linear(2, 2, rng=0, dtype=F64)))
    a, b = nn.Linear(2, 2, rng=0), nn.Linear(2, 2, rng=1)
    b.weight = a.weight
    with pytest.raises(MicrogradxError, match="1.weight is the same array as 0.weight in another module"):
        to_torch(nn.Sequential(a, b))


# -- loading: names, shapes and values are checked before anything is copied (no PyTorch needed) -----------------

def small():
    return nn.Sequential(nn.Linear(3, 2, rng=0, dtype=F64), nn.PReLU(dtype=F64), nn.BatchNorm1d(2, dtype=F64))


def torch_style_state(rng):
    return {"0.weight": rng.normal(size=(2, 3)), "0.bias": rng.normal(size=2), "1.weight": np.array([0.1]),
            "2.weight": rng.normal(size=2), "2.bias": rng.normal(size=2), "2.running_mean": rng.normal(size=2),
            "2.running_var": rng.random(2) + 0.5, "2.num_batches_tracked": np.array(7, dtype=np.int64)}


def test_loading_maps_names_and_ignores_num_batches_tracked():
    net, state = small(), torch_style_state(np.random.default_rng(0))
    load_torch_state_dict(net, state)
    assert np.array_equal(net.layers[1].slope.data, state["1.weight"])
    assert np.array_equal(net.layers[2].running_var, state["2.running_var"])
    del state["2.num_batches_tracked"]  # optional: a state dict saved without it still loads
    load_torch_state_dict(net, state)


@pytest.mark.parametrize("change,message", [
    (lambda s: s.pop("1.weight"), r"missing \['1.weight'\], unexpected \[\]"),
    (lambda s: s.update({"1.slope": s.pop("1.weight")}), r"missing \['1.weight'\], unexpected \['1.slope'\]"),
    (lambda s: s.update({"0.weight": np.zeros((3, 2))}),
     r"0.weight has shape \(3, 2\), but the parameter 0.weight of Sequential has shape \(2, 3\)"),
    (lambda s: s.update({"2.running_mean": np.zeros(3)}), r"the buffer 2.running_mean .* has shape \(2,\)"),
    (lambda s: s.update({"0.bias": np.array([0.0, np.nan])}), r"0.bias holds non-finite values \(at index \(1,\)\)"),
    (lambda s: s.update({"0.bias": np.array(["a", "b"])}), "0.bias has dtype <U1"),
    (lambda s: s.update({"2.num_batches_tracked": np.array(-1)}), "2.num_batches_tracked should be a count"),
    (lambda s: s.update({"0.bias": [[1.0], [2.0, 3.0]]}), "0.bias cannot be read as a NumPy array"),
], ids=["missing", "microgradx-name", "shape", "buffer-shape", "nan", "strings", "negative-count", "ragged"])
def test_a_state_dict_that_does_not_fit_is_refused_and_nothing_changes(change, message):
    net, state = small(), torch_style_state(np.random.default_rng(0))
    before = net.state_dict()
    change(state)
    with pytest.raises(MicrogradxError, match=message):
        load_torch_state_dict(net, state)
    assert all(np.array_equal(a, net.state_dict()[k]) for k, a in before.items())


def test_a_bfloat16_tensor_is_refused_clearly(torch):
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in torch_style_state(np.random.default_rng(0)).items()}
    state["0.weight"] = state["0.weight"].to(torch.bfloat16)
    with pytest.raises(MicrogradxError, match="0.weight cannot be read as a NumPy array"):
        load_torch_state_dict(small(), state)


def test_loading_something_that_is_not_a_state_dict_is_a_type_error():
    with pytest.raises(TypeError, match="expected a state dict"):
        load_torch_state_dict(small(), [np.zeros(2)])


# -- PyTorch stays optional ---------------------------------------------------------------------------------------

def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_importing_microgradx_does_not_import_torch():
    done = run_python("""
        import sys
        import microgradx, microgradx.nn, microgradx.train, microgradx.torch_bridge
        from microgradx.torch_bridge import torch_names
        torch_names(microgradx.nn.Linear(2, 2, rng=0))
        assert sys.modules.get("torch") is None, "torch was imported"   # absent, or blocked as None
    """)
    assert done.returncode == 0, done.stderr


def test_without_torch_the_bridge_says_how_to_install_it():
    done = run_python("""
        import sys
        sys.modules["torch"] = None          # what an environment without PyTorch looks like to import
        from microgradx import MicrogradxError, nn
        from microgradx.torch_bridge import to_torch
        try:
            to_torch(nn.Linear(2, 2, rng=0))
        except MicrogradxError as e:
            assert isinstance(e, ImportError)
            print(e)
    """)
    assert done.returncode == 0, done.stderr
    assert "pip install 'microgradx[torch]'" in done.stdout
    assert issubclass(TorchMissingError, ImportError)


# -- the hand-over demo -------------------------------------------------------------------------------------------

def test_handover_demo_continues_training_in_pytorch(torch, monkeypatch, tmp_path):
    demos = Path(__file__).resolve().parent.parent / "demos"
    monkeypatch.syspath_prepend(str(demos))
    spec = importlib.util.spec_from_file_location("demo_torch_handover", demos / "torch_handover.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    r = module.main(["--fast", "--out", str(tmp_path)])
    assert r["handover_logit_difference"] < TOL
    assert r["continued_loss_difference"] < 1e-9  # the same epochs run in both engines, step for step
    assert r["accuracy_torch"] == r["accuracy_back_in_microgradx"]
    assert r["loss_torch_end"] < r["loss_microgradx_end"]  # PyTorch really kept training
    assert (tmp_path / "model.pt").exists()
    state = torch.load(tmp_path / "model.pt")
    assert set(state) == set(r["torch_names"])


# -- docs/from-pytorch.md: every Python block runs as written -------------------------------------------------------

PAGE = Path(__file__).resolve().parents[1] / "docs" / "from-pytorch.md"
PAGE_BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_examples():
    assert len(PAGE_BLOCKS) >= 6 and sum("import torch" in b for b in PAGE_BLOCKS) >= 1


@pytest.mark.parametrize("code", PAGE_BLOCKS, ids=[f"block{k}" for k in range(len(PAGE_BLOCKS))])
def test_from_pytorch_page_block_runs(code, tmp_path):
    if "import torch" in code and importlib.util.find_spec("torch") is None:
        pytest.skip(NO_TORCH)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr


def test_what_the_page_says_pytorch_does(torch):
    """The PyTorch side of each convention on the page, checked on PyTorch itself."""
    assert torch.isnan(torch.tensor([-1.0, 2.0]).log()[0])
    x = torch.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    x.max(dim=1).values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0]]
    x.grad = None
    x.amax(dim=1).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.5, 0.5]]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=2)
    rates = []
    for loss in [1.0, 1.0, 1.0, 1.0]:
        plateau.step(loss)
        rates.append(round(opt.param_groups[0]["lr"], 6))
    assert rates == [0.1, 0.1, 0.1, 0.01]
    assert torch.nn.Softplus()(torch.tensor([21.0], dtype=torch.float64)).item() == 21.0


def test_an_unrolled_rnn_takes_an_initial_state_and_pickles(torch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2))
    for cell, state in [(nn.LSTMCell(2, 5, rng=0, dtype=F64), (rng.normal(size=(3, 5)), rng.normal(size=(3, 5)))),
                        (nn.GRUCell(2, 5, rng=0, dtype=F64), rng.normal(size=(3, 5)))]:
        rnn = nn.RNN(cell, return_sequences=True)
        trnn = to_torch(rnn)
        mx_state = tuple(Tensor(s) for s in state) if isinstance(state, tuple) else Tensor(state)
        t_state = tuple(torch.from_numpy(s) for s in state) if isinstance(state, tuple) else torch.from_numpy(state)
        assert np.abs(rnn(x, mx_state).data - trnn(torch.from_numpy(x), t_state).detach().numpy()).max() < TOL
    net = to_torch(nn.Sequential(nn.Residual(nn.Linear(2, 2, rng=0, dtype=F64)), nn.RNN(nn.GRUCell(2, 3, rng=1,
                                                                                                   dtype=F64))))
    again = pickle.loads(pickle.dumps(net))  # torch.save(model) pickles the whole module
    xt = torch.from_numpy(x)
    assert torch.equal(again(xt), net(xt))


def test_the_page_maps_every_layer_the_bridge_converts():
    from microgradx.torch_bridge import _ACTIVATIONS, _KINDS

    table = PAGE.read_text().split("What maps to what")[1].split("\n\n")[1]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    ours, theirs = " ".join(r[0] for r in rows), " ".join(r[1] for r in rows)
    for cls in _KINDS:
        if cls is not nn.Activation:  # the generic activation layer is listed by its named classes
            assert re.search(rf"`{cls.__name__}\b", ours), cls.__name__
    for layer, _ in _ACTIVATIONS.values():
        assert re.search(rf"\b{layer}\b", theirs), layer
