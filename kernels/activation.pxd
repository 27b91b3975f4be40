# C-level API of fastnn._kernels.activation (cimport it from other Cython kernels).
#
# The fnn_* functions are float32 elementary functions written as straight-line code (no
# branches, no calls: only selects), so that gcc inlines them and vectorises the loops that
# call them with plain -O3 and baseline SSE2. glibc's scalar expf/tanhf/erff run one element at
# a time and measured 10-60x slower than a copy of the same bytes; these reach the copy ceiling.
# Accuracy (checked against float64 in tests/kernels/test_activation.py): fnn_exp, fnn_log
# <= 2 ulp (Cephes polynomials); fnn_expm1, fnn_tanh, fnn_sigmoid, fnn_log1p <= 4 ulp
# relative over the whole range. NaN propagates; exp overflows to inf above 88.72 and flushes
# to 0 below -87.34 (where float32 results would be subnormal).

cdef extern from *:
    """
    /* Without -fno-trapping-math gcc will not turn the float selects below (and in every
       loop of the modules that include this) into vector blends, so no loop vectorises.
       Results are unchanged: only FP-exception flags, which nothing reads, may differ. */
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("no-trapping-math")
    #endif
    #include <math.h>
    /* forced: gcc's inliner otherwise gives up on a few call sites, and a call kills vectorisation */
    #define FNN_INLINE inline __attribute__((always_inline))
    typedef union { float f; int i; } fnn_bits;

    /* exp(x): Cephes expf. Round x/ln2 to n (magic-number rounding, vectorisable), reduce
       r = x - n ln2 in two pieces, degree-6 polynomial, scale by 2^n through the exponent
       bits (2^128 as 2^127 * 2 so that exp(88.72) stays finite). */
    static FNN_INLINE float fnn_exp(float x) {
        float xc = x > 88.7228394f ? 88.7228394f : x;
        xc = xc < -87.3365448f ? -87.3365448f : xc;
        xc = (x != x) ? 0.0f : xc;                  /* keep NaN out of the int conversion */
        float fn = xc * 1.44269504088896341f + 12582912.0f;
        fn = fn - 12582912.0f;
        float r = xc - fn * 0.693359375f;
        r = r - fn * -2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        int n = (int)fn;
        int nb = n > 127 ? 127 : n;
        fnn_bits s; s.i = (nb + 127) << 23;
        float res = p * s.f;
        res = n > 127 ? res * 2.0f : res;
        res = x > 88.7228394f ? INFINITY : res;
        res = x < -87.3365448f ? 0.0f : res;
        return (x != x) ? x : res;
    }

    /* exp(x) - 1 without cancellation: Taylor series to x^8 for |x| < 0.5 (truncation
       < 1e-8 relative), exp(x) - 1 elsewhere (|result| >= 0.39, no cancellation). */
    static FNN_INLINE float fnn_expm1(float x) {
        float p = 2.48015873e-5f;
        p = p * x + 1.98412698e-4f;
        p = p * x + 1.38888889e-3f;
        p = p * x + 8.33333333e-3f;
        p = p * x + 4.16666667e-2f;
        p = p * x + 1.66666667e-1f;
        p = p * x + 0.5f;
        float small = x + x * x * p;
        float big = fnn_exp(x) - 1.0f;
        float ax = x < 0.0f ? -x : x;
        return ax < 0.5f ? small : big;
    }

    /* log(x) for positive normal finite x: Cephes logf (mantissa in [sqrt(1/2), sqrt(2)),
       degree-8 polynomial). Callers keep x away from 0, subnormals, inf and NaN. */
    static FNN_INLINE float fnn_log(float x) {
        fnn_bits u; u.f = x;
        int e = ((u.i >> 23) & 0xff) - 126;
        u.i = (u.i & 0x807fffff) | 0x3f000000;      /* mantissa m in [0.5, 1) */
        float m = u.f;
        int lo = m < 0.707106781186547524f;
        float f = lo ? m + m - 1.0f : m - 1.0f;
        float fe = (float)(lo ? e - 1 : e);
        float z = f * f;
        float y = 7.0376836292e-2f;
        y = y * f - 1.1514610310e-1f;
        y = y * f + 1.1676998740e-1f;
        y = y * f - 1.2420140846e-1f;
        y = y * f + 1.4249322787e-1f;
        y = y * f - 1.6668057665e-1f;
        y = y * f + 2.0000714765e-1f;
        y = y * f - 2.4999993993e-1f;
        y = y * f + 3.3333331174e-1f;
        y = y * f * z;
        y += -2.12194440e-4f * fe;
        y += -0.5f * z;
        return f + y + 0.693359375f * fe;
    }

    /* log(1 + u) for u in [0, 1] (or NaN): log(w) + (u - (w - 1)) / w with w = 1 + u adds
       back what rounding w lost (w - 1 is exact). The correction is below ulp(1) / 2, so
       1 / w ~ 1.5 - w / 2 (exact at w = 1, within 12% on [1, 2]) keeps the result within an
       ulp and saves a division. */
    static FNN_INLINE float fnn_log1p01(float u) {
        float w = 1.0f + u;
        float wc = (w == w) ? w : 1.0f;
        float r = fnn_log(wc) + (u - (wc - 1.0f)) * (1.5f - 0.5f * wc);
        return (u != u) ? u : r;
    }

    /* 1 / (1 + exp(-x)): exact limits 0 and 1, relative error a few ulp everywhere. */
    static FNN_INLINE float fnn_sigmoid(float x) {
        return 1.0f / (1.0f + fnn_exp(-x));
    }

    /* tanh(x) = sign(x) * (-t / (t + 2)), t = expm1(-2|x|) in (-1, 0]: no cancellation near 0,
       exactly +-1 for large |x|. */
    static FNN_INLINE float fnn_tanh(float x) {
        float a = x < 0.0f ? -x : x;
        float t = fnn_expm1(-2.0f * a);
        float r = -t / (t + 2.0f);
        return x < 0.0f ? -r : r;
    }

    /* log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) (numpy's logaddexp(x, 0)). */
    static FNN_INLINE float fnn_softplus(float x) {
        float a = x < 0.0f ? -x : x;
        float pos = x > 0.0f ? x : 0.0f;
        return pos + fnn_log1p01(fnn_exp(-a));
    }

    /* ---- loops. Plain C, not Cython: gcc vectorised only some of the Cython-generated
       versions of these loops (measured 3x slower). `omp simd` because y may be x (in
       place). Each loop is compiled twice (FNN_DUAL): an AVX2+FMA body (x86-64-v3) and the
       baseline one (SSE2 on x86-64); fnn_act_v3, set per module by set_isa (fastnn.kernels.isa,
       FASTNN_ISA), picks one per call, so either flavour runs (and is tested) on any CPU that
       has it. There is no AVX-512 body: the avx512 flavour runs the AVX2 one. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #define FNN_HAS_V3 1
    #define FNN_DUAL(ret, name, params, ...) \
      static __attribute__((target("arch=x86-64-v3"), optimize("no-trapping-math"))) ret name##_v3 params __VA_ARGS__ \
      static __attribute__((optimize("no-trapping-math"))) ret name##_base params __VA_ARGS__
    #define FNN_PICK(name) (fnn_act_v3 ? name##_v3 : name##_base)
    #else
    #define FNN_HAS_V3 0
    #define FNN_DUAL(ret, name, params, ...) static ret name##_base params __VA_ARGS__
    #define FNN_PICK(name) (name##_base)
    #endif
    /* 1: this module runs the AVX2+FMA bodies (only ever set where the CPU has them) */
    static int fnn_act_v3 = 0;
    /* The parameters are copied into locals p0..p3 first: a load of p[k] inside a select
       arm (p might alias y) is "control flow" to the vectoriser. */
    #define FNN_PARAMS const float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3]; \
        (void)p0; (void)p1; (void)p2; (void)p3;
    #define FNN_MAP(name, expr) \
      FNN_DUAL(void, name, (const float* x, float* y, Py_ssize_t n, const float* p), { \
        FNN_PARAMS _Pragma("omp simd") for (Py_ssize_t i = 0; i < n; i++) { float v = x[i]; y[i] = (expr); } })
    #define FNN_MAP2(name, expr) \
      FNN_DUAL(void, name, (const float* x, const float* yy, const float* dy, float* dx, Py_ssize_t n, const float* p), { \
        FNN_PARAMS _Pragma("omp simd") for (Py_ssize_t i = 0; i < n; i++) { float v = x[i]; float w = yy[i]; (void)w; (void)v; dx[i] = dy[i] * (expr); } })

    #define FNN_SELU_A 1.6732632423543772848170429916717f
    #define FNN_SELU_S 1.0507009873554804934193349852946f
    #define FNN_GELU_C 0.79788456080286535588f
    #define FNN_GELU_A 0.044715f

    /* c ? a : b as bit operations: some select patterns (arithmetic in one arm) stayed
       branches inside the Cython-generated translation unit, and a branch stops the
       vectoriser; this form cannot become one. */
    static FNN_INLINE float fnn_sel(int c, float a, float b) {
        fnn_bits ua, ub; ua.f = a; ub.f = b;
        int m = -(c != 0);
        ua.i = (ua.i & m) | (ub.i & ~m);
        return ua.f;
    }
    static FNN_INLINE float fnn_elu(float v, float alpha) {
        return fnn_sel(v >= 0.0f, v, alpha * fnn_expm1(v));
    }

    /* exp(-x^2 / 2) without the rounding of x^2 (which costs 2e-6 relative at |x| = 10):
       xh = x with its low 12 mantissa bits cleared, so xh^2 is exact; x^2 = xh^2 + lo. */
    static FNN_INLINE float fnn_exp_mhalfsq(float x) {
        fnn_bits u; u.f = x;
        u.i &= (int)0xfffff000;
        float xh = u.f, xl = x - xh;
        float lo = (xh + xh + xl) * xl;
        float r = fnn_exp(-0.5f * (xh * xh)) * fnn_exp(-0.5f * lo);
        return (x > 20.0f || x < -20.0f) ? 0.0f : r;      /* (and no inf - inf at +-inf) */
    }
    /* Phi(x) = erfc(-x / sqrt 2) / 2, the normal CDF, with erfc(z) for z >= 0 from
       Numerical Recipes' erfcc (Chebyshev fit, relative error < 1.2e-7 for all z >= 0):
       erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2); the tail keeps its relative accuracy. */
    static FNN_INLINE float fnn_phi(float x) {
        float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
        float t = 1.0f / (1.0f + 0.5f * z);
        float pp = 0.17087277f;
        pp = pp * t - 0.82215223f;
        pp = pp * t + 1.48851587f;
        pp = pp * t - 1.13520398f;
        pp = pp * t + 0.27886807f;
        pp = pp * t - 0.18628806f;
        pp = pp * t + 0.09678418f;
        pp = pp * t + 0.37409196f;
        pp = pp * t + 1.00002368f;
        pp = pp * t - 1.26551223f;
        float half_erfc = 0.5f * t * fnn_exp_mhalfsq(x) * fnn_exp(pp);
        return x < 0.0f ? half_erfc : 1.0f - half_erfc;
    }

    /* relu parameters: ns = negative_slope, t = threshold, mv = max_value, hm = has max */
    static FNN_INLINE float fnn_relu(float v, float ns, float t, float mv, float hm) {
        /* Keras relu (ReLU.static_call): relu(v), or v * (v > threshold) when threshold != 0,
           clipped to [0, max_value] when given, minus negative_slope * relu(threshold - v)
           when negative_slope != 0. NaN survives every select; relu(-inf) is 0, but with a
           threshold -inf * 0 is NaN, as in Keras. */
        float r = v <= t ? (t != 0.0f ? v * 0.0f : 0.0f) : v;
        float rc = r < 0.0f ? 0.0f : r;
        rc = rc > mv ? mv : rc;
        r = hm != 0.0f ? rc : r;
        return ns != 0.0f ? r + ns * (v < t ? v - t : 0.0f) : r;
    }
    static FNN_INLINE float fnn_relu_d(float v, float ns, float t, float mv, float hm) {
        /* 1 where the positive part passes (above t; inside (0, mv) when clipped) */
        int inside = (v > 0.0f) & (v < mv);
        int pos = (v > t) & (inside | (hm == 0.0f));
        float d = fnn_sel(pos, 1.0f, 0.0f) + fnn_sel(v < t, ns, 0.0f);
        return fnn_sel(v != v, v, d);
    }
    static FNN_INLINE float fnn_hsig(float v) {
        float h = v / 6.0f + 0.5f;                      /* Keras 3: x / 6 + 0.5 clipped */
        h = h <= 0.0f ? 0.0f : h;
        return h >= 1.0f ? 1.0f : h;
    }
    static FNN_INLINE float fnn_gelu_t_s(float v) {
        /* 0.5 (1 + tanh(u)) = sigmoid(2u): the same function without cancellation at v << 0 */
        return fnn_sigmoid(2.0f * FNN_GELU_C * (v + FNN_GELU_A * v * v * v));
    }

    FNN_MAP(fnn_f_linear, v)
    FNN_MAP(fnn_f_relu, fnn_relu(v, p0, p1, p2, p3))
    FNN_MAP(fnn_f_elu, fnn_elu(v, p0))
    FNN_MAP(fnn_f_selu, FNN_SELU_S * fnn_elu(v, FNN_SELU_A))
    FNN_MAP(fnn_f_gelu, v * fnn_phi(v))
    FNN_MAP(fnn_f_gelu_tanh, v * fnn_gelu_t_s(v))
    FNN_MAP(fnn_f_sigmoid, fnn_sigmoid(v))
    FNN_MAP(fnn_f_hard_sigmoid, fnn_hsig(v))
    FNN_MAP(fnn_f_hard_silu, v * fnn_hsig(v))
    FNN_MAP(fnn_f_tanh, fnn_tanh(v))
    FNN_MAP(fnn_f_softsign, v / (1.0f + fabsf(v)))
    FNN_MAP(fnn_f_softplus, fnn_softplus(v))
    FNN_MAP(fnn_f_silu, v * fnn_sigmoid(v))
    FNN_MAP(fnn_f_exponential, fnn_exp(v))

    /* backward: v = x, w = y = act(x); the cheaper of the two is used */
    FNN_MAP2(fnn_b_linear, 1.0f)
    FNN_MAP2(fnn_b_relu, fnn_relu_d(v, p0, p1, p2, p3))
    FNN_MAP2(fnn_b_elu, fnn_sel(v >= 0.0f, 1.0f, w + p0))
    FNN_MAP2(fnn_b_selu, fnn_sel(v >= 0.0f, FNN_SELU_S, w + FNN_SELU_S * FNN_SELU_A))
    FNN_MAP2(fnn_b_gelu, fnn_phi(v) + v * 0.39894228040143268f * fnn_exp_mhalfsq(v))
    FNN_MAP2(fnn_b_gelu_tanh, fnn_gelu_t_s(v) + v * 2.0f * fnn_gelu_t_s(v) * (1.0f - fnn_gelu_t_s(v))
                              * FNN_GELU_C * (1.0f + 3.0f * FNN_GELU_A * v * v))
    FNN_MAP2(fnn_b_sigmoid, w * (1.0f - w))
    FNN_MAP2(fnn_b_hard_sigmoid, (v != v ? v : ((v > -3.0f && v < 3.0f) ? (1.0f / 6.0f) : 0.0f)))
    FNN_MAP2(fnn_b_hard_silu, (v != v ? v : ((v > -3.0f && v < 3.0f) ? (2.0f * v + 3.0f) / 6.0f
                                              : (v >= 3.0f ? 1.0f : 0.0f))))
    FNN_MAP2(fnn_b_tanh, 1.0f - w * w)
    FNN_MAP2(fnn_b_softsign, 1.0f / ((1.0f + fabsf(v)) * (1.0f + fabsf(v))))
    FNN_MAP2(fnn_b_softplus, fnn_sigmoid(v))
    FNN_MAP2(fnn_b_silu, fnn_sigmoid(v) * (1.0f + v * (1.0f - fnn_sigmoid(v))))
    FNN_MAP2(fnn_b_exponential, w)

    typedef void (*fnn_fwd_fn)(const float*, float*, Py_ssize_t, const float*);
    typedef void (*fnn_bwd_fn)(const float*, const float*, const float*, float*, Py_ssize_t, const float*);
    /* indexed by the ACT_* kinds below */
    #define FNN_FWD_LIST(S) { \
        fnn_f_linear##S, fnn_f_relu##S, fnn_f_elu##S, fnn_f_selu##S, fnn_f_gelu##S, fnn_f_gelu_tanh##S, \
        fnn_f_sigmoid##S, fnn_f_hard_sigmoid##S, fnn_f_hard_silu##S, fnn_f_tanh##S, fnn_f_softsign##S, \
        fnn_f_softplus##S, fnn_f_silu##S, fnn_f_exponential##S}
    #define FNN_BWD_LIST(S) { \
        fnn_b_linear##S, fnn_b_relu##S, fnn_b_elu##S, fnn_b_selu##S, fnn_b_gelu##S, fnn_b_gelu_tanh##S, \
        fnn_b_sigmoid##S, fnn_b_hard_sigmoid##S, fnn_b_hard_silu##S, fnn_b_tanh##S, fnn_b_softsign##S, \
        fnn_b_softplus##S, fnn_b_silu##S, fnn_b_exponential##S}
    static const fnn_fwd_fn fnn_fwd_table_base[14] = FNN_FWD_LIST(_base);
    static const fnn_bwd_fn fnn_bwd_table_base[14] = FNN_BWD_LIST(_base);
    #if FNN_HAS_V3
    static const fnn_fwd_fn fnn_fwd_table_v3[14] = FNN_FWD_LIST(_v3);
    static const fnn_bwd_fn fnn_bwd_table_v3[14] = FNN_BWD_LIST(_v3);
    #endif
    static inline void fnn_act_forward(int kind, const float* x, float* y, Py_ssize_t n, const float* p) {
        FNN_PICK(fnn_fwd_table)[kind](x, y, n, p);
    }
    static inline void fnn_act_backward(int kind, const float* x, const float* y, const float* dy,
                                        float* dx, Py_ssize_t n, const float* p) {
        FNN_PICK(fnn_bwd_table)[kind](x, y, dy, dx, n, p);
    }
    /* this module's flavour: 0 portable, >= 1 the AVX2+FMA bodies (the caller checks support) */
    static inline void fnn_act_set_isa(int isa) {
        fnn_act_v3 = FNN_HAS_V3 && isa >= 1;
    }

    /* ---- rows: softmax / log-softmax of k contiguous floats (y may be x) */
    FNN_DUAL(float, fnn_row_max, (const float* x, Py_ssize_t k), {
        float m = -INFINITY;          /* NaN is skipped here and re-enters through exp */
        _Pragma("omp simd reduction(max:m)")
        for (Py_ssize_t j = 0; j < k; j++) m = x[j] > m ? x[j] : m;
        return m;
    })
    static inline float fnn_row_max(const float* x, Py_ssize_t k) { return FNN_PICK(fnn_row_max)(x, k); }
    FNN_DUAL(float, fnn_row_sum_exp, (const float* x, float* y, Py_ssize_t k, float m), {
        /* y = exp(x - m) (when y is not NULL) and returns the sum, summed in double: a float
           sum of k terms in vector-width partial sums is off by ~sqrt(k / width) ulp (1.5e-6
           relative for k = 3000 on the 4-lane portable flavour), which log_softmax shows as
           an absolute error; the double sum costs one convert and add next to exp's ~20 flops */
        double s = 0.0;
        if (y) {
            _Pragma("omp simd reduction(+:s)")
            for (Py_ssize_t j = 0; j < k; j++) { float e = fnn_exp(x[j] - m); y[j] = e; s += (double)e; }
        } else {
            _Pragma("omp simd reduction(+:s)")
            for (Py_ssize_t j = 0; j < k; j++) s += (double)fnn_exp(x[j] - m);
        }
        return (float)s;
    })
    static inline float fnn_row_sum_exp(const float* x, float* y, Py_ssize_t k, float m) { return FNN_PICK(fnn_row_sum_exp)(x, y, k, m); }
    FNN_DUAL(void, fnn_row_scale, (float* y, Py_ssize_t k, float c), {
        _Pragma("omp simd")
        for (Py_ssize_t j = 0; j < k; j++) y[j] *= c;
    })
    static inline void fnn_row_scale(float* y, Py_ssize_t k, float c) { FNN_PICK(fnn_row_scale)(y, k, c); }
    FNN_DUAL(void, fnn_row_shift, (const float* x, float* y, Py_ssize_t k, float m, float c), {
        /* (x - m) - c, not x - (m + c): m + c would round away log(s)'s low bits when |m| >> 1 */
        _Pragma("omp simd")
        for (Py_ssize_t j = 0; j < k; j++) y[j] = (x[j] - m) - c;
    })
    static inline void fnn_row_shift(const float* x, float* y, Py_ssize_t k, float m, float c) { FNN_PICK(fnn_row_shift)(x, y, k, m, c); }
    static inline float fnn_logs(float s) {
        /* log(s) of a sum of exps, s in [1, k]; NaN passes through */
        return (s == s && s < INFINITY) ? fnn_log(s) : s;
    }
    static inline float fnn_logsum(float s, float m) {
        return m + fnn_logs(s);
    }
    static inline void fnn_softmax_row(const float* x, float* y, Py_ssize_t k, int log) {
        float m = fnn_row_max(x, k);
        if (log) {
            float c = fnn_logs(fnn_row_sum_exp(x, NULL, k, m));
            fnn_row_shift(x, y, k, m, c);
        } else {
            float s = fnn_row_sum_exp(x, y, k, m);
            fnn_row_scale(y, k, 1.0f / s);
        }
    }
    FNN_DUAL(void, fnn_softmax_row_b, (const float* y, const float* dy, float* dx, Py_ssize_t k, int log), {
        float s = 0.0f;
        if (log) {      /* dx = dy - softmax * sum(dy), softmax = exp(y) */
            _Pragma("omp simd reduction(+:s)")
            for (Py_ssize_t j = 0; j < k; j++) s += dy[j];
            _Pragma("omp simd")
            for (Py_ssize_t j = 0; j < k; j++) dx[j] = dy[j] - fnn_exp(y[j]) * s;
        } else {        /* dx = y * (dy - sum(dy * y)) */
            _Pragma("omp simd reduction(+:s)")
            for (Py_ssize_t j = 0; j < k; j++) s += dy[j] * y[j];
            _Pragma("omp simd")
            for (Py_ssize_t j = 0; j < k; j++) dx[j] = y[j] * (dy[j] - s);
        }
    })
    static inline void fnn_softmax_row_b(const float* y, const float* dy, float* dx, Py_ssize_t k, int log) { FNN_PICK(fnn_softmax_row_b)(y, dy, dx, k, log); }
    FNN_DUAL(void, fnn_add_bias, (float* y, const float* b, Py_ssize_t k), {
        _Pragma("omp simd")
        for (Py_ssize_t j = 0; j < k; j++) y[j] += b[j];
    })
    static inline void fnn_add_bias(float* y, const float* b, Py_ssize_t k) { FNN_PICK(fnn_add_bias)(y, b, k); }
    """
    float fnn_exp(float x) noexcept nogil
    float fnn_expm1(float x) noexcept nogil
    float fnn_log(float x) noexcept nogil
    float fnn_log1p01(float u) noexcept nogil
    float fnn_sigmoid(float x) noexcept nogil
    float fnn_tanh(float x) noexcept nogil
    float fnn_softplus(float x) noexcept nogil
    void fnn_act_forward(int kind, const float* x, float* y, Py_ssize_t n, const float* p) noexcept nogil
    void fnn_act_backward(int kind, const float* x, const float* y, const float* dy, float* dx,
                          Py_ssize_t n, const float* p) noexcept nogil
    float fnn_row_max(const float* x, Py_ssize_t k) noexcept nogil
    float fnn_row_sum_exp(const float* x, float* y, Py_ssize_t k, float m) noexcept nogil
    void fnn_row_scale(float* y, Py_ssize_t k, float c) noexcept nogil
    float fnn_logsum(float s, float m) noexcept nogil
    float fnn_logs(float s) noexcept nogil
    void fnn_softmax_row(const float* x, float* y, Py_ssize_t k, bint log) noexcept nogil
    void fnn_softmax_row_b(const float* y, const float* dy, float* dx, Py_ssize_t k, bint log) noexcept nogil
    void fnn_add_bias(float* y, const float* b, Py_ssize_t k) noexcept nogil
    void fnn_act_set_isa(int isa) noexcept nogil


# Activation kinds (one loop per kind; fastnn.kernels.activation maps names to these).
cdef enum:
    ACT_LINEAR = 0
    ACT_RELU = 1
    ACT_ELU = 2
    ACT_SELU = 3
    ACT_GELU = 4
    ACT_GELU_TANH = 5
    ACT_SIGMOID = 6
    ACT_HARD_SIGMOID = 7
    ACT_HARD_SILU = 8
    ACT_TANH = 9
    ACT_SOFTSIGN = 10
    ACT_SOFTPLUS = 11
    ACT_SILU = 12
    ACT_EXPONENTIAL = 13
    ACT_COUNT = 14

