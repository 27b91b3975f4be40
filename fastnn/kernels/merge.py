"""Merging several float32 C-contiguous arrays: element-wise ops, concatenation, batch dot.

Keras 3's merging layers (keras:layers/merging/*.py) over same-shape inputs:

    elementwise("add" | "subtract" | "multiply" | "average" | "maximum" | "minimum", xs)
    concatenate(xs, axis)
    batch_dot(a, b, axes)             Keras's Dot: contract axes[0] of a with axes[1] of b per sample
    l2_normalize(x, axis)             x * min(1/sqrt(sum x^2), 1/1e-7) (Keras's ops.normalize)

Each has a `*_backward`. These are memory-bound passes: every one is a NumPy ufunc or BLAS
matmul writing into an `out=` buffer (one pass over the bytes, no temporaries for two inputs),
which is what a compiled loop would do too (bench/test_merge.py holds them to np.copyto).
Maximum/minimum send the gradient to the first input that holds the extreme value (ties are
broken towards the earlier input), as a pairwise reduction left to right does.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn.kernels._checks import check_array, prepare_out

__all__ = ["OPS", "elementwise", "elementwise_backward", "concatenate", "concatenate_backward",
           "batch_dot", "batch_dot_backward", "l2_normalize", "l2_normalize_backward"]

OPS = ("add", "subtract", "multiply", "average", "maximum", "minimum")
NORM_EPSILON = 1e-7   # keras backend.epsilon(), the floor of the norm in ops.normalize


def _check_inputs(xs, fn, *, n=None, same_shape=True):
    if not isinstance(xs, (list, tuple)) or len(xs) < 1:
        raise TypeError(f"{fn}: xs must be a list of float32 arrays; received {type(xs).__name__}.")
    if n is not None and len(xs) != n:
        raise ValueError(f"{fn}: takes exactly {n} inputs; received {len(xs)}.")
    xs = [check_array(x, f"xs[{i}]", fn) for i, x in enumerate(xs)]
    if same_shape and any(x.shape != xs[0].shape for x in xs):
        raise ValueError(f"{fn}: every input must have the same shape; received {[x.shape for x in xs]}.")
    return xs


def _check_op(op, fn):
    if op not in OPS:
        raise ValueError(f"{fn}: op must be one of {OPS}; received {op!r}.")
    return op


def elementwise(op, xs, *, out=None):
    """y = xs[0] (op) xs[1] (op) ... over same-shape arrays; average is the sum / len(xs)."""
    fn = "merge.elementwise"
    op = _check_op(op, fn)
    xs = _check_inputs(xs, fn, n=2 if op == "subtract" else None)
    out = prepare_out(out, xs[0].shape, "out", fn)
    if op == "subtract":
        return np.subtract(xs[0], xs[1], out=out)
    ufunc = {"add": np.add, "average": np.add, "multiply": np.multiply,
             "maximum": np.maximum, "minimum": np.minimum}[op]
    if len(xs) == 1:
        np.copyto(out, xs[0])
    else:
        ufunc(xs[0], xs[1], out=out)
        for x in xs[2:]:
            ufunc(out, x, out=out)
    if op == "average":
        np.multiply(out, np.float32(1.0 / len(xs)), out=out)
    return out


def elementwise_backward(op, xs, y, dy, *, dxs=None):
    """Gradients w.r.t. each input of elementwise(op, xs) = y, for dy; a list of arrays.

    add passes dy itself to every input (no copy: treat the results as read-only); dxs, when
    given, is a list of output buffers (entries may be None to allocate).
    """
    fn = "merge.elementwise_backward"
    op = _check_op(op, fn)
    xs = _check_inputs(xs, fn, n=2 if op == "subtract" else None)
    dy = check_array(dy, "dy", fn, shape=xs[0].shape)
    if op in ("maximum", "minimum", "multiply"):
        y = check_array(y, "y", fn, shape=xs[0].shape)
    k = len(xs)
    if op == "add":
        return [dy] * k
    dxs = list(dxs) if dxs is not None else [None] * k
    if len(dxs) != k:
        raise ValueError(f"{fn}: dxs must hold {k} buffers; received {len(dxs)}.")
    dxs = [prepare_out(d, xs[0].shape, f"dxs[{i}]", fn) for i, d in enumerate(dxs)]
    if op == "subtract":
        np.copyto(dxs[0], dy)
        np.negative(dy, out=dxs[1])
    elif op == "average":
        for d in dxs:
            np.multiply(dy, np.float32(1.0 / k), out=d)
    elif op == "multiply":
        for i, d in enumerate(dxs):
            others = [x for j, x in enumerate(xs) if j != i]
            np.copyto(d, dy)
            for x in others:
                np.multiply(d, x, out=d)
    else:   # maximum / minimum: dy to the first input equal to y, where no earlier one is
        taken = None
        for i, (x, d) in enumerate(zip(xs, dxs)):
            hit = np.equal(x, y)
            if taken is None:
                taken = hit.copy()
            else:
                np.logical_and(hit, ~taken, out=hit)
                np.logical_or(taken, hit, out=taken)
            np.multiply(dy, hit, out=d)
    return dxs


def _axis(axis, ndim, fn, name="axis"):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(f"{fn}: {name} must be an int in [-{ndim}, {ndim}); received {axis!r}.")
    return int(axis) % ndim


def concatenate(xs, axis=-1, *, out=None):
    """Join arrays along `axis`; every other dimension must agree."""
    fn = "merge.concatenate"
    xs = _check_inputs(xs, fn, same_shape=False)
    nd = xs[0].ndim
    ax = _axis(axis, nd, fn)
    for x in xs:
        if x.ndim != nd or any(a != b for j, (a, b) in enumerate(zip(x.shape, xs[0].shape)) if j != ax):
            raise ValueError(f"{fn}: inputs must agree on every axis but {axis}; received "
                             f"{[x.shape for x in xs]}.")
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    out = prepare_out(out, shape, "out", fn)
    return np.concatenate(xs, axis=ax, out=out)


def concatenate_backward(dy, sizes, axis=-1, *, dxs=None):
    """The slices of dy (one per input, `sizes` along `axis`), copied into contiguous arrays."""
    fn = "merge.concatenate_backward"
    dy = check_array(dy, "dy", fn)
    ax = _axis(axis, dy.ndim, fn)
    sizes = [int(s) for s in sizes]
    if sum(sizes) != dy.shape[ax]:
        raise ValueError(f"{fn}: sizes {sizes} do not add up to dy.shape[{ax}] = {dy.shape[ax]}.")
    dxs = list(dxs) if dxs is not None else [None] * len(sizes)
    out, start = [], 0
    for i, (s, d) in enumerate(zip(sizes, dxs)):
        shape = list(dy.shape)
        shape[ax] = s
        d = prepare_out(d, shape, f"dxs[{i}]", fn)
        index = [slice(None)] * dy.ndim
        index[ax] = slice(start, start + s)
        np.copyto(d, dy[tuple(index)])
        out.append(d)
        start += s
    return out


def _dot_axes(a, b, axes, fn):
    if a.ndim != b.ndim or a.ndim not in (2, 3):
        raise ValueError(f"{fn}: a and b must both have 2 or 3 dimensions (batch first); received shapes "
                         f"{a.shape} and {b.shape}.")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{fn}: a and b must have the same batch size; received {a.shape} and {b.shape}.")
    pair = (axes, axes) if isinstance(axes, numbers.Integral) else tuple(axes)
    if len(pair) != 2:
        raise ValueError(f"{fn}: axes must be an int or a pair of ints; received {axes!r}.")
    p, q = _axis(pair[0], a.ndim, fn, "axes[0]"), _axis(pair[1], b.ndim, fn, "axes[1]")
    if p == 0 or q == 0:
        raise ValueError(f"{fn}: cannot contract the batch axis; received axes={axes!r}.")
    if a.shape[p] != b.shape[q]:
        raise ValueError(f"{fn}: a.shape[{p}] = {a.shape[p]} and b.shape[{q}] = {b.shape[q]} must be equal.")
    return p, q


def batch_dot(a, b, axes, *, out=None):
    """Per-sample dot product contracting a's axes[0] with b's axes[1] (Keras's Dot layer).

    a, b (N, k) -> (N, 1); (N, m, k) . (N, k, n) style 3-D inputs -> (N, m, n) (a's free axis
    first, then b's).
    """
    fn = "merge.batch_dot"
    a, b = check_array(a, "a", fn), check_array(b, "b", fn)
    p, q = _dot_axes(a, b, axes, fn)
    n = a.shape[0]
    if a.ndim == 2:
        out = prepare_out(out, (n, 1), "out", fn)
        np.matmul(a[:, None, :], b[:, :, None], out=out.reshape(n, 1, 1))
        return out
    am = np.moveaxis(a, p, 2)            # (N, m, k)
    bm = np.moveaxis(b, q, 1)            # (N, k, n)
    out = prepare_out(out, (n, am.shape[1], bm.shape[2]), "out", fn)
    return np.matmul(am, bm, out=out)


def batch_dot_backward(a, b, dy, axes, *, da=None, db=None):
    """(da, db) for batch_dot(a, b, axes) and dy of its output's shape."""
    fn = "merge.batch_dot_backward"
    a, b = check_array(a, "a", fn), check_array(b, "b", fn)
    p, q = _dot_axes(a, b, axes, fn)
    da = prepare_out(da, a.shape, "da", fn)
    db = prepare_out(db, b.shape, "db", fn)
    if a.ndim == 2:
        dy = check_array(dy, "dy", fn, shape=(a.shape[0], 1))
        np.multiply(dy, b, out=da)
        np.multiply(dy, a, out=db)
        return da, db
    am, bm = np.moveaxis(a, p, 2), np.moveaxis(b, q, 1)
    dy = check_array(dy, "dy", fn, shape=(a.shape[0], am.shape[1], bm.shape[2]))
    np.matmul(dy, bm.transpose(0, 2, 1), out=np.moveaxis(da, p, 2))
    np.matmul(am.transpose(0, 2, 1), dy, out=np.moveaxis(db, q, 1))
    return da, db


def l2_normalize(x, axis=-1, *, out=None, inv_norm=None):
    """u = x * min(1/sqrt(sum(x^2, axis)), 1/1e-7) (Keras's ops.normalize, order 2).

    Returns (u, inv_norm); inv_norm (x's shape with `axis` of size 1) is what backward needs.
    """
    fn = "merge.l2_normalize"
    x = check_array(x, "x", fn)
    ax = _axis(axis, x.ndim, fn)
    kshape = tuple(1 if j == ax else d for j, d in enumerate(x.shape))
    out = prepare_out(out, x.shape, "out", fn)
    inv_norm = prepare_out(inv_norm, kshape, "inv_norm", fn)
    np.multiply(x, x, out=out)
    np.sum(out, axis=ax, keepdims=True, out=inv_norm)
    np.sqrt(inv_norm, out=inv_norm)
    with np.errstate(divide="ignore"):
        np.divide(np.float32(1.0), inv_norm, out=inv_norm)
    np.minimum(inv_norm, np.float32(1.0 / NORM_EPSILON), out=inv_norm)
    np.multiply(x, inv_norm, out=out)
    return out, inv_norm


def l2_normalize_backward(u, inv_norm, du, axis=-1, *, dx=None):
    """dx for u = l2_normalize(x): inv_norm * (du - u * sum(du * u, axis)) where the norm is
    above the floor, inv_norm * du where it is clipped (then the factor is a constant)."""
    fn = "merge.l2_normalize_backward"
    u = check_array(u, "u", fn)
    du = check_array(du, "du", fn, shape=u.shape)
    ax = _axis(axis, u.ndim, fn)
    dx = prepare_out(dx, u.shape, "dx", fn)
    np.multiply(du, u, out=dx)
    s = np.sum(dx, axis=ax, keepdims=True)
    s *= inv_norm < np.float32(1.0 / NORM_EPSILON)      # clipped: no projection term
    np.multiply(u, s, out=dx)
    np.subtract(du, dx, out=dx)
    np.multiply(dx, inv_norm, out=dx)
    return dx
