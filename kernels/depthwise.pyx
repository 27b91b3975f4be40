# Depthwise convolution (Keras DepthwiseConv2D / DepthwiseConv1D), NHWC float32, kernel
# (KH, KW, C, M) as Keras: output channel c*M + m is input channel c convolved with w[:, :, c, m].
#
# Design note. A depthwise convolution does KH*KW multiply-adds per output value and never mixes
# channels, so im2col + GEMM (a GEMM of K = KH*KW per channel) is the wrong shape: this is a
# direct kernel, vectorised across channels, which NHWC keeps contiguous.
#  - forward: per output row (n, oh), the KH input rows it reads are looked up once (a row of
#    zeros, `zrow`, stands for a padded row, so no per-pixel check in the interior); blocks of P
#    output pixels x NV channel vectors of accumulators start at the bias and take, per tap
#    (kh, kw), one weight vector and one input vector per pixel (loads and FMAs only). Border
#    pixels (a window crossing the left/right edge, at most a few per side) read zeros for the
#    taps outside: padded taps are multiplied as zeros, not skipped, so NaN/inf in the weights
#    behave as with zero padding. ReLU may be applied in registers.
#  - depth_multiplier M > 1: each input row the kernel reads is first expanded to C*M channels
#    (x[c] repeated M times) in a per-thread scratch row, after which the M = 1 loops apply
#    unchanged (output channel c*M + m reads expanded channel c*M + m).
#  - dx: a gather per input row (n, ih): the output rows that read it are listed once; an
#    input column iw = rho + j*sw is read by the taps kw with (iw + pl - kw*dw) divisible by
#    sw, the same for every column of a phase rho, so a phase's columns run in the forward's
#    blocks (dy read with pixel step C*M, dx written with step sw*C). Each dx row is written by
#    one thread, in a fixed tap order: no atomics, the same bits for any thread count. M > 1
#    gathers into an expanded scratch row and sums its M copies per channel.
#  - dw, db: per output row, the taps' sums over the row's pixels in registers (3x3: all 9
#    with a rolling input window; else G taps x NV vectors, one x load + FMA per tap), added to
#    a float partial that goes into the chunk's float64 partial every 16 rows. The chunk grid depends on the shape only (never the thread count) and the
#    partials are summed in chunk order, so dw is the same for any thread count.
#  - instruction sets: depthwise_isa.h is compiled for AVX-512F, AVX2+FMA and a portable
#    baseline (GCC vector extensions); the caller passes one per call, at most the module's
#    flavour (fastnn.kernels.isa, env FASTNN_ISA), so no -march=native is needed.
#  - threads: OpenMP inside each call (rows, dynamic schedule: a descheduled thread holds up one
#    row, not a share), nthreads from fastnn's policy; no BLAS is involved.
# No checks here: fastnn.kernels.depthwise validates every shape, dtype and stride first.

cdef extern from "depthwise.h" nogil:
    enum: DW_TMAX
    ctypedef struct dw_geom:
        Py_ssize_t N, H, W, C, M, Ce, KH, KW, OH, OW, sh, sw, dh, dw, pt, pl
    int dw_vector(int isa)
    void dw_forward(int isa, const dw_geom* g, const float* x, const float* wt, const float* b,
                    const float* zrow, float* y, int relu, float* scratch, Py_ssize_t per_thread,
                    int nthreads)
    void dw_backward_data(int isa, const dw_geom* g, const float* dy, const float* wt,
                          const float* wflip, float* dx, float* scratch, Py_ssize_t per_thread,
                          int nthreads)
    void dw_backward_weights(int isa, const dw_geom* g, const float* x, const float* dy,
                             const float* zrow, Py_ssize_t nchunks, double* parts, float* dwt,
                             float* db, float* scratch, Py_ssize_t per_thread, int nthreads)

TMAX = DW_TMAX


cdef void _apply_isa(int isa) noexcept nogil:
    pass        # the caller passes a flavour per call; the entry points cap it at _isa

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


cdef inline void _check_isa(int isa) except *:
    # a body of a flavour the CPU lacks would die on an illegal instruction: refuse it
    if isa < 0 or isa > _isa:
        raise ValueError(f"depthwise: flavour {isa} is above this module's flavour {_isa}")


def vector(int isa):
    """Floats per vector of flavour isa."""
    return dw_vector(isa)


cdef inline dw_geom _geom(Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t M,
                          Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                          Py_ssize_t pt, Py_ssize_t pl):
    cdef dw_geom g
    g.N = N; g.H = H; g.W = W; g.C = C; g.M = M; g.Ce = C * M
    g.KH = KH; g.KW = KW; g.OH = OH; g.OW = OW
    g.sh = sh; g.sw = sw; g.dh = dh; g.dw = dw; g.pt = pt; g.pl = pl
    return g


