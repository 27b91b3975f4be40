# C-level API of fastnn._kernels.conv, for other Cython projects:
#
#     from fastnn._kernels.conv cimport conv_geom, im2col_nhwc, col2im_add_nhwc
#
# Standalone functions over raw float32 pointers (no classes, no memoryviews in the signatures),
# so that adding a function later does not break a module that cimports these ones. They check
# nothing: the caller guarantees C-contiguous buffers of the sizes stated below.

ctypedef struct conv_geom:
    # x (N, H, W, C) NHWC; kernel (KH, KW, C, F); output (N, OH, OW, F)
    Py_ssize_t N, H, W, C
    Py_ssize_t KH, KW
    Py_ssize_t OH, OW
    Py_ssize_t sh, sw          # strides
    Py_ssize_t dh, dw          # dilations
    Py_ssize_t pt, pl          # top / left padding (bottom / right follow from OH, OW)


# col__pk[(q - q0) * OW + ow, (kh*KW + kw)*C + c] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, c]
# (0 where that pixel is padding), for the output rows q = n*OH + oh in [q0, q1).
# col__pk holds (q1 - q0) * OW rows of KH*KW*C floats. Parallel (OpenMP) over q.
cdef void im2col_nhwc(const float* x__nhwc, const conv_geom* g, Py_ssize_t q0, Py_ssize_t q1,
                      float* col__pk) noexcept nogil

# The adjoint of im2col_nhwc for the same rows [q0, q1): dx__nhwc += col2im(dcol__pk).
# Only the input rows r = n*H + ih in [r0, r1) are touched (pass the rows these output rows
# reach); each is written by one thread (gather, parallel over r), so there are no races.
cdef void col2im_add_nhwc(const float* dcol__pk, const conv_geom* g, Py_ssize_t q0,
                          Py_ssize_t q1, Py_ssize_t r0, Py_ssize_t r1,
                          float* dx__nhwc) noexcept nogil

# y__mf[m, f] += b__f[f] for m < M (parallel over rows).
cdef void add_bias_rows(float* y__mf, const float* b__f, Py_ssize_t M, Py_ssize_t F) noexcept nogil

# acc__f[f] += sum_m a__mf[m, f] in float64 (parallel over blocks of columns).
cdef void colsum_add(const float* a__mf, Py_ssize_t M, Py_ssize_t F, double* acc__f) noexcept nogil
