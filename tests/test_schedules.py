"""Learning-rate schedules (seed 004's decay methods and numbers) and Keras-style early stopping (seed 001)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microgradx import optim
from microgradx.schedules import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    EarlyStopping,
    ExponentialDecay,
    InverseTimeDecay,
    LambdaLR,
    LinearLR,
    ManualSchedule,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    StepDecay,
)


class P:
    def __init__(self, data) -> None:
        self.data = np.array(data, dtype=np.float64)
        self.grad = None


# -- seed 004's worked numbers ----------------------------------------------------------------------------------

def test_seed004_exponential_decay():
    s = ExponentialDecay(lr0=0.1, k=0.01)
    assert s.lr_at(10) == pytest.approx(0.1 * math.exp(-0.01 * 10), abs=1e-15)
    assert round(s.lr_at(10), 4) == 0.0905  # the slide: "approx 0.09"
    assert [s.lr_at(t) for t in range(4)] == pytest.approx([0.1 * math.exp(-0.01 * t) for t in range(4)], abs=1e-15)


def test_seed004_inverse_decay():
    s = InverseTimeDecay(lr0=0.1, k=0.01)
    assert s.lr_at(10) == pytest.approx(0.1 / 1.1, abs=1e-15)
    assert round(s.lr_at(10), 4) == 0.0909  # the slide: "approx 0.091"


def test_seed004_step_decay_halves_every_5_epochs():
    s = StepDecay(lr0=0.1, factor=0.5, every=5)
    assert [s.lr_at(t) for t in range(11)] == [0.1] * 5 + [0.05] * 5 + [0.025]


def test_seed004_plateau_reduces_by_10_after_3_epochs_without_decrease():
    s = ReduceLROnPlateau(lr0=0.1, factor=0.1, patience=3)
    lrs = [s.step(v) for v in [2.0, 1.5, 1.6, 1.55, 1.5]]
    # 1.6, 1.55, 1.5 do not decrease below the best 1.5: the third of them reduces the rate
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01], abs=1e-15)


# -- driving an optimizer -----------------------------------------------------------------------------------

def test_schedule_sets_the_optimizer_lr_each_epoch():
    opt = optim.SGD([P([1.0])], lr=0.2)
    s = ExponentialDecay(opt, k=0.5)
    seen = [opt.lr]
    for _ in range(3):
        s.step()
        seen.append(opt.lr)
    assert seen == pytest.approx([0.2 * math.exp(-0.5 * t) for t in range(4)], abs=1e-15)
    assert s.epoch == 3 and s.lr == opt.lr


def test_manual_schedule_list_and_callable():
    opt = optim.SGD([P([1.0])], lr=0.5)
    s = ManualSchedule(opt, lrs=[0.3, 0.2, 0.1])
    assert opt.lr == 0.3  # epoch 0 uses the first entry at once
    assert [s.step() for _ in range(4)] == [0.2, 0.1, 0.1, 0.1]
    f = ManualSchedule(lrs=lambda t: 1.0 / (t + 1))
    assert [f.lr_at(t) for t in range(3)] == [1.0, 0.5, 1.0 / 3]
    with pytest.raises(ValueError, match=r"lrs\(0\)"):
        ManualSchedule(lrs=lambda t: -1.0)
    with pytest.raises(ValueError, match="empty"):
        ManualSchedule(lrs=[])


def test_plateau_drives_the_optimizer_with_cooldown_min_lr_and_max_mode():
    opt = optim.Adam([P([1.0])], lr=1.0)
    s = ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.3)
    # epoch 1 improves; 2 bad -> 0.5 and cooldown; 3 bad but not counted; 4 bad -> max(0.25, min_lr 0.3);
    # 5 not counted
    assert [s.step(v) for v in [1.0, 1.0, 1.0, 1.0, 1.0]] == [1.0, 0.5, 0.5, 0.3, 0.3]
    assert opt.lr == 0.3
    acc = ReduceLROnPlateau(lr0=1.0, mode="max", patience=2, min_delta=0.01)
    # 0.905 is not 0.01 better than 0.9, nor is 0.909: two bad epochs -> reduce
    assert [acc.step(v) for v in [0.9, 0.905, 0.909]] == pytest.approx([1.0, 1.0, 0.1])


def test_schedule_errors():
    with pytest.raises(ValueError, match="give an optimizer or lr0"):
        ExponentialDecay(k=0.1)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        StepDecay(lr0=0.1, every=0)
    with pytest.raises(ValueError, match="factor must be < 1"):
        ReduceLROnPlateau(lr0=0.1, factor=2.0)
    with pytest.raises(ValueError, match="needs the monitored metric"):
        ReduceLROnPlateau(lr0=0.1).step()
    with pytest.raises(ValueError, match="metric must be a finite number, got nan"):
        ReduceLROnPlateau(lr0=0.1).step(float("nan"))


# -- PyTorch's schedules: closed forms worked by hand, and PyTorch itself ---------------------------------------

def test_multistep_counts_passed_milestones_and_repeats():
    s = MultiStepLR(lr0=0.1, milestones=[5, 3, 5], gamma=0.5)  # 5 listed twice: halved twice there
    assert [s.lr_at(t) for t in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 2 + [0.0125] * 2, abs=1e-15)


def test_linear_warmup_reaches_lr0_and_stays():
    s = LinearLR(lr0=0.2, start_factor=0.5, end_factor=1.0, total_iters=4)
    assert [s.lr_at(t) for t in range(7)] == pytest.approx([0.1, 0.125, 0.15, 0.175, 0.2, 0.2, 0.2], abs=1e-15)


def test_lambda_multiplies_lr0():
    opt = optim.SGD([P([1.0])], lr=0.4)
    s = LambdaLR(opt, lr_lambda=lambda t: 1.0 / (t + 1))
    assert [opt.lr] + [s.step() for _ in range(3)] == pytest.approx([0.4, 0.2, 0.4 / 3, 0.1], abs=1e-15)
    assert opt.lr == pytest.approx(0.1, abs=1e-15)


def test_cosine_annealing_by_hand():
    s = CosineAnnealingLR(lr0=1.0, T_max=6, eta_min=0.1)
    # cos(pi/3) = 1/2, cos(pi/2) = 0, cos(pi) = -1, and past T_max the cosine climbs back
    expected = {0: 1.0, 2: 0.1 + 0.9 * 0.75, 3: 0.55, 6: 0.1, 9: 0.55, 12: 1.0}
    assert {t: s.lr_at(t) for t in expected} == pytest.approx(expected, abs=1e-15)


def test_warm_restarts_by_hand():
    s = CosineAnnealingWarmRestarts(lr0=1.0, T_0=3)
    assert [s.lr_at(t) for t in (0, 1, 3, 4, 6)] == pytest.approx([1.0, 0.75, 1.0, 0.75, 1.0], abs=1e-15)
    g = CosineAnnealingWarmRestarts(lr0=1.0, T_0=1, T_mult=2, eta_min=0.0)  # periods 1, 2, 4, 8: restarts 1, 3, 7
    assert [g.lr_at(t) for t in (1, 2, 3, 5, 7, 11)] == pytest.approx([1.0, 0.5, 1.0, 0.5, 1.0, 0.5], abs=1e-15)
    assert g.lr_at(2**40 - 1) == pytest.approx(1.0, abs=1e-15)  # a restart far away, found in ~40 steps


def test_one_cycle_by_hand():
    # initial 1/10, final 1/10/100; the warm-up ends at epoch 0.2 * 11 - 1 = 1.2
    cos = OneCycleLR(max_lr=1.0, total_steps=11, pct_start=0.2, div_factor=10, final_div_factor=100)
    assert cos.lr == pytest.approx(0.1, abs=1e-15)
    assert cos.lr_at(1) == pytest.approx(1 - 0.45 * (1 - math.sqrt(3) / 2), abs=1e-15)  # cos(5 pi / 6)
    assert cos.lr_at(10) == pytest.approx(0.001, abs=1e-15)
    lin = OneCycleLR(max_lr=1.0, total_steps=11, pct_start=0.2, div_factor=10, final_div_factor=100,
                     anneal_strategy="linear")
    assert lin.lr_at(5) == pytest.approx(1 + (0.001 - 1) * 3.8 / 8.8, abs=1e-15)
    three = OneCycleLR(max_lr=1.0, total_steps=20, pct_start=0.3, div_factor=10, three_phase=True)
    # up to epoch 5, back down to 0.1 at epoch 10, then down to 1e-5 at epoch 19
    assert [three.lr_at(t) for t in (5, 10, 19)] == pytest.approx([1.0, 0.1, 1e-5], abs=1e-15)
    assert cos.lr_at(11) == cos.lr_at(10)  # the step after the last epoch keeps the final rate
    with pytest.raises(ValueError, match="epoch 12 is past total_steps=11"):
        cos.lr_at(12)


def test_cyclic_by_hand():
    tri = CyclicLR(base_lr=0.1, max_lr=0.5, step_size_up=2, step_size_down=3)
    assert tri.lr == 0.1
    assert [tri.lr_at(t) for t in range(7)] == pytest.approx(
        [0.1, 0.3, 0.5, 0.5 - 0.4 / 3, 0.5 - 0.8 / 3, 0.1, 0.3], abs=1e-15)
    exp = CyclicLR(base_lr=0.1, max_lr=0.5, step_size_up=2, mode="exp_range", gamma=0.9)
    assert [exp.lr_at(t) for t in (1, 2, 6)] == pytest.approx([0.1 + 0.2 * 0.9, 0.1 + 0.4 * 0.81, 0.1 + 0.4 * 0.9**6],
                                                              abs=1e-15)
    own = CyclicLR(base_lr=0.0, max_lr=1.0, step_size_up=1, scale_fn=lambda c: 1 / c)
    assert [own.lr_at(t) for t in range(6)] == pytest.approx([0, 1, 0, 0.5, 0, 1 / 3], abs=1e-15)


def _torch_rates(make, lr0: float, n: int) -> list[float]:
    """The rates PyTorch's scheduler gives epochs 0 .. n-1, stepping it once per epoch."""
    torch = pytest.importorskip("torch", reason="PyTorch (the 'torch' extra) is the oracle for its schedulers")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    sched = make(torch.optim.lr_scheduler, opt)
    rates = []
    for epoch in range(n):
        rates.append(opt.param_groups[0]["lr"])
        if epoch < n - 1:
            opt.step()
            sched.step()
    return rates


