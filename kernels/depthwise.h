/* Depthwise convolution, NHWC float32, kernel (KH, KW, C, M) as Keras: the geometry shared by
   every instruction-set flavour, the flavours (depthwise_isa.h included once each), and the
   OpenMP drivers that run them over rows. Driven by kernels/depthwise.pyx; the design note is
   there. */
#ifndef FASTNN_DEPTHWISE_H
#define FASTNN_DEPTHWISE_H

#include <omp.h>
#include <string.h>

/* Taps (kh, kw) a call may have: the per-row tables live on the stack (checked by
   fastnn.kernels.depthwise). */
#define DW_TMAX 256

typedef struct {
    Py_ssize_t N, H, W, C, M, Ce, KH, KW, OH, OW, sh, sw, dh, dw, pt, pl;
} dw_geom;

/* Output columns [*a, *b) whose whole window lies inside the image width:
   ow*sw - pl >= 0 and ow*sw - pl + (KW-1)*dw <= W-1 (the rest take the checked path). */
static inline void dw_interior(const dw_geom* g, Py_ssize_t* a, Py_ssize_t* b) {
    Py_ssize_t lo = (g->pl + g->sw - 1) / g->sw;
    Py_ssize_t t = g->W - 1 - (g->KW - 1) * g->dw + g->pl;
    Py_ssize_t hi = t < 0 ? 0 : t / g->sw + 1;
    if (lo > g->OW) lo = g->OW;
    if (hi > g->OW) hi = g->OW;
    if (hi < lo) hi = lo;
    *a = lo;
    *b = hi;
}

/* Input row (n, ih) with every channel repeated M times (depth_multiplier > 1): xe[iw, c*M + m]
   = x[iw, c], so that the kernels see one input channel per output channel. */
static inline void dw_expand_row(const float* xrow, Py_ssize_t W, Py_ssize_t C, Py_ssize_t M,
                                 float* xe) {
    for (Py_ssize_t i = 0; i < W * C; i++) {
        float v = xrow[i];
        for (Py_ssize_t m = 0; m < M; m++)
            xe[i * M + m] = v;
    }
}

/* The KH input rows output row (n, oh) reads: x's rows (or their expansion into scratch when
   M > 1), zrow where ih falls in the padding. */
static inline void dw_input_rows(const dw_geom* g, const float* x, const float* zrow,
                                 Py_ssize_t q, float* scratch, const float** rows) {
    Py_ssize_t n = q / g->OH, oh = q - n * g->OH;
    for (Py_ssize_t kh = 0; kh < g->KH; kh++) {
        Py_ssize_t ih = oh * g->sh - g->pt + kh * g->dh;
        if (ih < 0 || ih >= g->H) {
            rows[kh] = zrow;
        } else if (g->M == 1) {
            rows[kh] = x + (n * g->H + ih) * g->W * g->C;
        } else {
            float* xe = scratch + kh * g->W * g->Ce;
            dw_expand_row(x + (n * g->H + ih) * g->W * g->C, g->W, g->C, g->M, xe);
            rows[kh] = xe;
        }
    }
}

/* ---- flavours. 0: portable (4-float vectors, SSE2 on x86-64); 1: AVX2+FMA; 2: AVX-512F.
   DW_P output pixels x DW_NV vectors of accumulators in forward / dx, DW_G taps x DW_GNV
   vectors in the weight gradient. */
#define DW_SFX base
#define DW_TGT
#define DW_VL 4
#define DW_P 4
#define DW_NV 2
#define DW_G 6
#define DW_GNV 1
#define DW_FNV2(KW) ((KW) <= 3)
#include "depthwise_isa.h"
#undef DW_SFX
#undef DW_TGT
#undef DW_VL
#undef DW_P
#undef DW_NV
#undef DW_G
#undef DW_GNV
#undef DW_FNV2

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define DW_X86 1
#define DW_SFX avx2
#define DW_TGT __attribute__((target("avx2,fma")))
#define DW_VL 8
#define DW_P 4
#define DW_NV 2
#define DW_G 6
#define DW_GNV 1
#define DW_FNV2(KW) ((KW) <= 3)
#include "depthwise_isa.h"
#undef DW_SFX
#undef DW_TGT
#undef DW_VL
#undef DW_P
#undef DW_NV
#undef DW_G
#undef DW_GNV
#undef DW_FNV2

#define DW_SFX avx512
#define DW_TGT __attribute__((target("avx512f,fma")))
#define DW_VL 16
#define DW_P 8
#define DW_NV 2
#define DW_G 9
#define DW_GNV 2
#define DW_FNV2(KW) 1
#include "depthwise_isa.h"
#undef DW_SFX
#undef DW_TGT
#undef DW_VL
#undef DW_P
#undef DW_NV
#undef DW_G
#undef DW_GNV
#undef DW_FNV2
#endif

/* floats per vector of flavour isa (the channel tail below it takes a partial vector) */
static int dw_vector(int isa) { return isa == 2 ? 16 : isa == 1 ? 8 : 4; }

#ifdef DW_X86
#define DW_DISPATCH(isa, name, args)                                  \
    do {                                                              \
        if ((isa) == 2) name##_avx512 args;                           \
        else if ((isa) == 1) name##_avx2 args;                        \
        else name##_base args;                                        \
    } while (0)
#else
#define DW_DISPATCH(isa, name, args) name##_base args
#endif

/* y rows q = n*OH + oh in [0, N*OH): bias + the depthwise taps, ReLU'd in registers if relu.
   Parallel over output rows (each written by one thread: the result does not depend on the
   thread count). scratch: per thread KH*W*Ce floats when M > 1 (the expanded input rows). */
