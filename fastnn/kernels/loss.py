"""Fused crossentropy kernels on float32 logits: value, probabilities and gradient.

    loss, p = softmax_crossentropy(z, labels, sparse=True)          # z (N, K) logits
    dz = softmax_crossentropy_backward(p, labels, sparse=True, scale=1 / len(z))

Values reproduce Keras 3 (torch/JAX/NumPy backends): from_logits=True is the stable
log-softmax / log-sigmoid form; from_logits=False applies Keras's crossentropy on the
probabilities, clipped to [1e-7, 1 - 1e-7] (categorical: renormalised first). The backward
functions give the exact gradient w.r.t. the logits z of sum_i scale_i * loss_i, through the
clip: (p - y) * scale wherever no clip is active.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._kernels import loss as _loss
from fastnn.kernels._checks import check_array, check_float, plain, prepare_out

__all__ = ["softmax_crossentropy", "softmax_crossentropy_backward",
           "sigmoid_binary_crossentropy", "sigmoid_binary_crossentropy_backward", "PARALLEL_MIN"]

# Below this many logits a call runs on the calling thread (see bench/test_loss.py).
PARALLEL_MIN = 1 << 15

_NO_DENSE = np.zeros((1, 1), np.float32)
_NO_SPARSE = np.zeros(1, np.int64)


def _flag(value, name, fn):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False; received {value!r}.")
    return bool(value)


def _logits(z, name, fn):
    z = check_array(z, name, fn)
    if z.ndim < 2:
        raise ValueError(f"{fn}: {name} must have shape (N, K) (or (..., K)); received shape {z.shape}. "
                         f"Use {name}.reshape(-1, 1) for a single output per sample.")
    if z.shape[-1] == 0:
        raise ValueError(f"{fn}: {name} must have at least one class (K >= 1 in (..., K)); received "
                         f"shape {z.shape}.")
    return z


def _dense_labels(y, shape, fn):
    """Dense labels as a float32 C-contiguous array of `shape` (converted from any real dtype)."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{fn}: y must be a numpy.ndarray of labels; received {type(y).__name__}.")
    y = plain(y, "y", fn)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: y must hold real numbers (one-hot or probabilities); received dtype "
                        f"{y.dtype}. For integer class labels pass sparse=True.")
    if y.shape != tuple(shape):
        hint = " For integer class labels pass sparse=True." if y.shape == tuple(shape[:-1]) else ""
        raise ValueError(f"{fn}: y must have the logits' shape {tuple(shape)}; received shape "
                         f"{y.shape}.{hint}")
    return np.ascontiguousarray(y, dtype=np.float32)