def forward(const float[:, :, :, ::1] x__nhwc,     # IN (N, H, W, C)
            const float[:, ::1] w__tf,             # IN (KH*KW, C*M): w (KH, KW, C, M) flat
            const float[::1] b__f,                 # IN (C*M,) or None
            const float[::1] zrow,                 # IN (>= W*C*M,) zeros
            Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
            float[:, :, :, ::1] y__nhwf,           # OUT (N, OH, OW, C*M)
            bint relu,
            float[::1] scratch,                    # SCRATCH nthreads * KH*W*C*M if M > 1
            int isa, int nthreads):
    """y = depthwise_conv(x, w) + b (ReLU'd if relu), every output row."""
    _check_isa(isa)
    cdef Py_ssize_t M = w__tf.shape[1] // x__nhwc.shape[3]
    cdef dw_geom g = _geom(x__nhwc.shape[0], x__nhwc.shape[1], x__nhwc.shape[2], x__nhwc.shape[3],
                           M, KH, KW, y__nhwf.shape[1], y__nhwf.shape[2], sh, sw, dh, dw, pt, pl)
    cdef const float* pb = NULL
    cdef Py_ssize_t per = KH * g.W * g.Ce if M > 1 else 0
    if g.N * g.OH * g.OW == 0:
        return
    if b__f is not None:
        pb = &b__f[0]
    with nogil:
        dw_forward(isa, &g, &x__nhwc[0, 0, 0, 0], &w__tf[0, 0], pb, &zrow[0],
                   &y__nhwf[0, 0, 0, 0], relu, &scratch[0], per, nthreads)


def backward_data(const float[:, :, :, ::1] dy__nhwf,   # IN (N, OH, OW, C*M)
                  const float[:, ::1] w__tf,            # IN (KH*KW, C*M)
                  const float[:, ::1] wflip__tf,        # IN (KH*KW, C*M): w[kh, KW-1-kw], or None
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
                  float[:, :, :, ::1] dx__nhwc,         # OUT (N, H, W, C): every element
                  float[::1] scratch,                   # SCRATCH nthreads * W*C*M if M > 1
                  int isa, int nthreads):
    """dx = the gradient of depthwise_conv w.r.t. x, given dy (wflip: w with kw reversed, for
    the 3x3 stride-1 rows that run as a forward on dy; None skips that path)."""
    _check_isa(isa)
    cdef Py_ssize_t M = w__tf.shape[1] // dx__nhwc.shape[3]
    cdef dw_geom g = _geom(dx__nhwc.shape[0], dx__nhwc.shape[1], dx__nhwc.shape[2],
                           dx__nhwc.shape[3], M, KH, KW, dy__nhwf.shape[1], dy__nhwf.shape[2],
                           sh, sw, dh, dw, pt, pl)
    cdef Py_ssize_t per = g.W * g.Ce if M > 1 else 0
    cdef const float* pf = NULL
    if g.N * g.H * g.W * g.C == 0:
        return
    if wflip__tf is not None:
        pf = &wflip__tf[0, 0]
    with nogil:
        dw_backward_data(isa, &g, &dy__nhwf[0, 0, 0, 0], &w__tf[0, 0], pf, &dx__nhwc[0, 0, 0, 0],
                         &scratch[0], per, nthreads)


def weights_scratch(Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t W, Py_ssize_t C, Py_ssize_t M):
    """Floats of backward_weights' scratch per thread: a float partial of dw and db, then the
    expanded input rows when M > 1."""
    return (KH * KW + 1) * C * M + (KH * W * C * M if M > 1 else 0)


def backward_weights(const float[:, :, :, ::1] x__nhwc,   # IN (N, H, W, C)
                     const float[:, :, :, ::1] dy__nhwf,  # IN (N, OH, OW, C*M)
                     const float[::1] zrow,               # IN (>= W*C*M,) zeros
                     Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
                     double[:, ::1] parts,                # SCRATCH (nchunks, (KH*KW + 1)*C*M)
                     float[:, ::1] dw__tf,                # OUT (KH*KW, C*M)
                     float[::1] db__f,                    # OUT (C*M,) or None
                     float[::1] scratch,                  # SCRATCH nthreads * weights_scratch(...)
                     int isa, int nthreads):
    """dw (and db) of depthwise_conv given x and dy, over parts.shape[0] fixed chunks of rows."""
    _check_isa(isa)
    cdef Py_ssize_t M = dw__tf.shape[1] // x__nhwc.shape[3]
    cdef dw_geom g = _geom(x__nhwc.shape[0], x__nhwc.shape[1], x__nhwc.shape[2], x__nhwc.shape[3],
                           M, KH, KW, dy__nhwf.shape[1], dy__nhwf.shape[2], sh, sw, dh, dw, pt, pl)
    cdef Py_ssize_t per = weights_scratch(KH, KW, g.W, g.C, M)
    cdef float* pdb = NULL
    if db__f is not None:
        pdb = &db__f[0]
    with nogil:
        dw_backward_weights(isa, &g, &x__nhwc[0, 0, 0, 0], &dy__nhwf[0, 0, 0, 0], &zrow[0],
                            parts.shape[0], &parts[0, 0], &dw__tf[0, 0], pdb, &scratch[0], per,
                            nthreads)
