"""Naive NumPy depthwise convolution (NHWC, kernel (KH, KW, C, M) as Keras): oracle and baseline.

The textbook loop over filter offsets (kh, kw), as `common/util.py` of "Deep Learning from
Scratch" writes im2col: the zero-padded input is sliced once per offset and multiplied by that
offset's (C, M) weights, so output channel c*M + m sums x[..., c] * w[kh, kw, c, m]. Works in
any float dtype (the tests run it in float64 for numerical gradients). Same signatures as
fastnn.kernels.depthwise, without the out= buffers.
"""
from __future__ import annotations

import numpy as np

from fastnn.reference.conv import _as_2d, _pads_2d


def _slices(kh, kw, strides, dilation, oh, ow):
    """The window offset (kh, kw) of every output pixel, as slices of the padded image."""
    (sh, sw), (dh, dw) = strides, dilation
    return (slice(None), slice(kh * dh, kh * dh + sh * (oh - 1) + 1, sh),
            slice(kw * dw, kw * dw + sw * (ow - 1) + 1, sw), slice(None))


def depthwise_conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *,
                     activation="linear", **act_params):
    """Depthwise convolution of NHWC x with w (KH, KW, C, M) -> (N, OH, OW, C*M)."""
    strides, dilation, geo = _pads_2d(x, w, strides, padding, dilation)
    (pt, pb, oh), (pl, pr, ow) = geo
    n, _, _, c = x.shape
    kh_size, kw_size, _, m = w.shape
    img = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
    y = np.zeros((n, oh, ow, c, m), np.result_type(x, w))
    for kh in range(kh_size):
        for kw in range(kw_size):
            patch = img[_slices(kh, kw, strides, dilation, oh, ow)]
            y += patch[..., None] * w[kh, kw]
    y = y.reshape(n, oh, ow, c * m)
    if b is not None:
        y = y + b
    if activation != "linear" or act_params:
        from fastnn.reference import activation as A

        y = A.apply(activation, y, **act_params)
    return y


def depthwise_conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *,
                              need_dx=True):
    """Gradients of depthwise_conv2d w.r.t. x (N,H,W,C), w (KH,KW,C,M), b (C*M,) given dy."""
    strides, dilation, geo = _pads_2d(x, w, strides, padding, dilation)
    (pt, pb, oh), (pl, pr, ow) = geo
    n, h, wd, c = x.shape
    kh_size, kw_size, _, m = w.shape
    img = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
    dy5 = dy.reshape(n, oh, ow, c, m)
    dw = np.zeros(w.shape, np.result_type(x, dy))
    dimg = np.zeros(img.shape, np.result_type(dy, w))
    for kh in range(kh_size):
        for kw in range(kw_size):
            s = _slices(kh, kw, strides, dilation, oh, ow)
            dw[kh, kw] = np.einsum("nhwc,nhwcm->cm", img[s], dy5)
            dimg[s] += (dy5 * w[kh, kw]).sum(axis=-1)
    db = dy.reshape(-1, c * m).sum(axis=0)
    dx = dimg[:, pt:pt + h, pl:pl + wd, :] if need_dx else None
    return dx, dw, db


def depthwise_conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, activation="linear",
                     **act_params):
    """Depthwise 1-D convolution of NLC x with w (K, C, M) -> (N, OL, C*M)."""
    x4, w4, s, p, d = _as_2d(x, w, stride, padding, dilation)
    return depthwise_conv2d(x4, w4, b, s, p, d, activation=activation, **act_params)[:, 0]


def depthwise_conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True):
    """Gradients of depthwise_conv1d w.r.t. x (N,L,C), w (K,C,M), b (C*M,) given dy (N,OL,C*M)."""
    x4, w4, s, p, d = _as_2d(x, w, stride, padding, dilation)
    dx, dw, db = depthwise_conv2d_backward(x4, w4, dy[:, None], s, p, d, need_dx=need_dx)
    return (None if dx is None else dx[:, 0]), dw[0], db
