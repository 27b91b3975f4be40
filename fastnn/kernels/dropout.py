"""Inverted dropout on float32 C-contiguous arrays of any shape, with a seeded counter-based mask.

Training-mode Keras 3 dropout: each element is kept with probability 1 - rate and scaled by
1/(1 - rate) (as x * float32(1/(1 - rate)), like tf.nn.dropout); dropped elements are 0. The
uint8 mask is a pure function of (seed, element index) (wyrand at a counter, see
kernels/dropout.pyx), so one
seed gives the same mask on any machine and for any thread count; the model passes
`fastnn._random.next_seed()` per call. Backward: dx = dy * mask / (1 - rate).
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._kernels import dropout as _dropout
from fastnn.kernels._checks import check_aliases, check_array, check_float, prepare_out

__all__ = ["dropout", "dropout_backward"]

UINT8 = np.dtype(np.uint8)


def _check_rate(rate, fn: str) -> float:
    return check_float(rate, "rate", fn, low=0.0, high=1.0, high_open=True)


def _check_seed(seed, fn: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{fn}: seed must be an int (e.g. fastnn._random.next_seed()); "
                        f"received {seed!r}.")
    return int(seed) % 2**64  # any int works; it is used modulo 2**64


def keep_scale(rate: float) -> np.float32:
    """The float32 factor of kept values, 1/(1 - rate)."""
    return np.float32(1.0 / (1.0 - rate))


def drop_threshold(rate: float) -> int:
    """The 32-bit threshold: an element is dropped iff its uniform u32 < floor(rate * 2**32)."""
    return min(int(rate * 2**32), 2**32 - 1)


def dropout(x, rate, seed, *, out=None, mask=None, offset=0):
    """Inverted dropout of float32 (...): y = x * float32(1/(1 - rate)) where kept, else 0.

    x any shape, C-contiguous float32; rate in [0, 1); seed an int (one seed = one mask).
    out (x's shape, float32) may be x itself; mask (x's shape, uint8) receives 1 = kept.
    rate 0 copies x and sets the mask to ones. offset (int >= 0): element i draws as element
    offset + i of one longer mask, so slices of a batch (the processes of a data-parallel step,
    offset = first row * elements per row) reproduce the whole batch's mask. Returns (y, mask).
    """
    fn = "dropout"
    x = check_array(x, "x", fn)
    rate = _check_rate(rate, fn)
    seed = _check_seed(seed, fn)
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or not 0 <= offset < 2**63:
        raise ValueError(f"{fn}: offset must be an int in [0, 2**63); received offset={offset!r}.")
    out = prepare_out(out, x.shape, "out", fn)
    mask = prepare_out(mask, x.shape, "mask", fn, dtype=UINT8)
    check_aliases(fn, [("out", out), ("mask", mask)], [("x", x)], same_ok=(("out", "x"),))
    if x.size == 0:
        return out, mask
    if rate == 0.0:
        if out is not x:
            np.copyto(out, x)
        mask.fill(1)
        return out, mask
    _dropout.dropout(x.reshape(-1), seed, drop_threshold(rate), keep_scale(rate),
                     out.reshape(-1), mask.reshape(-1), int(offset))
    return out, mask


def dropout_backward(dy, mask, rate, *, dx=None):
    """Gradient of inverted dropout for float32 (...): dx = dy * float32(1/(1 - rate)) where mask, else 0.

    dy any shape, C-contiguous float32; mask the uint8 mask of the forward call (nonzero =
    kept); rate the forward rate in [0, 1). dx (dy's shape) may be dy itself. Returns dx.
    """
    fn = "dropout_backward"
    dy = check_array(dy, "dy", fn)
    mask = check_array(mask, "mask", fn, dtype=UINT8, shape=dy.shape)
    rate = _check_rate(rate, fn)
    dx = prepare_out(dx, dy.shape, "dx", fn)
    check_aliases(fn, [("dx", dx)], [("dy", dy), ("mask", mask)], same_ok=(("dx", "dy"),))
    if dy.size:
        _dropout.dropout_backward(dy.reshape(-1), mask.reshape(-1), keep_scale(rate),
                                  dx.reshape(-1))
    return dx
