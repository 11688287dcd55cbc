"""Regenerate the training-loop picture in docs/img/training: ``python docs/make_training_images.py``.

Blain's optimizer comparison on the synthetic housing regression: the same 8-64-1 ReLU network trained by
SGD, AdaGrad and Adam (each at its PyTorch default rate; SGD at 0.01) for 10 epochs of mini-batches of 32, then
one plot of the three histories (epoch loss, mini-batch loss, its rolling variance) and a table of the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microgradx import optim
from microgradx.train import evaluate, fit, mlp, plot_histories, prepare

TARGET = Path(__file__).resolve().parent / "img" / "training"
RUNS = (("SGD", optim.SGD, 0.01), ("AdaGrad", optim.AdaGrad, 0.01), ("Adam", optim.Adam, 0.001))


def main() -> None:
    """Train the three networks from the same initial weights and plot their histories."""
    data = prepare("housing", seed=0)
    histories = []
    for name, cls, lr in RUNS:
        net = mlp([8, 64, 1], rng=0)
        h = fit(net, "mse", cls(net.parameters(), lr=lr), (data.X_train, data.y_train), epochs=10, batch_size=32,
                seed=0, validation=(data.X_test, data.y_test), label=f"{name} lr {lr:g}", progress=False)
        histories.append(h)
        test = evaluate(net, "mse", (data.X_test, data.y_test))["loss"]
        last = np.asarray(h.batch_loss[-200:])
        print(f"{name:8} lr {lr:<6g} train {h.loss[-1]:.4f}  test {test:.4f}  last-200-batch loss variance "
              f"{last.var(ddof=1):.5f}  {sum(h.seconds):.1f} s")
    path = plot_histories(histories, TARGET / "optimizers-housing.png", panels=["loss", "batch_loss",
                                                                               "rolling_variance"],
                          window=50, title="Synthetic housing, MLP 8-64-1, MSE, batch 32 (Blain's comparison)")
    print(path)


if __name__ == "__main__":
    main()
