"""Convolution, pooling and batch normalisation on Tensors: graph nodes with hand-written, vectorised vjps.

Like ``matmul`` these are tensor-only ops (no op-table row): each is one node whose backward is written out
here; images are NCHW arrays (batch, channels, height, width).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .tensor import ShapeError, Tensor, _nonfinite, _result, as_tensor

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "batch_norm", "conv_output_size"]


def _pair(name: str, what: str, v: Any, least: int) -> tuple[int, int]:
    items = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(items) != 2 or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= least
                                  for i in items):
        raise ValueError(f"{name}: {what} must be an integer >= {least} or a pair of them, got {v!r}")
    return int(items[0]), int(items[1])


def _image(name: str, x: Any, dtype: Any = None) -> Tensor:
    t = x if isinstance(x, Tensor) else as_tensor(np.asarray(x, dtype=dtype))
    if t.data.ndim != 4:
        raise ShapeError(f"{name}: input must have shape (N, C, H, W), got {t.data.shape}")
    return t


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length along one axis: floor((size + 2 padding - kernel) / stride) + 1 (trailing rows dropped).

    >>> conv_output_size(28, 3, 1, 1), conv_output_size(8, 3, 2, 0), conv_output_size(7, 2, 2)
    (28, 3, 3)
    """
    return (size + 2 * padding - kernel) // stride + 1


