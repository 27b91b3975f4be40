# cython: language_level=3
"""Activation kernels: every Keras 3 activation and its derivative, float32, contiguous.

Design note
- Elementwise activations are one loop per kind (fnn_f_<kind> / fnn_b_<kind>, plain C in
  activation.pxd): the kind is dispatched once per chunk through a table, never per element,
  and every loop body is straight-line float32 code (selects, fnn_* polynomials), so gcc
  vectorises it (SSE2, and an AVX2+FMA body picked per call by the module's flavour, set_isa). Only gelu's erf
  form calls libm (erfcf), which stays scalar. This file holds the drivers: chunking, prange.
- Big arrays are cut into CHUNK-float pieces run by an OpenMP `prange` (dynamic schedule: on a
  shared machine a descheduled thread's share is taken over instead of waited for; one atomic
  per 64 KB costs nothing); arrays smaller than the
  caller's `par_min` (measured in bench/test_activation.py) run serially on the calling thread,
  because starting the team costs more than the loop.
- Backward uses what is cheapest: y where the derivative is a function of y (sigmoid, tanh,
  elu, selu, exponential, softmax), x otherwise. `x` and `y` may be the same buffer (forward in
  place).
- Softmax / log-softmax of any axis: the array is seen as (outer, K, inner); inner == 1 is a
  row kernel (max, exp, sum, scale), inner > 1 is processed in column blocks so that the
  loops run over the contiguous inner axis. Max is subtracted first: no overflow at |x| = 1e4.
- `bias_act` is the dense epilogue: y = act(y + b) row by row, one pass over y while each row
  is in L1 (softmax across the row included).
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY


cdef void _apply_isa(int isa) noexcept nogil:
    fnn_act_set_isa(isa)

include "isa.pxi"

cdef enum:
    CHUNK = 16384       # floats per parallel task (64 KB: L2-resident)
    COLBLOCK = 128      # columns per task in the strided softmax

# ------------------------------------------------------------------------ Python entry points

cdef inline void _params(object params, float* p):
    cdef int i
    for i in range(4):
        p[i] = params[i] if i < len(params) else 0.0


def forward(int kind, const float[::1] x__n, float[::1] y__n,  # IN, OUT
            tuple params, Py_ssize_t par_min):
    """y = act_kind(x) elementwise over n floats; parallel over chunks when n >= par_min."""
    cdef Py_ssize_t n = x__n.shape[0], nchunks, c, start
    cdef float p[4]
    if n == 0:
        return
    if kind < 0 or kind >= ACT_COUNT:
        raise ValueError(f"unknown activation kind {kind}")
    _params(params, p)
    cdef const float* px = &x__n[0]
    cdef float* py = &y__n[0]
    if n < par_min:
        with nogil:
            fnn_act_forward(kind, px, py, n, p)
        return
    nchunks = (n + CHUNK - 1) // CHUNK
    with nogil:
        for c in prange(nchunks, schedule="dynamic"):
            start = c * CHUNK
            fnn_act_forward(kind, px + start, py + start, min(<Py_ssize_t>CHUNK, n - start), p)


def backward(int kind, const float[::1] x__n, const float[::1] y__n, const float[::1] dy__n,  # IN
             float[::1] dx__n,  # OUT
             tuple params, Py_ssize_t par_min):
    """dx = dy * act_kind'(x) elementwise (using y = act(x) where cheaper)."""
    cdef Py_ssize_t n = x__n.shape[0], nchunks, c, start
    cdef float p[4]
    if n == 0:
        return
    if kind < 0 or kind >= ACT_COUNT:
        raise ValueError(f"unknown activation kind {kind}")
    _params(params, p)
    cdef const float* px = &x__n[0]
    cdef const float* py = &y__n[0]
    cdef const float* pdy = &dy__n[0]
    cdef float* pdx = &dx__n[0]
    if n < par_min:
        with nogil:
            fnn_act_backward(kind, px, py, pdy, pdx, n, p)
        return
    nchunks = (n + CHUNK - 1) // CHUNK
    with nogil:
        for c in prange(nchunks, schedule="dynamic"):
            start = c * CHUNK
            fnn_act_backward(kind, px + start, py + start, pdy + start, pdx + start,
                         min(<Py_ssize_t>CHUNK, n - start), p)


# ----------------------------------------------------------------------------------- softmax

