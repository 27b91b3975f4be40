"""Convolution kernels: NHWC / NLC float32, kernel (KH, KW, C, F) as Keras, forward and backward.

A convolution is `col (N*OH*OW, KH*KW*C) @ w (KH*KW*C, F)`, whose (M, F) result already is the
NHWC output. The batch's output rows (n, oh) are cut into chunks whose col buffer stays a few MB;
for each chunk the compiled im2col (fastnn._kernels.conv) fills the col buffer and ONE
np.matmul writes the chunk's slice of the output, then the bias is added while it is hot in
cache. 1x1 convolutions with stride 1 and no padding skip im2col (x viewed as (N*H*W, C)).

Backward per chunk: dW += colᵀ @ dY, db += column sums of dY (float64), dcol = dY @ Wᵀ (written
into the col buffer, which is free by then) and col2im gathers it into dx.

The col, dW-partial and bias-sum buffers live in a per-thread workspace that only grows, so a
training step at a fixed shape allocates nothing. Every argument is checked here: the compiled
loops behind trust what they get.
"""
from __future__ import annotations

import threading

import numpy as np

from fastnn._kernels import conv as _k
from fastnn.kernels._checks import as_tuple, check_array, check_no_overlap, prepare_out
from fastnn.kernels._geometry import conv_geometry, resolve_padding

__all__ = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward"]

# Target size of the col buffer of one chunk. Measured on the bench shapes (2-core EPYC,
# OpenBLAS): 2-8 MB are all within noise; below ~1 MB the GEMMs get too short and above ~16 MB
# the col no longer stays in L3 between im2col and the GEMM.
CHUNK_BYTES = 4 << 20

_tls = threading.local()


def _workspace(name: str, size: int, dtype=np.float32) -> np.ndarray:
    """A flat per-thread scratch buffer of at least `size` elements, reused across calls."""
    cache = getattr(_tls, "buffers", None)
    if cache is None:
        cache = _tls.buffers = {}
    buf = cache.get(name)
    if buf is None or buf.size < size:
        buf = cache[name] = np.empty(max(size, 1), dtype)
    return buf[:size]


