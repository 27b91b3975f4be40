/* Recurrent kernels' C helpers (driven by kernels/rnn.pyx; see the design note there): the
   per-step recurrent GEMM in three instruction-set flavours (rnn_isa.h included once each,
   picked at run time, so the default build needs no -march=native), the packing of the
   recurrent kernel, and the elementwise cell updates. No checks: fastnn.kernels.rnn validates. */
#ifndef FASTNN_RNN_H
#define FASTNN_RNN_H

#include <string.h>

/* ---- flavours. 0: portable (4-float vectors, SSE2 on x86-64); 1: AVX2+FMA; 2: AVX-512F. */
#define RN_SFX base
#define RN_TGT
#define RN_VL 4
#define RN_MR 6
#include "rnn_isa.h"
#undef RN_SFX
#undef RN_TGT
#undef RN_VL
#undef RN_MR

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RN_X86 1
#define RN_SFX avx2
#define RN_TGT __attribute__((target("avx2,fma")))
#define RN_VL 8
#define RN_MR 6
#include "rnn_isa.h"
#undef RN_SFX
#undef RN_TGT
#undef RN_VL
#undef RN_MR

#define RN_SFX avx512
#define RN_TGT __attribute__((target("avx512f,avx2,fma")))
#define RN_VL 16
#define RN_MR 12
#include "rnn_isa.h"
#undef RN_SFX
#undef RN_TGT
#undef RN_VL
#undef RN_MR
#endif

/* 1 if this CPU runs flavour isa */
static int rn_isa_ok(int isa) {
    if (isa == 0)
        return 1;
#ifdef RN_X86
    __builtin_cpu_init();
    if (isa == 1)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == 2)
        return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

/* columns per packed panel of flavour isa */
static Py_ssize_t rn_nr(int isa) { return isa == 2 ? 32 : isa == 1 ? 16 : 8; }

/* floats rn_pack writes for a k x n block */
static Py_ssize_t rn_packed_size(int isa, Py_ssize_t k, Py_ssize_t n) {
    Py_ssize_t nr = rn_nr(isa);
    return ((n + nr - 1) / nr) * nr * k;
}

/* B (k x n, element (kk, j) at b[kk*rsb + j*csb]) into NR-wide panels, zero-padded */
static void rn_pack(int isa, Py_ssize_t k, Py_ssize_t n, const float* b, Py_ssize_t rsb,
                    Py_ssize_t csb, float* bp) {
    Py_ssize_t nr = rn_nr(isa);
    for (Py_ssize_t p = 0; p * nr < n; p++, bp += k * nr)
        for (Py_ssize_t kk = 0; kk < k; kk++)
            for (Py_ssize_t j = 0; j < nr; j++) {
                Py_ssize_t col = p * nr + j;
                bp[kk * nr + j] = col < n ? b[kk * rsb + col * csb] : 0.0f;
            }
}

static void rn_gemm(int isa, Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, const float* a,
                    Py_ssize_t lda, const float* bp, float* c, Py_ssize_t ldc, int accumulate) {
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        if (!accumulate)
            for (Py_ssize_t i = 0; i < m; i++)
                memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
#ifdef RN_X86
    if (isa == 2) { rn_gemm_avx512(m, k, n, a, lda, bp, c, ldc, accumulate); return; }
    if (isa == 1) { rn_gemm_avx2(m, k, n, a, lda, bp, c, ldc, accumulate); return; }
#endif
    rn_gemm_base(m, k, n, a, lda, bp, c, ldc, accumulate);
}

/* the fused LSTM row of flavour isa (default activations; see rnn_isa.h) */
static void rn_lstm_row(int isa, const float* z, const float* cp, float* a, float* c, float* hc,
                        float* h, Py_ssize_t u) {
#ifdef RN_X86
    if (isa == 2) { rn_lstm_row_avx512(z, cp, a, c, hc, h, u); return; }
    if (isa == 1) { rn_lstm_row_avx2(z, cp, a, c, hc, h, u); return; }
#endif
    rn_lstm_row_base(z, cp, a, c, hc, h, u);
}

