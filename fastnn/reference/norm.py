"""Naive NumPy batch normalization over the last axis (oracle and baseline for fastnn.kernels.norm).

Textbook form: view x (..., C) as (M, C), statistics with NumPy reductions in float64 (so a
large mean cannot destroy the variance), the Keras 3 folded affine y = x*scale + shift in
float32, and the usual chain of temporaries for the backward pass.
"""
from __future__ import annotations

import numpy as np


def _rows(a):
    a = np.asarray(a, np.float32)
    return a.reshape(-1, a.shape[-1])


def _fold(mean, var, gamma, beta, epsilon):
    invstd = 1.0 / np.sqrt(var + epsilon)
    scale = invstd if gamma is None else np.asarray(gamma, np.float64) * invstd
    shift = -mean * scale if beta is None else np.asarray(beta, np.float64) - mean * scale
    return invstd, scale.astype(np.float32), shift.astype(np.float32)


def batch_norm_train(x, gamma, beta, moving_mean, moving_var, momentum=0.99, epsilon=1e-3):
    """Training-mode batch norm of float32 (..., C) -> (y, mean (C,), invstd (C,)).

    Updates moving_mean and moving_var in place: m = m*momentum + batch*(1 - momentum), with
    the biased batch variance.
    """
    x2 = _rows(x).astype(np.float64)
    mean = x2.mean(axis=0)
    var = ((x2 - mean) ** 2).mean(axis=0)
    invstd, scale, shift = _fold(mean, var, gamma, beta, epsilon)
    y = (_rows(x) * scale + shift).reshape(np.shape(x))
    moving_mean[...] = moving_mean * momentum + mean * (1.0 - momentum)
    moving_var[...] = moving_var * momentum + var * (1.0 - momentum)
    return y, mean.astype(np.float32), invstd.astype(np.float32)


def batch_norm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    """Inference-mode batch norm of float32 (..., C) with the moving statistics -> y."""
    mean = np.asarray(moving_mean, np.float64)
    var = np.asarray(moving_var, np.float64)
    _, scale, shift = _fold(mean, var, gamma, beta, epsilon)
    return (_rows(x) * scale + shift).reshape(np.shape(x))


def batch_norm_backward(dy, x, gamma, mean, invstd):
    """Training-mode gradient of float32 (..., C) batch norm -> (dx, dgamma (C,), dbeta (C,))."""
    dy2 = _rows(dy)
    m = dy2.shape[0]
    invstd = np.asarray(invstd, np.float32)
    xhat = (_rows(x) - np.asarray(mean, np.float32)) * invstd
    dbeta = dy2.sum(axis=0, dtype=np.float64)
    dgamma = (dy2 * xhat).sum(axis=0, dtype=np.float64)
    g = np.ones_like(invstd) if gamma is None else np.asarray(gamma, np.float32)
    dx = (g * invstd / m) * (m * dy2 - dbeta.astype(np.float32) - xhat * dgamma.astype(np.float32))
    return (dx.astype(np.float32).reshape(np.shape(x)), dgamma.astype(np.float32),
            dbeta.astype(np.float32))
