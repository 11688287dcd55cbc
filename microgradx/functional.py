"""Convolution, pooling, batch normalisation, normalisation over chosen axes (LayerNorm, GroupNorm) and
embedding lookup on Tensors: rows of the tensor-op table, declared here.

Like ``matmul`` each is one node whose forward, vjp and jvp are written out here and registered with
``deftensorop``; the public functions check their arguments and build the node with ``node``. Images are NCHW
arrays (batch, channels, height, width).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import fast
from .ops import DomainError
from .tensor import PADDING_MODES, Kernel, ShapeError, Tensor, as_tensor, check_bias_dtype, deftensorop, node
from .tensor import pad as tensor_pad

__all__ = ["conv2d", "conv1d", "pad", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d",
           "batch_norm", "conv_output_size", "pool_output_size"]


def _pair(name: str, what: str, v: Any, least: int) -> tuple[int, int]:
    items = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(items) != 2 or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= least
                                  for i in items):
        raise ValueError(f"{name}: {what} must be an integer >= {least} or a pair of them, got {v!r}")
    return int(items[0]), int(items[1])


def _image(name: str, x: Any, dtype: Any = None, ndim: int = 4) -> Tensor:
    try:
        t = x if isinstance(x, Tensor) else as_tensor(np.asarray(x, dtype=dtype))
    except DomainError as e:  # a raw batch with a NaN or inf: say which op it was given to
        raise DomainError(f"{name}: input {str(e).partition(': ')[2]}", name, e.value) from None
    if t.data.ndim != ndim:
        want = "(N, C, H, W)" if ndim == 4 else "(N, C, L)"
        raise ShapeError(f"{name}: input must have shape {want}, got {t.data.shape}")
    return t


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one axis: floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.

    >>> conv_output_size(28, 3, 1, 1), conv_output_size(8, 3, 2, 0), conv_output_size(7, 2, 2)
    (28, 3, 3)
    >>> conv_output_size(9, 3, dilation=2)
    5
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _windows(X: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int = 1, dw: int = 1) -> np.ndarray:
    """A view (N, C, Ho, Wo, kh, kw) of every kh x kw window at stride (sh, sw), its taps dilation (dh, dw)
    apart: no copy is made."""
    span = sliding_window_view(X, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return span[:, :, ::sh, ::sw, ::dh, ::dw]


def _fold(shape: tuple[int, ...], dtype: Any, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int,
          piece: Any, dh: int = 1, dw: int = 1) -> np.ndarray:
    """col2im: an array of ``shape`` (windows over its last two axes) to which each kernel tap (i, j) adds
    ``piece(i, j)`` (..., ho, wo) at rows i dh, i dh + sh, ... and columns j dw, j dw + sw, ...

    One strided slice-add per kernel tap (kh * kw NumPy calls, each over the whole batch), which also
    accumulates correctly where windows overlap (stride < kernel).
    """
    dx = np.zeros(shape, dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            dx[..., r:r + sh * (ho - 1) + 1:sh, c:c + sw * (wo - 1) + 1:sw] += piece(i, j)
    return dx


# ---------------------------------------------------------------------------------------------------------
# Padding the spatial axes: zeros, reflect, replicate, circular (PyTorch's padding modes)
# ---------------------------------------------------------------------------------------------------------

def pad(x: Any, widths: Sequence[tuple[int, int]], mode: str = "zeros") -> Tensor:
    """Pad the last ``len(widths)`` axes of ``x`` by (before, after) entries each, one graph node.

    ``mode``: ``"zeros"``; ``"reflect"`` (mirror without repeating the edge: needs width < size);
    ``"replicate"`` (repeat the edge); ``"circular"`` (wrap around: needs width <= size), PyTorch's names.
    The vjp adds each padded entry's gradient back onto the input entry it copies. The row is
    ``tensor.pad``'s (whose widths run over every axis, first axis first).

    >>> pad(Tensor([[1.0, 2.0, 3.0]]), [(2, 1)], "reflect").data.tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    """
    x = as_tensor(x)
    widths = tuple((int(a), int(b)) for a, b in widths)
    if len(widths) > x.ndim:
        raise ValueError(f"pad: widths {widths} do not fit input of shape {x.shape} (one pair per trailing axis)")
    return tensor_pad(x, ((0, 0),) * (x.ndim - len(widths)) + widths, mode=mode)


# ---------------------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------------------

def _conv_padding(name: str, padding: Any, kernel: tuple[int, int], dilation: tuple[int, int],
                  stride: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(before, after) per spatial axis from an int, a pair, ``"valid"`` (none) or ``"same"`` (the output as
    large as the input: d (k - 1) in all, the odd one after, as PyTorch)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"{name}: padding must be an integer, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{name}: padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
    ph, pw = _pair(name, "padding", padding, 0)
    return (ph, ph), (pw, pw)


def conv2d(x: Any, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
           padding_mode: str = "zeros") -> Tensor:
    """2-D cross-correlation (what deep learning calls convolution), NCHW, one graph node.

    x: (N, C, H, W); weight: (O, C / groups, kh, kw); bias: (O,).
    out[n, o, p, q] = bias[o] + sum over c, i, j of weight[o, c, i, j] * xpad[n, c', p sh + i dh, q sw + j dw],
    where c' runs over the input channels of o's group (``groups`` splits the channels into independent
    convolutions) and xpad is x padded by ``padding`` (an int, a pair, ``"valid"`` or ``"same"``) with
    ``padding_mode`` (zeros, reflect, replicate, circular: a ``pad`` node before this one when not zeros).
    Output size per axis: floor((size + 2 padding - dilation (k - 1) - 1) / stride) + 1.

    >>> x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=False)
    >>> w = Tensor(np.ones((1, 1, 2, 2)))
    >>> y = conv2d(x, w, stride=2); y.data[0, 0].tolist()
    [[10.0, 18.0], [42.0, 50.0]]
    >>> y.sum().backward(); w.grad[0, 0].tolist()
    [[20.0, 24.0], [36.0, 40.0]]
    """
    return _conv("conv2d", x, weight, bias, stride, padding, dilation, groups, padding_mode, 2)


def conv1d(x: Any, weight: Tensor, bias: Tensor | None = None, stride: int = 1, padding: int | str = 0,
           dilation: int = 1, groups: int = 1, padding_mode: str = "zeros") -> Tensor:
    """1-D cross-correlation over (N, C, L) sequences: ``conv2d`` on a height of 1, one graph node.

    weight: (O, C / groups, k); out[n, o, p] = bias[o] + sum over c, i of weight[o, c, i] xpad[n, c, p s + i d].

    >>> conv1d(Tensor([[[1.0, 2.0, 3.0, 4.0]]]), Tensor([[[1.0, -1.0]]])).data.tolist()
    [[[-1.0, -1.0, -1.0]]]
    """
    return _conv("conv1d", x, weight, bias, stride, padding, dilation, groups, padding_mode, 1)


def _conv(name: str, x: Any, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any, dilation: Any,
          groups: Any, padding_mode: str, dims: int) -> Tensor:
    """Check the arguments of conv1d / conv2d and build the node (after a ``pad`` node for non-zero modes)."""
    W = weight.data
    x = _image(name, x, W.dtype, dims + 2)
    X = x.data
    if W.ndim != dims + 2:
        raise ShapeError(f"{name}: weight of shape {W.shape} needs {dims + 2} axes (out_channels, in_channels / "
                         f"groups, {'k' if dims == 1 else 'kh, kw'})")

    def pair(what: str, v: Any, least: int) -> tuple[int, int]:
        if dims == 2:
            return _pair(name, what, v, least)
        v = v[0] if isinstance(v, (tuple, list)) and len(v) == 1 else v
        return (least, _pair(name, what, v, least)[1])  # a 1-D convolution is a 2-D one of height 1

    strides, dil = pair("stride", stride, 1), pair("dilation", dilation, 1)
    kernel = (1, W.shape[-1]) if dims == 1 else (W.shape[2], W.shape[3])
    if isinstance(padding, str):
        pads = _conv_padding(name, padding, kernel, dil, strides)
    else:
        ph, pw = pair("padding", padding, 0)
        pads = ((ph, ph), (pw, pw))
    if not (isinstance(groups, numbers.Integral) and not isinstance(groups, bool) and groups >= 1):
        raise ValueError(f"{name}: groups must be an integer >= 1, got {groups!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{name}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, got "
                         f"{padding_mode!r}")
    c, o = X.shape[1], W.shape[0]
    if c % groups or o % groups or W.shape[1] * groups != c:
        raise ShapeError(f"{name}: weight of shape {W.shape} does not fit input of shape {X.shape} with groups="
                         f"{groups} (needs in_channels / groups = {W.shape[1]} input channels per group, and "
                         "in_channels and out_channels both multiples of groups)")
    if X.dtype != W.dtype:
        raise TypeError(f"{name}: input dtype {X.dtype} differs from weight dtype {W.dtype}; convert the input "
                        "(float32 data is never silently upcast)")
    size = (1, X.shape[-1]) if dims == 1 else X.shape[2:]
    if any(s + a + b < d * (k - 1) + 1 for s, k, d, (a, b) in zip(size, kernel, dil, pads)):
        raise ShapeError(f"{name}: a kernel of {W.shape[2:]} with dilation {dil[2 - dims:]} does not fit input of "
                         f"shape {X.shape} with padding {padding!r}")
    check_bias_dtype(name, bias, W)
    if bias is not None and bias.data.shape != (o,):
        raise ShapeError(f"{name}: bias of shape {bias.data.shape} does not fit weight of shape {W.shape} "
                         f"(needs ({o},))")
    if padding_mode != "zeros" and any(a or b for a, b in pads):
        x = pad(x, pads[2 - dims:], padding_mode)  # a node of its own, as PyTorch pads before convolving
        pads = ((0, 0), (0, 0))
    parents = (x, weight) if bias is None else (x, weight, bias)
    arg = {"stride": strides, "padding": pads, "dilation": dil, "groups": int(groups)}
    return node(CONV2D if dims == 2 else CONV1D, parents, arg)


def _conv2d_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, stride: tuple[int, int],
                    padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int],
                    groups: int) -> tuple:
    # The reference: pad, take every window as a view, and contract it with the weight group by group.
    (sh, sw), (dh, dw), G = stride, dilation, groups
    o, cg, kh, kw = W.shape
    Xp = np.pad(X, ((0, 0), (0, 0), *padding))
    win = _windows(Xp, kh, kw, sh, sw, dh, dw)                    # (n, c, ho, wo, kh, kw)
    n, c, ho, wo = win.shape[:4]
    win = win.reshape(n, G, cg, ho, wo, kh, kw)
    Wg = W.reshape(G, o // G, cg, kh, kw)
    out = np.einsum("ngcpqij,gocij->ngopq", win, Wg, optimize=True).reshape(n, o, ho, wo)
    if bias:
        out = out + bias[0].reshape(1, o, 1, 1)
    return out, (X, W, len(bias), win, Xp.shape, stride, padding, dilation, groups)


def _conv2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    X, W, nb, win, padded_shape, (sh, sw), ((pt, _), (pl, _)), (dh, dw), G = res
    o, cg, kh, kw = W.shape
    n, _, h, w = X.shape
    ho, wo = g.shape[2:]
    gg = g.reshape(n, G, o // G, ho, wo)
    gx = gW = None
    if needs[0]:  # each window's gradient, g times the weight, folded back onto the padded input
        gwin = np.einsum("ngopq,gocij->ngcpqij", gg, W.reshape(G, o // G, cg, kh, kw), optimize=True)
        gwin = gwin.reshape(n, G * cg, ho, wo, kh, kw)
        gpad = _fold(padded_shape, X.dtype, kh, kw, sh, sw, ho, wo, lambda i, j: gwin[..., i, j], dh, dw)
        gx = gpad[:, :, pt:pt + h, pl:pl + w]
    if needs[1]:  # g times each window, summed over the batch and the output positions
        gW = np.einsum("ngopq,ngcpqij->gocij", gg, win, optimize=True).reshape(W.shape)
    if not nb:
        return gx, gW
    return gx, gW, (g.sum(axis=(0, 2, 3)) if needs[2] else None)


def _conv2d_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    # Bilinear in (x, W), plus the bias: d(x * W + b) = dx * W + x * dW + db.
    X, W, nb, _, _, stride, padding, dilation, groups = res
    arg = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return _conv2d_forward(t[0], W, **arg)[0] + _conv2d_forward(X, t[1], *t[2:], **arg)[0]


CONV2D = deftensorop("conv2d", _conv2d_forward, _conv2d_vjp, _conv2d_jvp,
                     "2-D cross-correlation, NCHW, with stride, zero padding, dilation and groups",
                     checks_output=True, checks_grad=True,
                     fast=Kernel(fast.conv2d_forward, fast.conv2d_vjp))


def _as_1d(kernel: Kernel) -> Kernel:
    """A 2-D kernel run on (N, C, L) as (N, C, 1, L): the forward's output and the gradients lose the height."""
    def forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, **arg: Any) -> tuple:
        out, res = kernel.forward(X[:, :, None], W[:, :, None], *bias, **arg)
        return out[:, :, 0], res

    def vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
        grads = kernel.vjp(g[:, :, None], res, needs)
        return tuple(None if d is None else d[:, :, 0] if k < 2 else d for k, d in enumerate(grads))
    return Kernel(forward, vjp)


