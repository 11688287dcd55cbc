"""The layers homework, one record per function pair in ``PAIRS``: how its arguments are drawn (the course
notebook's plain case and the edge cases it skips), its reference built from microgradx's Tensor ops (forward,
and the backward as their VJP), and the usual mistakes, each a wrong answer the hint can be read off.

>>> [p.name for p in PAIRS][:4]
['affine', 'relu', 'sigmoid', 'tanh']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..functional import batch_norm, conv2d, max_pool2d
from ..losses import cross_entropy
from ..tensor import Tensor

__all__ = ["Case", "Pair", "Edge", "Mistake", "PAIRS", "PAIR_NAMES", "Conventions", "expected", "central",
           "diagnose", "BN_MOMENTUM", "EPS"]

EPS = 1e-5          # the template's default eps (bn_param.get("eps", 1e-5))
BN_MOMENTUM = 0.9   # the template's running average: running = 0.9 running + 0.1 batch, variance biased (np.var)


@dataclass(frozen=True)
class Conventions:
    """What a course's template declares; the defaults follow the current cs231n-style template."""

    dropout_p: str = "keep"                                   # "keep" or "drop": what dropout_param["p"] means
    groupnorm_gamma: str = "1C11"                             # gamma and beta of group norm: (1, C, 1, 1) or "C"
    conv_param: tuple[str, ...] = ("stride", "pad")           # key order of the dicts the grader builds
    pool_param: tuple[str, ...] = ("pool_height", "pool_width", "stride")


@dataclass(eq=False)
class Case:
    """One drawn call: the pair, the named input arrays in call order, the dict argument in the template's key
    order, the upstream gradients and the seed the values came from.

    >>> c = Case("relu", {"x": np.ones((1, 2))}, None, (np.ones((1, 2)),), 0); c.describe()
    'relu: x (1, 2); values from seed 0'
    """

    pair: str
    arrays: dict[str, np.ndarray]
    param: dict[str, Any] | None
    douts: tuple[np.ndarray, ...]
    seed: int
    mode: str = "train"
    numbers: dict[str, int] | None = None   # plain numbers passed after the arrays (group norm's G)

    def describe(self) -> str:
        """Shapes, parameters and the seed: what a student needs to reproduce the call."""
        shapes = ", ".join([f"{k} {tuple(v.shape)}" for k, v in self.arrays.items()] +
                           [f"{k} = {v}" for k, v in (self.numbers or {}).items()])
        param = ""
        if self.param is not None:
            shown = {k: (f"array {tuple(v.shape)}" if isinstance(v, np.ndarray) else v) for k, v in self.param.items()}
            param = f"; {PAIRS_BY_NAME[self.pair].param} {shown}"
        return f"{self.pair}: {shapes}{param}; values from seed {self.seed}"


@dataclass(frozen=True)
class Mistake:
    """A usual wrong answer: ``kind`` names it, ``text`` is the hint, ``wrong`` computes the arrays (by name) a
    file with this mistake returns, or None where the mistake cannot show on this case."""

    kind: str
    text: str
    wrong: Callable[[Case, dict], dict | None]
    edge: str | None = None   # the edge case's variant where it shows first (None: the plain case)


@dataclass(frozen=True)
class Edge:
    """An edge case the notebooks skip, graded as its own rule ``name[pair]`` once the plain rules pass."""

    name: str
    title: str
    variant: str
    compares: tuple[str, ...] = ("forward", "backward")
    weight: float = 1.0
    hint: str = ""        # what to look at when none of the usual mistakes explains a failure here


@dataclass(frozen=True)
class Pair:
    """One function pair of the layout: template names, inputs, outputs, what backward returns, the dict
    argument, the reference, how cases are drawn, its edge cases and its usual mistakes."""

    name: str
    forward: str
    backward: str | None              # None: one function returning (loss, dx)
    inputs: tuple[str, ...]           # arrays passed to forward, in order (labels too)
    outputs: tuple[str, ...]          # what forward returns before the cache
    grads: tuple[str, ...]            # what backward returns, each d(input name)
    reference: Callable[[dict[str, Tensor], Case, Conventions], tuple[Tensor, ...]]
    draw: Callable[[Any, str], Case]  # (Hypothesis draw, variant) -> Case
    param: str | None = None          # the dict argument's name in the template
    edges: tuple[Edge, ...] = ()
    mistakes: tuple[Mistake, ...] = ()
    loose: tuple[str, ...] = ()       # arrays compared without unit axes (parameters stored as (1, D) or (D,))
    title: str = ""
    plain: str = ""                   # the case the course notebook checks, which the plain rules draw
    state: tuple[str, ...] = ()       # entries of the dict argument read back after forward (running stats)

    @property
    def loss(self) -> bool:
        return self.backward is None

    def forward_names(self) -> tuple[str, ...]:
        """The arrays a forward rule compares: the outputs (a loss function's dx is its backward)."""
        return tuple(o for o in self.outputs if o not in self.grads)

    def grad_names(self) -> tuple[str, ...]:
        return self.grads

    def functions(self) -> tuple[str, ...]:
        return (self.forward,) if self.backward is None else (self.forward, self.backward)


# ---------------------------------------------------------------------------------------------------------
# Drawing values: Hypothesis draws the sizes and a seed (so shrinking gives the smallest shapes and seed 0)
# ---------------------------------------------------------------------------------------------------------

def _rng(draw: Any) -> tuple[np.random.Generator, int]:
    from hypothesis import strategies as st

    seed = draw(st.integers(0, 2 ** 16))
    return np.random.default_rng(seed), seed


def _size(draw: Any, lo: int, hi: int) -> int:
    from hypothesis import strategies as st

    return draw(st.integers(lo, hi))


def _away(a: np.ndarray, gap: float = 0.1) -> np.ndarray:
    """Values at least ``gap`` from 0, so a kink at 0 is never within a central difference's step."""
    return np.where(a >= 0, a + gap, a - gap)


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Entries at least 0.1 apart: no two tie, so max pooling's gradient is unique."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + rng.uniform(0, 0.01, n) - 0.05 * n).reshape(shape)


def _batch(draw: Any, variant: str, lo: int = 2, hi: int = 4) -> int:
    return 1 if variant == "batch1" else _size(draw, lo, hi)


