"""Naive NumPy pooling (NHWC / NLC), the oracle and baseline of fastnn.kernels.pool.

Pooling through im2col as in "Deep Learning from Scratch" (common/layers.py, Pooling): unfold
every window into a column (Python loops over the window offsets), reduce the column with
np.max / np.mean, and for the backward fold the gradient columns back with col2im. Written for
clarity, not speed. Any float dtype works (tests pass float64 for tighter checks); no `out=`.

Keras semantics, built independently of fastnn.kernels._geometry so that the oracle checks it:
"same" gives out = ceil(n / s) with the extra padded cell at the end; max pooling never picks a
padded cell; average pooling divides by the number of real cells in each window. Ties pick the
first maximum in window order (row-major over the window); a NaN in a window gives NaN and its
argmax is the first NaN, as np.max / np.argmax do.
"""
from __future__ import annotations

import numpy as np


def _pads(n, k, s, padding):
    """Keras's (before, after, out) along one axis for "valid" / "same" (TF rule)."""
    if padding == "valid":
        return 0, 0, (n - k) // s + 1
    out = -(-n // s)
    total = max(0, (out - 1) * s + k - n)
    return total // 2, total - total // 2, out


def _pair(v, rank):
    return (v,) * rank if np.isscalar(v) else tuple(v)


def _im2col(img, kh, kw, sh, sw, oh, ow):
    """Padded (N, Hp, Wp, C) -> col (N*OH*OW, KH*KW, C): one row per window, in window order."""
    n, _, _, c = img.shape
    col = np.empty((n, oh, ow, kh, kw, c), img.dtype)
    for y in range(kh):
        for x in range(kw):
            col[:, :, :, y, x, :] = img[:, y:y + sh * oh:sh, x:x + sw * ow:sw, :]
    return col.reshape(n * oh * ow, kh * kw, c)


def _col2im(col, shape, kh, kw, sh, sw, oh, ow):
    """Sum window columns (N*OH*OW, KH*KW, C) back into a padded image of `shape`."""
    n, _, _, c = shape
    col = col.reshape(n, oh, ow, kh, kw, c)
    img = np.zeros(shape, col.dtype)
    for y in range(kh):
        for x in range(kw):
            img[:, y:y + sh * oh:sh, x:x + sw * ow:sw, :] += col[:, :, :, y, x, :]
    return img


def _windows(x4, pool_size, strides, padding):
    """Columns of x (N, H, W, C), of the cell indices (-1 on pads) and the output shape."""
    n, h, w, c = x4.shape
    kh, kw = pool_size
    sh, sw = strides
    pt, pb, oh = _pads(h, kh, sh, padding)
    pl, pr, ow = _pads(w, kw, sw, padding)
    pad = [(0, 0), (pt, pb), (pl, pr), (0, 0)]
    col = _im2col(np.pad(x4, pad), kh, kw, sh, sw, oh, ow)
    index = np.arange(h * w * c).reshape(1, h, w, c)
    icol = _im2col(np.pad(index, pad, constant_values=-1), kh, kw, sh, sw, oh, ow)
    icol = np.broadcast_to(icol.reshape(1, oh * ow, kh * kw, c), (n, oh * ow, kh * kw, c))
    return col, icol.reshape(col.shape), (n, oh, ow, c), (pt, pb, pl, pr)


def _max_pool(x4, pool_size, strides, padding):
    col, icol, y_shape, _ = _windows(x4, pool_size, strides, padding)
    valid = icol >= 0
    y = np.max(col, axis=1, where=valid, initial=-np.inf)
    # first cell (window order) that is the maximum, or the first NaN when there is one
    first = np.argmax(valid & ((col == y[:, None, :]) | np.isnan(col)), axis=1)
    argmax = np.take_along_axis(icol, first[:, None, :], axis=1)[:, 0, :]
    return y.reshape(y_shape).astype(x4.dtype), argmax.reshape(y_shape).astype(np.int32)


def _avg_pool(x4, pool_size, strides, padding):
    col, icol, y_shape, _ = _windows(x4, pool_size, strides, padding)
    count = (icol >= 0).sum(axis=1)
    return (col.sum(axis=1) / count).astype(x4.dtype).reshape(y_shape)


def _avg_backward(dy4, x_shape4, pool_size, strides, padding):
    n, h, w, c = x_shape4
    kh, kw = pool_size
    sh, sw = strides
    ones = np.ones((1, h, w, c), dy4.dtype)
    col1, icol, _, (pt, pb, pl, pr) = _windows(ones, pool_size, strides, padding)
    oh, ow = dy4.shape[1:3]
    count = (icol[: oh * ow] >= 0).sum(axis=1)               # (OH*OW, C), same for every image
    dcol = (dy4.reshape(n, oh * ow, 1, c) / count[None, :, None, :]).astype(dy4.dtype)
    dcol = np.broadcast_to(dcol, (n, oh * ow, kh * kw, c)).reshape(n * oh * ow, kh * kw, c)
    img = _col2im(dcol, (n, h + pt + pb, w + pl + pr, c), kh, kw, sh, sw, oh, ow)
    return img[:, pt:pt + h, pl:pl + w, :]


def _max_backward(dy, argmax, x_shape):
    n = x_shape[0]
    dx = np.zeros((n, int(np.prod(x_shape[1:]))), dy.dtype)
    rows = np.repeat(np.arange(n), argmax[0].size if n else 0)
    np.add.at(dx, (rows, argmax.reshape(-1)), dy.reshape(-1))   # sums where windows overlap
    return dx.reshape(x_shape)


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid"):
    """NHWC max pooling: x (N, H, W, C) -> (y (N, OH, OW, C), argmax int32 into one image's H*W*C)."""
    pool_size = _pair(pool_size, 2)
    strides = pool_size if strides is None else _pair(strides, 2)
    return _max_pool(x, pool_size, strides, padding.lower())


def max_pool2d_backward(dy, argmax, x_shape):
    """Gradient of NHWC max pooling: dy scattered (np.add.at) to argmax -> dx of x_shape."""
    return _max_backward(dy, argmax, tuple(x_shape))


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid"):
    """NHWC average pooling (pads out of the divisor): x (N, H, W, C) -> y (N, OH, OW, C)."""
    pool_size = _pair(pool_size, 2)
    strides = pool_size if strides is None else _pair(strides, 2)
    return _avg_pool(x, pool_size, strides, padding.lower())


def avg_pool2d_backward(dy, x_shape, pool_size=(2, 2), strides=None, padding="valid"):
    """Gradient of NHWC average pooling: dy (N, OH, OW, C) -> dx (N, H, W, C) via col2im."""
    pool_size = _pair(pool_size, 2)
    strides = pool_size if strides is None else _pair(strides, 2)
    return _avg_backward(dy, tuple(x_shape), pool_size, strides, padding.lower())


def max_pool1d(x, pool_size=2, strides=None, padding="valid"):
    """NLC max pooling: x (N, L, C) -> (y (N, OL, C), argmax int32 into one sequence's L*C)."""
    k = _pair(pool_size, 1)[0]
    s = k if strides is None else _pair(strides, 1)[0]
    y, a = _max_pool(x[:, None], (1, k), (1, s), padding.lower())
    return y[:, 0], a[:, 0]


def max_pool1d_backward(dy, argmax, x_shape):
    """Gradient of NLC max pooling -> dx of x_shape (N, L, C)."""
    return _max_backward(dy, argmax, tuple(x_shape))


def avg_pool1d(x, pool_size=2, strides=None, padding="valid"):
    """NLC average pooling: x (N, L, C) -> y (N, OL, C)."""
    k = _pair(pool_size, 1)[0]
    s = k if strides is None else _pair(strides, 1)[0]
    return _avg_pool(x[:, None], (1, k), (1, s), padding.lower())[:, 0]


def avg_pool1d_backward(dy, x_shape, pool_size=2, strides=None, padding="valid"):
    """Gradient of NLC average pooling: dy (N, OL, C) -> dx (N, L, C)."""
    k = _pair(pool_size, 1)[0]
    s = k if strides is None else _pair(strides, 1)[0]
    n, length, c = x_shape
    return _avg_backward(dy[:, None], (n, 1, length, c), (1, k), (1, s), padding.lower())[:, 0]


def global_max_pool2d(x):
    """NHWC global max pooling: x (N, H, W, C) -> (y (N, C), argmax (N, C) int32 into H*W*C)."""
    n, c = x.shape[0], x.shape[-1]
    flat = x.reshape(n, int(np.prod(x.shape[1:-1])), c)
    y = np.max(flat, axis=1)
    first = np.argmax(flat, axis=1)          # first maximum; np.argmax returns the first NaN
    return y, (first * c + np.arange(c)).astype(np.int32)


def global_max_pool2d_backward(dy, argmax, x_shape):
    """Gradient of NHWC global max pooling: dy (N, C) put at argmax -> dx of x_shape."""
    return _max_backward(dy, argmax, tuple(x_shape))


def global_avg_pool2d(x):
    """NHWC global average pooling: x (N, H, W, C) -> y (N, C) (mean taken in float64)."""
    return np.mean(x, axis=tuple(range(1, x.ndim - 1)), dtype=np.float64).astype(x.dtype)


def global_avg_pool2d_backward(dy, x_shape):
    """Gradient of NHWC global average pooling: dy (N, C) -> dx = dy / (H*W) of x_shape."""
    x_shape = tuple(x_shape)
    cells = int(np.prod(x_shape[1:-1]))
    scaled = (dy / cells).astype(dy.dtype)
    return np.broadcast_to(scaled.reshape(x_shape[0], *([1] * (len(x_shape) - 2)), x_shape[-1]),
                           x_shape).copy()


global_max_pool1d = global_max_pool2d
global_max_pool1d_backward = global_max_pool2d_backward
global_avg_pool1d = global_avg_pool2d
global_avg_pool1d_backward = global_avg_pool2d_backward
