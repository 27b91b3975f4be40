"""Stand-ins for pieces other branches deliver (kernels and Keras namespaces), for tests only.

Installed into sys.modules by the conftests of tests/layers and tests/models ONLY for modules
that cannot be imported yet; once the real module lands in main it is used instead. Plain,
documented NumPy versions of the docs/internals.md contracts.
"""
from __future__ import annotations

import importlib
import sys
import types

import numpy as np

F32 = np.float32
EPS = 1e-7


def _mod(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    m.__fastnn_fallback__ = True
    return m


# ---------------------------------------------------------------- kernels.activation
def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _act_apply(name, x, *, out=None, **p):
    if name == "relu" and not p:   # float32 fast path (the MNIST convnet)
        return np.maximum(x, 0, out=np.empty(x.shape, F32) if out is None else out)
    x64 = x.astype(np.float64)
    if name == "linear":
        y = x64
    elif name == "relu":
        ns, mv, th = p.get("negative_slope", 0.0), p.get("max_value"), p.get("threshold", 0.0)
        y = np.where(x64 >= th, x64, ns * (x64 - th))
        if th == 0 and ns == 0:
            y = np.maximum(x64, 0)
        if mv is not None:
            y = np.minimum(y, mv)
    elif name == "leaky_relu":
        y = np.where(x64 >= 0, x64, p.get("negative_slope", 0.2) * x64)
    elif name == "elu":
        y = np.where(x64 > 0, x64, p.get("alpha", 1.0) * np.expm1(x64))
    elif name == "sigmoid":
        y = _sig(x64)
    elif name == "tanh":
        y = np.tanh(x64)
    elif name == "softplus":
        y = np.logaddexp(x64, 0)
    elif name == "softmax":
        ax = p.get("axis", -1)
        e = np.exp(x64 - x64.max(axis=ax, keepdims=True))
        y = e / e.sum(axis=ax, keepdims=True)
    elif name == "selu":
        a, s = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        y = s * np.where(x64 > 0, x64, a * np.expm1(x64))
    elif name in ("silu", "swish"):
        y = x64 * _sig(x64)
    elif name == "softsign":
        y = x64 / (1 + np.abs(x64))
    else:
        raise ValueError(f"activation.apply: unknown activation {name!r}")
    if out is None:
        out = np.empty(x.shape, F32)
    out[...] = y
    return out


def _act_grad(name, x, y, dy, *, out=None, **p):
    if name == "relu" and not p:
        out = np.empty(x.shape, F32) if out is None else out
        np.multiply(dy, x > 0, out=out)
        return out
    x64, y64, d = x.astype(np.float64), y.astype(np.float64), dy.astype(np.float64)
    if name == "linear":
        g = d
    elif name == "relu":
        ns, mv, th = p.get("negative_slope", 0.0), p.get("max_value"), p.get("threshold", 0.0)
        g = d * np.where(x64 > th, 1.0, ns)
        if mv is not None:
            g = np.where(x64 >= mv, 0.0, g)
    elif name == "leaky_relu":
        g = d * np.where(x64 > 0, 1.0, p.get("negative_slope", 0.2))
    elif name == "elu":
        g = d * np.where(x64 > 0, 1.0, p.get("alpha", 1.0) * np.exp(x64))
    elif name == "sigmoid":
        g = d * y64 * (1 - y64)
    elif name == "tanh":
        g = d * (1 - y64 * y64)
    elif name == "softplus":
        g = d * _sig(x64)
    elif name == "softmax":
        ax = p.get("axis", -1)
        g = y64 * (d - (d * y64).sum(axis=ax, keepdims=True))
    elif name == "selu":
        a, s = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        g = d * s * np.where(x64 > 0, 1.0, a * np.exp(x64))
    elif name in ("silu", "swish"):
        sg = _sig(x64)
        g = d * (sg + x64 * sg * (1 - sg))
    elif name == "softsign":
        g = d / (1 + np.abs(x64)) ** 2
    else:
        raise ValueError(name)
    if out is None:
        out = np.empty(x.shape, F32)
    out[...] = g
    return out


NAMES = ("linear", "relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "softplus", "softsign", "softmax",
         "silu", "swish")


# ---------------------------------------------------------------- kernels.dense
def _dense(x, w, b=None, activation="linear", *, out=None, **p):
    z = x @ w
    if b is not None:
        z = z + b
    return _act_apply(activation, z.astype(F32), out=out, **p)


def _dense_backward(x, w, dy, *, need_dx=True, dx=None, dw=None, db=None):
    gw = x.T @ dy
    gb = dy.sum(0)
    if dw is None:
        dw = np.empty(w.shape, F32)
    dw[...] = gw
    if db is None:
        db = np.empty(w.shape[1], F32)
    db[...] = gb
    if need_dx:
        if dx is None:
            dx = np.empty(x.shape, F32)
        dx[...] = dy @ w.T
    else:
        dx = None
    return dx, dw, db


# ---------------------------------------------------------------- kernels.conv (naive)
def _pads(n, k, s, d, padding):
    from fastnn.kernels._geometry import resolve_padding
    return resolve_padding(n, k, s, d, padding, "padding", "conv")


def _im2col(x, kh, kw, sh, sw, dh, dw_, padding):
    n, h, w, c = x.shape
    pt, pb, oh = _pads(h, kh, sh, dh, padding if isinstance(padding, str) else padding[0])
    pl, pr, ow = _pads(w, kw, sw, dw_, padding if isinstance(padding, str) else padding[1])
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    col = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, :, i, j, :] = xp[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw_:j * dw_ + sw * (ow - 1) + 1:sw, :]
    return col.reshape(n * oh * ow, kh * kw * c), (oh, ow, pt, pl, xp.shape)


