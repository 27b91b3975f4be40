# C-level API of fastnn._kernels.conv, for other Cython projects:
#
#     from fastnn._kernels.conv cimport GEOM_LEN, GEOM_N, im2col_nhwc, col2im_add_nhwc
#
# Standalone functions over raw float32 pointers (no classes, no memoryviews in the signatures),
# so that adding a function later does not break a module that cimports these ones. They check
# nothing: the caller guarantees C-contiguous buffers of the sizes stated below. Each takes
# nthreads, the OpenMP threads of its parallel loop (<= 0: omp_get_max_threads(); 1 when the
# caller already runs one call per thread).

# The geometry travels as an array of GEOM_LEN Py_ssize_t indexed by these names (plain integers,
# not a struct, so the signatures hold only C types and match whatever module name a consumer
# cimports them under): x (N, H, W, C) NHWC, kernel (KH, KW, C, F), output (N, OH, OW, F),
# strides (SH, SW), dilations (DH, DW), top / left padding (PT, PL; bottom / right follow from
# OH, OW).
cdef enum:
    GEOM_N
    GEOM_H
    GEOM_W
    GEOM_C
    GEOM_KH
    GEOM_KW
    GEOM_OH
    GEOM_OW
    GEOM_SH
    GEOM_SW
    GEOM_DH
    GEOM_DW
    GEOM_PT
    GEOM_PL
    GEOM_LEN


# col__pk[(q - q0) * OW + ow, (kh*KW + kw)*C + c] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, c]
# (0 where that pixel is padding), for the output rows q = n*OH + oh in [q0, q1).
# col__pk holds (q1 - q0) * OW rows of ldc >= K = KH*KW*C floats; when ldc > K, column K is set
# to 1 (the bias row of an augmented GEMM; further columns are left alone). Parallel over q.
cdef void im2col_nhwc(const float* x__nhwc, const Py_ssize_t* geom, Py_ssize_t q0, Py_ssize_t q1,
                      float* col__pk, Py_ssize_t ldc, int nthreads) noexcept nogil

# The adjoint of im2col_nhwc for the same rows [q0, q1): dx__nhwc += col2im(dcol__pk), dcol__pk
# with row stride ldc (its first K columns are read). Only the input rows r = n*H + ih in
# [r0, r1) are touched (pass the rows these output rows reach); rows r >= r_fresh are zeroed
# before the sum. Each row is written by one thread (gather, parallel over r): no races.
cdef void col2im_add_nhwc(const float* dcol__pk, Py_ssize_t ldc, const Py_ssize_t* geom,
                          Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t r0, Py_ssize_t r1,
                          Py_ssize_t r_fresh, float* dx__nhwc, int nthreads) noexcept nogil

# y__mf[m, f] += b__f[f] for m < M (parallel over rows).
cdef void add_bias_rows(float* y__mf, const float* b__f, Py_ssize_t M, Py_ssize_t F,
                        int nthreads) noexcept nogil

# acc__f[f] += sum_m a__mf[m, f] in float64 (parallel over blocks of rows).
cdef void colsum_add(const float* a__mf, Py_ssize_t M, Py_ssize_t F, double* acc__f,
                     int nthreads) noexcept nogil
