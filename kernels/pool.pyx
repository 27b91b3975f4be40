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
  treats pads as -inf and "same" average pooling leaves them out of the divisor). Cells are
  folded into the output row two at a time, so the running max/argmax (or sum) row is loaded
  and stored once per two cells; a 2x2 window is two passes.
* Max: the running maximum starts at the window's first valid cell and a later cell replaces it
  when `best == best and not (v <= best)`: that is v > best, or v is NaN while best is not.
  So ties keep the first maximum in window order (row-major over the window), and the first NaN
  of a window wins and stays, as np.max/np.argmax do. argmax stores, per output, the flat index
  (h*W + w)*C + c into one image; the backward needs nothing else.
* Max backward: the geometry is not known there (only argmax), so it zeroes dx and scatters dy
  to argmax, accumulating where windows overlap. `prange` over images: an index only ever points
  into its own image, so no two threads write the same cell. Out-of-range indices are counted and
  skipped (one unsigned compare), never written; the caller raises when the count is not zero.
* Average backward: a gather over dx rows, not a scatter from dy. For an input row h the
  outputs whose window covers it are the contiguous range oh in [ceil((h+pt-kh+1)/sh),
  floor((h+pt)/sh)]; along the row the windows are walked left to right, so each dx cell is
  written by the first window reaching it (dy * (1 / count)), added to by overlapping ones and
  zeroed if none reaches it: `prange` over N*H rows and no zeroing pass over dx.
* Scheduling: OpenMP `dynamic` in chunks of ~1/16 of a thread's share (see `_chunk`).
* Global average: sums over H*W run in double (one C-wide accumulator per thread), because a
  float32 running sum over thousands of cells would lose digits that Keras keeps.