def _conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, out=None):
    kh, kw, c, f = w.shape
    col, (oh, ow, *_ ) = _im2col(x, kh, kw, *strides, *dilation, padding)
    y = (col @ w.reshape(-1, f)).reshape(x.shape[0], oh, ow, f)
    if b is not None:
        y = y + b
    if out is None:
        out = np.empty(y.shape, F32)
    out[...] = y
    return out


def _conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *, need_dx=True, dx=None,
                     dw=None, db=None):
    kh, kw, c, f = w.shape
    col, (oh, ow, pt, pl, pshape) = _im2col(x, kh, kw, *strides, *dilation, padding)
    d2 = dy.reshape(-1, f)
    dw = np.empty(w.shape, F32) if dw is None else dw
    dw[...] = (col.T @ d2).reshape(w.shape)
    db = np.empty(f, F32) if db is None else db
    db[...] = d2.sum(0)
    if not need_dx:
        return None, dw, db
    dcol = (d2 @ w.reshape(-1, f).T).reshape(x.shape[0], oh, ow, kh, kw, c)
    dxp = np.zeros(pshape, np.float64)
    sh, sw = strides
    dh, dwl = dilation
    for i in range(kh):
        for j in range(kw):
            dxp[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dwl:j * dwl + sw * (ow - 1) + 1:sw, :] += dcol[:, :, :, i, j, :]
    dx = np.empty(x.shape, F32) if dx is None else dx
    dx[...] = dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :]
    return dx, dw, db


def _conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, out=None):
    if padding == "causal":
        x = np.pad(x, ((0, 0), ((w.shape[0] - 1) * dilation, 0), (0, 0)))
        padding = "valid"
    y = _conv2d(x[:, None], w[None], b, (1, stride), padding if isinstance(padding, str) else ((0, 0), padding),
                (1, dilation))[:, 0]
    if out is None:
        out = np.empty(y.shape, F32)
    out[...] = y
    return out


def _conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True, dx=None, dw=None, db=None):
    lpad = 0
    if padding == "causal":
        lpad = (w.shape[0] - 1) * dilation
        x = np.pad(x, ((0, 0), (lpad, 0), (0, 0)))
        padding = "valid"
    gx, gw, gb = _conv2d_backward(x[:, None], w[None], dy[:, None], (1, stride),
                                  padding if isinstance(padding, str) else ((0, 0), padding), (1, dilation),
                                  need_dx=need_dx)
    dw = np.empty(w.shape, F32) if dw is None else dw
    dw[...] = gw[0]
    db = np.empty(w.shape[-1], F32) if db is None else db
    db[...] = gb
    if not need_dx:
        return None, dw, db
    dx = np.empty((x.shape[0], x.shape[1] - lpad, x.shape[2]), F32) if dx is None else dx
    dx[...] = gx[:, 0, lpad:]
    return dx, dw, db


