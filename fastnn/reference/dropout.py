"""Naive NumPy inverted dropout (oracle and baseline for fastnn.kernels.dropout).

Draws the very same counter-based mask as the compiled kernel, vectorized in uint64 NumPy:
u32 of element i = half (i % 2) of splitmix64(key + (i//2 + 1) * G), key = splitmix64(seed + G);
kept iff u32 >= floor(rate * 2**32). Values as Keras: np.where(mask, x / keep_prob, 0).
"""
from __future__ import annotations

import numpy as np

_G = 0x9E3779B97F4A7C15
_M64 = 2**64 - 1


def _mix64_int(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_u32(n: int, seed: int) -> np.ndarray:
    """The n 32-bit uniforms (as uint64) that decide the mask of a call with `seed`."""
    key = np.uint64(_mix64_int(int(seed) % 2**64 + _G))
    pairs = np.arange(1, (n + 1) // 2 + 1, dtype=np.uint64)
    h = _mix64(key + pairs * np.uint64(_G))
    u = np.empty(2 * len(h), np.uint64)
    u[0::2] = h & np.uint64(0xFFFFFFFF)
    u[1::2] = h >> np.uint64(32)
    return u[:n]


def dropout(x, rate, seed):
    """Inverted dropout of float32 (...) -> (y, mask uint8)."""
    x = np.asarray(x, np.float32)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1); received {rate!r}.")
    threshold = min(int(rate * 2**32), 2**32 - 1)
    mask = (uniform_u32(x.size, seed) >= np.uint64(threshold)).reshape(x.shape)
    keep = np.float32(1.0 - rate)
    y = np.where(mask, x / keep, np.float32(0)).astype(np.float32)
    return y, mask.astype(np.uint8)


def dropout_backward(dy, mask, rate):
    """dx = dy / (1 - rate) where the mask is set, else 0."""
    dy = np.asarray(dy, np.float32)
    keep = np.float32(1.0 - rate)
    return np.where(mask != 0, dy / keep, np.float32(0)).astype(np.float32)
