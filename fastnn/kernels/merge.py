"""Merging several float32 C-contiguous arrays: element-wise ops, concatenation, batch dot.

Keras 3's merging layers (keras:layers/merging/*.py):

    elementwise("add" | "subtract" | "multiply" | "average" | "maximum" | "minimum", xs)
                                      same-rank inputs whose axes agree or are 1 (broadcast, as
                                      Keras's ops do: EfficientNet's squeeze-and-excitation
                                      multiplies (N,H,W,C) by (N,1,1,C)); the backward sums the
                                      gradient over an input's broadcast axes
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

import functools
import numbers

import numpy as np

from fastnn.kernels._checks import check_aliases, check_array, prepare_out

__all__ = ["OPS", "broadcast_shape", "elementwise", "elementwise_backward", "concatenate", "concatenate_backward",
           "batch_dot", "batch_dot_backward", "l2_normalize", "l2_normalize_backward"]

OPS = ("add", "subtract", "multiply", "average", "maximum", "minimum")
NORM_EPSILON = 1e-7   # keras backend.epsilon(), the floor of the norm in ops.normalize


def _quiet(fn):
    """NaN/inf data give NaN/inf results without NumPy RuntimeWarnings (as the compiled kernels)."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return fn(*args, **kwargs)
    return call


def _check_inputs(xs, fn, *, n=None, same_shape=True):
    if not isinstance(xs, (list, tuple)) or len(xs) < 1:
        raise TypeError(f"{fn}: xs must be a list of float32 arrays; received {type(xs).__name__}.")
    if n is not None and len(xs) != n:
        raise ValueError(f"{fn}: takes exactly {n} inputs; received {len(xs)}.")
    xs = [check_array(x, f"xs[{i}]", fn) for i, x in enumerate(xs)]
    if same_shape:
        for i, x in enumerate(xs[1:], 1):
            if x.shape != xs[0].shape:
                raise ValueError(f"{fn}: every input must have the same shape; xs[{i}] has shape {x.shape} "
                                 f"and xs[0] {xs[0].shape}.")
    return xs


def _named(prefix, arrays):
    return [(f"{prefix}[{i}]", a) for i, a in enumerate(arrays)]


def broadcast_shape(shapes, fn="merge.broadcast_shape"):
    """The shape of an element-wise result: same-rank shapes whose sizes agree on each axis
    or are 1 there (NumPy's rule without rank padding, as Keras's merging layers need)."""
    shapes = [tuple(int(d) for d in s) for s in shapes]
    for i, s in enumerate(shapes):
        if len(s) != len(shapes[0]):
            raise ValueError(f"{fn}: inputs must have the same rank; xs[{i}] has shape {s} and xs[0] "
                             f"{shapes[0]} (received shapes {shapes}).")
    out = []
    for j, col in enumerate(zip(*shapes)):
        sizes = {d for d in col if d != 1}
        if len(sizes) > 1:
            i = next(i for i, d in enumerate(col) if d != 1 and d != next(e for e in col if e != 1))
            raise ValueError(f"{fn}: xs[{i}] has shape {shapes[i]}: shapes {shapes} differ on axis {j} "
                             f"({sorted(sizes)}); each axis must agree or be 1 (broadcast).")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _reduce_to(full, shape, out):
    """Sum `full` over the axes where `shape` is 1 and `full` is not, into out (shape `shape`).
    NumPy's sum over a fixed shape: the same order of additions on every call and thread count."""
    axes = tuple(j for j, (a, b) in enumerate(zip(full.shape, shape)) if b == 1 and a != 1)
    if not axes:
        if out is not full:
            np.copyto(out, full)
        return out
    np.sum(full, axis=axes, keepdims=True, out=out)
    return out


def _check_op(op, fn):
    if op not in OPS:
        raise ValueError(f"{fn}: op must be one of {OPS}; received {op!r}.")
    return op


