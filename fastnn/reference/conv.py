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
    if isinstance(padding, str):
        padding = padding.lower()        # Keras takes "SAME" too
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
    return col.reshape(n * oh * ow, kh_size * kw_size * c)


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


def _grouped(x, w, groups):
    """The (x, w) channel slices of each group: x[..., C/G channels], w[..., F/G filters]."""
    cg, fg = x.shape[-1] // groups, w.shape[-1] // groups
    return [(x[..., g * cg:(g + 1) * cg], w[..., g * fg:(g + 1) * fg]) for g in range(groups)]


def conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, activation="linear",
           affine=None, pool=None, groups=1, **act_params):
    """2-D convolution (cross-correlation) of NHWC x with w (KH, KW, C / groups, F) -> (N, OH, OW, F).

    groups G: group g convolves input channels [g*C/G, (g+1)*C/G) with filters [g*F/G,
    (g+1)*F/G) (one im2col product per group, concatenated along the channels).
    The kernel's epilogues, one after the other: affine (center, scale, shift) -> y = (y -
    center)*scale + shift, then the activation, then pool=(2, 2) a 2x2 stride-2 max pool.
    """
    strides, dilation, geo = _pads_2d(x, w, strides, padding, dilation)
    kh, kw, _, f = w.shape
    parts = []
    for xg, wg in _grouped(x, w, groups):
        col = im2col(xg, kh, kw, strides, dilation, geo)
        parts.append(col @ wg.reshape(-1, wg.shape[-1]))
    y = np.concatenate(parts, axis=1)
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


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *, need_dx=True, groups=1):
    """Gradients of conv2d w.r.t. x (N,H,W,C), w (KH,KW,C/G,F) and b (F,) given dy (N,OH,OW,F)."""
    strides, dilation, geo = _pads_2d(x, w, strides, padding, dilation)
    kh, kw, _, f = w.shape
    fg = f // groups
    dxs, dws = [], []
    for g, (xg, wg) in enumerate(_grouped(x, w, groups)):
        dy2 = dy[..., g * fg:(g + 1) * fg].reshape(-1, fg)
        col = im2col(xg, kh, kw, strides, dilation, geo)
        dws.append((col.T @ dy2).reshape(wg.shape))
        if need_dx:
            dcol = dy2 @ wg.reshape(-1, fg).T
            dxs.append(col2im(dcol, xg.shape, kh, kw, strides, dilation, geo))
    db = dy.reshape(-1, f).sum(axis=0)
    dx = np.concatenate(dxs, axis=-1) if need_dx else None
    return dx, np.concatenate(dws, axis=-1), db


def _as_2d(x, w, stride, padding, dilation):
    """The 1-D problem as a 2-D one of height 1, with the padding resolved (causal included)."""
    stride, dilation = _tuple(stride, 1)[0], _tuple(dilation, 1)[0]
    before, after, _ = _pads(x.shape[1], w.shape[0], stride, dilation, padding)
    return x[:, None], w[None], (1, stride), ((0, 0), (before, after)), (1, dilation)


def conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, groups=1):
    """1-D convolution of NLC x with w (K, C / groups, F) -> (N, OL, F); padding may be "causal"."""
    x4, w4, s, p, d = _as_2d(x, w, stride, padding, dilation)
    return conv2d(x4, w4, b, s, p, d, groups=groups)[:, 0]


def conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True, groups=1):
    """Gradients of conv1d w.r.t. x (N,L,C), w (K,C/G,F) and b (F,) given dy (N,OL,F)."""
    x4, w4, s, p, d = _as_2d(x, w, stride, padding, dilation)
    dx, dw, db = conv2d_backward(x4, w4, dy[:, None], s, p, d, need_dx=need_dx, groups=groups)
    return (None if dx is None else dx[:, 0]), dw[0], db


# ---- transposed convolution, written as Keras describes it (keras:backend/common/
# backend_utils.py): every input pixel scatters x[i] * w[k] to position i*s + k*d of the full
# output ((n - 1)*s + k_eff long), which is then cropped (or zero-extended) on each side.