_CONV1D_REFERENCE = _as_1d(Kernel(_conv2d_forward, _conv2d_vjp))
CONV1D = deftensorop("conv1d", _CONV1D_REFERENCE.forward, _CONV1D_REFERENCE.vjp,
                     lambda res, t: _conv2d_jvp(res, [t[0][:, :, None], t[1][:, :, None], *t[2:]])[:, :, 0],
                     "1-D cross-correlation of (N, C, L) sequences: conv2d on a height of 1",
                     checks_output=True, checks_grad=True,
                     fast=_as_1d(Kernel(fast.conv2d_forward, fast.conv2d_vjp)))


# ---------------------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------------------

def pool_output_size(size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Windows along one axis, as PyTorch counts them: floor (or with ``ceil_mode`` ceil) of
    (size + 2 padding - dilation (kernel - 1) - 1) / stride, plus 1; with ``ceil_mode`` a last window that
    would start in the right-hand padding is dropped.

    >>> pool_output_size(5, 2, 2), pool_output_size(5, 2, 2, ceil_mode=True)
    (2, 3)
    >>> pool_output_size(6, 3, 2, 1, ceil_mode=True)   # the fifth window would start in the padding
    4
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_args(name: str, x: Any, k: Any, stride: Any, padding: Any, dilation: Any,
               ceil_mode: bool) -> tuple[Tensor, dict[str, Any]]:
    """The input and the row's arguments: kernel, stride, (before, after) padding per axis (``after`` covers
    the windows ``ceil_mode`` adds), dilation and the output size."""
    x = _image(name, x)
    kernel = _pair(name, "kernel size", k, 1)
    strides = kernel if stride is None else _pair(name, "stride", stride, 1)
    pads = _pair(name, "padding", padding, 0)
    dil = _pair(name, "dilation", dilation, 1)
    size = x.data.shape[2:]
    for k_, p_, d_ in zip(kernel, pads, dil):
        if 2 * p_ > d_ * (k_ - 1) + 1:
            raise ValueError(f"{name}: padding {pads} must be at most half of the window {kernel} (dilation {dil}), "
                             "as in PyTorch")
    out = tuple(pool_output_size(s, k_, st, p_, d_, bool(ceil_mode))
                for s, k_, st, p_, d_ in zip(size, kernel, strides, pads, dil))
    if min(out) < 1:
        raise ShapeError(f"{name}: a {kernel[0]}x{kernel[1]} window does not fit input of shape {x.data.shape}"
                         f"{f' with padding {pads}' if any(pads) else ''}")
    for axis, (s, k_, st, p_, d_, o) in enumerate(zip(size, kernel, strides, pads, dil, out)):
        # NOTE: dilated taps can step over a small image, so that a window reads only the -inf padding
        # (PyTorch then returns -inf); windows are products of a row range and a column range, so one axis
        # at a time finds them
        taps = (np.arange(o) * st - p_)[:, None] + d_ * np.arange(k_)
        empty = np.flatnonzero(~((taps >= 0) & (taps < s)).any(axis=1))
        if empty.size:
            raise ShapeError(f"{name}: window {('row', 'column')[axis]} {empty[0]} of input of shape {x.data.shape} "
                             f"reads only the padding (window {kernel}, stride {strides}, dilation {dil}, padding "
                             f"{pads}): its maximum would be -inf; use less padding or dilation")
    after = tuple(max(0, (o - 1) * st + d_ * (k_ - 1) + 1 - s - p_)
                  for o, st, d_, k_, s, p_ in zip(out, strides, dil, kernel, size, pads))
    arg = {"kernel": kernel, "stride": strides, "padding": ((pads[0], after[0]), (pads[1], after[1])),
           "dilation": dil, "out": out}
    return x, arg


def _pooled_windows(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
                    dilation: tuple[int, int], out: tuple[int, int], fill: float) -> tuple[np.ndarray, tuple]:
    """The (N, C, Ho, Wo, kh * kw) windows of X padded with ``fill`` (a copy), and the padded shape."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    Xp = np.pad(X, ((0, 0), (0, 0), *padding), constant_values=fill) if np.any(padding) else X
    win = _windows(Xp, kh, kw, sh, sw, dh, dw)[:, :, :ho, :wo]
    return win.reshape(*win.shape[:4], kh * kw), Xp.shape


def max_pool2d(x: Any, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
               ceil_mode: bool = False) -> Tensor:
    """The largest entry of each window (stride defaults to the window; ``padding`` adds -inf borders, at most
    half a window; ``ceil_mode`` keeps a last, partial window; the taps of a window are ``dilation`` apart).

    On a tie the whole gradient goes to the FIRST maximal entry of the window in row-major order (the
    top-most, then left-most), as PyTorch's CPU kernel does; overlapping windows (stride < k) add up.

    >>> x = Tensor([[[[1.0, 5.0], [5.0, 2.0]]]]); y = max_pool2d(x, 2); y.backward(np.ones((1, 1, 1, 1)))
    >>> y.data.ravel().tolist(), x.grad[0, 0].tolist()
    ([5.0], [[0.0, 1.0], [0.0, 0.0]])
    >>> max_pool2d(Tensor(np.arange(9.0).reshape(1, 1, 3, 3)), 2, ceil_mode=True).data[0, 0].tolist()
    [[4.0, 5.0], [7.0, 8.0]]
    """
    x, arg = _pool_args("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    return node(MAX_POOL2D, (x,), arg)


def _max_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
                        dilation: tuple[int, int], out: tuple[int, int]) -> tuple:
    flat, padded_shape = _pooled_windows(X, kernel, stride, padding, dilation, out, -np.inf)
    arg = flat.argmax(axis=-1)[..., None]  # argmax returns the first maximum: the tie rule above
    res = (X.shape, padded_shape, X.dtype, arg, kernel, stride, padding, dilation)
    return np.take_along_axis(flat, arg, axis=-1)[..., 0], res


def _max_pool2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, padded_shape, dtype, arg, (kh, kw), (sh, sw), ((pt, _), (pl, _)), (dh, dw) = res
    n, c, ho, wo = arg.shape[:4]
    dw_ = np.zeros((n, c, ho, wo, kh * kw), dtype=dtype)
    np.put_along_axis(dw_, arg, g[..., None], axis=-1)
    dw_ = dw_.reshape(n, c, ho, wo, kh, kw)
    gpad = _fold(padded_shape, dtype, kh, kw, sh, sw, ho, wo, lambda i, j: dw_[..., i, j], dh, dw)
    return (gpad[:, :, pt:pt + shape[2], pl:pl + shape[3]],)


def _max_pool2d_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    _, _, _, arg, kernel, stride, padding, dilation = res
    flat, _ = _pooled_windows(t[0], kernel, stride, padding, dilation, arg.shape[2:4], 0.0)
    return np.take_along_axis(flat, arg, axis=-1)[..., 0]


# NOTE: the pooling rows sum finite values (a window's entries; the gradients of the windows that share an entry),
# and a sum of finite values can overflow: their outputs and gradients are scanned like convolution's
MAX_POOL2D = deftensorop("max_pool2d", _max_pool2d_forward, _max_pool2d_vjp, _max_pool2d_jvp,
                         "the largest entry of each window; a tie goes to the first, as PyTorch's CPU kernel",
                         checks_grad=True, fast=Kernel(fast.max_pool2d_forward, fast.max_pool2d_vjp))


def avg_pool2d(x: Any, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """The mean of each window (stride defaults to the window; ``padding`` adds zero borders, at most half a
    window; ``ceil_mode`` keeps a last, partial window). As PyTorch, a window's sum is divided by the number
    of its entries inside the padded input (``count_include_pad``, the default) or inside the input itself,
    or by ``divisor_override``. Each entry of a window gets g / divisor.

    >>> x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4)); avg_pool2d(x, 2).data[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    >>> avg_pool2d(Tensor(np.ones((1, 1, 2, 2))), 2, padding=1, count_include_pad=False).data[0, 0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    x, arg = _pool_args("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and not (isinstance(divisor_override, numbers.Integral)
                                             and not isinstance(divisor_override, bool) and divisor_override >= 1):
        raise ValueError(f"avg_pool2d: divisor_override must be a positive integer or None, got {divisor_override!r}")
    del arg["dilation"]
    arg["divisor"] = _avg_divisor(x.data.shape[2:], arg, bool(count_include_pad), divisor_override)
    return node(AVG_POOL2D, (x,), arg)


def _avg_divisor(size: tuple[int, int], arg: dict[str, Any], count_include_pad: bool,
                 divisor_override: int | None) -> np.ndarray:
    """(Ho, Wo) divisors: each window's count of entries inside the padded input (or the input itself)."""
    if divisor_override is not None:
        return np.full(arg["out"], float(divisor_override))
    counts = []
    for s, k, st, (p, _), o in zip(size, arg["kernel"], arg["stride"], arg["padding"], arg["out"]):
        start = np.arange(o) * st - p
        end = np.minimum(start + k, s + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, s)
        counts.append(end - start)
    return np.outer(counts[0], counts[1]).astype(float)


def _avg_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
                        out: tuple[int, int], divisor: np.ndarray) -> tuple:
    flat, padded_shape = _pooled_windows(X, kernel, stride, padding, (1, 1), out, 0.0)
    res = (X.shape, padded_shape, X.dtype, kernel, stride, padding, out, divisor)
    return flat.sum(axis=-1) / divisor.astype(X.dtype), res  # the sum over the count, rounded once (as PyTorch)


def _avg_pool2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, padded_shape, dtype, (kh, kw), (sh, sw), ((pt, _), (pl, _)), (ho, wo), divisor = res
    gs = g / divisor.astype(dtype)  # each entry of a window gets g / divisor
    gpad = _fold(padded_shape, dtype, kh, kw, sh, sw, ho, wo, lambda i, j: gs)
    return (gpad[:, :, pt:pt + shape[2], pl:pl + shape[3]],)


AVG_POOL2D = deftensorop("avg_pool2d", _avg_pool2d_forward, _avg_pool2d_vjp,
                         lambda res, t: _avg_pool2d_forward(t[0], *res[3:])[0],
                         "the mean of each window", checks_output=True, checks_grad=True,
                         fast=Kernel(fast.avg_pool2d_forward, _avg_pool2d_vjp))


def _adaptive_bins(size: int, out: int) -> np.ndarray:
    """The (out, size) averaging matrix of adaptive pooling: row i is 1 / len over
    [floor(i size / out), ceil((i + 1) size / out)), PyTorch's bins.

    >>> (3 * _adaptive_bins(5, 2)).tolist()
    [[1.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]]
    """
    P = np.zeros((out, size))
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        P[i, start:end] = 1.0 / (end - start)
    return P


def adaptive_avg_pool2d(x: Any, output_size: int | None | tuple[int | None, int | None]) -> Tensor:
    """The mean over each of output_size bins per axis, whatever the input's size (PyTorch's bins: bin i of
    n over a length L covers [floor(i L / n), ceil((i + 1) L / n))); None keeps an axis' size.

    The mean is linear: out = P_h x P_w^T with the averaging matrices P, so the vjp is P_h^T g P_w.

    >>> adaptive_avg_pool2d(Tensor(np.arange(16.0).reshape(1, 1, 4, 4)), (1, 2)).data[0, 0].tolist()
    [[6.5, 8.5]]
    """
    x = _image("adaptive_avg_pool2d", x)
    items = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    size = x.data.shape[2:]
    if len(items) != 2 or not all(i is None or (isinstance(i, numbers.Integral) and not isinstance(i, bool)
                                                and i >= 1) for i in items):
        raise ValueError(f"adaptive_avg_pool2d: output_size must be a positive integer, None or a pair of them, "
                         f"got {output_size!r}")
    out = tuple(s if i is None else int(i) for i, s in zip(items, size))
    if min(size) < 1:
        raise ShapeError(f"adaptive_avg_pool2d: input of shape {x.data.shape} has an empty spatial axis")
    dtype = x.data.dtype
    bins = tuple(_adaptive_bins(s, o).astype(dtype) for s, o in zip(size, out))
    return node(ADAPTIVE_AVG_POOL2D, (x,), {"bins": bins})


def _adaptive_forward(X: np.ndarray, bins: tuple[np.ndarray, np.ndarray]) -> tuple:
    Ph, Pw = bins
    return np.einsum("ih,nchw,jw->ncij", Ph, X, Pw, optimize=True), bins


ADAPTIVE_AVG_POOL2D = deftensorop(
    "adaptive_avg_pool2d", _adaptive_forward,
    lambda g, res, needs: (np.einsum("ih,ncij,jw->nchw", res[0], g, res[1], optimize=True),),
    lambda res, t: _adaptive_forward(t[0], res)[0],
    "the mean over each of a fixed number of bins per axis: P_h x P_w^T", checks_output=True, checks_grad=True)


def global_avg_pool2d(x: Any) -> Tensor:
    """The mean over each channel's whole image: (N, C, H, W) -> (N, C) (the ``mean`` node over axes 2, 3).

    >>> global_avg_pool2d(Tensor(np.arange(8.0).reshape(1, 2, 2, 2))).data.tolist()
    [[1.5, 5.5]]
    """
    return _image("global_avg_pool2d", x).mean(axis=(2, 3))


def batch_norm(x: Any, gamma: Tensor, beta: Tensor, running_mean: np.ndarray | None = None,
               running_var: np.ndarray | None = None, training: bool = True, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Batch normalisation of (N, C), (N, C, L) or (N, C, H, W) data per channel C, one node with a closed-form vjp.

    In training: mu, var = mean and biased variance over the batch (and H, W), xhat = (x - mu) / sqrt(var + eps),
    y = gamma xhat + beta; ``running_mean`` and ``running_var`` (arrays of shape (C,), updated IN PLACE) move
    towards the batch's statistics: r = (1 - momentum) r + momentum s, where the variance fed to the running
    estimate is the UNBIASED one, var m / (m - 1) with m = N (or N H W) values per channel, as PyTorch does.
    In evaluation the running statistics replace mu and var, so the output no longer depends on the batch.

    The training vjp, with dxhat = g gamma and sums over the m values of a channel:
    dx = (m dxhat - sum(dxhat) - xhat sum(dxhat xhat)) / (m sqrt(var + eps)); dgamma = sum(g xhat),
    dbeta = sum(g). In evaluation dx = g gamma / sqrt(running_var + eps).

    >>> x = Tensor([[1.0], [3.0]]); gamma = Tensor([1.0]); beta = Tensor([0.0])
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> y = batch_norm(x, gamma, beta, rm, rv, training=True, eps=0.0); y.data.ravel().tolist()
    [-1.0, 1.0]
    >>> rm.tolist(), rv.tolist()     # 0.9 * 0 + 0.1 * 2 and 0.9 * 1 + 0.1 * (unbiased variance 2)
    ([0.2], [1.1])
    """
    G = gamma.data
    x = x if isinstance(x, Tensor) else as_tensor(np.asarray(x, dtype=G.dtype))
    X = x.data
    if X.ndim not in (2, 3, 4):
        raise ShapeError(f"batch_norm: input must have shape (N, C), (N, C, L) or (N, C, H, W), got {X.shape}")
    ch = X.shape[1]
    for name, arr in (("gamma", G), ("beta", beta.data), ("running_mean", running_mean),
                      ("running_var", running_var)):
        if arr is not None and np.shape(arr) != (ch,):
            raise ShapeError(f"batch_norm: {name} of shape {np.shape(arr)} does not fit input of shape {X.shape} "
                             f"(needs ({ch},))")
    if X.dtype != G.dtype:
        raise TypeError(f"batch_norm: input dtype {X.dtype} differs from gamma dtype {G.dtype}")
    axes = _channel_axes(X)
    m = X.size // ch
    if training:
        if m < 2:
            raise ShapeError(f"batch_norm: training needs more than one value per channel, got input of shape "
                             f"{X.shape}")
        # The running statistics move towards the batch's mean and its unbiased variance.
        mu = X.mean(axis=axes)
        var = X.var(axis=axes)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mu
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += momentum * var * (m / (m - 1))
        stats = None
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
        stats = (np.asarray(running_mean, dtype=X.dtype).copy(), np.asarray(running_var, dtype=X.dtype).copy())
    return node(BATCH_NORM, (x, gamma, beta), {"stats": stats, "eps": eps})


def _channel_axes(X: np.ndarray) -> tuple[int, ...]:
    """The axes batch norm averages over: all but the channel axis 1 (N; N, L; or N, H, W)."""
    return (0,) + tuple(range(2, X.ndim))


def _batch_norm_forward(X: np.ndarray, G: np.ndarray, B: np.ndarray, stats: tuple | None, eps: float) -> tuple:
    axes = _channel_axes(X)
    bshape = tuple(n if k == 1 else 1 for k, n in enumerate(X.shape))
    if stats is None:  # training: the batch's own statistics, so that they are differentiated too
        xc = X - X.mean(axis=axes, keepdims=True)
        var = (xc * xc).mean(axis=axes, keepdims=True)
    else:
        xc = X - stats[0].reshape(bshape)
        var = stats[1].reshape(bshape)
    inv_std = (1.0 / np.sqrt(var + X.dtype.type(eps))).astype(X.dtype, copy=False)
    xhat = xc * inv_std
    out = xhat * G.reshape(bshape) + B.reshape(bshape)
    return out, (xhat, inv_std, G.reshape(bshape), axes, X.size // X.shape[1], stats is None)


def _through_statistics(v: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The Jacobian of xhat = (x - mean) / sqrt(var + eps) (statistics over ``axes``, so they move with x)
    applied to v: inv_std (v - mean(v) - xhat mean(xhat v)). It is symmetric, so one formula is both the vjp
    (v = upstream dxhat) and the jvp (v = tangent dx)."""
    return inv_std * (v - v.mean(axis=axes, keepdims=True) - xhat * (xhat * v).mean(axis=axes, keepdims=True))


def _batch_norm_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    xhat, inv_std, G, axes, m, training = res
    gx = None
    if needs[0]:
        dxhat = g * G
        gx = _through_statistics(dxhat, xhat, inv_std, axes) if training else dxhat * inv_std
    gg = (g * xhat).sum(axis=axes) if needs[1] else None
    gb = g.sum(axis=axes) if needs[2] else None
    return gx, gg, gb


def _batch_norm_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    # In training dxhat = inv_std (dx - mean(dx) - xhat mean(xhat dx)) (the statistics move with x); then
    # dy = gamma dxhat + dgamma xhat + dbeta.
    xhat, inv_std, G, axes, m, training = res
    dx, dg, db = t
    bshape = G.shape
    dxhat = _through_statistics(dx, xhat, inv_std, axes) if training else dx * inv_std
    return G * dxhat + dg.reshape(bshape) * xhat + db.reshape(bshape)


BATCH_NORM = deftensorop("batch_norm", _batch_norm_forward, _batch_norm_vjp, _batch_norm_jvp,
                         "per-channel normalisation, then gamma * xhat + beta", checks_output=True)


# ---------------------------------------------------------------------------------------------------------
# Embedding lookup: rows of a weight matrix picked by integer ids
# ---------------------------------------------------------------------------------------------------------

__all__ += ["embedding"]


def embedding(indices: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``indices`` of any shape: out[..., :] =
    weight[indices[...], :]. One node; its vjp adds each g row into the row it was read from, except
    ``padding_idx``, which receives no gradient (PyTorch's rule: a padding token's vector stays where it is).

    >>> W = Tensor(np.arange(6.0).reshape(3, 2)); y = embedding([[0, 2, 2]], W, padding_idx=0)
    >>> y.data.tolist()
    [[[0.0, 1.0], [4.0, 5.0], [4.0, 5.0]]]
    >>> y.sum().backward(); W.grad.tolist()
    [[0.0, 0.0], [0.0, 0.0], [2.0, 2.0]]
    """
    if not isinstance(weight, Tensor) or weight.data.ndim != 2:
        raise ShapeError(f"embedding: weight must be a 2-D Tensor (num_embeddings, dim), got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu" and not (idx.size == 0 and idx.dtype.kind == "f"):
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    n = weight.data.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].ravel()[0]
        raise IndexError(f"embedding: index {bad} is out of range for {n} embeddings (0 to {n - 1})")
    return node(EMBEDDING, (weight,), {"indices": idx.astype(np.intp), "padding_idx": padding_idx})


def _embedding_forward(W: np.ndarray, indices: np.ndarray, padding_idx: int | None) -> tuple:
    keep = None if padding_idx is None else (indices != padding_idx)[..., None]
    return W[indices], (W.shape, W.dtype, indices, keep)


def _embedding_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, dtype, indices, keep = res
    dW = np.zeros(shape, dtype=dtype)
    # NOTE: an id may occur many times; np.add.at accumulates where dW[indices] += g would keep one of them.
    np.add.at(dW, indices, g if keep is None else g * keep)
    return (dW,)


def _embedding_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    shape, dtype, indices, keep = res
    dy = t[0][indices]
    return dy if keep is None else dy * keep


EMBEDDING = deftensorop("embedding", _embedding_forward, _embedding_vjp, _embedding_jvp,
                        "rows of the weight picked by integer ids; padding_idx takes no gradient")


# ---------------------------------------------------------------------------------------------------------
# Normalisation over chosen axes (LayerNorm, GroupNorm): one node, the batch-norm training formulas per example
# ---------------------------------------------------------------------------------------------------------

__all__ += ["normalize"]


def normalize(x: Any, gamma: Tensor, beta: Tensor, axes: tuple[int, ...], eps: float = 1e-5) -> Tensor:
    """gamma xhat + beta, xhat = (x - mean) / sqrt(var + eps) with the mean and biased variance over ``axes``;
    gamma and beta broadcast against x. One node; its vjp is batch norm's training one, dx = inv_std (dxhat -
    mean(dxhat) - xhat mean(dxhat xhat)) with dxhat = g gamma, and dgamma, dbeta sum g xhat and g over the
    axes gamma is broadcast along. LayerNorm takes the last axes, GroupNorm each example's channel group.

    >>> y = normalize(Tensor([[1.0, 3.0], [0.0, 4.0]]), Tensor([1.0, 1.0]), Tensor([0.0, 0.0]), axes=(1,))
    >>> y.data.round(4).tolist()     # each row has mean 0 and variance 1 (up to eps)
    [[-1.0, 1.0], [-1.0, 1.0]]
    """
    positive_eps("normalize", eps)
    x = x if isinstance(x, Tensor) else as_tensor(np.asarray(x, dtype=gamma.data.dtype))
    X = x.data
    if not axes or any(not -X.ndim <= a < X.ndim for a in axes):
        raise ShapeError(f"normalize: axes {axes!r} do not fit input of shape {X.shape}")
    axes = tuple(sorted(a % X.ndim for a in axes))
    for name, t in (("gamma", gamma), ("beta", beta)):
        try:
            np.broadcast_shapes(t.data.shape, X.shape)
        except ValueError:
            raise ShapeError(f"normalize: {name} of shape {t.data.shape} does not broadcast against input of shape "
                             f"{X.shape}") from None
    return node(NORMALIZE, (x, gamma, beta), {"axes": axes, "eps": float(eps)})


def positive_eps(name: str, eps: float) -> float:
    """``eps`` as a float, or a ValueError naming ``name``: a normalisation divides by sqrt(var + eps), and a
    constant input has var = 0.

    >>> positive_eps("LayerNorm", 1e-5)
    1e-05
    """
    if not (isinstance(eps, (int, float)) and eps > 0.0 and np.isfinite(eps)):
        raise ValueError(f"{name}: eps must be a number > 0 (it keeps sqrt(var + eps) away from 0), got {eps!r}")
    return float(eps)


def _sum_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` summed over the axes along which an array of ``shape`` was broadcast to a.shape."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + k for k, n in enumerate(shape) if n == 1 and a.shape[lead + k] != 1)
    return a.sum(axis=axes, keepdims=True).reshape(shape) if axes else a


def _normalize_forward(X: np.ndarray, G: np.ndarray, B: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple:
    xc = X - X.mean(axis=axes, keepdims=True)
    var = (xc * xc).mean(axis=axes, keepdims=True)
    inv_std = (1.0 / np.sqrt(var + X.dtype.type(eps))).astype(X.dtype, copy=False)
    xhat = xc * inv_std
    return xhat * G + B, (xhat, inv_std, G, B.shape, axes)


def _normalize_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    xhat, inv_std, G, b_shape, axes = res
    gx = _through_statistics(g * G, xhat, inv_std, axes) if needs[0] else None
    gg = _sum_to(g * xhat, G.shape) if needs[1] else None
    gb = _sum_to(g, b_shape) if needs[2] else None
    return gx, gg, gb


def _normalize_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    xhat, inv_std, G, b_shape, axes = res
    dx, dg, db = t
    return G * _through_statistics(dx, xhat, inv_std, axes) + dg * xhat + db


NORMALIZE = deftensorop("normalize", _normalize_forward, _normalize_vjp, _normalize_jvp,
                        "normalisation over chosen axes of each example, then gamma * xhat + beta")
