"""Gerald's regularisation: L2 and weight decay (the same thing for SGD, not for Adam), dropout in training and
evaluation mode, and overfitting curves with and without regularisation.

1. A linear regression trained full-batch three ways per optimizer: the L2 term (lambda/2)||theta||^2 added to
   the loss; the optimizer's coupled ``weight_decay`` (g <- g + lambda theta); and decoupled decay (theta <- theta
   - lr lambda theta beside the step: by hand for SGD, ``optim.AdamW`` for Adam). With SGD all three give the same
   trajectory; with Adam the decoupled one differs (Gerald's lecture slides: "it is coupled with the optimisation
   of a loss").
2. One input through Linear-ReLU-Dropout(0.5)-Linear: in training mode every pass differs, in evaluation mode it
   is the same every time and equals the expectation over all dropout masks (inverted dropout: z m / (1 - p)).
3. A network much larger than its training set (100 digits): training and test loss per epoch without
   regularisation, with coupled L2 (``Adam(weight_decay=...)``) and with decoupled weight decay (``AdamW``).

Run ``python demos/regularisation.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence

import numpy as np
from _common import Run, one_blas_thread, pyplot, save_figure, start, table

from microgradx import Tensor, data, fit, nn, optim
from microgradx.losses import mse
from microgradx.train import History

NAME = "regularisation"
LAM, LR_SGD, LR_ADAM, STEPS = 0.1, 0.05, 0.05, 60
P_DROP, HIDDEN_DROP = 0.5, 8


# -- 1. L2 vs weight decay ------------------------------------------------------------------------------------------

def regression_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """64 rows, 5 features, y = X w* + 1 + noise; and the initial weights of a Linear(5, 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 5))
    y = X @ np.array([2.0, -1.0, 0.5, 0.0, 3.0]) + 1.0 + 0.1 * rng.standard_normal(64)
    return X, y, nn.Linear(5, 1, dtype=np.float64, rng=seed).state_dict()


def trajectory(kind: str, optimizer: str, X: np.ndarray, y: np.ndarray, init: dict) -> np.ndarray:
    """The parameters (weights then bias) after every full-batch step; ``kind`` is "loss" (L2 term in the loss),
    "coupled" (the optimizer's weight_decay) or "decoupled"."""
    model = nn.Linear(5, 1, dtype=np.float64)
    model.load_state_dict(init)
    params = model.parameters()
    lr = LR_SGD if optimizer == "SGD" else LR_ADAM
    wd = LAM if kind == "coupled" else 0.0
    if optimizer == "SGD":
        opt = optim.SGD(params, lr=lr, weight_decay=wd)
    elif kind == "decoupled":
        opt = optim.AdamW(params, lr=lr, weight_decay=LAM)
    else:
        opt = optim.Adam(params, lr=lr, weight_decay=wd)
    path = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = mse(model(X), y[:, None])
        if kind == "loss":
            loss = loss + sum(((p * p).sum() for p in params), Tensor(0.0)) * (LAM / 2)
        loss.backward()
        if kind == "decoupled" and optimizer == "SGD":
            for p in params:  # decay from the current parameters, beside the gradient step
                p.data -= lr * LAM * p.data
        opt.step()
        path.append(np.concatenate([p.data.ravel() for p in params]))
    return np.array(path)


