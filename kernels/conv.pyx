# Convolution helpers around the GEMM: im2col, col2im, bias add, bias-gradient sums.
#
# Design note. Layout is NHWC float32, kernel (KH, KW, C, F) as Keras. A convolution is
#     col (M, K) @ w (K, F) -> y (M, F)      M = N*OH*OW output pixels, K = KH*KW*C
# and y already *is* the NHWC output, so the caller (fastnn.kernels.conv) runs one np.matmul
# per chunk of output rows into a slice of the output. This file holds only what BLAS cannot do:
#  - im2col: a col row is KH*KW runs of C contiguous channels, so the inner loop is a memcpy of
#    C floats (KW*C when dilation is 1 and the window row lies inside the image); padding is a
#    memset. Parallel over output rows (n, oh), each writing OW col rows of its own.
#  - col2im (backward, dx): written as a gather over input rows (n, ih): each input pixel sums
#    the col entries that read it, so every thread writes its own rows and needs no atomics, and
#    a single image still splits over threads (a scatter parallel over images would not).
#  - bias add after a GEMM (the 1x1 path; otherwise the bias rides in the GEMM as a ones
#    column of col) and the bias gradient of the 1x1 path (column sums in float64).
# Every loop takes nthreads: the caller usually splits the batch over its own threads, each
# running these loops with nthreads=1 next to a single-threaded GEMM (OpenMP teams and OpenBLAS
# threads alternating around every chunk wait on each other); batches too small to split run
# them with the OpenMP team. Dynamic schedules: a descheduled thread holds up one row, not half.
# No checks here: fastnn.kernels.conv validates every shape, dtype and stride first.

from cython.parallel cimport prange
cimport openmp
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset


ctypedef struct conv_geom:      # the unpacked GEOM_* array (private: not part of the C API)
    Py_ssize_t N, H, W, C, KH, KW, OH, OW, sh, sw, dh, dw, pt, pl


cdef inline conv_geom _unpack(const Py_ssize_t* a) noexcept nogil:
    cdef conv_geom g
    g.N = a[GEOM_N]; g.H = a[GEOM_H]; g.W = a[GEOM_W]; g.C = a[GEOM_C]
    g.KH = a[GEOM_KH]; g.KW = a[GEOM_KW]; g.OH = a[GEOM_OH]; g.OW = a[GEOM_OW]
    g.sh = a[GEOM_SH]; g.sw = a[GEOM_SW]; g.dh = a[GEOM_DH]; g.dw = a[GEOM_DW]
    g.pt = a[GEOM_PT]; g.pl = a[GEOM_PL]
    return g


cdef inline int _threads(int nthreads) noexcept nogil:
    # nthreads <= 0: the process policy (fastnn.kernels.threads sets OpenMP's default)
    return nthreads if nthreads > 0 else openmp.omp_get_max_threads()


cdef inline void _im2col_row(const float* x__nhwc, const conv_geom* g, Py_ssize_t n,
                             Py_ssize_t oh, float* col__pk, Py_ssize_t ldc) noexcept nogil:
    # the OW col rows (stride ldc) of output row (n, oh); a 1 in column K when ldc > K
    cdef Py_ssize_t H = g.H, W = g.W, C = g.C, KH = g.KH, KW = g.KW, OW = g.OW
    cdef Py_ssize_t sw = g.sw, dw = g.dw, pl = g.pl
    cdef Py_ssize_t KWC = KW * C, K = KH * KW * C
    cdef Py_ssize_t ow, kh, kw, ih, iw, iw0
    cdef float* dst
    cdef const float* src
    for ow in range(OW):
        dst = col__pk + ow * ldc
        if ldc > K:
            dst[K] = 1.0
        iw0 = ow * sw - pl
        for kh in range(KH):
            ih = oh * g.sh - g.pt + kh * g.dh
            if ih < 0 or ih >= H:
                memset(dst, 0, KWC * sizeof(float))
            elif dw == 1 and iw0 >= 0 and iw0 + KW <= W:
                # the whole window row lies inside the image: one contiguous run
                memcpy(dst, x__nhwc + ((n * H + ih) * W + iw0) * C, KWC * sizeof(float))
            else:
                src = x__nhwc + (n * H + ih) * W * C
                for kw in range(KW):
                    iw = iw0 + kw * dw
                    if iw < 0 or iw >= W:
                        memset(dst + kw * C, 0, C * sizeof(float))
                    else:
                        memcpy(dst + kw * C, src + iw * C, C * sizeof(float))
            dst += KWC


