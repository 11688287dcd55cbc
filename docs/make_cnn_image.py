"""Draw a tiny CNN made of scalar Values, collapsed by label prefix: ``python docs/make_cnn_image.py``.

A 3x3 image, a conv layer ``C1`` of two 2x2 kernels (weights ``C1.k0.w00`` ... and a bias each) with ReLU, a 2x2
max-pool ``P1`` (the op table's ``max`` rows), a linear read-out ``L2`` and a squared-error loss. ``draw`` works on
the scalar graph, so the network is written with Values; ``group="prefix", collapse=2`` folds each kernel's
~40 nodes into one box, so the drawing stays readable. Saved as docs/img/cnn.svg (rendered with graphviz-pure
unless MICROGRADX_DOT says otherwise).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from microgradx import Value
from microgradx.render import draw

HERE = Path(__file__).resolve().parent / "img"


def tiny_cnn(seed: int = 0) -> Value:
    """The loss of the network above on one seeded random image, with target 1."""
    rng = random.Random(seed)
    x = [[Value(round(rng.uniform(0, 1), 2), label=f"x{r}{c}") for c in range(3)] for r in range(3)]
    pooled = []
    for k in range(2):
        w = [[Value(round(rng.uniform(-1, 1), 2), label=f"C1.k{k}.w{i}{j}") for j in range(2)] for i in range(2)]
        b = Value(0.1, label=f"C1.k{k}.b")
        fmap = []
        for p in range(2):
            for q in range(2):
                acc = b
                for i in range(2):
                    for j in range(2):
                        acc = acc + w[i][j] * x[p + i][q + j]
                y = acc.relu()
                y.label = f"C1.k{k}.y{p}{q}"
                fmap.append(y)
        m = fmap[0].max(fmap[1]).max(fmap[2]).max(fmap[3])
        m.label = f"P1.k{k}"
        pooled.append(m)
    v = [Value(round(rng.uniform(-1, 1), 2), label=f"L2.w{k}") for k in range(2)]
    out = v[0] * pooled[0] + v[1] * pooled[1] + Value(0.0, label="L2.b")
    out.label = "out"
    loss = (out - 1.0) ** 2
    loss.label = "loss"
    return loss


def main() -> None:
    """Backpropagate the tiny CNN's loss and save the collapsed drawing."""
    os.environ.setdefault("MICROGRADX_DOT", "pure")
    loss = tiny_cnn()
    loss.backward()
    d = draw(loss, group="prefix", collapse=2, direction="LR",
             title="A tiny CNN of scalar Values: conv C1 (two 2x2 kernels, one box each), max-pool P1, linear L2")
    print(d.save(HERE / "cnn.svg"), f"({d.nodes} nodes, {d.edges} edges)")


if __name__ == "__main__":
    main()
