"""Slettevold's thesis §4.2: SGD and Adam across mini-batch sizes, from 1 (stochastic) to the full training set (batch),
with the same number of epochs for all: training time and loss, like the document's Figures 20-21.

Slettevold's thesis trains its MNIST network 784-128-10 (ReLU, softmax, cross-entropy) for 100 epochs with Keras's SGD
(rate 0.01) and Adam (rate 0.001), batch sizes 1, 8, 16, ..., 256 and the full 60,000; batch size 1 on a random
sample of 10,000 images. This demo does the same on scikit-learn's 8x8 digits (64-128-10, 100 epochs) unless
``--mnist-dir`` gives the MNIST files; every run starts from the same initial weights (He uniform; Keras's default
would be Glorot uniform).

Run ``python demos/batch_size_study.py [--fast] [--out DIR] [--mnist-dir DIR] [--epochs N]``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import numpy as np
from _common import Run, one_blas_thread, pyplot, save_figure, start, table
from _datasets import add_mnist_option, digits_or_mnist

from microgradx import evaluate, fit, optim
from microgradx.train import History, mlp

NAME = "batch_size_study"
HIDDEN = 128
RATES = {"adam": (optim.Adam, 0.001), "sgd": (optim.SGD, 0.01)}  # Keras's defaults, as Slettevold's thesis used them
SEED_BATCHES = (1, 8, 16, 32, 64, 128, 256)  # Slettevold's powers of two; the full training set is added
STOCHASTIC_SAMPLE = 10_000  # Slettevold's thesis trains batch size 1 on a random 10,000 of MNIST's 60,000 images


def options(parser) -> None:
    add_mnist_option(parser)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every run (default: 100 on the digits as Slettevold's thesis, 10 on MNIST; "
                             "fast: 3)")


def run_one(opt_name: str, batch: int, init: dict, X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[History, object]:
    """Train a fresh copy of the network from ``init`` with ``opt_name`` and mini-batches of ``batch``."""
    sizes = (X.shape[1], HIDDEN, 10)
    net = mlp(list(sizes))
    net.load_state_dict(init)
    cls, lr = RATES[opt_name]
    h = fit(net, "cross_entropy", cls(net.parameters(), lr=lr), (X, y), epochs=epochs, batch_size=batch,
            metrics=["accuracy"], seed=0, progress=False, label=f"{opt_name} batch {batch}")
    return h, net


def plot(run: Run, histories: dict[tuple[str, int], History], full: int) -> None:
    """Training loss per epoch for every batch size, one panel per optimizer (Slettevold's Figure 20)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, opt_name in zip(axes, RATES):
        for (o, b), h in histories.items():
            if o == opt_name:
                ax.plot(range(1, h.epochs + 1), h.loss, label=f"batch {b}" + (" (full)" if b == full else ""))
        ax.set(title=f"{opt_name.upper()} (lr {RATES[opt_name][1]:g})", xlabel="epoch", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (cross-entropy)")
    save_figure(run, fig, "loss")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns every run's history, time, final loss and accuracies, and the initial weights."""
    run = start(NAME, "Slettevold's thesis §4.2: SGD vs Adam across batch sizes, from 1 to the full training set",
                argv, options)
    mnist = run.args.mnist_dir is not None
    data, about = digits_or_mnist(run.args.mnist_dir)
    full = len(data.X_train)
    epochs = run.args.epochs or (3 if run.fast else 10 if mnist else 100)
    batches = (8, 64, full) if run.fast else SEED_BATCHES + (full,)
    run.say(f"Data: {about}.\nNetwork {data.X_train.shape[1]}-{HIDDEN}-10, {epochs} epochs for every run, "
            f"batch sizes {', '.join(map(str, batches))} ({full} = the whole training set).\n")
    init = mlp([data.X_train.shape[1], HIDDEN, 10], rng=0).state_dict()
    rng = np.random.default_rng(0)
    sample = rng.choice(full, STOCHASTIC_SAMPLE, replace=False) if mnist and full > STOCHASTIC_SAMPLE else None
    histories, results, rows = {}, {}, []
    for opt_name in RATES:
        for batch in batches:
            X, y = (data.X_train[sample], data.y_train[sample]) if batch == 1 and sample is not None \
                else (data.X_train, data.y_train)
            with one_blas_thread():
                t0 = time.perf_counter()
                h, net = run_one(opt_name, batch, init, X, y, epochs)
                seconds = time.perf_counter() - t0
                train_eval = evaluate(net, "cross_entropy", (data.X_train, data.y_train), ["accuracy"])
                test_eval = evaluate(net, "cross_entropy", (data.X_test, data.y_test), ["accuracy"])
            histories[opt_name, batch] = h
            results[opt_name, batch] = {"seconds": seconds, "loss": h.loss[-1], "steps": len(h.batch_loss),
                                        "train_loss": train_eval["loss"], "train_accuracy": train_eval["accuracy"],
                                        "test_accuracy": test_eval["accuracy"], "net": net}
            rows.append((opt_name, batch if batch != full else f"{batch} (full)", len(X), math.ceil(len(X) / batch),
                         f"{seconds:.2f}", h.loss[-1], f"{100 * train_eval['accuracy']:.2f}%",
                         f"{100 * test_eval['accuracy']:.2f}%"))
    table(run, "batch-sizes.txt", ("optimizer", "batch size", "rows", "steps/epoch", "seconds",
                                   f"training loss (epoch {epochs})", "training accuracy", "test accuracy"), rows,
          title=f"{epochs} epochs per run ({'MNIST' if mnist else 'digits'}), as Slettevold's Figures 21/23", digits=4)
    plot(run, histories, full)
    run.say("Key numbers: final training loss " + "; ".join(
        f"{o} batch {b}: {r['loss']:.4g} in {r['seconds']:.1f} s" for (o, b), r in results.items()))
    run.finish()
    return {"results": results, "histories": histories, "init": init, "data": data, "batches": batches,
            "epochs": epochs, "full": full}


if __name__ == "__main__":
    main(sys.argv[1:])
