"""Naive NumPy convolution (NHWC, kernel (KH, KW, C, F) as Keras): test oracle and baseline.

im2col and col2im loop in Python over the filter offsets (kh, kw), as `common/util.py` of
"Deep Learning from Scratch" does, adapted to channels_last and Keras's kernel layout: the col
matrix is (N*OH*OW, KH*KW*C) in (kh, kw, c) order, so `col @ w.reshape(-1, F)` is the NHWC
output. Works in any float dtype (the tests run it in float64 for numerical gradients).
Same signatures as fastnn.kernels.conv, without the out= buffers.

The geometry is worked out here, from Keras's rules, independently of fastnn.kernels._geometry
so that the oracle checks it: a window of size k and dilation d spans (k - 1) d + 1 cells;
"same" gives out = ceil(n / s) with total = max(0, (out - 1) s + span - n) padded cells, the
odd one after (bottom/right); "causal" pads span - 1 cells before; explicit (before, after)
pairs are taken as they are. Arguments are assumed valid (fastnn.kernels checks them).
"""
from __future__ import annotations

import numpy as np


def _tuple(v, n):
    """An int or a length-n sequence, as a tuple of n ints."""
    return (int(v),) * n if np.ndim(v) == 0 else tuple(int(a) for a in v)


def _pads(n, k, s, d, padding):
    """(pad before, pad after, output size) along one spatial axis."""
    span = (k - 1) * d + 1
    if padding == "valid":
        before = after = 0
    elif padding == "same":
        out = -(-n // s)
        total = max(0, (out - 1) * s + span - n)
        before, after = total // 2, total - total // 2
    elif padding == "causal":
        before, after = span - 1, 0
    else:
        before, after = padding
    if n + before + after < span:
        raise ValueError(f"the window spans {span} cells, more than the {n + before + after} of the padded input")
    return before, after, (n + before + after - span) // s + 1


def _pads_2d(x, w, strides, padding, dilation):
    strides, dilation = _tuple(strides, 2), _tuple(dilation, 2)
    pads = (padding, padding) if isinstance(padding, str) else padding
    geo = [_pads(n, k, s, d, p) for n, k, s, d, p in zip(x.shape[1:3], w.shape[:2], strides, dilation, pads)]
    return strides, dilation, geo


def im2col(x, kh_size, kw_size, strides, dilation, geo):
    """(N, H, W, C) -> col (N*OH*OW, KH*KW*C), zero padding, columns in (kh, kw, c) order."""
    n, _, _, c = x.shape
    (pt, pb, oh), (pl, pr, ow) = geo
    sh, sw = strides
    dh, dw = dilation
    img = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
    col = np.zeros((n, oh, ow, kh_size, kw_size, c), x.dtype)
    for ky in range(kh_size):
        y0 = ky * dh
        y_max = y0 + sh * oh
        for kx in range(kw_size):
            x0 = kx * dw
            x_max = x0 + sw * ow
            col[:, :, :, ky, kx, :] = img[:, y0:y_max:sh, x0:x_max:sw, :]
    return col.reshape(n * oh * ow, -1)


def col2im(col, x_shape, kh_size, kw_size, strides, dilation, geo):
    """Adjoint of im2col: scatter-add col (N*OH*OW, KH*KW*C) back into an (N, H, W, C) image."""
    n, h, w, c = x_shape
    (pt, pb, oh), (pl, pr, ow) = geo
    sh, sw = strides
    dh, dw = dilation
    col = col.reshape(n, oh, ow, kh_size, kw_size, c)
    img = np.zeros((n, h + pt + pb, w + pl + pr, c), col.dtype)
    for ky in range(kh_size):
        y0 = ky * dh
        y_max = y0 + sh * oh
        for kx in range(kw_size):
            x0 = kx * dw
            x_max = x0 + sw * ow
            img[:, y0:y_max:sh, x0:x_max:sw, :] += col[:, :, :, ky, kx, :]
    return img[:, pt:pt + h, pl:pl + w, :]


def conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, activation="linear",
           affine=None, pool=None, **act_params):
    """2-D convolution (cross-correlation) of NHWC x with w (KH, KW, C, F) -> (N, OH, OW, F).

    The kernel's epilogues, one after the other: affine (center, scale, shift) -> y = (y -
    center)*scale + shift, then the activation, then pool=(2, 2) a 2x2 stride-2 max pool.
    """
    strides, dilation, geo = _pads_2d(x, w, strides, padding, dilation)
    kh, kw, _, f = w.shape
    col = im2col(x, kh, kw, strides, dilation, geo)
    y = col @ w.reshape(-1, f)
    if b is not None:
        y = y + b
    y = y.reshape(x.shape[0], geo[0][2], geo[1][2], f)
    if affine is not None:
        center, scale, shift = (np.asarray(a, np.float64) for a in affine)
        y = (y - center) * scale + shift
    if activation != "linear" or act_params:
        from fastnn.reference import activation as A

        y = A.apply(activation, y, **act_params)
    if pool is not None:
        from fastnn.reference import pool as P

        y = P.max_pool2d(y, (2, 2))[0]
    return y


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *, need_dx=True):
    """Gradients of conv2d w.r.t. x (N,H,W,C), w (KH,KW,C,F) and b (F,) given dy (N,OH,OW,F)."""
    strides, dilation, geo = _pads_2d(x, w, strides, padding, dilation)
    kh, kw, _, f = w.shape
    dy2 = dy.reshape(-1, f)
    col = im2col(x, kh, kw, strides, dilation, geo)
    dw = (col.T @ dy2).reshape(w.shape)
    db = dy2.sum(axis=0)
    dx = None
    if need_dx:
        dcol = dy2 @ w.reshape(-1, f).T
        dx = col2im(dcol, x.shape, kh, kw, strides, dilation, geo)
    return dx, dw, db


def _as_2d(x, w, stride, padding, dilation):
    """The 1-D problem as a 2-D one of height 1, with the padding resolved (causal included)."""
    stride, dilation = _tuple(stride, 1)[0], _tuple(dilation, 1)[0]
    before, after, _ = _pads(x.shape[1], w.shape[0], stride, dilation, padding)
    return x[:, None], w[None], (1, stride), ((0, 0), (before, after)), (1, dilation)


def conv1d(x, w, b=None, stride=1, padding="valid", dilation=1):
    """1-D convolution of NLC x with w (K, C, F) -> (N, OL, F); padding may be "causal"."""
    x4, w4, s, p, d = _as_2d(x, w, stride, padding, dilation)
    return conv2d(x4, w4, b, s, p, d)[:, 0]


def conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True):
    """Gradients of conv1d w.r.t. x (N,L,C), w (K,C,F) and b (F,) given dy (N,OL,F)."""
    x4, w4, s, p, d = _as_2d(x, w, stride, padding, dilation)
    dx, dw, db = conv2d_backward(x4, w4, dy[:, None], s, p, d, need_dx=need_dx)
    return (None if dx is None else dx[:, 0]), dw[0], db
