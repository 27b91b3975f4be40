"""Naive NumPy inverted dropout (oracle and baseline for fastnn.kernels.dropout).

Draws the very same counter-based mask as the compiled kernel, vectorized in uint64 NumPy.
W(k, c) = mum(s, s ^ WY1), s = k + c*WY0 (wyrand; mum(a, b) = high xor low 64 bits of the 128-bit
product a*b). Element i has the 32-bit uniform U_i = hi_i * 2**24 + lo_i with
hi_i = byte (i % 8) of W(key, i//8 + 1), lo_i = low 24 bits of W(key2, i + 1);
key = splitmix64(seed + G), key2 = splitmix64(key + G). Kept iff U_i >= floor(rate * 2**32).
Values: np.where(mask, x * float32(1/(1 - rate)), 0).
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


_WY0 = np.uint64(0xA0761D6478BD642F)
_WY1 = np.uint64(0xE7037ED1A0B428DB)
_LO = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def _mum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """High xor low 64 bits of the 128-bit products a*b, by 32-bit schoolbook multiplication."""
    a0, a1, b0, b1 = a & _LO, a >> _32, b & _LO, b >> _32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _32) + (p01 & _LO) + (p10 & _LO)   # < 3 * 2**32: no overflow
    lo = (p00 & _LO) | ((mid & _LO) << _32)
    hi = p11 + (p01 >> _32) + (p10 >> _32) + (mid >> _32)
    return hi ^ lo


def _wyrand(key: int, counters: np.ndarray) -> np.ndarray:
    s = np.uint64(key) + counters.astype(np.uint64) * _WY0
    return _mum(s, s ^ _WY1)


def uniform_u32(n: int, seed: int, offset: int = 0) -> np.ndarray:
    """The 32-bit uniforms U_i (as uint64), i = offset .. offset + n - 1, that decide the mask
    of a call with `seed`."""
    key = _mix64_int(int(seed) % 2**64 + _G)
    key2 = _mix64_int(key + _G)
    first, last = offset // 8, (offset + n + 7) // 8
    h = _wyrand(key, np.arange(first + 1, last + 1, dtype=np.uint64))
    hi = np.empty(8 * len(h), np.uint64)
    for q in range(8):
        hi[q::8] = (h >> np.uint64(8 * q)) & np.uint64(0xFF)
    hi = hi[offset - 8 * first:offset - 8 * first + n]
    lo = _wyrand(key2, np.arange(offset + 1, offset + n + 1, dtype=np.uint64)) & np.uint64(0xFFFFFF)
    return (hi << np.uint64(24)) | lo


def dropout(x, rate, seed, offset=0):
    """Inverted dropout of float32 (...) -> (y, mask uint8); element i draws as element
    offset + i of a longer array."""
    x = np.asarray(x, np.float32)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1); received {rate!r}.")
    threshold = min(int(rate * 2**32), 2**32 - 1)
    mask = (uniform_u32(x.size, seed, offset) >= np.uint64(threshold)).reshape(x.shape)
    scale = np.float32(1.0 / (1.0 - rate))
    y = np.where(mask, x * scale, np.float32(0)).astype(np.float32)
    return y, mask.astype(np.uint8)


def dropout_backward(dy, mask, rate):
    """dx = dy * float32(1/(1 - rate)) where the mask is set, else 0."""
    dy = np.asarray(dy, np.float32)
    scale = np.float32(1.0 / (1.0 - rate))
    return np.where(mask != 0, dy * scale, np.float32(0)).astype(np.float32)
