"""Tests of the losses: values and gradients against formulas written out here, central differences, the
scalar Value engine and PyTorch (float64, when installed): every option (reduction, class weights, ignore_index,
label smoothing, probability targets, (N, C, d1, ...) logits; nll_loss, kl_div, smooth_l1, huber); forward mode
against reverse mode; numerical stability; clear errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import microgradx as mgx
from microgradx import fast
from microgradx.graph import jvp
from microgradx.losses import (
    LossError,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber,
    kl_div,
    mae,
    mse,
    nll_loss,
    smooth_l1,
)
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


# ---------------------------------------------------------------------------------------------------------
# PyTorch's options
# ---------------------------------------------------------------------------------------------------------

def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch (the `test` extra) is the oracle of these checks")


RNG = np.random.default_rng(16)
Z2 = RNG.normal(size=(6, 4))
Y2 = np.array([0, 3, 1, 1, 2, 3])
Z4 = RNG.normal(size=(3, 4, 2, 3))
Y4 = RNG.integers(0, 4, size=(3, 2, 3))
W = np.array([0.5, 2.0, 1.0, 0.25])
P2 = RNG.dirichlet(np.ones(4), size=6)
P4 = np.moveaxis(RNG.dirichlet(np.ones(4), size=(3, 2, 3)), -1, 1)

# (name, logits, targets, keyword options): every option alone and together, both target kinds, both shapes.
CE_CASES = [
    ("plain", Z2, Y2, {}),
    ("sum", Z2, Y2, {"reduction": "sum"}),
    ("none", Z2, Y2, {"reduction": "none"}),
    ("weight", Z2, Y2, {"weight": W}),
    ("ignore", Z2, Y2, {"ignore_index": 1}),
    ("smoothing", Z2, Y2, {"label_smoothing": 0.1}),
    ("weight ignore smoothing", Z2, Y2, {"weight": W, "ignore_index": 3, "label_smoothing": 0.2}),
    ("weight ignore smoothing none", Z2, Y2, {"weight": W, "ignore_index": 3, "label_smoothing": 0.2,
                                              "reduction": "none"}),
    ("ignore -100 as torch", Z2, np.array([0, -100, 1, 1, -100, 3]), {"ignore_index": -100}),
    ("4-D", Z4, Y4, {}),
    ("4-D weight smoothing none", Z4, Y4, {"weight": W, "label_smoothing": 0.3, "reduction": "none"}),
    ("4-D ignore sum", Z4, Y4, {"ignore_index": 2, "reduction": "sum"}),
    ("probabilities", Z2, P2, {}),
    ("probabilities weight smoothing", Z2, P2, {"weight": W, "label_smoothing": 0.15}),
    ("probabilities 4-D none", Z4, P4, {"reduction": "none"}),
    ("probabilities 4-D weight sum", Z4, P4, {"weight": W, "reduction": "sum"}),
]


def torch_kwargs(torch, options):
    kw = dict(options)
    if "weight" in kw:
        kw["weight"] = torch.tensor(kw["weight"])
    return kw


def seed_for(out: np.ndarray) -> np.ndarray:
    return np.linspace(0.5, 1.5, out.size).reshape(out.shape)


@pytest.mark.parametrize("name, z, y, options", CE_CASES, ids=[c[0] for c in CE_CASES])
def test_cross_entropy_matches_pytorch(name, z, y, options):
    torch = torch_or_skip()
    for reference in (False, True):  # the fast twin serves the plain case, the reference every case
        logits = Tensor(z.copy())
        with fast.reference_only() if reference else np.errstate():
            loss = cross_entropy(logits, y, **options)
        g = seed_for(loss.data)
        loss.backward(g)
        tz = torch.tensor(z, requires_grad=True)
        theirs = torch.nn.functional.cross_entropy(tz, torch.tensor(y), **torch_kwargs(torch, options))
        theirs.backward(torch.tensor(g))
        np.testing.assert_allclose(loss.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(logits.grad, tz.grad.numpy(), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("name, z, y, options", CE_CASES, ids=[c[0] for c in CE_CASES])
def test_cross_entropy_matches_central_differences_and_forward_mode(name, z, y, options):
    logits = Tensor(z.copy())
    loss = cross_entropy(logits, y, **options)
    g = seed_for(loss.data)
    loss.backward(g)
    numeric = numeric_grad(lambda a: float((cross_entropy(Tensor(a), y, **options).data * g).sum()), z.copy())
    np.testing.assert_allclose(logits.grad, numeric, rtol=1e-6, atol=1e-8)
    # forward mode: <jvp(t), g> = <t, vjp(g)> for a random tangent t
    t = np.random.default_rng(1).normal(size=z.shape)
    x = Tensor(z.copy())
    tangent = jvp(cross_entropy(x, y, **options), {x: t})
    assert float((np.asarray(tangent) * g).sum()) == pytest.approx(float((t * logits.grad).sum()), rel=1e-10)


def test_label_smoothing_one_is_the_uniform_target_and_ignored_rows_get_no_gradient():
    z = Tensor(Z2.copy())
    cross_entropy(z, Y2, ignore_index=1, reduction="sum").backward()
    assert not z.grad[Y2 == 1].any() and z.grad[Y2 != 1].any()
    uniform = cross_entropy(Tensor(Z2), Y2, label_smoothing=1.0).item()
    assert uniform == pytest.approx(cross_entropy(Tensor(Z2), np.full((6, 4), 0.25)).item(), rel=1e-13)


def test_nll_of_log_softmax_is_cross_entropy_and_matches_pytorch():
    torch = torch_or_skip()
    for options in ({}, {"weight": W}, {"ignore_index": 2, "reduction": "sum"}, {"reduction": "none"},
                    {"weight": W, "ignore_index": 0}):
        x = Tensor(Z2.copy())
        loss = nll_loss(x.log_softmax(axis=1), Y2, **options)
        g = seed_for(loss.data)
        loss.backward(g)
        tz = torch.tensor(Z2, requires_grad=True)
        theirs = torch.nn.functional.nll_loss(torch.log_softmax(tz, 1), torch.tensor(Y2),
                                              **torch_kwargs(torch, options))
        theirs.backward(torch.tensor(g))
        np.testing.assert_allclose(loss.data, theirs.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(x.grad, tz.grad.numpy(), rtol=1e-11, atol=1e-14)
        same = cross_entropy(Tensor(Z2), Y2, **options).data
        np.testing.assert_allclose(nll_loss(Tensor(Z2).log_softmax(axis=1), Y2, **options).data, same, rtol=1e-13)


KL_TARGETS = {False: P2 * (RNG.random(P2.shape) > 0.2), True: np.log(P2)}  # the first has exact zeros


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_pytorch_and_central_differences(reduction, log_target):
    target = KL_TARGETS[log_target]
    x0 = np.log(RNG.dirichlet(np.ones(4), size=6))
    x = Tensor(x0.copy())
    loss = kl_div(x, target, reduction=reduction, log_target=log_target)
    g = seed_for(loss.data)
    loss.backward(g)
    numeric = numeric_grad(lambda a: float((kl_div(Tensor(a), target, reduction=reduction,
                                                   log_target=log_target).data * g).sum()), x0.copy())
    np.testing.assert_allclose(x.grad, numeric, rtol=1e-6, atol=1e-8)
    torch = torch_or_skip()
    tx = torch.tensor(x0, requires_grad=True)
    theirs = torch.nn.functional.kl_div(tx, torch.tensor(target), reduction=reduction, log_target=log_target)
    theirs.backward(torch.tensor(g))
    np.testing.assert_allclose(loss.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_kl_div_differentiates_a_target_that_needs_a_gradient():
    torch = torch_or_skip()
    x0, t0 = np.log(P2[::-1].copy()), P2.copy()
    for log_target, t_in in ((False, t0), (True, np.log(t0))):
        x, t = Tensor(x0.copy()), Tensor(t_in.copy())
        kl_div(x, t, reduction="sum", log_target=log_target).backward()
        tx, tt = torch.tensor(x0, requires_grad=True), torch.tensor(t_in, requires_grad=True)
        torch.nn.functional.kl_div(tx, tt, reduction="sum", log_target=log_target).backward()
        np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)


REGRESSION = [
    ("mse", lambda p, t, r: mse(p, t, reduction=r), lambda F, p, t, r: F.mse_loss(p, t, reduction=r)),
    ("mae", lambda p, t, r: mae(p, t, reduction=r), lambda F, p, t, r: F.l1_loss(p, t, reduction=r)),
    ("bce", lambda p, t, r: binary_cross_entropy_with_logits(p, t, reduction=r),
     lambda F, p, t, r: F.binary_cross_entropy_with_logits(p, t, reduction=r)),
    ("smooth_l1", lambda p, t, r: smooth_l1(p, t, reduction=r), lambda F, p, t, r: F.smooth_l1_loss(p, t, reduction=r)),
    ("smooth_l1 beta 0.3", lambda p, t, r: smooth_l1(p, t, 0.3, reduction=r),
     lambda F, p, t, r: F.smooth_l1_loss(p, t, reduction=r, beta=0.3)),
    ("smooth_l1 beta 0", lambda p, t, r: smooth_l1(p, t, 0.0, reduction=r),
     lambda F, p, t, r: F.smooth_l1_loss(p, t, reduction=r, beta=0.0)),
    ("huber", lambda p, t, r: huber(p, t, reduction=r), lambda F, p, t, r: F.huber_loss(p, t, reduction=r)),
    ("huber delta 2.5", lambda p, t, r: huber(p, t, 2.5, reduction=r),
     lambda F, p, t, r: F.huber_loss(p, t, reduction=r, delta=2.5)),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, ours, theirs", REGRESSION, ids=[c[0] for c in REGRESSION])
def test_regression_losses_match_pytorch_and_central_differences(name, ours, theirs, reduction):
    rng = np.random.default_rng(sum(map(ord, name)))
    p0 = rng.uniform(-4, 4, size=(5, 3))
    t0 = rng.uniform(0, 1, size=(5, 3)) if name == "bce" else rng.uniform(-4, 4, size=(5, 3))
    p0 = np.where(np.abs(np.abs(p0 - t0) - 1.0) < 0.05, p0 + 0.2, p0)  # away from the kinks at |d| = 1
    p = Tensor(p0.copy())
    loss = ours(p, t0, reduction)
    g = seed_for(loss.data)
    loss.backward(g)
    numeric = numeric_grad(lambda a: float((ours(Tensor(a), t0, reduction).data * g).sum()), p0.copy())
    np.testing.assert_allclose(p.grad, numeric, rtol=1e-6, atol=1e-8)
    torch = torch_or_skip()
    tp = torch.tensor(p0, requires_grad=True)
    out = theirs(torch.nn.functional, tp, torch.tensor(t0), reduction)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(loss.data, out.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=1e-15)


# -- bad input: a clear error naming the loss and the value -------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda: cross_entropy(Tensor(Z2), [0, 1, 2, 4, 0, 0]), ShapeError,
     r"cross_entropy: label 4 is not a class index in \[0, 4\)"),
    (lambda: cross_entropy(Tensor(Z2), [0, 1, 2, -1, 0, 0], ignore_index=-100), ShapeError,
     r"label -1 is not a class index in \[0, 4\) .* \(nor the ignore_index -100\)"),
    (lambda: cross_entropy(Tensor(Z2), Y2, weight=[1.0, 2.0]), ShapeError,
     r"cross_entropy: weight of shape \(2,\) does not fit 4 classes"),
    (lambda: cross_entropy(Tensor(Z2), Y2, weight=[1.0, -2.0, 1.0, 1.0]), LossError,
     r"cross_entropy: weight must hold finite numbers >= 0, got \[1.0, -2.0, 1.0, 1.0\]"),
    (lambda: cross_entropy(Tensor(Z2), np.full(6, 7), ignore_index=7), LossError,
     r"cross_entropy: the mean over the targets is 0/0: every target is ignore_index=7 \(PyTorch returns nan\)"),
    (lambda: nll_loss(Tensor(Z2), np.full(6, 7), ignore_index=7), LossError, r"nll_loss: .* 0/0"),
    (lambda: cross_entropy(Tensor(Z2), Y2, weight=[0.0, 0.0, 0.0, 1.0], ignore_index=3), LossError,
     r"the weights of the targets' classes sum to 0"),
    (lambda: cross_entropy(Tensor(Z2), P2 * 2), LossError,
     r"cross_entropy: probability targets must sum to 1 over the classes \(axis 1\); one sums to 2.0"),
    (lambda: cross_entropy(Tensor(Z2), P2 - 0.5), LossError, r"finite and >= 0, got -0\.\d+"),
    (lambda: cross_entropy(Tensor(Z2), P2, ignore_index=0), LossError, r"ignore_index=0 applies to class-index"),
    (lambda: cross_entropy(Tensor(Z2), Y2, label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
    (lambda: cross_entropy(Tensor(Z4), Y2), ShapeError,
     r"labels of shape \(6,\) do not fit logits of shape \(3, 4, 2, 3\) \(needs \(3, 2, 3\)\)"),
    (lambda: cross_entropy(Tensor(Z2), Y2, reduction="avg"), ValueError,
     r"cross_entropy: reduction must be one of 'mean', 'sum', 'none', got 'avg'"),
    (lambda: kl_div(Tensor(Z2), P2, reduction="batch"), ValueError, r"kl_div: reduction must be one of .*batchmean"),
    (lambda: kl_div(Tensor(Z2), P2 - 0.5), LossError, r"kl_div: target probabilities must be >= 0, got -0\.\d+"),
    (lambda: smooth_l1(Tensor(Z2), Z2, beta=-1.0), ValueError, r"smooth_l1: beta must be >= 0, got -1.0"),
    (lambda: mse(Tensor(Z2), Z2, reduction="batchmean"), ValueError, r"mse: reduction must be one of"),
])
def test_bad_input_is_a_clear_error_naming_the_loss_and_value(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_all_targets_ignored_with_sum_or_none_is_zero_like_pytorch():
    z = Tensor(Z2.copy())
    loss = cross_entropy(z, np.full(6, 7), ignore_index=7, reduction="sum")
    loss.backward()
    assert loss.item() == 0.0 and not z.grad.any()
    assert not cross_entropy(Tensor(Z2), np.full(6, 7), ignore_index=7, reduction="none").data.any()


def test_options_keep_float32():
    z = Tensor(Z4.astype(np.float32))
    loss = cross_entropy(z, Y4, weight=W, label_smoothing=0.1, reduction="none")
    loss.backward(np.ones(loss.data.shape, np.float32))
    assert loss.dtype == np.float32 and z.grad.dtype == np.float32
    assert cross_entropy(Tensor(Z2.astype(np.float32)), P2.astype(np.float32)).dtype == np.float32