def _draw_affine(draw: Any, variant: str) -> Case:
    rng, seed = _rng(draw)
    n = _batch(draw, variant)
    dims = tuple(_size(draw, 1, 3) for _ in range(_size(draw, 1, 3)))
    m = _size(draw, 1, 4)
    d = int(np.prod(dims))
    x = rng.standard_normal((n, *dims))
    return Case("affine", {"x": x, "w": rng.standard_normal((d, m)), "b": rng.standard_normal(m)}, None,
                (rng.standard_normal((n, m)),), seed)


def _draw_elementwise(name: str) -> Callable[[Any, str], Case]:
    def make(draw: Any, variant: str) -> Case:
        rng, seed = _rng(draw)
        shape = (_batch(draw, variant), _size(draw, 1, 5))
        x = _away(rng.standard_normal(shape))
        if variant == "zero":
            x = np.where(rng.random(shape) < 0.5, 0.0, x)
            x.flat[0] = 0.0
        return Case(name, {"x": x}, None, (rng.standard_normal(shape),), seed)
    return make


def _labels(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return rng.integers(0, c, n)


def _draw_loss(name: str) -> Callable[[Any, str], Case]:
    def make(draw: Any, variant: str) -> Case:
        rng, seed = _rng(draw)
        n, c = _batch(draw, variant, 2, 5), _size(draw, 2, 5)
        x = rng.standard_normal((n, c))
        y = _labels(rng, n, c)
        if variant == "large":
            x = x * 1000.0
        if name == "svm":
            # No margin within 0.01 of the hinge: the loss is differentiable there.
            correct = x[np.arange(n), y][:, None]
            margin = x - correct + 1.0
            x = np.where(np.abs(margin) < 0.01, x + 0.05, x)
            x[np.arange(n), y] = correct[:, 0]
        return Case(name, {"x": x, "y": y}, None, (), seed)
    return make


def _draw_norm(name: str) -> Callable[[Any, str], Case]:
    def make(draw: Any, variant: str) -> Case:
        rng, seed = _rng(draw)
        n, d = _size(draw, 3, 6), _size(draw, 1, 4)
        x = rng.standard_normal((n, d)) * 2.0 + rng.standard_normal(d)
        gamma, beta = rng.uniform(0.5, 2.0, d), rng.standard_normal(d)
        mode = "test" if variant == "test" else "train"
        if name == "layernorm":
            param: dict[str, Any] = {}
        elif variant in ("test", "running"):
            param = {"mode": mode, "running_mean": rng.standard_normal(d), "running_var": rng.uniform(0.5, 2.0, d)}
        else:
            param = {"mode": "train"}
        return Case(name, {"x": x, "gamma": gamma, "beta": beta}, param, (rng.standard_normal((n, d)),), seed,
                    mode)
    return make


def _draw_dropout(draw: Any, variant: str) -> Case:
    rng, seed = _rng(draw)
    if variant == "rate":   # big enough that the fraction kept tells keep from drop (sd 0.01 around p)
        shape: tuple[int, ...] = (4, 500)
    elif variant == "mask":
        shape = (8, 16)
    else:
        shape = (_size(draw, 1, 4), _size(draw, 1, 6))
    x = _away(rng.standard_normal(shape))
    p = 0.5 if variant == "mask" else 0.3
    mode = "test" if variant == "test" else "train"
    return Case("dropout", {"x": x}, {"mode": mode, "p": p, "seed": seed}, (rng.standard_normal(shape),), seed,
                mode)


def _draw_groupnorm(draw: Any, variant: str) -> Case:
    rng, seed = _rng(draw)
    g = _size(draw, 1, 3)
    n, c, h, w = _size(draw, 1, 3), g * _size(draw, 1, 2), _size(draw, 1, 3), _size(draw, 2, 3)
    x = rng.standard_normal((n, c, h, w)) * 2.0 + rng.standard_normal((1, c, 1, 1))
    return Case("groupnorm", {"x": x, "gamma": rng.uniform(0.5, 2.0, c), "beta": rng.standard_normal(c)}, {},
                (rng.standard_normal((n, c, h, w)),), seed, numbers={"G": g})


def _conv_sizes(draw: Any, variant: str) -> tuple[int, int, int, int, int, int]:
    """H, W, HH, WW, stride, pad with (H + 2 pad - HH) divisible by the stride, as the template's dims are."""
    stride, pad = (2, 1) if variant == "stride2" else (1, 0) if variant == "pad0" else (1, 1)
    if variant == "nonsquare":
        hh, ww = _size(draw, 1, 3), _size(draw, 1, 3)
        if hh == ww:
            ww = hh + 1
    else:
        hh = ww = 3
    h = _size(draw, max(hh - 2 * pad, 1), 5)
    w = h if variant != "nonsquare" else _size(draw, max(ww - 2 * pad, 1), 5)
    if variant == "nonsquare" and w == h:
        w = h + 1
    h += (h + 2 * pad - hh) % stride
    w += (w + 2 * pad - ww) % stride
    return h, w, hh, ww, stride, pad


def _draw_conv(draw: Any, variant: str) -> Case:
    rng, seed = _rng(draw)
    n, c, f = _size(draw, 1, 2), _size(draw, 1, 3), _size(draw, 1, 3)
    h, w, hh, ww, stride, pad = _conv_sizes(draw, variant)
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (w + 2 * pad - ww) // stride
    return Case("conv", {"x": rng.standard_normal((n, c, h, w)), "w": rng.standard_normal((f, c, hh, ww)),
                         "b": rng.standard_normal(f)}, {"stride": stride, "pad": pad},
                (rng.standard_normal((n, f, ho, wo)),), seed)


def _draw_pool(draw: Any, variant: str) -> Case:
    rng, seed = _rng(draw)
    n, c = _size(draw, 1, 2), _size(draw, 1, 3)
    if variant == "overlap":
        ph = pw = _size(draw, 2, 3)
        stride = ph - 1
    elif variant == "nonsquare":
        ph, pw = _size(draw, 1, 3), _size(draw, 1, 3)
        if ph == pw:
            pw = ph + 1
        stride = max(ph, pw)  # windows that do not overlap: overlapping is its own rule
    else:
        ph = pw = stride = 2
    ho, wo = _size(draw, 1, 3), _size(draw, 1, 3)
    if variant not in ("nonsquare",):
        wo = ho
    h, w = (ho - 1) * stride + ph, (wo - 1) * stride + pw
    x = _distinct(rng, (n, c, h, w))
    if variant == "ties":
        x = rng.integers(0, 2, (n, c, h, w)).astype(float)
        x[..., :2, :2] = 1.0  # one window that certainly ties
    return Case("maxpool", {"x": x}, {"pool_height": ph, "pool_width": pw, "stride": stride},
                (rng.standard_normal((n, c, ho, wo)),), seed)


def _draw_rnn(name: str) -> Callable[[Any, str], Case]:
    def make(draw: Any, variant: str) -> Case:
        rng, seed = _rng(draw)
        n, d, h = _batch(draw, variant, 2, 3), _size(draw, 1, 4), _size(draw, 1, 3)
        gates = 4 * h if name == "lstm" else h
        arrays = {"x": rng.standard_normal((n, d)), "prev_h": rng.standard_normal((n, h))}
        if name == "lstm":
            arrays["prev_c"] = rng.standard_normal((n, h))
        arrays.update(Wx=rng.standard_normal((d, gates)) * 0.5, Wh=rng.standard_normal((h, gates)) * 0.5,
                      b=rng.standard_normal(gates))
        douts = tuple(rng.standard_normal((n, h)) for _ in range(2 if name == "lstm" else 1))
        return Case(name, arrays, None, douts, seed)
    return make


def _draw_embedding(draw: Any, variant: str) -> Case:
    rng, seed = _rng(draw)
    n, t, d = _size(draw, 1, 3), _size(draw, 1, 4), _size(draw, 1, 3)
    if variant == "repeats":   # the same word more than once: its gradient rows must add up
        v = _size(draw, 1, 3)
        x = rng.integers(0, v, (n, t))
        x.flat[0] = x.flat[-1] = 0
        if x.size == 1:
            x = np.zeros((n, 2), dtype=np.int64)
            t = 2
    else:                      # every word once
        v = n * t + _size(draw, 0, 2)
        x = rng.permutation(v)[:n * t].reshape(n, t)
    return Case("embedding", {"x": x, "W": rng.standard_normal((v, d))}, None,
                (rng.standard_normal((n, t, d)),), seed)


# ---------------------------------------------------------------------------------------------------------
# References: microgradx's Tensor ops
# ---------------------------------------------------------------------------------------------------------

def _ref_affine(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    x = t["x"]
    return (x.reshape(x.shape[0], -1) @ t["w"] + t["b"],)


def _ref_softmax(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    return (cross_entropy(t["x"], case.arrays["y"]),)


def _ref_svm(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    x, y = t["x"], case.arrays["y"]
    n = x.shape[0]
    correct = x.gather(y[:, None], axis=1)
    others = Tensor(np.ones(x.shape) - np.eye(x.shape[1])[y], requires_grad=False)
    return (((x - correct + 1.0).relu() * others).sum() / float(n),)


def _ref_batchnorm(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    p = case.param
    if case.mode == "test":
        return (batch_norm(t["x"], t["gamma"], t["beta"], p["running_mean"].copy(), p["running_var"].copy(),
                           training=False, eps=EPS),)
    return (batch_norm(t["x"], t["gamma"], t["beta"], eps=EPS),)


def _ref_layernorm(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    x = t["x"]
    xc = x - x.mean(axis=1, keepdims=True)
    var = (xc * xc).mean(axis=1, keepdims=True)
    return (xc * (var + EPS) ** -0.5 * t["gamma"] + t["beta"],)


def _ref_groupnorm(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    x = t["x"]
    n, c, h, w = x.shape
    g = case.numbers["G"]
    grouped = x.reshape(n, g, (c // g) * h * w)
    xc = grouped - grouped.mean(axis=2, keepdims=True)
    var = (xc * xc).mean(axis=2, keepdims=True)
    xhat = (xc * (var + EPS) ** -0.5).reshape(n, c, h, w)
    return (xhat * t["gamma"].reshape(1, c, 1, 1) + t["beta"].reshape(1, c, 1, 1),)


def keep_probability(case: Case, conv: Conventions) -> float:
    """The probability of keeping a unit, from ``p`` and what the template says ``p`` means.

    >>> keep_probability(Case("dropout", {}, {"p": 0.3}, (), 0), Conventions(dropout_p="drop"))
    0.7
    """
    p = case.param["p"]
    return p if conv.dropout_p == "keep" else round(1.0 - p, 12)


def _ref_dropout(t: dict[str, Tensor], case: Case, conv: Conventions, got: dict | None = None
                 ) -> tuple[Tensor, ...]:
    if case.mode == "test":
        return (t["x"] * 1.0,)
    # The mask is the file's own random draw, read off its output: kept entries are the nonzero ones.
    out = (got or {}).get("out")
    mask = (np.asarray(out) != 0) if out is not None and np.shape(out) == case.arrays["x"].shape else \
        np.ones(case.arrays["x"].shape, dtype=bool)
    return (t["x"] * Tensor(mask / keep_probability(case, conv), requires_grad=False),)


def _ref_conv(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    return (conv2d(t["x"], t["w"], t["b"], stride=case.param["stride"], padding=case.param["pad"]),)


def _ref_pool(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    p = case.param
    return (max_pool2d(t["x"], (p["pool_height"], p["pool_width"]), p["stride"]),)


def _ref_rnn(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    return ((t["x"] @ t["Wx"] + t["prev_h"] @ t["Wh"] + t["b"]).tanh(),)


def _lstm_gates(t: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The template's gate order: input, forget, output, then the candidate g."""
    a = t["x"] @ t["Wx"] + t["prev_h"] @ t["Wh"] + t["b"]
    h = a.shape[1] // 4
    return (a[:, :h].sigmoid(), a[:, h:2 * h].sigmoid(), a[:, 2 * h:3 * h].sigmoid(), a[:, 3 * h:].tanh())


def _ref_lstm(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    i, f, o, g = _lstm_gates(t)
    next_c = f * t["prev_c"] + i * g
    return (o * next_c.tanh(), next_c)


def _ref_embedding(t: dict[str, Tensor], case: Case, conv: Conventions) -> tuple[Tensor, ...]:
    return (t["W"][case.arrays["x"]],)


# ---------------------------------------------------------------------------------------------------------
# The usual mistakes, each as the arrays a file making it returns
# ---------------------------------------------------------------------------------------------------------

def _ref_grads(case: Case, conv: Conventions, got: dict | None = None, **change: Any) -> dict:
    """The reference's arrays on ``case`` with some inputs changed (a flipped kernel, say)."""
    changed = Case(case.pair, {**case.arrays, **change}, case.param, case.douts, case.seed, case.mode, case.numbers)
    return expected(changed, conv, got)


def _affine_mistakes() -> tuple[Mistake, ...]:
    def no_sum(case: Case, got: dict) -> dict | None:
        return {"db": case.douts[0]} if case.douts[0].shape[0] > 1 else None

    def dw_t(case: Case, got: dict) -> dict | None:
        x2 = case.arrays["x"].reshape(case.arrays["x"].shape[0], -1)
        return {"dw": (x2.T @ case.douts[0]).T}

    def flat_dx(case: Case, got: dict) -> dict | None:
        x = case.arrays["x"]
        return {"dx": case.douts[0] @ case.arrays["w"].T} if x.ndim > 2 else None

    return (Mistake("db-not-summed", "db must be summed over the batch: db = dout.sum(axis=0), one number per "
                                     "output unit, as b is added to every row", no_sum),
            Mistake("dw-transposed", "dw is transposed: dw = x.reshape(N, -1).T @ dout has w's shape (D, M)", dw_t),
            Mistake("dx-not-reshaped", "dx must have x's shape: reshape dout @ w.T back to x.shape", flat_dx))


def _relu_mistakes() -> tuple[Mistake, ...]:
    def all_ones(case: Case, got: dict) -> dict:
        return {"dx": case.douts[0]}

    def ge(case: Case, got: dict) -> dict | None:
        x = case.arrays["x"]
        return {"dx": case.douts[0] * (x >= 0)} if (x == 0).any() else None

    return (Mistake("relu-mask-everything", "the mask lets every entry through: take it from the input, dx = dout * "
                                            "(x > 0) (a mask from the output, out >= 0, is true everywhere)", all_ones),
            Mistake("relu-mask-at-zero", "relu's gradient at 0 is 0 in the template: the mask is x > 0, not x >= 0 "
                                         "(the output's out > 0 is the same mask)", ge, edge="zero"))


def _activation_mistakes(name: str, from_input: Callable[[np.ndarray], np.ndarray], formula: str
                         ) -> tuple[Mistake, ...]:
    def wrong(case: Case, got: dict) -> dict:
        return {"dx": case.douts[0] * from_input(case.arrays["x"])}
    return (Mistake(f"{name}-derivative-of-input", f"the derivative is {formula} of the OUTPUT (cache the output of "
                                                   f"the forward pass), not of the input x", wrong),)


def _loss_mistakes(name: str) -> tuple[Mistake, ...]:
    def times_n(case: Case, got: dict) -> dict | None:
        n = case.arrays["x"].shape[0]
        if n == 1:
            return None
        e = expected(case, Conventions())
        return {"loss": e["loss"] * n, "dx": e["dx"] * n}

    def dx_times_n(case: Case, got: dict) -> dict | None:
        n = case.arrays["x"].shape[0]
        return {"dx": expected(case, Conventions())["dx"] * n} if n > 1 else None

    common = (Mistake(f"{name}-not-averaged", "the loss and dx must be divided by N (the mean over the batch)",
                      times_n),
              Mistake(f"{name}-dx-not-averaged", "the loss is averaged but dx is not: divide dx by N too",
                      dx_times_n))
    if name == "softmax":
        def no_onehot(case: Case, got: dict) -> dict:
            x = case.arrays["x"]
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return {"dx": e / e.sum(axis=1, keepdims=True) / x.shape[0]}
        return (*common, Mistake("softmax-no-onehot", "dx = (softmax - onehot(y)) / N: subtract 1 at each row's "
                                                      "correct class", no_onehot))

    def counts_correct(case: Case, got: dict) -> dict:
        return {"loss": expected(case, Conventions())["loss"] + 1.0}

    def correct_grad(case: Case, got: dict) -> dict:
        x, y = case.arrays["x"], case.arrays["y"]
        n = x.shape[0]
        margins = x - x[np.arange(n), y][:, None] + 1.0
        dx = (margins > 0).astype(float)
        dx[np.arange(n), y] = 0.0
        return {"dx": dx / n}

    return (*common,
            Mistake("svm-counts-correct-class", "the correct class's own margin (always 1) is counted: set it to 0 "
                                                "before summing", counts_correct),
            Mistake("svm-no-correct-gradient", "the correct class's score is in every margin: its gradient is minus "
                                               "the number of positive margins in its row", correct_grad))


def _norm_mistakes(name: str) -> tuple[Mistake, ...]:
    axis = 0 if name == "batchnorm" else 1

    def terms(mean: bool, var: bool) -> Callable[[Case, dict], dict]:
        def wrong(case: Case, got: dict) -> dict:
            x, g = case.arrays["x"], case.douts[0]
            m = x.shape[axis]
            mu = x.mean(axis=axis, keepdims=True)
            inv = 1.0 / np.sqrt(x.var(axis=axis, keepdims=True) + EPS)
            xhat = (x - mu) * inv
            dxhat = g * case.arrays["gamma"]
            dx = dxhat * m
            if mean:
                dx = dx - dxhat.sum(axis=axis, keepdims=True)
            if var:
                dx = dx - xhat * (dxhat * xhat).sum(axis=axis, keepdims=True)
            return {"dx": dx * inv / m}
        return wrong

    def not_summed(case: Case, got: dict) -> dict:
        x, g = case.arrays["x"], case.douts[0]
        xhat = (x - x.mean(axis=axis, keepdims=True)) / np.sqrt(x.var(axis=axis, keepdims=True) + EPS)
        return {"dgamma": g * xhat, "dbeta": g}

    def unbiased(case: Case, got: dict) -> dict | None:
        x = case.arrays["x"]
        if x.shape[axis] < 2:
            return None
        xhat = (x - x.mean(axis=axis, keepdims=True)) / np.sqrt(x.var(axis=axis, ddof=1, keepdims=True) + EPS)
        return {"out": xhat * case.arrays["gamma"] + case.arrays["beta"]} if case.mode == "train" else None

    out = (Mistake(f"{name}-unbiased-variance", "the template normalises with the biased variance, np.var (ddof=0, "
                                                 "dividing by N), not the unbiased one", unbiased),
           Mistake(f"{name}-no-mean-term", "dx misses the path through the mean: subtract the mean of dxhat "
                                            "(the term -sum(dxhat) / N)", terms(False, True)),
           Mistake(f"{name}-no-variance-term", "dx misses the path through the variance: subtract xhat * "
                                                "mean(dxhat * xhat)", terms(True, False)),
           Mistake(f"{name}-no-mean-or-variance-term", "dx = dxhat / std treats the mean and variance as constants: "
                                                        "both depend on x", terms(False, False)),
           Mistake(f"{name}-params-not-summed", f"dgamma and dbeta must be summed over "
                                                f"{'the batch (axis 0)' if axis == 0 else 'the batch'}: one number "
                                                f"per feature", not_summed))
    if name != "batchnorm":
        return out

    def test_batch_stats(case: Case, got: dict) -> dict | None:
        if case.mode != "test":
            return None
        x = case.arrays["x"]
        xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + EPS)
        return {"out": xhat * case.arrays["gamma"] + case.arrays["beta"]}

    def test_no_affine(case: Case, got: dict) -> dict | None:
        if case.mode != "test":
            return None
        p = case.param
        return {"out": (case.arrays["x"] - p["running_mean"]) / np.sqrt(p["running_var"] + EPS)}

    def swapped(case: Case, got: dict) -> dict | None:
        if "running_mean" not in case.param or case.mode == "test":
            return None
        x, p = case.arrays["x"], case.param
        return {"running_mean": 0.1 * p["running_mean"] + 0.9 * x.mean(axis=0),
                "running_var": 0.1 * p["running_var"] + 0.9 * x.var(axis=0)}

    def unbiased(case: Case, got: dict) -> dict | None:
        if "running_mean" not in case.param or case.mode == "test":
            return None
        x, p = case.arrays["x"], case.param
        return {"running_var": BN_MOMENTUM * p["running_var"] + (1 - BN_MOMENTUM) * x.var(axis=0, ddof=1)}

    return (*out,
            Mistake("batchnorm-test-batch-stats", "test mode must use the running mean and variance, not the "
                                                  "batch's own", test_batch_stats, edge="test"),
            Mistake("batchnorm-test-no-scale-shift", "test mode must scale by gamma and shift by beta too",
                    test_no_affine, edge="test"),
            Mistake("batchnorm-momentum-swapped", "running = momentum * running + (1 - momentum) * batch: the "
                                                  "weights are the other way round", swapped, edge="running"),
            Mistake("batchnorm-unbiased-running-var", "the template's running variance averages the biased "
                                                      "batch variance (np.var, ddof=0)", unbiased, edge="running"))


def _groupnorm_mistakes() -> tuple[Mistake, ...]:
    def per_channel(case: Case, got: dict) -> dict | None:
        x, gm, bt = case.arrays["x"], case.arrays["gamma"], case.arrays["beta"]
        if case.numbers["G"] == x.shape[1]:
            return None
        xhat = (x - x.mean(axis=(2, 3), keepdims=True)) / np.sqrt(x.var(axis=(2, 3), keepdims=True) + EPS)
        return {"out": xhat * gm.reshape(1, -1, 1, 1) + bt.reshape(1, -1, 1, 1)}

    return (Mistake("groupnorm-per-channel", "the statistics are taken per channel: reshape x to (N, G, C // G * H "
                                             "* W) and normalise each group of C // G channels together",
                    per_channel),)


def _dropout_mistakes() -> tuple[Mistake, ...]:
    def not_rescaled(case: Case, got: dict) -> dict | None:
        out = got.get("out")
        if case.mode == "test" or out is None or np.shape(out) != case.arrays["x"].shape:
            return None
        return {"dx": case.douts[0] * (np.asarray(out) != 0)}

    def forward_not_rescaled(case: Case, got: dict) -> dict | None:
        out = got.get("out")
        if case.mode == "test" or out is None or np.shape(out) != case.arrays["x"].shape:
            return None
        return {"out": case.arrays["x"] * (np.asarray(out) != 0)}

    def test_scaled(case: Case, got: dict) -> dict | None:
        if case.mode != "test":
            return None
        k = case.param["p"]
        return {"out": case.arrays["x"] * k} if got.get("out") is not None and \
            np.allclose(got["out"], case.arrays["x"] * k) else {"out": case.arrays["x"] * (1 - k)}

    return (Mistake("dropout-backward-not-rescaled", "backward must scale like forward: dx = dout * mask / p (the "
                                                     "mask of inverted dropout includes the 1/p)", not_rescaled),
            Mistake("dropout-forward-not-rescaled", "inverted dropout divides the kept units by the keep "
                                                    "probability at train time: out = x * mask / p",
                    forward_not_rescaled),
            Mistake("dropout-test-scaled", "with inverted dropout, test mode returns x unchanged (the scaling "
                                           "happened at train time)", test_scaled, edge="test"))


def _conv_mistakes() -> tuple[Mistake, ...]:
    def flipped(case: Case, got: dict) -> dict:
        w = case.arrays["w"]
        return {"dx": _ref_grads(case, Conventions(), w=w[:, :, ::-1, ::-1].copy())["dx"]}

    def db_first(case: Case, got: dict) -> dict | None:
        d = case.douts[0]
        return {"db": d[0].sum(axis=(1, 2))} if d.shape[0] > 1 else None

    def db_per_image(case: Case, got: dict) -> dict:
        return {"db": case.douts[0].sum(axis=(2, 3))}

    def uncropped(case: Case, got: dict) -> dict | None:
        pad = case.param["pad"]
        if pad == 0:
            return None
        dx = expected(case, Conventions())["dx"]
        return {"dx": np.pad(dx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))} if got.get("dx") is not None and \
            np.shape(got["dx"]) != dx.shape else None

    def empty(case: Case, got: dict) -> dict | None:
        x = case.arrays["x"]
        return {"dx": np.zeros((*x.shape[:2], 0, 0))} if case.param["pad"] == 0 else None

    return (Mistake("conv-kernel-flipped", "dx pairs each dout with the kernel flipped (w[:, :, ::-1, ::-1]): in the "
                                           "naive loop, dx_pad[window] += w[f] * dout[n, f, i, j], the kernel as it is",
                    flipped),
            Mistake("conv-db-not-summed", "db must be summed over the batch and every output position: "
                                          "db = dout.sum(axis=(0, 2, 3))", db_first),
            Mistake("conv-db-per-image", "db must be summed over the batch too: db = dout.sum(axis=(0, 2, 3))",
                    db_per_image),
            Mistake("conv-pad0-slice", "with pad = 0, dx_pad[:, :, pad:-pad, pad:-pad] is EMPTY (-0 is 0): slice "
                                       "pad:pad + H and pad:pad + W instead", empty, edge="pad0"),
            Mistake("conv-padding-not-cropped", "dx must drop the padding: dx = dx_pad[:, :, pad:pad + H, pad:pad + W]",
                    uncropped))


def _pool_mistakes() -> tuple[Mistake, ...]:
    def windows(case: Case) -> Any:
        p = case.param
        x = case.arrays["x"]
        n, c, h, w = x.shape
        ph, pw, s = p["pool_height"], p["pool_width"], p["stride"]
        for i in range(1 + (h - ph) // s):
            for j in range(1 + (w - pw) // s):
                yield i, j, (slice(None), slice(None), slice(i * s, i * s + ph), slice(j * s, j * s + pw))

    def overwrite(whole: bool) -> Callable[[Case, dict], dict | None]:
        # dx[window] = mask * dout (the whole window assigned), or dx[argmax] = dout (one entry assigned)
        def wrong(case: Case, got: dict) -> dict | None:
            x, d = case.arrays["x"], case.douts[0]
            if case.param["stride"] >= max(case.param["pool_height"], case.param["pool_width"]):
                return None
            dx = np.zeros_like(x)
            for i, j, win in windows(case):
                part = x[win]
                mask = part == part.max(axis=(2, 3), keepdims=True)
                if whole:
                    dx[win] = mask * d[:, :, i:i + 1, j:j + 1]
                else:
                    dx[win] = np.where(mask, d[:, :, i:i + 1, j:j + 1], dx[win])
            return {"dx": dx}
        return wrong

    def all_ties(case: Case, got: dict) -> dict:
        x, d = case.arrays["x"], case.douts[0]
        dx = np.zeros_like(x)
        for i, j, win in windows(case):
            part = x[win]
            dx[win] += (part == part.max(axis=(2, 3), keepdims=True)) * d[:, :, i:i + 1, j:j + 1]
        return {"dx": dx}

    def transposed_index(case: Case, got: dict) -> dict | None:
        x, d = case.arrays["x"], case.douts[0]
        ph, pw, s = case.param["pool_height"], case.param["pool_width"], case.param["stride"]
        if ph == pw:
            return None
        dx = np.zeros_like(x)
        for i, j, win in windows(case):
            part = x[win]
            for a in range(x.shape[0]):
                for b in range(x.shape[1]):
                    r, q = np.unravel_index(int(np.argmax(part[a, b])), (pw, ph))  # the window's sides swapped
                    if i * s + r >= x.shape[2] or j * s + q >= x.shape[3]:
                        return None
                    dx[a, b, i * s + r, j * s + q] += d[a, b, i, j]
        return {"dx": dx}

    return (Mistake("pool-overwrite", "overlapping windows share entries: accumulate (dx[window] += ...) instead of "
                                      "assigning, or the later window overwrites the earlier one's gradient",
                    overwrite(False), edge="overlap"),
            Mistake("pool-overwrite-window", "overlapping windows share entries: dx[window] = mask * dout wipes what "
                                             "the earlier windows put there; add instead (dx[window] += ...)",
                    overwrite(True), edge="overlap"),
            Mistake("pool-all-ties", "on a tie, mask = (window == max) sends dout to EVERY tied maximum, so the "
                                     "gradient counts several times: send it to one (np.argmax, the first)", all_ties,
                    edge="ties"),
            Mistake("pool-index-swapped", "the position of the maximum is unravelled with the window's sides swapped: "
                                          "np.unravel_index(k, (pool_height, pool_width))", transposed_index,
                    edge="nonsquare"))


def _rnn_mistakes() -> tuple[Mistake, ...]:
    def db_not_summed(case: Case, got: dict) -> dict | None:
        e = expected(case, Conventions())
        da = case.douts[0] * (1 - e["next_h"] ** 2)
        return {"db": da} if da.shape[0] > 1 else None

    def pre_activation(case: Case, got: dict) -> dict:
        a = case.arrays
        pre = a["x"] @ a["Wx"] + a["prev_h"] @ a["Wh"] + a["b"]
        da = case.douts[0] * (1 - pre ** 2)
        return {"dx": da @ a["Wx"].T, "dprev_h": da @ a["Wh"].T, "dWx": a["x"].T @ da, "dWh": a["prev_h"].T @ da,
                "db": da.sum(axis=0)}

    return (Mistake("rnn-db-not-summed", "db must be summed over the batch: db = da.sum(axis=0)", db_not_summed),
            Mistake("rnn-tanh-of-input", "tanh' = 1 - next_h**2, from the OUTPUT of tanh, not from its input",
                    pre_activation))


def _lstm_mistakes() -> tuple[Mistake, ...]:
    def lost_path(case: Case, got: dict) -> dict:
        a = case.arrays
        pre = a["x"] @ a["Wx"] + a["prev_h"] @ a["Wh"] + a["b"]
        h = pre.shape[1] // 4
        sig = 1 / (1 + np.exp(-pre[:, :3 * h]))
        i, f, o, g = sig[:, :h], sig[:, h:2 * h], sig[:, 2 * h:], np.tanh(pre[:, 3 * h:])
        next_c = f * a["prev_c"] + i * g
        dh, dc = case.douts
        do = dh * np.tanh(next_c)
        # NOTE: the mistake: dc is taken as it arrives, without next_h's path through next_c.
        di, df, dg = dc * g, dc * a["prev_c"], dc * i
        da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)])
        return {"dx": da @ a["Wx"].T, "dprev_h": da @ a["Wh"].T, "dprev_c": dc * f, "dWx": a["x"].T @ da,
                "dWh": a["prev_h"].T @ da, "db": da.sum(axis=0)}

    def torch_order(case: Case, got: dict) -> dict:
        a = case.arrays
        pre = a["x"] @ a["Wx"] + a["prev_h"] @ a["Wh"] + a["b"]
        h = pre.shape[1] // 4
        sig = 1 / (1 + np.exp(-pre))
        i, f, g, o = sig[:, :h], sig[:, h:2 * h], np.tanh(pre[:, 2 * h:3 * h]), sig[:, 3 * h:]
        next_c = f * a["prev_c"] + i * g
        return {"next_h": o * np.tanh(next_c), "next_c": next_c}

    return (Mistake("lstm-gate-order", "the template orders the gates i, f, o, g in a (PyTorch's order is i, f, g, "
                                       "o): o = sigmoid(a[:, 2H:3H]), g = tanh(a[:, 3H:])", torch_order),
            Mistake("lstm-lost-next-h-path", "next_h = o * tanh(next_c) depends on next_c too: the gradient "
                                             "reaching next_c is dnext_c + dnext_h * o * (1 - tanh(next_c)**2)",
                    lost_path),)


def _embedding_mistakes() -> tuple[Mistake, ...]:
    def assigned(case: Case, got: dict) -> dict:
        x, d = case.arrays["x"], case.douts[0]
        dW = np.zeros_like(case.arrays["W"])
        dW[x] += d
        return {"dW": dW}

    return (Mistake("embedding-repeats-overwrite", "dW[x] += dout adds a repeated word's rows only once (fancy "
                                                   "indexing buffers): np.add.at(dW, x, dout) adds every one",
                    assigned, edge="repeats"),)


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------

BATCH1 = Edge("batch1", "a batch of one example", "batch1",
              hint="with N = 1, np.squeeze or a reshape that guesses N drops the batch axis")

PAIRS: tuple[Pair, ...] = (
    Pair("affine", "affine_forward", "affine_backward", ("x", "w", "b"), ("out",), ("dx", "dw", "db"),
         _ref_affine, _draw_affine, title="affine layer", plain="x of 2 to 4 dims, a batch of 2 to 4",
         edges=(BATCH1,), mistakes=_affine_mistakes(), loose=("db",)),
    Pair("relu", "relu_forward", "relu_backward", ("x",), ("out",), ("dx",),
         lambda t, c, k: (t["x"].relu(),), _draw_elementwise("relu"), title="ReLU", plain="inputs away from 0",
         edges=(Edge("zero", "inputs exactly 0 (relu'(0) = 0)", "zero"),), mistakes=_relu_mistakes()),
    Pair("sigmoid", "sigmoid_forward", "sigmoid_backward", ("x",), ("out",), ("dx",),
         lambda t, c, k: (t["x"].sigmoid(),), _draw_elementwise("sigmoid"), title="sigmoid", plain="any inputs",
         mistakes=_activation_mistakes("sigmoid", lambda x: x * (1 - x), "s * (1 - s)")),
    Pair("tanh", "tanh_forward", "tanh_backward", ("x",), ("out",), ("dx",),
         lambda t, c, k: (t["x"].tanh(),), _draw_elementwise("tanh"), title="tanh", plain="any inputs",
         mistakes=_activation_mistakes("tanh", lambda x: 1 - x * x, "1 - t**2")),
    Pair("softmax", "softmax_loss", None, ("x", "y"), ("loss", "dx"), ("dx",), _ref_softmax, _draw_loss("softmax"),
         title="softmax loss", plain="mean over a batch of 2 to 5",
         edges=(Edge("large", "logits in the thousands (subtract the row maximum)", "large",
                     hint="exp of large logits overflows: subtract each row's maximum before exp (the softmax is "
                          "unchanged)"),
                BATCH1), mistakes=_loss_mistakes("softmax")),
    Pair("svm", "svm_loss", None, ("x", "y"), ("loss", "dx"), ("dx",), _ref_svm, _draw_loss("svm"),
         title="SVM loss", plain="margin 1, mean over a batch of 2 to 5", edges=(BATCH1,),
         mistakes=_loss_mistakes("svm")),
    Pair("batchnorm", "batchnorm_forward", "batchnorm_backward", ("x", "gamma", "beta"), ("out",),
         ("dx", "dgamma", "dbeta"), _ref_batchnorm, _draw_norm("batchnorm"), param="bn_param",
         title="batch normalization", plain="train mode, gamma != 1, beta != 0",
         edges=(Edge("running", "train mode updates running_mean and running_var (momentum 0.9)", "running",
                     ("state",)),
                Edge("test", "test mode: running statistics, gamma != 1, beta != 0", "test", ("forward",))),
         mistakes=_norm_mistakes("batchnorm"), loose=("dgamma", "dbeta", "running_mean", "running_var"),
         state=("running_mean", "running_var")),
    Pair("layernorm", "layernorm_forward", "layernorm_backward", ("x", "gamma", "beta"), ("out",),
         ("dx", "dgamma", "dbeta"), _ref_layernorm, _draw_norm("layernorm"), param="ln_param",
         title="layer normalization", plain="gamma != 1, beta != 0", mistakes=_norm_mistakes("layernorm"),
         loose=("dgamma", "dbeta")),
    Pair("dropout", "dropout_forward", "dropout_backward", ("x",), ("out",), ("dx",), _ref_dropout, _draw_dropout,
         param="dropout_param", title="inverted dropout", plain="train mode, p = 0.3",
         edges=(Edge("rate", "the fraction of units kept matches p (2000 units)", "rate", ("rate",)),
                Edge("mask", "each example of the batch draws its own mask", "mask", ("mask",)),
                Edge("test", "test mode passes x through unchanged", "test")),
         mistakes=_dropout_mistakes()),
    Pair("conv", "conv_forward_naive", "conv_backward_naive", ("x", "w", "b"), ("out",), ("dx", "dw", "db"),
         _ref_conv, _draw_conv, param="conv_param", title="naive convolution", plain="stride 1, pad 1, square",
         edges=(Edge("pad0", "padding 0", "pad0", hint="with pad = 0, a slice such as a[pad:-pad] is empty"),
                Edge("stride2", "stride 2", "stride2",
                     hint="with stride 2, window (i, j) starts at (i * stride, j * stride), in the forward AND the "
                          "backward loops"),
                Edge("nonsquare", "non-square inputs and kernels", "nonsquare",
                     hint="non-square: a height used where the width belongs (HH for WW, H for W)?")),
         mistakes=_conv_mistakes()),
    Pair("maxpool", "max_pool_forward_naive", "max_pool_backward_naive", ("x",), ("out",), ("dx",), _ref_pool,
         _draw_pool, param="pool_param", title="naive max pooling", plain="2x2 windows, stride 2",
         edges=(Edge("overlap", "overlapping windows (stride < window)", "overlap",
                     hint="overlapping windows share entries: every window must add (+=) its gradient"),
                Edge("nonsquare", "non-square windows and inputs", "nonsquare",
                     hint="non-square windows: the window's sides swapped somewhere (pool_height where pool_width "
                          "belongs)?"),
                Edge("ties", "tied maxima: the gradient goes to one of them", "ties", ("ties",))),
         mistakes=_pool_mistakes()),
    Pair("groupnorm", "spatial_groupnorm_forward", "spatial_groupnorm_backward", ("x", "gamma", "beta"), ("out",),
         ("dx", "dgamma", "dbeta"), _ref_groupnorm, _draw_groupnorm, param="gn_param",
         title="spatial group normalization", plain="G groups, gamma != 1, beta != 0",
         mistakes=_groupnorm_mistakes(), loose=("dgamma", "dbeta")),
    Pair("rnn", "rnn_step_forward", "rnn_step_backward", ("x", "prev_h", "Wx", "Wh", "b"), ("next_h",),
         ("dx", "dprev_h", "dWx", "dWh", "db"), _ref_rnn, _draw_rnn("rnn"), title="vanilla RNN step",
         plain="tanh, a batch of 2 to 3", edges=(BATCH1,), mistakes=_rnn_mistakes(), loose=("db",)),
    Pair("lstm", "lstm_step_forward", "lstm_step_backward", ("x", "prev_h", "prev_c", "Wx", "Wh", "b"),
         ("next_h", "next_c"), ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"), _ref_lstm, _draw_rnn("lstm"),
         title="LSTM step", plain="gates i, f, o, g; a batch of 2 to 3", edges=(BATCH1,), mistakes=_lstm_mistakes(),
         loose=("db",)),
    Pair("embedding", "word_embedding_forward", "word_embedding_backward", ("x", "W"), ("out",), ("dW",),
         _ref_embedding, _draw_embedding, title="word embedding", plain="every word once",
         edges=(Edge("repeats", "a word repeated in the batch", "repeats",
                     hint="a repeated word's rows must all be added to its row of dW"),),
         mistakes=_embedding_mistakes()),
)
PAIRS_BY_NAME = {p.name: p for p in PAIRS}
PAIR_NAMES = tuple(PAIRS_BY_NAME)


# ---------------------------------------------------------------------------------------------------------
# Oracles: the reference's forward and VJP, central differences
# ---------------------------------------------------------------------------------------------------------

def _tensors(case: Case, pair: Pair) -> dict[str, Tensor]:
    return {k: Tensor(np.array(v, dtype=np.float64), requires_grad=True) for k, v in case.arrays.items()
            if k in pair.inputs and f"d{k}" in pair.grads}


def _outputs(pair: Pair, t: dict[str, Tensor], case: Case, conv: Conventions, got: dict | None) -> tuple:
    if pair.name == "dropout":
        return _ref_dropout(t, case, conv, got)
    return pair.reference(t, case, conv)


def expected(case: Case, conv: Conventions, got: dict | None = None) -> dict[str, np.ndarray]:
    """Every array the pair's functions must return on ``case``, by name: the forward outputs from the Tensor
    reference, the gradients from its VJP of the upstream gradients (a loss's from the loss), and the dict
    entries forward updates (running statistics). ``got`` is the file's own answer, read only for dropout's mask.

    >>> c = Case("affine", {"x": np.ones((2, 3)), "w": np.ones((3, 1)), "b": np.zeros(1)}, None,
    ...          (np.ones((2, 1)),), 0)
    >>> e = expected(c, Conventions()); e["out"].ravel().tolist(), e["db"].tolist()
    ([3.0, 3.0], [2.0])
    """
    pair = PAIRS_BY_NAME[case.pair]
    t = _tensors(case, pair)
    outs = _outputs(pair, t, case, conv, got)
    result: dict[str, np.ndarray] = {}
    if pair.loss:
        outs[0].backward()
        result["loss"] = np.asarray(outs[0].data)
    else:
        total = None
        for name, o, d in zip(pair.outputs, outs, case.douts):
            result[name] = o.data.copy()
            term = (o * Tensor(d, requires_grad=False)).sum()
            total = term if total is None else total + term
        total.backward()
    for g in pair.grads:
        tensor = t.get(g[1:])
        result[g] = tensor.grad.copy() if tensor is not None and tensor.grad is not None else \
            np.zeros_like(case.arrays[g[1:]])
    if pair.name == "batchnorm" and case.param and "running_mean" in case.param and case.mode == "train":
        x, p = case.arrays["x"], case.param
        result["running_mean"] = BN_MOMENTUM * p["running_mean"] + (1 - BN_MOMENTUM) * x.mean(axis=0)
        result["running_var"] = BN_MOMENTUM * p["running_var"] + (1 - BN_MOMENTUM) * x.var(axis=0)
    return result


def central(case: Case, conv: Conventions, grad: str, index: tuple[int, ...], got: dict | None = None,
            h: float = 1e-6) -> float | None:
    """d(sum(forward * dout)) / d input[index] by float64 central differences on the reference's forward (the
    loss itself for a loss); None for an input that is not differentiable (labels).

    >>> c = Case("relu", {"x": np.array([[2.0, -1.0]])}, None, (np.array([[3.0, 5.0]]),), 0)
    >>> round(central(c, Conventions(), "dx", (0, 0)), 6)
    3.0
    """
    pair = PAIRS_BY_NAME[case.pair]
    name = grad[1:]
    if name not in case.arrays:
        return None
    vals = []
    for sign in (1.0, -1.0):
        arrays = {k: np.array(v, dtype=np.float64) if k == name else v for k, v in case.arrays.items()}
        arrays[name][index] += sign * h
        moved = Case(case.pair, arrays, case.param, case.douts, case.seed, case.mode, case.numbers)
        t = {k: Tensor(v, requires_grad=False) for k, v in arrays.items() if k in pair.inputs and f"d{k}" in pair.grads}
        outs = _outputs(pair, t, moved, conv, got)
        if pair.loss:
            vals.append(float(outs[0].data))
        else:
            vals.append(float(sum((o.data * d).sum() for o, d in zip(outs, case.douts))))
    return (vals[0] - vals[1]) / (2 * h)


def diagnose(case: Case, got: dict, wrong: list[str], rel: float, abs_: float, variant: str = "base"
             ) -> Mistake | None:
    """The usual mistake that reproduces every wrong array of ``got`` (by name), if one does."""
    pair = PAIRS_BY_NAME[case.pair]
    # An edge case's own mistakes first: the plain rules passed, so the plain case's mistakes are less likely.
    for m in sorted(pair.mistakes, key=lambda m: m.edge != variant):
        try:
            guess = m.wrong(case, got)
        except (ValueError, IndexError, FloatingPointError):
            continue
        if not guess or not all(w in guess for w in wrong):
            continue
        # Every array the mistake predicts must be the file's, the right ones too (a loss not divided by N is
        # not the mistake of a file whose loss is right).
        if all(got.get(w) is not None and np.shape(got[w]) == np.shape(guess[w]) and
               np.allclose(got[w], guess[w], rtol=rel, atol=abs_) for w in guess if w in got or w in wrong):
            return m
    return None
