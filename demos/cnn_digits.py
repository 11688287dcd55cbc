"""A small convolutional network on scikit-learn's 8x8 digits: conv, batch norm, ReLU, max-pool, linear, trained
with Adam on the NumPy Tensor path; prints the test accuracy and the learning curve.

Run ``python demos/cnn_digits.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
from _common import Run, one_blas_thread, pyplot, save_figure, start, table

from microgradx import data, nn
from microgradx.losses import cross_entropy
from microgradx.optim import Adam
from microgradx.schedules import ExponentialDecay

NAME = "cnn_digits"


def build(seed: int = 0) -> nn.Sequential:
    """1x8x8 -> conv 3x3 (16) -> BN -> ReLU -> conv 3x3 (32) -> BN -> ReLU -> max-pool 2 -> 32x4x4 -> linear 10."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, rng=seed), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, rng=seed + 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10, rng=seed + 2),
    )


def accuracy(net: nn.Module, X: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    """The share of rows whose largest logit is the label (evaluation mode: running batch-norm statistics)."""
    net.eval()
    right = sum(int((net(X[i:i + batch]).data.argmax(axis=1) == y[i:i + batch]).sum())
                for i in range(0, len(X), batch))
    net.train()
    return right / len(X)


def shift(X: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """With probability ``p`` an image is moved by a random -1, 0 or +1 pixels along each axis (zeros shifted
    in): cheap augmentation that keeps a digit recognisable while the network cannot memorise exact pixel
    positions. On 8x8 images a shift loses an eighth of a row, so half the images stay as they are."""
    n, _, h, w = X.shape
    dy, dx = rng.integers(0, 3, size=(2, n))
    keep = rng.random(n) >= p
    dy[keep], dx[keep] = 1, 1
    padded = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    rows = (dy[:, None] + np.arange(h))[:, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, :]
    return padded[np.arange(n)[:, None, None], 0, rows, cols][:, None]


def train(run: Run, epochs: int, n_train: int | None) -> dict:
    """Train on a stratified 75/25 split (optionally only the first ``n_train`` training rows)."""
    X, y = data.load_digits()
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, 0.25, seed=0, stratify=True)
    if n_train is not None:
        X_tr, y_tr = X_tr[:n_train], y_tr[:n_train]
    net = build()
    opt = Adam(net.parameters(), lr=3e-3)
    schedule = ExponentialDecay(opt, k=0.15)
    loader = data.DataLoader(X_tr, y_tr, batch_size=32, seed=1)
    rng = np.random.default_rng(2)
    rows, t0 = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = cross_entropy(net(shift(xb, rng)), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        schedule.step()
        rows.append((epoch, total / len(X_tr), accuracy(net, X_tr, y_tr), accuracy(net, X_te, y_te),
                     time.perf_counter() - t0))
    table(run, "curve.txt", ("epoch", "train loss", "train acc", "test acc", "seconds"), rows,
          title=f"CNN on 8x8 digits: {len(X_tr)} training and {len(X_te)} test images, Adam lr 3e-3 exp(-0.15 "
                f"epoch), batch 32, half the images shifted by 1 pixel")
    params = sum(p.data.size for p in net.parameters())
    return {"test_accuracy": rows[-1][3], "train_accuracy": rows[-1][2], "final_loss": rows[-1][1],
            "first_loss": rows[0][1], "epochs": epochs, "n_train": len(X_tr), "n_test": len(X_te),
            "parameters": params, "seconds": rows[-1][4], "curve": rows}


def plot(run: Run, found: dict) -> None:
    """Learning curve: training loss and the two accuracies per epoch."""
    plt = pyplot()
    rows = np.array(found["curve"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(rows[:, 0], rows[:, 1], marker="o")
    a.set(xlabel="epoch", ylabel="mean cross-entropy", title="training loss")
    b.plot(rows[:, 0], rows[:, 2], marker="o", label="train")
    b.plot(rows[:, 0], rows[:, 3], marker="s", label="test")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    b.legend()
    save_figure(run, fig, "curve")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the accuracies, losses and time."""
    run = start(NAME, "a small CNN (conv, batch norm, max-pool) on the 8x8 digits", argv)
    with one_blas_thread():  # batches of 32 8x8 images: matrices too small for BLAS threads to pay off
        found = train(run, epochs=2 if run.fast else 20, n_train=600 if run.fast else None)
    plot(run, found)
    run.say(f"Key numbers: {found['parameters']} parameters; test accuracy {found['test_accuracy']:.4f} "
            f"({found['n_test']} images) after {found['epochs']} epochs on {found['n_train']} images, "
            f"{found['seconds']:.1f} s")
    run.finish()
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
