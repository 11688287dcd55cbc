"""Regenerate the drawings in docs/img with microgradx itself: ``python docs/make_images.py``.

They are rendered with graphviz-pure, which writes the same bytes on every platform, unless MICROGRADX_DOT
says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microgradx import losses, paths
from microgradx.examples import example3
from microgradx.render import draw
from microgradx.scalar_nn import MLP
from microgradx.train import mlp

HERE = Path(__file__).resolve().parent / "img"


def main() -> None:
    """Example 3 after backward (the path from w1 highlighted), as a page figure and as a 16:9 slide, and the
    same small MLP drawn as a scalar graph and as a tensor graph."""
    os.environ.setdefault("MICROGRADX_DOT", "pure")
    ex = example3()
    ex.J.backward()
    d = draw(ex.J, highlight=paths(ex.J, ex.w1), direction="TB",
             title="Example 3 after backward: z(i, j) and S(j) * z(i, j) on each edge")
    print(d.save(HERE / "example3.svg"))
    slide = draw(ex.J, theme="slide", size="16:9", highlight=paths(ex.J, ex.w1))
    print(slide.save(HERE / "example3-slide.png"))

    # A 2-3-1 network on one input with a squared error, once of Values and once of Tensors.
    model = MLP(2, [3, 1], seed=0)
    pred = model([0.5, -1.0])
    loss = (pred - 1.0) ** 2
    loss.label = "loss"
    loss.backward()
    print(draw(loss, collapse=1, title="2-3-1 MLP of Values, one box per layer").save(HERE / "mlp-scalar.svg"))

    net = mlp([2, 3, 1], activation="tanh", rng=0)
    x = np.array([[0.5, -1.0]])
    tloss = losses.mse(net(x), np.array([[1.0]]))
    tloss.backward()
    print(draw(tloss, model=net, title="The same 2-3-1 MLP as Tensors: shapes, values, gradient norms").save(
        HERE / "mlp-tensor.svg"))


if __name__ == "__main__":
    main()
