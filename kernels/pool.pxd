# C-level pooling kernels over NHWC float32 (see pool.pyx for the design note).
#
# Standalone functions rather than a class, so another Cython module can `cimport` one of
# them and adding a kernel later breaks nobody. They check nothing: callers (fastnn.kernels.pool)
# validate shapes, geometry and buffers first. Every one runs an OpenMP `prange` inside and
# may be called without the GIL.

cdef void max_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
    int[:, :, :, ::1] argmax__nhwc,             # OUT (N, OH, OW, C): flat index into H*W*C
) noexcept nogil

cdef void avg_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
) noexcept nogil

cdef void avg_pool2d_backward_nhwc(
    const float[:, :, :, ::1] dy__nhwc,         # IN  (N, OH, OW, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] dx__nhwc,               # OUT (N, H, W, C)
) noexcept nogil

cdef Py_ssize_t max_pool_backward_scatter(
    const float[:, ::1] dy__nk,                 # IN  (N, K): one image's outputs, flattened
    const int[:, ::1] argmax__nk,               # IN  (N, K): flat index into one image's M cells
    float[:, ::1] dx__nm,                       # OUT (N, M): one image's input cells, flattened
) noexcept nogil

cdef int global_avg_pool_npc(
    const float[:, :, ::1] x__npc,              # IN  (N, P, C), P = H*W (or L)
    float[:, ::1] y__nc,                        # OUT (N, C)
) noexcept nogil
