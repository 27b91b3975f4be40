"""Dense layer kernels on float32 C-contiguous matrices: y = act(x @ w + b) and its backward.

The GEMM goes to the BLAS NumPy links (np.matmul(out=)); the bias and the activation then run
as ONE fused compiled pass over y, row by row while each row is in cache (softmax across the
last axis included).
"""
from __future__ import annotations

import numpy as np

from fastnn._kernels import activation as _act
from fastnn.kernels import activation as _activation
from fastnn.kernels._checks import check_array, check_no_overlap, prepare_out

__all__ = ["dense", "dense_backward"]

_NO_BIAS = np.zeros(1, np.float32)


def dense(x, w, b=None, activation="linear", *, out=None, **act_params):
    """y = activation(x @ w + b); x (M, K), w (K, U), b (U,) or None -> y (M, U), float32.

    activation: any name fastnn.kernels.activation.apply accepts, with its parameters as
    keywords (softmax / log_softmax act across the last axis). out: optional (M, U) buffer.
    """
    fn = "dense"
    x = check_array(x, "x", fn, ndim=2)
    w = check_array(w, "w", fn, ndim=2)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"{fn}: w must have shape ({x.shape[1]}, units) to match x's {x.shape[1]} "
                         f"features; received w of shape {w.shape}.")
    units = w.shape[1]
    if b is not None:
        b = check_array(b, "b", fn, shape=(units,))
    kind, p, axis = _activation.resolve(activation, act_params, f"{fn}(activation={activation!r})")
    if axis is not None and axis not in (-1, 1):
        raise ValueError(f"{fn}: the fused {activation} acts across the units (axis -1); received "
                         f"axis={axis}. Apply fastnn.kernels.activation.apply to the output instead.")
    out = prepare_out(out, (x.shape[0], units), "out", fn)
    for name, a in (("x", x), ("w", w), ("b", b)):
        if a is not None:
            check_no_overlap(out, a, "out", name, fn)
    np.matmul(x, w, out=out)
    if b is None and kind == 0:
        return out
    smax = 1 if kind == -1 else 2 if kind == -2 else 0
    _act.bias_act(out, _NO_BIAS if b is None else b, b is not None, max(kind, 0), smax, p,
                  _activation.PARALLEL_MIN)
    return out


def dense_backward(x, w, dy, *, need_dx=True, dx=None, dw=None, db=None):
    """(dx, dw, db) of y = x @ w + b from dy = dL/d(x @ w + b) (M, U) (the activation's grad
    applied first): dx = dy @ w.T (M, K) (None when need_dx is False), dw = x.T @ dy (K, U),
    db = sum(dy, axis 0) (U,). dw and db may be views into a gradient arena (overwritten).
    """
    fn = "dense_backward"
    x = check_array(x, "x", fn, ndim=2)
    w = check_array(w, "w", fn, ndim=2, shape=(x.shape[1], None))
    dy = check_array(dy, "dy", fn, shape=(x.shape[0], w.shape[1]))
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_dx must be True or False; received {need_dx!r}.")
    dw = prepare_out(dw, w.shape, "dw", fn)
    db = prepare_out(db, (w.shape[1],), "db", fn)
    outs = [("dw", dw), ("db", db)]
    if need_dx:
        dx = prepare_out(dx, x.shape, "dx", fn)
        outs.append(("dx", dx))
    else:
        dx = None
    for i, (oname, o) in enumerate(outs):
        for iname, a in [("x", x), ("w", w), ("dy", dy)] + outs[i + 1:]:
            check_no_overlap(o, a, oname, iname, fn)
    if need_dx:
        np.matmul(dy, w.T, out=dx)
    np.matmul(x.T, dy, out=dw)
    np.sum(dy, axis=0, out=db)
    return dx, dw, db
