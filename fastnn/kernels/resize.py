"""Image resizing (Keras Resizing / keras.ops.image.resize): NHWC float32, bilinear or nearest.

Keras's numbers (its torch backend calls torch.nn.functional.interpolate; TF and JAX use the same
half-pixel rule), per output index o of an axis resized from n to m, with scale = n / m in float32:
  bilinear (align_corners=False, no antialias): s = max(scale*(o + 0.5) - 0.5, 0), i0 = floor(s),
      i1 = min(i0 + 1, n - 1), weights (1 - (s - i0), s - i0); the output is the weighted sum of
      the 2x2 neighbours (rows first, then columns);
  nearest ("nearest-exact"): i = min(floor(scale*(o + 0.5)), n - 1).
The sampling positions are float32 as in torch, so the same neighbours and weights are picked.
The work is a few gathers over the output (preprocessing runs once per batch, not per layer),
so this is vectorised NumPy; the backward scatters dy with the same weights (np.add.at).
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn.kernels._checks import check_aliases, check_array, prepare_out

__all__ = ["resize", "resize_backward", "INTERPOLATIONS"]

INTERPOLATIONS = ("bilinear", "nearest")


def axis_weights(n: int, m: int, interpolation: str):
    """(i0, i1, w0, w1) of one axis resized from n to m: output o = w0*x[i0] + w1*x[i1]
    (nearest: w1 = 0, i1 = i0). Float32 positions, as torch computes them."""
    scale = np.float32(n) / np.float32(m)
    o = np.arange(m, dtype=np.float32)
    if interpolation == "nearest":
        i0 = np.minimum(np.floor((o + np.float32(0.5)) * scale).astype(np.int64), n - 1)
        return i0, i0, np.ones(m, np.float32), np.zeros(m, np.float32)
    s = np.maximum(scale * (o + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = s.astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w1 = (s - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


_MAX_SIDE = 1 << 24     # per axis: beyond any image, and the per-axis tap tables stay small


def _ints(value, count, name, fn, what, low):
    """A sequence of `count` ints (Python or NumPy, not bool) in [low, 2**24], as a tuple."""
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be {what}; received {value!r}.") from None
    if len(out) != count or not all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                                    for v in out):
        raise ValueError(f"{fn}: {name} must be {what}; received {value!r}.")
    out = tuple(int(v) for v in out)
    if any(v < low or v > _MAX_SIDE for v in out):
        raise ValueError(f"{fn}: {name} must be {what}, each in [{low}, 2**24]; received {value!r}.")
    return out


def _check(fn, interpolation, size, name="size"):
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise ValueError(f"{fn}: interpolation must be one of {INTERPOLATIONS}; received {interpolation!r}.")
    return _ints(size, 2, name, fn, "(height, width), two positive ints", 1)


def resize(x, size, interpolation="bilinear", *, out=None):
    """x (N, H, W, C) float32 -> y (N, size[0], size[1], C), bilinear or nearest as Keras."""
    fn = "resize"
    oh, ow = _check(fn, interpolation, size)
    x = check_array(x, "x", fn, ndim=4)
    n, h, w, c = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: x must have non-empty spatial dimensions; received shape {x.shape}.")
    out = prepare_out(out, (n, oh, ow, c), "out", fn)
    check_aliases(fn, [("out", out)], [("x", x)])     # as every kernel: no out= overlapping an input
    h0, h1, a0, a1 = axis_weights(h, oh, interpolation)
    w0, w1, b0, b1 = axis_weights(w, ow, interpolation)
    if interpolation == "nearest":
        np.copyto(out, x[:, h0][:, :, w0])
        return out
    with np.errstate(invalid="ignore", over="ignore"):     # NaN/inf data (inf * 0 = NaN) as the reference
        rows = x[:, h0] * a0[:, None, None] + x[:, h1] * a1[:, None, None]      # (N, OH, W, C)
        np.add(rows[:, :, w0] * b0[:, None], rows[:, :, w1] * b1[:, None], out=out)
    return out


def resize_backward(dy, x_shape, interpolation="bilinear", *, dx=None):
    """dx (x_shape) of resize given dy (N, OH, OW, C): the same weights, scattered back."""
    fn = "resize_backward"
    dy = check_array(dy, "dy", fn, ndim=4)
    n, h, w, c = _ints(x_shape, 4, "x_shape", fn, "the forward input's shape (N, H, W, C), four ints", 0)
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: x_shape must have non-empty spatial dimensions (H, W >= 1); received "
                         f"{x_shape!r}.")
    _check(fn, interpolation, dy.shape[1:3], "dy")
    if dy.shape[0] != n or dy.shape[3] != c:
        raise ValueError(f"{fn}: dy {dy.shape} does not match x_shape {(n, h, w, c)} in batch or channels.")
    dx = prepare_out(dx, (n, h, w, c), "dx", fn)
    check_aliases(fn, [("dx", dx)], [("dy", dy)])
    oh, ow = dy.shape[1:3]
    h0, h1, a0, a1 = axis_weights(h, oh, interpolation)
    w0, w1, b0, b1 = axis_weights(w, ow, interpolation)
    drows = np.zeros((n, oh, w, c), np.float32)        # d/d(rows) of the column pass
    with np.errstate(invalid="ignore", over="ignore"):     # NaN/inf in dy: as the reference, no warning
        np.add.at(drows, (slice(None), slice(None), w0), dy * b0[:, None])
        if interpolation == "bilinear":
            np.add.at(drows, (slice(None), slice(None), w1), dy * b1[:, None])
        dx.fill(0.0)
        np.add.at(dx, (slice(None), h0), drows * a0[:, None, None])
        if interpolation == "bilinear":
            np.add.at(dx, (slice(None), h1), drows * a1[:, None, None])
    return dx
