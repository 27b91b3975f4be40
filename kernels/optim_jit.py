"""Per-variable sums of squares for the optimizer's norm clipping (Numba).

Design note
-----------
The fused optimizer step itself runs in fastnn._kernels.optim_step (C, one pass over memory).
Norm clipping (`clipnorm` per variable, `global_clipnorm` over all) first needs the squared
L2 norm of every variable's gradient run inside the flat float32 buffer `g__n`, whose k
variables are given by the int64 offsets `seg__k1` (k+1 of them). `sumsq_segments` computes
them in one parallel pass over CHUNK-element chunks with float64 accumulation; only this
reduction allows reassociation (never nnan/ninf: a NaN gradient must make the norm NaN, as in
Keras). The module is imported only when a step clips by norm, so a plain step never pays
for loading Numba.
"""
import types

import numpy as np
from numba import njit, prange

# Reassociation only where a reduction needs it; never nnan/ninf (NaN must stay visible).
SUM_FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})

CHUNK = 16384  # elements per parallel work item: 64 KiB per stream, a few streams fit L2

@njit(inline="always", **SUM_FLAGS)
def _first_segment(seg__k1, k, start):
    """The variable holding element `start`: largest s < k with seg[s] <= start."""
    lo, hi = 0, k - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if seg__k1[mid] <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo


@njit(**SUM_FLAGS)
def _sumsq(x, a, b):
    """sum(x[a:b]**2) accumulated in float64."""
    x = x[a:b]  # index from 0: LLVM vectorised only loops over views starting at 0
    acc = 0.0
    for i in range(x.shape[0]):
        xi = np.float64(x[i])
        acc += xi * xi
    return acc


def _sumsq_segments(g__n, seg__k1, pieces, out__k):
    """out__k[s] = sum of g[seg[s]:seg[s+1]]**2 in float64, for every variable s.

    One parallel pass: each chunk writes the partial sum of every variable it touches into
    `pieces` at index chunk+variable (unique, since along the buffer one of the two grows at
    each step), then a short serial pass adds the pieces per variable.
    pieces: float64 (nchunks + k,) workspace; out__k: float64 (k,), overwritten.
    """
    n = g__n.shape[0]
    k = seg__k1.shape[0] - 1
    nchunks = (n + CHUNK - 1) // CHUNK
    for ci in prange(nchunks):
        a = ci * CHUNK
        end = min(a + CHUNK, n)
        s = _first_segment(seg__k1, k, a)
        while a < end:
            b = min(end, seg__k1[s + 1])
            pieces[ci + s] = _sumsq(g__n, a, b)
            a = b
            s += 1
    out__k[:] = 0.0
    for ci in range(nchunks):
        a = ci * CHUNK
        end = min(a + CHUNK, n)
        s = _first_segment(seg__k1, k, a)
        while a < end:
            b = min(end, seg__k1[s + 1])
            out__k[s] += pieces[ci + s]
            a = b
            s += 1


def _named(fn, name):
    """fn under another __qualname__: Numba's on-disk cache is keyed by qualname and line, so
    two dispatchers of one Python function would load each other's machine code."""
    g = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    g.__qualname__ = name
    return g


# The same pass, parallel and serial: Numba's OpenMP layer terminates a forked child that runs a
# parallel function once the parent has (fastnn.kernels.threads: a forked child runs serial).
# The chunk pieces are the same, so both give the same bits.
sumsq_segments = njit(parallel=True, **SUM_FLAGS)(_named(_sumsq_segments, "sumsq_segments"))
sumsq_segments_serial = njit(**SUM_FLAGS)(_named(_sumsq_segments, "sumsq_segments_serial"))


def n_pieces(n, k):
    """Size of the `pieces` workspace of sumsq_segments for n elements in k variables."""
    return (n + CHUNK - 1) // CHUNK + k


__all__ = ["sumsq_segments", "n_pieces", "CHUNK"]
