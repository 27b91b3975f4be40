"""NHWC / NLC float32 pooling: max and average, 1-D, 2-D and global, forward and backward.

Keras 3 semantics (MaxPooling2D, AveragePooling2D, Global*Pooling, 1-D versions):

* `pool_size` defaults to 2 per axis, `strides=None` means `pool_size`, padding is "valid" or
  "same" with Keras's geometry (`fastnn.kernels._geometry`: out = ceil(n / s), the extra padded
  cell goes to the bottom/right).
* Max pooling with "same" never picks a padded cell (pads behave as -inf). Average pooling with
  "same" leaves padded cells out of the divisor.
* NaN propagates: a window holding a NaN gives NaN (as np.max does) and its argmax is the
  window's first NaN. Ties give the first maximum in window order (row-major over the window).
* `max_pool*` also return `argmax` (int32, the output's shape): per output, the flat index
  (h*W + w)*C + c into one image's H*W*C cells (l*C + c in 1-D). The backward scatters dy there,
  summing where overlapping windows (stride < pool) picked the same cell.

Every function checks its arguments (dtype float32, rank, C-contiguity, geometry, `out=`
buffers, argmax range) and raises ValueError/TypeError naming the argument; the compiled loops
in `fastnn._kernels.pool` trust what reaches them.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._kernels import pool as _pool
from fastnn.kernels._checks import as_tuple, check_array, check_no_overlap, prepare_out
from fastnn.kernels._geometry import conv_geometry

__all__ = [
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "max_pool1d", "max_pool1d_backward", "avg_pool1d", "avg_pool1d_backward",
    "global_max_pool2d", "global_max_pool2d_backward", "global_avg_pool2d",
    "global_avg_pool2d_backward", "global_max_pool1d", "global_max_pool1d_backward",
    "global_avg_pool1d", "global_avg_pool1d_backward",
]

INT32 = np.dtype(np.int32)
_INT32_MAX = int(np.iinfo(np.int32).max)
_LAYOUT = {1: "NLC (N, L, C)", 2: "NHWC (N, H, W, C)"}


# ---- argument helpers ----

def _geometry(fn, spatial, pool_size, strides, padding, rank, data="x"):
    """Per-axis (window, kernel stride, pad_before, out) for a "valid"/"same" pool."""
    pool = as_tuple(pool_size, rank, "pool_size", fn)
    strides = pool if strides is None else as_tuple(strides, rank, "strides", fn)
    if any(k > _INT32_MAX // 2 for k in pool):
        raise ValueError(f"{fn}: pool_size must be below 2**30; received {pool_size!r}.")
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{fn}: padding must be 'valid' or 'same'; received {padding!r}.")
    geo = conv_geometry(spatial, pool, strides, (1,) * rank, padding.lower(), fn,
                        window="pool_size", data=data)
    # With a single output along an axis the stride is never used: pass 1, so that any
    # Python int the user gave reaches the C `int` arguments safely.
    return [(k, s if out > 1 else 1, before, out)
            for k, s, (before, _after, out) in zip(pool, strides, geo)]


def _check_x(x, fn, rank, name="x"):
    x = check_array(x, name, fn, ndim=rank + 2)
    if any(d == 0 for d in x.shape[1:-1]):
        raise ValueError(f"{fn}: {name} must have non-empty spatial dimensions "
                         f"({_LAYOUT[rank]}); received shape {x.shape}.")
    return x


def _check_index_range(fn, cells):
    if cells > _INT32_MAX:
        raise ValueError(f"{fn}: one image has {cells} cells, more than int32 argmax indices can "
                         f"address ({_INT32_MAX}); split the channels or the image.")


def _check_x_shape(x_shape, fn, rank, dy_shape, *, same_spatial=False):
    """x_shape as a tuple of ints (N, *spatial, C) consistent with dy's batch and channels."""
    try:
        shape = tuple(x_shape)
    except TypeError:
        raise TypeError(f"{fn}: x_shape must be a tuple of {rank + 2} ints {_LAYOUT[rank]}; "
                        f"received {x_shape!r}.") from None
    if len(shape) != rank + 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in shape):
        raise ValueError(f"{fn}: x_shape must be {rank + 2} non-negative ints {_LAYOUT[rank]}; "
                         f"received {x_shape!r}.")
    shape = tuple(int(v) for v in shape)
    if any(d == 0 for d in shape[1:-1]):
        raise ValueError(f"{fn}: x_shape must have non-empty spatial dimensions; received {shape}.")
    if shape[0] != dy_shape[0] or shape[-1] != dy_shape[-1]:
        raise ValueError(f"{fn}: x_shape {shape} does not match dy of shape {dy_shape}: batch and "
                         f"channels must be equal. Pass the shape of the forward input.")
    if same_spatial and any(o > i for o, i in zip(dy_shape[1:-1], shape[1:-1])):
        raise ValueError(f"{fn}: dy of shape {dy_shape} has more outputs than x_shape {shape} has "
                         f"cells along a spatial axis; pass the shape of the forward input.")
    return shape


