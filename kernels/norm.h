/* Batch-norm row loops over float32 (M, C) rows (see the design note in norm.pyx): the chunk
   statistics (float64) and the elementwise output / gradient passes, each compiled in three
   instruction-set flavours (norm_isa.h included once per flavour) and picked at run time, so
   the default build needs no -march=native. Serial: norm.pyx hands each call one chunk or
   block of rows. No checks: fastnn.kernels.norm validates everything. */
#ifndef FASTNN_NORM_H
#define FASTNN_NORM_H

#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NB_X86_ISA 1
#include <immintrin.h>
#else
#define NB_X86_ISA 0
#endif

/* ---- flavours. 0: portable (4-float vectors: SSE2 on x86-64); 1: AVX2+FMA; 2: AVX-512F.
   NB_VL: floats per vector of the elementwise passes; NB_DL: doubles per vector of the
   statistics; NB_NVS: double vectors per statistics strip. The backward strip holds 3*NB_NVS
   accumulators (+ temporaries): 12 of the 16 xmm/ymm registers, 24 of the 32 zmm ones (one
   strip covers C = 64). AVX-512 runs its elementwise passes on 8-float (ymm) vectors: with
   16-float ones they measured 10-25% slower on Zen4 (double-pumped 512-bit ops; every 64-byte
   access of a NumPy array, 16 bytes off a line, splits a cache line). Its target includes
   fma: without it gcc does not contract the ymm arithmetic. */
#define NB_SFX base
#define NB_TGT
#define NB_VL 4
#define NB_DL 2
#define NB_NVS 4
#include "norm_isa.h"
#undef NB_SFX
#undef NB_TGT
#undef NB_VL
#undef NB_DL
#undef NB_NVS

#if NB_X86_ISA
#define NB_X86 1
#define NB_SFX avx2
#define NB_TGT __attribute__((target("avx2,fma")))
#define NB_VL 8
#define NB_DL 4
#define NB_NVS 4
#include "norm_isa.h"
#undef NB_SFX
#undef NB_TGT
#undef NB_VL
#undef NB_DL
#undef NB_NVS

#define NB_SFX avx512
#define NB_TGT __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define NB_VL 8
#define NB_DL 8
#define NB_NVS 8
#include "norm_isa.h"
#undef NB_SFX
#undef NB_TGT
#undef NB_VL
#undef NB_DL
#undef NB_NVS
#endif

#ifdef NB_X86
#define NB_DISPATCH(isa, fn, ...)                                                    \
    do {                                                                             \
        if ((isa) == 2) fn##_avx512(__VA_ARGS__);                                    \
        else if ((isa) == 1) fn##_avx2(__VA_ARGS__);                                 \
        else fn##_base(__VA_ARGS__);                                                 \
    } while (0)
#else
#define NB_DISPATCH(isa, fn, ...) fn##_base(__VA_ARGS__)
#endif

/* s1 = sum(x - shift), s2 = sum((x - shift)^2) per channel over rows [r0, r1), float64 */
static void nb_moments(int isa, const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                       const float* shift, double* s1, double* s2) {
    NB_DISPATCH(isa, nb_moments, x, r0, r1, c, shift, s1, s2);
}

/* sdy = sum(g), sdyxc = sum(g*(x - mean)), sx = sum(x - mean) over rows [r0, r1), float64;
   g = dy, masked by y > 0 when y is not NULL */
static void nb_grad_sums(int isa, const float* dy, const float* x, const float* y, Py_ssize_t r0,
                         Py_ssize_t r1, Py_ssize_t c, const float* mean, double* sdy,
                         double* sdyxc, double* sx) {
    NB_DISPATCH(isa, nb_grad_sums, dy, x, y, r0, r1, c, mean, sdy, sdyxc, sx);
}

/* y = (x - center)*scale + shift (then max(., 0) if relu) over rows [r0, r1) */
static void nb_affine(int isa, const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                      const float* center, const float* scale, const float* shift, int relu,
                      float* y) {
    NB_DISPATCH(isa, nb_affine, x, r0, r1, c, center, scale, shift, relu, y);
}

/* dx = a*g + b*(x - mean) + d over rows [r0, r1), g = dy masked by y > 0 when y is not NULL */
static void nb_backward(int isa, const float* dy, const float* x, const float* y, Py_ssize_t r0,
                        Py_ssize_t r1, Py_ssize_t c, const float* a, const float* b,
                        const float* d, const float* mean, float* dx) {
    NB_DISPATCH(isa, nb_backward, dy, x, y, r0, r1, c, a, b, d, mean, dx);
}

#endif
