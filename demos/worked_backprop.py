"""Slettevold's thesis, Example 3, worked by the engine: forward values, the backward pass step by step, one descent
step.

Run ``python demos/worked_backprop.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _common import Run, save_drawing, start, table

import microgradx as mx
from microgradx.examples import Example3, example3
from microgradx.text import formula, name

NAME = "worked_backprop"
LR = 1.0  # Slettevold's thesis: "let us set the learning rate constant and equal to 1"


def forward_table(run: Run, ex: Example3, filename: str, title: str) -> None:
    """Print and write each named node of the example: its formula and its value."""
    rows = [(name(n), formula(n), n.data) for n in ex.nodes]
    table(run, filename, ("node", "formula", "value"), rows, title=title)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns its key numbers (forward values, gradients, updated weights, new prediction)."""
    run = start(NAME, "Slettevold's thesis Example 3: forward, stepped backward, one step with learning rate 1", argv)
    ex = example3()
    forward_table(run, ex, "forward.txt", "Forward pass (x = 2, y = 0.25, w1 = 0.75, w2 = 0.5, g = sigmoid)")
    save_drawing(run, mx.draw(ex.J, grads=False, direction="TB", title="Example 3: forward pass"), "1-forward")

    # The stepper drives the very generator backward() runs, one node per step.
    stepper = mx.step(ex.J)
    for _ in stepper:
        pass
    run.say("Backward pass, node by node: S(node) = dJ/dnode, S(parent) += S(node) * z(parent, node)")
    text = stepper.table()
    run.path("backward.txt").write_text(text + "\n")
    run.say(text + "\n")
    save_drawing(run, mx.draw(ex.J, highlight=mx.paths(ex.J, ex.w1), direction="TB",
                              title="Example 3 after backward; the path from w1 highlighted"), "2-backward")

    dw1, dw2 = ex.w1.grad, ex.w2.grad
    w1, w2 = ex.w1.data - LR * dw1, ex.w2.data - LR * dw2
    after = example3(w1=w1, w2=w2)
    table(run, "step.txt", ("quantity", "before", "after"), [
        ("w1", ex.w1.data, w1), ("w2", ex.w2.data, w2), ("dJ/dw1", dw1, ""), ("dJ/dw2", dw2, ""),
        ("yhat", ex.yhat.data, after.yhat.data), ("yhat - y", ex.yhat.data - ex.y.data, after.yhat.data - after.y.data),
        ("J", ex.J.data, after.J.data)], title=f"One gradient-descent step, W <- W - {LR:g} * grad J")
    forward_table(run, after, "forward-after.txt", "Forward pass with the new weights")
    save_drawing(run, mx.draw(after.J, grads=False, direction="TB", title="Example 3 after one step: forward pass"),
                 "3-after-step")
    # The document redoes the forward pass with the weights rounded to 5 decimals; so do we, to show its z values.
    rounded = example3(w1=round(w1, 5), w2=round(w2, 5))
    run.say(f"With the weights rounded as in the seed, ({round(w1, 5):.5f}, {round(w2, 5):.5f}): "
            f"z1 = {rounded.z1.data:.5f}, g(z1) = {rounded.g1.data:.5f}, z2 = {rounded.z2.data:.5f}, "
            f"yhat = {rounded.yhat.data:.5f}\n")

    results = {"z1": ex.z1.data, "g1": ex.g1.data, "z2": ex.z2.data, "yhat": ex.yhat.data, "J": ex.J.data,
               "dJ/dw1": dw1, "dJ/dw2": dw2, "w1_new": w1, "w2_new": w2, "z1_new": after.z1.data,
               "g1_new": after.g1.data, "z2_new": after.z2.data, "yhat_new": after.yhat.data,
               "z1_rounded": rounded.z1.data, "z2_rounded": rounded.z2.data,
               "backward_steps": stepper.total}
    run.say("Key numbers (Slettevold's thesis prints dJ/dw1 = 0.02510, dJ/dw2 = 0.13757, W = (0.72490, 0.36243), "
            "yhat 0.60080 -> 0.57287):")
    run.say(f"  dJ/dw1 = {dw1:.5f}   dJ/dw2 = {dw2:.5f}   W = ({w1:.5f}, {w2:.5f})   "
            f"yhat {ex.yhat.data:.5f} -> {after.yhat.data:.5f}")
    run.finish()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
