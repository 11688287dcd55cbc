"""The CNN and LSTM demos in fast mode: they must actually learn (thresholds stated per test, far above chance and
below what the fast runs reach), and what they report must agree with their own written tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

DEMOS = Path(__file__).resolve().parent.parent / "demos"


def run_fast(name: str, monkeypatch, tmp_path: Path) -> tuple[dict, Path]:
    monkeypatch.syspath_prepend(str(DEMOS))
    spec = importlib.util.spec_from_file_location(f"layer_demo_{name}", DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    out = tmp_path / name
    return module.main(["--fast", "--out", str(out)]), out


def test_cnn_demo_learns_the_digits_in_fast_mode(monkeypatch, tmp_path):
    r, out = run_fast("cnn_digits", monkeypatch, tmp_path)
    # Fast mode: 2 epochs on 600 of the 1346 training images. Chance is 0.10; the run reaches about 0.9.
    assert r["test_accuracy"] >= 0.80
    assert r["final_loss"] < 0.75 * r["first_loss"]  # the run: about 0.5
    assert (r["n_train"], r["n_test"]) == (600, 451)  # a stratified 25% of the 1797 digits is held out
    # 2 convs (1*16*9 + 16 and 16*32*9 + 32), 2 batch norms (2*16 + 2*32) and the linear layer (512*10 + 10).
    assert r["parameters"] == (16 * 9 + 16) + (16 * 32 * 9 + 32) + 2 * 16 + 2 * 32 + (512 * 10 + 10)
    last = (out / "curve.txt").read_text().strip().splitlines()[-1].split()
    assert float(last[3]) == pytest.approx(r["test_accuracy"], abs=1e-5)
    assert (out / "curve.png").exists()


def test_cnn_demo_shift_moves_images_by_at_most_one_pixel(monkeypatch):
    monkeypatch.syspath_prepend(str(DEMOS))
    spec = importlib.util.spec_from_file_location("layer_demo_shift", DEMOS / "cnn_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X = np.arange(1.0, 1 + 3 * 16).reshape(3, 1, 4, 4)
    moved = module.shift(X, np.random.default_rng(0), p=1.0)
    for a, b in zip(X[:, 0], moved[:, 0]):
        # Some shift (dy, dx) in {-1, 0, 1}^2 explains the result: the overlap equals, the rest is zero.
        fits = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                expected = np.zeros_like(a)
                src = a[max(dy, 0):4 + min(dy, 0), max(dx, 0):4 + min(dx, 0)]
                expected[max(-dy, 0):4 + min(-dy, 0), max(-dx, 0):4 + min(-dx, 0)] = src
                fits.append(np.array_equal(expected, b))
        assert any(fits)
    assert np.array_equal(module.shift(X, np.random.default_rng(0), p=0.0), X)


def test_lstm_demo_learns_the_adding_problem_in_fast_mode(monkeypatch, tmp_path):
    r, out = run_fast("lstm_sequence", monkeypatch, tmp_path)
    # Fast mode: T = 10, 2000 training sequences, 8 epochs. Always predicting 1 gives MSE 1/6; the run reaches
    # about 0.003 and about 0.6 of the test sequences within 0.04.
    assert r["test_mse"] < 0.03
    assert r["test_accuracy"] > 0.3
    assert r["length"] == 10
    last = (out / "curve.txt").read_text().strip().splitlines()[-1].split()
    assert float(last[2]) == pytest.approx(r["test_mse"], abs=1e-5)


def test_adding_problem_data_follow_their_definition(monkeypatch):
    monkeypatch.syspath_prepend(str(DEMOS))
    spec = importlib.util.spec_from_file_location("layer_demo_adding", DEMOS / "lstm_sequence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X, y = module.make_adding(200, 12, seed=5)
    assert X.shape == (200, 12, 2) and y.shape == (200, 1)
    marks = X[:, :, 1]
    assert (marks.sum(axis=1) == 2).all()
    assert (marks[:, :6].sum(axis=1) == 1).all() and (marks[:, 6:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (X[:, :, 0] * marks).sum(axis=1), rtol=1e-6)