# ---- max pooling ----

def _max_pool(fn, x, pool_size, strides, padding, out, argmax, rank):
    x = _check_x(x, fn, rank)
    n, c = x.shape[0], x.shape[-1]
    spatial = x.shape[1:-1]
    geo = _geometry(fn, spatial, pool_size, strides, padding, rank)
    _check_index_range(fn, int(np.prod(x.shape[1:])))
    y_shape = (n, *(g[3] for g in geo), c)
    out = prepare_out(out, y_shape, "out", fn)
    argmax = prepare_out(argmax, y_shape, "argmax", fn, dtype=INT32)
    check_no_overlap(out, x, "out", "x", fn)
    check_no_overlap(argmax, x, "argmax", "x", fn)
    check_no_overlap(argmax, out, "argmax", "out", fn)
    if rank == 1:
        (k, s, p, ol), = geo
        _pool.max_pool2d(x.reshape(n, 1, spatial[0], c), 1, k, 1, s, 0, p,
                         out.reshape(n, 1, ol, c), argmax.reshape(n, 1, ol, c))
    else:
        (kh, sh, pt, _), (kw, sw, pl, _) = geo
        _pool.max_pool2d(x, kh, kw, sh, sw, pt, pl, out, argmax)
    return out, argmax


def _max_backward(fn, dy, argmax, x_shape, dx, rank, *, is_global=False):
    dy = check_array(dy, "dy", fn, ndim=2 if is_global else rank + 2)
    argmax = check_array(argmax, "argmax", fn, dtype=INT32, shape=dy.shape)
    x_shape = _check_x_shape(x_shape, fn, rank, dy.shape, same_spatial=not is_global)
    cells = int(np.prod(x_shape[1:]))
    _check_index_range(fn, cells)
    dx = prepare_out(dx, x_shape, "dx", fn)
    check_no_overlap(dx, dy, "dx", "dy", fn)
    check_no_overlap(dx, argmax, "dx", "argmax", fn)
    n = x_shape[0]
    k = int(np.prod(dy.shape[1:]))
    bad = _pool.max_pool_backward(dy.reshape(n, k), argmax.reshape(n, k), dx.reshape(n, cells))
    if bad:
        raise ValueError(f"{fn}: argmax holds {bad} indices outside [0, {cells}) (one image of "
                         f"x_shape {x_shape}); pass the argmax that the forward returned. dx is "
                         f"left unspecified.")
    return dx


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid", *, out=None, argmax=None):
    """NHWC float32 max pooling -> (y, argmax).

    x (N, H, W, C) float32 -> y (N, OH, OW, C) float32 and argmax (N, OH, OW, C) int32, the flat
    index (h*W + w)*C + c of each maximum inside one image. pool_size and strides are ints or
    pairs (strides None -> pool_size); padding "valid" or "same" (pads never win).
    """
    return _max_pool("max_pool2d", x, pool_size, strides, padding, out, argmax, 2)


def max_pool2d_backward(dy, argmax, x_shape, *, dx=None):
    """Gradient of NHWC float32 max pooling: dy scattered to argmax (summed on overlap).

    dy (N, OH, OW, C) float32, argmax (N, OH, OW, C) int32 from `max_pool2d`, x_shape
    (N, H, W, C) -> dx (N, H, W, C) float32. Raises ValueError for indices outside one image.
    """
    return _max_backward("max_pool2d_backward", dy, argmax, x_shape, dx, 2)