# ---------------------------------------------------------------- kernels.pool (naive)
def _pool_windows(x, pool, strides, padding, fill):
    n, h, w, c = x.shape
    strides = pool if strides is None else strides
    pt, pb, oh = _pads(h, pool[0], strides[0], 1, padding)
    pl, pr, ow = _pads(w, pool[1], strides[1], 1, padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    win = np.empty((n, oh, ow, pool[0] * pool[1], c))
    for i in range(pool[0]):
        for j in range(pool[1]):
            win[:, :, :, i * pool[1] + j] = xp[:, i:i + strides[0] * (oh - 1) + 1:strides[0],
                                               j:j + strides[1] * (ow - 1) + 1:strides[1]]
    return win, (pt, pl, oh, ow, strides)


def _max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid", *, out=None, argmax=None):
    pool_size = tuple(pool_size)
    win, (pt, pl, oh, ow, st) = _pool_windows(x, pool_size, strides, padding, -np.inf)
    k = win.argmax(axis=3)
    y = win.max(axis=3)
    n, h, w, c = x.shape
    ki, kj = k // pool_size[1], k % pool_size[1]
    rows = np.arange(oh)[None, :, None, None] * st[0] + ki - pt
    cols = np.arange(ow)[None, None, :, None] * st[1] + kj - pl
    am = (rows * w + cols) * c + np.arange(c)
    out = np.empty(y.shape, F32) if out is None else out
    out[...] = y
    argmax = np.empty(y.shape, np.int32) if argmax is None else argmax
    argmax[...] = am
    return out, argmax


def _max_pool2d_backward(dy, argmax, x_shape, *, dx=None):
    n = x_shape[0]
    flat = np.zeros((n, int(np.prod(x_shape[1:]))))
    for i in range(n):
        np.add.at(flat[i], argmax[i].ravel(), dy[i].ravel())
    dx = np.empty(x_shape, F32) if dx is None else dx
    dx[...] = flat.reshape(x_shape)
    return dx


def _avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid", *, out=None):
    pool_size = tuple(pool_size)
    win, _ = _pool_windows(x, pool_size, strides, padding, np.nan)
    y = np.nanmean(win, axis=3)
    out = np.empty(y.shape, F32) if out is None else out
    out[...] = y
    return out


def _avg_pool2d_backward(dy, x_shape, pool_size=(2, 2), strides=None, padding="valid", *, dx=None):
    pool_size = tuple(pool_size)
    n, h, w, c = x_shape
    ones = np.ones(x_shape)
    win, (pt, pl, oh, ow, st) = _pool_windows(ones, pool_size, strides, padding, np.nan)
    cnt = np.nansum(win, axis=3)
    g = dy / cnt
    acc = np.zeros((n, h + 2 * pool_size[0] + pt, w + 2 * pool_size[1] + pl, c))
    for i in range(pool_size[0]):
        for j in range(pool_size[1]):
            acc[:, i:i + st[0] * (oh - 1) + 1:st[0], j:j + st[1] * (ow - 1) + 1:st[1]] += g
    dx = np.empty(x_shape, F32) if dx is None else dx
    dx[...] = acc[:, pt:pt + h, pl:pl + w]
    return dx


def _mp1(x, pool_size=2, strides=None, padding="valid", *, out=None, argmax=None):
    y, am = _max_pool2d(x[:, None], (1, pool_size), (1, strides or pool_size), padding)
    out = np.empty(y[:, 0].shape, F32) if out is None else out
    out[...] = y[:, 0]
    argmax = np.empty(out.shape, np.int32) if argmax is None else argmax
    argmax[...] = am[:, 0]
    return out, argmax


def _mp1b(dy, argmax, x_shape, *, dx=None):
    g = _max_pool2d_backward(dy[:, None], argmax[:, None], (x_shape[0], 1, *x_shape[1:]))
    dx = np.empty(x_shape, F32) if dx is None else dx
    dx[...] = g[:, 0]
    return dx


def _ap1(x, pool_size=2, strides=None, padding="valid", *, out=None):
    y = _avg_pool2d(x[:, None], (1, pool_size), (1, strides or pool_size), padding)[:, 0]
    out = np.empty(y.shape, F32) if out is None else out
    out[...] = y
    return out


def _ap1b(dy, x_shape, pool_size=2, strides=None, padding="valid", *, dx=None):
    g = _avg_pool2d_backward(dy[:, None], (x_shape[0], 1, *x_shape[1:]), (1, pool_size), (1, strides or pool_size),
                             padding)[:, 0]
    dx = np.empty(x_shape, F32) if dx is None else dx
    dx[...] = g
    return dx


def _gmax(x, *, out=None, argmax=None):
    n, c = x.shape[0], x.shape[-1]
    flat = x.reshape(n, -1, c)
    k = flat.argmax(axis=1)
    out = np.empty((n, c), F32) if out is None else out
    out[...] = flat.max(axis=1)
    argmax = np.empty((n, c), np.int32) if argmax is None else argmax
    argmax[...] = k * c + np.arange(c)
    return out, argmax


def _gmax_b(dy, argmax, x_shape, *, dx=None):
    n = x_shape[0]
    flat = np.zeros((n, int(np.prod(x_shape[1:]))), F32)
    for i in range(n):
        flat[i, argmax[i]] = dy[i]
    dx = np.empty(x_shape, F32) if dx is None else dx
    dx[...] = flat.reshape(x_shape)
    return dx


def _gavg(x, *, out=None):
    n, c = x.shape[0], x.shape[-1]
    out = np.empty((n, c), F32) if out is None else out
    out[...] = x.reshape(n, -1, c).mean(axis=1)
    return out


def _gavg_b(dy, x_shape, *, dx=None):
    n, c = x_shape[0], x_shape[-1]
    m = int(np.prod(x_shape[1:-1]))
    dx = np.empty(x_shape, F32) if dx is None else dx
    dx.reshape(n, m, c)[...] = (dy / m)[:, None, :]
    return dx


# ---------------------------------------------------------------- kernels.norm
def _bn_train(x, gamma, beta, mm, mv, momentum=0.99, epsilon=1e-3, *, out=None, mean=None, invstd=None):
    c = x.shape[-1]
    x2 = x.reshape(-1, c).astype(np.float64)
    m = x2.mean(0)
    v = (x2 * x2).mean(0) - m * m
    v = np.maximum(v, 0)
    inv = 1 / np.sqrt(v + epsilon)
    y = (x2 - m) * inv
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    mm[...] = mm * momentum + m * (1 - momentum)
    mv[...] = mv * momentum + v * (1 - momentum)
    out = np.empty(x.shape, F32) if out is None else out
    out[...] = y.reshape(x.shape)
    mean = np.empty(c, F32) if mean is None else mean
    mean[...] = m
    invstd = np.empty(c, F32) if invstd is None else invstd
    invstd[...] = inv
    return out, mean, invstd


def _bn_inf(x, gamma, beta, mm, mv, epsilon=1e-3, *, out=None):
    inv = 1 / np.sqrt(mv.astype(np.float64) + epsilon)
    y = (x - mm) * inv
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    out = np.empty(x.shape, F32) if out is None else out
    out[...] = y
    return out


def _bn_back(dy, x, gamma, mean, invstd, *, dx=None, dgamma=None, dbeta=None):
    c = x.shape[-1]
    d = dy.reshape(-1, c).astype(np.float64)
    xh = (x.reshape(-1, c) - mean.astype(np.float64)) * invstd
    n = d.shape[0]
    g = 1.0 if gamma is None else gamma.astype(np.float64)
    db_ = d.sum(0)
    dg_ = (d * xh).sum(0)
    dxh = d * g
    gx = invstd * (dxh - dxh.mean(0) - xh * (dxh * xh).mean(0))
    dx = np.empty(x.shape, F32) if dx is None else dx
    dx[...] = gx.reshape(x.shape)
    dgamma = np.empty(c, F32) if dgamma is None else dgamma
    dgamma[...] = dg_
    dbeta = np.empty(c, F32) if dbeta is None else dbeta
    dbeta[...] = db_
    del n
    return dx, dgamma, dbeta


# ---------------------------------------------------------------- kernels.dropout
def _dropout(x, rate, seed, *, out=None, mask=None):
    rng = np.random.default_rng(seed)
    m = (rng.random(x.shape) >= rate).astype(np.uint8)
    out = np.empty(x.shape, F32) if out is None else out
    out[...] = x * m / (1 - rate)
    mask = np.empty(x.shape, np.uint8) if mask is None else mask
    mask[...] = m
    return out, mask


def _dropout_b(dy, mask, rate, *, dx=None):
    dx = np.empty(dy.shape, F32) if dx is None else dx
    dx[...] = dy * mask / (1 - rate)
    return dx


# ---------------------------------------------------------------- activations namespace
class _Act:
    def __init__(self, name, **params):
        self.name, self.params, self.__name__ = name, params, name

    def __call__(self, x):
        return _act_apply(self.name, np.asarray(x, F32), **self.params)


def _act_get(identifier):
    if identifier is None:
        return _Act("linear")
    if isinstance(identifier, _Act):
        return identifier
    if isinstance(identifier, str):
        if identifier not in NAMES:
            raise ValueError(f"Unknown activation {identifier!r}")
        return _Act(identifier)
    raise ValueError(f"Could not interpret activation identifier: {identifier!r}")


# ---------------------------------------------------------------- losses namespace
class Loss:
    fused_kind = None
    from_logits = False

    def __init__(self, name, per_sample, grad, fused_kind=None):
        self.name, self._ps, self._grad, self.fused_kind = name, per_sample, grad, fused_kind

    def _reduce(self, ps, sw):
        if sw is not None:
            ps = ps * np.asarray(sw, np.float64).reshape(ps.shape[0], *([1] * (ps.ndim - 1)))
        return float(ps.sum() / ps.size), ps.size

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self._reduce(self._ps(np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)), sample_weight)[0]

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        yt, yp = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
        ps = self._ps(yt, yp)
        val, size = self._reduce(ps, sample_weight)
        g = self._grad(yt, yp) / size
        if sample_weight is not None:
            g = g * np.asarray(sample_weight, np.float64).reshape(-1, *([1] * (g.ndim - 1)))
        return val, g.astype(F32)

    def value_and_grad_logits(self, y_true, logits, sample_weight=None):
        z = np.asarray(logits, np.float64)
        if self.fused_kind == "softmax":
            p = np.exp(z - z.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
        else:
            p = _sig(z)
        val = self(y_true, p.astype(F32), sample_weight)
        yt = np.asarray(y_true, np.float64)
        if self.name.startswith("sparse"):
            yt = np.eye(z.shape[-1])[yt.astype(np.int64).reshape(-1)]
        g = (p - yt)
        n = g.shape[0] if self.fused_kind == "softmax" else g.size
        g = g / n
        if sample_weight is not None:
            g = g * np.asarray(sample_weight, np.float64)[:, None]
        return val, g.astype(F32)

    def get_config(self):
        return {"name": self.name}


def _cce(yt, yp):
    yp = yp / yp.sum(-1, keepdims=True)
    return -(yt * np.log(np.clip(yp, EPS, 1 - EPS))).sum(-1)


def _cce_g(yt, yp):
    s = yp.sum(-1, keepdims=True)
    q = yp / s
    inside = (q > EPS) & (q < 1 - EPS)
    gq = -yt / np.clip(q, EPS, 1 - EPS) * inside
    return (gq - (gq * q).sum(-1, keepdims=True)) / s


def _scce(yt, yp):
    k = yp.shape[-1]
    return _cce(np.eye(k)[yt.astype(np.int64).reshape(-1)], yp)


def _scce_g(yt, yp):
    return _cce_g(np.eye(yp.shape[-1])[yt.astype(np.int64).reshape(-1)], yp)


def _bce(yt, yp):
    p = np.clip(yp, EPS, 1 - EPS)
    return -(yt * np.log(p) + (1 - yt) * np.log(1 - p)).mean(-1)


def _bce_g(yt, yp):
    p = np.clip(yp, EPS, 1 - EPS)
    inside = (yp > EPS) & (yp < 1 - EPS)
    return (-(yt / p) + (1 - yt) / (1 - p)) * inside / yp.shape[-1] * yp.shape[-1] / yp.shape[-1]


def _kld(yt, yp):
    a, b = np.clip(yt, EPS, 1), np.clip(yp, EPS, 1)
    return (a * np.log(a / b)).sum(-1)


def _kld_g(yt, yp):
    a, b = np.clip(yt, EPS, 1), np.clip(yp, EPS, 1)
    return -a / b * ((yp > EPS) & (yp < 1))


_LOSSES = {
    "mean_squared_error": (lambda t, p: ((p - t) ** 2).mean(-1), lambda t, p: 2 * (p - t) / p.shape[-1] * p.shape[-1], None),
    "mean_absolute_error": (lambda t, p: np.abs(p - t).mean(-1), lambda t, p: np.sign(p - t), None),
    "categorical_crossentropy": (_cce, _cce_g, "softmax"),
    "sparse_categorical_crossentropy": (_scce, _scce_g, "softmax"),
    "binary_crossentropy": (_bce, _bce_g, "sigmoid"),
    "kl_divergence": (_kld, _kld_g, None),
}
_LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "kld": "kl_divergence",
                 "kullback_leibler_divergence": "kl_divergence"}