def _transpose_crops(n, k, s, d, padding, output_padding):
    """(crop_left, crop_right) of one axis: Keras's JAX padding (left_pad, right_pad) turned into
    crops of the full output, (k_eff - 1) - pad on each side."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        op = max(k_eff, s) - k_eff if output_padding is None else output_padding
        left, right = k_eff - 1, k_eff - 1 + op
    else:
        pad_len = s + k_eff - 2 if output_padding is None else k_eff + k_eff % 2 - 2 + output_padding
        left = min(pad_len // 2 + pad_len % 2, k_eff - 1)
        right = pad_len - left
    return k_eff - 1 - left, k_eff - 1 - right


def _transpose_setup(x, w, strides, padding, output_padding, dilation):
    """(the full output's (H, W), the per-axis crops, the per-offset slices of the full output
    that input pixels (h, w) land on) of a transposed convolution."""
    strides = _tuple(strides, 2)
    dilation = _tuple(dilation, 2)
    ops = output_padding if isinstance(output_padding, (tuple, list)) else (output_padding,) * 2
    (_, h, wd, _), (kh_size, kw_size) = x.shape, w.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation
    full = ((h - 1) * sh + (kh_size - 1) * dh + 1, (wd - 1) * sw + (kw_size - 1) * dw + 1)
    crops = [_transpose_crops(size, k, s, d, padding, op)
             for size, k, s, d, op in zip((h, wd), (kh_size, kw_size), strides, dilation, ops)]
    taps = {(kh, kw): (slice(None), slice(kh * dh, kh * dh + (h - 1) * sh + 1, sh),
                       slice(kw * dw, kw * dw + (wd - 1) * sw + 1, sw))
            for kh in range(kh_size) for kw in range(kw_size)}
    return full, crops, taps


def conv2d_transpose(x, w, b=None, strides=(1, 1), padding="valid", output_padding=None, dilation=(1, 1), *,
                     activation="linear", **act_params):
    """Transposed convolution of NHWC x with w (KH, KW, F, C) -> (N, OH, OW, F)."""
    (fh, fw), crops, taps = _transpose_setup(x, w, strides, padding, output_padding, dilation)
    full = np.zeros((x.shape[0], fh, fw, w.shape[2]), np.result_type(x, w))
    for (kh, kw), s in taps.items():
        full[s] += x @ w[kh, kw].T
    for axis, (left, right) in zip((1, 2), crops):      # a negative crop appends zeros
        pad = [(0, 0)] * 4
        pad[axis] = (0, max(-right, 0))
        full = np.pad(full, pad)
        end = full.shape[axis] - max(right, 0)
        full = full[:, left:end] if axis == 1 else full[:, :, left:end]
    y = full
    if b is not None:
        y = y + b
    if activation != "linear" or act_params:
        from fastnn.reference import activation as A

        y = A.apply(activation, y, **act_params)
    return y


def conv2d_transpose_backward(x, w, dy, strides=(1, 1), padding="valid", output_padding=None,
                              dilation=(1, 1), *, need_dx=True):
    """Gradients of conv2d_transpose w.r.t. x (N,H,W,C), w (KH,KW,F,C), b (F,) given dy (N,OH,OW,F):
    the transposed scatter's adjoint, gathered back per filter offset."""
    (fh, fw), crops, taps = _transpose_setup(x, w, strides, padding, output_padding, dilation)
    f = w.shape[2]
    dfull = np.zeros((x.shape[0], fh + max(-crops[0][1], 0), fw + max(-crops[1][1], 0), f), dy.dtype)
    dfull[:, crops[0][0]:crops[0][0] + dy.shape[1], crops[1][0]:crops[1][0] + dy.shape[2]] = dy
    dx = np.zeros(x.shape, np.result_type(dy, w))
    dwt = np.zeros(w.shape, np.result_type(x, dy))
    for (kh, kw), s in taps.items():
        d = dfull[s]
        dx += d @ w[kh, kw]
        dwt[kh, kw] = np.einsum("nhwf,nhwc->fc", d, x)
    return (dx if need_dx else None), dwt, dy.reshape(-1, f).sum(axis=0)


def conv1d_transpose(x, w, b=None, strides=1, padding="valid", output_padding=None, dilation=1, *,
                     activation="linear", **act_params):
    """Transposed 1-D convolution of NLC x with w (K, F, C) -> (N, OL, F)."""
    op = output_padding[0] if isinstance(output_padding, (tuple, list)) else output_padding
    s = _tuple(strides, 1)[0]
    d = _tuple(dilation, 1)[0]
    return conv2d_transpose(x[:, None], w[None], b, (1, s), padding, (0, op), (1, d), activation=activation,
                            **act_params)[:, 0]


def conv1d_transpose_backward(x, w, dy, strides=1, padding="valid", output_padding=None, dilation=1, *,
                              need_dx=True):
    """Gradients of conv1d_transpose w.r.t. x (N,L,C), w (K,F,C), b (F,) given dy (N,OL,F)."""
    op = output_padding[0] if isinstance(output_padding, (tuple, list)) else output_padding
    s = _tuple(strides, 1)[0]
    d = _tuple(dilation, 1)[0]
    dx, dw, db = conv2d_transpose_backward(x[:, None], w[None], dy[:, None], (1, s), padding, (0, op), (1, d),
                                           need_dx=need_dx)
    return (None if dx is None else dx[:, 0]), dw[0], db