@_quiet
def elementwise(op, xs, *, out=None):
    """y = xs[0] (op) xs[1] (op) ... (broadcasting size-1 axes); average is the sum / len(xs)."""
    fn = "merge.elementwise"
    op = _check_op(op, fn)
    xs = _check_inputs(xs, fn, n=2 if op == "subtract" else None, same_shape=False)
    out = prepare_out(out, broadcast_shape([x.shape for x in xs], fn), "out", fn)
    # out may be xs[0] itself (read before it is written, element by element), never another input
    check_aliases(fn, [("out", out)], _named("xs", xs), same_ok=(("out", "xs[0]"),))
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


@_quiet
def elementwise_backward(op, xs, y, dy, *, dxs=None, work=None):
    """Gradients w.r.t. each input of elementwise(op, xs) = y, for dy; a list of arrays.

    add passes dy itself to every input of y's shape (no copy: treat the results as read-only);
    dxs, when given, is a list of output buffers of the inputs' shapes (entries may be None to
    allocate). An input broadcast along some axes gets the sum of its full-size gradient over
    them; `work` (y's shape) holds that full-size gradient (allocated when None and needed).
    """
    fn = "merge.elementwise_backward"
    op = _check_op(op, fn)
    xs = _check_inputs(xs, fn, n=2 if op == "subtract" else None, same_shape=False)
    full = broadcast_shape([x.shape for x in xs], fn)
    dy = check_array(dy, "dy", fn, shape=full)
    if op in ("maximum", "minimum", "multiply"):
        y = check_array(y, "y", fn, shape=full)
    k = len(xs)
    if all(x.shape == full for x in xs):
        return _same_shape_backward(op, xs, y, dy, dxs, fn)
    dxs = list(dxs) if dxs is not None else [None] * k
    if len(dxs) != k:
        raise ValueError(f"{fn}: dxs must hold {k} buffers; received {len(dxs)}.")
    dxs = [prepare_out(d, x.shape, f"dxs[{i}]", fn) for i, (d, x) in enumerate(zip(dxs, xs))]
    work = prepare_out(work, full, "work", fn)
    check_aliases(fn, _named("dxs", dxs) + [("work", work)],
                  _named("xs", xs) + [("y", y if op in ("maximum", "minimum", "multiply") else None), ("dy", dy)])
    taken = None
    for i, (x, d) in enumerate(zip(xs, dxs)):
        if op == "add":
            g = dy
        elif op == "subtract":
            g = dy if i == 0 else np.negative(dy, out=work)
        elif op == "average":
            g = np.multiply(dy, np.float32(1.0 / k), out=work)
        elif op == "multiply":
            g = work
            np.copyto(g, dy)
            for j, other in enumerate(xs):
                if j != i:
                    np.multiply(g, other, out=g)
        else:   # maximum / minimum: dy to the first input equal to y, where no earlier one is
            hit = np.equal(x, y)
            if taken is None:
                taken = hit.copy()
            else:
                np.logical_and(hit, ~taken, out=hit)
                np.logical_or(taken, hit, out=taken)
            g = np.multiply(dy, hit, out=work)
        _reduce_to(g, x.shape, d)
    return dxs


def _same_shape_backward(op, xs, y, dy, dxs, fn):
    k = len(xs)
    if op == "add":
        return [dy] * k
    dxs = list(dxs) if dxs is not None else [None] * k
    if len(dxs) != k:
        raise ValueError(f"{fn}: dxs must hold {k} buffers; received {len(dxs)}.")
    dxs = [prepare_out(d, xs[0].shape, f"dxs[{i}]", fn) for i, d in enumerate(dxs)]
    check_aliases(fn, _named("dxs", dxs), _named("xs", xs) + [("y", y if op in ("maximum", "minimum", "multiply")
                                                                else None), ("dy", dy)])
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


def _axis(axis, ndim, fn, name="axis", of="x"):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(f"{fn}: {name} must be an int in [-{ndim}, {ndim}) ({of} has {ndim} dimensions); "
                         f"received {axis!r}.")
    return int(axis) % ndim


