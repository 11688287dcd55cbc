"""Blain's Figure 9 and Gerald's vanishing gradient: the gradient norm of every layer of a 20-layer network
with sigmoid, tanh and ReLU, first with a naive initialisation, then with Xavier/He (Gerald's lecture slides), then with
residual connections (Blain's report, ``nn.Residual``).

Blain's report says only "a 20 layer network ... simple example created with synthetic data". Chosen here: 20 linear
layers (32 -> 32 ... -> 1) on 64 standard-normal rows, MSE against standard-normal targets, float64; naive
initialisation U[-1/sqrt(n), 1/sqrt(n)] (PyTorch's default for a linear layer's weights), biases 0. One backward
pass; for each layer the norm of its weight gradient dL/dW and of the gradient reaching its output dL/dz (z = W a +
b, Gerald's chain of factors), and the ratios first layer / last layer. dL/dW = dL/dz a^T also shrinks when the
forward signal a fades; dL/dz shows the backward pass alone.

Run ``python demos/vanishing_gradients.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from _common import Run, pyplot, save_figure, start, table

from microgradx import nn
from microgradx.losses import mse

NAME = "vanishing_gradients"
DEPTH, WIDTH, ROWS = 20, 32, 64
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
MATCHED = {"sigmoid": "xavier_uniform", "tanh": "xavier_uniform", "relu": "he_uniform"}  # Gerald's lecture slides
INIT_NAMES = {"naive": "U[-1/sqrt(n), 1/sqrt(n)]", "xavier_uniform": "Xavier", "he_uniform": "He"}


class Probe(nn.Module):
    """Passes its input through and keeps it, asking the graph to retain its gradient (dL/dz of a layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = None

    def forward(self, z):
        """z itself, remembered."""
        z.retain_grad()
        self.seen = z
        return z


def network(activation: str, init: str, residual: bool, seed: int = 0
            ) -> tuple[nn.Sequential, list[nn.Linear], list[Probe]]:
    """DEPTH linear layers with ``activation`` after all but the last; ``init`` is "naive" or a scheme of
    ``microgradx.init``. With ``residual`` the 18 middle layers are blocks x + act(Linear(x)). A ``Probe`` follows
    every linear layer."""
    rng = np.random.default_rng(seed)
    sizes = [WIDTH] * DEPTH + [1]
    linears = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layer = nn.Linear(n_in, n_out, init="he_uniform" if init == "naive" else init, dtype=np.float64, rng=rng)
        if init == "naive":
            bound = 1 / np.sqrt(n_in)
            layer.weight.data[...] = rng.uniform(-bound, bound, layer.weight.shape)
        linears.append(layer)
    act = ACTIVATIONS[activation]
    probes = [Probe() for _ in linears]
    layers: list[nn.Module] = [linears[0], probes[0], act()]
    for layer, probe in zip(linears[1:-1], probes[1:-1]):
        layers += [nn.Residual(nn.Sequential(layer, probe, act()))] if residual else [layer, probe, act()]
    layers += [linears[-1], probes[-1]]
    return nn.Sequential(*layers), linears, probes


def configurations() -> list[tuple[str, str, str, bool]]:
    """(label, activation, init, residual) for every run."""
    out = []
    for act in ACTIVATIONS:
        out.append((f"{act}, naive init", act, "naive", False))
        out.append((f"{act}, {INIT_NAMES[MATCHED[act]]} init", act, MATCHED[act], False))
        out.append((f"{act}, naive init + residual", act, "naive", True))
    return out


def layer_norms(model: nn.Sequential, linears: list[nn.Linear], probes: list[Probe], X: np.ndarray,
                y: np.ndarray) -> tuple[list[float], list[float]]:
    """One forward and backward pass; the Frobenius norms of each layer's dL/dW and dL/dz, first to last."""
    model.zero_grad()
    mse(model(X), y[:, None]).backward()
    return ([float(np.linalg.norm(layer.weight.grad)) for layer in linears],
            [float(np.linalg.norm(probe.seen.grad)) for probe in probes])


def plot(run: Run, norms: dict[str, list[float]], deltas: dict[str, list[float]]) -> None:
    """Gradient norms per layer on a log axis, one column per activation; dL/dW on top, dL/dz below."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True)
    for row, (found, what) in enumerate(((norms, "||dL/dW||"), (deltas, "||dL/dz||"))):
        for ax, act in zip(axes[row], ACTIVATIONS):
            for label, values in found.items():
                if label.startswith(act):
                    ax.semilogy(range(1, DEPTH + 1), np.maximum(values, 1e-300), marker="o", markersize=3,
                                label=label[len(act) + 2:])
            ax.set_title(f"{act}: {what}", fontsize=10)
            ax.set_xticks(range(1, DEPTH + 1, 2))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        axes[row][0].set_ylabel(f"{what} of the layer")
    for ax in axes[1]:
        ax.set_xlabel("layer (1 = next to the input)")
    fig.suptitle(f"{DEPTH}-layer network, width {WIDTH}: gradient norm per layer (one backward pass)", fontsize=10)
    save_figure(run, fig, "layer-norms")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the per-layer gradient norms and the first/last ratios of every configuration."""
    run = start(NAME, "Blain's report and Gerald's slides: per-layer gradient norms in a 20-layer network", argv)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((ROWS, WIDTH)), rng.standard_normal(ROWS)
    norms, deltas, ratios, delta_ratios, models = {}, {}, {}, {}, {}
    for label, act, init, residual in configurations():
        model, linears, probes = network(act, init, residual)
        norms[label], deltas[label] = layer_norms(model, linears, probes, X, y)
        ratios[label] = norms[label][0] / norms[label][-1]
        delta_ratios[label] = deltas[label][0] / deltas[label][-1]
        models[label] = linears
    # Full mode writes the per-layer tables; both modes print the ratios.
    if not run.fast:
        for found, stem, what in ((norms, "layer-norms-W", "||dL/dW||"), (deltas, "layer-norms-z", "||dL/dz||")):
            table(run, f"{stem}.txt", ["layer"] + list(found),
                  [[k + 1] + [found[c][k] for c in found] for k in range(DEPTH)],
                  title=f"{what} per layer (layer 1 next to the input)", digits=3)
    table(run, "ratios.txt", ("configuration", "||dL/dW|| layer 1", f"layer {DEPTH}", "ratio 1/20",
                              "||dL/dz|| layer 1", f"layer {DEPTH}", "ratio 1/20"),
          [(c, v[0], v[-1], ratios[c], deltas[c][0], deltas[c][-1], delta_ratios[c]) for c, v in norms.items()],
          digits=3, title="First layer's gradient norm against the last layer's")
    plot(run, norms, deltas)
    run.say("Key numbers, ratio first/last layer as ||dL/dW|| (||dL/dz||): "
            + "; ".join(f"{c} {r:.3g} ({delta_ratios[c]:.3g})" for c, r in ratios.items()))
    run.finish()
    return {"norms": norms, "deltas": deltas, "ratios": ratios, "delta_ratios": delta_ratios, "models": models,
            "X": X, "y": y}


if __name__ == "__main__":
    main(sys.argv[1:])