def _loss_get(identifier):
    if isinstance(identifier, Loss):
        return identifier
    name = _LOSS_ALIASES.get(identifier, identifier)
    if name not in _LOSSES:
        raise ValueError(f"Unknown loss {identifier!r}")
    ps, g, fk = _LOSSES[name]
    # mean over the last axis: the per-element gradient of mean(-1) divides by K; value_and_grad divides
    # by the size of the per-sample array (N), so per-element grads must carry the 1/K here
    if name in ("mean_squared_error", "mean_absolute_error", "binary_crossentropy"):
        g0 = g
        g = lambda t, p, g0=g0: g0(t, p) / p.shape[-1]  # noqa: E731
    return Loss(name, ps, g, fk)


# ---------------------------------------------------------------- metrics namespace
class _Metric:
    def __init__(self, name, fn):
        self.name, self._fn = name, fn
        self.reset_state()

    def reset_state(self):
        self._sum, self._count = 0.0, 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        v = self._fn(np.asarray(y_true), np.asarray(y_pred, np.float64))
        w = np.ones(v.shape[0]) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self._sum += float((v * w).sum())
        self._count += float(w.sum())

    def result(self):
        return self._sum / self._count if self._count else 0.0


def _acc_fns(kind):
    if kind == "binary":
        return lambda t, p: ((p > 0.5) == t.reshape(p.shape)).reshape(p.shape[0], -1).mean(-1)
    if kind == "sparse":
        return lambda t, p: (p.argmax(-1) == t.reshape(p.shape[0]).astype(np.int64)).astype(np.float64)
    return lambda t, p: (p.argmax(-1) == t.argmax(-1)).astype(np.float64)