/* ---- elementwise cell updates over one row of u units (gcc vectorises; the AVX2 clone is
   picked at load time like the activation loops) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define RN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RN_CLONES
#endif

/* y = a + b */
static RN_CLONES void rn_add(const float* a, const float* b, float* y, Py_ssize_t u) {
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) y[j] = a[j] + b[j];
}
/* y = a * b */
static RN_CLONES void rn_mul(const float* a, const float* b, float* y, Py_ssize_t u) {
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) y[j] = a[j] * b[j];
}
/* y += a * b */
static RN_CLONES void rn_addmul(const float* a, const float* b, float* y, Py_ssize_t u) {
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) y[j] += a[j] * b[j];
}

/* LSTM: c = f * cp + i * g   (gates a = [i | f | g | o]) */
static RN_CLONES void rn_lstm_c(const float* a, const float* cp, float* c, Py_ssize_t u) {
    const float *i = a, *f = a + u, *g = a + 2 * u;
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) c[j] = f[j] * cp[j] + i[j] * g[j];
}

/* LSTM backward through h = o * hc, c = f * cp + i * g, from dh and dc (the c gradient from the
   step after): writes dc_tot = dc + dhc (dhc = dh * o, then act'(c) applied by the caller
   between the two halves), the gate gradients da = [di | df | dg | do] and dcp = dc_tot * f. */
static RN_CLONES void rn_lstm_b1(const float* a, const float* hc, const float* dh, float* dhc,
                                 float* da, Py_ssize_t u) {
    const float* o = a + 3 * u;
    float* dop = da + 3 * u;
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) {
        dop[j] = dh[j] * hc[j];
        dhc[j] = dh[j] * o[j];
    }
}
static RN_CLONES void rn_lstm_b2(const float* a, const float* cp, const float* dct, float* da,
                                 float* dcp, Py_ssize_t u) {
    const float *i = a, *f = a + u, *g = a + 2 * u;
    float *di = da, *df = da + u, *dg = da + 2 * u;
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) {
        float d = dct[j];
        di[j] = d * g[j];
        df[j] = d * cp[j];
        dg[j] = d * i[j];
        dcp[j] = d * f[j];
    }
}

/* LSTM backward of one row with the default activations (sigmoid gates, tanh candidate and
   act(c)) in one pass: rn_lstm_b1, tanh'(c), the carried dc, rn_lstm_b2 and the three gate
   derivatives of the generic path, with the same operations in the same order (sigmoid'
   = a (1 - a), tanh' = 1 - a^2 from the kept activations), so both paths give the same
   numbers. dh: gradient of h; dc in: of c from the step after, out: of c_{t-1}. */
static RN_CLONES void rn_lstm_brow(const float* a, const float* hc, const float* cp,
                                   const float* dh, float* dc, float* da, Py_ssize_t u) {
    const float *ai = a, *af = a + u, *ag = a + 2 * u, *ao = a + 3 * u;
    float *di = da, *df = da + u, *dg = da + 2 * u, *dop = da + 3 * u;
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) {
        float i = ai[j], f = af[j], g = ag[j], o = ao[j], th = hc[j], d = dh[j];
        dop[j] = (d * th) * (o * (1.0f - o));
        float dct = (d * o) * (1.0f - th * th) + dc[j];
        di[j] = (dct * g) * (i * (1.0f - i));
        df[j] = (dct * cp[j]) * (f * (1.0f - f));
        dg[j] = (dct * i) * (1.0f - g * g);
        dc[j] = dct * f;
    }
}

/* GRU: h = z * hp + (1 - z) * hh */
static RN_CLONES void rn_gru_h(const float* z, const float* hp, const float* hh, float* h,
                               Py_ssize_t u) {
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) h[j] = z[j] * hp[j] + (1.0f - z[j]) * hh[j];
}
/* GRU backward of h = z * hp + (1 - z) * hh: dz = dh * (hp - hh), dhh = dh * (1 - z),
   dhp = dh * z */
static RN_CLONES void rn_gru_b(const float* z, const float* hp, const float* hh, const float* dh,
                               float* dz, float* dhh, float* dhp, Py_ssize_t u) {
#pragma omp simd
    for (Py_ssize_t j = 0; j < u; j++) {
        dz[j] = dh[j] * (hp[j] - hh[j]);
        dhh[j] = dh[j] * (1.0f - z[j]);
        dhp[j] = dh[j] * z[j];
    }
}

#endif
