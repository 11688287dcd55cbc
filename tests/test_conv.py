"""Convolution and pooling options: every row against float64 central differences, against PyTorch when it is
installed (skipped with a reason otherwise), and the fast kernels against their readable references."""

from __future__ import annotations

import contextlib
import itertools
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgradx import fast, nn
from microgradx import functional as F
from microgradx.graph import jvp
from microgradx.tensor import ShapeError, Tensor

F64 = np.float64
NO_TORCH = "PyTorch is not installed: it is the optional extra, pip install 'microgradx[torch]'"


@pytest.fixture
def torch():
    """PyTorch in float64 on one thread (tiny arrays); the test is skipped when it is not installed."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def central(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by float64 central differences, perturbing ``x`` in place entry by entry."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def check_central(forward, leaves: dict[str, Tensor], seed: int = 0) -> None:
    """backward() of sum(forward() * C), C random and fixed, against central differences for every leaf,
    and the forward-mode tangent along a random direction against the same differences."""
    rng = np.random.default_rng(seed)
    out = forward()
    C = rng.normal(size=out.shape)
    for t in leaves.values():
        t.grad = None
    loss = (out * Tensor(C, requires_grad=False)).sum()
    loss.backward()

    def L() -> float:
        return float((forward().data * C).sum())
    numeric = {}
    for name, t in leaves.items():
        numeric[name] = central(L, t.data)
        np.testing.assert_allclose(t.grad, numeric[name], rtol=1e-5, atol=1e-7, err_msg=name)
    directions = {t: rng.normal(size=t.data.shape) for t in leaves.values()}
    tangent = float(jvp(loss, directions))
    expected = sum(float(np.sum(numeric[name] * directions[t])) for name, t in leaves.items())
    assert tangent == pytest.approx(expected, rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------------------------------------------------
# Conv2d and Conv1d options
# ---------------------------------------------------------------------------------------------------------

CONV2D_OPTIONS = [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    dict(kernel_size=3, dilation=2, padding=2),
    dict(kernel_size=(3, 2), dilation=(2, 1), stride=(2, 1)),
    dict(kernel_size=3, groups=2, padding=1),
    dict(kernel_size=1, groups=2, stride=2),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=(2, 4), padding="same", dilation=(2, 1)),
    dict(kernel_size=3, padding="valid", stride=3),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=(2, 1), padding_mode="replicate", stride=2),
    dict(kernel_size=3, padding=2, padding_mode="circular", groups=2),
    dict(kernel_size=(4, 3), padding="same", padding_mode="reflect"),
    dict(kernel_size=2, bias=False, stride=(3, 2)),
]


def conv_id(opts):
    return ",".join(f"{k}={v}" for k, v in opts.items())


@pytest.mark.parametrize("opts", CONV2D_OPTIONS, ids=conv_id)
def test_conv2d_options_match_central_differences_both_paths(opts):
    rng = np.random.default_rng(1)
    x = Tensor(rng.normal(size=(2, 4, 6, 7)), label="x")
    conv = nn.Conv2d(4, 6, **opts, dtype=F64, rng=2)
    if conv.bias is not None:
        conv.bias.data[:] = rng.normal(size=6)
    check_central(lambda: conv(x), {"x": x, **dict(conv.named_parameters())})
    with fast.reference_only():
        check_central(lambda: conv(x), {"x": x, **dict(conv.named_parameters())}, seed=1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("opts", CONV2D_OPTIONS, ids=conv_id)
def test_conv2d_options_match_pytorch(torch, opts):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3, 4, 9, 8))
    conv = nn.Conv2d(4, 6, **opts, dtype=F64, rng=4)
    tconv = torch.nn.Conv2d(4, 6, **opts).double()
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(conv.weight.data))
        if conv.bias is not None:
            conv.bias.data[:] = rng.normal(size=6)
            tconv.bias.copy_(torch.from_numpy(conv.bias.data))
    compare_with_torch(torch, conv, tconv, X, rng)


def compare_with_torch(torch, module, tmodule, X, rng):
    """Outputs, input gradients and parameter gradients of ``module`` and ``tmodule`` agree to 1e-12."""
    module.zero_grad()
    x, tx = Tensor(X.copy()), torch.tensor(X, requires_grad=True)
    y, ty = module(x), tmodule(tx)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    G = rng.normal(size=y.shape)
    y.backward(G)
    ty.backward(torch.from_numpy(G))
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    tparams = dict(tmodule.named_parameters())
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


CONV1D_OPTIONS = [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2, dilation=3, padding="same"),
    dict(kernel_size=3, groups=2, padding=2, padding_mode="reflect"),
    dict(kernel_size=4, padding=3, padding_mode="circular", bias=False),
    dict(kernel_size=1, padding="valid", padding_mode="replicate"),
]


@pytest.mark.parametrize("opts", CONV1D_OPTIONS, ids=conv_id)
def test_conv1d_matches_central_differences_and_pytorch(opts):
    rng = np.random.default_rng(5)
    x = Tensor(rng.normal(size=(2, 4, 9)), label="x")
    conv = nn.Conv1d(4, 6, **opts, dtype=F64, rng=6)
    check_central(lambda: conv(x), {"x": x, **dict(conv.named_parameters())})
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    tconv = torch.nn.Conv1d(4, 6, **opts).double()
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(conv.weight.data))
        if conv.bias is not None:
            tconv.bias.copy_(torch.from_numpy(conv.bias.data))
    compare_with_torch(torch, conv, tconv, rng.normal(size=(3, 4, 11)), rng)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.integers(0, 2), st.integers(1, 2), st.sampled_from([1, 2]),
       st.sampled_from(["float32", "float64"]), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_fast_conv2d_agrees_with_the_reference(n, kh, kw, sh, sw, dh, p, dw, groups, dtype, bias, one_by_one, seed):
    """Every stride, padding, dilation and groups combination, the windows filled for the whole batch at once
    or image by image (the fast path's batches, shrunk to one image)."""
    rng = np.random.default_rng(seed)
    c, o = 2 * groups, 3 * groups
    h, w = rng.integers(dh * (kh - 1) + 1, 9), rng.integers(dw * (kw - 1) + 1, 9)
    X = rng.normal(size=(n, c, h, w)).astype(dtype)
    W = rng.normal(size=(o, c // groups, kh, kw)).astype(dtype)
    arrays = [X, W] + ([rng.normal(size=o).astype(dtype)] if bias else [])

    def build(x, wt, *b):
        return F.conv2d(x, wt, *b, stride=(sh, sw), padding=(p, p + 1 if p else 0), dilation=(dh, dw), groups=groups)
    found = []
    for reference in (False, True):
        ts = [Tensor(a.copy()) for a in arrays]
        with fast.reference_only() if reference else mock.patch.object(fast, "_IM2COL_BLOCK", 1 if one_by_one
                                                                       else fast._IM2COL_BLOCK):
            out = build(*ts)
            out.backward(np.random.default_rng(1).normal(size=out.shape).astype(dtype))
        found.append((out.data, [t.grad for t in ts]))
    (fo, fg), (ro, rg) = found
    tol = 1e-4 if dtype == "float32" else 1e-11
    assert fo.dtype == ro.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fo, ro, rtol=tol, atol=tol)
    for a, r in zip(fg, rg):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 2), st.integers(1, 2),
       st.sampled_from([1, 2]), st.integers(1, 6), st.integers(1, 6), st.sampled_from(["float32", "float64"]),
       st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**31))
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_fast_same_size_conv2d_agrees_with_the_reference(n, kh, kw, dh, dw, groups, h, w, dtype, needs_x, bias,
                                                         one_by_one, seed):
    """Stride 1 with padding 'same' takes the fast path's shifted-slice windows and input gradient, batch by
    batch (shrunk here to one image per batch, so the shifts cross image borders), also on images smaller than
    the kernel (taps that only ever read the padding)."""
    rng = np.random.default_rng(seed)
    c, o = 2 * groups, 3 * groups
    X = rng.normal(size=(n, c, h, w)).astype(dtype)
    W = rng.normal(size=(o, c // groups, kh, kw)).astype(dtype)
    upstream = rng.normal(size=(n, o, h, w)).astype(dtype)
    B = rng.normal(size=o).astype(dtype)
    found = []
    for reference in (False, True):
        x, wt, b = Tensor(X.copy(), requires_grad=needs_x), Tensor(W.copy()), Tensor(B.copy())
        with fast.reference_only() if reference else mock.patch.object(fast, "_IM2COL_BLOCK", 1 if one_by_one
                                                                       else fast._IM2COL_BLOCK):
            out = F.conv2d(x, wt, b if bias else None, padding="same", dilation=(dh, dw), groups=groups)
            out.backward(upstream)
        found.append((out.data, x.grad, wt.grad, b.grad))
    tol = 1e-4 if dtype == "float32" else 1e-11
    assert found[0][0].shape == (n, o, h, w)
    for a, r in zip(*found):
        if r is None:
            assert a is None
        else:
            assert a.dtype == np.dtype(dtype)
            np.testing.assert_allclose(a, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("make, error, match", [
    (lambda: F.conv2d(np.ones((1, 4, 5, 5)), Tensor(np.ones((2, 3, 3, 3))), groups=2), ShapeError,
     r"conv2d: weight of shape \(2, 3, 3, 3\) does not fit input of shape \(1, 4, 5, 5\) with groups=2"),
    (lambda: F.conv2d(np.ones((1, 1, 5, 5)), Tensor(np.ones((1, 1, 3, 3))), stride=2, padding="same"), ValueError,
     r"conv2d: padding='same' needs stride 1"),
    (lambda: F.conv2d(np.ones((1, 1, 5, 5)), Tensor(np.ones((1, 1, 3, 3))), padding="full"), ValueError,
     r"conv2d: padding must be an integer, a pair, 'valid' or 'same', got 'full'"),
    (lambda: F.conv2d(np.ones((1, 1, 5, 5)), Tensor(np.ones((1, 1, 3, 3))), dilation=3), ShapeError,
     r"conv2d: a kernel of \(3, 3\) with dilation \(3, 3\) does not fit input of shape \(1, 1, 5, 5\)"),
    (lambda: F.conv2d(np.ones((1, 1, 5, 5)), Tensor(np.ones((1, 1, 3, 3))), padding=1, padding_mode="mirror"),
     ValueError, r"conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got 'mirror'"),
    (lambda: F.conv2d(np.ones((1, 1, 3, 3)), Tensor(np.ones((1, 1, 3, 3))), padding=3, padding_mode="reflect"),
     ShapeError, r"pad: reflect padding of \(3, 3\) needs an axis longer than the padding"),
    (lambda: F.conv1d(np.ones((1, 2, 5)), Tensor(np.ones((1, 2, 3, 3)))), ShapeError,
     r"conv1d: weight of shape \(1, 2, 3, 3\) needs 3 axes"),
    (lambda: F.conv1d(np.ones((1, 2, 5, 5)), Tensor(np.ones((1, 2, 3)))), ShapeError,
     r"conv1d: input must have shape \(N, C, L\), got \(1, 2, 5, 5\)"),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, r"Conv2d: groups=4 must be an integer >= 1 dividing"),
])
def test_conv_options_refuse_bad_arguments_with_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("mode, expected", [
    ("zeros", [0, 0, 1, 2, 3, 0]), ("reflect", [3, 2, 1, 2, 3, 2]), ("replicate", [1, 1, 1, 2, 3, 3]),
    ("circular", [2, 3, 1, 2, 3, 1]),
])
def test_pad_modes_are_pytorchs_and_their_gradient_adds_back_to_the_source(mode, expected):
    x = Tensor([[1.0, 2.0, 3.0]])
    y = F.pad(x, [(2, 1)], mode)
    assert y.data[0].tolist() == expected
    y.backward(np.array([[1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]]))
    # each input entry collects the upstream gradient of every padded entry that copies it
    got = {i + 1: 0.0 for i in range(3)}
    for value, g in zip(expected, [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]):
        if value:
            got[value] += g
    assert x.grad[0].tolist() == [got[1], got[2], got[3]]


# ---------------------------------------------------------------------------------------------------------
# Pooling options
# ---------------------------------------------------------------------------------------------------------

MAX_POOL_OPTIONS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=2, padding=1),
]
AVG_POOL_OPTIONS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, padding=1, divisor_override=3),
]
ADAPTIVE_SIZES = [1, 3, (2, 4), (None, 2), (5, 7), (4, None)]


