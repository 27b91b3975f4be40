# Single-threaded float32 GEMM C (+)= A @ B for the dense layer's per-thread blocks.
#
# Design note. fastnn.kernels.dense cuts each GEMM into one column block of w per thread and
# runs it single-threaded; this is a BLIS-style sgemm for those blocks (kernels/gemm.h):
#  - B's kc x n block is packed once per K-block into NR-wide panels (L2), A's mc x kc block
#    into MR-row panels (L1 per panel); the AVX-512 microkernel keeps an MR x NR tile of C in
#    registers (14x32: 28 zmm, 12x32: 24, 6x64: 24), broadcasting A and loading packed B.
#  - transposed / strided A and B (x[:, a:b].T, w[a:b].T) are read through their strides by the
#    packing routines only: no copies outside the pack buffers, which are the caller's
#    per-thread workspaces (no allocation per call).
#  - accumulate=0 never reads C (so NaN garbage in an out= buffer does not leak); M and N edges
#    are zero-padded in the packs and written from a stack tile.
#  - AVX-512 (variants 0-2) and AVX2+FMA (variant 3, 6x16) microkernels (target attributes),
#    run only under a flavour that has them (isa.pxi; fastnn.kernels.isa): the portable flavour
#    has no kernel here and the caller uses np.matmul. No checks here: fastnn.kernels.gemm validates shapes, strides and sizes.

cdef extern from "gemm.h" nogil:
    ctypedef Py_ssize_t gm_int
    void gm_sgemm(int variant, gm_int kcb, gm_int mcb, gm_int m, gm_int n, gm_int k,
                  const float* a, gm_int rsa, gm_int csa, const float* b, gm_int rsb,
                  gm_int csb, float* c, gm_int ldc, int accumulate, float* pa, float* pb)

MR = (14, 12, 6, 6)
NR = (32, 32, 64, 16)
AVX512_VARIANTS = (0, 1, 2)
AVX2_VARIANTS = (3,)


cdef void _apply_isa(int isa) noexcept nogil:
    pass        # sgemm refuses the variants above the module's flavour

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


def sgemm(const float[:, :] a,        # IN (m, k), any strides
          const float[:, :] b,        # IN (k, n), any strides
          float[:, :] c,              # IN/OUT (m, n), column stride 1
          bint accumulate,
          float[::1] pa,              # SCRATCH >= round_up(min(m, mcb), MR) * min(k, kcb)
          float[::1] pb,              # SCRATCH >= min(k, kcb) * round_up(n, NR)
          int variant, Py_ssize_t kcb, Py_ssize_t mcb):
    """c = a @ b (accumulate False) or c += a @ b; m, n, k >= 1."""
    if variant < 0 or variant > 3 or (variant <= 2 and _isa < 2) or _isa < 1:
        raise ValueError(f"sgemm: variant {variant} needs a flavour above this module's ({_isa})")
    with nogil:
        gm_sgemm(variant, kcb, mcb, a.shape[0], b.shape[1], a.shape[1],
                 &a[0, 0], a.strides[0] // 4, a.strides[1] // 4,
                 &b[0, 0], b.strides[0] // 4, b.strides[1] // 4,
                 &c[0, 0], c.strides[0] // 4, accumulate, &pa[0], &pb[0])