def _chunk_rows(total_rows: int, ow: int, k: int) -> int:
    """Output rows (n, oh) per chunk: col stays near CHUNK_BYTES, chunks of equal size."""
    rows = max(1, CHUNK_BYTES // max(1, ow * k * 4))
    nchunks = -(-total_rows // rows)
    return -(-total_rows // nchunks)


# ---------------------------------------------------------------- argument checks

def _check_weights(x, w, fn: str, rank: int):
    """x (N, *spatial, C) and w (*kernel, C, F): float32, C-contiguous, matching C."""
    lay = "NHWC" if rank == 2 else "NLC"
    klay = "(KH, KW, C, F)" if rank == 2 else "(K, C, F)"
    x = check_array(x, "x", fn, ndim=rank + 2)
    w = check_array(w, "w", fn, ndim=rank + 2)
    if any(s < 1 for s in w.shape):
        raise ValueError(f"{fn}: w must have shape {klay} with every size >= 1; received shape {w.shape}.")
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(f"{fn}: w has {w.shape[-2]} input channels (w.shape[{rank}]) but x ({lay}) has "
                         f"{x.shape[-1]}; w must have shape {klay} with C = x.shape[-1].")
    return x, w


def _check_padding_2d(padding, fn: str):
    names = [padding] if isinstance(padding, str) else (list(padding) if isinstance(padding, (tuple, list)) else [])
    for p in names:
        if isinstance(p, str) and p.lower() == "causal":
            raise ValueError(f"{fn}: padding 'causal' is only defined for conv1d; use 'valid', 'same' "
                             f"or ((top, bottom), (left, right)).")


def _geometry_2d(x, w, strides, padding, dilation, fn: str):
    strides = as_tuple(strides, 2, "strides", fn)
    dilation = as_tuple(dilation, 2, "dilation", fn)
    _check_padding_2d(padding, fn)
    if not isinstance(padding, str) and isinstance(padding, (tuple, list)) and len(padding) == 2 \
            and not all(isinstance(p, (tuple, list)) for p in padding):
        raise ValueError(f"{fn}: padding must be 'valid', 'same' or ((top, bottom), (left, right)); "
                         f"received {padding!r}.")
    (pt, pb, oh), (pl, pr, ow) = conv_geometry(x.shape[1:3], w.shape[:2], strides, dilation, padding, fn)
    return strides, dilation, (pt, pb, pl, pr), (oh, ow)


def _geometry_1d(x, w, stride, padding, dilation, fn: str):
    stride = as_tuple(stride, 1, "stride", fn)[0]
    dilation = as_tuple(dilation, 1, "dilation", fn)[0]
    if not isinstance(padding, str):
        if not isinstance(padding, (tuple, list)):
            raise ValueError(f"{fn}: padding must be 'valid', 'same', 'causal' or (left, right); "
                             f"received {padding!r}.")
    left, right, ol = resolve_padding(x.shape[1], w.shape[0], stride, dilation, padding, "padding", fn)
    return (1, stride), (1, dilation), (0, 0, left, right), (1, ol)


def _check_bias(b, f: int, fn: str):
    if b is None:
        return None
    return check_array(b, "b", fn, ndim=1, shape=(f,))


def _no_overlap(outs, ins, fn: str):
    for name_o, o in outs:
        if o is None:
            continue
        for name_i, i in ins:
            if i is not None and name_i != name_o:
                check_no_overlap(o, i, name_o, name_i, fn)


# ---------------------------------------------------------------- compute (validated 4-D NHWC)

def _forward(x, w, b, strides, dilation, pads, out_hw, out):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    if n == 0:
        return
    k = kh * kw * c
    w2 = w.reshape(k, f)
    out2 = out.reshape(n * oh * ow, f)
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
        np.matmul(x.reshape(n * h * wd, c), w2, out=out2)
        if b is not None:
            _k.bias_add(out2, b)
        return
    total = n * oh
    rows = _chunk_rows(total, ow, k)
    col_all = _workspace("col", rows * ow * k)
    for q0 in range(0, total, rows):
        q1 = min(q0 + rows, total)
        col = col_all[:(q1 - q0) * ow * k].reshape(-1, k)
        _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col)
        y = out2[q0 * ow:q1 * ow]
        np.matmul(col, w2, out=y)
        if b is not None:
            _k.bias_add(y, b)


def _backward(x, w, dy, strides, dilation, pads, out_hw, dx, dw_out, db):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    k = kh * kw * c
    w2 = w.reshape(k, f)
    dw2 = dw_out.reshape(k, f)
    dy2 = dy.reshape(n * oh * ow, f)
    acc = _workspace("db", f, np.float64)
    acc.fill(0.0)
    if n == 0:
        dw2.fill(0.0)
        db.fill(0.0)
        return
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
        x2 = x.reshape(n * h * wd, c)
        np.matmul(x2.T, dy2, out=dw2)
        _k.column_sums_add(dy2, acc)
        if dx is not None:
            np.matmul(dy2, w2.T, out=dx.reshape(n * h * wd, c))
        db[...] = acc
        return
    total = n * oh
    rows = _chunk_rows(total, ow, k)
    col_all = _workspace("col", rows * ow * k)
    dw_tmp = _workspace("dw", k * f).reshape(k, f)
    dx_rows = None if dx is None else dx.reshape(n * h, wd * c)
    zeroed = 0            # dx rows below this index have been zeroed already
    for q0 in range(0, total, rows):
        q1 = min(q0 + rows, total)
        col = col_all[:(q1 - q0) * ow * k].reshape(-1, k)
        dyc = dy2[q0 * ow:q1 * ow]
        _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col)
        if q0 == 0:
            np.matmul(col.T, dyc, out=dw2)
        else:
            np.matmul(col.T, dyc, out=dw_tmp)
            np.add(dw2, dw_tmp, out=dw2)
        _k.column_sums_add(dyc, acc)
        if dx_rows is None:
            continue
        # dcol overwrites col, which the dW GEMM no longer needs
        np.matmul(dyc, w2.T, out=col)
        n0, oh0 = divmod(q0, oh)
        n1, oh1 = divmod(q1 - 1, oh)
        r0 = n0 * h + min(max(oh0 * sh - pt, 0), h)
        r1 = n1 * h + min(max(oh1 * sh - pt + (kh - 1) * dh + 1, 0), h)
        if r1 > zeroed:
            dx_rows[zeroed:r1].fill(0.0)
            zeroed = r1
        if r1 > r0:
            _k.col2im_add(col, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, r0, r1, dx)
    if dx_rows is not None and zeroed < n * h:
        dx_rows[zeroed:].fill(0.0)    # rows no window reads (large bottom padding or stride)
    db[...] = acc


# ---------------------------------------------------------------- public API

def conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, out=None):
    """2-D convolution (cross-correlation, as Keras Conv2D) of NHWC float32 x with w (KH, KW, C, F).

    x (N, H, W, C), w (KH, KW, C, F), b (F,) or None -> y (N, OH, OW, F) float32.
    strides, dilation: int or (h, w) pair, >= 1. padding: "valid", "same" (Keras/TF rule: the
    extra pixel of an even window goes bottom/right) or ((top, bottom), (left, right)).
    out: optional C-contiguous writeable float32 (N, OH, OW, F) buffer, filled and returned.
    """
    fn = "conv2d"
    x, w = _check_weights(x, w, fn, 2)
    b = _check_bias(b, w.shape[3], fn)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    out = prepare_out(out, (x.shape[0], *out_hw, w.shape[3]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    _forward(x, w, b, strides, dilation, pads, out_hw, out)
    return out


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *, need_dx=True,
                    dx=None, dw=None, db=None):
    """Gradients of conv2d (NHWC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, H, W, C), w (KH, KW, C, F), dy (N, OH, OW, F) -> (dx (N, H, W, C) or None, dw
    (KH, KW, C, F), db (F,)). Same strides / padding / dilation as the forward call.
    need_dx=False skips dx (a first layer) and returns None for it. dx, dw, db: optional
    C-contiguous writeable float32 buffers, overwritten (not accumulated) and returned.
    """
    fn = "conv2d_backward"
    x, w = _check_weights(x, w, fn, 2)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db,
                            y_shape=(x.shape[0], *out_hw, w.shape[3]), views=None)


