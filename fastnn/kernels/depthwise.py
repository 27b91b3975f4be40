"""Depthwise convolution kernels (Keras DepthwiseConv2D / DepthwiseConv1D): NHWC / NLC float32.

w has Keras's depthwise layout (KH, KW, C, M) (1-D: (K, C, M)), M the depth multiplier: output
channel c*M + m is input channel c convolved with w[..., c, m], so y has C*M channels, and a
bias has C*M values. padding: "valid", "same" (Keras's rule: the extra pixel of an even window
goes bottom/right) or explicit pads; 1-D also "causal".

The compiled loops (fastnn._kernels.depthwise, see its design note) are direct, not im2col:
vectorised across channels (NHWC keeps them contiguous), register-blocked over output pixels,
OpenMP threads over rows. Every result is independent of the thread count: forward and dx write
each output row from one thread, and dw/db sum float64 partials over a chunk grid fixed by the
shape, in chunk order. AVX-512F / AVX2+FMA / portable bodies run the flavour of
fastnn.kernels.isa (FASTNN_ISA=avx512|avx2|portable or isa.set_isa force one).

Every argument is checked here; the compiled loops trust what they get.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from fastnn._kernels import depthwise as _dk
from fastnn.kernels import conv as _conv
from fastnn.kernels._checks import as_tuple, check_array, prepare_out
from fastnn.kernels._geometry import conv_geometry, resolve_padding
from fastnn.kernels.threads import omp_threads

__all__ = ["depthwise_conv2d", "depthwise_conv2d_backward", "depthwise_conv1d",
           "depthwise_conv1d_backward", "ISA"]

# Instruction-set flavour: None = the flavour in force (fastnn.kernels.isa: the best this CPU
# runs, or FASTNN_ISA=avx512|avx2|portable, or isa.set_isa); 0 portable, 1 AVX2+FMA, 2 AVX-512F
# (at most the one in force) force one for a test or a benchmark.
ISA = None

# Below this many multiply-adds a call runs on the calling thread (waking the OpenMP team
# costs more than it saves).
SERIAL_MACS = 1 << 17
# Weight-gradient chunk grid: at most this many chunks, each of >= CHUNK_PIXELS output pixels
# (each chunk zeroes and adds a float64 (KH*KW + 1) x C*M partial, so fewer for small images).
MAX_CHUNKS = 32
CHUNK_PIXELS = 256

_workspace, _zeros = _conv._workspace, _conv._zeros    # per-thread scratch; read-only zero rows


def _isa() -> int:
    return _dk.get_isa() if ISA is None else ISA


def _threads(macs: float) -> int:
    # omp_threads: 1 in a forked child (GNU OpenMP hangs there; fastnn.kernels.threads)
    return 1 if macs < SERIAL_MACS else omp_threads()


def chunks(rows: int, ow: int) -> int:
    """The weight-gradient chunk count for N*OH output rows of OW pixels (shape only)."""
    return max(1, min(MAX_CHUNKS, rows, rows * ow // CHUNK_PIXELS))


# ---------------------------------------------------------------- argument checks

def _check(x, w, fn: str, rank: int):
    lay = "NHWC (N, H, W, C)" if rank == 2 else "NLC (N, L, C)"
    klay = "(KH, KW, C, M)" if rank == 2 else "(K, C, M)"
    x = check_array(x, "x", fn, ndim=rank + 2)
    w = check_array(w, "w", fn, ndim=rank + 2)
    if any(s < 1 for s in w.shape):
        raise ValueError(f"{fn}: w must have shape {klay} with every size >= 1; received shape {w.shape}.")
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(f"{fn}: w has {w.shape[-2]} input channels (w.shape[{rank}]) but x ({lay}) has "
                         f"{x.shape[-1]}; a depthwise kernel is {klay} with C = x.shape[-1] and M the "
                         f"depth multiplier.")
    taps = math.prod(w.shape[:-2])
    if taps > _dk.TMAX:
        raise ValueError(f"{fn}: w has {taps} taps ({'x'.join(map(str, w.shape[:-2]))}); the depthwise "
                         f"kernels take at most {_dk.TMAX}. Use fastnn.kernels.conv with groups instead.")
    return x, w


def _geometry_2d(x, w, strides, padding, dilation, fn):
    try:      # the same layer calls with the same arguments every step: remember the answer
        return _geometry_2d_cached(x.shape[1:3], w.shape[:2], strides, padding, dilation, fn)
    except TypeError:     # unhashable (lists): compute
        return _geometry_2d_cached.__wrapped__(x.shape[1:3], w.shape[:2], strides, padding, dilation, fn)


@functools.lru_cache(maxsize=256)
def _geometry_2d_cached(spatial, kernel, strides, padding, dilation, fn):
    strides = as_tuple(strides, 2, "strides", fn)
    dilation = as_tuple(dilation, 2, "dilation", fn)
    if isinstance(padding, str) and padding.lower() == "causal":
        raise ValueError(f"{fn}: padding 'causal' is only defined for depthwise_conv1d; use 'valid', "
                         f"'same' or ((top, bottom), (left, right)).")
    if not isinstance(padding, str) and (not isinstance(padding, (tuple, list)) or len(padding) != 2
                                         or not all(isinstance(p, (tuple, list)) for p in padding)):
        raise ValueError(f"{fn}: padding must be 'valid', 'same' or ((top, bottom), (left, right)); "
                         f"received {padding!r}.")
    (pt, pb, oh), (pl, pr, ow) = conv_geometry(spatial, kernel, strides, dilation, padding, fn,
                                               window="w", data="x")
    _conv._check_pad_size((pt, pb, pl, pr), padding, fn)
    return strides, dilation, (pt, pl), (oh, ow)


def _geometry_1d(x, w, stride, padding, dilation, fn):
    stride = as_tuple(stride, 1, "stride", fn)[0]
    dilation = as_tuple(dilation, 1, "dilation", fn)[0]
    if not isinstance(padding, (str, tuple, list)):
        raise ValueError(f"{fn}: padding must be 'valid', 'same', 'causal' or (left, right); "
                         f"received {padding!r}.")
    left, right, ol = resolve_padding(x.shape[1], w.shape[0], stride, dilation, padding, "padding", fn,
                                      window="w", data="x")
    _conv._check_pad_size((left, right), padding, fn)
    return (1, stride), (1, dilation), (0, left), (1, ol)


def _epilogue(activation, act_params, fn):
    """(relu in registers, or the activation to apply after) of activation=."""
    from fastnn.kernels import activation as A

    if activation == "linear" and not act_params:
        return False, None
    kind, _, axis = A.resolve(activation, act_params, f"{fn}(activation={activation!r})")
    if kind == 0:
        return False, None
    if isinstance(activation, str) and activation.lower() == "relu" and not act_params:
        return True, None
    return False, (activation, act_params)


# ---------------------------------------------------------------- compute (validated NHWC)

def _forward(x, w, b, strides, dilation, pads, out, relu):
    n, h, wd, c = x.shape
    kh, kw, _, m = w.shape
    oh, ow = out.shape[1:3]
    if out.size == 0:
        return
    ce = c * m
    nt = _threads(float(out.size) * kh * kw)
    scratch = _workspace("dw_rows", nt * kh * wd * ce if m > 1 else 1)
    _dk.forward(x, w.reshape(kh * kw, ce), b, _zeros(wd * ce), kh, kw, *strides, *dilation, *pads,
                out, relu, scratch, _isa(), nt)


def _affine_epilogue(out, act, affine):
    """In place (y - center)*scale + shift, then act ((kind, smax, params) or None), over
    row chunks of out viewed as (rows, C*M) of ~conv.EPILOGUE_BYTES (read from cache; a grid by
    shape, and elementwise: the bits follow no split), the chunks spread over the threads."""
    ce = out.shape[-1]
    y2 = out.reshape(-1, ce)
    per = max(1, _conv.EPILOGUE_BYTES // (4 * ce))
    bounds = list(range(0, y2.shape[0], per)) + [y2.shape[0]]

    def work(i, nthreads):
        _conv._apply_epilogue(y2[bounds[i]:bounds[i + 1]], act, nthreads, affine)

    _conv._run_items(work, len(bounds) - 1, 4.0 * y2.size)


def _backward(x, w, dy, strides, dilation, pads, dx, dw, db):
    n, h, wd, c = x.shape
    kh, kw, _, m = w.shape
    oh, ow = dy.shape[1:3]
    ce = c * m
    w2 = w.reshape(kh * kw, ce)
    macs = float(dy.size) * kh * kw
    nt = _threads(macs)
    isa = _isa()
    if dx is not None and dx.size:
        if dy.size == 0:
            dx.fill(0.0)
        else:
            scratch = _workspace("dw_dx", nt * wd * ce if m > 1 else 1)
            wflip = None
            if kh == 3 and kw == 3 and strides[1] == 1 and dilation[1] == 1:   # 3x3 rows as forwards
                wflip = _workspace("dw_wflip", 9 * ce).reshape(9, ce)
                np.copyto(wflip.reshape(3, 3, ce), w2.reshape(3, 3, ce)[:, ::-1])
            _dk.backward_data(dy, w2, wflip, kh, kw, *strides, *dilation, *pads, dx, scratch, isa, nt)
    if dy.size == 0:
        dw.fill(0.0)
        db.fill(0.0)
        return
    nchunks = chunks(n * oh, ow)
    parts = _workspace("dw_parts", nchunks * (kh * kw + 1) * ce, np.float64).reshape(nchunks, -1)
    scratch = _workspace("dw_wscratch", nt * _dk.weights_scratch(kh, kw, wd, c, m))
    _dk.backward_weights(x, dy, _zeros(wd * ce), kh, kw, *strides, *dilation, *pads, parts,
                         dw.reshape(kh * kw, ce), db, scratch, isa, nt)


# ---------------------------------------------------------------- public API

def depthwise_conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, out=None,
                     activation="linear", affine=None, **act_params):
    """Depthwise 2-D convolution (Keras DepthwiseConv2D) of NHWC float32 x with w (KH, KW, C, M).

    x (N, H, W, C), w (KH, KW, C, M), b (C*M,) or None -> y (N, OH, OW, C*M) float32, output
    channel c*M + m from input channel c. strides, dilation: int or (h, w) pair, >= 1.
    padding: "valid", "same" or ((top, bottom), (left, right)). out: optional C-contiguous
    writeable float32 buffer of y's shape, filled and returned. activation: any name
    fastnn.kernels.activation.apply accepts; a plain ReLU is applied in registers, the others
    in a pass over y afterwards. affine=(center, scale, shift), each (C*M,) float32: the
    per-channel (y - center)*scale + shift of a following inference batch norm (as conv2d's
    affine=, from norm.inference_fold), applied before the activation in one pass over chunks
    of y: bit-identical to batch_norm_inference and the activation after the plain conv.
    """
    fn = "depthwise_conv2d"
    x, w = _check(x, w, fn, 2)
    ce = w.shape[2] * w.shape[3]
    if b is not None:
        b = check_array(b, "b", fn, ndim=1, shape=(ce,))
    affine = _conv._check_affine(affine, ce, fn)
    strides, dilation, pads, (oh, ow) = _geometry_2d(x, w, strides, padding, dilation, fn)
    relu, after = _epilogue(activation, act_params, fn)
    out = prepare_out(out, (x.shape[0], oh, ow, ce), "out", fn)
    _conv._no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)]
                      + [(f"affine[{i}]", a) for i, a in enumerate(affine or ())], fn)
    if affine is not None:
        _forward(x, w, b, strides, dilation, pads, out, False)
        _affine_epilogue(out, _conv._epilogue(activation, act_params, fn), affine)
        return out
    _forward(x, w, b, strides, dilation, pads, out, relu)
    if after is not None:
        from fastnn.kernels import activation as A

        A.apply(after[0], out, out=out, **after[1])
    return out


def _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db, views):
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_dx must be True or False; received {need_dx!r}.")
    ce = w.shape[-2] * w.shape[-1]
    y_shape = (x.shape[0], *out_hw, ce) if views is None else (x.shape[0], out_hw[1], ce)
    dy = check_array(dy, "dy", fn, ndim=len(y_shape))
    if dy.shape != y_shape:
        raise ValueError(f"{fn}: dy must have the forward output's shape {y_shape}; received shape "
                         f"{dy.shape}. Pass the same x, w, strides, padding and dilation as the forward call.")
    dx = prepare_out(dx, x.shape, "dx", fn) if need_dx else None
    dw = prepare_out(dw, w.shape, "dw", fn)
    db = prepare_out(db, (ce,), "db", fn)
    _conv._no_overlap([("dx", dx), ("dw", dw), ("db", db)],
                      [("x", x), ("w", w), ("dy", dy), ("dx", dx), ("dw", dw), ("db", db)], fn)
    if views is None:
        _backward(x, w, dy, strides, dilation, pads, dx, dw, db)
    else:
        _backward(x[:, None], w[None], dy[:, None], strides, dilation, pads,
                  None if dx is None else dx[:, None], dw[None], db)
    return dx, dw, db


def depthwise_conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *,
                              need_dx=True, dx=None, dw=None, db=None):
    """Gradients of depthwise_conv2d (NHWC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, H, W, C), w (KH, KW, C, M), dy (N, OH, OW, C*M) -> (dx (N, H, W, C) or None,
    dw (KH, KW, C, M), db (C*M,)). Same strides / padding / dilation as the forward call.
    need_dx=False skips dx (a first layer) and returns None for it. dx, dw, db: optional
    C-contiguous writeable float32 buffers, overwritten (not accumulated) and returned.
    """
    fn = "depthwise_conv2d_backward"
    x, w = _check(x, w, fn, 2)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db, None)


def depthwise_conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, out=None,
                     activation="linear", **act_params):
    """Depthwise 1-D convolution (Keras DepthwiseConv1D) of NLC float32 x with w (K, C, M).

    x (N, L, C), w (K, C, M), b (C*M,) or None -> y (N, OL, C*M). stride, dilation: int >= 1.
    padding: "valid", "same", "causal" or (left, right). out, activation: as depthwise_conv2d.
    """
    fn = "depthwise_conv1d"
    x, w = _check(x, w, fn, 1)
    ce = w.shape[1] * w.shape[2]
    if b is not None:
        b = check_array(b, "b", fn, ndim=1, shape=(ce,))
    strides, dilation, pads, (_, ol) = _geometry_1d(x, w, stride, padding, dilation, fn)
    relu, after = _epilogue(activation, act_params, fn)
    out = prepare_out(out, (x.shape[0], ol, ce), "out", fn)
    _conv._no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    _forward(x[:, None], w[None], b, strides, dilation, pads, out[:, None], relu)
    if after is not None:
        from fastnn.kernels import activation as A

        A.apply(after[0], out, out=out, **after[1])
    return out


def depthwise_conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True,
                              dx=None, dw=None, db=None):
    """Gradients of depthwise_conv1d (NLC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, L, C), w (K, C, M), dy (N, OL, C*M) -> (dx (N, L, C) or None, dw (K, C, M),
    db (C*M,)). Buffers as depthwise_conv2d_backward.
    """
    fn = "depthwise_conv1d_backward"
    x, w = _check(x, w, fn, 1)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db, True)