static void dw_forward(int isa, const dw_geom* g, const float* x, const float* wt,
                       const float* b, const float* zrow, float* y, int relu, float* scratch,
                       Py_ssize_t per_thread, int nthreads) {
    Py_ssize_t Q = g->N * g->OH;
    #pragma omp parallel num_threads(nthreads)
    {
        float* s = scratch + (Py_ssize_t)omp_get_thread_num() * per_thread;
        const float* rows[DW_TMAX];
        Py_ssize_t q;
        #pragma omp for schedule(dynamic, 1)
        for (q = 0; q < Q; q++) {
            dw_input_rows(g, x, zrow, q, s, rows);
            DW_DISPATCH(isa, dw_fwd_row, (g, rows, zrow, wt, b, y + q * g->OW * g->Ce, relu));
        }
    }
}

/* dx = the input gradient, gathered per input row r = n*H + ih (every dx row written by one
   thread, in a fixed order of taps: no races, and the same bits for any thread count).
   scratch: per thread W*Ce floats when M > 1 (the row's gradient before the sum over m). */
static void dw_backward_data(int isa, const dw_geom* g, const float* dy, const float* wt,
                             const float* wflip, float* dx, float* scratch, Py_ssize_t per_thread,
                             int nthreads) {
    Py_ssize_t R = g->N * g->H;
    #pragma omp parallel num_threads(nthreads)
    {
        float* s = scratch + (Py_ssize_t)omp_get_thread_num() * per_thread;
        const float* dyrows[DW_TMAX];
        Py_ssize_t khs[DW_TMAX];
        Py_ssize_t r;
        #pragma omp for schedule(dynamic, 1)
        for (r = 0; r < R; r++) {
            Py_ssize_t n = r / g->H, ih = r - n * g->H, nk = 0;
            for (Py_ssize_t kh = 0; kh < g->KH; kh++) {     /* output rows that read row ih */
                Py_ssize_t t = ih + g->pt - kh * g->dh;
                if (t < 0 || t % g->sh != 0 || t / g->sh >= g->OH)
                    continue;
                dyrows[nk] = dy + (n * g->OH + t / g->sh) * g->OW * g->Ce;
                khs[nk++] = kh;
            }
            float* dst = g->M == 1 ? dx + r * g->W * g->C : s;
            DW_DISPATCH(isa, dw_dx_row, (g, dyrows, khs, nk, wt, wflip, dst));
            if (g->M > 1) {                /* dx[iw, c] = sum over m of the expanded row */
                float* d = dx + r * g->W * g->C;
                for (Py_ssize_t i = 0; i < g->W * g->C; i++) {
                    float acc = s[i * g->M];
                    for (Py_ssize_t m = 1; m < g->M; m++)
                        acc += s[i * g->M + m];
                    d[i] = acc;
                }
            }
        }
    }
}

/* dw (KH*KW, Ce) and db (Ce,) (db may be NULL) over a fixed grid of nchunks chunks of output
   rows: chunk k sums its rows into its own float64 partial parts[k] ((KH*KW + 1) * Ce: dw, then
   db), the chunks run on any thread, and the partials are summed in chunk order. The grid
   depends on the shape only, so the result does not depend on the thread count. A row's sums
   go into a float partial (vector adds) that goes into the float64 one every DW_FLUSH rows
   (adding each row's sums in float64 lane by lane cost more than the row itself on 7x7 and
   14x14 images). scratch: per thread (KH*KW + 1)*Ce floats, then KH*W*Ce when M > 1. */
#ifndef DW_FLUSH
#define DW_FLUSH 16
#endif
static void dw_backward_weights(int isa, const dw_geom* g, const float* x, const float* dy,
                                const float* zrow, Py_ssize_t nchunks, double* parts,
                                float* dwt, float* db, float* scratch, Py_ssize_t per_thread,
                                int nthreads) {
    Py_ssize_t Q = g->N * g->OH, T = g->KH * g->KW, Ce = g->Ce, L = (T + 1) * Ce;
    #pragma omp parallel num_threads(nthreads)
    {
        float* fpart = scratch + (Py_ssize_t)omp_get_thread_num() * per_thread;
        float* s = fpart + L;
        const float* rows[DW_TMAX];
        Py_ssize_t k, i;
        #pragma omp for schedule(dynamic, 1)
        for (k = 0; k < nchunks; k++) {
            double* part = parts + k * L;
            Py_ssize_t q0 = Q * k / nchunks, q1 = Q * (k + 1) / nchunks;
            memset(part, 0, (size_t)L * sizeof(double));
            memset(fpart, 0, (size_t)L * sizeof(float));
            for (Py_ssize_t q = q0; q < q1; q++) {
                dw_input_rows(g, x, zrow, q, s, rows);
                DW_DISPATCH(isa, dw_dw_row, (g, rows, zrow, dy + q * g->OW * Ce, fpart));
                if ((q - q0) % DW_FLUSH == DW_FLUSH - 1 || q == q1 - 1) {
                    for (Py_ssize_t j = 0; j < L; j++)
                        part[j] += fpart[j];
                    memset(fpart, 0, (size_t)L * sizeof(float));
                }
            }
        }
        #pragma omp for schedule(static)
        for (i = 0; i < L; i++) {
            double acc = 0.0;
            for (Py_ssize_t j = 0; j < nchunks; j++)
                acc += parts[j * L + i];
            if (i < T * Ce)
                dwt[i] = (float)acc;
            else if (db != NULL)
                db[i - T * Ce] = (float)acc;
        }
    }
}

#endif
