"""Slettevold's Figures 1, 18 and 19: gradient descent on a 6th-degree polynomial with a small and a large learning
rate, with momentum, and with Adam; x is a scalar ``Value`` updated by the ``microgradx.optim`` optimizers.

Slettevold's thesis states the rates (Fig. 18: lambda = 0.1 and "alpha = 40"; Fig. 19: lambda = 5, betas 0.9/0.999,
eps 1e-8) but not the starting points or Figure 1's two rates; the choices below are stated where they are made.

Run ``python demos/learning_rate_1d.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from _common import Run, pyplot, save_figure, start, table

import microgradx as mx
from microgradx.data import SEED001_POLYNOMIAL
from microgradx.optim import SGD, Adam

NAME = "learning_rate_1d"
TOL = 1e-4        # converged: |f'(x)| < TOL and the last step moved x by less than TOL
BOUND = 50.0      # diverged: x left [-BOUND, BOUND] (the picture shows [-1, 24])
MAX_STEPS = 3000
# Our choices where Slettevold's thesis does not say:
X_LEFT, X_RIGHT = 0.0, 23.0       # Fig. 1 and 19 start at the left end of the plotted range, Fig. 18 "from the right"
SMALL_LR, LARGE_LR = 0.01, 5.0    # Fig. 1: converges to a local minimum slowly; diverges after two iterations
# Fig. 18's "alpha = 40" cannot be a momentum factor (it must lie in [0, 1), else the velocity grows 40-fold per
# step); we read it as alpha = 0.40.
MOMENTUM_LR, MOMENTUM = 0.1, 0.40
ADAM_LR, ADAM_BETAS, ADAM_EPS = 5.0, (0.9, 0.999), 1e-8
ADAM_STEPS = 500


def f(x):
    """Slettevold's Figure 1 polynomial by Horner's rule; works on floats and on Values."""
    acc = SEED001_POLYNOMIAL[0]
    for c in SEED001_POLYNOMIAL[1:]:
        acc = acc * x + c
    return acc


@dataclass
class Trajectory:
    """One descent: its label, the iterates xs (xs[0] is the start), how it ended and after how many steps."""

    label: str
    xs: list[float]
    status: str
    steps: int
    settings: str

    @property
    def end(self) -> float:
        """The last iterate."""
        return self.xs[-1]


def descend(label: str, settings: str, x0: float, make: Callable[[list], object], max_steps: int = MAX_STEPS,
            stop_when_converged: bool = True) -> Trajectory:
    """Minimise f from x0 with the optimizer ``make([x])`` on the scalar Value x; record every iterate."""
    x = mx.Value(x0, label="x")
    opt = make([x])
    xs = [x0]
    for k in range(max_steps):
        opt.zero_grad()
        f(x).backward()
        moved = abs(xs[-1] - xs[-2]) if k else float("inf")
        if stop_when_converged and abs(x.grad) < TOL and moved < TOL:
            return Trajectory(label, xs, "converged", k, settings)
        opt.step()
        xs.append(x.data)
        if abs(x.data) > BOUND:
            return Trajectory(label, xs, f"diverged (|x| > {BOUND:g})", k + 1, settings)
    return Trajectory(label, xs, "stopped", max_steps, settings)


def runs() -> dict[str, Trajectory]:
    """The five descents the figures show."""
    return {
        "small": descend("GD, small rate", f"x0={X_LEFT:g}, lr={SMALL_LR:g}", X_LEFT,
                         lambda p: SGD(p, lr=SMALL_LR)),
        "large": descend("GD, large rate", f"x0={X_LEFT:g}, lr={LARGE_LR:g}", X_LEFT,
                         lambda p: SGD(p, lr=LARGE_LR)),
        "gd_right": descend("GD from the right", f"x0={X_RIGHT:g}, lr={MOMENTUM_LR:g}", X_RIGHT,
                            lambda p: SGD(p, lr=MOMENTUM_LR)),
        # Slettevold's momentum: dW <- alpha dW - lr grad, W <- W + dW (the optimizer's "velocity" form).
        "momentum": descend("GD with momentum", f"x0={X_RIGHT:g}, lr={MOMENTUM_LR:g}, alpha={MOMENTUM:g}", X_RIGHT,
                            lambda p: SGD(p, lr=MOMENTUM_LR, momentum=MOMENTUM, momentum_form="velocity")),
        "adam": descend("Adam", f"x0={X_LEFT:g}, lr={ADAM_LR:g}, betas={ADAM_BETAS}, eps={ADAM_EPS:g}", X_LEFT,
                        lambda p: Adam(p, lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS), max_steps=ADAM_STEPS,
                        stop_when_converged=False),
    }


def plot(run: Run, found: dict[str, Trajectory]) -> None:
    """Four panels: Fig. 1 small and large rate, Fig. 18 momentum against plain GD, Fig. 19 Adam."""
    import numpy as np

    plt = pyplot()
    grid = np.linspace(-1.0, 29.0, 400 if run.fast else 2000)
    curve = [f(float(x)) for x in grid]
    large = found["large"].xs
    panels = [("Fig. 1: small learning rate", ["small"]), ("Fig. 1: large learning rate", ["large"]),
              ("Fig. 18: momentum vs plain GD", ["gd_right", "momentum"]), ("Fig. 19: Adam", ["adam", "small"])]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    colours = {"small": "tab:blue", "large": "tab:red", "gd_right": "tab:gray", "momentum": "tab:green",
               "adam": "tab:purple"}
    for ax, (title, keys) in zip(axes.flat, panels):
        ax.plot(grid, curve, color="black", linewidth=1)
        for key in keys:
            t = found[key]
            shown = [x for x in t.xs if -1.0 <= x <= 29.0]
            ax.plot(shown, [f(x) for x in shown], "o-", markersize=3, linewidth=0.7, color=colours[key], alpha=0.8,
                    label=f"{t.label} ({t.settings}): {t.status} after {t.steps} steps")
        ax.set_ylim(-8, 12)
        ax.set_xlim(-1, 24)
        if keys == ["large"]:
            # Its second step already lands far off the chart: widen the view and say where it went.
            ax.set_xlim(-1, 29)
            ax.set_ylim(-8, 1.15 * f(large[1]))
            ax.annotate(f"x2 = {large[2]:.4g}, f(x2) = {f(large[2]):.3g}\n(off the chart)", xy=(large[1], f(large[1])),
                        xytext=(8, 0.6 * f(large[1])), fontsize=8, arrowprops={"arrowstyle": "->"})
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper center")
        ax.grid(True, alpha=0.3)
    fig.suptitle("f(x) = 0.000017x^6 - 0.001133x^5 + 0.029241x^4 - 0.36691x^3 + 2.234115x^2 - 5.510020x + 4.722197",
                 fontsize=9)
    fig.tight_layout()
    save_figure(run, fig, "trajectories")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns each trajectory's end point, status and step count."""
    run = start(NAME, "Slettevold's thesis Figs. 1, 18, 19: learning rate, momentum and Adam on a 1-D polynomial", argv)
    found = runs()
    rows = [(t.label, t.settings, t.status, t.steps, t.end if abs(t.end) <= BOUND else f"{t.end:.4g}",
             f(t.end) if abs(t.end) <= BOUND else "") for t in found.values()]
    table(run, "runs.txt", ("run", "settings", "result", "steps", "last x", "f(last x)"), rows,
          title=f"Descents on Slettevold's polynomial (converged: |f'(x)| < {TOL:g} and |step| < {TOL:g})")
    large = found["large"]
    run.say("Large rate, first iterates: " + ", ".join(f"{x:.6g}" for x in large.xs[:4]))
    run.say("Fig. 18 reads 'alpha = 40'; a momentum factor must be below 1, so this demo uses alpha = 0.40.\n")
    plot(run, found)
    results = {k: {"xs": t.xs, "status": t.status, "steps": t.steps, "end": t.end} for k, t in found.items()}
    run.say(f"Key numbers: small rate -> x = {found['small'].end:.5f} after {found['small'].steps} steps; "
            f"large rate diverges after {large.steps} steps; from the right GD {found['gd_right'].steps} steps vs "
            f"momentum {found['momentum'].steps} steps; Adam ends at x = {found['adam'].end:.5f} "
            f"(f = {f(found['adam'].end):.5f}) vs GD's local minimum f = {f(found['small'].end):.5f}")
    run.finish()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
