"""The Introduction to Deep Learning unit slides' learning-rate decay: exponential a0 exp(-k t), inverse a0 / (1 + k
t), step (halve every 5 epochs) and reduce-on-plateau (x 0.1 after 3 epochs without a lower validation loss); the
document's worked numbers, then the effect of each schedule on one training run.

The training runs: MLP 64-128-10 (ReLU) on scikit-learn's 8x8 digits, plain SGD from a0 = 0.1, mini-batches of
32, every run from the same initial weights and batch order. With the document's k = 0.01 the rate falls by only 26%
in 30 epochs, so the runs use k = 0.1 for exponential and inverse decay (the table of rates shows both).

Run ``python demos/lr_schedules.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _common import Run, one_blas_thread, pyplot, save_figure, start, table

from microgradx import fit, optim, schedules
from microgradx.train import History, mlp, prepare

NAME = "lr_schedules"
LR0, K_SEED, K_RUN = 0.1, 0.01, 0.1


def seed_numbers(run: Run) -> dict:
    """The document's examples through the schedule classes: rates at epochs 0, 5, 10 (and 30)."""
    made = {"exponential (k = 0.01)": schedules.ExponentialDecay(lr0=LR0, k=K_SEED),
            "inverse (k = 0.01)": schedules.InverseTimeDecay(lr0=LR0, k=K_SEED),
            "step (x 0.5 every 5)": schedules.StepDecay(lr0=LR0, factor=0.5, every=5),
            f"exponential (k = {K_RUN:g})": schedules.ExponentialDecay(lr0=LR0, k=K_RUN),
            f"inverse (k = {K_RUN:g})": schedules.InverseTimeDecay(lr0=LR0, k=K_RUN)}
    epochs = (0, 1, 5, 10, 30)
    rates = {name: [s.lr_at(t) for t in epochs] for name, s in made.items()}
    table(run, "source-rates.txt", ["schedule"] + [f"epoch {t}" for t in epochs],
          [[name] + r for name, r in rates.items()], digits=6,
          title="The intro slides: a0 = 0.1; exponential and inverse after 10 epochs ~ 0.0905 and 0.0909 "
                "(the document prints "
                "0.09 and 0.091); step 0.05 at 5, 0.025 at 10")
    plateau = schedules.ReduceLROnPlateau(lr0=LR0, factor=0.1, patience=3)
    losses = [1.0, 0.8, 0.81, 0.8, 0.85, 0.7, 0.7, 0.72, 0.71]
    steps = [plateau.step(v) for v in losses]
    table(run, "source-plateau.txt", ("epoch", "validation loss", "rate for the next epoch"),
          [(t, v, r) for t, (v, r) in enumerate(zip(losses, steps))], digits=4,
          title="The intro slides' plateau rule: no lower validation loss for 3 epochs -> rate x 0.1")
    return {"rates": rates, "epochs": epochs, "plateau_losses": losses, "plateau_rates": steps}


def schedule_for(name: str, opt):
    """A new schedule object of kind ``name`` on ``opt`` (None: constant rate)."""
    return {"constant": lambda: None,
            "exponential": lambda: schedules.ExponentialDecay(opt, k=K_RUN),
            "inverse": lambda: schedules.InverseTimeDecay(opt, k=K_RUN),
            "step": lambda: schedules.StepDecay(opt, factor=0.5, every=5),
            "plateau": lambda: schedules.ReduceLROnPlateau(opt, factor=0.1, patience=3)}[name]()


def train_runs(run: Run, epochs: int) -> dict[str, History]:
    """One SGD run per schedule on the digits, same initial weights and batch order."""
    data = prepare("digits", seed=0)
    init = mlp([64, 128, 10], rng=0).state_dict()
    histories = {}
    for name in ("constant", "exponential", "inverse", "step", "plateau"):
        net = mlp([64, 128, 10])
        net.load_state_dict(init)
        opt = optim.SGD(net.parameters(), lr=LR0)
        histories[name] = fit(net, "cross_entropy", opt, (data.X_train, data.y_train), epochs=epochs,
                              batch_size=32, schedule=schedule_for(name, opt), metrics=["accuracy"],
                              validation=(data.X_test, data.y_test), seed=0, progress=False, label=name)
    rows = [(name, h.lr[-1], h.loss[-1], min(h["val_loss"]), h["val_loss"][-1], h["val_accuracy"][-1])
            for name, h in histories.items()]
    table(run, "runs.txt", ("schedule", f"rate in epoch {epochs}", "training loss", "best validation loss",
                            "final validation loss", "final validation accuracy"), rows, digits=5,
          title=f"SGD from a0 = {LR0:g} on the digits, {epochs} epochs, batch 32")
    return histories


def plot(run: Run, histories: dict[str, History]) -> None:
    """Rate, training loss and validation loss per epoch for every schedule."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, h in histories.items():
        epochs = range(1, h.epochs + 1)
        axes[0].plot(epochs, h.lr, marker="o", markersize=2.5, label=name)
        axes[1].plot(epochs, h.loss, label=name)
        axes[2].plot(epochs, h["val_loss"], label=name)
    axes[0].set(title="learning rate", xlabel="epoch", yscale="log")
    axes[1].set(title="training loss", xlabel="epoch", yscale="log")
    axes[2].set(title="validation loss", xlabel="epoch")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(run, fig, "schedules")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the document's rates and every run's history."""
    run = start(NAME, "the intro slides: exponential, inverse, step and plateau learning-rate decay", argv)
    found = seed_numbers(run)
    with one_blas_thread():
        histories = train_runs(run, 6 if run.fast else 40)
    plot(run, histories)
    r = found["rates"]
    run.say(f"Key numbers: a10 exponential {r['exponential (k = 0.01)'][3]:.4f}, inverse "
            f"{r['inverse (k = 0.01)'][3]:.4f}, step a5 {r['step (x 0.5 every 5)'][2]:g} a10 "
            f"{r['step (x 0.5 every 5)'][3]:g}; best validation loss "
            + ", ".join(f"{k} {min(h['val_loss']):.4f}" for k, h in histories.items()))
    run.finish()
    return {**found, "histories": histories}


if __name__ == "__main__":
    main(sys.argv[1:])