def _sparse_labels(y, shape, fn):
    """Sparse labels as int64 (N,) with every value in [0, K)."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{fn}: y must be a numpy.ndarray of integer class labels; received "
                        f"{type(y).__name__}.")
    y = plain(y, "y", fn)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: y: sparse labels must have an integer dtype; received dtype {y.dtype}. "
                        f"Use y.astype('int64') (or sparse=False for one-hot labels).")
    lead, k = tuple(shape[:-1]), shape[-1]
    if y.shape == lead + (1,):          # Keras accepts (N, 1) integer labels
        y = y.reshape(lead)
    if y.shape != lead:
        raise ValueError(f"{fn}: y: sparse labels must have shape {lead} (the logits' shape without "
                         f"the class axis); received shape {y.shape}.")
    if y.size:
        lo, hi = y.min(), y.max()
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            where = np.unravel_index(int(np.argmax(y == bad)), y.shape)
            raise ValueError(f"{fn}: y: sparse label {int(bad)} at index {tuple(int(i) for i in where)} "
                             f"is out of range; labels must be in [0, {k - 1}] for {k} classes.")
    return np.ascontiguousarray(y.reshape(-1), dtype=np.int64)


def _scale(scale, n, fn):
    """(array, stride): one float per row, or one float for all rows (stride 0)."""
    if scale is None:
        return np.ones(1, np.float32), 0
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        return np.full(1, check_float(scale, "scale", fn), np.float32), 0
    if isinstance(scale, np.ndarray) and scale.ndim == 0:
        return np.full(1, check_float(float(scale), "scale", fn), np.float32), 0
    if isinstance(scale, np.ndarray):
        scale = plain(scale, "scale", fn)
    if not isinstance(scale, np.ndarray) or scale.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: scale must be None, a number or a real array of shape ({n},); "
                        f"received {type(scale).__name__}.")
    if scale.shape != (n,):
        raise ValueError(f"{fn}: scale must be a number or have shape ({n},) (one per sample); "
                         f"received shape {scale.shape}.")
    return np.ascontiguousarray(scale, dtype=np.float32), 1


def _scale_array(scale):
    """The caller's per-sample scale array (dz must not overlap it: it is read while dz is
    written), or None."""
    return scale if isinstance(scale, np.ndarray) and scale.ndim else None


def _no_overlap(buf, name, inputs, fn, *, allow_same=()):
    for other_name, a in inputs:
        if a is None or not np.shares_memory(buf, a):
            continue
        if other_name in allow_same and buf.__array_interface__["data"][0] == \
                a.__array_interface__["data"][0] and buf.shape == a.shape:
            continue
        raise ValueError(f"{fn}: {name} must not share memory with {other_name}.")


def softmax_crossentropy(z, y, *, sparse=False, from_logits=True, label_smoothing=0.0,
                         probs=None, out=None):
    """Per-sample categorical crossentropy of softmax(z); float32 logits z (N, K).

    y: one-hot / probability labels (N, K) (any real dtype), or integer class labels (N,)
    with sparse=True. label_smoothing s: labels become y (1 - s) + s / K.
    from_logits=False gives Keras's crossentropy of the probabilities softmax(z) (clipped).
    probs (N, K) and out (N,) are optional float32 buffers. Returns (per_sample, probs).
    """
    fn = "softmax_crossentropy"
    z = _logits(z, "z", fn)
    sparse = _flag(sparse, "sparse", fn)
    from_logits = _flag(from_logits, "from_logits", fn)
    ls = check_float(label_smoothing, "label_smoothing", fn, low=0.0, high=1.0)
    k = z.shape[-1]
    z2 = z.reshape(-1, k)
    if sparse:
        c, yd = _sparse_labels(y, z.shape, fn), _NO_DENSE
    else:
        c, yd = _NO_SPARSE, _dense_labels(y, z.shape, fn).reshape(-1, k)
    probs = prepare_out(probs, z.shape, "probs", fn)
    out = prepare_out(out, z.shape[:-1], "out", fn)
    _no_overlap(probs, "probs", [("z", z), ("y", y), ("out", out)], fn)
    _no_overlap(out, "out", [("z", z), ("y", y)], fn)
    _loss.softmax_crossentropy(z2, yd, c, sparse, ls, from_logits, probs.reshape(-1, k),
                               out.reshape(-1), PARALLEL_MIN)
    return out, probs


def softmax_crossentropy_backward(probs, y, *, sparse=False, from_logits=True,
                                  label_smoothing=0.0, scale=None, dz=None):
    """Gradient w.r.t. the logits of sum_i scale_i * loss_i, from probs = softmax(z) (N, K).

    Arguments as in softmax_crossentropy; scale is None (1), a number (e.g. 1/N) or one
    float per sample (e.g. sample_weight / N). dz (N, K) may be probs itself (in place).
    Equals (p - y_smoothed) * scale where no clip is active. Returns dz.
    """
    fn = "softmax_crossentropy_backward"
    probs = _logits(probs, "probs", fn)
    sparse = _flag(sparse, "sparse", fn)
    from_logits = _flag(from_logits, "from_logits", fn)
    ls = check_float(label_smoothing, "label_smoothing", fn, low=0.0, high=1.0)
    k = probs.shape[-1]
    n = int(np.prod(probs.shape[:-1]))
    if sparse:
        c, yd = _sparse_labels(y, probs.shape, fn), _NO_DENSE
    else:
        c, yd = _NO_SPARSE, _dense_labels(y, probs.shape, fn).reshape(-1, k)
    s, stride = _scale(scale, n, fn)
    dz = prepare_out(dz, probs.shape, "dz", fn)
    _no_overlap(dz, "dz", [("probs", probs), ("y", y), ("scale", _scale_array(scale))], fn,
                allow_same=("probs",))
    _loss.softmax_crossentropy_backward(probs.reshape(-1, k), yd, c, sparse, ls, from_logits, s,
                                        stride, dz.reshape(-1, k), PARALLEL_MIN)
    return dz


def _binary_labels(y, shape, fn):
    if isinstance(y, np.ndarray):
        y = plain(y, "y", fn)
    if isinstance(y, np.ndarray) and shape[-1] == 1 and y.shape == tuple(shape[:-1]):
        y = y.reshape(shape)       # labels (N,) for outputs (N, 1), as Keras accepts
    return _dense_labels(y, shape, fn)


def sigmoid_binary_crossentropy(z, y, *, from_logits=True, label_smoothing=0.0, probs=None,
                                out=None):
    """Per-sample binary crossentropy of sigmoid(z), the mean over the last axis; z (N, K).

    y: labels of z's shape (any real dtype; (N,) accepted when K == 1). label_smoothing s:
    labels become y (1 - s) + s / 2. from_logits=True uses the stable form
    max(z, 0) - z y + log1p(exp(-|z|)); False gives Keras's clipped crossentropy of sigmoid(z).
    Returns (per_sample (N,), probs = sigmoid(z) (N, K)).
    """
    fn = "sigmoid_binary_crossentropy"
    z = _logits(z, "z", fn)
    from_logits = _flag(from_logits, "from_logits", fn)
    ls = check_float(label_smoothing, "label_smoothing", fn, low=0.0, high=1.0)
    k = z.shape[-1]
    yd = _binary_labels(y, z.shape, fn)
    probs = prepare_out(probs, z.shape, "probs", fn)
    out = prepare_out(out, z.shape[:-1], "out", fn)
    _no_overlap(probs, "probs", [("z", z), ("y", y), ("out", out)], fn)
    _no_overlap(out, "out", [("z", z), ("y", y)], fn)
    _loss.sigmoid_binary_crossentropy(z.reshape(-1, k), yd.reshape(-1, k), ls, from_logits,
                                      probs.reshape(-1, k), out.reshape(-1), PARALLEL_MIN)
    return out, probs


def sigmoid_binary_crossentropy_backward(probs, y, *, from_logits=True, label_smoothing=0.0,
                                         scale=None, dz=None):
    """Gradient w.r.t. the logits of sum_i scale_i * loss_i (loss_i a mean over K).

    dz = scale_i / K * (p - y_smoothed), zero where from_logits=False clips p. dz may be probs
    itself (in place). Returns dz (N, K).
    """
    fn = "sigmoid_binary_crossentropy_backward"
    probs = _logits(probs, "probs", fn)
    from_logits = _flag(from_logits, "from_logits", fn)
    ls = check_float(label_smoothing, "label_smoothing", fn, low=0.0, high=1.0)
    k = probs.shape[-1]
    n = int(np.prod(probs.shape[:-1]))
    yd = _binary_labels(y, probs.shape, fn)
    s, stride = _scale(scale, n, fn)
    dz = prepare_out(dz, probs.shape, "dz", fn)
    _no_overlap(dz, "dz", [("probs", probs), ("y", y), ("scale", _scale_array(scale))], fn,
                allow_same=("probs",))
    _loss.sigmoid_binary_crossentropy_backward(probs.reshape(-1, k), yd.reshape(-1, k), ls,
                                               from_logits, s, stride, dz.reshape(-1, k),
                                               PARALLEL_MIN)
    return dz
