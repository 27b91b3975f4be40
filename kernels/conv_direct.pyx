# Direct (im2col-free) convolution for few input channels: forward (+ bias, + ReLU) and the
# weight / bias gradients, NHWC float32, kernel (KH, KW, C, F) as Keras.
#
# Design note. With C*KH*KW small (a first layer: MNIST's 3x3x1, an RGB 3x3x3) the im2col path
# is memory-bound: col holds KH*KW*C + 1 floats per output pixel for a GEMM of K = 10 or 28,
# which OpenBLAS runs at a fraction of its peak, and the output then makes a second pass for the
# activation. Here every output pixel is computed where it is stored:
#  - forward: per output row (n, oh), blocks of P output pixels x one F-block (2 vectors) of
#    accumulators start at the bias; for each kernel row r = (kh, kw, c) the weight row
#    w[r, F-block] is loaded once and each pixel's x[ih, iw, c] is broadcast and FMA'd into it;
#    the ReLU is applied in registers and the output is stored once. The weights (K x F floats)
#    stay in L1.
#  - backward (dw, db): per output row and F-block, G kernel rows x 2 vectors of accumulators
#    sum x[ih, iw, c] * dy[ow, :] over the row's pixels, then are added into a float64 partial
#    (K, F) of the calling task; db is the sum of the dy rows. The ReLU mask (y > 0, multiplied
#    as 1/0 with y's NaN kept, the product relu_grad_rows in conv.pyx forms) is applied to the
#    row's dy once, into a scratch row that stays in L1.
#  - padding without a padded copy: a kernel row whose input row is in the padding reads a row
#    of zeros (the caller's `zrow`); output columns whose window crosses the left/right edge
#    (at most a few per side) take a checked path that reads 0 outside. Padded taps are
#    multiplied as zeros, not skipped, so NaN/inf behave as with im2col's zero columns.
#  - F is padded to the F-block (2 vectors) in the weight/bias copies (wp, bp: (K, Fp), (Fp,))
#    and in the partial gradients; stores write only the F real filters.
#  - conv_relu_maxpool (inference): the two conv rows of a pooled row go to an L1/L2 scratch,
#    ReLU'd in registers, then the 2x2 max writes the pooled output: the conv output (4x the
#    pooled one) never reaches memory.
#  - instruction sets: the kernels (conv_direct_isa.h, GCC vector extensions) are compiled three
#    times, for AVX-512F, AVX2+FMA and a portable baseline; the caller picks one per call (at most get_isa(), the module's flavour)
#    (__builtin_cpu_supports), so the default build needs no -march=native.
# Serial: fastnn.kernels.conv runs one call per thread on a contiguous range of output rows
# (`_run`), with per-thread workspaces. No checks here: fastnn.kernels.conv validates all.

cdef extern from "conv_direct.h" nogil:
    enum: CD_KMAX
    ctypedef struct cd_geom:
        Py_ssize_t N, H, W, C, KH, KW, F, OH, OW, sh, sw, dh, dw, pt, pl
    int cd_block(int isa)
    void cd_forward(int isa, const float* x, const cd_geom* g, const float* wp, const float* bp,
                    Py_ssize_t Fp, const float* zrow, Py_ssize_t q0, Py_ssize_t q1, float* y,
                    int relu)
    void cd_conv_pool(int isa, const float* x, const cd_geom* g, const float* wp, const float* bp,
                      Py_ssize_t Fp, const float* zrow, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t PH,
                      Py_ssize_t PW, float* scratch, float* yp)
    void cd_backward(int isa, const float* x, const cd_geom* g, const float* dy, const float* y,
                     const float* zrow, Py_ssize_t Fp, Py_ssize_t q0, Py_ssize_t q1, float* dys,
                     double* dwp, double* dbp)

KMAX = CD_KMAX


cdef void _apply_isa(int isa) noexcept nogil:
    pass        # the caller passes a flavour per call; the entry points cap it at _isa

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


def block(int isa):
    """Floats per F-block of flavour isa (F is padded to a multiple of it)."""
    return cd_block(isa)


cdef inline cd_geom _geom(x, Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH,
                          Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                          Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl):
    cdef cd_geom g
    g.N = x.shape[0]; g.H = x.shape[1]; g.W = x.shape[2]; g.C = x.shape[3]
    g.KH = KH; g.KW = KW; g.F = F; g.OH = OH; g.OW = OW
    g.sh = sh; g.sw = sw; g.dh = dh; g.dw = dw; g.pt = pt; g.pl = pl
    return g


