"""Convolution and pooling at the edges the fast kernels assume away: empty batches, windows that read only
padding, sums that overflow, signed zeros, foreign dtypes. Each case runs the fast path and
``fast.reference_only()`` and, where PyTorch is installed and defined there, compares with PyTorch too."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

from microgradx import fast, nn
from microgradx import functional as F
from microgradx.tensor import Tensor

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
