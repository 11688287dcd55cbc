"""Learning-rate schedules (seed 004's decay methods and numbers) and Keras-style early stopping (seed 001)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microgradx import optim
from microgradx.schedules import (
    EarlyStopping,
    ExponentialDecay,
    InverseTimeDecay,
    ManualSchedule,
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
