# cython: language_level=3
"""Batch normalization over the channel axis of float32 (M, C) data (NHWC viewed as rows).

Design note
- Layout: x is C-contiguous (..., C), seen as M = prod(leading dims) rows of C channels, so
  every row is one contiguous run that the inner loop over channels vectorizes.
- The row loops live in norm.h / norm_isa.h (C, GCC vector extensions), compiled for AVX-512,
  AVX2+FMA and the portable baseline and picked once at import (set_isa forces one): the
  default build has no -mavx2, and the baseline's 2-double SSE2 vectors with accumulators in
  memory ran the statistics at ~20 GB/s. The statistics walk a chunk's rows per strip of up to
  64 channels with the float64 accumulators in registers; each channel's sum keeps its row
  order, so only FMA contraction (AVX flavours) changes the rounding.
- Statistics (training forward, and backward's two channel sums) are accumulated in float64
  around a per-channel shift (the first row): var = (S2 - S1^2/M)/M with S = sums of (x-shift).
  Double accumulators plus the shift keep the variance exact to float32 precision even when the
  mean is 1e4 times the spread, at no extra memory traffic.
- Parallel over M: the rows are cut into a fixed number of chunks that depends only on (M, C),
  each chunk writes its own C-wide partial sums, and the partials are reduced in chunk order.
  So results are bit-identical for any thread count, and no two threads write the same line
  except at chunk edges. Chunks are handed out dynamically: on a shared machine a thread that
  is descheduled holds up one chunk, not a static half of the work.
- Synchronised statistics (data parallel): each pass 1 is a function of its own (_moments,
  _grad_sums) returning float64 per-channel sums, and each pass 2 (_train_finish,
  _backward_finish) takes sums and a row count, so a data-parallel step sums the processes'
  float64 sums in between and every process normalises with the statistics of the global
  batch. The single-process entry points are the two halves back to back.
- ReLU epilogue (relu=True / y__mc given): forward writes max(y, 0) in its last pass, and
  backward masks dy by y > 0 as it reads it in both passes, so a BatchNormalization + ReLU pair
  costs no pass of its own. The mask multiplies by 1/0 (NaN for NaN y) like activation.grad,
  so the fused pair gives bit-identical results to the two separate kernels.
- Passes over memory: training forward = 2 (statistics; then y), backward = 2 (two sums; then
  dx), inference = 1. The per-channel scale/shift are folded once, so the last pass is one
  subtract and one FMA per element: y = (x - m32)*scale + shift, scale = gamma*invstd,
  shift = beta - (mean - m32)*scale, m32 = float32(mean). This is Keras's
  y = x*gamma*invstd + (beta - mean*gamma*invstd) regrouped: x - m32 is exact for x near the
  mean, so a large mean costs no precision (the plain fold loses eps32*|x|*scale, 0.06 for
  x = 1e4 +- 0.01).
- Backward takes the float32 mean as a shift m32 and refines it in the same pass
  (delta = sum(x - m32)/M in float64), so the gradient is the one through the exact batch mean:
  sum(dy*(x - mean)) = sum(dy*(x - m32)) - delta*sum(dy), and delta folds into the constant.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc


cdef inline Py_ssize_t _n_chunks(Py_ssize_t m, Py_ssize_t c) noexcept nogil:
    # >= 32K elements and >= 32 rows per chunk (the partial sums stay < 1/5 of x), <= 64 chunks
    cdef Py_ssize_t n = (m * c) // 32768
    if n > m // 32:
        n = m // 32
    if n > 64:
        n = 64
    if n < 1:
        n = 1
    return n


cdef extern from "norm.h" nogil:
    # the row loops, one C definition per instruction-set flavour (norm.h / norm_isa.h)
    void nb_moments(int isa, const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                    const float* shift, double* s1, double* s2)
    void nb_grad_sums(int isa, const float* dy, const float* x, const float* y, Py_ssize_t r0,
                      Py_ssize_t r1, Py_ssize_t c, const float* mean, double* sdy,
                      double* sdyxc, double* sx)
    void nb_affine(int isa, const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                   const float* center, const float* scale, const float* shift, int relu,
                   float* y)
    void nb_backward(int isa, const float* dy, const float* x, const float* y, Py_ssize_t r0,
                     Py_ssize_t r1, Py_ssize_t c, const float* a, const float* b,
                     const float* d, const float* mean, float* dx)


cdef void _apply_isa(int isa) noexcept nogil:
    pass        # every call passes _isa to the row loops

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


cdef inline Py_ssize_t _row_blocks(Py_ssize_t m, Py_ssize_t c) noexcept nogil:
    # elementwise passes: blocks of >= 16K elements, enough of them to balance the threads
    cdef Py_ssize_t n = (m * c) // 16384
    if n > m:
        n = m
    if n > 256:
        n = 256
    if n < 1:
        n = 1
    return n


cdef void _affine_parallel(const float* x__mc, Py_ssize_t m, Py_ssize_t c, const float* center__c,
                           const float* scale__c, const float* shift__c, int relu,
                           float* y__mc) noexcept nogil:
    cdef Py_ssize_t nb = _row_blocks(m, c)
    cdef Py_ssize_t k
    for k in prange(nb, schedule="dynamic", nogil=True):
        nb_affine(_isa, x__mc, k * m // nb, (k + 1) * m // nb, c, center__c, scale__c,
                  shift__c, relu, y__mc)


cdef int batch_norm_train_mc(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                             const float* gamma__c, const float* beta__c,
                             float* moving_mean__c, float* moving_var__c,
                             double momentum, double epsilon,
                             float* y__mc, float* mean__c, float* invstd__c) noexcept nogil:
    return _train(x__mc, m, c, gamma__c, beta__c, moving_mean__c, moving_var__c, momentum, epsilon,
                  0, y__mc, mean__c, invstd__c)


cdef int _moments(const float* x__mc, Py_ssize_t m, Py_ssize_t c, const float* shift__c,
                  double* s1__c, double* s2__c) noexcept nogil:
    # s1 = sum(x - shift), s2 = sum((x - shift)^2) per channel: per-chunk partials (pass 1),
    # then reduced in chunk order (bit-identical for any thread count)
    cdef Py_ssize_t nch = _n_chunks(m, c)
    cdef Py_ssize_t k, j
    cdef double s1, s2
    cdef double* part = <double*>malloc(2 * nch * c * sizeof(double))
    if part == NULL:
        return -1
    for k in prange(nch, schedule="dynamic", nogil=True):
        nb_moments(_isa, x__mc, k * m // nch, (k + 1) * m // nch, c, shift__c,
                   part + 2 * k * c, part + 2 * k * c + c)
    for j in range(c):
        s1 = 0.0
        s2 = 0.0
        for k in range(nch):
            s1 = s1 + part[2 * k * c + j]
            s2 = s2 + part[2 * k * c + c + j]
        s1__c[j] = s1
        s2__c[j] = s2
    free(part)
    return 0


cdef int _train_finish(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                       const float* gamma__c, const float* beta__c,
                       float* moving_mean__c, float* moving_var__c,
                       double momentum, double epsilon, int relu, double count,
                       const float* shift__c, const double* s1__c, const double* s2__c,
                       float* y__mc, float* mean__c, float* invstd__c) noexcept nogil:
    # statistics of `count` rows from their shifted sums (x's own, or summed over the
    # processes of a data-parallel step), then pass 2 over x's m rows
    cdef Py_ssize_t j
    cdef double s1, s2, mu, var, inv, sc
    cdef float m32
    cdef float* fold = <float*>malloc(3 * c * sizeof(float) + 1)
    if fold == NULL:
        return -1
    for j in range(c):
        s1 = s1__c[j]
        s2 = s2__c[j]
        mu = <double>shift__c[j] + s1 / count
        var = (s2 - s1 * s1 / count) / count   # biased, as Keras
        if var < 0.0:   # rounding only; NaN passes through
            var = 0.0
        inv = 1.0 / sqrt(var + epsilon)
        m32 = <float>mu
        mean__c[j] = m32
        invstd__c[j] = <float>inv
        moving_mean__c[j] = <float>(moving_mean__c[j] * momentum + mu * (1.0 - momentum))
        moving_var__c[j] = <float>(moving_var__c[j] * momentum + var * (1.0 - momentum))
        sc = inv if gamma__c == NULL else gamma__c[j] * inv
        fold[j] = m32
        fold[c + j] = <float>sc
        fold[2 * c + j] = <float>((0.0 if beta__c == NULL else <double>beta__c[j])
                                  - (mu - <double>m32) * sc)
    # pass 2: y = (x - m32)*scale + shift
    if m > 0:
        _affine_parallel(x__mc, m, c, fold, fold + c, fold + 2 * c, relu, y__mc)
    free(fold)
    return 0


cdef int _train(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                const float* gamma__c, const float* beta__c,
                float* moving_mean__c, float* moving_var__c,
                double momentum, double epsilon, int relu,
                float* y__mc, float* mean__c, float* invstd__c) noexcept nogil:
    cdef int rc
    cdef double* s = <double*>malloc(2 * c * sizeof(double) + 1)
    if s == NULL:
        return -1
    # pass 1: shifted moments (shift = row 0)
    rc = _moments(x__mc, m, c, x__mc, s, s + c)
    if rc == 0:
        rc = _train_finish(x__mc, m, c, gamma__c, beta__c, moving_mean__c, moving_var__c,
                           momentum, epsilon, relu, <double>m, x__mc, s, s + c,
                           y__mc, mean__c, invstd__c)
    free(s)
    return rc


cdef int batch_norm_inference_mc(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                                 const float* gamma__c, const float* beta__c,
                                 const float* moving_mean__c, const float* moving_var__c,
                                 double epsilon, float* y__mc) noexcept nogil:
    return _inference(x__mc, m, c, gamma__c, beta__c, moving_mean__c, moving_var__c, epsilon, 0,
                      y__mc)


cdef int _inference(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                    const float* gamma__c, const float* beta__c,
                    const float* moving_mean__c, const float* moving_var__c,
                    double epsilon, int relu, float* y__mc) noexcept nogil:
    cdef Py_ssize_t j
    cdef double inv, sc
    cdef float* fold = <float*>malloc(2 * c * sizeof(float) + 1)
    if fold == NULL:
        return -1
    for j in range(c):
        inv = 1.0 / sqrt(<double>moving_var__c[j] + epsilon)
        sc = inv if gamma__c == NULL else gamma__c[j] * inv
        fold[j] = <float>sc
        fold[c + j] = <float>(0.0 if beta__c == NULL else <double>beta__c[j])
    _affine_parallel(x__mc, m, c, moving_mean__c, fold, fold + c, relu, y__mc)
    free(fold)
    return 0


cdef int batch_norm_backward_mc(const float* dy__mc, const float* x__mc, Py_ssize_t m,
                                Py_ssize_t c, const float* gamma__c, const float* mean__c,
                                const float* invstd__c, float* dx__mc, float* dgamma__c,
                                float* dbeta__c) noexcept nogil:
    return _backward(dy__mc, x__mc, m, c, gamma__c, mean__c, invstd__c, NULL, dx__mc, dgamma__c,
                     dbeta__c)


cdef int _grad_sums(const float* dy__mc, const float* x__mc, const float* y__mc, Py_ssize_t m,
                    Py_ssize_t c, const float* mean__c, double* sdy__c, double* sdyxc__c,
                    double* sx__c) noexcept nogil:
    # pass 1: sum(dy), sum(dy*(x-m32)) and sum(x-m32) per channel, partials in chunk order
    cdef Py_ssize_t nch = _n_chunks(m, c)
    cdef Py_ssize_t k, j
    cdef double sdy, sdyxc, sx
    cdef double* part = <double*>malloc(3 * nch * c * sizeof(double))
    if part == NULL:
        return -1
    for k in prange(nch, schedule="dynamic", nogil=True):
        nb_grad_sums(_isa, dy__mc, x__mc, y__mc, k * m // nch, (k + 1) * m // nch, c, mean__c,
                     part + 3 * k * c, part + 3 * k * c + c, part + 3 * k * c + 2 * c)
    for j in range(c):
        sdy = 0.0
        sdyxc = 0.0
        sx = 0.0
        for k in range(nch):
            sdy = sdy + part[3 * k * c + j]
            sdyxc = sdyxc + part[3 * k * c + c + j]
            sx = sx + part[3 * k * c + 2 * c + j]
        sdy__c[j] = sdy
        sdyxc__c[j] = sdyxc
        sx__c[j] = sx
    free(part)
    return 0


cdef int _backward_finish(const float* dy__mc, const float* x__mc, Py_ssize_t m,
                          Py_ssize_t c, const float* gamma__c, const float* mean__c,
                          const float* invstd__c, const float* y__mc, double count,
                          const double* sdy__c, const double* sdyxc__c, const double* sx__c,
                          float* dx__mc, float* dgamma__c, float* dbeta__c) noexcept nogil:
    # the gradient through the statistics of `count` rows from their sums (x's own, or summed
    # over the processes of a data-parallel step), then pass 2 over x's m rows
    cdef Py_ssize_t nb = _row_blocks(m, c)
    cdef Py_ssize_t k, j
    cdef double sdy, sdyxc, delta, inv, g, kk, b
    cdef float* coef = <float*>malloc(3 * c * sizeof(float) + 1)
    if coef == NULL:
        return -1
    for j in range(c):
        sdy = sdy__c[j]
        delta = sx__c[j] / count               # exact mean - m32
        sdyxc = sdyxc__c[j] - delta * sdy      # sum(dy*(x - exact mean))
        inv = invstd__c[j]
        g = 1.0 if gamma__c == NULL else gamma__c[j]
        # dx = g*inv/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)),  xhat = (x-mean)*inv
        #    = a*dy + b*(x - m32) + (d - b*delta)
        kk = g * inv / count
        b = -kk * inv * inv * sdyxc
        coef[j] = <float>(g * inv)
        coef[c + j] = <float>b
        coef[2 * c + j] = <float>(-kk * sdy - b * delta)
        dgamma__c[j] = <float>(inv * sdyxc)
        dbeta__c[j] = <float>sdy
    # pass 2: dx
    if m > 0:
        for k in prange(nb, schedule="dynamic", nogil=True):
            nb_backward(_isa, dy__mc, x__mc, y__mc, k * m // nb, (k + 1) * m // nb, c,
                        coef, coef + c, coef + 2 * c, mean__c, dx__mc)
    free(coef)
    return 0


cdef int _backward(const float* dy__mc, const float* x__mc, Py_ssize_t m,
                   Py_ssize_t c, const float* gamma__c, const float* mean__c,
                   const float* invstd__c, const float* y__mc, float* dx__mc, float* dgamma__c,
                   float* dbeta__c) noexcept nogil:
    cdef int rc
    cdef double* s = <double*>malloc(3 * c * sizeof(double) + 1)
    if s == NULL:
        return -1
    rc = _grad_sums(dy__mc, x__mc, y__mc, m, c, mean__c, s, s + c, s + 2 * c)
    if rc == 0:
        rc = _backward_finish(dy__mc, x__mc, m, c, gamma__c, mean__c, invstd__c, y__mc,
                              <double>m, s, s + c, s + 2 * c, dx__mc, dgamma__c, dbeta__c)
    free(s)
    return rc


# ---- Python entry points (fastnn.kernels.norm validates everything before calling these) ----

cdef inline const float* _opt(const float[::1] a) noexcept:
    return NULL if a is None else &a[0]


def batch_norm_train(const float[:, ::1] x__mc,  # IN
                     const float[::1] gamma__c, const float[::1] beta__c,  # IN (or None)
                     float[::1] moving_mean__c, float[::1] moving_var__c,  # IN/OUT
                     double momentum, double epsilon,
                     float[:, ::1] y__mc, float[::1] mean__c, float[::1] invstd__c,  # OUT
                     bint relu=False):
    """Training-mode batch norm of (M, C) float32 (M >= 1, C >= 1); updates the moving stats.
    relu: y = max(batch norm, 0) in the same pass."""
    cdef int rc
    cdef const float* g = _opt(gamma__c)
    cdef const float* b = _opt(beta__c)
    with nogil:
        rc = _train(&x__mc[0, 0], x__mc.shape[0], x__mc.shape[1], g, b,
                    &moving_mean__c[0], &moving_var__c[0], momentum, epsilon, relu,
                    &y__mc[0, 0], &mean__c[0], &invstd__c[0])
    if rc:
        raise MemoryError("batch_norm_train: workspace allocation failed")


def batch_norm_inference(const float[:, ::1] x__mc,  # IN
                         const float[::1] gamma__c, const float[::1] beta__c,  # IN (or None)
                         const float[::1] moving_mean__c, const float[::1] moving_var__c,  # IN
                         double epsilon,
                         float[:, ::1] y__mc,  # OUT
                         bint relu=False):
    """Inference-mode batch norm of (M, C) float32 (M >= 1, C >= 1) with the moving stats
    (relu: y = max(batch norm, 0) in the same pass)."""
    cdef int rc
    cdef const float* g = _opt(gamma__c)
    cdef const float* b = _opt(beta__c)
    with nogil:
        rc = _inference(&x__mc[0, 0], x__mc.shape[0], x__mc.shape[1], g, b,
                        &moving_mean__c[0], &moving_var__c[0], epsilon, relu, &y__mc[0, 0])
    if rc:
        raise MemoryError("batch_norm_inference: workspace allocation failed")


def batch_norm_backward(const float[:, ::1] dy__mc, const float[:, ::1] x__mc,  # IN
                        const float[::1] gamma__c,  # IN (or None)
                        const float[::1] mean__c, const float[::1] invstd__c,  # IN
                        float[:, ::1] dx__mc, float[::1] dgamma__c, float[::1] dbeta__c,  # OUT
                        const float[:, ::1] y__mc=None):  # IN (or None)
    """Training-mode gradient of batch norm over (M, C) float32 (M >= 1, C >= 1); with y__mc
    (the output of a ReLU-fused forward) dy is first masked by y > 0 (the ReLU's gradient)."""
    cdef int rc
    cdef const float* g = _opt(gamma__c)
    cdef const float* yp = NULL if y__mc is None else &y__mc[0, 0]
    with nogil:
        rc = _backward(&dy__mc[0, 0], &x__mc[0, 0], x__mc.shape[0], x__mc.shape[1],
                       g, &mean__c[0], &invstd__c[0], yp, &dx__mc[0, 0],
                                    &dgamma__c[0], &dbeta__c[0])
    if rc:
        raise MemoryError("batch_norm_backward: workspace allocation failed")


def batch_norm_moments(const float[:, ::1] x__mc,  # IN (M, C), M >= 1
                       const float[::1] shift__c,    # IN (C,)
                       double[:, ::1] s__2c):        # OUT (2, C): sum(x - shift), sum((x - shift)^2)
    """Shifted first and second moment sums per channel of (M, C) float32, in float64."""
    cdef int rc
    cdef Py_ssize_t c = x__mc.shape[1]
    with nogil:
        rc = _moments(&x__mc[0, 0], x__mc.shape[0], c, &shift__c[0], &s__2c[0, 0], &s__2c[1, 0])
    if rc:
        raise MemoryError("batch_norm_moments: workspace allocation failed")


def batch_norm_train_moments(const float[:, ::1] x__mc,  # IN (M, C), M >= 0
                             const float[::1] gamma__c, const float[::1] beta__c,  # IN (or None)
                             float[::1] moving_mean__c, float[::1] moving_var__c,  # IN/OUT
                             double momentum, double epsilon, double count,
                             const float[::1] shift__c, const double[:, ::1] s__2c,  # IN
                             float[:, ::1] y__mc, float[::1] mean__c, float[::1] invstd__c,  # OUT
                             bint relu=False):
    """Training-mode batch norm of x's rows with the statistics of `count` rows given by their
    shifted sums s (2, C) (batch_norm_moments summed over the processes); updates the moving
    statistics."""
    cdef int rc
    cdef const float* g = _opt(gamma__c)
    cdef const float* b = _opt(beta__c)
    cdef Py_ssize_t m = x__mc.shape[0], c = x__mc.shape[1]
    cdef const float* xp = NULL if m == 0 else &x__mc[0, 0]
    cdef float* yp = NULL if m == 0 else &y__mc[0, 0]
    with nogil:
        rc = _train_finish(xp, m, c, g, b, &moving_mean__c[0], &moving_var__c[0], momentum,
                           epsilon, relu, count, &shift__c[0], &s__2c[0, 0], &s__2c[1, 0],
                           yp, &mean__c[0], &invstd__c[0])
    if rc:
        raise MemoryError("batch_norm_train: workspace allocation failed")


def batch_norm_grad_sums(const float[:, ::1] dy__mc, const float[:, ::1] x__mc,  # IN (M, C)
                         const float[::1] mean__c,                             # IN (C,)
                         double[:, ::1] s__3c,     # OUT (3, C): sum(g), sum(g*(x-mean)), sum(x-mean)
                         const float[:, ::1] y__mc=None):  # IN (or None): g = dy masked by y > 0
    """The three per-channel sums of batch norm's backward over (M, C) float32, in float64."""
    cdef int rc
    cdef const float* yp = NULL if y__mc is None else &y__mc[0, 0]
    cdef Py_ssize_t c = x__mc.shape[1]
    with nogil:
        rc = _grad_sums(&dy__mc[0, 0], &x__mc[0, 0], yp, x__mc.shape[0], c, &mean__c[0],
                        &s__3c[0, 0], &s__3c[1, 0], &s__3c[2, 0])
    if rc:
        raise MemoryError("batch_norm_grad_sums: workspace allocation failed")


def batch_norm_backward_sums(const float[:, ::1] dy__mc, const float[:, ::1] x__mc,  # IN (M, C)
                             const float[::1] gamma__c,  # IN (or None)
                             const float[::1] mean__c, const float[::1] invstd__c,  # IN
                             double count, const double[:, ::1] s__3c,  # IN
                             float[:, ::1] dx__mc, float[::1] dgamma__c, float[::1] dbeta__c,  # OUT
                             const float[:, ::1] y__mc=None):  # IN (or None)
    """Training-mode batch-norm gradient of x's rows through the statistics of `count` rows
    whose backward sums are s (3, C) (batch_norm_grad_sums summed over the processes)."""
    cdef int rc
    cdef const float* g = _opt(gamma__c)
    cdef Py_ssize_t m = x__mc.shape[0], c = x__mc.shape[1]
    cdef const float* yp = NULL if (y__mc is None or m == 0) else &y__mc[0, 0]
    cdef const float* dyp = NULL if m == 0 else &dy__mc[0, 0]
    cdef const float* xp = NULL if m == 0 else &x__mc[0, 0]
    cdef float* dxp = NULL if m == 0 else &dx__mc[0, 0]
    with nogil:
        rc = _backward_finish(dyp, xp, m, c, g, &mean__c[0], &invstd__c[0], yp, count,
                              &s__3c[0, 0], &s__3c[1, 0], &s__3c[2, 0], dxp, &dgamma__c[0],
                              &dbeta__c[0])
    if rc:
        raise MemoryError("batch_norm_backward: workspace allocation failed")


def inference_fold(const float[::1] gamma__c, const float[::1] beta__c,  # IN (or None)
                   const float[::1] moving_var__c, double epsilon,       # IN
                   float[::1] scale__c, float[::1] shift__c):             # OUT
    """The per-channel scale and shift of inference-mode batch norm, computed exactly as
    batch_norm_inference computes them: y = (x - moving_mean)*scale + shift."""
    cdef Py_ssize_t j, c = moving_var__c.shape[0]
    cdef double inv, sc
    for j in range(c):
        inv = 1.0 / sqrt(<double>moving_var__c[j] + epsilon)
        sc = inv if gamma__c is None else gamma__c[j] * inv
        scale__c[j] = <float>sc
        shift__c[j] = <float>(0.0 if beta__c is None else <double>beta__c[j])


def affine_rows(float[:, ::1] y__mc,                  # IN/OUT (M, C)
                const float[::1] center__c, const float[::1] scale__c,
                const float[::1] shift__c,             # IN (C,)
                bint relu):
    """In place y = (y - center)*scale + shift (then max(., 0) if relu), in the calling thread:
    a convolution chunk's inference batch-norm epilogue, bit-identical to batch_norm_inference."""
    cdef Py_ssize_t m = y__mc.shape[0], c = y__mc.shape[1]
    if m == 0 or c == 0:
        return
    with nogil:
        nb_affine(_isa, &y__mc[0, 0], 0, m, c, &center__c[0], &scale__c[0], &shift__c[0], relu,
                  &y__mc[0, 0])
