"""Naive NumPy batch normalization over the last axis (oracle and baseline for fastnn.kernels.norm).

Textbook form in float64 (the oracle must be more precise than the kernel): view x (..., C) as
(M, C), batch mean and biased variance, xhat = (x - mean)*invstd, y = xhat*gamma + beta (Keras's
x*gamma*invstd + (beta - mean*gamma*invstd) without its cancellation), rounded to float32 at the
end; the backward pass is the usual chain of temporaries.
"""
from __future__ import annotations

import numpy as np


def _rows64(a):
    a = np.asarray(a)
    return a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]).astype(np.float64)


def _affine(xhat, gamma, beta):
    y = xhat if gamma is None else xhat * np.asarray(gamma, np.float64)
    return y if beta is None else y + np.asarray(beta, np.float64)


def batch_norm_moments(x, shift):
    """(2, C) float64: sum(x - shift) and sum((x - shift)**2) over the rows of float32 (..., C)."""
    d = _rows64(x) - np.asarray(shift, np.float64)
    return np.stack([d.sum(axis=0), (d * d).sum(axis=0)])


def batch_norm_grad_sums(dy, x, mean, y=None):
    """(3, C) float64: sum(g), sum(g*(x - mean)), sum(x - mean); g = dy (masked by y > 0 if y)."""
    g = _rows64(dy)
    if y is not None:
        g = g * (_rows64(y) > 0)
    d = _rows64(x) - np.asarray(mean, np.float64)
    return np.stack([g.sum(axis=0), (g * d).sum(axis=0), d.sum(axis=0)])


def batch_norm_train(x, gamma, beta, moving_mean, moving_var, momentum=0.99, epsilon=1e-3,
                     stats=None):
    """Training-mode batch norm of float32 (..., C) -> (y, mean (C,), invstd (C,)).

    Updates moving_mean and moving_var in place: m = m*momentum + batch*(1 - momentum), with
    the biased batch variance. stats=(count, shift, sums (2, C)): the mean and variance of
    `count` rows from their shifted sums (a larger batch that x is part of) instead of x's.
    """
    x2 = _rows64(x)
    if stats is None:
        mean = x2.mean(axis=0)
        var = ((x2 - mean) ** 2).mean(axis=0)
    else:
        count, shift, sums = stats
        d = sums[0] / count
        mean = np.asarray(shift, np.float64) + d
        var = np.maximum(sums[1] / count - d * d, 0.0)
    invstd = 1.0 / np.sqrt(var + epsilon)
    y = _affine((x2 - mean) * invstd, gamma, beta).astype(np.float32).reshape(np.shape(x))
    moving_mean[...] = moving_mean * momentum + mean * (1.0 - momentum)
    moving_var[...] = moving_var * momentum + var * (1.0 - momentum)
    return y, mean.astype(np.float32), invstd.astype(np.float32)


def batch_norm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    """Inference-mode batch norm of float32 (..., C) with the moving statistics -> y."""
    invstd = 1.0 / np.sqrt(np.asarray(moving_var, np.float64) + epsilon)
    xhat = (_rows64(x) - np.asarray(moving_mean, np.float64)) * invstd
    return _affine(xhat, gamma, beta).astype(np.float32).reshape(np.shape(x))


def inference_fold(gamma, beta, moving_var, epsilon=1e-3):
    """(scale, shift) of inference-mode batch norm: y = (x - moving_mean)*scale + shift, float32."""
    scale = 1.0 / np.sqrt(np.asarray(moving_var, np.float64) + epsilon)
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64)
    shift = np.zeros_like(scale) if beta is None else np.asarray(beta, np.float64)
    return scale.astype(np.float32), shift.astype(np.float32)


def batch_norm_backward(dy, x, gamma, mean, invstd, sums=None):
    """Training-mode gradient of float32 (..., C) batch norm -> (dx, dgamma (C,), dbeta (C,)).

    `mean` (float32, from batch_norm_train) stands for the batch mean of x, which is taken
    exactly here (as the kernel does) so the float32 rounding of a large mean does not leak in.
    sums=(count, None, s (3, C)): the statistics are those of `count` rows whose
    batch_norm_grad_sums are s (a larger batch that x is part of); dgamma, dbeta are theirs.
    """
    dy2, x2 = _rows64(dy), _rows64(x)
    m = dy2.shape[0]
    invstd = np.asarray(invstd, np.float64)
    mean = np.asarray(mean, np.float64)
    if sums is None:
        mean = mean + (x2 - mean).mean(axis=0)
        xhat = (x2 - mean) * invstd
        dbeta = dy2.sum(axis=0)
        dgamma = (dy2 * xhat).sum(axis=0)
    else:
        m, _, s = sums
        delta = s[2] / m
        mean = mean + delta
        xhat = (x2 - mean) * invstd
        dbeta = s[0]
        dgamma = (s[1] - delta * s[0]) * invstd
    g = 1.0 if gamma is None else np.asarray(gamma, np.float64)
    dx = (g * invstd / m) * (m * dy2 - dbeta - xhat * dgamma)
    return (dx.astype(np.float32).reshape(np.shape(x)), dgamma.astype(np.float32),
            dbeta.astype(np.float32))
