"""Dense layer kernels on float32 C-contiguous matrices: y = act(x @ w + b) and its backward.

The GEMM of each single-threaded share goes to fastnn's sgemm (fastnn.kernels.gemm, AVX-512 or
AVX2+FMA, GEMM = "auto" below) or to the BLAS NumPy links (np.matmul(out=)); the bias and the activation then run
as ONE fused compiled pass over y, row by row while each row is in cache (softmax across the
last axis included).
"""
from __future__ import annotations

import numpy as np

from fastnn._kernels import activation as _act
from fastnn.kernels import activation as _activation
from fastnn.kernels import conv as _conv
from fastnn.kernels import gemm as _gemm
from fastnn.kernels._checks import check_array, check_no_overlap, prepare_out

__all__ = ["dense", "dense_backward"]

_NO_BIAS = np.zeros(1, np.float32)
_SERIAL = 1 << 62      # bias_act's parallel threshold that keeps it in the calling thread
_BLOCK = 16            # column shares are cut at multiples of 16 floats (one cache line)

# Threads: as the convolution (fastnn.kernels.conv._run, docs/internals.md section 3), a large
# GEMM is cut into one contiguous share per thread, each running a single-threaded BLAS call
# (and the bias+activation epilogue of its part) start to finish. Measured on the shared 2-core
# machine: a multi-threaded OpenBLAS GEMM synchronises its threads many times per call, and
# with other processes running it took 8x longer than on one thread (M1 step 280 ms vs 35 ms);
# independent shares wait for each other once, at the end. Below SPLIT_FLOPS (SERIAL_FLOPS in a
# model step) one call does it all.
#
# The shares are column blocks of the weights, not row blocks of x: y[:, a:b] = x @ w[:, a:b]
# (forward), dx[:, a:b] = dy @ w[a:b].T and dw[a:b] = x[:, a:b].T @ dy (backward). Each thread
# then packs only its part of w instead of all of it. Measured on the M1 shapes (128 x 784 x
# 1024, 128 x 1024 x 1024, two threads, interleaved, medians): column shares 166-181 GFLOP/s,
# row shares 79-92 (best-of 159-182), BLAS's own threading 168-185. Softmax needs whole rows
# and keeps row shares.
SPLIT_FLOPS = 3.2e7

# GEMM of a single-threaded share: "auto" = fastnn's own sgemm (fastnn.kernels.gemm) in the
# flavours where it beats BLAS (_OWN_FLAVOURS) when the product is large enough, else NumPy's
# BLAS; "own" = fastnn's sgemm in any flavour that has one (avx2 too); "blas" = always np.matmul. Measured on the M1 per-thread blocks (one thread, interleaved, medians, vs
# OpenBLAS): forward 128 x 784|1024 x 512 1.10x, 256 x ... x 512 1.07-1.08x, dW (392|512) x 128
# x 1024 1.18-1.20x, dx 128 x 1024 x (400|512) 1.11-1.18x. OpenBLAS packs with a small
# microkernel for M = 128 and a scalar transposing pack for w.T; ours keeps a 6 x 64 tile in 24
# zmm and transposes w's rows 16 x 16 in registers. With "auto" results differ from `x @ w` in
# the last bits (another summation order).
#
# "auto" takes fastnn's sgemm in the avx512 flavour only. In the avx2 flavour OpenBLAS's
# Haswell kernel won on every M1 product (2026-12-07, one process, interleaved, medians of 7,
# FASTNN_ISA=avx2 + OPENBLAS_CORETYPE=Haswell, AVX-512 machine): a single-thread 512-column
# forward share 83-91 GFLOP/s ours vs 103-107 OpenBLAS; whole dense calls on two threads, ours
# vs OpenBLAS in BLAS_BLOCKS = 4 shares: forward 128 x 784 x 1024 1.32 vs 1.18 ms, 128 x 1024 x
# 1024 1.68 vs 1.53, 256 x 1024 x 1024 3.11 vs 2.79; backward 1.17 vs 1.15 and 3.04 vs 2.84.
GEMM = "auto"
_GEMM_MIN = 32          # smallest m, n, k sent to our kernel (below, tile padding dominates)
_OWN_FLAVOURS = (2,)    # fastnn.kernels.isa levels whose sgemm "auto" takes (2 = avx512)


def _own(m, k, n) -> bool:
    """Whether a call's GEMMs (m x k @ k x n, the whole product) run on fastnn's sgemm. Decided
    on the whole product, never per share: every element of an sgemm result is computed the same
    way wherever a share boundary falls, so its results do not depend on the thread count."""
    return (GEMM == "own" or (GEMM == "auto" and _gemm.level() in _OWN_FLAVOURS)) \
        and _gemm.available() and min(m, k, n) >= _GEMM_MIN


def _matmul(a, b, out, own):
    """out = a @ b for one share: fastnn's sgemm when own, else NumPy's BLAS."""
    if own:
        _gemm.matmul(a, b, out)
    else:
        np.matmul(a, b, out=out)


# BLAS shares: a product on BLAS (no sgemm in the portable flavour, GEMM = "blas", or a small
# product) is cut into at most this many blocks, by its shape only, and each block runs on a
# single-threaded BLAS: BLAS may round a row or column differently depending on where it falls
# in a GEMM, so shares that followed the thread count would change the bits with it.
# 4 blocks (2 per thread on two cores) rather than 8: each block packs all of x again. On the
# M1 products (avx2 flavour, OpenBLAS Haswell, two threads, ms for 2 / 4 / 8 blocks): forward
# 128 x 784 x 1024 1.15 / 1.18 / 1.25, 256 x 1024 x 1024 2.92 / 2.79 / 2.97; backward 128 x
# 1024 x 1024 2.83 / 2.84 / 2.93. Up to 4 threads share a product.
BLAS_BLOCKS = 4


