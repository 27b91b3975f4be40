/* Single-threaded BLIS-style sgemm C (+)= A @ B, float32, any strides for A and B, C rows
   contiguous (column stride 1). Driven by kernels/gemm.pyx; see the design note there.

   Loops (outer to inner): K-blocks of kc (B's kc x nc block packed once into NR-wide panels,
   kept in L2), M-blocks of mc (A's mc x kc block packed into MR-row panels), then for each
   MR-row A panel (in L1) every NR-wide B panel: one microkernel call = an MR x NR tile of C
   held in registers over the whole kc. Packing zero-pads M and N to the tile, so the
   microkernel never branches on edges; an edge tile is written from a stack tile. */
#ifndef FASTNN_GEMM_H
#define FASTNN_GEMM_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define GM_X86 1
#include <immintrin.h>
#endif

typedef ptrdiff_t gm_int;

/* microkernel shapes: variant -> (MR, NR). Variants 0-2 are AVX-512 (zmm accumulators), 3 is
   AVX2+FMA (6x16: 12 ymm accumulators, BLIS's Haswell shape); the caller (gemm.pyx) runs only
   variants of a flavour the module's flavour allows. */
static const int gm_mr_tab[4] = {14, 12, 6, 6};
static const int gm_nr_tab[4] = {32, 32, 64, 16};
#define GM_IS_AVX512(variant) ((variant) <= 2)

/* packed A: mc x kc as panels of MR rows, k-major inside a panel (pa[k*MR + i]) */
static void gm_pack_a(gm_int mc, gm_int kc, const float* a, gm_int rsa, gm_int csa, int MR,
                      float* pa) {
    for (gm_int i0 = 0; i0 < mc; i0 += MR, pa += MR * kc) {
        gm_int mr = mc - i0 < MR ? mc - i0 : MR;
        const float* ap = a + i0 * rsa;
        if (csa == 1) {       /* rows contiguous: read a row at a time */
            for (gm_int i = 0; i < mr; i++)
                for (gm_int k = 0; k < kc; k++)
                    pa[k * MR + i] = ap[i * rsa + k];
        } else {              /* transposed A: a column of A panel is contiguous */
            for (gm_int k = 0; k < kc; k++)
                for (gm_int i = 0; i < mr; i++)
                    pa[k * MR + i] = ap[k * csa + i * rsa];
        }
        if (mr < MR)
            for (gm_int k = 0; k < kc; k++)
                for (gm_int i = mr; i < MR; i++)
                    pa[k * MR + i] = 0.0f;
    }
}

#ifdef GM_X86
/* pb[k*NR + j] = bt[j*ld + k] for j < nr, k < kc (B given as the rows of w: B = w.T) by 16x16
   register transposes: a scalar gather here cost ~1/3 of the dx GEMM's time (M = 128 gives
   only 256 flops per packed element). */
__attribute__((target("avx512f")))
static void gm_pack_bt16(gm_int kc, gm_int nr, const float* bt, gm_int ld, int NR, float* pb) {
    gm_int j0 = 0;
    for (; j0 + 16 <= nr; j0 += 16) {
        gm_int k0 = 0;
        for (; k0 + 16 <= kc; k0 += 16) {
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_loadu_ps(bt + (j0 + i) * ld + k0);
            for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 16; i += 4) {
                r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
                r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (int i = 0; i < 4; i++) {
                t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
                t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
                t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
                t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
            }
            for (int i = 0; i < 4; i++) {
                r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
                r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
                r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
                r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
            }
            /* r[q] now holds column k0 + q of the 16 rows */
            for (int q = 0; q < 16; q++)
                _mm512_storeu_ps(pb + (k0 + q) * NR + j0, r[q]);
        }
        for (; k0 < kc; k0++)
            for (int i = 0; i < 16; i++)
                pb[k0 * NR + j0 + i] = bt[(j0 + i) * ld + k0];
    }
    for (; j0 < nr; j0++)
        for (gm_int k = 0; k < kc; k++)
            pb[k * NR + j0] = bt[j0 * ld + k];
}