def l2_versus_decay(run: Run) -> dict:
    """Trajectories of the three forms for SGD and Adam, and how far apart they end."""
    X, y, init = regression_problem()
    paths = {(o, k): trajectory(k, o, X, y, init) for o in ("SGD", "Adam") for k in ("loss", "coupled", "decoupled")}
    rows, gaps = [], {}
    for o in ("SGD", "Adam"):
        for a, b in (("loss", "coupled"), ("coupled", "decoupled"), ("loss", "decoupled")):
            gap = float(np.abs(paths[o, a] - paths[o, b]).max())
            gaps[o, a, b] = gap
            rows.append((o, f"{a} vs {b}", gap, float(np.abs(paths[o, a][-1] - paths[o, b][-1]).max())))
    names = {"loss": "L2 term in the loss", "coupled": "optimizer weight_decay", "decoupled": "decoupled decay"}
    table(run, "l2-vs-decay.txt", ("optimizer", "trajectories", "largest difference over all steps",
                                   f"difference after step {STEPS}"), rows, digits=3,
          title=f"lambda = {LAM:g}; SGD lr {LR_SGD:g}, Adam lr {LR_ADAM:g}; {STEPS} full-batch steps ("
                + "; ".join(f"{k}: {v}" for k, v in names.items()) + ")")
    finals = [(o, names[k], *paths[o, k][-1]) for o in ("SGD", "Adam") for k in ("loss", "coupled", "decoupled")]
    table(run, "l2-vs-decay-final.txt", ("optimizer", "form", "w1", "w2", "w3", "w4", "w5", "b"), finals,
          digits=5, title=f"Parameters after {STEPS} steps")
    return {"paths": paths, "gaps": gaps, "X": X, "y": y, "init": init}


# -- 2. dropout in training and evaluation mode -----------------------------------------------------------------------

def dropout_modes(run: Run, samples: int) -> dict:
    """Training-mode passes differ; evaluation-mode passes are equal and equal the expectation over all masks."""
    model = nn.Sequential(nn.Linear(6, HIDDEN_DROP, dtype=np.float64, rng=3), nn.ReLU(), nn.Dropout(P_DROP, rng=4),
                          nn.Linear(HIDDEN_DROP, 3, dtype=np.float64, rng=5))
    x = np.random.default_rng(6).standard_normal((1, 6))
    model.train()
    train_out = np.array([model(x).data[0] for _ in range(5)])
    model.eval()
    eval_out = np.array([model(x).data[0] for _ in range(3)])
    # The expectation by enumeration: every mask m in {0, 1}^8 with probability (1-p)^|m| p^(8-|m|).
    h = np.maximum(model[0](x).data[0], 0.0)
    w2, b2 = model[3].weight.data, model[3].bias.data
    expectation = np.zeros(3)
    for mask in itertools.product((0.0, 1.0), repeat=HIDDEN_DROP):
        m = np.array(mask)
        prob = (1 - P_DROP) ** m.sum() * P_DROP ** (HIDDEN_DROP - m.sum())
        expectation += prob * (w2 @ (h * m / (1 - P_DROP)) + b2)
    model.train()  # Monte Carlo: one batch of identical rows draws an independent mask per row
    mc = model(np.repeat(x, samples, axis=0)).data
    mc_mean, mc_se = mc.mean(axis=0), mc.std(axis=0, ddof=1) / np.sqrt(samples)
    model.eval()
    rows = [(f"train pass {i + 1}", *o) for i, o in enumerate(train_out)]
    rows += [(f"eval pass {i + 1}", *o) for i, o in enumerate(eval_out)]
    rows += [(f"expectation over all {2 ** HIDDEN_DROP} masks", *expectation),
             (f"mean of {samples} train passes", *mc_mean), ("its standard error", *mc_se)]
    table(run, "dropout.txt", ("forward pass", "output 1", "output 2", "output 3"), rows, digits=6,
          title=f"Linear(6, {HIDDEN_DROP})-ReLU-Dropout({P_DROP:g})-Linear({HIDDEN_DROP}, 3) on one input")
    return {"model": model, "x": x, "train_out": train_out, "eval_out": eval_out, "expectation": expectation,
            "mc_mean": mc_mean, "mc_se": mc_se}


# -- 3. overfitting ------------------------------------------------------------------------------------------------

OVERFIT_LR = 0.01
OVERFIT_RUNS = {"no regularisation": lambda ps: optim.Adam(ps, lr=OVERFIT_LR),
                "L2 1e-3 (Adam weight_decay)": lambda ps: optim.Adam(ps, lr=OVERFIT_LR, weight_decay=1e-3),
                "weight decay 0.5 (AdamW)": lambda ps: optim.AdamW(ps, lr=OVERFIT_LR, weight_decay=0.5)}


