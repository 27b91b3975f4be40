# cython: language_level=3
"""Pooling kernels over NHWC float32: max and average, forward and backward, and global pools.

Design note
-----------
* Layout: NHWC, C-contiguous, so every output pixel owns a run of C contiguous channels and the
  innermost loop of every kernel walks channels: unit stride, no branches, which gcc turns into
  SIMD loads, compares and blends (max) or adds (average). 1-D pools run as 2-D pools with H = 1,
  global pools as a window covering the whole image.
* Forward (max, average): `prange` over the N*OH output rows; each output pixel reads the valid
  part of its window (padded cells are skipped, never materialised: Keras's "same" max pooling
  treats pads as -inf and "same" average pooling leaves them out of the divisor).
* Max: the running maximum starts at the window's first valid cell and a later cell replaces it
  when `best == best and not (v <= best)`: that is v > best, or v is NaN while best is not.
  So ties keep the first maximum in window order (row-major over the window), and the first NaN
  of a window wins and stays, as np.max/np.argmax do. argmax stores, per output, the flat index
  (h*W + w)*C + c into one image; the backward needs nothing else.
* Max backward: the geometry is not known there (only argmax), so it zeroes dx and scatters dy
  to argmax, accumulating where windows overlap. `prange` over images: an index only ever points
  into its own image, so no two threads write the same cell. Out-of-range indices are counted and
  skipped (one unsigned compare), never written; the caller raises when the count is not zero.
* Average backward: a gather, not a scatter. For an input row h the outputs whose window covers
  it are the contiguous range oh in [ceil((h+pt-kh+1)/sh), floor((h+pt)/sh)] (same for w), so
  each dx cell is written once, from dy / count, with `prange` over N*H rows and no zero pass.
* Global average: sums over H*W run in double (one C-wide accumulator per thread), because a
  float32 running sum over thousands of cells would lose digits that Keras keeps.
"""

cimport cython
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.string cimport memset
cimport openmp


cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline void _max_update(const float* xr, float* yr, int* ar, int base,
                             Py_ssize_t C) noexcept nogil:
    """yr, ar <- the larger of (yr, xr) per channel; first max wins ties, first NaN sticks."""
    cdef Py_ssize_t c
    cdef float v, b
    cdef bint take
    for c in range(C):
        v = xr[c]
        b = yr[c]
        take = (b == b) & (not (v <= b))
        yr[c] = v if take else b
        ar[c] = <int>(base + c) if take else ar[c]


cdef void max_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
    int[:, :, :, ::1] argmax__nhwc,             # OUT (N, OH, OW, C): flat index into H*W*C
) noexcept nogil:
    cdef Py_ssize_t N = x__nhwc.shape[0], H = x__nhwc.shape[1]
    cdef Py_ssize_t W = x__nhwc.shape[2], C = x__nhwc.shape[3]
    cdef Py_ssize_t OH = y__nhwc.shape[1], OW = y__nhwc.shape[2]
    cdef Py_ssize_t r, n, oh, ow, h, w, hs, he, ws, we, c
    cdef const float* xr
    cdef float* yr
    cdef int* ar
    cdef int base
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    for r in prange(N * OH, schedule="static"):
        n = r // OH
        oh = r - n * OH
        hs = _imax(oh * sh - pad_top, 0)
        he = _imin(oh * sh - pad_top + kh, H)
        for ow in range(OW):
            ws = _imax(ow * sw - pad_left, 0)
            we = _imin(ow * sw - pad_left + kw, W)
            yr = &y__nhwc[n, oh, ow, 0]
            ar = &argmax__nhwc[n, oh, ow, 0]
            # the window's first valid cell seeds the running maximum (pads are never chosen)
            xr = &x__nhwc[n, hs, ws, 0]
            base = <int>((hs * W + ws) * C)
            for c in range(C):
                yr[c] = xr[c]
                ar[c] = <int>(base + c)
            for h in range(hs, he):
                for w in range(ws, we):
                    if h == hs and w == ws:
                        continue
                    _max_update(&x__nhwc[n, h, w, 0], yr, ar, <int>((h * W + w) * C), C)


