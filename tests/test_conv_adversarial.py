"""Convolution and pooling at the edges the fast kernels assume away: empty batches, windows that read only
padding, sums that overflow, signed zeros, foreign dtypes. Each case runs the fast path and
``fast.reference_only()`` and, where PyTorch is installed and defined there, compares with PyTorch too."""

from __future__ import annotations

import contextlib
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from microgradx import fast, nn, optim
from microgradx import functional as F
from microgradx.ops import DomainError
from microgradx.tensor import ShapeError, Tensor

NO_TORCH = "PyTorch is not installed: it is the optional extra, pip install 'microgradx[torch]'"
PATHS = [pytest.param(False, id="fast"), pytest.param(True, id="reference")]


def path(reference: bool):
    """The fast kernels, or the readable references only."""
    return fast.reference_only() if reference else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------------
# Empty batches and empty channel groups
# ---------------------------------------------------------------------------------------------------------

EMPTY_CASES = [
    dict(kernel_size=3, padding=1),                                    # stride 1, output the input's size
    dict(kernel_size=3, stride=2, padding=1),                          # strided: the stride phases
    dict(kernel_size=(2, 3), padding="same", dilation=(2, 1)),
    dict(kernel_size=3, padding=1, groups=2, bias=False),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=2, padding_mode="circular", stride=2),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("opts", EMPTY_CASES, ids=str)
@pytest.mark.parametrize("reference", PATHS)
def test_an_empty_batch_gives_an_empty_output_and_zero_parameter_gradients_as_pytorch(opts, reference):
    conv = nn.Conv2d(4, 6, **opts, dtype=np.float64, rng=0)
    x = Tensor(np.zeros((0, 4, 5, 7)))
    with path(reference):
        y = conv(x)
        (y * 2.0).sum().backward()
    assert y.shape[:2] == (0, 6) and x.grad.shape == x.shape
    for name, p in conv.named_parameters():
        assert p.grad.shape == p.data.shape and not p.grad.any(), name
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = torch.nn.Conv2d(4, 6, **opts).double()(torch.zeros(0, 4, 5, 7, dtype=torch.float64))
    assert y.shape == tuple(expected.shape)


@pytest.mark.parametrize("reference", PATHS)
def test_an_empty_sequence_batch_goes_through_conv1d(reference):
    conv = nn.Conv1d(2, 3, 3, padding=1, dtype=np.float64, rng=0)
    x = Tensor(np.zeros((0, 2, 9)))
    with path(reference):
        y = conv(x)
        y.sum().backward()
    assert y.shape == (0, 3, 9) and x.grad.shape == (0, 2, 9) and not conv.weight.grad.any()


@pytest.mark.parametrize("padding", [0, 1])
def test_no_input_channels_give_the_bias_on_both_paths(padding):
    """(N, 0, H, W) images: every window is empty, so the output is the bias and the weight gradient empty."""
    found = []
    for reference in (False, True):
        x, w, b = Tensor(np.zeros((2, 0, 4, 4))), Tensor(np.zeros((3, 0, 3, 3))), Tensor(np.arange(3.0))
        with path(reference):
            y = F.conv2d(x, w, b, padding=padding)
            y.backward(np.ones(y.shape))
        found.append((y.data, x.grad.shape, w.grad.shape, b.grad))
    (yf, xf, wf, bf), (yr, xr, wr, br) = found
    np.testing.assert_array_equal(yf, yr)
    assert yf[1, 2].tolist() == np.full(yf.shape[2:], 2.0).tolist()
    assert xf == xr == (2, 0, 4, 4) and wf == wr == (3, 0, 3, 3)
    np.testing.assert_array_equal(bf, br)


# ---------------------------------------------------------------------------------------------------------
# Max pooling windows that read only padding
# ---------------------------------------------------------------------------------------------------------

