"""Naive NumPy crossentropies and their gradients: the oracle for fastnn.kernels.loss.

Same functions as the kernel (without the out buffers), computed in the logits' dtype
(float64 logits give a float64 oracle). Values follow Keras's code line by line
(keras/src/backend/numpy/nn.py, keras/src/losses/losses.py); gradients go through the chain
rule explicitly (dL/dq masked by the clip, then the softmax / sigmoid Jacobian), a different
route from the kernel's closed forms.
"""
from __future__ import annotations

import numpy as np

EPSILON = 1e-7   # keras.backend.epsilon()


def _clip_bounds(dtype):
    # the bounds as the backend compares them: float32 tensors see float32(1 - 1e-7)
    return dtype.type(EPSILON), dtype.type(1.0 - EPSILON)


def _smoothed(y, z, sparse, ls, k):
    if sparse:
        y = (np.asarray(y).reshape(z.shape[:-1] + (1,)) == np.arange(k)).astype(z.dtype)   # one-hot
    y = np.asarray(y, dtype=z.dtype)
    return y * (1 - ls) + ls / k if ls else y


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_crossentropy(z, y, *, sparse=False, from_logits=True, label_smoothing=0.0):
    """(per_sample, probs): Keras categorical crossentropy of softmax(z)."""
    z = np.asarray(z)
    k = z.shape[-1]
    ys = _smoothed(y, z, sparse, label_smoothing, k)
    p = _softmax(z)
    if from_logits:
        zs = z - z.max(axis=-1, keepdims=True)
        log_prob = zs - np.log(np.exp(zs).sum(axis=-1, keepdims=True))
    else:
        lo, hi = _clip_bounds(p.dtype)
        q = p / p.sum(axis=-1, keepdims=True)
        log_prob = np.log(np.clip(q, lo, hi))
    return -(ys * log_prob).sum(axis=-1), p


def softmax_crossentropy_backward(probs, y, *, sparse=False, from_logits=True,
                                  label_smoothing=0.0, scale=None):
    """d(sum_i scale_i loss_i)/dz from probs = softmax(z)."""
    p = np.asarray(probs)
    k = p.shape[-1]
    ys = _smoothed(y, p, sparse, label_smoothing, k)
    if from_logits:
        # d/dz of sum(ys) * logsumexp(z) - ys . z
        dz = p * ys.sum(axis=-1, keepdims=True) - ys
    else:
        lo, hi = _clip_bounds(p.dtype)
        q = p / p.sum(axis=-1, keepdims=True)
        free = (q >= lo) & (q <= hi)        # the clip passes the gradient only here
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(free & (ys != 0), -ys / q, 0.0)      # dL/dq
        dz = p * (g - (p * g).sum(axis=-1, keepdims=True))   # softmax Jacobian-vector product
    s = 1.0 if scale is None else np.asarray(scale, dtype=p.dtype)
    return dz * (s if np.ndim(s) == 0 else s.reshape(s.shape + (1,) * (p.ndim - s.ndim)))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def sigmoid_binary_crossentropy(z, y, *, from_logits=True, label_smoothing=0.0):
    """(per_sample, probs): Keras binary crossentropy of sigmoid(z), mean over the last axis."""
    z = np.asarray(z)
    y = np.asarray(y, dtype=z.dtype).reshape(z.shape)
    ys = y * (1 - label_smoothing) + 0.5 * label_smoothing
    p = _sigmoid(z)
    if from_logits:
        bce = np.maximum(z, 0) - z * ys + np.log1p(np.exp(-np.abs(z)))
    else:
        lo, hi = _clip_bounds(p.dtype)
        c = np.clip(p, lo, hi)
        bce = -(ys * np.log(c) + (1 - ys) * np.log(1 - c))
    return bce.mean(axis=-1), p


def sigmoid_binary_crossentropy_backward(probs, y, *, from_logits=True, label_smoothing=0.0,
                                         scale=None):
    """d(sum_i scale_i loss_i)/dz from probs = sigmoid(z)."""
    p = np.asarray(probs)
    k = p.shape[-1]
    y = np.asarray(y, dtype=p.dtype).reshape(p.shape)
    ys = y * (1 - label_smoothing) + 0.5 * label_smoothing
    dz = (p - ys) / k
    if not from_logits:
        lo, hi = _clip_bounds(p.dtype)
        # the clip passes no gradient outside [lo, hi]; the sigmoid Jacobian p (1 - p) still
        # multiplies that 0, so a NaN probability stays NaN (as Keras's chain rule gives)
        dz = np.where((p >= lo) & (p <= hi), dz, np.where(np.isnan(p), np.nan, 0.0))
    s = 1.0 if scale is None else np.asarray(scale, dtype=p.dtype)
    return dz * (s if np.ndim(s) == 0 else s.reshape(s.shape + (1,) * (p.ndim - s.ndim)))