cdef void im2col_nhwc(const float* x__nhwc, const Py_ssize_t* geom, Py_ssize_t q0, Py_ssize_t q1,
                      float* col__pk, Py_ssize_t ldc, int nthreads) noexcept nogil:
    cdef conv_geom gv = _unpack(geom)
    cdef const conv_geom* g = &gv
    cdef Py_ssize_t q
    # dynamic: on a shared machine a descheduled thread must not hold the whole region back
    for q in prange(q0, q1, schedule="dynamic", num_threads=_threads(nthreads)):
        _im2col_row(x__nhwc, g, q // g.OH, q % g.OH, col__pk + (q - q0) * g.OW * ldc, ldc)


cdef inline void _col2im_row(const float* dcol__pk, Py_ssize_t ldc, const conv_geom* g,
                             Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t r, bint fresh,
                             float* dx__nhwc) noexcept nogil:
    # Input row r = n*H + ih gathers every col entry (output rows [q0, q1)) that read it; a fresh
    # row is zeroed first (here, while it is in cache, not in a separate pass). Loops run over
    # the output pixels ow of each tap (kh, kw), so no division is needed per pixel, and the
    # row being summed (W*C floats) stays in L1 across the KH*KW taps.
    cdef Py_ssize_t H = g.H, W = g.W, C = g.C, KH = g.KH, KW = g.KW, OH = g.OH, OW = g.OW
    cdef Py_ssize_t sh = g.sh, sw = g.sw, dh = g.dh, dw = g.dw, pt = g.pt, pl = g.pl
    cdef Py_ssize_t n = r // H
    cdef Py_ssize_t ih = r - n * H
    cdef Py_ssize_t iw, kh, kw, t, oh, ow, ow_lo, ow_hi, q, c
    cdef float* row = dx__nhwc + r * W * C
    cdef float* dst
    cdef const float* src
    if fresh:
        memset(row, 0, W * C * sizeof(float))
    for kh in range(KH):
        t = ih + pt - kh * dh          # = oh * sh for the output row whose tap kh reads ih
        if t < 0:
            break
        if t % sh != 0:
            continue
        oh = t // sh
        if oh >= OH:
            continue
        q = n * OH + oh
        if q < q0 or q >= q1:
            continue
        for kw in range(KW):
            # output columns whose tap kw lands inside the row: 0 <= ow*sw - pl + kw*dw < W
            t = pl - kw * dw
            ow_lo = 0 if t <= 0 else (t + sw - 1) // sw
            ow_hi = (W - 1 + t) // sw + 1 if W - 1 + t >= 0 else 0
            if ow_hi > OW:
                ow_hi = OW
            src = dcol__pk + ((q - q0) * OW) * ldc + (kh * KW + kw) * C
            for ow in range(ow_lo, ow_hi):
                dst = row + (ow * sw - t) * C
                for c in range(C):
                    dst[c] += src[ow * ldc + c]


cdef void col2im_add_nhwc(const float* dcol__pk, Py_ssize_t ldc, const Py_ssize_t* geom,
                          Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t r0, Py_ssize_t r1,
                          Py_ssize_t r_fresh, float* dx__nhwc, int nthreads) noexcept nogil:
    cdef conv_geom gv = _unpack(geom)
    cdef const conv_geom* g = &gv
    cdef Py_ssize_t r
    for r in prange(r0, r1, schedule="dynamic", num_threads=_threads(nthreads)):
        _col2im_row(dcol__pk, ldc, g, q0, q1, r, r >= r_fresh, dx__nhwc)


cdef void add_bias_rows(float* y__mf, const float* b__f, Py_ssize_t M, Py_ssize_t F,
                        int nthreads) noexcept nogil:
    cdef Py_ssize_t m, f
    cdef float* row
    for m in prange(M, schedule="static", num_threads=_threads(nthreads)):
        row = y__mf + m * F
        for f in range(F):
            row[f] += b__f[f]


cdef enum:
    COLSUM_BLOCKS = 8   # row blocks (>= threads, for balance); partial sums summed at the end


cdef void colsum_add(const float* a__mf, Py_ssize_t M, Py_ssize_t F, double* acc__f,
                     int nthreads) noexcept nogil:
    # Each block sums its rows into its own float64 row of `part` (rows are read contiguously,
    # one pass over memory); the blocks are added in a fixed order, so the result is the same
    # whatever the thread count.
    cdef double* part = <double*> calloc(COLSUM_BLOCKS * F, sizeof(double))
    cdef Py_ssize_t step = (M + COLSUM_BLOCKS - 1) // COLSUM_BLOCKS
    cdef Py_ssize_t blk, m, f
    cdef double* p
    cdef const float* row
    if part == NULL:        # out of memory: a serial pass straight into acc__f
        for m in range(M):
            for f in range(F):
                acc__f[f] += a__mf[m * F + f]
        return
    for blk in prange(COLSUM_BLOCKS, schedule="dynamic", num_threads=_threads(nthreads)):
        p = part + blk * F
        for m in range(blk * step, min(M, (blk + 1) * step)):
            row = a__mf + m * F
            for f in range(F):
                p[f] += row[f]
    for blk in range(COLSUM_BLOCKS):
        for f in range(F):
            acc__f[f] += part[blk * F + f]
    free(part)


# ---- Python entry points (typed memoryviews; fastnn.kernels.conv has validated them) ----

cdef inline void _fill_geom(Py_ssize_t* a, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH,
                            Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                            Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl):
    a[GEOM_N] = N; a[GEOM_H] = H; a[GEOM_W] = W; a[GEOM_C] = C
    a[GEOM_KH] = KH; a[GEOM_KW] = KW; a[GEOM_OH] = OH; a[GEOM_OW] = OW
    a[GEOM_SH] = sh; a[GEOM_SW] = sw; a[GEOM_DH] = dh; a[GEOM_DW] = dw
    a[GEOM_PT] = pt; a[GEOM_PL] = pl


def im2col(const float[:, :, :, ::1] x__nhwc,      # IN
           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t q0, Py_ssize_t q1,
           float[:, ::1] col__pk,                   # OUT ((q1-q0)*OW, KH*KW*C [+ 1])
           int nthreads=0):
    """im2col of the NHWC float32 output rows q = n*OH + oh in [q0, q1) into col__pk.

    With KH*KW*C + 1 columns, the last one is set to 1 (bias row of the augmented GEMM).
    """
    cdef Py_ssize_t g[GEOM_LEN]
    _fill_geom(g, x__nhwc.shape[0], x__nhwc.shape[1], x__nhwc.shape[2], x__nhwc.shape[3],
               KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    with nogil:
        im2col_nhwc(&x__nhwc[0, 0, 0, 0], g, q0, q1, &col__pk[0, 0], col__pk.shape[1], nthreads)


def col2im_add(const float[:, ::1] dcol__pk,        # IN ((q1-q0)*OW, KH*KW*C [+ ignored])
               Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t q0, Py_ssize_t q1,
               Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t r_fresh,
               float[:, :, :, ::1] dx__nhwc,         # IN/OUT (N, H, W, C), rows [r0, r1) += col2im
               int nthreads=0):
    """dx__nhwc (NHWC float32) += col2im of dcol__pk for output rows [q0, q1), input rows [r0, r1).

    Input rows r >= r_fresh are overwritten (zeroed first) instead of accumulated into.
    """
    cdef Py_ssize_t g[GEOM_LEN]
    _fill_geom(g, dx__nhwc.shape[0], dx__nhwc.shape[1], dx__nhwc.shape[2], dx__nhwc.shape[3],
               KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    with nogil:
        col2im_add_nhwc(&dcol__pk[0, 0], dcol__pk.shape[1], g, q0, q1, r0, r1, r_fresh,
                        &dx__nhwc[0, 0, 0, 0], nthreads)


def bias_add(float[:, ::1] y__mf,                    # IN/OUT (M, F)
             const float[::1] b__f,                  # IN (F,)
             int nthreads=0):
    """y__mf (float32) += b__f broadcast over rows."""
    with nogil:
        add_bias_rows(&y__mf[0, 0], &b__f[0], y__mf.shape[0], y__mf.shape[1], nthreads)


def column_sums_add(const float[:, ::1] a__mf,       # IN (M, F)
                    double[::1] acc__f,              # IN/OUT (F,) float64
                    int nthreads=0):
    """acc__f (float64) += column sums of a__mf (float32)."""
    with nogil:
        colsum_add(&a__mf[0, 0], a__mf.shape[0], a__mf.shape[1], &acc__f[0], nthreads)


def relu_grad_rows(const float[:, ::1] dy__mf,     # IN (M, F)
                   const float[:, ::1] y__mf,      # IN (M, F) = relu(z)
                   float[:, ::1] out__mf):         # OUT (M, F)
    """out = dy * relu'(z) from y = relu(z): 1 where y > 0, 0 where y == 0, NaN where y is NaN
    (the same product as activation.grad("relu"), so the fused conv backward is bit-identical).
    Serial: called per chunk from inside a conv worker thread."""
    cdef Py_ssize_t i, total = dy__mf.shape[0] * dy__mf.shape[1]
    cdef const float* g
    cdef const float* yy
    cdef float* o
    cdef float d, v
    if total == 0:
        return
    g = &dy__mf[0, 0]
    yy = &y__mf[0, 0]
    o = &out__mf[0, 0]
    with nogil:
        for i in range(total):
            v = yy[i]
            d = 1.0 if v > 0.0 else 0.0
            d = v if v != v else d
            o[i] = g[i] * d