def _windows(X: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """A view (N, C, Ho, Wo, kh, kw) of every kh x kw window at stride (sh, sw): no copy is made."""
    return sliding_window_view(X, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def _fold(shape: tuple[int, ...], dtype: Any, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int,
          piece: Any) -> np.ndarray:
    """col2im: an array of ``shape`` (windows over its last two axes) to which each kernel position (i, j)
    adds ``piece(i, j)`` (..., ho, wo) at rows i, i + sh, ... and columns j, j + sw, ...

    One strided slice-add per kernel position (kh * kw NumPy calls, each over the whole batch), which also
    accumulates correctly where windows overlap (stride < kernel).
    """
    dx = np.zeros(shape, dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            dx[..., i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += piece(i, j)
    return dx


def conv2d(x: Any, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] = 0) -> Tensor:
    """2-D cross-correlation (what deep learning calls convolution), NCHW, one graph node.

    x: (N, C, H, W); weight: (O, C, kh, kw); bias: (O,). out[n, o, p, q] = bias[o] + sum over c, i, j of
    weight[o, c, i, j] * xpad[n, c, p*sh + i, q*sw + j], with ``padding`` zeros on every side. The windows
    are unrolled (im2col) into a matrix so that the forward pass and both weight and input gradients are
    single matrix products; the input gradient is folded back (col2im) one kernel position at a time.

    >>> x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=False)
    >>> w = Tensor(np.ones((1, 1, 2, 2)))
    >>> y = conv2d(x, w, stride=2); y.data[0, 0].tolist()
    [[10.0, 18.0], [42.0, 50.0]]
    >>> y.sum().backward(); w.grad[0, 0].tolist()
    [[20.0, 24.0], [36.0, 40.0]]
    """
    W = weight.data
    x = _image("conv2d", x, W.dtype)
    X = x.data
    sh, sw = _pair("conv2d", "stride", stride, 1)
    ph, pw = _pair("conv2d", "padding", padding, 0)
    if W.ndim != 4 or W.shape[1] != X.shape[1]:
        raise ShapeError(f"conv2d: weight of shape {W.shape} does not fit input of shape {X.shape} "
                         f"(needs (out_channels, {X.shape[1]}, kh, kw))")
    if X.dtype != W.dtype:
        raise TypeError(f"conv2d: input dtype {X.dtype} differs from weight dtype {W.dtype}; convert the input "
                        "(float32 data is never silently upcast)")
    o, c, kh, kw = W.shape
    n, _, h, w = X.shape
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ShapeError(f"conv2d: a {kh}x{kw} kernel does not fit input of shape {X.shape} with padding "
                         f"{(ph, pw)}")
    if bias is not None and bias.data.shape != (o,):
        raise ShapeError(f"conv2d: bias of shape {bias.data.shape} does not fit weight of shape {W.shape} "
                         f"(needs ({o},))")
    ho, wo = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    # NOTE: the columns are laid out (c, i, j) x (n, p, q), channels first: each kernel position then copies
    # whole image rows, about five times faster than gathering (n, p, q) x (c, i, j) windows from NCHW.
    padded = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=X.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = X.transpose(1, 0, 2, 3)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=X.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = padded[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    cols = cols.reshape(c * kh * kw, n * ho * wo)
    Wm = W.reshape(o, -1)
    out2 = Wm @ cols                       # (o, n * ho * wo)
    if bias is not None:
        out2 += bias.data[:, None]
    if not np.isfinite(out2).all():
        raise _nonfinite("conv2d", (x, weight), out2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3), "gives")
    out = np.ascontiguousarray(out2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3))

    def back(g: np.ndarray) -> tuple:
        g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * ho * wo)
        gx = gW = None
        if x.requires_grad:
            dcols = (Wm.T @ g2).reshape(c, kh, kw, n, ho, wo)
            dpad = _fold(padded.shape, X.dtype, kh, kw, sh, sw, ho, wo, lambda i, j: dcols[:, i, j])
            gx = np.ascontiguousarray(dpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))
        if weight.requires_grad:
            gW = (g2 @ cols.T).reshape(W.shape)
        if bias is None:
            return gx, gW
        return gx, gW, (g2.sum(axis=1) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return _result(out, parents, back, "conv2d")


def _pool_args(name: str, x: Any, k: Any, stride: Any) -> tuple[Tensor, int, int, int, int]:
    x = _image(name, x)
    kh, kw = _pair(name, "kernel size", k, 1)
    sh, sw = (kh, kw) if stride is None else _pair(name, "stride", stride, 1)
    h, w = x.data.shape[2:]
    if h < kh or w < kw:
        raise ShapeError(f"{name}: a {kh}x{kw} window does not fit input of shape {x.data.shape}")
    return x, kh, kw, sh, sw


def max_pool2d(x: Any, k: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> Tensor:
    """The largest entry of each k x k window (stride defaults to k; trailing rows and columns that do not
    fill a window are dropped).

    On a tie the whole gradient goes to the FIRST maximal entry of the window in row-major order (the
    top-most, then left-most), as PyTorch's CPU kernel does; overlapping windows (stride < k) add up.

    >>> x = Tensor([[[[1.0, 5.0], [5.0, 2.0]]]]); y = max_pool2d(x, 2); y.backward(np.ones((1, 1, 1, 1)))
    >>> y.data.ravel().tolist(), x.grad[0, 0].tolist()
    ([5.0], [[0.0, 1.0], [0.0, 0.0]])
    """
    x, kh, kw, sh, sw = _pool_args("max_pool2d", x, k, stride)
    X = x.data
    win = _windows(X, kh, kw, sh, sw)
    n, c, ho, wo = win.shape[:4]
    flat = win.reshape(n, c, ho, wo, kh * kw)
    arg = flat.argmax(axis=-1)  # argmax returns the first maximum: the tie rule above
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def back(g: np.ndarray) -> tuple:
        dw = np.zeros((n, c, ho, wo, kh * kw), dtype=X.dtype)
        np.put_along_axis(dw, arg[..., None], g[..., None], axis=-1)
        dw = dw.reshape(n, c, ho, wo, kh, kw)
        return (_fold(X.shape, X.dtype, kh, kw, sh, sw, ho, wo, lambda i, j: dw[..., i, j]),)
    return _result(out, (x,), back, "max_pool2d")


def avg_pool2d(x: Any, k: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> Tensor:
    """The mean of each k x k window (stride defaults to k; no padding; trailing rows and columns that do not
    fill a window are dropped). Each entry of a window gets g / (kh kw).

    >>> x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4)); avg_pool2d(x, 2).data[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    x, kh, kw, sh, sw = _pool_args("avg_pool2d", x, k, stride)
    X = x.data
    win = _windows(X, kh, kw, sh, sw)
    out = win.mean(axis=(-2, -1), dtype=X.dtype)
    ho, wo = out.shape[2:]
    share = X.dtype.type(1.0 / (kh * kw))

    def back(g: np.ndarray) -> tuple:
        gs = g * share
        return (_fold(X.shape, X.dtype, kh, kw, sh, sw, ho, wo, lambda i, j: gs),)
    return _result(out, (x,), back, "avg_pool2d")


def global_avg_pool2d(x: Any) -> Tensor:
    """The mean over each channel's whole image: (N, C, H, W) -> (N, C) (the ``mean`` node over axes 2, 3).

    >>> global_avg_pool2d(Tensor(np.arange(8.0).reshape(1, 2, 2, 2))).data.tolist()
    [[1.5, 5.5]]
    """
    return _image("global_avg_pool2d", x).mean(axis=(2, 3))


def batch_norm(x: Any, gamma: Tensor, beta: Tensor, running_mean: np.ndarray | None = None,
               running_var: np.ndarray | None = None, training: bool = True, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Batch normalisation of (N, C) or (N, C, H, W) data per channel C, one node with a closed-form vjp.

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
    if X.ndim not in (2, 4):
        raise ShapeError(f"batch_norm: input must have shape (N, C) or (N, C, H, W), got {X.shape}")
    ch = X.shape[1]
    for name, arr in (("gamma", G), ("beta", beta.data), ("running_mean", running_mean),
                      ("running_var", running_var)):
        if arr is not None and np.shape(arr) != (ch,):
            raise ShapeError(f"batch_norm: {name} of shape {np.shape(arr)} does not fit input of shape {X.shape} "
                             f"(needs ({ch},))")
    if X.dtype != G.dtype:
        raise TypeError(f"batch_norm: input dtype {X.dtype} differs from gamma dtype {G.dtype}")
    axes = (0,) if X.ndim == 2 else (0, 2, 3)
    bshape = (1, ch) if X.ndim == 2 else (1, ch, 1, 1)
    m = X.size // ch
    dt = X.dtype.type
    if training:
        if m < 2:
            raise ShapeError(f"batch_norm: training needs more than one value per channel, got input of shape "
                             f"{X.shape}")
        mu = X.mean(axis=axes, keepdims=True)
        xc = X - mu
        var = (xc * xc).mean(axis=axes, keepdims=True)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mu.reshape(ch)
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += momentum * var.reshape(ch) * (m / (m - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
        xc = X - np.asarray(running_mean, dtype=X.dtype).reshape(bshape)
        var = np.asarray(running_var, dtype=X.dtype).reshape(bshape)
    inv_std = (1.0 / np.sqrt(var + dt(eps))).astype(X.dtype, copy=False)
    xhat = xc * inv_std
    out = xhat * G.reshape(bshape) + beta.data.reshape(bshape)
    if not np.isfinite(out).all():
        raise _nonfinite("batch_norm", (x, gamma, beta), out, "gives")

    def back(g: np.ndarray) -> tuple:
        gx = None
        if x.requires_grad:
            dxhat = g * G.reshape(bshape)
            if training:
                s1 = dxhat.sum(axis=axes, keepdims=True)
                s2 = (dxhat * xhat).sum(axis=axes, keepdims=True)
                gx = (dxhat - (s1 + xhat * s2) / dt(m)) * inv_std
            else:
                gx = dxhat * inv_std
        gg = (g * xhat).sum(axis=axes) if gamma.requires_grad else None
        gb = g.sum(axis=axes) if beta.requires_grad else None
        return gx, gg, gb
    return _result(out, (x, gamma, beta), back, "batch_norm")