cdef void avg_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
) noexcept nogil:
    cdef Py_ssize_t N = x__nhwc.shape[0], H = x__nhwc.shape[1]
    cdef Py_ssize_t W = x__nhwc.shape[2], C = x__nhwc.shape[3]
    cdef Py_ssize_t OH = y__nhwc.shape[1], OW = y__nhwc.shape[2]
    cdef Py_ssize_t r, n, oh, ow, h, w, hs, he, ws, we, c
    cdef const float* xr
    cdef float* yr
    cdef float count
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    for r in prange(N * OH, schedule="static"):
        n = r // OH
        oh = r - n * OH
        hs = _imax(oh * sh - pad_top, 0)
        he = _imin(oh * sh - pad_top + kh, H)
        for ow in range(OW):
            ws = _imax(ow * sw - pad_left, 0)
            we = _imin(ow * sw - pad_left + kw, W)
            yr = &y__nhwc[n, oh, ow, 0]
            for c in range(C):
                yr[c] = 0.0
            for h in range(hs, he):
                for w in range(ws, we):
                    xr = &x__nhwc[n, h, w, 0]
                    for c in range(C):
                        yr[c] = yr[c] + xr[c]
            # padded cells are not counted (Keras "same" average pooling)
            count = <float>((he - hs) * (we - ws))
            for c in range(C):
                yr[c] = yr[c] / count