def max_pool1d(x, pool_size=2, strides=None, padding="valid", *, out=None, argmax=None):
    """NLC float32 max pooling -> (y, argmax).

    x (N, L, C) float32 -> y (N, OL, C) float32 and argmax (N, OL, C) int32, the flat index
    l*C + c of each maximum inside one sequence.
    """
    return _max_pool("max_pool1d", x, pool_size, strides, padding, out, argmax, 1)


def max_pool1d_backward(dy, argmax, x_shape, *, dx=None):
    """Gradient of NLC float32 max pooling: dy (N, OL, C), argmax, x_shape (N, L, C) -> dx."""
    return _max_backward("max_pool1d_backward", dy, argmax, x_shape, dx, 1)


# ---- average pooling ----

def _avg_pool(fn, x, pool_size, strides, padding, out, rank):
    x = _check_x(x, fn, rank)
    n, c = x.shape[0], x.shape[-1]
    spatial = x.shape[1:-1]
    geo = _geometry(fn, spatial, pool_size, strides, padding, rank)
    out = prepare_out(out, (n, *(g[3] for g in geo), c), "out", fn)
    check_no_overlap(out, x, "out", "x", fn)
    if rank == 1:
        (k, s, p, ol), = geo
        _pool.avg_pool2d(x.reshape(n, 1, spatial[0], c), 1, k, 1, s, 0, p, out.reshape(n, 1, ol, c))
    else:
        (kh, sh, pt, _), (kw, sw, pl, _) = geo
        _pool.avg_pool2d(x, kh, kw, sh, sw, pt, pl, out)
    return out


def _avg_backward(fn, dy, x_shape, pool_size, strides, padding, dx, rank):
    dy = check_array(dy, "dy", fn, ndim=rank + 2)
    x_shape = _check_x_shape(x_shape, fn, rank, dy.shape)
    n, c = x_shape[0], x_shape[-1]
    spatial = x_shape[1:-1]
    geo = _geometry(fn, spatial, pool_size, strides, padding, rank, data="x_shape")
    y_shape = (n, *(g[3] for g in geo), c)
    if dy.shape != y_shape:
        raise ValueError(f"{fn}: dy must have shape {y_shape} (the forward output for x_shape "
                         f"{x_shape}, pool_size {pool_size!r}, strides {strides!r}, padding "
                         f"{padding!r}); received shape {dy.shape}.")
    dx = prepare_out(dx, x_shape, "dx", fn)
    check_no_overlap(dx, dy, "dx", "dy", fn)
    if rank == 1:
        (k, s, p, ol), = geo
        _pool.avg_pool2d_backward(dy.reshape(n, 1, ol, c), 1, k, 1, s, 0, p,
                                  dx.reshape(n, 1, spatial[0], c))
    else:
        (kh, sh, pt, _), (kw, sw, pl, _) = geo
        _pool.avg_pool2d_backward(dy, kh, kw, sh, sw, pt, pl, dx)
    return dx


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid", *, out=None):
    """NHWC float32 average pooling: x (N, H, W, C) -> y (N, OH, OW, C).

    With padding "same", padded cells are left out of each window's divisor (Keras).
    """
    return _avg_pool("avg_pool2d", x, pool_size, strides, padding, out, 2)


def avg_pool2d_backward(dy, x_shape, pool_size=(2, 2), strides=None, padding="valid", *, dx=None):
    """Gradient of NHWC float32 average pooling: dy (N, OH, OW, C), x_shape (N, H, W, C) -> dx.

    Each dx cell sums dy / count over the windows covering it (count = valid cells of the window).
    """
    return _avg_backward("avg_pool2d_backward", dy, x_shape, pool_size, strides, padding, dx, 2)


def avg_pool1d(x, pool_size=2, strides=None, padding="valid", *, out=None):
    """NLC float32 average pooling: x (N, L, C) -> y (N, OL, C)."""
    return _avg_pool("avg_pool1d", x, pool_size, strides, padding, out, 1)


def avg_pool1d_backward(dy, x_shape, pool_size=2, strides=None, padding="valid", *, dx=None):
    """Gradient of NLC float32 average pooling: dy (N, OL, C), x_shape (N, L, C) -> dx."""
    return _avg_backward("avg_pool1d_backward", dy, x_shape, pool_size, strides, padding, dx, 1)


