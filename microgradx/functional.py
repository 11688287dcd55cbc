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

from .tensor import ShapeError, Tensor, as_tensor, deftensorop, node

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
    parents = (x, weight) if bias is None else (x, weight, bias)
    return node(CONV2D, parents, {"stride": (sh, sw), "padding": (ph, pw)})


def _conv2d_forward(X: np.ndarray, W: np.ndarray, *bias: np.ndarray, stride: tuple[int, int],
                    padding: tuple[int, int]) -> tuple:
    (sh, sw), (ph, pw) = stride, padding
    o, c, kh, kw = W.shape
    n, _, h, w = X.shape
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
    if bias:
        out2 += bias[0][:, None]
    out = np.ascontiguousarray(out2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3))
    return out, (X, W, len(bias), cols, padded.shape, stride, padding, ho, wo)


def _conv2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    X, W, nb, cols, padded_shape, (sh, sw), (ph, pw), ho, wo = res
    o, c, kh, kw = W.shape
    n, _, h, w = X.shape
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * ho * wo)
    gx = gW = None
    if needs[0]:
        dcols = (W.reshape(o, -1).T @ g2).reshape(c, kh, kw, n, ho, wo)
        dpad = _fold(padded_shape, X.dtype, kh, kw, sh, sw, ho, wo, lambda i, j: dcols[:, i, j])
        gx = np.ascontiguousarray(dpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))
    if needs[1]:
        gW = (g2 @ cols.T).reshape(W.shape)
    if not nb:
        return gx, gW
    return gx, gW, (g2.sum(axis=1) if needs[2] else None)


def _conv2d_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    # Bilinear in (x, W), plus the bias: d(x * W + b) = dx * W + x * dW + db.
    X, W, nb, _, _, stride, padding, _, _ = res
    out = _conv2d_forward(t[0], W, stride=stride, padding=padding)[0]
    out += _conv2d_forward(X, t[1], *t[2:], stride=stride, padding=padding)[0]
    return out


CONV2D = deftensorop("conv2d", _conv2d_forward, _conv2d_vjp, _conv2d_jvp,
                     "2-D cross-correlation, NCHW, by im2col and one matrix product", checks_output=True)


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
    return node(MAX_POOL2D, (x,), {"kernel": (kh, kw), "stride": (sh, sw)})


def _max_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple:
    (kh, kw), (sh, sw) = kernel, stride
    flat = _windows(X, kh, kw, sh, sw)
    n, c, ho, wo = flat.shape[:4]
    flat = flat.reshape(n, c, ho, wo, kh * kw)
    arg = flat.argmax(axis=-1)[..., None]  # argmax returns the first maximum: the tie rule above
    return np.take_along_axis(flat, arg, axis=-1)[..., 0], (X.shape, X.dtype, arg, kernel, stride)


def _max_pool2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, dtype, arg, (kh, kw), (sh, sw) = res
    n, c, ho, wo = arg.shape[:4]
    dw = np.zeros((n, c, ho, wo, kh * kw), dtype=dtype)
    np.put_along_axis(dw, arg, g[..., None], axis=-1)
    dw = dw.reshape(n, c, ho, wo, kh, kw)
    return (_fold(shape, dtype, kh, kw, sh, sw, ho, wo, lambda i, j: dw[..., i, j]),)


def _max_pool2d_jvp(res: tuple, t: Sequence[np.ndarray]) -> np.ndarray:
    _, _, arg, (kh, kw), (sh, sw) = res
    win = _windows(t[0], kh, kw, sh, sw)
    return np.take_along_axis(win.reshape(*win.shape[:4], kh * kw), arg, axis=-1)[..., 0]


MAX_POOL2D = deftensorop("max_pool2d", _max_pool2d_forward, _max_pool2d_vjp, _max_pool2d_jvp,
                         "the largest entry of each window; a tie goes to the first, as PyTorch's CPU kernel")


def avg_pool2d(x: Any, k: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> Tensor:
    """The mean of each k x k window (stride defaults to k; no padding; trailing rows and columns that do not
    fill a window are dropped). Each entry of a window gets g / (kh kw).

    >>> x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4)); avg_pool2d(x, 2).data[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    x, kh, kw, sh, sw = _pool_args("avg_pool2d", x, k, stride)
    return node(AVG_POOL2D, (x,), {"kernel": (kh, kw), "stride": (sh, sw)})


def _avg_pool2d_forward(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple:
    (kh, kw), (sh, sw) = kernel, stride
    out = _windows(X, kh, kw, sh, sw).mean(axis=(-2, -1), dtype=X.dtype)
    return out, (X.shape, X.dtype, kernel, stride, out.shape[2:])


def _avg_pool2d_vjp(g: np.ndarray, res: tuple, needs: tuple[bool, ...]) -> tuple:
    shape, dtype, (kh, kw), (sh, sw), (ho, wo) = res
    gs = g * dtype.type(1.0 / (kh * kw))  # each entry of a window gets g / (kh kw)
    return (_fold(shape, dtype, kh, kw, sh, sw, ho, wo, lambda i, j: gs),)


AVG_POOL2D = deftensorop("avg_pool2d", _avg_pool2d_forward, _avg_pool2d_vjp,
                         lambda res, t: _avg_pool2d_forward(t[0], res[2], res[3])[0],
                         "the mean of each window")


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