@_quiet
def concatenate(xs, axis=-1, *, out=None):
    """Join arrays along `axis`; every other dimension must agree."""
    fn = "merge.concatenate"
    xs = _check_inputs(xs, fn, same_shape=False)
    nd = xs[0].ndim
    if nd == 0:
        raise ValueError(f"{fn}: xs[0] must have at least one axis; received a 0-d array.")
    ax = _axis(axis, nd, fn, of="xs[0]")
    for i, x in enumerate(xs):
        if x.ndim != nd or any(a != b for j, (a, b) in enumerate(zip(x.shape, xs[0].shape)) if j != ax):
            raise ValueError(f"{fn}: inputs must agree on every axis but {axis}; xs[{i}] has shape {x.shape} "
                             f"and xs[0] {xs[0].shape}.")
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    out = prepare_out(out, shape, "out", fn)
    check_aliases(fn, [("out", out)], _named("xs", xs))
    return np.concatenate(xs, axis=ax, out=out)


@_quiet
def concatenate_backward(dy, sizes, axis=-1, *, dxs=None):
    """The slices of dy (one per input, `sizes` along `axis`), copied into contiguous arrays."""
    fn = "merge.concatenate_backward"
    dy = check_array(dy, "dy", fn)
    ax = _axis(axis, dy.ndim, fn, of="dy")
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"{fn}: sizes must be a list of ints (each input's size along axis); received "
                        f"{sizes!r}.") from None
    if not sizes or not all(isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) and s >= 0
                            for s in sizes):
        raise ValueError(f"{fn}: sizes must be a non-empty list of ints >= 0; received {sizes!r}.")
    sizes = [int(s) for s in sizes]
    if sum(sizes) != dy.shape[ax]:
        raise ValueError(f"{fn}: sizes {sizes} do not add up to dy.shape[{ax}] = {dy.shape[ax]}.")
    dxs = list(dxs) if dxs is not None else [None] * len(sizes)
    if len(dxs) != len(sizes):
        raise ValueError(f"{fn}: dxs must hold {len(sizes)} buffers (one per size); received {len(dxs)}.")
    out, start = [], 0
    for i, (s, d) in enumerate(zip(sizes, dxs)):
        shape = list(dy.shape)
        shape[ax] = s
        d = prepare_out(d, shape, f"dxs[{i}]", fn)
        check_aliases(fn, [(f"dxs[{i}]", d)], _named("dxs", out) + [("dy", dy)])
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
    try:
        pair = (axes, axes) if isinstance(axes, numbers.Integral) else tuple(axes)
    except TypeError:
        raise TypeError(f"{fn}: axes must be an int or a pair of ints; received {axes!r}.") from None
    if len(pair) != 2:
        raise ValueError(f"{fn}: axes must be an int or a pair of ints; received {axes!r}.")
    p, q = _axis(pair[0], a.ndim, fn, "axes[0]", "a"), _axis(pair[1], b.ndim, fn, "axes[1]", "b")
    if p == 0 or q == 0:
        raise ValueError(f"{fn}: cannot contract the batch axis; received axes={axes!r}.")
    if a.shape[p] != b.shape[q]:
        raise ValueError(f"{fn}: a.shape[{p}] = {a.shape[p]} and b.shape[{q}] = {b.shape[q]} must be equal.")
    return p, q


@_quiet
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
        check_aliases(fn, [("out", out)], [("a", a), ("b", b)])
        np.matmul(a[:, None, :], b[:, :, None], out=out.reshape(n, 1, 1))
        return out
    am = np.moveaxis(a, p, 2)            # (N, m, k)
    bm = np.moveaxis(b, q, 1)            # (N, k, n)
    out = prepare_out(out, (n, am.shape[1], bm.shape[2]), "out", fn)
    check_aliases(fn, [("out", out)], [("a", a), ("b", b)])
    return np.matmul(am, bm, out=out)