def _metric_get(identifier):
    if isinstance(identifier, _Metric):
        return identifier
    if identifier in ("mse", "mean_squared_error"):
        return _Metric(identifier, lambda t, p: ((p - t.reshape(p.shape)) ** 2).mean(-1))
    if identifier in ("mae", "mean_absolute_error"):
        return _Metric(identifier, lambda t, p: np.abs(p - t.reshape(p.shape)).mean(-1))
    if identifier in ("categorical_accuracy", "binary_accuracy", "sparse_categorical_accuracy"):
        return _Metric(identifier, _acc_fns(identifier.split("_")[0]))
    raise ValueError(f"Unknown metric {identifier!r}")


def _metric_resolve(identifier, y_true, y_pred, loss=None):
    if identifier in ("accuracy", "acc"):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if y_pred.shape[-1] == 1:
            kind = "binary"
        elif y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
            kind = "sparse"
        else:
            kind = "categorical"
        return _Metric(identifier, _acc_fns(kind))
    return _metric_get(identifier)


# ---------------------------------------------------------------- initializers, regularizers, constraints
def _init_get(identifier):
    from fastnn import _random

    def fans(shape):
        if len(shape) == 1:
            return shape[0], shape[0]
        rf = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        return shape[-2] * rf, shape[-1] * rf

    if callable(identifier) and not isinstance(identifier, str):
        return identifier
    if identifier == "zeros":
        return lambda shape, dtype="float32": np.zeros(shape, F32)
    if identifier == "ones":
        return lambda shape, dtype="float32": np.ones(shape, F32)
    if identifier in ("glorot_uniform", "he_uniform", "uniform", "random_uniform"):
        def init(shape, dtype="float32"):
            fi, fo = fans(shape)
            lim = {"glorot_uniform": np.sqrt(6 / (fi + fo)), "he_uniform": np.sqrt(6 / fi)}.get(identifier, 0.05)
            return _random.generator().uniform(-lim, lim, shape).astype(F32)
        return init
    if identifier in ("he_normal", "glorot_normal", "random_normal"):
        def init(shape, dtype="float32"):
            fi, fo = fans(shape)
            sd = {"he_normal": np.sqrt(2 / fi), "glorot_normal": np.sqrt(2 / (fi + fo))}.get(identifier, 0.05)
            return (_random.generator().standard_normal(shape) * sd).astype(F32)
        return init
    raise ValueError(f"Unknown initializer {identifier!r}")