def _split(work, n_items, flops, own):
    if own:
        # inside a model step (conv.blas_pinned) BLAS is single-threaded: split from SERIAL_FLOPS on
        if flops < (_conv.SERIAL_FLOPS if _conv.pinned() else SPLIT_FLOPS):
            work(0, 0, n_items, 0)
        else:
            _conv._run(work, n_items, flops)
        return
    nb = 1 if flops < _conv.SERIAL_FLOPS else min(n_items, BLAS_BLOCKS)
    bounds = [n_items * i // nb for i in range(nb + 1)]
    _conv._run_items(lambda i, nthreads: work(i, bounds[i], bounds[i + 1], nthreads), nb, flops)


def dense(x, w, b=None, activation="linear", *, out=None, **act_params):
    """y = activation(x @ w + b); x (M, K), w (K, U), b (U,) or None -> y (M, U), float32.

    activation: any name fastnn.kernels.activation.apply accepts, with its parameters as
    keywords (softmax / log_softmax act across the last axis). out: optional (M, U) buffer.
    """
    fn = "dense"
    x = check_array(x, "x", fn, ndim=2)
    w = check_array(w, "w", fn, ndim=2)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"{fn}: w must have shape ({x.shape[1]}, units) to match x's {x.shape[1]} "
                         f"features; received w of shape {w.shape}.")
    units = w.shape[1]
    if b is not None:
        b = check_array(b, "b", fn, shape=(units,))
    kind, p, axis = _activation.resolve(activation, act_params, f"{fn}(activation={activation!r})")
    if axis is not None and axis not in (-1, 1):
        raise ValueError(f"{fn}: the fused {activation} acts across the units (axis -1); received "
                         f"axis={axis}. Apply fastnn.kernels.activation.apply to the output instead.")
    out = prepare_out(out, (x.shape[0], units), "out", fn)
    for name, a in (("x", x), ("w", w), ("b", b)):
        if a is not None:
            check_no_overlap(out, a, "out", name, fn)
    smax = 1 if kind == -1 else 2 if kind == -2 else 0
    epilogue = not (b is None and kind == 0)
    bb = _NO_BIAS if b is None else b

    par = lambda nthreads: _SERIAL if nthreads == 1 else _activation.PARALLEL_MIN

    own = _own(x.shape[0], x.shape[1], units)

    def work_rows(task, m0, m1, nthreads):   # rows [m0, m1): GEMM, then bias+act while in cache
        _matmul(x[m0:m1], w, out[m0:m1], own)
        if epilogue and m1 > m0:
            _act.bias_act(out[m0:m1], bb, b is not None, max(kind, 0), smax, p, par(nthreads))

    def work_cols(task, j0, j1, nthreads):   # column blocks [j0, j1) of w and y
        u0, u1 = min(units, j0 * _BLOCK), min(units, j1 * _BLOCK)
        if u1 > u0:
            _matmul(x, w[:, u0:u1], out[:, u0:u1], own)
            if epilogue:
                _act.bias_act(out[:, u0:u1], bb[u0:u1] if b is not None else bb, b is not None,
                              max(kind, 0), 0, p, par(nthreads))

    flops = 2.0 * x.shape[0] * x.shape[1] * units
    if smax or units < 2 * _BLOCK:
        _split(work_rows, x.shape[0], flops, own)
    else:
        _split(work_cols, -(-units // _BLOCK), flops, own)
    return out


def dense_backward(x, w, dy, *, need_dx=True, dx=None, dw=None, db=None):
    """(dx, dw, db) of y = x @ w + b from dy = dL/d(x @ w + b) (M, U) (the activation's grad
    applied first): dx = dy @ w.T (M, K) (None when need_dx is False), dw = x.T @ dy (K, U),
    db = sum(dy, axis 0) (U,). dw and db may be views into a gradient arena (overwritten).
    """
    fn = "dense_backward"
    x = check_array(x, "x", fn, ndim=2)
    w = check_array(w, "w", fn, ndim=2, shape=(x.shape[1], None))
    dy = check_array(dy, "dy", fn, shape=(x.shape[0], w.shape[1]))
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_dx must be True or False; received {need_dx!r}.")
    dw = prepare_out(dw, w.shape, "dw", fn)
    db = prepare_out(db, (w.shape[1],), "db", fn)
    outs = [("dw", dw), ("db", db)]
    if need_dx:
        dx = prepare_out(dx, x.shape, "dx", fn)
        outs.append(("dx", dx))
    else:
        dx = None
    for i, (oname, o) in enumerate(outs):
        for iname, a in [("x", x), ("w", w), ("dy", dy)] + outs[i + 1:]:
            check_no_overlap(o, a, oname, iname, fn)
    m, k = x.shape
    if m == 0:
        dw.fill(0.0)
        db.fill(0.0)
        return dx, dw, db

    own = _own(m, k, w.shape[1])

    def work(task, j0, j1, nthreads):   # input features [a, b): rows of dw, columns of dx
        a, b = min(k, j0 * _BLOCK), min(k, j1 * _BLOCK)
        if b > a:
            _matmul(x[:, a:b].T, dy, dw[a:b], own)
            if need_dx:
                _matmul(dy, w[a:b].T, dx[:, a:b], own)
        if j0 == 0:
            np.sum(dy, axis=0, out=db)

    _split(work, -(-k // _BLOCK), (4.0 if need_dx else 2.0) * m * k * w.shape[1], own)
    return dx, dw, db