/* the same with AVX2 8x8 register transposes (the avx2 flavour) */
__attribute__((target("avx2,fma")))
static void gm_pack_bt8(gm_int kc, gm_int nr, const float* bt, gm_int ld, int NR, float* pb) {
    gm_int j0 = 0;
    for (; j0 + 8 <= nr; j0 += 8) {
        gm_int k0 = 0;
        for (; k0 + 8 <= kc; k0 += 8) {
            __m256 r[8], t[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(bt + (j0 + i) * ld + k0);
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {      /* r[i + q]: columns q (low lane), q + 4 (high) */
                r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (int q = 0; q < 4; q++) {
                _mm256_storeu_ps(pb + (k0 + q) * NR + j0, _mm256_permute2f128_ps(r[q], r[q + 4], 0x20));
                _mm256_storeu_ps(pb + (k0 + q + 4) * NR + j0, _mm256_permute2f128_ps(r[q], r[q + 4], 0x31));
            }
        }
        for (; k0 < kc; k0++)
            for (int i = 0; i < 8; i++)
                pb[k0 * NR + j0 + i] = bt[(j0 + i) * ld + k0];
    }
    for (; j0 < nr; j0++)
        for (gm_int k = 0; k < kc; k++)
            pb[k * NR + j0] = bt[j0 * ld + k];
}
#endif

/* packed B: kc x nc as panels of NR columns, pb[k*NR + j]; variant picks the flavour of the
   transposing pack */
static void gm_pack_b(gm_int kc, gm_int nc, const float* b, gm_int rsb, gm_int csb, int NR,
                      int variant, float* pb) {
    if (csb == 1) {           /* rows of B contiguous: read each row once, across all panels
                                 (one memcpy per panel row cost ~1/4 of a 128x784x512 GEMM
                                 with NR = 16) */
        const gm_int full = nc - nc % NR, rest = nc - full;
        for (gm_int k = 0; k < kc; k++) {
            const float* src = b + k * rsb;
            float* dst = pb + k * NR;
            for (gm_int j0 = 0; j0 < full; j0 += NR, dst += NR * kc)
                for (int j = 0; j < NR; j++)
                    dst[j] = src[j0 + j];
            if (rest) {
                for (gm_int j = 0; j < rest; j++)
                    dst[j] = src[full + j];
                for (gm_int j = rest; j < NR; j++)
                    dst[j] = 0.0f;
            }
        }
        return;
    }
    for (gm_int j0 = 0; j0 < nc; j0 += NR, pb += NR * kc) {
        gm_int nr = nc - j0 < NR ? nc - j0 : NR;
        const float* bp = b + j0 * csb;
#ifdef GM_X86
        if (rsb == 1) {       /* transposed B (w rows): register transposes */
            if (GM_IS_AVX512(variant))
                gm_pack_bt16(kc, nr, bp, csb, NR, pb);
            else
                gm_pack_bt8(kc, nr, bp, csb, NR, pb);
            continue;
        }
#endif
        /* other strides: read along k, contiguous when rsb == 1 */
        for (gm_int j = 0; j < nr; j++)
            for (gm_int k = 0; k < kc; k++)
                pb[k * NR + j] = bp[j * csb + k * rsb];
        for (gm_int k = 0; k < kc; k++)
            for (gm_int j = nr; j < NR; j++)
                pb[k * NR + j] = 0.0f;
    }
}

#ifdef GM_X86
/* MR x (NV*16) tile, accumulators in registers (fully unrolled: MR*NV zmm). accumulate:
   C += tile, else C = tile (C never read then, so garbage/NaN in C does not leak). c is the
   tile's top-left in C, or a stack tile (ldc = NR) for edge tiles. */
#define GM_KERNEL(NAME, MR, NV, BS)                                                              \
__attribute__((target("avx512f"), noinline))                                                    \
static void NAME(gm_int kc, const float* pa, const float* pb, float* c, gm_int ldc,            \
                 int accumulate) {                                                             \
    __m512 acc[MR][NV];                                                                        \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                     \
        _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps(); \
    for (gm_int k = 0; k < kc; k++) {                                                          \
        __m512 b[NV];                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) b[j] = _mm512_loadu_ps(pb + 16 * j); \
        _mm_prefetch((const char*)(pb + BS * 8), _MM_HINT_T0);                                  \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                               \
            __m512 a = _mm512_set1_ps(pa[i]);                                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                               \
                acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);                               \
        }                                                                                      \
        pa += MR;                                                                              \
        pb += BS;                                                                              \
    }                                                                                          \
    if (accumulate) {                                                                          \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                             \
                float* cp = c + i * ldc + 16 * j;                                              \
                _mm512_storeu_ps(cp, _mm512_add_ps(_mm512_loadu_ps(cp), acc[i][j]));           \
            }                                                                                  \
    } else {                                                                                   \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                               \
                _mm512_storeu_ps(c + i * ldc + 16 * j, acc[i][j]);                             \
    }                                                                                          \
}

GM_KERNEL(gm_kernel_14x32, 14, 2, 32)
GM_KERNEL(gm_kernel_12x32, 12, 2, 32)
GM_KERNEL(gm_kernel_6x64, 6, 4, 64)
/* the 6x64 variant's last column panel when it holds <= 32 columns (n = 400 -> 6 full panels
   + 16 columns): half the FMAs of padding them to 64 */
GM_KERNEL(gm_kernel_6x32s64, 6, 2, 64)

/* The AVX2+FMA microkernel: MR x (NV*8) with ymm accumulators, the same loop as GM_KERNEL
   (every element of C is one fma chain over k in order, whatever its tile: edge tiles and the
   caller's split do not change a bit). */