def distinct(shape, seed):
    """Random values without ties, so that max pooling is differentiable at the point."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.normal(size=shape) * 0.01


@pytest.mark.parametrize("opts", MAX_POOL_OPTIONS, ids=conv_id)
def test_max_pool_options_match_central_differences_and_pytorch(opts):
    x = Tensor(distinct((2, 3, 7, 8), 1))
    pool = nn.MaxPool2d(**opts)
    check_central(lambda: pool(x), {"x": x})
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    compare_with_torch(torch, pool, torch.nn.MaxPool2d(**opts), distinct((2, 3, 9, 6), 2), np.random.default_rng(3))


@pytest.mark.parametrize("opts", AVG_POOL_OPTIONS, ids=conv_id)
def test_avg_pool_options_match_central_differences_and_pytorch(opts):
    rng = np.random.default_rng(4)
    x = Tensor(rng.normal(size=(2, 3, 7, 8)))
    pool = nn.AvgPool2d(**opts)
    check_central(lambda: pool(x), {"x": x})
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    compare_with_torch(torch, pool, torch.nn.AvgPool2d(**opts), rng.normal(size=(2, 3, 9, 6)), rng)


@pytest.mark.parametrize("size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_avg_pool_matches_central_differences_and_pytorch(size):
    rng = np.random.default_rng(5)
    x = Tensor(rng.normal(size=(2, 3, 7, 5)))
    pool = nn.AdaptiveAvgPool2d(size)
    check_central(lambda: pool(x), {"x": x})
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    compare_with_torch(torch, pool, torch.nn.AdaptiveAvgPool2d(size), rng.normal(size=(2, 3, 9, 6)), rng)


def test_adaptive_avg_pool_bins_are_the_means_of_pytorchs_ranges():
    X = np.arange(2 * 5 * 7, dtype=float).reshape(1, 2, 5, 7)
    out = F.adaptive_avg_pool2d(Tensor(X), (2, 3)).data
    # bins of 5 rows into 2: [0, 3) and [2, 5); of 7 columns into 3: [0, 3), [2, 5), [4, 7)
    for i, (r0, r1) in enumerate([(0, 3), (2, 5)]):
        for j, (c0, c1) in enumerate([(0, 3), (2, 5), (4, 7)]):
            assert out[0, 1, i, j] == pytest.approx(X[0, 1, r0:r1, c0:c1].mean(), rel=1e-14)


def test_ceil_mode_keeps_the_partial_window_and_padding_counts_as_pytorch_says():
    x = Tensor(np.arange(25.0).reshape(1, 1, 5, 5))
    assert F.max_pool2d(x, 2, ceil_mode=True).data[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    avg = F.avg_pool2d(x, 2, ceil_mode=True).data[0, 0]
    assert avg[2, 2] == 24.0 and avg[0, 2] == (4 + 9) / 2  # a partial window divides by its own entries
    padded = F.avg_pool2d(x, 3, stride=2, padding=1).data[0, 0]
    assert padded[0, 0] == pytest.approx((0 + 1 + 5 + 6) / 9)  # the zeros of the padding count
    assert F.avg_pool2d(x, 3, 2, 1, count_include_pad=False).data[0, 0, 0, 0] == pytest.approx(3.0)


@pytest.mark.parametrize("make, error, match", [
    (lambda: F.max_pool2d(np.ones((1, 1, 4, 4)), 2, padding=2), ValueError,
     r"max_pool2d: padding \(2, 2\) must be at most half of the window \(2, 2\)"),
    (lambda: F.avg_pool2d(np.ones((1, 1, 4, 4)), 2, divisor_override=0), ValueError,
     r"avg_pool2d: divisor_override must be a positive integer or None, got 0"),
    (lambda: F.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), (0, 2)), ValueError,
     r"adaptive_avg_pool2d: output_size must be a positive integer, None or a pair of them, got \(0, 2\)"),
    (lambda: F.adaptive_avg_pool2d(np.ones((4, 4)), 2), ShapeError,
     r"adaptive_avg_pool2d: input must have shape \(N, C, H, W\), got \(4, 4\)"),
])
def test_pool_options_refuse_bad_arguments_with_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---------------------------------------------------------------------------------------------------------
# Every new layer in one graph: checked, drawn and stepped like the others
# ---------------------------------------------------------------------------------------------------------

def option_net():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect", dilation=2, groups=2, dtype=F64, rng=0),
        nn.Tanh(), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.AdaptiveAvgPool2d((2, 3)))


def test_a_graph_of_every_option_passes_the_gradient_check_and_is_drawn_and_stepped():
    from microgradx import check_gradients, draw, step

    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 7, 6)), label="x")
    seq = Tensor(np.random.default_rng(1).normal(size=(2, 3, 8)), label="seq")
    out = option_net()(x).sum() + nn.Conv1d(3, 2, 3, padding=1, padding_mode="replicate", dtype=F64, rng=1)(seq).sum()
    report = check_gradients(out)
    assert report.ok, str(report)
    source = draw(out).source
    for label in ("pad (reflect)", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "pad (replicate)",
                  "conv1d"):
        assert label in source, label
    s = step(out)
    events = list(s)
    assert s.run().done
    stepped = {e.node.op_name for e in events if e.node.parents}
    assert {"conv2d", "conv1d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"} <= stepped, stepped


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["max", "avg"]), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 1), st.booleans(), st.booleans(), st.sampled_from(["float32", "float64"]), st.booleans(),
       st.integers(0, 2**31))
def test_fast_pooling_agrees_with_the_reference(kind, kh, kw, sh, sw, p, ceil, ties, dtype, dilate, seed):
    rng = np.random.default_rng(seed)
    p = min(p, kh // 2, kw // 2)
    X = rng.normal(size=(2, 3, int(rng.integers(2 * kh, 10)), int(rng.integers(2 * kw, 10))))
    if ties:  # few distinct values: windows with several maxima, where the first one must win on both paths
        X = np.round(X)
    X = X.astype(dtype)

    def build(x):
        if kind == "max":
            return F.max_pool2d(x, (kh, kw), (sh, sw), p, 2 if dilate and 2 * p <= kh + 1 else 1, ceil)
        return F.avg_pool2d(x, (kh, kw), (sh, sw), p, ceil, count_include_pad=bool(seed % 2))
    found = []
    for reference in (False, True):
        x = Tensor(X.copy())
        with fast.reference_only() if reference else contextlib.nullcontext():
            out = build(x)
            out.backward(np.random.default_rng(1).normal(size=out.shape).astype(dtype))
        found.append((out.data, x.grad))
    (fo, fg), (ro, rg) = found
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert fo.dtype == ro.dtype == fg.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fo, ro, rtol=tol, atol=tol)
    np.testing.assert_allclose(fg, rg, rtol=tol, atol=tol)


def test_fast_same_size_masks_zero_exactly_the_taps_that_read_outside_the_image():
    """The fast path's flat shifts read a neighbouring row, channel or image where a tap's source pixel lies
    outside the image; the mask must zero exactly those entries, also for offsets larger than the image."""
    for h, w, kh, kw, dh, dw in itertools.product((1, 2, 3), (1, 3), (1, 2, 3), (2, 4), (1, 2), (1, 3)):
        for pt, pl in itertools.product(range(dh * (kh - 1) + 1), range(dw * (kw - 1) + 1)):
            cols6 = np.ones((2, kh, kw, 3, h, w))
            fast._zero_outside(cols6, (pt, pl), (dh, dw))
            # tap (i, j) reads pixel (p + a, q + b), a = i dh - pt, b = j dw - pl: axes (i, j, p, q)
            rows = np.arange(kh)[:, None, None, None] * dh - pt + np.arange(h)[None, None, :, None]
            cols = np.arange(kw)[None, :, None, None] * dw - pl + np.arange(w)[None, None, None, :]
            inside = (0 <= rows) & (rows < h) & (0 <= cols) & (cols < w)
            expected = np.broadcast_to(inside[None, :, :, None], cols6.shape)
            assert np.array_equal(cols6, expected), (h, w, kh, kw, dh, dw, pt, pl)