def _our_rates(make, lr0: float, n: int) -> list[float]:
    opt = optim.SGD([P([1.0])], lr=lr0)
    s = make(opt)
    rates = [opt.lr]
    for _ in range(n - 1):
        s.step()
        rates.append(opt.lr)
    assert [s.lr_at(t) for t in range(n)] == rates
    return rates


TORCH_CASES = {
    "multistep": (lambda o: MultiStepLR(o, milestones=[4, 9, 9, 20], gamma=0.3),
                  lambda m, o: m.MultiStepLR(o, milestones=[4, 9, 9, 20], gamma=0.3)),
    "linear": (lambda o: LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=13),
               lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=13)),
    "lambda": (lambda o: LambdaLR(o, lr_lambda=lambda t: 0.95 ** t * (1 + t % 3)),
               lambda m, o: m.LambdaLR(o, lr_lambda=lambda t: 0.95 ** t * (1 + t % 3))),
    "cosine": (lambda o: CosineAnnealingLR(o, T_max=11, eta_min=0.01),
               lambda m, o: m.CosineAnnealingLR(o, T_max=11, eta_min=0.01)),
    "restarts": (lambda o: CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.002),
                 lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.002)),
    "restarts_mult1": (lambda o: CosineAnnealingWarmRestarts(o, T_0=7),
                       lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7)),
    "one_cycle": (lambda o: OneCycleLR(o, max_lr=0.8, total_steps=40),
                  lambda m, o: m.OneCycleLR(o, max_lr=0.8, total_steps=40, cycle_momentum=False)),
    "one_cycle_linear_3phase": (
        lambda o: OneCycleLR(o, max_lr=0.8, total_steps=40, pct_start=0.25, anneal_strategy="linear",
                             three_phase=True, div_factor=8, final_div_factor=50),
        lambda m, o: m.OneCycleLR(o, max_lr=0.8, total_steps=40, pct_start=0.25, anneal_strategy="linear",
                                  three_phase=True, div_factor=8, final_div_factor=50, cycle_momentum=False)),
    "cyclic": (lambda o: CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=3, step_size_down=5),
               lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=3, step_size_down=5,
                                       cycle_momentum=False)),
    "cyclic2": (lambda o: CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=4, mode="triangular2"),
                lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=4, mode="triangular2",
                                        cycle_momentum=False)),
    "cyclic_exp": (lambda o: CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=2, mode="exp_range", gamma=0.97),
                   lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=2, mode="exp_range",
                                           gamma=0.97, cycle_momentum=False)),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_schedules_match_pytorch(case):
    ours, theirs = TORCH_CASES[case]
    n = 40
    expected = _torch_rates(theirs, 0.5, n)
    assert _our_rates(ours, 0.5, n) == pytest.approx(expected, abs=1e-12, rel=0)


