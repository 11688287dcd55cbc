"""Warning filters that turn NumPy's floating-point warnings into errors (``pytest -W error``, a project's
``filterwarnings = error``) change nothing: every op gives the same numbers and gradients, or the same DomainError
naming the op, as under the default filters; never NumPy's RuntimeWarning from inside the engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from microgradx import MicrogradxError, losses, nn, optim
from microgradx import functional as F
from microgradx.ops import OPS
from microgradx.tensor import Tensor, linear, node

# Values from tiny to the edge of each dtype's range: large finite entries overflow the fast finiteness check's sum
# of squares (1e155 ** 2 in float64, 1e20 ** 2 in float32), and exp, cosh, x * y or x ** 3 overflow inside ops.
EXTREMES = {np.float64: [-1e300, -1e155, -1e3, -20.0, -1.0, -1e-300, 0.0, 1e-300, 0.5, 20.0, 1e3, 1e155, 1e300],
            np.float32: [-3e38, -1e30, -1e20, -1e3, -1.0, 0.0, 1e-30, 0.5, 1e3, 1e20, 1e30, 3e38]}


def outcome(build):
    """What ``build()`` gives: ("ok", data and gradients) or (exception type, message)."""
    try:
        out, leaves = build()
        if out.requires_grad:
            out.sum().backward()
        return "ok", out.data.tolist(), [None if t.grad is None else t.grad.tolist() for t in leaves]
    except (MicrogradxError, ValueError, TypeError) as e:
        return type(e).__name__, str(e)


def assert_same_under_error_filters(build):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = outcome(build)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning escaping from the engine fails the comparison below
        try:
            got = outcome(build)
        except RuntimeWarning as e:
            got = ("RuntimeWarning escaped", str(e))
    assert got == expected


def _leaf(values, dtype):
    return Tensor(np.array(values, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_row_gives_the_same_under_error_filters(name, dtype):
    op = OPS[name]
    vals = EXTREMES[dtype]
    param = None if op.param is None else op.default
    if op.arity == 1:
        def build():
            x = _leaf(vals, dtype)
            return node(op, (x,), param), [x]
        assert_same_under_error_filters(build)
        return
    for v in vals:
        def build(v=v):
            x, y = _leaf(vals, dtype), _leaf([v] * len(vals), dtype)
            return node(op, (x, y), param), [x, y]
        assert_same_under_error_filters(build)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("scale", [1.0, 1e20, 1e30, 1e155, 1e300])
def test_tensor_ops_layers_and_losses_give_the_same_under_error_filters(dtype, scale):
    scale = min(scale, float(np.finfo(dtype).max) / 4)

    def data(*shape):  # the same numbers for the same shape, so that both runs of a case see the same input
        rng = np.random.default_rng(list(shape))
        return Tensor((rng.standard_normal(shape) * scale).astype(dtype))

    cases = {
        "creation by a cast": lambda: (Tensor(np.array([scale * 1e10, 1.0]), dtype=dtype) * 1.0, []),
        "matmul": lambda: (lambda a, b: (a @ b, [a, b]))(data(3, 4), data(4, 2)),
        "linear + relu": lambda: (lambda x, w, b: (linear(x, w, b, activation="relu"), [x, w, b]))(
            data(3, 4), data(5, 4), data(5)),
        "softmax, log_softmax": lambda: (lambda x: (x.softmax(axis=1) + x.log_softmax(axis=1), [x]))(data(3, 4)),
        "sum, mean": lambda: (lambda x: (x.sum(axis=0) * x.mean(), [x]))(data(3, 4)),
        "cross_entropy": lambda: (lambda z: (losses.cross_entropy(z, np.array([0, 2, 1])), [z]))(data(3, 4)),
        "mse": lambda: (lambda z: (losses.mse(z, np.ones((3, 4), dtype)), [z]))(data(3, 4)),
        "conv2d": lambda: (lambda x, w: (F.conv2d(x, w, padding=1), [x, w]))(data(2, 1, 5, 5), data(3, 1, 3, 3)),
        "max_pool2d": lambda: (lambda x: (F.max_pool2d(x, 2), [x]))(data(1, 2, 4, 4)),
    }
    for build in cases.values():
        assert_same_under_error_filters(build)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_gradient_sums_that_overflow_give_the_same_under_error_filters(dtype):
    big = np.array([float(np.finfo(dtype).max) * 0.6], dtype)

    def two_uses():  # two finite contributions to w whose sum overflows
        w = Tensor(np.array([1e-3], dtype))
        return (w * big) + (w * big), [w]

    def held_grad():  # this pass's gradient added to the .grad w already held
        w = Tensor(np.array([1e-3], dtype))
        w.grad = big.copy()
        return w * big, [w]

    for build in (two_uses, held_grad):
        assert_same_under_error_filters(build)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert outcome(build)[0] == "DomainError"


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=1e30), lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1), lambda ps: optim.RMSprop(ps, lr=0.1)],
                         ids=["sgd", "momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("g", [1.0, 1e20, 3e38])
def test_optimizer_steps_give_the_same_under_error_filters(make, g):
    def step():
        layer = nn.Linear(2, 2, rng=0)
        layer.weight.data = layer.weight.data.astype(np.float32)
        layer.bias.data = layer.bias.data.astype(np.float32)
        opt = make(layer.parameters())
        for p in layer.parameters():
            p.grad = np.full(p.data.shape, g, np.float32)
        try:
            opt.step()
            return "ok", [p.data.tolist() for p in layer.parameters()]
        except MicrogradxError as e:
            return type(e).__name__, str(e)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert step() == expected
