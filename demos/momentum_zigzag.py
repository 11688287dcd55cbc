"""The Introduction to Deep Learning unit slides' elliptical bowl L = x**2 + 4 y**2: plain gradient descent zig-zags
across the steep direction; momentum (V <- beta V - lr dL/dW, W <- W + V) and Nesterov momentum (gradient at the
look-ahead W + beta V) damp it.

The intro slides gives neither a starting point nor rates; this demo starts at (-4, 1) with lr = 0.15 (so the steep
y-direction flips sign every plain step: y <- (1 - 8 lr) y = -0.2 y) and beta = 0.5, and sweeps beta. On this
quadratic Nesterov is stable only while 8 lr < (2 + 2 beta) / (1 + 2 beta): the sweep shows where it stops.

Run ``python demos/momentum_zigzag.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from _common import Run, pyplot, save_figure, start, table

import microgradx as mx
from microgradx.optim import SGD

NAME = "momentum_zigzag"
START = (-4.0, 1.0)
LR, BETA = 0.15, 0.5
TOL = 1e-3          # reached: distance to the minimum (0, 0) below TOL
MAX_STEPS = 500
SWEEP_FAST = (0.2, 0.5, 0.8)
SWEEP_FULL = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def loss(x, y):
    """The intro slides' L = x**2 + 4 y**2 (floats or Values)."""
    return x * x + 4 * y * y


def descend(lr: float, beta: float = 0.0, nesterov: bool = False) -> tuple[list[tuple[float, float]], int | None]:
    """Run SGD (the intro slides' velocity form) on L from START; the iterates and the steps to reach TOL (None: never).

    NOTE: the optimizer's Nesterov stores the look-ahead point W + beta V as the parameter, so that the gradient it
    needs is the one at the parameter; the iterates are those look-ahead points, which converge with W.
    """
    x, y = mx.Value(START[0], label="x"), mx.Value(START[1], label="y")
    if beta:
        opt = SGD([x, y], lr=lr, momentum=beta, nesterov=nesterov, momentum_form="velocity")
    else:
        opt = SGD([x, y], lr=lr)
    path = [START]
    for k in range(MAX_STEPS):
        if math.hypot(x.data, y.data) < TOL:
            return path, k
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
        path.append((x.data, y.data))
        if not math.isfinite(loss(x.data, y.data)) or abs(x.data) + abs(y.data) > 1e6:
            return path, None
    return path, None


def _steps(n: int | None) -> str:
    return f"not within {MAX_STEPS}" if n is None else str(n)


def plot(run: Run, paths: dict[str, tuple[list, int | None]]) -> None:
    """Contours of L with the three paths."""
    import numpy as np

    plt = pyplot()
    a, b = np.meshgrid(np.linspace(-4.5, 1.5, 300), np.linspace(-1.6, 1.6, 200))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    ax.contour(a, b, loss(a, b), levels=[0.05, 0.25, 0.5, 1, 2, 4, 8, 12, 16, 20], colors="0.7", linewidths=0.7)
    styles = {"gradient descent": ("tab:red", "o"), "momentum": ("tab:blue", "s"), "Nesterov": ("tab:green", "^")}
    for label, (path, steps) in paths.items():
        colour, marker = styles[label]
        xs, ys = zip(*path)
        ax.plot(xs, ys, marker=marker, markersize=3.5, linewidth=1, color=colour,
                label=f"{label}: {steps} steps to |w| < {TOL:g}" if steps is not None else f"{label}: not reached")
    ax.plot([0], [0], "k*", markersize=10)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"L = x² + 4y² from {START}, lr = {LR:g}, beta = {BETA:g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    save_figure(run, fig, "zigzag")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the iterates and the steps each method needs to reach the tolerance."""
    run = start(NAME, "the intro slides: gradient descent, momentum and Nesterov on L = x^2 + 4y^2", argv)
    paths = {"gradient descent": descend(LR), "momentum": descend(LR, BETA),
             "Nesterov": descend(LR, BETA, nesterov=True)}
    rows = []
    for label, (path, steps) in paths.items():
        rows.append((label, _steps(steps),
                     "".join("+" if p[1] > 0 else "-" if p[1] < 0 else "0" for p in path[:12])))
    table(run, "steps.txt", ("method", f"steps to |w| < {TOL:g}", "sign of y over the first 12 iterates"), rows,
          title=f"L = x^2 + 4y^2 from {START}, lr = {LR:g}, beta = {BETA:g}")
    sweep = SWEEP_FAST if run.fast else SWEEP_FULL
    sweep_rows = []
    sweep_steps = {}
    for beta in sweep:
        m, n = descend(LR, beta)[1], descend(LR, beta, nesterov=True)[1]
        sweep_steps[beta] = (m, n)
        sweep_rows.append((beta, paths["gradient descent"][1], _steps(m), _steps(n),
                           "yes" if 8 * LR < (2 + 2 * beta) / (1 + 2 * beta) else "no"))
    table(run, "beta-sweep.txt", ("beta", "gradient descent", "momentum", "Nesterov",
                                        "8 lr < (2+2b)/(1+2b)"), sweep_rows,
          title=f"Steps to |w| < {TOL:g} as beta varies (lr = {LR:g})", digits=2)
    plot(run, paths)
    steps = {label: s for label, (_, s) in paths.items()}
    run.say("Key numbers: steps to |w| < 0.001: " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    run.finish()
    return {"paths": {k: p for k, (p, _) in paths.items()}, "steps": steps, "sweep": sweep_steps}


if __name__ == "__main__":
    main(sys.argv[1:])