class _L1L2:
    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = l1, l2

    def __call__(self, w):
        w = np.asarray(w, np.float64)
        return float(self.l1 * np.abs(w).sum() + self.l2 * (w * w).sum())

    def gradient(self, w):
        return (self.l1 * np.sign(w) + 2 * self.l2 * w).astype(F32)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


def _reg_get(identifier):
    if identifier is None or isinstance(identifier, _L1L2):
        return identifier
    if identifier == "l2":
        return _L1L2(l2=0.01)
    if identifier == "l1":
        return _L1L2(l1=0.01)
    raise ValueError(f"Unknown regularizer {identifier!r}")


def _con_get(identifier):
    if identifier is None or callable(identifier):
        return identifier
    if identifier in ("non_neg", "nonneg"):
        return lambda w: np.maximum(w, 0)
    if identifier == "max_norm":
        def c(w):
            n = np.sqrt((w.astype(np.float64) ** 2).sum(axis=0, keepdims=True))
            return (w * (np.clip(n, 0, 2) / (EPS + n))).astype(F32)
        return c
    raise ValueError(f"Unknown constraint {identifier!r}")


# ---------------------------------------------------------------- optimizers namespace
class Optimizer:
    def __init__(self, name, learning_rate, **hyper):
        if not learning_rate > 0:
            raise ValueError(f"{name}: learning_rate must be > 0; received {learning_rate!r}")
        self.name, self.learning_rate, self.hyper = name, float(learning_rate), hyper
        self.iterations = 0

    def build(self, n, segments):
        self.n = n
        self.slots = {k: np.zeros(n, np.float64) for k in ("m", "v")}

    def apply_flat(self, params, grads):
        t = self.iterations + 1
        lr, g = self.learning_rate, grads.astype(np.float64)
        m, v, h = self.slots["m"], self.slots["v"], self.hyper
        p = params.astype(np.float64)
        if self.name == "sgd":
            mu = h.get("momentum", 0.0)
            if mu:
                m[...] = mu * m - lr * g
                p += (mu * m - lr * g) if h.get("nesterov") else m
            else:
                p -= lr * g
        elif self.name in ("adam", "adamax"):
            b1, b2, eps = h.get("beta_1", 0.9), h.get("beta_2", 0.999), h.get("epsilon", 1e-7)
            m += (g - m) * (1 - b1)
            if self.name == "adam":
                v += (g * g - v) * (1 - b2)
                a = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                p -= a * m / (np.sqrt(v) + eps)
            else:
                v[...] = np.maximum(b2 * v, np.abs(g))
                p -= lr * m / ((1 - b1 ** t) * (v + eps))
        elif self.name == "rmsprop":
            rho, eps = h.get("rho", 0.9), h.get("epsilon", 1e-7)
            v[...] = rho * v + (1 - rho) * g * g
            p -= lr * g / np.sqrt(v + eps)
        params[...] = p
        self.iterations += 1

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate, **self.hyper}

    def variables(self):
        return [np.array(self.iterations, np.int64), self.slots["m"].astype(F32), self.slots["v"].astype(F32)]

    def set_variables(self, vs):
        self.iterations = int(vs[0])
        self.slots["m"][...] = vs[1]
        self.slots["v"][...] = vs[2]


