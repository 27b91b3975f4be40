# cython: language_level=3
"""Fused crossentropy kernels: softmax + categorical CE and sigmoid + binary CE, float32.

Design note
- Rows of (N, K) logits are independent: one OpenMP task per block of rows, each row done in
  L1 (max, exp, sum, scale, loss) so the logits are read once and the probabilities written
  once. The row loops are plain C (below, on top of the fnn_* math in activation.pxd) so that
  gcc vectorises them, compiled for AVX2+FMA and the baseline (FNN_DUAL in activation.pxd,
  the body picked per call by this module's flavour: set_isa).
- from_logits=True: loss = sum_j ys_j (lse - z_j) with lse = m + log(sum exp(z - m)): no
  overflow at |z| = 1e4. from_logits=False reproduces Keras on the softmax probabilities:
  q = p / sum(p), clip to [1e-7, 1 - 1e-7] (float32 bounds, as the torch backend compares),
  -sum ys log q. Binary: stable max(z, 0) - z y + log1p(exp(-|z|)), or Keras's clipped form.
- Backward takes the probabilities the forward stored. Softmax CE: dz = s (sum(ys) p - ys);
  with clipping, components whose q is clipped carry no gradient through q, which gives
  dz = s (p A - [unclipped] ys) with A = sum of ys over unclipped components. Binary:
  dz = s / K (p - ys) (times [unclipped] when from_logits=False).
- Labels: dense float32 (N, K) or sparse int64 (N,); ys = y (1 - ls) + ls / K (binary: ls / 2).
  scale is one float per row (stride 1) or one for all rows (stride 0).
"""
from cython.parallel cimport prange
from .activation cimport fnn_exp, fnn_log, fnn_logs, fnn_softmax_row, fnn_act_set_isa


cdef void _apply_isa(int isa) noexcept nogil:
    fnn_act_set_isa(isa)      # this module's copy of the activation.pxd loops and its own rows

include "isa.pxi"

