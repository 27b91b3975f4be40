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
#  - bias add after the GEMM (one pass while the chunk is hot in cache) and the bias gradient
#    (column sums accumulated in float64: M reaches 1e5 and float32 running sums would drift).
# No checks here: fastnn.kernels.conv validates every shape, dtype and stride first.

from cython.parallel cimport prange
from libc.string cimport memcpy, memset


cdef inline void _im2col_row(const float* x__nhwc, const conv_geom* g, Py_ssize_t n,
                             Py_ssize_t oh, float* col__pk) noexcept nogil:
    # the OW col rows of output row (n, oh)
    cdef Py_ssize_t H = g.H, W = g.W, C = g.C, KH = g.KH, KW = g.KW, OW = g.OW
    cdef Py_ssize_t sw = g.sw, dw = g.dw, pl = g.pl
    cdef Py_ssize_t KWC = KW * C
    cdef Py_ssize_t ow, kh, kw, ih, iw, iw0
    cdef float* dst = col__pk
    cdef const float* src
    for ow in range(OW):
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


cdef void im2col_nhwc(const float* x__nhwc, const conv_geom* g, Py_ssize_t q0, Py_ssize_t q1,
                      float* col__pk) noexcept nogil:
    cdef Py_ssize_t K = g.KH * g.KW * g.C
    cdef Py_ssize_t q
    for q in prange(q0, q1, schedule="static"):
        _im2col_row(x__nhwc, g, q // g.OH, q % g.OH, col__pk + (q - q0) * g.OW * K)


cdef inline void _col2im_row(const float* dcol__pk, const conv_geom* g, Py_ssize_t q0,
                             Py_ssize_t q1, Py_ssize_t r, float* dx__nhwc) noexcept nogil:
    # input row r = n*H + ih gathers every col entry (output rows [q0, q1)) that read it
    cdef Py_ssize_t H = g.H, W = g.W, C = g.C, KH = g.KH, KW = g.KW, OH = g.OH, OW = g.OW
    cdef Py_ssize_t sh = g.sh, sw = g.sw, dh = g.dh, dw = g.dw, pt = g.pt, pl = g.pl
    cdef Py_ssize_t K = KH * KW * C
    cdef Py_ssize_t n = r // H
    cdef Py_ssize_t ih = r - n * H
    cdef Py_ssize_t iw, kh, kw, t, u, oh, ow, q, c
    cdef float* dst
    cdef const float* src
    for iw in range(W):
        dst = dx__nhwc + (r * W + iw) * C
        for kh in range(KH):
            t = ih + pt - kh * dh          # = oh * sh for the output row whose window reads ih
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
                u = iw + pl - kw * dw
                if u < 0:
                    break
                if u % sw != 0:
                    continue
                ow = u // sw
                if ow >= OW:
                    continue
                src = dcol__pk + ((q - q0) * OW + ow) * K + (kh * KW + kw) * C
                for c in range(C):
                    dst[c] += src[c]


cdef void col2im_add_nhwc(const float* dcol__pk, const conv_geom* g, Py_ssize_t q0,
                          Py_ssize_t q1, Py_ssize_t r0, Py_ssize_t r1,
                          float* dx__nhwc) noexcept nogil:
    cdef Py_ssize_t r
    for r in prange(r0, r1, schedule="static"):
        _col2im_row(dcol__pk, g, q0, q1, r, dx__nhwc)


cdef void add_bias_rows(float* y__mf, const float* b__f, Py_ssize_t M, Py_ssize_t F) noexcept nogil:
    cdef Py_ssize_t m, f
    cdef float* row
    for m in prange(M, schedule="static"):
        row = y__mf + m * F
        for f in range(F):
            row[f] += b__f[f]


cdef enum:
    COLSUM_BLOCK = 16   # one 64-byte cache line of floats per thread and row


cdef inline void _colsum_block(const float* a__mf, Py_ssize_t M, Py_ssize_t F, Py_ssize_t f0,
                               Py_ssize_t nf, double* acc__f) noexcept nogil:
    cdef double s[COLSUM_BLOCK]
    cdef Py_ssize_t m, f
    for f in range(COLSUM_BLOCK):
        s[f] = 0.0
    for m in range(M):
        for f in range(nf):
            s[f] += a__mf[m * F + f0 + f]
    for f in range(nf):
        acc__f[f0 + f] += s[f]


cdef void colsum_add(const float* a__mf, Py_ssize_t M, Py_ssize_t F, double* acc__f) noexcept nogil:
    cdef Py_ssize_t nb = (F + COLSUM_BLOCK - 1) // COLSUM_BLOCK
    cdef Py_ssize_t blk
    for blk in prange(nb, schedule="static"):
        _colsum_block(a__mf, M, F, blk * COLSUM_BLOCK, min(COLSUM_BLOCK, F - blk * COLSUM_BLOCK),
                      acc__f)


# ---- Python entry points (typed memoryviews; fastnn.kernels.conv has validated them) ----

cdef inline conv_geom _geom(Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                            Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                            Py_ssize_t pt, Py_ssize_t pl):
    cdef conv_geom g
    g.N = N; g.H = H; g.W = W; g.C = C; g.KH = KH; g.KW = KW; g.OH = OH; g.OW = OW
    g.sh = sh; g.sw = sw; g.dh = dh; g.dw = dw; g.pt = pt; g.pl = pl
    return g


def im2col(const float[:, :, :, ::1] x__nhwc,      # IN
           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t q0, Py_ssize_t q1,
           float[:, ::1] col__pk):                  # OUT ((q1-q0)*OW, KH*KW*C)
    """im2col of the NHWC float32 output rows q = n*OH + oh in [q0, q1) into col__pk."""
    cdef conv_geom g = _geom(x__nhwc.shape[0], x__nhwc.shape[1], x__nhwc.shape[2],
                             x__nhwc.shape[3], KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    with nogil:
        im2col_nhwc(&x__nhwc[0, 0, 0, 0], &g, q0, q1, &col__pk[0, 0])


def col2im_add(const float[:, ::1] dcol__pk,        # IN ((q1-q0)*OW, KH*KW*C)
               Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t q0, Py_ssize_t q1,
               Py_ssize_t r0, Py_ssize_t r1,
               float[:, :, :, ::1] dx__nhwc):        # IN/OUT (N, H, W, C), rows [r0, r1) += col2im
    """dx__nhwc (NHWC float32) += col2im of dcol__pk for output rows [q0, q1), input rows [r0, r1)."""
    cdef conv_geom g = _geom(dx__nhwc.shape[0], dx__nhwc.shape[1], dx__nhwc.shape[2],
                             dx__nhwc.shape[3], KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    with nogil:
        col2im_add_nhwc(&dcol__pk[0, 0], &g, q0, q1, r0, r1, &dx__nhwc[0, 0, 0, 0])


def bias_add(float[:, ::1] y__mf,                    # IN/OUT (M, F)
             const float[::1] b__f):                 # IN (F,)
    """y__mf (float32) += b__f broadcast over rows."""
    with nogil:
        add_bias_rows(&y__mf[0, 0], &b__f[0], y__mf.shape[0], y__mf.shape[1])


def column_sums_add(const float[:, ::1] a__mf,       # IN (M, F)
                    double[::1] acc__f):             # IN/OUT (F,) float64
    """acc__f (float64) += column sums of a__mf (float32)."""
    with nogil:
        colsum_add(&a__mf[0, 0], a__mf.shape[0], a__mf.shape[1], &acc__f[0])