"""

from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.string cimport memset
cimport openmp


cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _chunk(Py_ssize_t rows) noexcept nogil:
    """Rows per dynamic-schedule chunk: ~16 chunks per thread.

    Dynamic rather than static scheduling: on a machine shared with other processes a thread
    that loses its core for a time slice then only delays its current chunk, and the others take
    the rest, instead of the whole region waiting for its fixed share. (Under heavy load the
    larger effect is libgomp's spinning wait policy; see bench/test_pool.py.)
    """
    cdef Py_ssize_t chunk = rows // (16 * openmp.omp_get_max_threads())
    return chunk if chunk > 0 else 1


cdef inline bint _wins(float v, float b) noexcept nogil:
    """v replaces the running max b: v > b, or v is NaN while b is not (first NaN sticks)."""
    return (b == b) & (not (v <= b))


cdef inline void _max_first2(const float* xa, const float* xb, int ia, int ib,
                             float* yr, int* ar, Py_ssize_t C) noexcept nogil:
    """yr, ar <- max of the window's first two cells a, b (a wins ties)."""
    cdef Py_ssize_t c
    cdef float va, vb
    cdef bint take
    for c in range(C):
        va = xa[c]
        vb = xb[c]
        take = _wins(vb, va)
        yr[c] = vb if take else va
        ar[c] = <int>(ib + c) if take else <int>(ia + c)


cdef inline void _max_next2(const float* xa, const float* xb, int ia, int ib,
                            float* yr, int* ar, Py_ssize_t C) noexcept nogil:
    """Fold two more cells a then b into the running max yr, ar (one load/store for both)."""
    cdef Py_ssize_t c
    cdef float b, va, vb, m
    cdef int i
    cdef bint take_a, take_b
    for c in range(C):
        # The statement order matters: gcc 12 if-converts and vectorises this loop only when
        # the selects of cell a come before the load of cell b (checked with -fopt-info-vec).
        b = yr[c]
        i = ar[c]           # loaded unconditionally: a load inside a branch blocks if-conversion
        va = xa[c]
        take_a = _wins(va, b)
        m = va if take_a else b
        i = <int>(ia + c) if take_a else i
        vb = xb[c]
        # m is NaN exactly when b or va is: say so from the loaded values, not `m == m`
        # (gcc does not vectorise a compare of a select that feeds another select)
        take_b = (b == b) & (va == va) & (not (vb <= m))
        yr[c] = vb if take_b else m
        ar[c] = <int>(ib + c) if take_b else i


cdef void max_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
    int[:, :, :, ::1] argmax__nhwc,             # OUT (N, OH, OW, C): flat index into H*W*C
) noexcept nogil:
    cdef Py_ssize_t N = x__nhwc.shape[0], H = x__nhwc.shape[1]
    cdef Py_ssize_t W = x__nhwc.shape[2], C = x__nhwc.shape[3]
    cdef Py_ssize_t OH = y__nhwc.shape[1], OW = y__nhwc.shape[2]
    cdef Py_ssize_t r, n, oh, ow, hs, he, ws, we, ww, cells, t, ia, ib
    cdef const float* x0
    cdef float* yr
    cdef int* ar
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    for r in prange(N * OH, schedule="dynamic", chunksize=_chunk(N * OH)):
        n = r // OH
        oh = r - n * OH
        hs = _imax(oh * sh - pad_top, 0)
        he = _imin(oh * sh - pad_top + kh, H)
        x0 = &x__nhwc[n, 0, 0, 0]
        for ow in range(OW):
            ws = _imax(ow * sw - pad_left, 0)
            we = _imin(ow * sw - pad_left + kw, W)
            ww = we - ws
            cells = (he - hs) * ww
            yr = &y__nhwc[n, oh, ow, 0]
            ar = &argmax__nhwc[n, oh, ow, 0]
            # Valid cells t = 0..cells-1 in window order; pads are never visited. The first
            # one or two seed the running max, then cells are folded in pairs, which halves
            # the loads and stores of the running max and argmax rows.
            ia = (hs * W + ws) * C
            if cells % 2 == 0:
                ib = ((hs + 1 // ww) * W + ws + 1 % ww) * C
                _max_first2(x0 + ia, x0 + ib, <int>ia, <int>ib, yr, ar, C)
                t = 2
            else:
                _max_first2(x0 + ia, x0 + ia, <int>ia, <int>ia, yr, ar, C)
                t = 1
            while t < cells:
                ia = ((hs + t // ww) * W + ws + t % ww) * C
                ib = ((hs + (t + 1) // ww) * W + ws + (t + 1) % ww) * C
                _max_next2(x0 + ia, x0 + ib, <int>ia, <int>ib, yr, ar, C)
                t = t + 2


cdef void avg_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
) noexcept nogil:
    cdef Py_ssize_t N = x__nhwc.shape[0], H = x__nhwc.shape[1]
    cdef Py_ssize_t W = x__nhwc.shape[2], C = x__nhwc.shape[3]
    cdef Py_ssize_t OH = y__nhwc.shape[1], OW = y__nhwc.shape[2]
    cdef Py_ssize_t r, n, oh, ow, hs, he, ws, we, ww, cells, t, ia, ib, c
    cdef const float* x0
    cdef float* yr
    cdef float inv
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    for r in prange(N * OH, schedule="dynamic", chunksize=_chunk(N * OH)):
        n = r // OH
        oh = r - n * OH
        hs = _imax(oh * sh - pad_top, 0)
        he = _imin(oh * sh - pad_top + kh, H)
        x0 = &x__nhwc[n, 0, 0, 0]
        for ow in range(OW):
            ws = _imax(ow * sw - pad_left, 0)
            we = _imin(ow * sw - pad_left + kw, W)
            ww = we - ws
            cells = (he - hs) * ww
            yr = &y__nhwc[n, oh, ow, 0]
            # Sum the valid cells in window order, ((x0 + x1) + x2) + x3 ..., two per pass over
            # the output row (as in max pooling); the last pass also scales by 1 / count, the
            # number of valid cells: padded cells are not counted (Keras "same" average
            # pooling). A multiply, not a divide: exact for power-of-two counts (2x2 windows),
            # within 1 ulp of sum / count otherwise, and the divide dominated the loop.
            inv = 1.0 / <float>cells
            ia = (hs * W + ws) * C
            if cells == 1:
                for c in range(C):
                    yr[c] = x0[ia + c] * inv
                continue
            ib = ((hs + 1 // ww) * W + ws + 1 % ww) * C
            if cells == 2:
                for c in range(C):
                    yr[c] = (x0[ia + c] + x0[ib + c]) * inv
                continue
            if cells % 2 == 0:
                for c in range(C):
                    yr[c] = x0[ia + c] + x0[ib + c]
                t = 2
            else:
                for c in range(C):
                    yr[c] = x0[ia + c]
                t = 1
            while t + 2 < cells:
                ia = ((hs + t // ww) * W + ws + t % ww) * C
                ib = ((hs + (t + 1) // ww) * W + ws + (t + 1) % ww) * C
                for c in range(C):
                    yr[c] = (yr[c] + x0[ia + c]) + x0[ib + c]
                t = t + 2
            ia = ((hs + t // ww) * W + ws + t % ww) * C
            ib = ((hs + (t + 1) // ww) * W + ws + (t + 1) % ww) * C
            for c in range(C):
                yr[c] = ((yr[c] + x0[ia + c]) + x0[ib + c]) * inv


cdef void avg_pool2d_backward_nhwc(
    const float[:, :, :, ::1] dy__nhwc,         # IN  (N, OH, OW, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] dx__nhwc,               # OUT (N, H, W, C)
) noexcept nogil:
    cdef Py_ssize_t N = dx__nhwc.shape[0], H = dx__nhwc.shape[1]
    cdef Py_ssize_t W = dx__nhwc.shape[2], C = dx__nhwc.shape[3]
    cdef Py_ssize_t OH = dy__nhwc.shape[1], OW = dy__nhwc.shape[2]
    cdef Py_ssize_t r, n, h, w, oh, ow, oh_lo, oh_hi, num, c, ws, we, done, cnt_h
    cdef bint first_oh
    cdef const float* dyr
    cdef float* dxr
    cdef float* row
    cdef float inv
    if N == 0 or H == 0 or W == 0 or C == 0:
        return
    for r in prange(N * H, schedule="dynamic", chunksize=_chunk(N * H)):
        n = r // H
        h = r - n * H
        row = &dx__nhwc[n, h, 0, 0]
        # outputs oh whose window [oh*sh - pt, oh*sh - pt + kh) contains h
        num = h + pad_top - kh + 1
        oh_lo = 0 if num <= 0 else (num + sh - 1) // sh
        oh_hi = _imin((h + pad_top) // sh, OH - 1)
        if oh_lo > oh_hi:                   # a row no window reaches (stride > pool)
            memset(row, 0, W * C * sizeof(float))
            continue
        first_oh = True
        for oh in range(oh_lo, oh_hi + 1):
            cnt_h = _imin(oh * sh - pad_top + kh, H) - _imax(oh * sh - pad_top, 0)
            # Walk the windows of this output row left to right: the cells [0, done) already
            # hold a contribution. A cell is written by the first window that reaches it and
            # added to by the others (overlap), and cells between windows (stride > pool) are
            # zeroed, so dx needs no zeroing pass.
            done = 0
            for ow in range(OW):
                ws = _imax(ow * sw - pad_left, 0)
                we = _imin(ow * sw - pad_left + kw, W)
                if first_oh and ws > done:
                    memset(row + done * C, 0, (ws - done) * C * sizeof(float))
                    done = ws
                # a multiply, not a divide per element (divps dominated the loop): exact for
                # power-of-two counts (2x2 windows), within 1 ulp of dy / count otherwise
                inv = 1.0 / <float>(cnt_h * (we - ws))
                dyr = &dy__nhwc[n, oh, ow, 0]
                for w in range(ws, we):
                    dxr = row + w * C
                    if first_oh and w >= done:
                        for c in range(C):
                            dxr[c] = dyr[c] * inv
                    else:
                        for c in range(C):
                            dxr[c] = dxr[c] + dyr[c] * inv
                if we > done:
                    done = we
            if first_oh and W > done:
                memset(row + done * C, 0, (W - done) * C * sizeof(float))
            first_oh = False


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
    for n in prange(N, schedule="dynamic", chunksize=_chunk(N)):
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
    for n in prange(N, schedule="dynamic", chunksize=_chunk(N), num_threads=nthreads):
        acc = work + threadid() * C
        for c in range(C):
            acc[c] = 0.0
        # four cells per pass over the accumulator row: a quarter of its loads and stores
        p = 0
        while p + 4 <= P:
            xr = &x__npc[n, p, 0]
            for c in range(C):
                acc[c] = acc[c] + ((<double>xr[c] + <double>xr[C + c])
                                   + (<double>xr[2 * C + c] + <double>xr[3 * C + c]))
            p = p + 4
        while p < P:
            xr = &x__npc[n, p, 0]
            for c in range(C):
                acc[c] = acc[c] + xr[c]
            p = p + 1
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
