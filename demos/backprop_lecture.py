"""Backprop for the lecture hall: Slettevold's worked example (Gradient Descent Methods for Training Neural
Networks, Example 3) drawn, stepped through as a table and as an interactive page, then a small network trained
with a progress bar and its curves. In a notebook every one of these shows inline.

Run ``python demos/backprop_lecture.py [--fast] [--out DIR]``; the notebook ``backprop_lecture.ipynb`` beside it
is the same code (paired with jupytext).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _common import Run, save_drawing, save_figure, show, start

import microgradx as mx
from microgradx.examples import example3
from microgradx.train import History, fit, mlp, plot_histories, prepare

NAME = "backprop_lecture"


def stepped(run: Run) -> dict[str, float]:
    """The example's graph, its backward pass as a table, and the page that steps through it; returns the
    inputs' gradients."""
    ex = example3()
    save_drawing(run, mx.draw(ex.J, grads=False, title="forward: values only"), "forward")
    s = mx.step(ex.J).run()
    table = s.table()
    run.say(f"The backward pass, one row per edge:\n{table}\n")
    show(table)
    page = s.to_html(run.path("backprop.html"))
    run.written.append(run.path("backprop.html"))
    run.say(f"dJ/dw1 = {ex.w1.grad:.5f}, dJ/dw2 = {ex.w2.grad:.5f}; the page backprop.html steps through it "
            "(open it in a browser: next/back or the arrow keys; click an input for its paths).")
    show(page)
    return {leaf.label: leaf.grad for leaf in (ex.x, ex.y, ex.w1, ex.w2)}


def trained(run: Run) -> History:
    """A 64-32-10 network on the 8x8 digits, with a progress bar in a notebook (none in a log)."""
    data = prepare("digits", seed=0)
    net = mlp([data.X_train.shape[1], 32, 10], rng=0)
    h = fit(net, "cross_entropy", mx.optim.Adam(net.parameters(), lr=0.01), (data.X_train, data.y_train),
            epochs=2 if run.fast else 15, batch_size=32, metrics=["accuracy"],
            validation=(data.X_test, data.y_test), seed=0, label="adam")
    run.say(repr(h))
    show(h)
    save_figure(run, plot_histories(h, title="a 64-32-10 network on the digits"), "curves")
    return h


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the gradients of the worked example and the training history."""
    run = start(NAME, "the worked example drawn, stepped and paged; a network trained with a progress bar", argv)
    grads = stepped(run)
    h = trained(run)
    run.finish()
    return {"gradients": grads, "history": h, "out": run.out}


if __name__ == "__main__":
    main(sys.argv[1:])