_OPT_DEFAULTS = {"sgd": 0.01, "adam": 0.001, "adamax": 0.001, "rmsprop": 0.001}


def _opt_get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        c = dict(identifier["config"])
        return Optimizer(c.pop("name"), c.pop("learning_rate"), **c)
    if isinstance(identifier, str) and identifier.lower() in _OPT_DEFAULTS:
        return Optimizer(identifier.lower(), _OPT_DEFAULTS[identifier.lower()])
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")


def make_optimizer(name, learning_rate=None, **hyper):
    return Optimizer(name, learning_rate or _OPT_DEFAULTS[name], **hyper)


# ---------------------------------------------------------------- install
def _candidates():
    return {
        "fastnn.kernels.activation": dict(apply=_act_apply, grad=_act_grad, NAMES=NAMES),
        "fastnn.kernels.dense": dict(dense=_dense, dense_backward=_dense_backward),
        "fastnn.kernels.conv": dict(conv2d=_conv2d, conv2d_backward=_conv2d_backward, conv1d=_conv1d,
                                    conv1d_backward=_conv1d_backward),
        "fastnn.kernels.pool": dict(max_pool2d=_max_pool2d, max_pool2d_backward=_max_pool2d_backward,
                                    avg_pool2d=_avg_pool2d, avg_pool2d_backward=_avg_pool2d_backward,
                                    max_pool1d=_mp1, max_pool1d_backward=_mp1b, avg_pool1d=_ap1,
                                    avg_pool1d_backward=_ap1b, global_max_pool2d=_gmax,
                                    global_max_pool2d_backward=_gmax_b, global_max_pool1d=_gmax,
                                    global_max_pool1d_backward=_gmax_b, global_avg_pool2d=_gavg,
                                    global_avg_pool2d_backward=_gavg_b, global_avg_pool1d=_gavg,
                                    global_avg_pool1d_backward=_gavg_b),
        "fastnn.kernels.norm": dict(batch_norm_train=_bn_train, batch_norm_inference=_bn_inf,
                                    batch_norm_backward=_bn_back),
        "fastnn.kernels.dropout": dict(dropout=_dropout, dropout_backward=_dropout_b),
        "fastnn.activations": dict(get=_act_get),
        "fastnn.losses": dict(get=_loss_get, Loss=Loss),
        "fastnn.metrics": dict(get=_metric_get, resolve=_metric_resolve),
        "fastnn.initializers": dict(get=_init_get),
        "fastnn.regularizers": dict(get=_reg_get, L1L2=_L1L2, L2=lambda l2=0.01: _L1L2(l2=l2),
                                    L1=lambda l1=0.01: _L1L2(l1=l1)),
        "fastnn.constraints": dict(get=_con_get),
        "fastnn.optimizers": dict(get=_opt_get, SGD=lambda learning_rate=0.01, **k: make_optimizer("sgd", learning_rate, **k),
                                  Adam=lambda learning_rate=0.001, **k: make_optimizer("adam", learning_rate, **k)),
    }


INSTALLED = []


def install():
    """Put a stand-in into sys.modules for each piece that is not importable yet."""
    import fastnn
    import fastnn.kernels
    for name, attrs in _candidates().items():
        try:
            importlib.import_module(name)
            continue
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
        sys.modules[name] = _mod(name, **attrs)
        parent, _, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, sys.modules[name])
        INSTALLED.append(name)
    return INSTALLED
