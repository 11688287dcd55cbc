"""Tests of the losses: values and gradients against formulas written out here, central differences and the
scalar Value engine; numerical stability; errors on wrong shapes and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

import microgradx as mgx
from microgradx.losses import binary_cross_entropy_with_logits, cross_entropy, huber, mae, mse
from microgradx.tensor import ShapeError, Tensor

H = 1e-6


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + H
        up = f(x)
        x[i] = old - H
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * H)
    return g


def reference_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """-mean(log softmax(z)[y]) and its gradient (softmax - onehot) / N, written out independently."""
    n, c = z.shape
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(c)[y]
    return float(-np.log(p[np.arange(n), y]).mean()), (p - onehot) / n


def test_cross_entropy_matches_the_formula_and_seed_004_gradient():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4)) * 3
    y = rng.integers(0, 4, size=6)
    logits = Tensor(z.copy())
    loss = cross_entropy(logits, y)
    loss.backward()
    value, grad = reference_cross_entropy(z, y)
    assert loss.item() == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(logits.grad, grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(logits.grad, numeric_grad(lambda a: cross_entropy(Tensor(a), y).item(), z.copy()),
                               rtol=1e-6, atol=1e-9)


def test_cross_entropy_for_one_example_is_o_minus_y():
    v = np.array([[1.0, 2.0, 0.5]])
    logits = Tensor(v)
    cross_entropy(logits, [1]).backward()
    o = np.exp(v) / np.exp(v).sum()
    np.testing.assert_allclose(logits.grad, o - np.array([[0.0, 1.0, 0.0]]), rtol=1e-14)


def test_cross_entropy_agrees_with_the_scalar_engine():
    z = np.array([[0.3, -1.2, 2.0], [1.5, 0.1, -0.4]])
    y = [2, 0]
    logits = Tensor(z)
    loss = cross_entropy(logits, y)
    loss.backward()
    vals = [[mgx.Value(float(a)) for a in row] for row in z]
    total = mgx.Value(0.0)
    for row, label in zip(vals, y, strict=True):
        s = mgx.Value(0.0)
        for v in row:
            s = s + v.exp()
        total = total + (s.log() - row[label])
    total = total / 2.0
    total.backward()
    assert abs(loss.item() - total.data) < 1e-12
    np.testing.assert_allclose(logits.grad, [[v.grad for v in row] for row in vals], rtol=1e-12, atol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits_and_keeps_float32():
    z = np.array([[1000.0, 0.0], [0.0, -1000.0]], dtype=np.float32)
    logits = Tensor(z)
    loss = cross_entropy(logits, [1, 0])
    loss.backward()
    assert loss.dtype == np.float32 and logits.grad.dtype == np.float32
    assert loss.item() == pytest.approx(500.0, rel=1e-6)   # (1000 + 0) / 2
    np.testing.assert_allclose(logits.grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize(("labels", "message", "error"), [
    ([0, 1], r"labels of shape \(2,\) do not fit logits of shape \(3, 2\)", ShapeError),
    ([0, 2, 1], r"label 2 is not a class index in \[0, 2\)", ShapeError),
    ([0.0, 1.0, 1.0], "labels must be integer class indices", TypeError),
])
def test_cross_entropy_rejects_bad_labels_naming_the_shapes(labels, message, error):
    with pytest.raises(error, match=message):
        cross_entropy(Tensor(np.zeros((3, 2))), np.array(labels))


def test_cross_entropy_needs_two_dimensional_logits():
    with pytest.raises(ShapeError, match=r"logits must have shape \(N, C\) or \(N, C, d1, \.\.\.\), got \(3,\)"):
        cross_entropy(Tensor(np.zeros(3)), [0, 1, 2])


def test_binary_cross_entropy_with_logits_matches_the_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5,)) * 2
    t = rng.integers(0, 2, size=5).astype(float)
    logits = Tensor(x.copy())
    loss = binary_cross_entropy_with_logits(logits, t)
    loss.backward()
    s = 1 / (1 + np.exp(-x))
    expected = float(-(t * np.log(s) + (1 - t) * np.log(1 - s)).mean())
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(logits.grad, (s - t) / 5, rtol=1e-12, atol=1e-15)


def test_binary_cross_entropy_with_logits_is_stable():
    loss = binary_cross_entropy_with_logits(Tensor([800.0, -800.0]), [0.0, 1.0])
    assert loss.item() == pytest.approx(800.0)


def test_regression_losses_match_their_formulas_and_differences():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(4, 3)) * 2
    t = rng.normal(size=(4, 3))
    d = p - t
    delta = 0.7
    cases = {
        "mse": (lambda x: mse(x, t), float((d ** 2).mean()), 2 * d / d.size),
        "mae": (lambda x: mae(x, t), float(abs(d).mean()), np.sign(d) / d.size),
        "huber": (lambda x: huber(x, t, delta),
                  float(np.where(abs(d) <= delta, 0.5 * d ** 2, delta * (abs(d) - 0.5 * delta)).mean()),
                  np.where(abs(d) <= delta, d, delta * np.sign(d)) / d.size),
    }
    assert (abs(d) > 1e-3).all() and (abs(abs(d) - delta) > 1e-3).all()  # no entry at a kink
    for name, (f, value, grad) in cases.items():
        x = Tensor(p.copy())
        loss = f(x)
        loss.backward()
        assert loss.item() == pytest.approx(value, rel=1e-13), name
        np.testing.assert_allclose(x.grad, grad, rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(x.grad, numeric_grad(lambda a, f=f: f(Tensor(a)).item(), p.copy()), rtol=1e-6,
                                   atol=1e-9, err_msg=name)


@pytest.mark.parametrize("loss", [mse, mae, huber, binary_cross_entropy_with_logits])
def test_regression_losses_reject_mismatched_shapes(loss):
    with pytest.raises(ShapeError, match=r"prediction of shape \(3,\) and target of shape \(4,\) differ"):
        loss(Tensor(np.zeros(3)), np.zeros(4))


def test_huber_needs_a_positive_delta():
    with pytest.raises(ValueError, match="delta must be > 0"):
        huber(Tensor([1.0]), [0.0], delta=0.0)


def test_losses_keep_float32():
    p = Tensor(np.array([0.5, -1.0], dtype=np.float32))
    for loss in (mse(p, [0.0, 0.0]), mae(p, [0.0, 0.0]), huber(p, [0.0, 0.0]),
                 binary_cross_entropy_with_logits(p, [1.0, 0.0])):
        assert loss.dtype == np.float32
    assert math.isfinite(mse(p, [0.0, 0.0]).item())


def test_cross_entropy_reads_big_endian_labels_as_the_same_numbers():
    from microgradx.losses import cross_entropy

    z = np.array([[1.0, 2.0, -1.0], [0.5, 0.1, 3.0]])
    native, swapped = Tensor(z.copy()), Tensor(z.copy())
    a = cross_entropy(native, np.array([0, 2]))
    b = cross_entropy(swapped, np.array([0, 2], ">i4"))
    a.backward()
    b.backward()
    assert b.item() == a.item()
    np.testing.assert_array_equal(swapped.grad, native.grad)
    with pytest.raises(ShapeError, match=r"label 3 is not a class index"):
        cross_entropy(Tensor(z), np.array([0, 3], ">i8"))


def test_empty_logits_and_an_empty_logsumexp_axis_are_shape_errors():
    from microgradx.losses import cross_entropy

    with pytest.raises(ShapeError, match=r"logits of shape \(0, 0\) have no classes"):
        cross_entropy(Tensor(np.zeros((0, 0))), np.array([], np.int64))
    with pytest.raises(ShapeError, match=r"logsumexp: .* of shape \(2, 0\) is empty along axis -1"):
        Tensor(np.zeros((2, 0))).logsumexp()
    assert Tensor(np.zeros((2, 0))).logsumexp(axis=0).data.shape == (0,)


def test_an_overflow_gives_the_domain_error_without_a_numpy_warning_first():
    """Run with every RuntimeWarning an error: a NumPy warning printed before our DomainError would surface."""
    import subprocess
    import sys

    code = ("import numpy as np\nfrom microgradx.tensor import Tensor\nfrom microgradx import DomainError\n"
            "for f in (lambda: Tensor([1000.0]).exp(), lambda: Tensor(np.array([1e300]), dtype=np.float32),\n"
            "          lambda: Tensor([1e200]) * Tensor([1e200])):\n"
            "    try:\n        f()\n    except DomainError as e:\n        print(type(e).__name__)\n")
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split() == ["DomainError"] * 3