# ---- global pooling ----

def _global_max(fn, x, out, argmax, rank):
    x = _check_x(x, fn, rank)
    n, c = x.shape[0], x.shape[-1]
    _check_index_range(fn, int(np.prod(x.shape[1:])))
    out = prepare_out(out, (n, c), "out", fn)
    argmax = prepare_out(argmax, (n, c), "argmax", fn, dtype=INT32)
    check_no_overlap(out, x, "out", "x", fn)
    check_no_overlap(argmax, x, "argmax", "x", fn)
    check_no_overlap(argmax, out, "argmax", "out", fn)
    x4 = x if rank == 2 else x.reshape(n, 1, x.shape[1], c)
    # one window covering the whole image: OH = OW = 1, the strides are never used
    _pool.max_pool2d(x4, x4.shape[1], x4.shape[2], 1, 1, 0, 0,
                     out.reshape(n, 1, 1, c), argmax.reshape(n, 1, 1, c))
    return out, argmax


def _global_avg(fn, x, out, rank):
    x = _check_x(x, fn, rank)
    n, c = x.shape[0], x.shape[-1]
    out = prepare_out(out, (n, c), "out", fn)
    check_no_overlap(out, x, "out", "x", fn)
    _pool.global_avg_pool(x.reshape(n, int(np.prod(x.shape[1:-1])), c), out)
    return out


def _global_avg_backward(fn, dy, x_shape, dx, rank):
    dy = check_array(dy, "dy", fn, ndim=2)
    x_shape = _check_x_shape(x_shape, fn, rank, dy.shape)
    dx = prepare_out(dx, x_shape, "dx", fn)
    check_no_overlap(dx, dy, "dx", "dy", fn)
    n, c = dy.shape
    dx4 = dx if rank == 2 else dx.reshape(n, 1, x_shape[1], c)
    _pool.avg_pool2d_backward(dy.reshape(n, 1, 1, c), dx4.shape[1], dx4.shape[2], 1, 1, 0, 0, dx4)
    return dx


def global_max_pool2d(x, *, out=None, argmax=None):
    """NHWC float32 global max pooling: x (N, H, W, C) -> (y (N, C), argmax (N, C) int32).

    argmax is the flat index (h*W + w)*C + c of each maximum inside one image.
    """
    return _global_max("global_max_pool2d", x, out, argmax, 2)


def global_max_pool2d_backward(dy, argmax, x_shape, *, dx=None):
    """Gradient of NHWC global max pooling: dy (N, C), argmax (N, C), x_shape (N, H, W, C) -> dx."""
    return _max_backward("global_max_pool2d_backward", dy, argmax, x_shape, dx, 2, is_global=True)


def global_avg_pool2d(x, *, out=None):
    """NHWC float32 global average pooling: x (N, H, W, C) -> y (N, C), summed in float64."""
    return _global_avg("global_avg_pool2d", x, out, 2)


def global_avg_pool2d_backward(dy, x_shape, *, dx=None):
    """Gradient of NHWC global average pooling: dy (N, C), x_shape (N, H, W, C) -> dx = dy / (H*W)."""
    return _global_avg_backward("global_avg_pool2d_backward", dy, x_shape, dx, 2)


def global_max_pool1d(x, *, out=None, argmax=None):
    """NLC float32 global max pooling: x (N, L, C) -> (y (N, C), argmax (N, C) int32, index l*C + c)."""
    return _global_max("global_max_pool1d", x, out, argmax, 1)


def global_max_pool1d_backward(dy, argmax, x_shape, *, dx=None):
    """Gradient of NLC global max pooling: dy (N, C), argmax (N, C), x_shape (N, L, C) -> dx."""
    return _max_backward("global_max_pool1d_backward", dy, argmax, x_shape, dx, 1, is_global=True)


def global_avg_pool1d(x, *, out=None):
    """NLC float32 global average pooling: x (N, L, C) -> y (N, C), summed in float64."""
    return _global_avg("global_avg_pool1d", x, out, 1)


def global_avg_pool1d_backward(dy, x_shape, *, dx=None):
    """Gradient of NLC global average pooling: dy (N, C), x_shape (N, L, C) -> dx = dy / L."""
    return _global_avg_backward("global_avg_pool1d_backward", dy, x_shape, dx, 1)