cdef extern from *:
    """
    #define FNN_EPS 1.0e-7f
    #define FNN_1M_EPS 0.99999988079071044921875f   /* float32(1 - 1e-7) */

    /* a probability clipped to [eps, 1 - eps]; NaN stays NaN */
    static FNN_INLINE float fnn_clip(float q) {
        float c = q < FNN_EPS ? FNN_EPS : q;
        return c > FNN_1M_EPS ? FNN_1M_EPS : c;
    }
    /* log of a positive normal or NaN (fnn_log alone turns NaN into a number) */
    static FNN_INLINE float fnn_lognan(float c) {
        return (c == c) ? fnn_log(c) : c;
    }
    static FNN_INLINE float fnn_logc(float q) {
        return fnn_lognan(fnn_clip(q));
    }

    /* softmax CE of one row: writes p (probabilities), returns the loss.
       y: dense labels (NULL when sparse), c: sparse class */
    FNN_DUAL(float, fnn_sce_row, (const float* z, const float* y, long long c, float* p,
                                        Py_ssize_t k, float ls, int from_logits), {
        float a = 1.0f - ls, b = ls / (float)k;
        float m = fnn_row_max(z, k);
        float s = fnn_row_sum_exp(z, p, k, m);
        float inv = 1.0f / s, acc = 0.0f;
        fnn_row_scale(p, k, inv);
        if (from_logits) {
            /* -log_softmax = lse - z = log(s) - (z - m): keeps log(s)'s digits when |m| >> 1 */
            float lg = fnn_logs(s);
            if (y) {
                _Pragma("omp simd reduction(+:acc)")
                for (Py_ssize_t j = 0; j < k; j++) acc += (y[j] * a + b) * (lg - (z[j] - m));
            } else {
                if (b != 0.0f) {
                    _Pragma("omp simd reduction(+:acc)")
                    for (Py_ssize_t j = 0; j < k; j++) acc += lg - (z[j] - m);
                    acc *= b;
                }
                acc += a * (lg - (z[c] - m));
            }
            return acc;
        }
        /* Keras on probabilities: renormalise by the (float32) sum, clip, log */
        float sp = 0.0f;
        _Pragma("omp simd reduction(+:sp)")
        for (Py_ssize_t j = 0; j < k; j++) sp += p[j];
        if (y) {
            _Pragma("omp simd reduction(+:acc)")
            for (Py_ssize_t j = 0; j < k; j++) acc += (y[j] * a + b) * fnn_logc(p[j] / sp);
        } else {
            if (b != 0.0f) {
                _Pragma("omp simd reduction(+:acc)")
                for (Py_ssize_t j = 0; j < k; j++) acc += fnn_logc(p[j] / sp);
                acc *= b;
            }
            acc += a * fnn_logc(p[c] / sp);
        }
        return -acc;
    })
    static inline float fnn_sce_row(const float* z, const float* y, long long c, float* p, Py_ssize_t k, float ls, int from_logits) { return FNN_PICK(fnn_sce_row)(z, y, c, p, k, ls, from_logits); }

    FNN_DUAL(void, fnn_sce_row_b, (const float* p, const float* y, long long c, float* dz,
                                         Py_ssize_t k, float ls, int from_logits, float scale), {
        float a = 1.0f - ls, b = ls / (float)k;
        if (from_logits) {
            if (y) {
                float sy = 0.0f;
                _Pragma("omp simd reduction(+:sy)")
                for (Py_ssize_t j = 0; j < k; j++) sy += y[j] * a + b;
                _Pragma("omp simd")
                for (Py_ssize_t j = 0; j < k; j++) dz[j] = scale * (sy * p[j] - (y[j] * a + b));
            } else {
                _Pragma("omp simd")
                for (Py_ssize_t j = 0; j < k; j++) dz[j] = scale * (p[j] - b - (j == c ? a : 0.0f));
            }
            return;
        }
        float sp = 0.0f, A = 0.0f;
        _Pragma("omp simd reduction(+:sp)")
        for (Py_ssize_t j = 0; j < k; j++) sp += p[j];
        /* unclipped: FNN_EPS <= q <= 1 - eps (where the clip passes the gradient) */
        #define FNN_FREE(q) ((q) >= FNN_EPS && (q) <= FNN_1M_EPS)
        if (y) {
            _Pragma("omp simd reduction(+:A)")
            for (Py_ssize_t j = 0; j < k; j++) { float q = p[j] / sp; A += FNN_FREE(q) ? y[j] * a + b : 0.0f; }
            _Pragma("omp simd")
            for (Py_ssize_t j = 0; j < k; j++) {
                float q = p[j] / sp;
                dz[j] = scale * (p[j] * A - (FNN_FREE(q) ? y[j] * a + b : 0.0f));
            }
        } else {
            _Pragma("omp simd reduction(+:A)")
            for (Py_ssize_t j = 0; j < k; j++) { float q = p[j] / sp; A += FNN_FREE(q) ? b + (j == c ? a : 0.0f) : 0.0f; }
            _Pragma("omp simd")
            for (Py_ssize_t j = 0; j < k; j++) {
                float q = p[j] / sp;
                dz[j] = scale * (p[j] * A - (FNN_FREE(q) ? b + (j == c ? a : 0.0f) : 0.0f));
            }
        }
        /* NaN or inf probabilities: the selects above would hide them (p / sum(p) is NaN for
           every class once the sum is, and Keras's gradient flows through that sum) */
        if (!(sp - sp == 0.0f)) {
            for (Py_ssize_t j = 0; j < k; j++) dz[j] = sp - sp;
        }
    })
    static inline void fnn_sce_row_b(const float* p, const float* y, long long c, float* dz, Py_ssize_t k, float ls, int from_logits, float scale) { FNN_PICK(fnn_sce_row_b)(p, y, c, dz, k, ls, from_logits, scale); }

    /* sigmoid BCE of one row (mean over k): writes p = sigmoid(z), returns the loss */
    FNN_DUAL(float, fnn_bce_row, (const float* z, const float* y, float* p, Py_ssize_t k,
                                        float ls, int from_logits), {
        float a = 1.0f - ls, b = 0.5f * ls, acc = 0.0f;
        if (from_logits) {
            _Pragma("omp simd reduction(+:acc)")
            for (Py_ssize_t j = 0; j < k; j++) {
                float v = z[j], av = v < 0.0f ? -v : v;
                float e = fnn_exp(-av);
                p[j] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
                acc += (v > 0.0f ? v : 0.0f) - v * (y[j] * a + b) + fnn_log1p01(e);
            }
        } else {
            _Pragma("omp simd reduction(+:acc)")
            for (Py_ssize_t j = 0; j < k; j++) {
                float v = z[j], av = v < 0.0f ? -v : v;
                float e = fnn_exp(-av);
                float q = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
                float ys = y[j] * a + b;
                p[j] = q;
                float c = fnn_clip(q);          /* Keras: log(c) and log(1 - c) of the clipped c */
                acc -= ys * fnn_lognan(c) + (1.0f - ys) * fnn_lognan(1.0f - c);
            }
        }
        return acc / (float)k;
    })
    static inline float fnn_bce_row(const float* z, const float* y, float* p, Py_ssize_t k, float ls, int from_logits) { return FNN_PICK(fnn_bce_row)(z, y, p, k, ls, from_logits); }

    FNN_DUAL(void, fnn_bce_row_b, (const float* p, const float* y, float* dz, Py_ssize_t k,
                                         float ls, int from_logits, float scale), {
        float a = 1.0f - ls, b = 0.5f * ls, s = scale / (float)k;
        if (from_logits) {
            _Pragma("omp simd")
            for (Py_ssize_t j = 0; j < k; j++) dz[j] = s * (p[j] - (y[j] * a + b));
        } else {
            _Pragma("omp simd")
            for (Py_ssize_t j = 0; j < k; j++) {
                float q = p[j];
                float d = s * (q - (y[j] * a + b));
                dz[j] = (q != q) ? q : (FNN_FREE(q) ? d : 0.0f * s);   /* scale * 0: NaN for an inf scale, as Keras */
            }
        }
    })
    static inline void fnn_bce_row_b(const float* p, const float* y, float* dz, Py_ssize_t k, float ls, int from_logits, float scale) { FNN_PICK(fnn_bce_row_b)(p, y, dz, k, ls, from_logits, scale); }
    """
    float fnn_sce_row(const float* z, const float* y, long long c, float* p, Py_ssize_t k,
                      float ls, bint from_logits) noexcept nogil
    void fnn_sce_row_b(const float* p, const float* y, long long c, float* dz, Py_ssize_t k,
                       float ls, bint from_logits, float scale) noexcept nogil
    float fnn_bce_row(const float* z, const float* y, float* p, Py_ssize_t k, float ls,
                      bint from_logits) noexcept nogil
    void fnn_bce_row_b(const float* p, const float* y, float* dz, Py_ssize_t k, float ls,
                       bint from_logits, float scale) noexcept nogil

