"""Blain's report §3.1: SGD, Adam and AdaGrad (and here also momentum, RMSprop and AdaDelta) training the same 8-feature
ReLU regression network, 10 epochs of mini-batches of 32: loss per epoch, mini-batch loss and its rolling variance
(Blain's Figures 4-6).

Blain's report used the California housing data, which needs a download. This demo uses ``data.make_housing``, a
**synthetic** stand-in with the same 8 feature names and a price drawn from a documented formula: the numbers say
how the optimizers behave on a housing-like regression, not what they give on the real data. Blain's report gives
neither the hidden size nor the learning rates: one hidden layer of 64 ReLU units, and each optimizer's PyTorch
default rate (SGD, which has none, 0.01; momentum 0.9). Every network starts from the same weights and sees the
same mini-batches.

Run ``python demos/optimizer_comparison.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from _common import Run, one_blas_thread, pyplot, save_figure, start, table

from microgradx import data, fit, optim
from microgradx.train import History

NAME = "optimizer_comparison"
HIDDEN, EPOCHS, BATCH, WINDOW = 64, 10, 32, 50
OPTIMIZERS = {  # name: (class, options); rates are PyTorch's defaults (SGD has none: 0.01)
    "SGD": (optim.SGD, {"lr": 0.01}),
    "SGD momentum": (optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "AdaGrad": (optim.AdaGrad, {"lr": 0.01}),
    "RMSprop": (optim.RMSprop, {"lr": 0.01}),
    "AdaDelta": (optim.AdaDelta, {"lr": 1.0}),
    "Adam": (optim.Adam, {"lr": 0.001}),
}


def housing(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The synthetic housing data: 75/25 split, features standardised on the training part, target in $100,000."""
    X, y = data.make_housing(n, seed=seed)
    Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, seed=seed)
    scaler = data.StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), ytr, scaler.transform(Xte), yte


def initial_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """One set of initial weights (He uniform, biases 0) that every optimizer starts from."""
    from microgradx import nn

    return nn.Sequential(nn.Linear(8, HIDDEN, rng=seed), nn.ReLU(), nn.Linear(HIDDEN, 1, rng=seed + 1)).state_dict()


def train(name: str, init: dict[str, np.ndarray], split: tuple, epochs: int) -> tuple[History, object]:
    """Train a fresh copy of the network from ``init`` with optimizer ``name``; mini-batch order seed 0."""
    from microgradx import nn

    net = nn.Sequential(nn.Linear(8, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
    net.load_state_dict(init)
    cls, options = OPTIMIZERS[name]
    Xtr, ytr, Xte, yte = split
    history = fit(net, "mse", cls(net.parameters(), **options), (Xtr, ytr), epochs=epochs, batch_size=BATCH,
                  validation=(Xte, yte), seed=0, progress=False, label=name)
    return history, net


def plot(run: Run, histories: dict[str, History]) -> None:
    """Blain's three figures side by side: epoch loss, mini-batch loss (a window of batches), rolling variance."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, h in histories.items():
        axes[0].plot(range(1, h.epochs + 1), h.loss, marker="o", markersize=3, label=name)
        n = len(h.batch_loss)
        lo = n // 2  # Blain's Figure 5 shows "a selected range of mini-batches"
        axes[1].plot(range(lo, min(n, lo + 300)), h.batch_loss[lo:lo + 300], linewidth=0.8, label=name)
        var = h.rolling_variance(WINDOW)
        axes[2].plot(range(WINDOW, WINDOW + len(var)), var, linewidth=0.8, label=name)
    axes[0].set(xlabel="epoch", ylabel="training MSE", title="Loss per epoch (Fig. 4)", yscale="log")
    axes[1].set(xlabel="mini-batch", ylabel="mini-batch MSE", title="Mini-batch loss (Fig. 5)", yscale="log")
    axes[2].set(xlabel="mini-batch", ylabel=f"variance over {WINDOW} batches",
                title="Rolling variance of the mini-batch loss (Fig. 6)", yscale="log")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"8-{HIDDEN}-1 ReLU network on the synthetic housing data, batch {BATCH}", fontsize=10)
    save_figure(run, fig, "optimizers")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns each optimizer's history and the data and initial weights they used."""
    run = start(NAME, "Blain's report §3.1: SGD, momentum, AdaGrad, RMSprop, AdaDelta and Adam on a housing regression",
                argv)
    n, epochs = (1200, 2) if run.fast else (20640, EPOCHS)
    split = housing(n)
    run.say(f"Data: make_housing({n}), SYNTHETIC (not the real California housing data); "
            f"{len(split[0])} training rows, {len(split[2])} test rows; {epochs} epochs of batches of {BATCH}.\n")
    init = initial_weights()
    histories, nets = {}, {}
    with one_blas_thread():
        for name in OPTIMIZERS:
            histories[name], nets[name] = train(name, init, split, epochs)
    tail = min(200, len(histories["SGD"].batch_loss))
    rows = []
    for name, h in histories.items():
        var = h.rolling_variance(WINDOW)
        rows.append((name, OPTIMIZERS[name][1]["lr"], h.loss[0], h.loss[-1], h["val_loss"][-1],
                     float(np.var(h.batch_loss[-tail:], ddof=1)), float(var.mean()), sum(h.seconds)))
    table(run, "optimizers.txt", ("optimizer", "lr", "epoch 1 MSE", f"epoch {epochs} MSE", "test MSE",
                                  f"var of last {tail} batch losses", f"mean rolling var ({WINDOW})", "seconds"),
          rows, title="Training and test MSE ($100,000 squared) per optimizer")
    plot(run, histories)
    best = min(histories, key=lambda k: histories[k].loss[-1])
    run.say("Key numbers: final training MSE " + ", ".join(f"{k} {h.loss[-1]:.4f}" for k, h in histories.items())
            + f"; lowest: {best}")
    run.finish()
    return {"histories": histories, "nets": nets, "init": init, "split": split, "epochs": epochs}


if __name__ == "__main__":
    main(sys.argv[1:])