def overfitting(run: Run, epochs: int) -> dict:
    """100 training digits, a 64-256-256-10 ReLU network, full-batch Adam: without regularisation, with coupled L2
    and with decoupled weight decay; the same initial weights for all."""
    X, y = data.load_digits()
    Xtr, Xte, ytr, yte = data.train_test_split(X / 16.0, y, test_size=len(y) - 100, seed=0, stratify=True)
    histories, nets = {}, {}
    for label, make in OVERFIT_RUNS.items():
        net = nn.Sequential(nn.Linear(64, 256, rng=10), nn.ReLU(), nn.Linear(256, 256, rng=11), nn.ReLU(),
                            nn.Linear(256, 10, rng=12))
        histories[label] = fit(net, "cross_entropy", make(net.parameters()), (Xtr, ytr), epochs=epochs,
                               batch_size=None, metrics=["accuracy"], validation=(Xte, yte), seed=0, progress=False,
                               label=label)
        nets[label] = net
    rows = []
    for label, h in histories.items():
        best = int(np.argmin(h["val_loss"]))
        rows.append((label, h.loss[-1], h["val_loss"][-1], h["val_loss"][best], best + 1, h["val_accuracy"][-1]))
    table(run, "overfitting.txt", ("run", "final training loss", "final test loss", "lowest test loss", "at epoch",
                                   "final test accuracy"), rows, digits=4,
          title=f"{len(ytr)} training digits, {len(yte)} test digits, {epochs} full-batch epochs (lr {OVERFIT_LR:g})")
    return {"histories": histories, "nets": nets, "split": (Xtr, ytr, Xte, yte)}


def plot(run: Run, found: dict) -> None:
    """||theta|| per step for SGD and Adam under the three forms of decay; the overfitting curves."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    names = {"loss": "L2 in the loss", "coupled": "weight_decay (coupled)", "decoupled": "decoupled"}
    for ax, o in zip(axes[:2], ("SGD", "Adam")):
        for k, style in (("loss", "-"), ("coupled", "--"), ("decoupled", ":")):
            norm = np.linalg.norm(found["l2"]["paths"][o, k], axis=1)
            ax.plot(range(1, STEPS + 1), norm, style, linewidth=2, label=names[k] + (" = AdamW" * (k == "decoupled"
                                                                                                    and o == "Adam")))
        ax.set(title=f"{o}: ||theta|| per step, lambda = {LAM:g}", xlabel="step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for (label, h), colour in zip(found["overfit"]["histories"].items(), ("tab:red", "tab:blue", "tab:green")):
        epochs = range(1, h.epochs + 1)
        axes[2].plot(epochs, h.loss, color=colour, label=f"{label}: train")
        axes[2].plot(epochs, h["val_loss"], "--", color=colour, label=f"{label}: test")
    axes[2].set(title="100 training digits: train (solid) vs test (dashed)", xlabel="epoch",
                ylabel="cross-entropy", yscale="log")
    axes[2].grid(True, which="both", alpha=0.3)
    axes[2].legend(fontsize=7)
    save_figure(run, fig, "regularisation")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the trajectories, the dropout outputs and the overfitting histories."""
    run = start(NAME, "Gerald's lecture slides: L2 vs weight decay, dropout modes, overfitting", argv)
    with one_blas_thread():
        found = {"l2": l2_versus_decay(run), "dropout": dropout_modes(run, 20_000 if run.fast else 200_000),
                 "overfit": overfitting(run, 30 if run.fast else 150)}
    plot(run, found)
    g, d = found["l2"]["gaps"], found["dropout"]
    hs: dict[str, History] = found["overfit"]["histories"]
    run.say(f"Key numbers: SGD L2 vs decoupled decay differ by {g['SGD', 'loss', 'decoupled']:.2g}; Adam coupled vs "
            f"AdamW by {g['Adam', 'coupled', 'decoupled']:.3g} (L2 in loss vs coupled "
            f"{g['Adam', 'loss', 'coupled']:.2g}); dropout eval - expectation "
            f"{np.abs(d['eval_out'][0] - d['expectation']).max():.2g}, train passes spread "
            f"{np.ptp(d['train_out'], axis=0).max():.3g}; final test loss "
            + ", ".join(f"{k} {h['val_loss'][-1]:.3f}" for k, h in hs.items()))
    run.finish()
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
