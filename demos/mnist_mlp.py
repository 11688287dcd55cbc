"""Slettevold's thesis §3.1: the MNIST network 784-128-10 (ReLU, softmax, cross-entropy) trained with plain SGD
(Keras's rate 0.01), mini-batches of 32 and early stopping on the training accuracy (min_delta 1e-4, patience 3), up
to 1000 epochs. The document stops after 129 epochs at 98.97% training accuracy and tests at 97.39%.

Without ``--mnist-dir`` this runs on scikit-learn's 8x8 DIGITS (64-128-10), not on MNIST: MNIST needs a download.
The initial weights are He uniform (Keras's default would be Glorot uniform); pixels are divided by 16 (digits) or
255 (MNIST), where the document normalises with tf.keras.utils.normalize.

Run ``python demos/mnist_mlp.py [--fast] [--out DIR] [--mnist-dir DIR] [--max-epochs N]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from _common import Run, one_blas_thread, pyplot, save_figure, start, table
from _datasets import add_mnist_option, digits_or_mnist

from microgradx import evaluate, fit, optim
from microgradx.schedules import EarlyStopping
from microgradx.train import History, mlp

NAME = "mnist_mlp"
HIDDEN, LR, BATCH, PATIENCE, MIN_DELTA = 128, 0.01, 32, 3, 1e-4
SEED_EPOCHS, SEED_TRAIN_ACC, SEED_TEST_ACC = 129, 0.9897, 0.9739  # Slettevold's thesis, Figures 13 and 14


def options(parser) -> None:
    add_mnist_option(parser)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="upper limit on the epochs (default 1000 as Slettevold's thesis; fast mode 60)")


def plot(run: Run, h: History, title: str) -> None:
    """Training loss and accuracy per epoch (Slettevold's Figure 13 plots the loss), the stopping epoch marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = range(1, h.epochs + 1)
    axes[0].plot(epochs, h.loss, label="training")
    axes[0].plot(epochs, h["val_loss"], "--", label="test")
    axes[1].plot(epochs, h["accuracy"], label="training")
    axes[1].plot(epochs, h["val_accuracy"], "--", label="test")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(run, fig, "training")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the history, the trained network, the data and the final numbers."""
    run = start(NAME, "Slettevold's thesis §3.1: MLP 784-128-10 with SGD and early stopping "
                "(digits unless --mnist-dir)", argv,
                options)
    data, about = digits_or_mnist(run.args.mnist_dir)
    max_epochs = run.args.max_epochs or (60 if run.fast else 1000)
    n_in = data.X_train.shape[1]
    run.say(f"Data: {about}.\nNetwork {n_in}-{HIDDEN}-10, SGD lr {LR:g}, batch {BATCH}, "
            f"EarlyStopping(monitor='accuracy', min_delta={MIN_DELTA:g}, patience={PATIENCE}), "
            f"at most {max_epochs} epochs.\n")
    net = mlp([n_in, HIDDEN, 10], rng=0)
    stop = EarlyStopping("accuracy", patience=PATIENCE, min_delta=MIN_DELTA)
    t0 = time.perf_counter()
    with one_blas_thread():
        h = fit(net, "cross_entropy", optim.SGD(net.parameters(), lr=LR), (data.X_train, data.y_train),
                epochs=max_epochs, batch_size=BATCH, metrics=["accuracy"], validation=(data.X_test, data.y_test),
                callbacks=[stop], seed=0, progress=False)
        seconds = time.perf_counter() - t0
        test = evaluate(net, "cross_entropy", (data.X_test, data.y_test), ["accuracy"])
    stopped = "stopped early" if h.stopped_epoch is not None else f"did not stop within {max_epochs} epochs"
    dataset = "MNIST" if run.args.mnist_dir is not None else "digits (not MNIST)"
    table(run, "result.txt", ("", "Slettevold's thesis (MNIST, Keras)", f"here ({dataset})"), [
        ("epochs", SEED_EPOCHS, f"{h.epochs} ({stopped})"),
        ("training time", "0:12:14", f"{seconds:.1f} s"),
        ("training loss", 0.042, round(h.loss[-1], 4)),
        ("training accuracy", f"{100 * SEED_TRAIN_ACC:.2f}%", f"{100 * h['accuracy'][-1]:.2f}%"),
        ("test loss", 0.084, round(test["loss"], 4)),
        ("test accuracy", f"{100 * SEED_TEST_ACC:.2f}%", f"{100 * test['accuracy']:.2f}%"),
    ], title="Slettevold's printed result (Figures 13-14) and this run")
    plot(run, h, f"{n_in}-{HIDDEN}-10 on {dataset}: SGD {LR:g}, batch {BATCH}, early stopping on training accuracy")
    run.say(f"Key numbers ({dataset}): {h.epochs} epochs ({stopped}), training accuracy "
            f"{100 * h['accuracy'][-1]:.2f}%, test accuracy {100 * test['accuracy']:.2f}%, {seconds:.1f} s")
    run.finish()
    return {"history": h, "net": net, "data": data, "test": test, "seconds": seconds, "max_epochs": max_epochs}


if __name__ == "__main__":
    main(sys.argv[1:])