def test_fit_trains_each_epoch_with_the_cosine_rate():
    from microgradx.losses import cross_entropy
    from microgradx.train import fit, mlp

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    net = mlp([4, 3], rng=0)
    opt = optim.SGD(net.parameters(), lr=0.2)
    h = fit(net, cross_entropy, opt, (X, y), epochs=5, schedule=CosineAnnealingLR(opt, T_max=4))
    # cos(pi t / 4) for t = 0..4 is 1, sqrt(2)/2, 0, -sqrt(2)/2, -1
    r = math.sqrt(2) / 2
    assert h.lr == pytest.approx([0.2, 0.1 * (1 + r), 0.1, 0.1 * (1 - r), 0.0], abs=1e-15)


def test_plateau_eps_stops_tiny_reductions_as_pytorch():
    s = ReduceLROnPlateau(lr0=1e-7, factor=0.1, patience=1)
    # 1e-7 -> 1e-8 changes the rate by 9e-8 > eps; 1e-8 -> 1e-9 only by 9e-9 <= eps = 1e-8: skipped
    assert [s.step(1.0) for _ in range(4)] == pytest.approx([1e-7, 1e-8, 1e-8, 1e-8], abs=1e-22, rel=0)
    floor = ReduceLROnPlateau(lr0=1.0, factor=0.5, patience=1, min_lr=0.3, eps=0.1)
    # 1 -> 0.5 is a change of 0.5; 0.5 -> max(0.25, 0.3) = 0.3 of 0.2; then 0.3 -> 0.3 of 0: never below min_lr
    assert [floor.step(1.0) for _ in range(5)] == [1.0, 0.5, 0.3, 0.3, 0.3]
    keep_going = ReduceLROnPlateau(lr0=1e-7, factor=0.1, patience=1, eps=0.0)
    assert [keep_going.step(1.0) for _ in range(3)][-1] == pytest.approx(1e-9, abs=1e-22, rel=0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        ReduceLROnPlateau(lr0=0.1, eps=-1.0)


def test_plateau_matches_pytorch_with_eps_and_cooldown():
    torch = pytest.importorskip("torch", reason="PyTorch (the 'torch' extra) is the oracle for ReduceLROnPlateau")
    losses = [1.0, 0.9, 0.95, 0.9, 0.91, 0.8, 0.8, 0.85, 0.79, 0.9] + [0.9] * 30
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-5)
    # PyTorch reduces after patience + 1 bad epochs, this class (as Keras) after patience
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.2, patience=1, cooldown=1, threshold=0.02,
                                                        threshold_mode="abs", eps=1e-7)
    ours = ReduceLROnPlateau(lr0=1e-5, factor=0.2, patience=2, cooldown=1, min_delta=0.02, eps=1e-7)
    expected, got = [], []
    for loss in losses:
        opt.step()
        theirs.step(loss)
        expected.append(opt.param_groups[0]["lr"])
        got.append(ours.step(loss))
    assert got == pytest.approx(expected, abs=1e-12, rel=0)
    assert len(set(got)) > 2  # several reductions happened, and then eps stopped them


