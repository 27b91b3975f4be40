"""Reference merging ops: the textbook definitions, element by element (oracle of
fastnn.kernels.merge; same functions, no out= buffers)."""
from __future__ import annotations

import numbers

import numpy as np

OPS = ("add", "subtract", "multiply", "average", "maximum", "minimum")


def _broadcast(xs):
    """Every input repeated along its size-1 axes to the common shape (same rank, each axis
    equal or 1), element by element."""
    shape = tuple((set(d) - {1} or {1}).pop() for d in zip(*[np.shape(x) for x in xs]))   # 1 vs 0 is 0
    out = []
    for x in xs:
        x = np.asarray(x, np.float64)
        full = np.empty(shape)
        for idx in np.ndindex(*shape):
            full[idx] = x[tuple(0 if x.shape[j] == 1 else i for j, i in enumerate(idx))]
        out.append(full)
    return out, shape


def _unbroadcast(g, shape):
    """The sum of a full-size gradient over the axes an input of `shape` was repeated along."""
    out = np.zeros(shape)
    for idx in np.ndindex(*g.shape):
        out[tuple(0 if shape[j] == 1 else i for j, i in enumerate(idx))] += g[idx]
    return out


def elementwise(op, xs):
    xs, shape = _broadcast(xs)
    flat = [x.ravel() for x in xs]
    y = np.empty(flat[0].size)
    for e in range(y.size):
        vals = [f[e] for f in flat]
        if op == "add":
            v = sum(vals)
        elif op == "subtract":
            v = vals[0] - vals[1]
        elif op == "multiply":
            v = 1.0
            for t in vals:
                v *= t
        elif op == "average":
            v = sum(vals) / len(vals)
        elif op == "maximum":
            v = max(vals)
        else:
            v = min(vals)
        y[e] = v
    return y.reshape(shape).astype(np.float32)


def elementwise_backward(op, xs, y, dy):
    shapes = [np.shape(x) for x in xs]
    xs, _ = _broadcast(xs)
    flat = [x.ravel() for x in xs]
    g = np.asarray(dy, np.float64).ravel()
    yv = None if op not in ("maximum", "minimum") else np.asarray(y, np.float64).ravel()
    k = len(xs)
    dxs = [np.zeros(g.size) for _ in range(k)]
    for e in range(g.size):
        vals = [f[e] for f in flat]
        for i in range(k):
            if op == "add":
                d = 1.0
            elif op == "subtract":
                d = 1.0 if i == 0 else -1.0
            elif op == "average":
                d = 1.0 / k
            elif op == "multiply":
                d = 1.0
                for j in range(k):
                    if j != i:
                        d *= vals[j]
            else:
                # the gradient goes to the first input equal to the output y (the first maximum
                # or minimum when y is elementwise(op, xs)), as a max pool's goes to its argmax
                first = next((j for j, v in enumerate(vals) if v == yv[e]), None)
                d = 1.0 if first == i else 0.0
            dxs[i][e] = d * g[e]
    return [_unbroadcast(d.reshape(np.shape(dy)), s).astype(np.float32) for d, s in zip(dxs, shapes)]


def concatenate(xs, axis=-1):
    return np.concatenate([np.asarray(x, np.float32) for x in xs], axis=axis)


def concatenate_backward(dy, sizes, axis=-1):
    cuts = np.cumsum(sizes)[:-1]
    return [np.ascontiguousarray(p) for p in np.split(np.asarray(dy), cuts, axis=axis)]


def batch_dot(a, b, axes):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    p, q = (axes, axes) if isinstance(axes, numbers.Integral) else tuple(axes)
    p, q = p % a.ndim, q % b.ndim
    free = [d for j, d in enumerate(a.shape[1:], 1) if j != p] + [d for j, d in enumerate(b.shape[1:], 1) if j != q]
    y = np.zeros((a.shape[0], *free))
    for i in range(a.shape[0]):
        y[i] = np.tensordot(a[i], b[i], axes=(p - 1, q - 1))
    return (y.reshape(-1, 1) if y.ndim == 1 else y).astype(np.float32)


def batch_dot_backward(a, b, dy, axes):
    a, b, dy = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(dy, np.float64)
    p, q = (axes, axes) if isinstance(axes, numbers.Integral) else tuple(axes)
    p, q = p % a.ndim, q % b.ndim
    if a.ndim == 2:
        return (dy * b).astype(np.float32), (dy * a).astype(np.float32)
    da, db = np.zeros_like(a), np.zeros_like(b)
    for i in range(a.shape[0]):
        am, bm = np.moveaxis(a[i], p - 1, 1), np.moveaxis(b[i], q - 1, 0)    # (m, k), (k, n)
        np.moveaxis(da[i], p - 1, 1)[...] = dy[i] @ bm.T
        np.moveaxis(db[i], q - 1, 0)[...] = am.T @ dy[i]
    return da.astype(np.float32), db.astype(np.float32)


def l2_normalize(x, axis=-1):
    x = np.asarray(x, np.float64)
    inv = np.minimum(1.0 / np.sqrt(np.sum(x * x, axis=axis, keepdims=True)), 1e7)
    return (x * inv).astype(np.float32), inv.astype(np.float32)


def l2_normalize_backward(u, inv_norm, du, axis=-1):
    u, du, inv = np.asarray(u, np.float64), np.asarray(du, np.float64), np.asarray(inv_norm, np.float64)
    proj = np.sum(du * u, axis=axis, keepdims=True) * (inv < 1e7)
    return (inv * (du - u * proj)).astype(np.float32)
