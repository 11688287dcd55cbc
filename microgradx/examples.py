"""Worked examples from the course documents, built as labelled graphs (used by the tour, the tests and demos).

Example 3 is from Simon Slettevold's thesis "Gradient Descent Methods for Training Neural Networks"; the
two-path example o = cos(w**2) + sin(w**2) is from the lecture slides "Introduction to Deep Learning" (Unit 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from .value import Value

__all__ = ["Example3", "example3", "seed001_example3", "two_paths", "SOURCE"]

SOURCE = 'Simon Slettevold\'s thesis "Gradient Descent Methods for Training Neural Networks"'
"""Where Example 3 comes from, as user-facing text cites it."""


@dataclass
class Example3:
    """Example 3 of the thesis: one input, one sigmoid neuron per layer, squared error J = (yhat - y)**2."""

    x: Value
    y: Value
    w1: Value
    w2: Value
    z1: Value
    g1: Value
    z2: Value
    yhat: Value
    J: Value

    @property
    def nodes(self) -> list[Value]:
        """The named nodes in the order the thesis computes them."""
        return [self.x, self.w1, self.z1, self.g1, self.w2, self.z2, self.yhat, self.y, self.J]


def example3(w1: float = 0.75, w2: float = 0.5, x: float = 2.0, y: float = 0.25) -> Example3:
    """Build Example 3: z1 = x w1, z2 = g(z1) w2, yhat = g(z2), J = (yhat - y)**2 with g = sigmoid.

    >>> ex = example3(); round(ex.yhat.data, 5)
    0.6008
    >>> ex.J.backward(); round(ex.w1.grad, 5), round(ex.w2.grad, 5)
    (0.0251, 0.13757)
    """
    xv, yv = Value(x, label="x"), Value(y, label="y")
    w1v, w2v = Value(w1, label="w1"), Value(w2, label="w2")
    z1 = xv * w1v
    z1.label = "z1"
    g1 = z1.sigmoid()
    g1.label = "g(z1)"
    z2 = g1 * w2v
    z2.label = "z2"
    yhat = z2.sigmoid()
    yhat.label = "yhat"
    J = (yhat - yv) ** 2
    J.label = "J"
    return Example3(xv, yv, w1v, w2v, z1, g1, z2, yhat, J)


seed001_example3 = example3
"""The former name of ``example3``, kept so existing notebooks and scripts still run."""


def two_paths(w: float = 2.0) -> tuple[Value, Value]:
    """The two-path example of "Introduction to Deep Learning": o = cos(w**2) + sin(w**2); returns (o, w).

    >>> o, w = two_paths(); o.backward(); round(w.grad, 6)
    0.412635
    """
    wv = Value(w, label="w")
    a = wv ** 2
    a.label = "a"
    o = a.cos() + a.sin()
    o.label = "o"
    return o, wv