cdef inline void _check_isa(int isa) except *:
    # a body of a flavour the CPU lacks would die on an illegal instruction: refuse it
    if isa < 0 or isa > _isa:
        raise ValueError(f"conv_direct: flavour {isa} is above this module's flavour {_isa}")


def forward(const float[:, :, :, ::1] x__nhwc,     # IN (N, H, W, C)
            const float[:, ::1] wp__kf,            # IN (KH*KW*C, Fp): w, F padded with zeros
            const float[::1] bp__f,                # IN (Fp,): bias (zeros if none), padded
            const float[::1] zrow,                 # IN (>= W*C,) zeros
            Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
            Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t q0, Py_ssize_t q1,
            float[:, ::1] y__mf,                   # OUT (N*OH*OW, F): rows of [q0, q1) written
            bint relu, int isa, bint relative=False):
    """y rows of output rows q = n*OH + oh in [q0, q1) = conv(x, w) + b, ReLU'd if relu.

    relative: y holds only those rows ((q1 - q0)*OW, F), row q0 first (a chunk's scratch)."""
    cdef cd_geom g = _geom(x__nhwc, y__mf.shape[1], KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    _check_isa(isa)
    if q1 <= q0:
        return
    cdef float* y0 = &y__mf[0, 0] if relative else &y__mf[0, 0] + q0 * OW * g.F
    with nogil:
        cd_forward(isa, &x__nhwc[0, 0, 0, 0], &g, &wp__kf[0, 0], &bp__f[0], wp__kf.shape[1],
                   &zrow[0], q0, q1, y0, relu)


def conv_relu_maxpool(const float[:, :, :, ::1] x__nhwc,   # IN (N, H, W, C)
                      const float[:, ::1] wp__kf,          # IN (KH*KW*C, Fp) as forward
                      const float[::1] bp__f,              # IN (Fp,)
                      const float[::1] zrow,               # IN (>= W*C,) zeros
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t p0, Py_ssize_t p1,
                      float[::1] scratch,                  # SCRATCH (>= 2*OW*F,)
                      float[:, :, :, ::1] y__nhwf,         # OUT (N, OH//2, OW//2, F): rows [p0, p1)
                      int isa):
    """Pooled rows pr = n*PH + ph in [p0, p1) of maxpool2x2(relu(conv(x, w) + b)) ('valid')."""
    cdef cd_geom g = _geom(x__nhwc, y__nhwf.shape[3], KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    _check_isa(isa)
    if p1 <= p0:
        return
    with nogil:
        cd_conv_pool(isa, &x__nhwc[0, 0, 0, 0], &g, &wp__kf[0, 0], &bp__f[0], wp__kf.shape[1],
                     &zrow[0], p0, p1, y__nhwf.shape[1], y__nhwf.shape[2], &scratch[0],
                     &y__nhwf[0, 0, 0, 0])


def backward(const float[:, :, :, ::1] x__nhwc,    # IN (N, H, W, C)
             const float[:, ::1] dy__mf,           # IN (N*OH*OW, F)
             const float[:, ::1] y__mf,            # IN (N*OH*OW, F) ReLU-fused output, or None
             const float[::1] zrow,                # IN (>= W*C,) zeros
             Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
             Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
             Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t q0, Py_ssize_t q1,
             float[::1] dys,                       # SCRATCH (>= OW*Fp,)
             double[:, ::1] dwp__kf,               # IN/OUT (KH*KW*C, Fp) += dw
             double[::1] dbp__f,                   # IN/OUT (Fp,) += db
             int isa):
    """dwp, dbp (float64, F padded) += dw, db of output rows [q0, q1); dy masked by y > 0 if y."""
    cdef cd_geom g = _geom(x__nhwc, dy__mf.shape[1], KH, KW, OH, OW, sh, sw, dh, dw, pt, pl)
    _check_isa(isa)
    cdef const float* py = NULL
    if q1 <= q0:
        return
    if y__mf is not None:
        py = &y__mf[0, 0]
    with nogil:
        cd_backward(isa, &x__nhwc[0, 0, 0, 0], &g, &dy__mf[0, 0], py, &zrow[0], dwp__kf.shape[1],
                    q0, q1, &dys[0], &dwp__kf[0, 0], &dbp__f[0])
