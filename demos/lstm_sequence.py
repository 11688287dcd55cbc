"""An LSTM learns the adding problem (Hochreiter & Schmidhuber 1997): read a sequence of (value, marker) pairs and
output the sum of the two marked values, which can be far apart, so the cell has to remember across time.

Run ``python demos/lstm_sequence.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
from _common import Run, pyplot, save_figure, start, table

from microgradx import Tensor, data, nn
from microgradx.losses import mse
from microgradx.optim import Adam
from microgradx.schedules import ExponentialDecay

NAME = "lstm_sequence"
TOLERANCE = 0.04  # a prediction counts as right when |prediction - target| < 0.04, the 1997 paper's criterion


def make_adding(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n sequences of shape (length, 2): channel 0 uniform in [0, 1]; channel 1 marks one step in the first half
    and one in the second half with 1. Target: the sum of the two marked values (float32, shape (n, 1)).

    Always predicting the mean 1 gives a mean squared error of 1/6 (the variance of a sum of two U[0, 1]).
    """
    rng = np.random.default_rng(seed)
    X = np.zeros((n, length, 2), np.float32)
    X[:, :, 0] = rng.random((n, length))
    half = length // 2
    first, second = rng.integers(0, half, n), rng.integers(half, length, n)
    rows = np.arange(n)
    X[rows, first, 1] = X[rows, second, 1] = 1.0
    y = X[rows, first, 0] + X[rows, second, 0]
    return X, y[:, None].astype(np.float32)


class Adder(nn.Module):
    """RNN(LSTMCell(2, hidden)) read to the end, then a linear read-out of the last hidden state."""

    def __init__(self, hidden: int, seed: int = 0) -> None:
        super().__init__()
        self.rnn = nn.RNN(nn.LSTMCell(2, hidden, rng=seed))
        self.head = nn.Linear(hidden, 1, init="xavier_uniform", rng=seed + 1)

    def forward(self, x: np.ndarray) -> Tensor:
        """(N, T, 2) -> (N, 1)."""
        return self.head(self.rnn(x))


def evaluate(model: Adder, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean squared error and the share of sequences within TOLERANCE of the target."""
    pred = model(X).data
    return float(((pred - y) ** 2).mean()), float((np.abs(pred - y) < TOLERANCE).mean())


def train(run: Run, length: int, n_train: int, epochs: int, hidden: int) -> dict:
    """Adam on mini-batches of 32 of a fixed training set; a fresh test set of 1000 sequences."""
    X_tr, y_tr = make_adding(n_train, length, seed=0)
    X_te, y_te = make_adding(1000, length, seed=1)
    model = Adder(hidden)
    opt = Adam(model.parameters(), lr=1e-2, clip_norm=1.0)
    # NOTE: the decay damps the late spikes a constant rate of 1e-2 shows once the error is small.
    schedule = ExponentialDecay(opt, k=0.1)
    loader = data.DataLoader(X_tr, y_tr, batch_size=32, seed=2)
    rows, t0 = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = mse(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        schedule.step()
        test_mse, test_acc = evaluate(model, X_te, y_te)
        rows.append((epoch, total / n_train, test_mse, test_acc, time.perf_counter() - t0))
    table(run, "curve.txt", ("epoch", "train MSE", "test MSE", f"test |err| < {TOLERANCE}", "seconds"), rows,
          title=f"Adding problem, T = {length}: LSTM({hidden}) + linear, {n_train} training sequences, Adam lr 1e-2 "
                "exp(-0.1 epoch), gradient norm clipped to 1; predicting 1 always gives MSE 0.1667")
    return {"length": length, "hidden": hidden, "epochs": epochs, "n_train": n_train, "test_mse": rows[-1][2],
            "test_accuracy": rows[-1][3], "first_test_mse": rows[0][2], "seconds": rows[-1][4], "curve": rows}


def plot(run: Run, found: dict) -> None:
    """Test MSE (log scale) and test accuracy per epoch."""
    plt = pyplot()
    rows = np.array(found["curve"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.semilogy(rows[:, 0], rows[:, 2], marker="o", label="LSTM")
    a.axhline(1 / 6, color="grey", linestyle="--", label="always 1")
    a.set(xlabel="epoch", ylabel="test MSE", title="adding problem")
    a.legend()
    b.plot(rows[:, 0], rows[:, 3], marker="o")
    b.set(xlabel="epoch", ylabel=f"share with |error| < {TOLERANCE}", title="test accuracy", ylim=(0, 1))
    save_figure(run, fig, "curve")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the test MSE and accuracy."""
    run = start(NAME, "an LSTM learns the adding problem", argv)
    if run.fast:
        found = train(run, length=10, n_train=2000, epochs=8, hidden=16)
    else:
        found = train(run, length=30, n_train=5000, epochs=20, hidden=32)
    plot(run, found)
    run.say(f"Key numbers: T = {found['length']}; test MSE {found['test_mse']:.5f} (always 1: 0.16667); "
            f"{found['test_accuracy']:.3f} of test sequences within {TOLERANCE}; {found['seconds']:.1f} s")
    run.finish()
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