def _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db, y_shape, views):
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_dx must be True or False; received {need_dx!r}.")
    dy = check_array(dy, "dy", fn, ndim=len(y_shape))
    if dy.shape != tuple(y_shape):
        raise ValueError(f"{fn}: dy must have the forward output's shape {tuple(y_shape)}; received "
                         f"shape {dy.shape}. Pass the same x, w, strides, padding and dilation as the "
                         f"forward call.")
    dx = prepare_out(dx, x.shape, "dx", fn) if need_dx else None
    dw = prepare_out(dw, w.shape, "dw", fn)
    db = prepare_out(db, (w.shape[-1],), "db", fn)
    _no_overlap([("dx", dx), ("dw", dw), ("db", db)],
                [("x", x), ("w", w), ("dy", dy), ("dx", dx), ("dw", dw), ("db", db)], fn)
    if views is None:
        _backward(x, w, dy, strides, dilation, pads, out_hw, dx, dw, db)
    else:   # conv1d: the same buffers seen as (N, 1, L, C) images
        x4, w4, dy4 = views(x), w[None], dy[:, None]
        _backward(x4, w4, dy4, strides, dilation, pads, out_hw,
                  None if dx is None else dx[:, None], dw[None], db)
    return dx, dw, db


def conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, out=None):
    """1-D convolution (as Keras Conv1D) of NLC float32 x with w (K, C, F).

    x (N, L, C), w (K, C, F), b (F,) or None -> y (N, OL, F) float32. stride, dilation: int >= 1.
    padding: "valid", "same", "causal" (all K-1 dilated pads on the left) or (left, right).
    out: optional C-contiguous writeable float32 (N, OL, F) buffer, filled and returned.
    """
    fn = "conv1d"
    x, w = _check_weights(x, w, fn, 1)
    b = _check_bias(b, w.shape[2], fn)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    out = prepare_out(out, (x.shape[0], out_hw[1], w.shape[2]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    _forward(x[:, None], w[None], b, strides, dilation, pads, out_hw, out[:, None])
    return out


def conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True,
                    dx=None, dw=None, db=None):
    """Gradients of conv1d (NLC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, L, C), w (K, C, F), dy (N, OL, F) -> (dx (N, L, C) or None, dw (K, C, F), db (F,)).
    Same stride / padding / dilation as the forward call; buffers as conv2d_backward.
    """
    fn = "conv1d_backward"
    x, w = _check_weights(x, w, fn, 1)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db,
                            y_shape=(x.shape[0], out_hw[1], w.shape[2]), views=lambda a: a[:, None])
