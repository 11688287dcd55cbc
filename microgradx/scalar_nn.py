"""Neurons, layers and MLPs made of scalar Values, with labelled parameters, for small lessons."""

from __future__ import annotations

import random
from collections.abc import Sequence

from . import fast
from .ops import DomainError, method_names
from .value import Value

__all__ = ["Neuron", "Layer", "MLP", "sgd_step"]

# Any one-input op of the table can be an activation (its number parameter, if any, takes its default).
_ACTIVATIONS = set(method_names(1))


class Neuron:
    """One neuron: activation(sum_i w_i x_i + b), parameters labelled ``{label}.w0``, ..., ``{label}.b``.

    >>> n = Neuron(2, activation="tanh", label="n0", seed=0)
    >>> [p.label for p in n.parameters()]
    ['n0.w0', 'n0.w1', 'n0.b']
    """

    def __init__(self, nin: int, activation: str | None = "tanh", *, bias: bool = True, label: str = "n",
                 seed: int | random.Random | None = None) -> None:
        rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        if activation is not None and activation not in _ACTIVATIONS:
            raise ValueError(f"Neuron: unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.w = [Value(rng.uniform(-1, 1), label=f"{label}.w{i}") for i in range(nin)]
        self.b = Value(0.0, label=f"{label}.b") if bias else None
        self.activation = activation
        self.label = label

    def __call__(self, x: Sequence[Value | float]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"{self.label}: expected {len(self.w)} inputs, got {len(x)}")
        # The same nodes in one call (microgradx.fast); None when it hands the sum back to the loop below.
        acc = fast.value_weighted_sum(Value, self.w, x, self.b)
        if acc is None:
            acc = self.w[0] * x[0]
            for wi, xi in zip(self.w[1:], x[1:]):
                acc = acc + wi * xi
            if self.b is not None:
                acc = acc + self.b
        return getattr(acc, self.activation)() if self.activation else acc

    def parameters(self) -> list[Value]:
        """The weights, then the bias."""
        return self.w + ([self.b] if self.b is not None else [])


class Layer:
    """``nout`` neurons reading the same inputs; neuron k of layer ``L1`` is labelled ``L1.n{k}``.

    >>> layer = Layer(3, 2, label="L1", seed=0); len(layer([1.0, 2.0, 3.0]))
    2
    """

    def __init__(self, nin: int, nout: int, activation: str | None = "tanh", *, bias: bool = True,
                 label: str = "L1", seed: int | random.Random | None = None) -> None:
        rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.neurons = [Neuron(nin, activation, bias=bias, label=f"{label}.n{k}", seed=rng) for k in range(nout)]
        self.label = label

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        # A float input becomes one Value shared by every neuron (not one per neuron): one node x0 in drawings.
        x = [xi if isinstance(xi, Value) else self._leaf(xi, i) for i, xi in enumerate(x)]
        return [n(x) for n in self.neurons]

    def _leaf(self, xi: float, i: int) -> Value:
        # NOTE: Value's own rule, not float(): float("1") and float(True) would pass a string or a bool as 1.0.
        try:
            return Value(xi, label=f"x{i}")
        except DomainError as e:
            raise DomainError(f"{self.label}: input x{i}: {e}", e.op, e.value, f"x{i}") from None
        except TypeError as e:
            raise TypeError(f"{self.label}: input x{i}: {e}") from None

    def parameters(self) -> list[Value]:
        """Every neuron's parameters, in order."""
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    """Layers ``L1``, ``L2``, ...: hidden layers use ``activation``, the last one ``output_activation``.

    >>> model = MLP(2, [16, 16, 1], seed=0)
    >>> len(model.parameters()), model.parameters()[0].label
    (337, 'L1.n0.w0')
    >>> model([0.5, -1.0]).data != 0
    True
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str | None = "tanh", *,
                 output_activation: str | None = None, bias: bool = True, seed: int | None = None) -> None:
        rng = random.Random(seed)
        sizes = [nin, *nouts]
        self.layers = [
            Layer(sizes[k], sizes[k + 1], activation if k < len(nouts) - 1 else output_activation,
                  bias=bias, label=f"L{k + 1}", seed=rng)
            for k in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        out: list = list(x)
        for layer in self.layers:
            out = layer(out)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """Every layer's parameters, in order."""
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to 0."""
        for p in self.parameters():
            p.grad = 0.0


def sgd_step(params: Sequence[Value], lr: float) -> None:
    """Plain gradient descent, w <- w - lr * dL/dw, on each parameter's ``data``.

    >>> w = Value(0.75); (w * 2.0).backward(); sgd_step([w], 0.1); w.data
    0.55
    """
    for p in params:
        p.data -= lr * p.grad
