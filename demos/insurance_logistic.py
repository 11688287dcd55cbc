"""The Introduction to Deep Learning unit slides' insurance example: age (and affordability) -> has insurance,
through a sigmoid; its gradient by hand against the engine's, and the decoupled view (a linear node, then an
activation node).

Run ``python demos/insurance_logistic.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from _common import Run, pyplot, save_figure, start, table

import microgradx as mx
from microgradx.optim import Adam

NAME = "insurance_logistic"

# The intro slides, "REGRESSION": age -> have insurance (15 people).
AGE = (22, 25, 47, 52, 46, 56, 55, 60, 62, 61, 18, 28, 27, 29, 49)
HAVE = (0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1)
SEED_M, SEED_B = 0.042, -1.53  # the intro slides' fitted line y = 0.042 x - 1.53 fed to the sigmoid

# The intro slides, "Application of derivative in the neural network": age, affordability -> have insurance (13 people).
AGE2 = (22, 25, 47, 52, 46, 56, 55, 60, 62, 61, 18, 28, 27)
AFFORD = (1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0)
HAVE2 = (0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0)
W1, W2, BIAS = 1.0, 1.0, 0.0  # the intro slides: "w1 = 1, w2 = 1 and bias = 0"


def sigmoid(z: float) -> float:
    """The logistic function on a float, from the op table's row."""
    return mx.OPS["sigmoid"].forward(mx.ops.FLOAT, z, 1.0)


def log_loss(z: mx.Value, y: float) -> mx.Value:
    """-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))) written as softplus(z) - y z, which never takes log 0
    (at z = 52 the sigmoid is 1.0 in floats); its derivative in z is sigmoid(z) - y."""
    return z.softplus() - y * z


def seed_line(run: Run) -> dict:
    """The intro slides' sigmoid(0.042 age - 1.53) on its 15 people; and the least-squares line it starts from."""
    import numpy as np

    rows, correct = [], 0
    for age, have in zip(AGE, HAVE):
        p = sigmoid(SEED_M * age + SEED_B)
        pred = int(p >= 0.5)
        correct += pred == have
        rows.append((age, have, SEED_M * age + SEED_B, p, pred))
    table(run, "source-line.txt", ("age", "has insurance", "y = 0.042 age - 1.53", "sigmoid(y)", "predicted"), rows,
          title="The intro slides: z = sigmoid(0.042 age - 1.53); >= 0.5 means 'will buy'")
    threshold = -SEED_B / SEED_M
    # The intro slides first fits a straight line ("any value above 0.5 will buy; anyone above 42 will buy").
    slope, intercept = np.polyfit(np.array(AGE, float), np.array(HAVE, float), 1)
    crossing = (0.5 - intercept) / slope
    run.say(f"sigmoid(0.042 age - 1.53) = 0.5 at age {threshold:.2f}; it classifies {correct} of {len(AGE)} correctly.")
    run.say(f"The least-squares straight line is {slope:.5f} age {intercept:+.5f}; it crosses 0.5 at age "
            f"{crossing:.2f} (the document reads 'above 42' off its plot).\n")
    return {"seed_threshold": threshold, "seed_correct": int(correct), "linear_slope": float(slope),
            "linear_intercept": float(intercept), "linear_crossing": float(crossing)}


def fit(run: Run, steps: int) -> dict:
    """Fit sigmoid(m age + b) by minimising the mean log loss with Adam on scalar Values (age standardised)."""
    mean = sum(AGE) / len(AGE)
    std = math.sqrt(sum((a - mean) ** 2 for a in AGE) / len(AGE))
    u = [(a - mean) / std for a in AGE]  # standardised ages: one learning rate suits both parameters
    m, b = mx.Value(0.0, label="m"), mx.Value(0.0, label="b")
    opt = Adam([m, b], lr=0.1)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = sum((log_loss(m * ui + b, y) for ui, y in zip(u, HAVE)), mx.Value(0.0)) * (1 / len(u))
        loss.backward()
        history.append(loss.data)
        opt.step()
    slope, intercept = m.data / std, b.data - m.data * mean / std
    run.say(f"Engine fit after {steps} Adam steps (lr 0.1, standardised age): sigmoid({slope:.5f} age "
            f"{intercept:+.5f}), mean log loss {history[-1]:.5f}; 0.5 at age {-intercept / slope:.2f}\n")
    return {"fit_slope": slope, "fit_intercept": intercept, "fit_loss": history[-1], "fit_history": history}