#define GM_KERNEL_AVX2(NAME, MR, NV, BS)                                                         \
__attribute__((target("avx2,fma"), noinline))                                                   \
static void NAME(gm_int kc, const float* pa, const float* pb, float* c, gm_int ldc,            \
                 int accumulate) {                                                             \
    __m256 acc[MR][NV];                                                                        \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                     \
        _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] = _mm256_setzero_ps(); \
    for (gm_int k = 0; k < kc; k++) {                                                          \
        __m256 b[NV];                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) b[j] = _mm256_loadu_ps(pb + 8 * j); \
        _mm_prefetch((const char*)(pb + BS * 8), _MM_HINT_T0);                                  \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                               \
            __m256 a = _mm256_broadcast_ss(pa + i);                                            \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                               \
                acc[i][j] = _mm256_fmadd_ps(a, b[j], acc[i][j]);                               \
        }                                                                                      \
        pa += MR;                                                                              \
        pb += BS;                                                                              \
    }                                                                                          \
    if (accumulate) {                                                                          \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                             \
                float* cp = c + i * ldc + 8 * j;                                               \
                _mm256_storeu_ps(cp, _mm256_add_ps(_mm256_loadu_ps(cp), acc[i][j]));           \
            }                                                                                  \
    } else {                                                                                   \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                               \
                _mm256_storeu_ps(c + i * ldc + 8 * j, acc[i][j]);                              \
    }                                                                                          \
}

GM_KERNEL_AVX2(gm_kernel_6x16, 6, 2, 16)

typedef void (*gm_kernel_fn)(gm_int, const float*, const float*, float*, gm_int, int);

/* C (m x n, row stride ldc, column stride 1) = A @ B (accumulate 0) or C += A @ B (1).
   A(i, k) = a[i*rsa + k*csa], B(k, j) = b[k*rsb + j*csb]. pa: >= round_up(min(m, mc), MR)*kc
   floats, pb: >= kc*round_up(n, NR). n is not blocked (the callers' per-thread blocks are
   at most a few hundred columns: kc x n of packed B stays in L2). */
static void gm_sgemm(int variant, gm_int kcb, gm_int mcb, gm_int m, gm_int n, gm_int k,
                     const float* a, gm_int rsa, gm_int csa, const float* b, gm_int rsb,
                     gm_int csb, float* c, gm_int ldc, int accumulate, float* pa, float* pb) {
    const int MR = gm_mr_tab[variant], NR = gm_nr_tab[variant];
    gm_kernel_fn kern = variant == 0 ? gm_kernel_14x32 : variant == 1 ? gm_kernel_12x32
                      : variant == 2 ? gm_kernel_6x64 : gm_kernel_6x16;
    float tile[14 * 64] __attribute__((aligned(64)));
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {             /* empty sum: C = 0 or unchanged */
        if (!accumulate)
            for (gm_int i = 0; i < m; i++)
                memset(c + i * ldc, 0, n * sizeof(float));
        return;
    }
    for (gm_int p0 = 0; p0 < k; p0 += kcb) {
        gm_int kc = k - p0 < kcb ? k - p0 : kcb;
        int acc = accumulate || p0 > 0;
        gm_pack_b(kc, n, b + p0 * rsb, rsb, csb, NR, variant, pb);
        for (gm_int i0 = 0; i0 < m; i0 += mcb) {
            gm_int mc = m - i0 < mcb ? m - i0 : mcb;
            gm_pack_a(mc, kc, a + i0 * rsa + p0 * csa, rsa, csa, MR, pa);
            for (gm_int ir = 0; ir < mc; ir += MR) {
                const float* pap = pa + ir * kc;
                gm_int mr = mc - ir < MR ? mc - ir : MR;
                for (gm_int jr = 0; jr < n; jr += NR) {
                    const float* pbp = pb + jr * kc;
                    gm_int nr = n - jr < NR ? n - jr : NR;
                    float* cp = c + (i0 + ir) * ldc + jr;
                    if (mr == MR && nr == NR) {
                        kern(kc, pap, pbp, cp, ldc, acc);
                    } else if (variant == 2 && nr <= 32) {
                        if (mr == MR && nr == 32) {
                            gm_kernel_6x32s64(kc, pap, pbp, cp, ldc, acc);
                            continue;
                        }
                        gm_kernel_6x32s64(kc, pap, pbp, tile, NR, 0);
                        for (gm_int i = 0; i < mr; i++)
                            for (gm_int j = 0; j < nr; j++)
                                cp[i * ldc + j] = acc ? cp[i * ldc + j] + tile[i * NR + j]
                                                      : tile[i * NR + j];
                    } else {
                        kern(kc, pap, pbp, tile, NR, 0);
                        for (gm_int i = 0; i < mr; i++)
                            for (gm_int j = 0; j < nr; j++)
                                cp[i * ldc + j] = acc ? cp[i * ldc + j] + tile[i * NR + j]
                                                      : tile[i * NR + j];
                    }
                }
            }
        }
    }
}
#else
static void gm_sgemm(int variant, gm_int kcb, gm_int mcb, gm_int m, gm_int n, gm_int k,
                     const float* a, gm_int rsa, gm_int csa, const float* b, gm_int rsb,
                     gm_int csb, float* c, gm_int ldc, int accumulate, float* pa, float* pb) {
    (void)variant; (void)kcb; (void)mcb; (void)m; (void)n; (void)k; (void)a; (void)rsa;
    (void)csa; (void)b; (void)rsb; (void)csb; (void)c; (void)ldc; (void)accumulate; (void)pa;
    (void)pb;   /* never called: not x86-64, the flavour is portable and the Python side uses
                   np.matmul */
}
#endif

#endif
