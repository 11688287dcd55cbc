"""Hand a model over to PyTorch: an MLP with batch norm trained on the 8x8 digits with microgradx, converted by
``to_torch``, keeps training in PyTorch step for step as it would have here, and comes back with
``load_torch_state_dict``. Needs the optional extra: ``pip install 'microgradx[torch]'``.

Run ``python demos/torch_handover.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from _common import Run, one_blas_thread, pyplot, save_figure, start, table

from microgradx import data, nn
from microgradx.losses import cross_entropy
from microgradx.optim import SGD
from microgradx.torch_bridge import TorchMissingError, load_torch_state_dict, to_torch, torch_names

NAME = "torch_handover"
LR, BATCH = 0.1, 32


def build(seed: int = 0) -> nn.Sequential:
    """64 -> linear 64 -> batch norm -> ReLU -> linear 10, in float64 so that the two engines agree to rounding."""
    return nn.Sequential(nn.Linear(64, 64, rng=seed, dtype=np.float64), nn.BatchNorm1d(64, dtype=np.float64),
                         nn.ReLU(), nn.Linear(64, 10, rng=seed + 1, dtype=np.float64))


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """The share of rows whose largest logit is the label."""
    return float((logits.argmax(axis=1) == y).mean())


def handover(run: Run, epochs_here: int, epochs_both: int) -> dict:
    """Train here, convert, then run the same batches through both engines (plain SGD carries no optimizer
    state, so the two runs must stay equal); save the PyTorch weights and load them back."""
    try:
        import torch
    except ImportError as e:
        raise TorchMissingError("this demo needs PyTorch, which is not installed: pip install 'microgradx[torch]'") \
            from e
    # NOTE: one thread each, as the other demos: these matrices are too small for threads to pay off, and on a
    # busy machine PyTorch's default thread pool makes every step many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _handover(run, torch, epochs_here, epochs_both)
    finally:
        torch.set_num_threads(threads)


def _handover(run: Run, torch: Any, epochs_here: int, epochs_both: int) -> dict:
    """The body of ``handover``, with PyTorch imported."""

    X, y = data.load_digits()
    X_tr, X_te, y_tr, y_te = data.train_test_split(X / 16.0, y, 0.25, seed=0, stratify=True)
    loader = data.DataLoader(X_tr, y_tr, batch_size=BATCH, seed=1, drop_last=True)
    net = build()
    opt = SGD(net.parameters(), lr=LR)
    rows = []
    for epoch in range(1, epochs_here + 1):
        losses = []
        for xb, yb in loader:
            opt.zero_grad()
            loss = cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        rows.append((epoch, "microgradx", float(np.mean(losses)), ""))
    net.eval()
    acc_here = accuracy(net(X_te).data, y_te)
    net.train()

    tnet = to_torch(net)  # same weights, running statistics and training mode
    tnet.eval()
    net.eval()
    handover_diff = float(np.abs(tnet(torch.from_numpy(X_te)).detach().numpy() - net(X_te).data).max())
    tnet.train()
    net.train()
    run.say(f"Handed over after {epochs_here} epochs (test accuracy {acc_here:.4f}): largest difference of the "
            f"test logits, PyTorch vs microgradx, {handover_diff:.1e}")

    topt = torch.optim.SGD(tnet.parameters(), lr=LR)
    worst, seconds_here, seconds_torch = 0.0, 0.0, 0.0
    for epoch in range(epochs_here + 1, epochs_here + epochs_both + 1):
        here, there = [], []
        for xb, yb in loader:  # the same batches, in the same order, for both engines
            t = time.perf_counter()
            opt.zero_grad()
            loss = cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            seconds_here += time.perf_counter() - t
            t = time.perf_counter()
            topt.zero_grad()
            tloss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(xb)), torch.from_numpy(yb))
            tloss.backward()
            topt.step()
            seconds_torch += time.perf_counter() - t
            here.append(loss.item())
            there.append(tloss.item())
            worst = max(worst, abs(here[-1] - there[-1]))
        rows.append((epoch, "PyTorch", float(np.mean(there)), float(np.mean(here))))
    table(run, "curve.txt", ("epoch", "engine", "train loss", "microgradx alongside"), rows,
          title=f"MLP 64-64-10 with batch norm on the 8x8 digits, SGD lr {LR}, batch {BATCH}: trained with "
                f"microgradx, then in PyTorch (microgradx running the same batches alongside)", digits=6)

    tnet.eval()
    logits_torch = tnet(torch.from_numpy(X_te)).detach().numpy()
    path = run.path("model.pt")
    torch.save(tnet.state_dict(), path)
    back = build(seed=10)  # different initial weights: everything must come from the file
    load_torch_state_dict(back, torch.load(path))
    back.eval()
    logits_back = back(X_te).data
    return {"epochs_microgradx": epochs_here, "epochs_torch": epochs_both, "accuracy_microgradx": acc_here,
            "handover_logit_difference": handover_diff, "continued_loss_difference": worst,
            "loss_microgradx_end": rows[epochs_here - 1][2], "loss_torch_end": rows[-1][2],
            "accuracy_torch": accuracy(logits_torch, y_te), "accuracy_back_in_microgradx": accuracy(logits_back, y_te),
            "back_logit_difference": float(np.abs(logits_back - logits_torch).max()),
            "seconds_per_epoch_microgradx": seconds_here / epochs_both,
            "seconds_per_epoch_torch": seconds_torch / epochs_both, "n_test": len(y_te),
            "torch_names": sorted(torch_names(net).values()) + ["1.num_batches_tracked"], "curve": rows}


def plot(run: Run, found: dict) -> None:
    """The training loss per epoch, with the hand-over marked."""
    plt = pyplot()
    rows = found["curve"]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    here = [(r[0], r[2]) for r in rows if r[1] == "microgradx"]
    there = [(r[0], r[2]) for r in rows if r[1] == "PyTorch"]
    alongside = [(r[0], r[3]) for r in rows if r[1] == "PyTorch"]
    ax.plot(*zip(*here), marker="o", label="microgradx")
    ax.plot(*zip(*([here[-1]] + there)), marker="s", label="PyTorch, after the hand-over")
    ax.plot(*zip(*alongside), linestyle="none", marker="x", color="black", label="microgradx, same batches")
    ax.axvline(here[-1][0] + 0.5, color="grey", linestyle=":")
    ax.set(xlabel="epoch", ylabel="mean cross-entropy", title="one model, two engines")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    save_figure(run, fig, "handover")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the key numbers."""
    run = start(NAME, "train here, continue in PyTorch, come back", argv)
    with one_blas_thread():
        found = handover(run, epochs_here=2 if run.fast else 10, epochs_both=2 if run.fast else 10)
    plot(run, found)
    run.say(f"Key numbers: logits at the hand-over agree to {found['handover_logit_difference']:.1e}; "
            f"{found['epochs_torch']} more epochs in PyTorch track microgradx's to "
            f"{found['continued_loss_difference']:.1e} per batch loss; test accuracy "
            f"{found['accuracy_microgradx']:.4f} -> {found['accuracy_torch']:.4f} ({found['n_test']} images); "
            f"loaded back into microgradx: accuracy {found['accuracy_back_in_microgradx']:.4f}, logits within "
            f"{found['back_logit_difference']:.1e}; seconds per epoch: microgradx "
            f"{found['seconds_per_epoch_microgradx']:.3f}, PyTorch {found['seconds_per_epoch_torch']:.3f}")
    run.finish()
    return found


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except TorchMissingError as e:
        sys.exit(str(e))