cdef enum:
    CHUNK = 16384       # floats per parallel task


cdef inline Py_ssize_t _rows_per_task(Py_ssize_t k) noexcept nogil:
    return max(1, CHUNK // max(k, 1))


def softmax_crossentropy(const float[:, ::1] z__nk,  # IN logits
                         const float[:, ::1] y__nk,  # IN dense labels (unused when sparse)
                         const long long[::1] c__n,  # IN sparse labels (unused when dense)
                         bint sparse, float ls, bint from_logits,
                         float[:, ::1] p__nk,       # OUT probabilities
                         float[::1] loss__n,        # OUT per-sample loss
                         Py_ssize_t par_min):
    """Per-row softmax crossentropy of logits z; probabilities into p, losses into loss."""
    cdef Py_ssize_t n = z__nk.shape[0], k = z__nk.shape[1], i, t, rp, ntask, i0, i1
    if n == 0 or k == 0:
        return
    cdef const float* pz = &z__nk[0, 0]
    cdef const float* py = <const float*>0 if sparse else &y__nk[0, 0]
    cdef const long long* pc = &c__n[0] if sparse else <const long long*>0
    cdef float* pp = &p__nk[0, 0]
    cdef float* pl = &loss__n[0]
    rp = _rows_per_task(k)
    ntask = (n + rp - 1) // rp
    with nogil:
        if n * k < par_min or ntask == 1:
            for i in range(n):
                pl[i] = fnn_sce_row(pz + i * k, <const float*>0 if sparse else py + i * k,
                                    pc[i] if sparse else 0, pp + i * k, k, ls, from_logits)
        else:
            for t in prange(ntask, schedule="dynamic"):
                i0 = t * rp
                i1 = min(n, i0 + rp)
                for i in range(i0, i1):
                    pl[i] = fnn_sce_row(pz + i * k, <const float*>0 if sparse else py + i * k,
                                        pc[i] if sparse else 0, pp + i * k, k, ls, from_logits)


def softmax_crossentropy_backward(const float[:, ::1] p__nk,  # IN probabilities
                                  const float[:, ::1] y__nk,  # IN dense labels
                                  const long long[::1] c__n,  # IN sparse labels
                                  bint sparse, float ls, bint from_logits,
                                  const float[::1] scale__n,  # IN scale per row (or 1 value)
                                  Py_ssize_t scale_stride,
                                  float[:, ::1] dz__nk,       # OUT gradient w.r.t. logits
                                  Py_ssize_t par_min):
    """dz = d(sum_i scale_i loss_i) / dz from the stored probabilities."""
    cdef Py_ssize_t n = p__nk.shape[0], k = p__nk.shape[1], i, t, rp, ntask, i0, i1
    if n == 0 or k == 0:
        return
    cdef const float* pp = &p__nk[0, 0]
    cdef const float* py = <const float*>0 if sparse else &y__nk[0, 0]
    cdef const long long* pc = &c__n[0] if sparse else <const long long*>0
    cdef const float* ps = &scale__n[0]
    cdef float* pd = &dz__nk[0, 0]
    rp = _rows_per_task(k)
    ntask = (n + rp - 1) // rp
    with nogil:
        if n * k < par_min or ntask == 1:
            for i in range(n):
                fnn_sce_row_b(pp + i * k, <const float*>0 if sparse else py + i * k,
                              pc[i] if sparse else 0, pd + i * k, k, ls, from_logits,
                              ps[i * scale_stride])
        else:
            for t in prange(ntask, schedule="dynamic"):
                i0 = t * rp
                i1 = min(n, i0 + rp)
                for i in range(i0, i1):
                    fnn_sce_row_b(pp + i * k, <const float*>0 if sparse else py + i * k,
                                  pc[i] if sparse else 0, pd + i * k, k, ls, from_logits,
                                  ps[i * scale_stride])


def sigmoid_binary_crossentropy(const float[:, ::1] z__nk, const float[:, ::1] y__nk,  # IN
                                float ls, bint from_logits,
                                float[:, ::1] p__nk, float[::1] loss__n,  # OUT
                                Py_ssize_t par_min):
    """Per-row binary crossentropy (mean over k) of logits z; sigmoid(z) into p."""
    cdef Py_ssize_t n = z__nk.shape[0], k = z__nk.shape[1], i, t, rp, ntask, i0, i1
    if n == 0 or k == 0:
        return
    cdef const float* pz = &z__nk[0, 0]
    cdef const float* py = &y__nk[0, 0]
    cdef float* pp = &p__nk[0, 0]
    cdef float* pl = &loss__n[0]
    rp = _rows_per_task(k)
    ntask = (n + rp - 1) // rp
    with nogil:
        if n * k < par_min or ntask == 1:
            for i in range(n):
                pl[i] = fnn_bce_row(pz + i * k, py + i * k, pp + i * k, k, ls, from_logits)
        else:
            for t in prange(ntask, schedule="dynamic"):
                i0 = t * rp
                i1 = min(n, i0 + rp)
                for i in range(i0, i1):
                    pl[i] = fnn_bce_row(pz + i * k, py + i * k, pp + i * k, k, ls, from_logits)


def sigmoid_binary_crossentropy_backward(const float[:, ::1] p__nk, const float[:, ::1] y__nk,  # IN
                                         float ls, bint from_logits,
                                         const float[::1] scale__n, Py_ssize_t scale_stride,  # IN
                                         float[:, ::1] dz__nk,  # OUT
                                         Py_ssize_t par_min):
    """dz = d(sum_i scale_i loss_i) / dz of the binary crossentropy (loss_i a mean over k)."""
    cdef Py_ssize_t n = p__nk.shape[0], k = p__nk.shape[1], i, t, rp, ntask, i0, i1
    if n == 0 or k == 0:
        return
    cdef const float* pp = &p__nk[0, 0]
    cdef const float* py = &y__nk[0, 0]
    cdef const float* ps = &scale__n[0]
    cdef float* pd = &dz__nk[0, 0]
    rp = _rows_per_task(k)
    ntask = (n + rp - 1) // rp
    with nogil:
        if n * k < par_min or ntask == 1:
            for i in range(n):
                fnn_bce_row_b(pp + i * k, py + i * k, pd + i * k, k, ls, from_logits,
                              ps[i * scale_stride])
        else:
            for t in prange(ntask, schedule="dynamic"):
                i0 = t * rp
                i1 = min(n, i0 + rp)
                for i in range(i0, i1):
                    fnn_bce_row_b(pp + i * k, py + i * k, pd + i * k, k, ls, from_logits,
                                  ps[i * scale_stride])