cdef void _softmax_rows(const float* x, float* y, Py_ssize_t rows, Py_ssize_t k,
                        bint log) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(rows):
        fnn_softmax_row(x + r * k, y + r * k, k, log)


cdef void _softmax_cols(const float* x, float* y, Py_ssize_t k, Py_ssize_t inner,
                        Py_ssize_t i0, Py_ssize_t i1, bint log) noexcept nogil:
    # columns i0..i1 of one (k, inner) slice; loops run along the contiguous inner axis
    cdef float m[COLBLOCK]
    cdef float s[COLBLOCK]
    cdef Py_ssize_t w = i1 - i0, j, i
    cdef const float* xr
    cdef float* yr
    cdef float cmp[COLBLOCK]
    cdef float e, t
    for i in range(w):
        m[i] = -INFINITY
        s[i] = 0.0
        cmp[i] = 0.0
    for j in range(k):
        xr = x + j * inner + i0
        for i in range(w):
            m[i] = xr[i] if xr[i] > m[i] else m[i]
    for j in range(k):
        xr = x + j * inner + i0
        for i in range(w):
            # Kahan-compensated: one running sum per column would otherwise lose ~sqrt(k) ulp
            e = fnn_exp(xr[i] - m[i]) - cmp[i]
            t = s[i] + e
            cmp[i] = (t - s[i]) - e
            s[i] = t
    for i in range(w):
        if log:
            s[i] = fnn_logs(s[i])
        else:
            s[i] = 1.0 / s[i]
    for j in range(k):
        xr = x + j * inner + i0
        yr = y + j * inner + i0
        if log:
            for i in range(w):
                yr[i] = (xr[i] - m[i]) - s[i]
        else:
            for i in range(w):
                yr[i] = fnn_exp(xr[i] - m[i]) * s[i]


