"""Parameter groups, ``maximize``, AdaGrad's ``lr_decay`` and schedules driving each group's rate, checked
against torch.optim (float64 trajectories, when PyTorch is installed); group bookkeeping, saving and errors."""

from __future__ import annotations

import numpy as np
import pytest

from microgradx import DomainError, nn, optim, schedules
from microgradx.train import fit


class P:
    """The optimizer protocol, nothing more: an array ``data`` and its ``grad``."""

    def __init__(self, data, label=None) -> None:
        self.data, self.grad, self.label = np.array(data, dtype=np.float64), None, label


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch (the `test` extra) is the oracle of these checks")


@pytest.fixture(autouse=True)
def torch_float64():
    """PyTorch keeps some optimizer state (NAdam's mu product) in its default dtype: make it float64."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


# A smooth non-quadratic problem with two "layers" (weight, bias): grad f = A w + cos(w) - b, and c - 1 + sin(c)
A = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]])
B = np.array([1.0, -2.0, 0.5])
START = (np.array([1.0, -1.0, 2.0]), np.array([0.3, -0.7]))


def gradients(w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return A @ w + np.cos(w) - B, c - 1.0 + np.sin(c)


def ours_trajectory(make, steps: int, schedule=None) -> list[np.ndarray]:
    w, c = P(START[0].copy(), "weight"), P(START[1].copy(), "bias")
    opt = make(w, c)
    sched = schedule(opt) if schedule else None
    out = []
    for _ in range(steps):
        w.grad, c.grad = gradients(w.data, c.data)
        opt.step()
        if sched is not None:
            sched.step()
        out.append(np.concatenate([w.data, c.data]))
    return out


def torch_trajectory(torch, make, steps: int, schedule=None) -> list[np.ndarray]:
    w = torch.tensor(START[0].copy(), requires_grad=True)
    c = torch.tensor(START[1].copy(), requires_grad=True)
    opt = make(torch.optim, w, c)
    sched = schedule(torch.optim.lr_scheduler, opt) if schedule else None
    out = []
    for _ in range(steps):
        gw, gc = gradients(w.detach().numpy(), c.detach().numpy())
        w.grad, c.grad = torch.tensor(gw), torch.tensor(gc)
        opt.step()
        if sched is not None:
            sched.step()
        out.append(np.concatenate([w.detach().numpy(), c.detach().numpy()]))
    return out


def assert_same(ours, theirs, tol=1e-10):
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=tol, atol=tol)


# (ours, torch's name, shared keyword arguments, the second group's overrides)
GROUP_CASES = [
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01), dict(lr=0.2, weight_decay=0.0, momentum=0.5)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.01, nesterov=False)),
    # NOTE: PyTorch starts every group's accumulator at the constructor's initial_accumulator_value (a group's own
    # is ignored there; here it is used), so the comparison sets it for all
    (optim.AdaGrad, "Adagrad", dict(lr=0.3, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.5),
     dict(lr=0.1, lr_decay=0.0)),
    (optim.AdaDelta, "Adadelta", dict(lr=1.0, rho=0.9), dict(rho=0.5, weight_decay=0.1)),
    (optim.RMSprop, "RMSprop", dict(lr=0.01, momentum=0.5), dict(centered=True, alpha=0.9)),
    (optim.Adam, "Adam", dict(lr=0.05, weight_decay=0.01), dict(lr=0.1, weight_decay=0.0, amsgrad=True)),
    (optim.AdamW, "AdamW", dict(lr=0.05, weight_decay=0.1), dict(weight_decay=0.0, betas=(0.8, 0.99))),
    (optim.AdaMax, "Adamax", dict(lr=0.05), dict(lr=0.02, eps=1e-6)),
    (optim.NAdam, "NAdam", dict(lr=0.05), dict(momentum_decay=0.01, lr=0.02)),
    (optim.RAdam, "RAdam", dict(lr=0.05), dict(lr=0.2, betas=(0.5, 0.9))),
]


@pytest.mark.parametrize("cls, torch_name, shared, second", GROUP_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(GROUP_CASES)])
def test_parameter_groups_follow_torch_optim(cls, torch_name, shared, second):
    torch = torch_or_skip()
    ours = ours_trajectory(lambda w, c: cls([{"params": [w]}, {"params": [c], **second}], **shared), 120)
    theirs = torch_trajectory(torch, lambda o, w, c: getattr(o, torch_name)([{"params": [w]},
                                                                             {"params": [c], **second}], **shared),
                              120)
    assert_same(ours, theirs)
    # and the groups really differ: one group with the shared settings takes another path
    assert np.abs(np.array(ours_trajectory(lambda w, c: cls([w, c], **shared), 120)) - np.array(ours)).max() > 1e-6


MAXIMIZE = [(optim.SGD, "SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
            (optim.AdaGrad, "Adagrad", dict(lr=0.1, weight_decay=0.1)),
            (optim.AdaDelta, "Adadelta", dict(lr=1.0, weight_decay=0.1)),
            (optim.RMSprop, "RMSprop", dict(lr=0.01, weight_decay=0.1)),
            (optim.Adam, "Adam", dict(lr=0.02, weight_decay=0.1)),
            (optim.AdamW, "AdamW", dict(lr=0.02, weight_decay=0.1)),
            (optim.AdaMax, "Adamax", dict(lr=0.02, weight_decay=0.1)),
            (optim.NAdam, "NAdam", dict(lr=0.02, weight_decay=0.1)),
            (optim.RAdam, "RAdam", dict(lr=0.02, weight_decay=0.1))]


@pytest.mark.parametrize("cls, torch_name, kwargs", MAXIMIZE, ids=[c[1] for c in MAXIMIZE])
def test_maximize_follows_torch_optim_on_every_optimizer(cls, torch_name, kwargs):
    torch = torch_or_skip()
    ours = ours_trajectory(lambda w, c: cls([w, c], maximize=True, **kwargs), 60)
    theirs = torch_trajectory(torch, lambda o, w, c: getattr(o, torch_name)([w, c], maximize=True, **kwargs), 60)
    assert_same(ours, theirs)


def test_maximize_ascends_a_concave_function_without_pytorch():
    w = P([0.0])
    opt = optim.Adam([w], lr=0.1, maximize=True)
    for _ in range(300):  # f(w) = -(w - 2)^2, maximum at w = 2
        w.grad = -2 * (w.data - 2.0)
        opt.step()
    assert abs(w.data[0] - 2.0) < 1e-3


def test_adagrad_lr_decay_is_lr_over_one_plus_t_minus_one_decay():
    w = P([1.0])
    opt = optim.AdaGrad([w], lr=0.5, lr_decay=0.25, eps=0.0)
    expected, G = 1.0, 0.0
    for t in range(1, 6):
        w.grad = np.array([2.0 * t])
        G += (2.0 * t) ** 2
        expected -= 0.5 / (1 + (t - 1) * 0.25) * 2.0 * t / np.sqrt(G)
        opt.step()
        assert w.data[0] == pytest.approx(expected, rel=1e-14)


# (ours: optimizer -> schedule, torch: (lr_scheduler module, optimizer) -> scheduler)
SCHEDULES = [
    ("StepDecay", lambda o: schedules.StepDecay(o, factor=0.5, every=7),
     lambda S, o: S.StepLR(o, step_size=7, gamma=0.5)),
    ("ExponentialDecay", lambda o: schedules.ExponentialDecay(o, k=0.05),
     lambda S, o: S.ExponentialLR(o, gamma=float(np.exp(-0.05)))),
    ("MultiStepLR", lambda o: schedules.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3),
     lambda S, o: S.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3)),
    ("LinearLR", lambda o: schedules.LinearLR(o, start_factor=0.2, total_iters=10),
     lambda S, o: S.LinearLR(o, start_factor=0.2, total_iters=10)),
    ("LambdaLR", lambda o: schedules.LambdaLR(o, lr_lambda=lambda t: 1 / (1 + t)),
     lambda S, o: S.LambdaLR(o, lr_lambda=lambda t: 1 / (1 + t))),
    ("CosineAnnealingLR", lambda o: schedules.CosineAnnealingLR(o, T_max=25, eta_min=0.001),
     lambda S, o: S.CosineAnnealingLR(o, T_max=25, eta_min=0.001)),
]


@pytest.mark.parametrize("name, ours, theirs", SCHEDULES, ids=[c[0] for c in SCHEDULES])
def test_schedules_scale_each_groups_rate_like_torch(name, ours, theirs):
    torch = torch_or_skip()
    make = lambda w, c: optim.SGD([{"params": [w], "lr": 0.05}, {"params": [c], "lr": 0.2}], lr=0.1, momentum=0.9)
    make_t = lambda o, w, c: o.SGD([{"params": [w], "lr": 0.05}, {"params": [c], "lr": 0.2}], lr=0.1, momentum=0.9)
    assert_same(ours_trajectory(make, 50, ours), torch_trajectory(torch, make_t, 50, theirs))


def test_schedule_sets_each_groups_rate_from_its_own_start():
    w, c = P([1.0]), P([1.0])
    opt = optim.SGD([{"params": [w], "lr": 0.1}, {"params": [c], "lr": 0.4}], lr=1.0)
    s = schedules.StepDecay(opt, factor=0.5, every=2)
    rates = []
    for _ in range(5):
        rates.append([g["lr"] for g in opt.param_groups])
        s.step()
    assert rates == [[0.1, 0.4], [0.1, 0.4], [0.05, 0.2], [0.05, 0.2], [0.025, 0.1]]
    assert opt.lr == 0.025  # opt.lr reads the first group
    with pytest.raises(ValueError, match="2 parameter groups, each starting from its own rate; leave lr0 out"):
        schedules.StepDecay(opt, lr0=0.3)


def test_reduce_on_plateau_reduces_every_group_like_torch():
    torch = torch_or_skip()
    w, c = P([1.0]), P([1.0])
    opt = optim.SGD([{"params": [w], "lr": 0.1}, {"params": [c], "lr": 1e-3}], lr=1.0)
    ours = schedules.ReduceLROnPlateau(opt, factor=0.5, patience=2, min_lr=[0.0, 4e-4])
    tw, tc = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([{"params": [tw], "lr": 0.1}, {"params": [tc], "lr": 1e-3}], lr=1.0)
    # PyTorch reduces after patience + 1 bad epochs, the Keras rule used here after patience
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, factor=0.5, patience=1, min_lr=[0.0, 4e-4])
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]:
        ours.step(loss)
        theirs.step(loss)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in topt.param_groups], rel=1e-15)
    assert opt.param_groups[1]["lr"] == 4e-4 and opt.param_groups[0]["lr"] < 0.1 / 4


def test_state_dict_keeps_the_groups_and_continues_the_same_trajectory():
    def make(w, c):
        return optim.Adam([{"params": [w], "lr": 0.05}, {"params": [c], "weight_decay": 0.1, "amsgrad": True}],
                          lr=0.01)

    full = ours_trajectory(make, 20)
    w, c = P(START[0].copy()), P(START[1].copy())
    opt = make(w, c)
    for _ in range(10):
        w.grad, c.grad = gradients(w.data, c.data)
        opt.step()
    saved = opt.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1]]
    assert saved["param_groups"][1]["amsgrad"] is True and saved["param_groups"][0]["lr"] == 0.05
    w2, c2 = P(w.data.copy()), P(c.data.copy())
    other = optim.Adam([{"params": [w2]}, {"params": [c2]}], lr=0.5)
    other.load_state_dict(saved)
    assert other.param_groups[1]["amsgrad"] is True and other.param_groups[0]["lr"] == 0.05
    for k in range(10, 20):
        w2.grad, c2.grad = gradients(w2.data, c2.data)
        other.step()
        np.testing.assert_array_equal(np.concatenate([w2.data, c2.data]), full[k])
    with pytest.raises(ValueError, match=r"parameter groups hold \[1, 1\] parameters, this optimizer's hold \[2\]"):
        optim.Adam([P(START[0]), P(START[1])], lr=0.1).load_state_dict(saved)


def test_a_non_finite_gradient_in_a_group_is_refused_naming_the_parameter_and_changes_nothing():
    w, c = P([1.0, 2.0], "w"), P([3.0], "c")
    opt = optim.SGD([{"params": [w], "lr": 0.1}, {"params": [c], "lr": 0.2, "momentum": 0.9}], lr=0.1)
    w.grad, c.grad = np.array([1.0, 1.0]), np.array([np.inf])
    with pytest.raises(DomainError, match=r"SGD.step: the gradient of parameter 1 \('c'\) is not finite \(inf"):
        opt.step()
    assert c.data.tolist() == [3.0] and opt.state[1] == {}
    assert opt.lr == 0.1 and opt.momentum == 0.0  # the settings outside a step are the defaults again


@pytest.mark.parametrize("groups, error, match", [
    ([{"params": [P([1.0])], "betas": (0.9, 0.99)}], ValueError,
     r"SGD: parameter group 0 sets \['betas'\], which is not among SGD's per-group settings"),
    ([{"params": [P([1.0])]}, {"params": [P([1.0])], "momentum": 1.5}], ValueError,
     r"SGD: parameter group 1: momentum must be in \[0, 1\), got 1.5"),
    ([{"params": [P([1.0])], "lr": -0.1}], ValueError, r"SGD: parameter group 0: lr must be >= 0"),
    ([{"params": []}], ValueError, r"SGD: parameter group 0 has no parameters"),
    ([{"params": [SHARED := P([1.0], "w")]}, {"params": [SHARED]}], ValueError,
     r"SGD: parameter 1 \('w'\) appears twice in the parameter list \(in two groups\)"),
    ([{"lr": 0.1}], TypeError, r"SGD: parameter group 0 must be a dict with 'params'"),
])
def test_bad_groups_are_named(groups, error, match):
    with pytest.raises(error, match=match):
        optim.SGD(groups, lr=0.1)


def test_fit_trains_with_groups_a_rate_per_layer_and_no_decay_on_biases():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = (X @ np.array([1.0, -2.0, 0.5]) > 0).astype(np.int64)
    net = nn.Sequential(nn.Linear(3, 8, rng=1), nn.Tanh(), nn.Linear(8, 2, rng=2))
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    opt = optim.SGD([{"params": weights, "weight_decay": 1e-3}, {"params": biases, "lr": 0.05}], lr=0.3)
    before = [p.data.copy() for p in net.parameters()]
    h = fit(net, "cross_entropy", opt, (X, y), epochs=15, batch_size=16, seed=0,
            schedule=schedules.StepDecay(opt, factor=0.5, every=5))
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert h.lr == [0.3] * 5 + [0.15] * 5 + [0.075] * 5  # the first group's rate, epoch by epoch
    assert opt.param_groups[1]["lr"] == 0.05 * 0.125
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, net.parameters(), strict=True))


def test_an_optimizer_subclass_keeps_its_settings_as_attributes_or_is_told_so():
    class Sign(optim.Optimizer):
        """signSGD: theta <- theta - lr sign(g); its own setting is read per group like the built-in ones."""

        def __init__(self, params, lr=0.1, scale=1.0):
            super().__init__(params, lr)
            self.scale = scale

        def _update(self, g, theta, state):
            return -self.lr * self.scale * np.sign(g)

    a, b = P([1.0]), P([1.0])
    opt = Sign([{"params": [a]}, {"params": [b], "scale": 3.0}], lr=0.5)
    a.grad, b.grad = np.array([2.0]), np.array([-0.1])
    opt.step()
    assert (a.data[0], b.data[0]) == (0.5, 2.5)

    class Forgetful(optim.Optimizer):
        def __init__(self, params, lr=0.1, scale=1.0):
            super().__init__(params, lr)
            self.s = scale

        def _update(self, g, theta, state):
            return -self.lr * self.s * g

    with pytest.raises(TypeError, match=r"Forgetful: the constructor arguments \['scale'\] are not kept as attributes"):
        Forgetful([P([1.0])])
