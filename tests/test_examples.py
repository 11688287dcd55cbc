"""Seed 001's Example 3 and the tour: the seed's printed numbers, recomputed by the engine."""

import math
import subprocess
import sys

import pytest

from microgradx import grad, paths
from microgradx.examples import example3
from microgradx.scalar_nn import MLP, sgd_step


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_example3_forward_and_gradients_to_the_seeds_precision():
    ex = example3()
    assert round(ex.z1.data, 5) == 1.5
    assert round(ex.g1.data, 5) == 0.81757
    assert round(ex.z2.data, 5) == 0.40879
    assert round(ex.yhat.data, 5) == 0.60080
    ex.J.backward()
    assert round(ex.w1.grad, 5) == 0.02510
    assert round(ex.w2.grad, 5) == 0.13757


def test_example3_gradients_match_the_seeds_delta_formulas():
    """Seed 001 (Ex.1), (Ex.2): the hand-derived deltas, written out here, agree to machine precision."""
    x, y, w1, w2 = 2.0, 0.25, 0.75, 0.5
    g1 = sigmoid(x * w1)
    yhat = sigmoid(g1 * w2)
    delta2 = 2 * (yhat - y) * yhat * (1 - yhat)
    delta1 = delta2 * w2 * g1 * (1 - g1)
    ex = example3()
    assert grad(ex.J, [ex.w1, ex.w2]) == [pytest.approx(delta1 * x, rel=1e-14), pytest.approx(delta2 * g1, rel=1e-14)]


def test_example3_one_descent_step():
    ex = example3()
    ex.J.backward()
    sgd_step([ex.w1, ex.w2], 1.0)
    assert (round(ex.w1.data, 5), round(ex.w2.data, 5)) == (0.72490, 0.36243)
    assert round(example3(w1=ex.w1.data, w2=ex.w2.data).yhat.data, 5) == 0.57287
    # The seed carries on from the weights as printed, rounded to five places.
    after = example3(w1=0.72490, w2=0.36243)
    assert round(after.z1.data, 5) == 1.44980
    assert round(after.g1.data, 5) == 0.80997
    assert round(after.yhat.data, 5) == 0.57287


def test_example3_has_one_path_per_weight():
    ex = example3()
    (p,) = paths(ex.J, ex.w1)
    assert p.product == pytest.approx(grad(ex.J, [ex.w1])[0], rel=1e-15)


def test_tour_prints_the_worked_numbers(tmp_path):
    out = subprocess.run([sys.executable, "-m", "microgradx.cli", "tour", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for number in ("0.60080", "0.02510", "0.13757", "(0.72490, 0.36243)", "0.57287"):
        assert number in out.stdout


def moons(n, seed):
    """Two interleaving half circles with a little noise (a micrograd-style toy set)."""
    import random
    rng = random.Random(seed)
    pts = []
    for k in range(n):
        t = math.pi * rng.random()
        if k % 2:
            pts.append(((math.cos(t) + rng.gauss(0, 0.1), math.sin(t) + rng.gauss(0, 0.1)), -1.0))
        else:
            pts.append(((1 - math.cos(t) + rng.gauss(0, 0.1), 0.5 - math.sin(t) + rng.gauss(0, 0.1)), 1.0))
    return pts


def test_scalar_mlp_learns_moons():
    data = moons(40, seed=1)
    model = MLP(2, [12, 12, 1], activation="relu", seed=3)
    for step in range(60):
        losses = [(1 - y * model(list(x))).relu() for x, y in data]
        loss = sum(losses[1:], losses[0]) * (1 / len(data))
        model.zero_grad()
        loss.backward()
        sgd_step(model.parameters(), 0.5 - 0.4 * step / 60)
    accuracy = sum((model(list(x)).data > 0) == (y > 0) for x, y in data) / len(data)
    assert accuracy >= 0.9


def test_mlp_labels_parameters_by_layer_and_neuron():
    model = MLP(3, [2, 1], seed=0)
    labels = [p.label for p in model.parameters()]
    assert labels[:4] == ["L1.n0.w0", "L1.n0.w1", "L1.n0.w2", "L1.n0.b"]
    assert labels[-1] == "L2.n0.b" and len(labels) == 2 * 4 + 3
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(2, [2, 1], activation="backward")
