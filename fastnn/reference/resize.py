"""Naive image resizing (NHWC), one output pixel at a time: oracle and baseline of fastnn.kernels.resize.

Keras's sampling rule (half-pixel centres, positions computed in float32 as its torch backend
does): for output index o of an axis resized from n to m, scale = n / m,
  bilinear: s = max(scale*(o + 0.5) - 0.5, 0), neighbours floor(s) and min(floor(s) + 1, n - 1),
            weights 1 - frac(s), frac(s);
  nearest:  min(floor(scale*(o + 0.5)), n - 1).
"""
from __future__ import annotations

import math

import numpy as np


def _taps(o, n, m, interpolation):
    """[(index, weight), ...] of output index o on an axis resized from n to m."""
    scale = np.float32(n) / np.float32(m)
    if interpolation == "nearest":
        return [(min(int(math.floor((np.float32(o) + np.float32(0.5)) * scale)), n - 1), 1.0)]
    s = max(scale * (np.float32(o) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = int(math.floor(s))
    frac = float(s - np.float32(i0))
    return [(i0, 1.0 - frac), (min(i0 + 1, n - 1), frac)]


def resize(x, size, interpolation="bilinear"):
    """x (N, H, W, C) -> (N, size[0], size[1], C): each output pixel the weighted sum of its taps."""
    n, h, w, c = x.shape
    oh, ow = size
    y = np.zeros((n, oh, ow, c), np.result_type(x, np.float32))
    for i in range(oh):
        for j in range(ow):
            for ih, a in _taps(i, h, oh, interpolation):
                for iw, b in _taps(j, w, ow, interpolation):
                    y[:, i, j] += a * b * x[:, ih, iw]
    return y


def resize_backward(dy, x_shape, interpolation="bilinear"):
    """dx of resize: each output pixel's gradient scattered to its taps with the same weights."""
    n, h, w, c = x_shape
    oh, ow = dy.shape[1:3]
    dx = np.zeros(x_shape, np.result_type(dy, np.float32))
    for i in range(oh):
        for j in range(ow):
            for ih, a in _taps(i, h, oh, interpolation):
                for iw, b in _taps(j, w, ow, interpolation):
                    dx[:, ih, iw] += a * b * dy[:, i, j]
    return dx