@_quiet
def batch_dot_backward(a, b, dy, axes, *, da=None, db=None):
    """(da, db) for batch_dot(a, b, axes) and dy of its output's shape."""
    fn = "merge.batch_dot_backward"
    a, b = check_array(a, "a", fn), check_array(b, "b", fn)
    p, q = _dot_axes(a, b, axes, fn)
    da = prepare_out(da, a.shape, "da", fn)
    db = prepare_out(db, b.shape, "db", fn)
    if a.ndim == 2:
        dy = check_array(dy, "dy", fn, shape=(a.shape[0], 1))
        check_aliases(fn, [("da", da), ("db", db)], [("a", a), ("b", b), ("dy", dy)])
        np.multiply(dy, b, out=da)
        np.multiply(dy, a, out=db)
        return da, db
    am, bm = np.moveaxis(a, p, 2), np.moveaxis(b, q, 1)
    dy = check_array(dy, "dy", fn, shape=(a.shape[0], am.shape[1], bm.shape[2]))
    check_aliases(fn, [("da", da), ("db", db)], [("a", a), ("b", b), ("dy", dy)])
    np.matmul(dy, bm.transpose(0, 2, 1), out=np.moveaxis(da, p, 2))
    np.matmul(am.transpose(0, 2, 1), dy, out=np.moveaxis(db, q, 1))
    return da, db


@_quiet
def l2_normalize(x, axis=-1, *, out=None, inv_norm=None):
    """u = x * min(1/sqrt(sum(x^2, axis)), 1/1e-7) (Keras's ops.normalize, order 2).

    Returns (u, inv_norm); inv_norm (x's shape with `axis` of size 1) is what backward needs.
    """
    fn = "merge.l2_normalize"
    x = check_array(x, "x", fn)
    if x.ndim == 0:
        raise ValueError(f"{fn}: x must have at least one axis; received a 0-d array.")
    ax = _axis(axis, x.ndim, fn)
    kshape = tuple(1 if j == ax else d for j, d in enumerate(x.shape))
    out = prepare_out(out, x.shape, "out", fn)
    inv_norm = prepare_out(inv_norm, kshape, "inv_norm", fn)
    check_aliases(fn, [("out", out), ("inv_norm", inv_norm)], [("x", x)])
    np.multiply(x, x, out=out)
    np.sum(out, axis=ax, keepdims=True, out=inv_norm)
    np.sqrt(inv_norm, out=inv_norm)
    with np.errstate(divide="ignore"):
        np.divide(np.float32(1.0), inv_norm, out=inv_norm)
    np.minimum(inv_norm, np.float32(1.0 / NORM_EPSILON), out=inv_norm)
    np.multiply(x, inv_norm, out=out)
    return out, inv_norm


@_quiet
def l2_normalize_backward(u, inv_norm, du, axis=-1, *, dx=None):
    """dx for u = l2_normalize(x): inv_norm * (du - u * sum(du * u, axis)) where the norm is
    above the floor, inv_norm * du where it is clipped (then the factor is a constant)."""
    fn = "merge.l2_normalize_backward"
    u = check_array(u, "u", fn)
    du = check_array(du, "du", fn, shape=u.shape)
    if u.ndim == 0:
        raise ValueError(f"{fn}: u must have at least one axis; received a 0-d array.")
    ax = _axis(axis, u.ndim, fn, of="u")
    kshape = tuple(1 if j == ax else d for j, d in enumerate(u.shape))
    inv_norm = check_array(inv_norm, "inv_norm", fn, shape=kshape)
    dx = prepare_out(dx, u.shape, "dx", fn)
    check_aliases(fn, [("dx", dx)], [("u", u), ("du", du), ("inv_norm", inv_norm)])
    np.multiply(du, u, out=dx)
    s = np.sum(dx, axis=ax, keepdims=True)
    s *= inv_norm < np.float32(1.0 / NORM_EPSILON)      # clipped: no projection term
    np.multiply(u, s, out=dx)
    np.subtract(du, dx, out=dx)
    np.multiply(dx, inv_norm, out=dx)
    return dx