def gradients(run: Run) -> dict:
    """The intro slides' two-feature network at w1 = w2 = 1, b = 0: the highlighted row, the log loss and its gradient
    by the document's formulas (1/n) sum x (yhat - y) against the engine's backward."""
    n = len(AGE2)
    w1, w2, b = mx.Value(W1, label="w1"), mx.Value(W2, label="w2"), mx.Value(BIAS, label="b")
    zs = [w1 * x1 + w2 * x2 + b for x1, x2 in zip(AGE2, AFFORD)]
    loss = sum((log_loss(z, y) for z, y in zip(zs, HAVE2)), mx.Value(0.0)) * (1 / n)
    loss.backward()
    yhat = [sigmoid(z.data) for z in zs]
    by_hand = (sum(x * (p - y) for x, p, y in zip(AGE2, yhat, HAVE2)) / n,
               sum(x * (p - y) for x, p, y in zip(AFFORD, yhat, HAVE2)) / n,
               sum(p - y for p, y in zip(yhat, HAVE2)) / n)
    rows = [(name, hand, v.grad, abs(hand - v.grad)) for name, hand, v in zip(("w1", "w2", "b"), by_hand, (w1, w2, b))]
    table(run, "gradient.txt", ("parameter", "(1/n) sum x (yhat - y)", "engine backward", "|difference|"), rows,
          title=f"Mean log loss at w1 = w2 = 1, b = 0 on the intro slides' 13 people: {loss.data:.5f}", digits=8)
    z0, p0 = zs[0].data, yhat[0]
    run.say(f"Highlighted row (age 22, affordability 1, no insurance): y = 1*22 + 1*1 + 0 = {z0:g}, "
            f"yhat = sigmoid({z0:g}) = {p0:.12f} (the document rounds to 0.99);")
    run.say(f"  error (0 - yhat)**2 = {(0 - p0) ** 2:.10f}; with the document's rounded 0.99: {(0 - 0.99) ** 2:.4f}")
    run.say(f"The document's 'log loss = 4.31 after the first epoch' does not follow from these weights: the mean "
            f"log loss "
            f"at w1 = w2 = 1, b = 0 is {loss.data:.4f} (ages unscaled).\n")
    return {"z_row0": z0, "yhat_row0": p0, "error_row0": (0 - p0) ** 2, "log_loss": loss.data,
            "grad_by_hand": by_hand, "grad_engine": (w1.grad, w2.grad, b.grad)}


def decoupled(run: Run) -> dict:
    """One row through a linear node and an activation node: g_a = g_yhat * sigmoid'(a), g_w = x * g_a."""
    rows, found = [], {}
    for label, age in (("age 22 (raw)", 22.0), ("age 0.22 (age / 100)", 0.22)):
        w1, w2, b = mx.Value(W1, label="w1"), mx.Value(W2, label="w2"), mx.Value(BIAS, label="b")
        a = w1 * age + w2 * 1.0 + b
        a.label = "a"
        yhat = a.sigmoid()
        yhat.label = "yhat"
        err = (0.0 - yhat) ** 2  # the intro slides' Error = (y - yhat)**2 for the highlighted row (y = 0)
        err.backward()
        g_yhat = 2 * (yhat.data - 0.0)              # through the loss: dE/dyhat
        g_a = g_yhat * yhat.data * (1 - yhat.data)  # through the activation: times sigmoid'(a)
        g_w1 = age * g_a                            # through the linear node: times its input
        rows.append((label, a.data, yhat.data, g_yhat, yhat.grad, g_a, a.grad, g_w1, w1.grad))
        found[label] = {"a_grad": a.grad, "g_a": g_a, "w1_grad": w1.grad, "g_w1": g_w1}
    table(run, "decoupled.txt", ("input", "a = w.x + b", "yhat", "g_yhat by hand", "engine", "g_a by hand", "engine",
                                 "g_w1 by hand", "engine"), rows,
          title="Decoupled view, Error = (0 - yhat)**2 on the highlighted row: linear node a, then activation yhat",
          digits=6)
    run.say("At a = 23 the sigmoid is saturated: sigmoid'(23) ~ 1e-10 wipes out the gradient reaching the weights;"
            " with ages scaled by 1/100 it flows.\n")
    return found


def plot(run: Run, found: dict) -> None:
    """The 15 people, the document's sigmoid, the engine's fitted sigmoid and the least-squares line."""
    import numpy as np

    plt = pyplot()
    ages = np.linspace(10, 70, 300)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.scatter(AGE, HAVE, color="black", zorder=3, label="the intro slides data")
    ax.plot(ages, [sigmoid(SEED_M * a + SEED_B) for a in ages], label="seed: sigmoid(0.042 age - 1.53)")
    ax.plot(ages, [sigmoid(found["fit_slope"] * a + found["fit_intercept"]) for a in ages],
            label=f"engine fit: sigmoid({found['fit_slope']:.3f} age {found['fit_intercept']:+.2f})")
    ax.plot(ages, found["linear_slope"] * ages + found["linear_intercept"], linestyle="--",
            label="least-squares line")
    ax.axhline(0.5, color="0.6", linewidth=0.7)
    ax.set_xlabel("age")
    ax.set_ylabel("has insurance / probability")
    ax.set_ylim(-0.2, 1.2)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("The intro slides: who buys insurance?", fontsize=10)
    save_figure(run, fig, "insurance")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the source line's threshold, the engine fit, the gradients and the decoupled deltas."""
    run = start(NAME, "the intro slides' insurance example: sigmoid, gradient by hand vs engine, decoupled view", argv)
    found = seed_line(run)
    found.update(fit(run, 300 if run.fast else 2000))
    found.update(gradients(run))
    found["decoupled"] = decoupled(run)
    plot(run, found)
    run.say(f"Key numbers: seed line 0.5 at age {found['seed_threshold']:.2f} ({found['seed_correct']}/15 correct); "
            f"least squares 0.5 at {found['linear_crossing']:.2f}; engine fit sigmoid({found['fit_slope']:.4f} age "
            f"{found['fit_intercept']:+.4f}); row 1 yhat = {found['yhat_row0']:.10f}; dL/dw1 = "
            f"{found['grad_engine'][0]:.6f} (by hand {found['grad_by_hand'][0]:.6f})")
    run.finish()
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