def softmax(const float[::1] x, float[::1] y,  # IN (outer*k*inner), OUT (same)
            Py_ssize_t outer, Py_ssize_t k, Py_ssize_t inner, bint log, Py_ssize_t par_min):
    """Softmax (log=False) or log-softmax over the middle axis of x seen as (outer, k, inner)."""
    cdef Py_ssize_t n = outer * k * inner, rows_per, ntask, t, r0, r1, nb, o, b
    if n == 0:
        return
    cdef const float* px = &x[0]
    cdef float* py = &y[0]
    if inner == 1:
        rows_per = max(1, CHUNK // k)
        ntask = (outer + rows_per - 1) // rows_per
        if n < par_min or ntask == 1:
            with nogil:
                _softmax_rows(px, py, outer, k, log)
            return
        with nogil:
            for t in prange(ntask, schedule="dynamic"):
                r0 = t * rows_per
                r1 = min(outer, r0 + rows_per)
                _softmax_rows(px + r0 * k, py + r0 * k, r1 - r0, k, log)
        return
    nb = (inner + COLBLOCK - 1) // COLBLOCK
    ntask = outer * nb
    with nogil:
        if n < par_min:
            for t in range(ntask):
                o = t // nb
                b = t % nb
                _softmax_cols(px + o * k * inner, py + o * k * inner, k, inner, b * COLBLOCK,
                              min(inner, (b + 1) * COLBLOCK), log)
        else:
            for t in prange(ntask, schedule="dynamic"):
                o = t // nb
                b = t % nb
                _softmax_cols(px + o * k * inner, py + o * k * inner, k, inner, b * COLBLOCK,
                              min(inner, (b + 1) * COLBLOCK), log)


cdef void _softmax_b_rows(const float* y, const float* dy, float* dx, Py_ssize_t rows,
                          Py_ssize_t k, bint log) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(rows):
        fnn_softmax_row_b(y + r * k, dy + r * k, dx + r * k, k, log)


cdef void _softmax_b_cols(const float* y, const float* dy, float* dx, Py_ssize_t k,
                          Py_ssize_t inner, Py_ssize_t i0, Py_ssize_t i1, bint log) noexcept nogil:
    cdef float s[COLBLOCK]
    cdef Py_ssize_t w = i1 - i0, j, i, off
    for i in range(w):
        s[i] = 0.0
    for j in range(k):
        off = j * inner + i0
        if log:
            for i in range(w):
                s[i] += dy[off + i]
        else:
            for i in range(w):
                s[i] += dy[off + i] * y[off + i]
    for j in range(k):
        off = j * inner + i0
        if log:
            for i in range(w):
                dx[off + i] = dy[off + i] - fnn_exp(y[off + i]) * s[i]
        else:
            for i in range(w):
                dx[off + i] = y[off + i] * (dy[off + i] - s[i])


def softmax_backward(const float[::1] y, const float[::1] dy,  # IN
                     float[::1] dx,  # OUT
                     Py_ssize_t outer, Py_ssize_t k, Py_ssize_t inner, bint log, Py_ssize_t par_min):
    """Gradient of (log-)softmax over the middle axis of (outer, k, inner), from y = forward."""
    cdef Py_ssize_t n = outer * k * inner, rows_per, ntask, t, r0, r1, nb, o, b, base
    if n == 0:
        return
    cdef const float* py = &y[0]
    cdef const float* pdy = &dy[0]
    cdef float* pdx = &dx[0]
    if inner == 1:
        rows_per = max(1, CHUNK // k)
        ntask = (outer + rows_per - 1) // rows_per
        if n < par_min or ntask == 1:
            with nogil:
                _softmax_b_rows(py, pdy, pdx, outer, k, log)
            return
        with nogil:
            for t in prange(ntask, schedule="dynamic"):
                r0 = t * rows_per
                r1 = min(outer, r0 + rows_per)
                _softmax_b_rows(py + r0 * k, pdy + r0 * k, pdx + r0 * k, r1 - r0, k, log)
        return
    nb = (inner + COLBLOCK - 1) // COLBLOCK
    ntask = outer * nb
    with nogil:
        if n < par_min:
            for t in range(ntask):
                o = t // nb
                b = t % nb
                base = o * k * inner
                _softmax_b_cols(py + base, pdy + base, pdx + base, k, inner, b * COLBLOCK,
                                min(inner, (b + 1) * COLBLOCK), log)
        else:
            for t in prange(ntask, schedule="dynamic"):
                o = t // nb
                b = t % nb
                base = o * k * inner
                _softmax_b_cols(py + base, pdy + base, pdx + base, k, inner, b * COLBLOCK,
                                min(inner, (b + 1) * COLBLOCK), log)


# ------------------------------------------------------------------------ dense epilogue

cdef void _bias_act_rows(float* y, Py_ssize_t ld, const float* b, bint has_b, Py_ssize_t rows,
                         Py_ssize_t u, int kind, int smax, const float* p) noexcept nogil:
    # rows of u contiguous floats, ld floats apart (ld > u: a column block of a wider matrix)
    cdef Py_ssize_t r, j
    cdef float* yr
    for r in range(rows):
        yr = y + r * ld
        if has_b:
            fnn_add_bias(yr, b, u)
        if smax:
            fnn_softmax_row(yr, yr, u, smax == 2)
        else:
            fnn_act_forward(kind, yr, yr, u, p)


def bias_act(float[:, :] y__mu,  # IN/OUT: x @ w on entry, act(x @ w + b) on exit
             const float[::1] b__u,  # IN (ignored when has_b is False)
             bint has_b, int kind, int smax, tuple params, Py_ssize_t par_min):
    """In place y = act(y + b) row by row (smax 1: softmax, 2: log-softmax across the row).

    y's rows must be contiguous (unit column stride); they may be a column block of a wider
    C-contiguous matrix (the dense kernel's per-thread column shares)."""
    cdef Py_ssize_t m = y__mu.shape[0], u = y__mu.shape[1], rows_per, ntask, t, r0, r1, ld
    cdef float p[4]
    if m == 0 or u == 0:
        return
    if kind < 0 or kind >= ACT_COUNT:
        raise ValueError(f"unknown activation kind {kind}")
    if u > 1 and y__mu.strides[1] != sizeof(float):
        raise ValueError("bias_act: the rows of y must be contiguous (column stride 4 bytes)")
    ld = y__mu.strides[0] // <Py_ssize_t>sizeof(float) if m > 1 else u
    _params(params, p)
    cdef float* py = &y__mu[0, 0]
    cdef const float* pb = &b__u[0] if has_b else <const float*>0
    rows_per = max(1, CHUNK // u)
    ntask = (m + rows_per - 1) // rows_per
    if m * u < par_min or ntask == 1:
        with nogil:
            _bias_act_rows(py, ld, pb, has_b, m, u, kind, smax, p)
        return
    with nogil:
        for t in prange(ntask, schedule="dynamic"):
            r0 = t * rows_per
            r1 = min(m, r0 + rows_per)
            _bias_act_rows(py + r0 * ld, ld, pb, has_b, r1 - r0, u, kind, smax, p)
