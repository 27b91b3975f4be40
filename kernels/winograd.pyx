# Winograd F(2x2, 3x3) transforms for the 3x3, stride-1, dilation-1 NHWC convolutions.
#
# Design note. A 3x3 convolution computes each 2x2 block of outputs from a 4x4 input tile
# (tiles at stride 2, overlapping by 2). In the Winograd domain that block costs 16 products per
# (c, f) pair instead of 36 (2.25x fewer multiplications):
#     y_tile = A^T [ (G g G^T) . (B^T d B) ] A
# and summed over the C input channels the 16 element-wise products become 16 independent GEMMs
#     M[xi] (T, F) = V[xi] (T, C) @ U[xi] (C, F),    xi = 0..15,
# over a chunk of T tiles (V = B^T d B per tile, U = G g G^T per (c, f)). This file holds the
# transforms (winograd.h, channel-contiguous loops that vectorise); fastnn.kernels.conv runs
# the 16 GEMMs per chunk and the threading (each thread owns whole images).
# Backward is the adjoint of every stage:
#     dM = A dY A^T (dy masked by relu'(y) when y= is given; db summed on the way),
#     dU[xi] += V[xi]^T dM[xi],  dw = G^T dU G,   dV[xi] = dM[xi] U[xi]^T,
#     dx = B dV B^T overlap-added (the tiles overlap), image by image in one thread.
# Why F(2,3) and not F(4,3) (6x6 tiles, 36 products per 16 outputs, 4x fewer): F(4,3)'s
# transform matrices have entries up to 8 and 1/24, which amplify float32 rounding by ~10-100x
# (relative errors ~1e-4..1e-3 for C = 64, published by Lavin & Gray and others) - beyond the
# 1e-4 the rest of fastnn guarantees against the float64 reference. F(2,3)'s matrices hold only
# 0, +-1 and 1/2: its error stays within ~2x of the direct convolution's.
# The GEMM stage stays np.matmul on the stacked (16, T, C) @ (16, C, F) buffers (OpenBLAS, one
# thread per share): 97-107 GFLOP/s a core on the bench chunks. A register-blocked AVX-512
# microkernel with U[xi] in L1 (6x64 .. 24x16 zmm accumulator blocks, commit 'option (b)' in
# the history) reached 81-98 GFLOP/s on the same chunks (8-20% slower), more than fusing the
# output transform behind it could win back (the transforms are ~25% of the time), so it was
# measured and dropped.
# Padding is handled inside the transforms (tiles over the edge read a static zero row), so x
# is never copied; outputs beyond (OH, OW) of the last partial tile go to a sink row.
# No checks here: fastnn.kernels.conv validates every shape first (and C, F <= CMAX).

cdef extern from "winograd.h" nogil:
    enum: WINO_CMAX
    int wino_isa
    void wino_input(const float* x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t pt,
                    Py_ssize_t pl, Py_ssize_t th, Py_ssize_t tw, Py_ssize_t r0, Py_ssize_t r1,
                    float* V, Py_ssize_t ldv)
    void wino_output(const float* M, const float* bias, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t F,
                     Py_ssize_t th, Py_ssize_t tw, Py_ssize_t r0, Py_ssize_t r1, float* y,
                     Py_ssize_t ldm, int relu)
    void wino_weight(const float* w, Py_ssize_t C, Py_ssize_t F, float* U)
    void wino_weight_adjoint(const float* dU, Py_ssize_t C, Py_ssize_t F, float* dw)
    void wino_dy(const float* dy, const float* y, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t F,
                 Py_ssize_t th, Py_ssize_t tw, Py_ssize_t r0, Py_ssize_t r1, float* dM, Py_ssize_t ldm,
                 double* db)
    void wino_input_adjoint(const float* dV, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                            Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t th, Py_ssize_t tw,
                            Py_ssize_t r0, Py_ssize_t r1, float* dx, Py_ssize_t ldv)

CMAX = WINO_CMAX     # the transforms' zero / sink rows hold this many channels


cdef void _apply_isa(int isa) noexcept nogil:
    global wino_isa
    wino_isa = isa

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


# ---- Python entry points (typed memoryviews; fastnn.kernels.conv has validated them) ----
# Tile rows R = n*th + ti in [r0, r1), th = ceil(OH / 2) per image, tw = ceil(OW / 2) tiles
# each; the T = (r1 - r0) * tw tiles of a chunk are numbered row by row. All serial: each is
# called per chunk from inside one conv worker thread. A tile buffer is (16, ld): slice xi is
# its first T*C (or T*F) floats of row xi, a (T, C) matrix; ld is padded (see _tiles in conv.py).