cdef void avg_pool2d_backward_nhwc(
    const float[:, :, :, ::1] dy__nhwc,         # IN  (N, OH, OW, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] dx__nhwc,               # OUT (N, H, W, C)
) noexcept nogil:
    cdef Py_ssize_t N = dx__nhwc.shape[0], H = dx__nhwc.shape[1]
    cdef Py_ssize_t W = dx__nhwc.shape[2], C = dx__nhwc.shape[3]
    cdef Py_ssize_t OH = dy__nhwc.shape[1], OW = dy__nhwc.shape[2]
    cdef Py_ssize_t r, n, h, w, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, num, c
    cdef Py_ssize_t cnt_h, cnt_w
    cdef const float* dyr
    cdef float* dxr
    cdef float count
    if N == 0 or H == 0 or W == 0 or C == 0:
        return
    for r in prange(N * H, schedule="static"):
        n = r // H
        h = r - n * H
        # outputs oh whose window [oh*sh - pt, oh*sh - pt + kh) contains h
        num = h + pad_top - kh + 1
        oh_lo = 0 if num <= 0 else (num + sh - 1) // sh
        oh_hi = _imin((h + pad_top) // sh, OH - 1)
        for w in range(W):
            num = w + pad_left - kw + 1
            ow_lo = 0 if num <= 0 else (num + sw - 1) // sw
            ow_hi = _imin((w + pad_left) // sw, OW - 1)
            dxr = &dx__nhwc[n, h, w, 0]
            for c in range(C):
                dxr[c] = 0.0
            for oh in range(oh_lo, oh_hi + 1):
                cnt_h = _imin(oh * sh - pad_top + kh, H) - _imax(oh * sh - pad_top, 0)
                for ow in range(ow_lo, ow_hi + 1):
                    cnt_w = _imin(ow * sw - pad_left + kw, W) - _imax(ow * sw - pad_left, 0)
                    count = <float>(cnt_h * cnt_w)
                    dyr = &dy__nhwc[n, oh, ow, 0]
                    for c in range(C):
                        dxr[c] = dxr[c] + dyr[c] / count


cdef Py_ssize_t max_pool_backward_scatter(
    const float[:, ::1] dy__nk,                 # IN  (N, K): one image's outputs, flattened
    const int[:, ::1] argmax__nk,               # IN  (N, K): flat index into one image's M cells
    float[:, ::1] dx__nm,                       # OUT (N, M): one image's input cells, flattened
) noexcept nogil:
    """Zero dx, then dx[n, argmax[n, k]] += dy[n, k]; returns how many indices were out of range."""
    cdef Py_ssize_t N = dx__nm.shape[0], M = dx__nm.shape[1], K = dy__nk.shape[1]
    cdef Py_ssize_t n, k
    cdef Py_ssize_t bad = 0
    cdef unsigned int a
    cdef float* dxr
    cdef const float* dyr
    cdef const int* ar
    if N == 0 or M == 0:
        return 0
    for n in prange(N, schedule="static"):
        dxr = &dx__nm[n, 0]
        memset(dxr, 0, M * sizeof(float))
        if K == 0:
            continue
        dyr = &dy__nk[n, 0]
        ar = &argmax__nk[n, 0]
        for k in range(K):
            a = <unsigned int>ar[k]          # a negative index becomes huge: one compare
            if a < <unsigned int>M:
                dxr[a] += dyr[k]
            else:
                bad += 1
    return bad


cdef int global_avg_pool_npc(
    const float[:, :, ::1] x__npc,              # IN  (N, P, C), P = H*W (or L)
    float[:, ::1] y__nc,                        # OUT (N, C)
) noexcept nogil:
    """y[n, c] = mean over p of x[n, p, c], summed in double; returns -1 if out of memory."""
    cdef Py_ssize_t N = x__npc.shape[0], P = x__npc.shape[1], C = x__npc.shape[2]
    cdef Py_ssize_t n, p, c
    cdef int nthreads = openmp.omp_get_max_threads()
    cdef double* acc
    cdef double* work
    cdef const float* xr
    if N == 0 or C == 0:
        return 0
    work = <double*>malloc(nthreads * C * sizeof(double))
    if work == NULL:
        return -1
    for n in prange(N, schedule="static", num_threads=nthreads):
        acc = work + threadid() * C
        for c in range(C):
            acc[c] = 0.0
        for p in range(P):
            xr = &x__npc[n, p, 0]
            for c in range(C):
                acc[c] = acc[c] + xr[c]
        for c in range(C):
            y__nc[n, c] = <float>(acc[c] / P)
    free(work)
    return 0


# ---- Python entry points (fastnn.kernels.pool validates before calling these) ----

def max_pool2d(const float[:, :, :, ::1] x__nhwc, int kh, int kw, int sh, int sw,
               int pad_top, int pad_left, float[:, :, :, ::1] y__nhwc,
               int[:, :, :, ::1] argmax__nhwc):
    """NHWC float32 max pooling into y and argmax (unchecked: call fastnn.kernels.pool)."""
    with nogil:
        max_pool2d_nhwc(x__nhwc, kh, kw, sh, sw, pad_top, pad_left, y__nhwc, argmax__nhwc)


def avg_pool2d(const float[:, :, :, ::1] x__nhwc, int kh, int kw, int sh, int sw,
               int pad_top, int pad_left, float[:, :, :, ::1] y__nhwc):
    """NHWC float32 average pooling into y, pads excluded (unchecked)."""
    with nogil:
        avg_pool2d_nhwc(x__nhwc, kh, kw, sh, sw, pad_top, pad_left, y__nhwc)


def avg_pool2d_backward(const float[:, :, :, ::1] dy__nhwc, int kh, int kw, int sh, int sw,
                        int pad_top, int pad_left, float[:, :, :, ::1] dx__nhwc):
    """Gradient of NHWC average pooling into dx (unchecked)."""
    with nogil:
        avg_pool2d_backward_nhwc(dy__nhwc, kh, kw, sh, sw, pad_top, pad_left, dx__nhwc)


def max_pool_backward(const float[:, ::1] dy__nk, const int[:, ::1] argmax__nk,
                      float[:, ::1] dx__nm):
    """Scatter dy to argmax per image into zeroed dx; returns the count of out-of-range indices."""
    cdef Py_ssize_t bad
    with nogil:
        bad = max_pool_backward_scatter(dy__nk, argmax__nk, dx__nm)
    return bad


def global_avg_pool(const float[:, :, ::1] x__npc, float[:, ::1] y__nc):
    """Mean over the middle axis of (N, P, C) into y (N, C), accumulated in double (unchecked)."""
    cdef int status
    with nogil:
        status = global_avg_pool_npc(x__npc, y__nc)
    if status != 0:
        raise MemoryError("global_avg_pool: could not allocate the per-thread accumulators")
