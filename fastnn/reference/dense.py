"""Naive NumPy dense layer: the oracle for fastnn.kernels.dense (computes in x's dtype)."""
from __future__ import annotations

import numpy as np

from fastnn.reference import activation as _activation


def dense(x, w, b=None, activation="linear", **act_params):
    """y = activation(x @ w + b): x (M, K), w (K, U), b (U,) or None."""
    z = np.asarray(x) @ np.asarray(w)
    if b is not None:
        z = z + b
    if activation in ("softmax", "log_softmax"):
        act_params = {"axis": -1, **act_params}
    return _activation.apply(activation, z, **act_params)


def dense_backward(x, w, dy, *, need_dx=True):
    """(dx, dw, db) of x @ w + b for dy = dL/d(x @ w + b)."""
    x, w, dy = np.asarray(x), np.asarray(w), np.asarray(dy)
    dx = dy @ w.T if need_dx else None
    return dx, x.T @ dy, dy.sum(axis=0)