def input_tiles(const float[:, :, :, ::1] x__nhwc,   # IN (N, H, W, C)
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t th, Py_ssize_t tw,
                Py_ssize_t r0, Py_ssize_t r1,
                float[:, ::1] V):                    # OUT (16, >= T*C): slices (T, C)
    """V[xi] = (B^T d B)[xi] of the input tiles of tile rows [r0, r1) (padding reads as 0)."""
    with nogil:
        wino_input(&x__nhwc[0, 0, 0, 0], x__nhwc.shape[1], x__nhwc.shape[2], x__nhwc.shape[3],
                   pt, pl, th, tw, r0, r1, &V[0, 0], V.shape[1])


def output_tiles(const float[:, ::1] M,              # IN (16, >= T*F): slices (T, F)
                 const float[::1] b__f, bint has_b,  # IN (F,) bias (ignored unless has_b)
                 Py_ssize_t th, Py_ssize_t tw, Py_ssize_t r0, Py_ssize_t r1,
                 float[:, :, :, ::1] y__nhwf,        # OUT (N, OH, OW, F), the rows of [r0, r1)
                 bint relu=False):
    """y = A^T M A (+ b) for the tiles of tile rows [r0, r1), clipped to (OH, OW); then the
    plain ReLU (bit-identical to activation.bias_act's) when relu."""
    with nogil:
        wino_output(&M[0, 0], &b__f[0] if has_b else NULL, y__nhwf.shape[1], y__nhwf.shape[2],
                    y__nhwf.shape[3], th, tw, r0, r1, &y__nhwf[0, 0, 0, 0], M.shape[1], relu)


def weight_transform(const float[:, :, :, ::1] w,    # IN (3, 3, C, F)
                     float[:, :, ::1] U):            # OUT (16, C, F)
    """U = G g G^T for every (c, f)."""
    with nogil:
        wino_weight(&w[0, 0, 0, 0], w.shape[2], w.shape[3], &U[0, 0, 0])


def weight_adjoint(const float[:, :, ::1] dU,        # IN (16, C, F)
                   float[:, :, :, ::1] dw):          # OUT (3, 3, C, F)
    """dw = G^T dU G for every (c, f)."""
    with nogil:
        wino_weight_adjoint(&dU[0, 0, 0], dU.shape[1], dU.shape[2], &dw[0, 0, 0, 0])


def dy_tiles(const float[:, :, :, ::1] dy__nhwf,     # IN (N, OH, OW, F)
             const float[:, :, :, ::1] y__nhwf, bint has_y,   # IN ReLU output (ignored unless has_y)
             Py_ssize_t th, Py_ssize_t tw, Py_ssize_t r0, Py_ssize_t r1,
             float[:, ::1] dM,                       # OUT (16, >= T*F): slices (T, F)
             double[::1] db__f):                     # IN/OUT (F,) float64, += sum of masked dy
    """dM = A dY A^T of the (masked) dy tiles of tile rows [r0, r1); db += their sums."""
    with nogil:
        wino_dy(&dy__nhwf[0, 0, 0, 0], &y__nhwf[0, 0, 0, 0] if has_y else NULL, dy__nhwf.shape[1],
                dy__nhwf.shape[2], dy__nhwf.shape[3], th, tw, r0, r1, &dM[0, 0], dM.shape[1], &db__f[0])


def input_adjoint(const float[:, ::1] dV,             # IN (16, >= T*C): slices (T, C)
                  Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t th, Py_ssize_t tw,
                  Py_ssize_t r0, Py_ssize_t r1,
                  float[:, :, :, ::1] dx__nhwc):      # IN/OUT (N, H, W, C)
    """dx += B dV B^T of the tiles of tile rows [r0, r1), overlap-added; an image's dx is
    zeroed first when its tile row 0 is among them (pass whole images, in order)."""
    with nogil:
        wino_input_adjoint(&dV[0, 0], dx__nhwc.shape[1], dx__nhwc.shape[2], dx__nhwc.shape[3],
                           pt, pl, th, tw, r0, r1, &dx__nhwc[0, 0, 0, 0],
                           dV.shape[1])

