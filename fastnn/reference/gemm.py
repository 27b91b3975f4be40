"""Naive NumPy twin of fastnn.kernels.gemm (oracle for its tests): the textbook triple sum."""
from __future__ import annotations

import numpy as np


def matmul(a, b, out=None, accumulate=False):
    """a (M, K) @ b (K, N) in float64, plus out (M, N) when accumulate (out is only read)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    y = np.einsum("mk,kn->mn", a64, b64)
    if accumulate:
        y = y + np.asarray(out, np.float64)
    return y
