"""The stepper on Tensor graphs (the MLP, CNN and LSTM demos' networks): stepping to the end gives exactly the
gradients of backward(), each event shows the node, the incoming gradient's shape and norm and each parent's
contribution, back() undoes exactly, and the table and the page work as on Values."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from microgradx import MicrogradxError, Tensor, step, topological_order
from microgradx.losses import cross_entropy, mse
from microgradx.stepper import describe
from microgradx.train import mlp

DEMOS = Path(__file__).resolve().parent.parent / "demos"


def demo(name, monkeypatch):
    monkeypatch.syspath_prepend(str(DEMOS))
    spec = importlib.util.spec_from_file_location(f"stepper_demo_{name}", DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def mlp_loss(_monkeypatch):
    rng = np.random.default_rng(1)
    net = mlp([8, 16, 10], rng=0)
    x, y = rng.normal(size=(5, 8)), rng.integers(0, 10, size=5)
    return net, cross_entropy(net(x), y)


def cnn_loss(monkeypatch):
    net = demo("cnn_digits", monkeypatch).build(0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    return net, cross_entropy(net(x), np.array([1, 4, 7]))


def lstm_loss(monkeypatch):
    mod = demo("lstm_sequence", monkeypatch)
    model = mod.Adder(hidden=6, seed=0)
    X, y = mod.make_adding(4, 5, seed=3)
    return model, mse(model(X), y)


BUILDERS = {"mlp": mlp_loss, "cnn": cnn_loss, "lstm": lstm_loss}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_stepping_to_the_end_equals_backward_exactly(name, monkeypatch):
    net_a, loss_a = BUILDERS[name](monkeypatch)
    net_b, loss_b = BUILDERS[name](monkeypatch)
    loss_a.backward()
    s = step(loss_b)
    n = 0
    for _ in s:
        n += 1
    assert s.done and n == s.total == sum(1 for t in topological_order(loss_b) if t.requires_grad)
    params_a, params_b = list(net_a.parameters()), list(net_b.parameters())
    assert params_a and len(params_a) == len(params_b)
    for a, b in zip(params_a, params_b, strict=True):
        assert b.grad is not None and b.grad.dtype == a.grad.dtype
        assert np.array_equal(a.grad, b.grad)  # exact: the same generator, the same seed


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_each_event_shows_the_gradient_shape_and_norm_and_each_contribution(name, monkeypatch):
    _, loss = BUILDERS[name](monkeypatch)
    s = step(loss)
    for ev in s:
        text = describe(ev, total=s.total)
        g = np.asarray(ev.grad, dtype=np.float64)
        norm = math.sqrt(sum(float(x) ** 2 for x in g.ravel()))  # by hand, not np.linalg.norm
        if g.shape:
            assert f"S = shape {g.shape}, norm {norm:.5g}" in text
        for p, c in zip(ev.parents, ev.contributions, strict=True):
            if c is None:
                assert not p.requires_grad
                continue
            assert np.shape(c) == p.data.shape  # a contribution has its parent's shape
            if np.shape(c):
                assert f"contribution shape {p.data.shape}" in text
        assert text.count("\n") == len(ev.parents)


def test_back_undoes_a_tensor_step_exactly(monkeypatch):
    net, loss = mlp_loss(monkeypatch)
    s = step(loss)
    for _ in range(s.total - 1):
        s.next()
    before = [p.grad.copy() if p.grad is not None else None for p in net.parameters()]
    s.next().back()
    after = [p.grad for p in net.parameters()]
    assert all((a is None and b is None) or np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_table_and_page_on_a_tensor_graph(monkeypatch):
    _, loss = mlp_loss(monkeypatch)
    s = step(loss).run()
    table = s.table()
    rows = table.rows
    assert rows[0][:3] == ("step", "node", "S(node)")
    assert len(rows) == 1 + sum(max(1, len(ev.parents)) for ev in s.events)
    assert "<table" in table._repr_html_() and str(table).count("\n") == len(rows) - 1
    page = step(mlp_loss(monkeypatch)[1]).to_html()
    assert "microgradxPage(" in page and "vjp of linear" in page


def test_a_non_scalar_tensor_needs_a_seed_of_its_shape():
    w = Tensor([[1.0, 2.0], [3.0, 4.0]], label="w")
    y = w * w
    with pytest.raises(MicrogradxError, match="not a scalar"):
        step(y)
    step(y, seed=np.ones((2, 2))).run()
    assert np.array_equal(w.grad, 2 * w.data)
    with pytest.raises(MicrogradxError, match="shape"):
        step(y, seed=np.ones(3))