def padding_only_windows(size, kernel, stride, padding, dilation, ceil_mode):
    """Brute force: does some window, at PyTorch's output size, have no tap inside the input?"""
    out = F.pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    return any(all(not 0 <= q * stride - padding + j * dilation < size for j in range(kernel)) for q in range(out))


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2), st.integers(0, 2), st.integers(1, 3), st.integers(1, 3), st.booleans())
@settings(max_examples=60, deadline=None)
def test_max_pool_refuses_windows_that_read_only_padding(h, w, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode):
    """With dilation the taps of a window can step over a small image, so that every tap lands in the -inf
    padding: the maximum would be -inf (PyTorch returns -inf there, with an index outside the input). The
    engine refuses it with a ShapeError naming the op; every other window has a finite maximum."""
    assume(2 * ph <= dh * (kh - 1) + 1 and 2 * pw <= dw * (kw - 1) + 1)
    assume(min(F.pool_output_size(h, kh, sh, ph, dh, ceil_mode), F.pool_output_size(w, kw, sw, pw, dw, ceil_mode)) > 0)
    empty = padding_only_windows(h, kh, sh, ph, dh, ceil_mode) or padding_only_windows(w, kw, sw, pw, dw, ceil_mode)
    X = np.random.default_rng(h * w).normal(size=(2, 1, h, w))
    args = ((kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    for reference in (False, True):
        with path(reference):
            if empty:
                with pytest.raises(ShapeError, match=r"max_pool2d: .* reads only the padding"):
                    F.max_pool2d(Tensor(X), *args)
            else:
                assert np.isfinite(F.max_pool2d(Tensor(X), *args).data).all()


def test_the_padding_only_window_error_says_which_window_and_why():
    with pytest.raises(ShapeError) as info:
        F.max_pool2d(Tensor(np.ones((1, 1, 1, 9))), 2, stride=1, padding=1, dilation=2)
    message = str(info.value)
    for part in ("max_pool2d", "(1, 1, 1, 9)", "row 0", "dilation (2, 2)", "padding (1, 1)"):
        assert part in message, (part, message)


# ---------------------------------------------------------------------------------------------------------
# Sums of finite values that overflow: refused, never a silent inf
# ---------------------------------------------------------------------------------------------------------

BIG = float(np.finfo(np.float32).max)


def upstream(y, value):
    return np.full(y.shape, value, dtype=y.data.dtype)


OVERFLOWS = {
    # forward: a window's sum of huge float32 entries (the mean itself is finite, the sum is not)
    "avg_pool2d sum": (lambda: F.avg_pool2d(Tensor(np.full((1, 1, 2, 2), BIG / 2, np.float32), label="x"), 2),
                       None, r"avg_pool2d\(x\): gives inf"),
    "avg_pool2d divisor_override": (
        lambda: F.avg_pool2d(Tensor(np.full((1, 1, 2, 2), BIG / 3, np.float32), label="x"), 2, divisor_override=1),
        None, r"avg_pool2d\(x\): gives inf"),
    # backward: an entry of overlapping windows collects the gradients of all of them
    "max_pool2d overlapping": (
        lambda: F.max_pool2d(Tensor(np.pad(np.ones((1, 1, 1, 1), np.float32), ((0, 0), (0, 0), (1, 1), (1, 1))),
                                    label="x"), 2, stride=1),
        BIG / 2, r"\(op max_pool2d\) to its parent 0 \(x\) is inf"),
    "avg_pool2d overlapping": (lambda: F.avg_pool2d(Tensor(np.ones((1, 1, 4, 4), np.float32), label="x"), 2, 1,
                                                    divisor_override=1),
                               BIG / 2, r"\(op avg_pool2d\) to its parent 0 \(x\) is inf"),
    "adaptive_avg_pool2d mean": (
        lambda: F.adaptive_avg_pool2d(Tensor(np.full((1, 1, 10, 10), BIG, np.float32), label="x"), 1),
        None, r"adaptive_avg_pool2d\(x\): gives inf"),  # a mean of 10 x 10 entries weighted by 0.1 rounded up
    "adaptive_avg_pool2d upsampling": (
        lambda: F.adaptive_avg_pool2d(Tensor(np.ones((1, 1, 1, 1), np.float32), label="x"), 3),
        BIG / 2, r"\(op adaptive_avg_pool2d\) to its parent 0 \(x\) is inf"),
}


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("case", list(OVERFLOWS))
@pytest.mark.parametrize("reference", PATHS)
def test_pooling_sums_that_overflow_raise_a_domain_error_naming_the_op(case, reference):
    make, seed, message = OVERFLOWS[case]
    with path(reference), pytest.raises(DomainError, match=message):
        y = make()
        y.backward(upstream(y, seed))


# ---------------------------------------------------------------------------------------------------------
# Ties and signed zeros: pooling selects and sums exactly, so both paths agree bit for bit
# ---------------------------------------------------------------------------------------------------------

@given(st.sampled_from(["max", "avg"]), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 1), st.booleans(), st.sampled_from(["float32", "float64"]), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
@example("avg", 3, 2, 1, 1, 0, False, "float32", 100)  # a mean of -5 over 6: the sum / 6, not times (1 / 6)
def test_pooling_ties_and_signed_zeros_agree_bit_for_bit_with_the_reference_and_pytorch(kind, kh, kw, sh, sw, p,
                                                                                       ceil_mode, dtype, seed):
    """Windows full of equal values and of +0.0 and -0.0 (a ReLU's output is full of zeros): the maximum is the
    FIRST maximal entry, sign included, and a sum of zeros starts from +0.0, as in the reference and in PyTorch;
    the gradient goes to the first maximal entry."""
    rng = np.random.default_rng(seed)
    p = min(p, kh // 2, kw // 2)
    X = rng.choice(np.array([-0.0, 0.0, 0.0, -1.0, 1.0]), size=(2, 2, int(rng.integers(kh, 8)),
                                                                int(rng.integers(kw, 8)))).astype(dtype)
    G = rng.choice(np.array([1.0, 2.0, -3.0]), size=(2, 2) + tuple(
        F.pool_output_size(s, k, st_, p, 1, ceil_mode) for s, k, st_ in zip(X.shape[2:], (kh, kw), (sh, sw))))

    def run(reference):
        x = Tensor(X.copy())
        with path(reference):
            y = (F.max_pool2d if kind == "max" else F.avg_pool2d)(x, (kh, kw), (sh, sw), p, ceil_mode=ceil_mode)
            y.backward(G.astype(dtype))
        return y.data, x.grad
    (yf, gf), (yr, gr) = run(False), run(True)
    assert yf.dtype == yr.dtype == gf.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(yf, yr)
    np.testing.assert_array_equal(np.signbit(yf), np.signbit(yr))
    np.testing.assert_array_equal(gf, gr)
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    tx = torch.tensor(X, requires_grad=True)
    ty = getattr(torch.nn.functional, f"{kind}_pool2d")(tx, (kh, kw), (sh, sw), p, ceil_mode=ceil_mode)
    ty.backward(torch.tensor(G.astype(dtype)))
    np.testing.assert_array_equal(np.signbit(yf), np.signbit(ty.detach().numpy()))
    np.testing.assert_array_equal(yf, ty.detach().numpy())
    np.testing.assert_allclose(gf, tx.grad.numpy(), rtol=1e-6, atol=1e-6)  # avg: g times 1 / divisor, rounded


# ---------------------------------------------------------------------------------------------------------
# Foreign dtypes
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("weight, bias", [(np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("reference", PATHS)
def test_a_bias_of_another_dtype_is_refused_on_both_paths(dims, weight, bias, reference):
    """The fast kernel cast a float64 bias down into its float32 output, the reference upcast the output to
    float64: neither silently; a bias of another dtype is refused like an input of another dtype."""
    shape = (1, 2) + (5,) * dims
    x, w = Tensor(np.ones(shape, weight)), Tensor(np.ones((3, 2) + (3,) * dims, weight))
    conv = F.conv1d if dims == 1 else F.conv2d
    with path(reference), pytest.raises(TypeError, match=rf"conv{dims}d: bias dtype {np.dtype(bias)} differs from "
                                                         rf"weight dtype {np.dtype(weight)}"):
        conv(x, w, Tensor(np.ones(3, bias)), padding=1)


# ---------------------------------------------------------------------------------------------------------
# Buffers between calls: partial batches, interleaved layers, a second backward, threads, read-only arrays
# ---------------------------------------------------------------------------------------------------------

def read_only(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` that raises on any write: a kernel that scribbles on its caller's arrays fails."""
    a = a.copy()
    a.flags.writeable = False
    return a


@given(st.integers(1, 5), st.integers(1, 3), st.booleans(), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.sampled_from([1, 2]), st.booleans(), st.sampled_from(["float32", "float64"]), st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_two_layers_interleaved_and_backward_twice_agree_with_the_reference(n, per_batch, same, kh, kw, stride,
                                                                          groups, depthwise, dtype, seed):
    """Two convolutions over one batch, the second forward between the first's forward and backward, the
    first backward run twice; batches of 1-3 images whatever the batch size (a partial last batch in the
    reused buffers); read-only inputs, weights and upstream gradients. The fast path gives the reference's
    outputs and gradients."""
    rng = np.random.default_rng(seed)
    c = groups if depthwise else 2 * groups
    o = 2 * groups
    stride = 1 if same else stride
    X = read_only(rng.normal(size=(n, c, int(rng.integers(kh, 7)), int(rng.integers(kw, 7)))).astype(dtype))
    Ws = [read_only(rng.normal(size=(o, c // groups, kh, kw)).astype(dtype)) for _ in range(2)]
    B = read_only(rng.normal(size=o).astype(dtype))
    opts = dict(stride=stride, padding="same" if same else (kh // 2, kw - 1), dilation=1, groups=groups)
    h, w = X.shape[2:]
    ho, wo = (h, w) if same else ((h + 2 * (kh // 2) - kh) // stride + 1, (w + 2 * (kw - 1) - kw) // stride + 1)
    Gs = [read_only(rng.normal(size=(n, o, ho, wo)).astype(dtype)) for _ in range(2)]
    block = per_batch * c * kh * kw * ho * wo  # the fast path unrolls per_batch images at a time

    def run(reference):
        x, w1, w2, b = Tensor(X), Tensor(Ws[0]), Tensor(Ws[1]), Tensor(B)
        with fast.reference_only() if reference else mock.patch.object(fast, "_IM2COL_BLOCK", block):
            y1 = F.conv2d(x, w1, b, **opts)
            y2 = F.conv2d(x, w2, None, **opts)
            y2.backward(Gs[1])
            y1.backward(Gs[0])
            y1.backward(Gs[0])
        return y1.data, y2.data, x.grad, w1.grad, w2.grad, b.grad
    tol = 1e-4 if dtype == "float32" else 1e-11
    for name, f, r in zip(("y1", "y2", "x.grad", "w1.grad", "w2.grad", "b.grad"), run(False), run(True)):
        assert f.dtype == np.dtype(dtype) and f.shape == r.shape, name
        np.testing.assert_allclose(f, r, rtol=tol, atol=tol, err_msg=name)


def test_two_threads_training_two_models_do_not_disturb_each_other():
    """Each convolution and pooling call owns its buffers: models trained in threads end exactly where each
    ends when trained alone."""
    import threading

    def train(seed):
        rng = np.random.default_rng(seed)
        model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=seed, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(4, 3, 3, stride=2, padding=1, rng=seed + 1, dtype=np.float64),
                              nn.AvgPool2d(2, 1))
        opt = optim.SGD(model.parameters(), lr=1e-3)
        X = rng.normal(size=(5, 2, 12, 12))
        for _ in range(6):
            opt.zero_grad()
            (model(Tensor(X)) ** 2).mean().backward()
            opt.step()
        return [p.data.copy() for p in model.parameters()]
    with mock.patch.object(fast, "_IM2COL_BLOCK", 300):  # several batches per call: the buffers are reused
        alone = [train(seed) for seed in range(3)]
        found = [None] * 3

        def work(i):
            found[i] = train(i)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for a, b in zip(alone, found):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))


# ---------------------------------------------------------------------------------------------------------
# Arrays changed between a forward pass and its backward pass
# ---------------------------------------------------------------------------------------------------------

def change_input(X: np.ndarray, y: Tensor) -> None:
    X[...] = np.random.default_rng(7).normal(size=X.shape)


def change_output(X: np.ndarray, y: Tensor) -> None:
    y.data[...] = 0.0


NODES = {
    "conv2d same": lambda x, w: F.conv2d(x, w, padding=1),
    "conv2d strided": lambda x, w: F.conv2d(x, w, stride=2),
    "conv1d same": lambda x, w: F.conv1d(x[:, :, 0], w[:, :, 0], padding="same"),
    "avg_pool2d": lambda x, w: F.avg_pool2d(x, 2, stride=1),
}


@pytest.mark.parametrize("change", [change_input, change_output], ids=lambda f: f.__name__)
@pytest.mark.parametrize("make", list(NODES))
def test_a_node_differentiates_the_arrays_of_its_forward_pass_on_both_paths(make, change):
    """The caller's batch array (shared, not copied, by Tensor) or a node's output changed after the forward
    pass: the gradients are those of the forward pass that was run, on both paths (the reference keeps a copy,
    its padded windows), and a second backward gives them again. The weight gradient of a convolution reads
    the batch even when the batch itself needs no gradient."""
    found = []
    for reference in (False, True):
        X = np.random.default_rng(0).normal(size=(2, 2, 6, 6))
        x, w = Tensor(X), Tensor(np.random.default_rng(1).normal(size=(3, 2, 3, 3)))  # x holds X itself, no copy
        with path(reference):
            y = NODES[make](x, w)
            G = np.random.default_rng(2).normal(size=y.shape)
            out = y.data.copy()
            change(X, y)
            y.backward(G)
            first = [t.grad.copy() for t in (x, w) if t.grad is not None]
            y.backward(G)
            second = [t.grad - g for t, g in zip((x, w), first)]
        found.append((out, first, second))
    (yf, gf, sf), (yr, gr, sr) = found
    np.testing.assert_allclose(yf, yr, rtol=1e-12, atol=1e-12)
    assert len(gf) == len(gr)
    for f, r, again in zip(gf, gr, sf):
        np.testing.assert_allclose(f, r, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(again, f, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("padding", [1, 0], ids=["same", "valid"])
def test_a_refused_backward_leaves_the_gradients_as_they_were_and_a_retry_works(padding):
    """An upstream gradient whose products overflow float32: the same error on both paths, naming the op and
    the parent, every .grad as before the call, and a backward with a finite seed afterwards adds the right
    gradient (float64 central differences of the conv's sum)."""
    found, messages = [], []
    for reference in (False, True):
        conv = nn.Conv2d(1, 2, 3, padding=padding, rng=0, dtype=np.float32)
        x = Tensor(np.random.default_rng(1).normal(size=(2, 1, 4, 4)).astype(np.float32), label="x")
        leaves = (x, conv.weight, conv.bias)
        for t in leaves:
            t.grad = np.full(t.data.shape, 5.0, np.float32)
        with path(reference):
            y = conv(x)
            with pytest.raises(DomainError, match=r"\(op conv2d\) to its parent 1 \(weight\) is inf") as info:
                y.backward(np.full(y.shape, BIG / 2, np.float32))
            assert all((t.grad == 5.0).all() for t in leaves)
            y.backward(np.ones(y.shape, np.float32))
        found.append([t.grad - 5.0 for t in leaves])
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    X, W, B = (t.data.astype(np.float64) for t in leaves)

    def total(X, W, B):
        return F.conv2d(Tensor(X), Tensor(W), Tensor(B), padding=padding).data.sum()
    for k, arrays in enumerate(found):
        for i, got in enumerate(arrays):
            args = [X, W, B]
            numeric = np.zeros(args[i].shape)
            for j in np.ndindex(args[i].shape):
                up, down = [a.copy() for a in args], [a.copy() for a in args]
                up[i][j] += 1e-4
                down[i][j] -= 1e-4
                numeric[j] = (total(*up) - total(*down)) / 2e-4
            np.testing.assert_allclose(got, numeric, rtol=1e-4, atol=1e-4, err_msg=f"path {k}, leaf {i}")


# ---------------------------------------------------------------------------------------------------------
# Any memory layout, any option: the fast path, the reference and PyTorch
# ---------------------------------------------------------------------------------------------------------

def layout(a: np.ndarray, how: str) -> np.ndarray:
    """``a``'s values in another memory layout: transposed in memory, a strided slice, negative strides."""
    if how == "transposed":
        return np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    if how == "sliced":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if how == "reversed":
        return a[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1]
    return a


@given(st.integers(1, 4), st.sampled_from([1, 2, 3]), st.booleans(), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 4), st.integers(1, 2), st.integers(1, 2), st.integers(0, 3), st.integers(0, 3),
       st.sampled_from(["contiguous", "transposed", "sliced", "reversed"]),
       st.sampled_from(["contiguous", "transposed"]), st.sampled_from(["float32", "float64"]), st.booleans(),
       st.integers(0, 2**31))
@settings(max_examples=50, deadline=None)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_conv2d_on_any_layout_and_options_agrees_with_the_reference_and_pytorch(
        n, groups, depthwise, kh, kw, sh, sw, dh, dw, ph, pw, x_layout, g_layout, dtype, same, seed):
    """Strides larger than the kernel, kernels as large as the padded input, dilation with padding, depthwise
    groups; inputs and upstream gradients transposed in memory, sliced or negatively strided."""
    rng = np.random.default_rng(seed)
    c = groups if depthwise else 2 * groups
    o = groups * int(rng.integers(1, 3))
    if same:
        sh = sw = 1
    pads = (kh * dh // 2, kw * dw // 2) if same else (ph, pw)
    h = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * pads[0]), 8))
    w = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pads[1]), 8))
    X = layout(rng.normal(size=(n, c, h, w)), x_layout).astype(dtype, copy=False)
    W = rng.normal(size=(o, c // groups, kh, kw)).astype(dtype)
    B = rng.normal(size=o).astype(dtype)
    opts = dict(stride=(sh, sw), padding=pads, dilation=(dh, dw), groups=groups)
    ho, wo = ((s + 2 * p - d * (k - 1) - 1) // st_ + 1 for s, p, d, k, st_ in zip((h, w), pads, (dh, dw), (kh, kw),
                                                                                  (sh, sw)))
    G = layout(rng.normal(size=(n, o, ho, wo)), g_layout).astype(dtype, copy=False)

    def run(reference):
        x, wt, b = Tensor(X), Tensor(W), Tensor(B)
        with path(reference):
            y = F.conv2d(x, wt, b, **opts)
            y.backward(G)
        return y.data, x.grad, wt.grad, b.grad
    fast_, ref = run(False), run(True)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for name, f, r in zip(("out", "x.grad", "weight.grad", "bias.grad"), fast_, ref):
        assert f.dtype == r.dtype == np.dtype(dtype) and f.shape == r.shape, name
        np.testing.assert_allclose(f, r, rtol=tol, atol=tol, err_msg=name)
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    tx, tw, tb = (torch.tensor(a.copy(), requires_grad=True) for a in (X, W, B))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **opts)
    ty.backward(torch.tensor(G.copy()))
    for name, f, t in zip(("out", "x.grad", "weight.grad", "bias.grad"), fast_, (ty, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(f, t.detach().numpy(), rtol=tol, atol=10 * tol, err_msg=name)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2), st.integers(0, 2),
       st.integers(1, 3), st.integers(1, 3), st.booleans(), st.sampled_from(["contiguous", "sliced", "reversed"]),
       st.sampled_from(["float32", "float64"]), st.integers(0, 2**31))
@settings(max_examples=50, deadline=None)
def test_max_pool2d_with_dilation_padding_and_ceil_mode_agrees_with_the_reference_and_pytorch(
        kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, x_layout, dtype, seed):
    """Where the engine accepts the options (no window of only padding), its maxima and gradients are the
    reference's and PyTorch's, also on strided inputs and with ties."""
    assume(2 * ph <= dh * (kh - 1) + 1 and 2 * pw <= dw * (kw - 1) + 1)
    rng = np.random.default_rng(seed)
    X = layout(np.round(rng.normal(size=(2, 2, int(rng.integers(1, 9)), int(rng.integers(1, 9)))), 1),
               x_layout).astype(dtype, copy=False)
    args = ((kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    try:
        F.max_pool2d(Tensor(X), *args)
    except ShapeError:
        return  # the window does not fit, or one reads only padding (tested above): PyTorch is not asked
    found = []
    for reference in (False, True):
        x = Tensor(X)
        with path(reference):
            y = F.max_pool2d(x, *args)
            G = np.random.default_rng(seed + 1).normal(size=y.shape).astype(dtype)
            y.backward(G)
        found.append((y.data, x.grad))
    (yf, gf), (yr, gr) = found
    np.testing.assert_array_equal(yf, yr)
    np.testing.assert_allclose(gf, gr, rtol=1e-6, atol=1e-6)
    if 2 * ph > kh or 2 * pw > kw:
        return  # PyTorch bounds the padding by half the undilated kernel; the engine by half the dilated window
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    tx = torch.tensor(X.copy(), requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, *args)
    ty.backward(torch.tensor(G))
    np.testing.assert_array_equal(yf, ty.detach().numpy())
    np.testing.assert_allclose(gf, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Non-finite raw batches
# ---------------------------------------------------------------------------------------------------------

RAW = {
    "conv2d": lambda X: F.conv2d(X, Tensor(np.ones((1, 2, 3, 3))), padding=1),
    "conv1d": lambda X: F.conv1d(X[:, :, 2], Tensor(np.ones((1, 2, 3)))),
    "max_pool2d": lambda X: F.max_pool2d(X, 2),
    "avg_pool2d": lambda X: F.avg_pool2d(X, 2),
    "adaptive_avg_pool2d": lambda X: F.adaptive_avg_pool2d(X, 1),
    "global_avg_pool2d": F.global_avg_pool2d,
}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("op", list(RAW))
@pytest.mark.parametrize("reference", PATHS)
def test_a_raw_batch_with_a_non_finite_entry_is_refused_naming_the_op_and_the_entry(op, bad, reference):
    X = np.ones((2, 2, 4, 4))
    X[1, 1, 2, 3] = bad
    where = r"\(1, 1, 3\)" if op == "conv1d" else r"\(1, 1, 2, 3\)"
    with path(reference), pytest.raises(DomainError, match=rf"^{op}: input data must be finite, got {bad!r} at index "
                                                           rf"{where}"):
        RAW[op](X)