def test_new_schedule_errors():
    with pytest.raises(ValueError, match=r"MultiStepLR: milestones\[1\] must be an integer >= 1, got 2.5"):
        MultiStepLR(lr0=0.1, milestones=[1, 2.5])
    with pytest.raises(ValueError, match="milestones is empty"):
        MultiStepLR(lr0=0.1, milestones=[])
    with pytest.raises(ValueError, match="LinearLR: start_factor must be > 0"):
        LinearLR(lr0=0.1, start_factor=0.0)
    with pytest.raises(ValueError, match=r"start_factor must be in \(0, 1\]"):
        LinearLR(lr0=0.1, start_factor=1.5)
    with pytest.raises(TypeError, match="lr_lambda must be a function"):
        LambdaLR(lr0=0.1, lr_lambda=0.5)
    with pytest.raises(ValueError, match=r"lr_lambda\(0\) must be a finite number, got nan"):
        LambdaLR(lr0=0.1, lr_lambda=lambda t: float("nan"))
    with pytest.raises(ValueError, match="T_max must be an integer >= 1, got 0"):
        CosineAnnealingLR(lr0=0.1, T_max=0)
    with pytest.raises(ValueError, match="eta_min must be >= 0"):
        CosineAnnealingLR(lr0=0.1, T_max=3, eta_min=-0.1)
    with pytest.raises(ValueError, match="T_mult must be an integer >= 1, got 1.5"):
        CosineAnnealingWarmRestarts(lr0=0.1, T_0=2, T_mult=1.5)
    with pytest.raises(ValueError, match="anneal_strategy must be one of"):
        OneCycleLR(max_lr=0.1, total_steps=10, anneal_strategy="cosine")
    with pytest.raises(ValueError, match="pct_start must be in"):
        OneCycleLR(max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="leaves a phase with no epochs"):
        OneCycleLR(max_lr=0.1, total_steps=10, pct_start=0.1)
    with pytest.raises(ValueError, match="give an optimizer or lr0"):
        CosineAnnealingLR(T_max=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        CyclicLR(base_lr=0.1, max_lr=1.0, mode="triangle")
    with pytest.raises(ValueError, match="scale_mode must be"):
        CyclicLR(base_lr=0.1, max_lr=1.0, scale_fn=lambda c: 1.0, scale_mode="epoch")
    with pytest.raises(ValueError, match="scale_fn must be a finite number"):
        CyclicLR(base_lr=0.1, max_lr=1.0, scale_fn=lambda c: float("inf"))


# -- early stopping (seed 001) ------------------------------------------------------------------------------

def test_seed001_early_stopping_patience_3_min_delta_1e4():
    stop = EarlyStopping(monitor="loss", patience=3, min_delta=1e-4)
    # an epoch improves when loss < best - 1e-4; after 0.8 (epoch 1) nothing gets below 0.7999, so epochs 2, 3, 4
    # are three epochs without improvement and training stops after epoch 4
    decisions = [stop.update({"loss": x, "accuracy": 0.5}) for x in [0.9, 0.8, 0.79995, 0.79991, 0.8]]
    assert decisions == [False, False, False, False, True]
    assert stop.best == 0.8 and stop.best_epoch == 1 and stop.stopped_epoch == 4


def test_early_stopping_improvement_resets_the_wait():
    stop = EarlyStopping(patience=2, min_delta=0.0)
    assert [stop.update(x) for x in [5.0, 5.0, 4.0, 4.0, 4.0]] == [False, False, False, False, True]
    assert stop.best_epoch == 2 and stop.should_stop


def test_early_stopping_monitors_accuracy_upwards():
    stop = EarlyStopping(monitor="accuracy", patience=1, min_delta=0.001)
    assert stop.mode == "max"
    assert [stop.update({"accuracy": a}) for a in [0.5, 0.6, 0.6005]] == [False, False, True]


def test_early_stopping_baseline():
    # as Keras: improvements that stay above the baseline do not reset the wait, and a worse epoch then stops
    losses = [3.0, 2.0, 1.5, 1.6]
    with_baseline, without = EarlyStopping(patience=2, min_delta=0.0, baseline=1.0), EarlyStopping(patience=2)
    assert [with_baseline.update(x) for x in losses] == [False, False, False, True]
    assert [without.update(x) for x in losses] == [False, False, False, False]
    stop = EarlyStopping(patience=2, min_delta=0.0, baseline=1.0)
    assert [stop.update(x) for x in [3.0, 0.9, 1.0, 1.1]] == [False, False, False, True]


def test_early_stopping_restores_best_weights_in_place():
    p = P([1.0, 2.0])
    alias = p.data
    stop = EarlyStopping(patience=1, min_delta=0.0, restore_best_weights=True, params=[p])
    for loss, w in [(3.0, [1.0, 1.0]), (2.0, [2.0, 2.0]), (2.5, [3.0, 3.0])]:
        p.data[...] = w
        done = stop.update(loss)
    assert done
    np.testing.assert_array_equal(p.data, [2.0, 2.0])
    assert p.data is alias


def test_early_stopping_errors():
    with pytest.raises(ValueError, match="no 'val_loss'"):
        EarlyStopping(monitor="val_loss").update({"loss": 1.0})
    with pytest.raises(ValueError, match="needs the params"):
        EarlyStopping(restore_best_weights=True)
    with pytest.raises(ValueError, match="loss must be a finite number"):
        EarlyStopping().update(float("inf"))
    with pytest.raises(ValueError, match="mode must be"):
        EarlyStopping(mode="up")
