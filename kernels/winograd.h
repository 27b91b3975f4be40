/* Winograd F(2x2, 3x3) transforms on NHWC float32 (see the design note in winograd.pyx).
 *
 * Every loop's innermost dimension is the channel (C or F), contiguous in memory, so gcc
 * vectorises it; the 16 tile entries of one channel live in registers. Tiles that hang over
 * the image edge read a static zero row instead of padding (no padded copy of x), and their
 * outputs outside the image go to a per-thread sink row. `#pragma GCC ivdep`: the 16 row
 * pointers of one tile never alias each other or the transform buffers (the sink rows alias
 * each other, but nobody reads the sink). The bodies (winograd_isa.h) are compiled for AVX-512 /
 * AVX2+FMA / baseline and one is picked per call by the module's flavour (wino_isa, set by
 * winograd.set_isa: fastnn.kernels.isa, FASTNN_ISA), so the default build stays portable. No checks:
 * fastnn.kernels.conv validates shapes and limits C, F <= WINO_CMAX.
 */
#ifndef FASTNN_WINOGRAD_H
#define FASTNN_WINOGRAD_H

#include <stddef.h>
#include <string.h>

#define WINO_CMAX 1024

#include "isa.h"

/* Without -fno-trapping-math gcc keeps the float selects of the fused ReLU (and the masks of
   the backward) as branches and the AVX2 and baseline bodies do not vectorise at all (the
   AVX-512 body did, with mask registers): measured 28x slower output transforms. Results are
   unchanged; only FP-exception flags, which nothing reads, may differ. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("no-trapping-math")
#endif

static const float wino_zeros[WINO_CMAX];
static const float wino_ones[WINO_CMAX] = {[0 ... WINO_CMAX - 1] = 1.0f};
static __thread float wino_sink[WINO_CMAX];

/* Plain Keras ReLU exactly as activation.pxd's fnn_relu with its default parameters (NaN
 * stays NaN, -inf gives 0), so the fused epilogue is bit-identical to bias_act. */
static inline float wino_relu(float v)
{
    return v <= 0.0f ? 0.0f : v;
}

/* ---- the flavours: baseline, then AVX2+FMA (x86-64-v3) and AVX-512 (x86-64-v4) */
#define WINO_FN(name) name##_base
#define WINO_TGT
#include "winograd_isa.h"
#undef WINO_FN
#undef WINO_TGT
#if FNN_X86
#define WINO_FN(name) name##_avx2
#define WINO_TGT __attribute__((target("arch=x86-64-v3")))
#include "winograd_isa.h"
#undef WINO_FN
#undef WINO_TGT
#define WINO_FN(name) name##_avx512
#define WINO_TGT __attribute__((target("arch=x86-64-v4")))
#include "winograd_isa.h"
#undef WINO_FN
#undef WINO_TGT
#endif

/* the flavour every call runs (0 portable, 1 avx2, 2 avx512): winograd.pyx's set_isa */
static int wino_isa = FNN_ISA_PORTABLE;

static void wino_input(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t r0, ptrdiff_t r1, float *V, ptrdiff_t TC)
{
#if FNN_X86
    if (wino_isa == FNN_ISA_AVX512) { wino_input_avx512(x, H, W, C, pt, pl, th, tw, r0, r1, V, TC); return; }
    if (wino_isa == FNN_ISA_AVX2) { wino_input_avx2(x, H, W, C, pt, pl, th, tw, r0, r1, V, TC); return; }
#endif
    wino_input_base(x, H, W, C, pt, pl, th, tw, r0, r1, V, TC);
}

static void wino_output(const float *M, const float *bias, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t F, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t r0, ptrdiff_t r1, float *y, ptrdiff_t TF, int relu)
{
#if FNN_X86
    if (wino_isa == FNN_ISA_AVX512) { wino_output_avx512(M, bias, OH, OW, F, th, tw, r0, r1, y, TF, relu); return; }
    if (wino_isa == FNN_ISA_AVX2) { wino_output_avx2(M, bias, OH, OW, F, th, tw, r0, r1, y, TF, relu); return; }
#endif
    wino_output_base(M, bias, OH, OW, F, th, tw, r0, r1, y, TF, relu);
}

static void wino_weight(const float *w, ptrdiff_t C, ptrdiff_t F, float *U)
{
#if FNN_X86
    if (wino_isa == FNN_ISA_AVX512) { wino_weight_avx512(w, C, F, U); return; }
    if (wino_isa == FNN_ISA_AVX2) { wino_weight_avx2(w, C, F, U); return; }
#endif
    wino_weight_base(w, C, F, U);
}

static void wino_weight_adjoint(const float *dU, ptrdiff_t C, ptrdiff_t F, float *dw)
{
#if FNN_X86
    if (wino_isa == FNN_ISA_AVX512) { wino_weight_adjoint_avx512(dU, C, F, dw); return; }
    if (wino_isa == FNN_ISA_AVX2) { wino_weight_adjoint_avx2(dU, C, F, dw); return; }
#endif
    wino_weight_adjoint_base(dU, C, F, dw);
}

static void wino_dy(const float *dy, const float *y, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t F, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t r0, ptrdiff_t r1, float *dM, ptrdiff_t TF, double *db)
{
#if FNN_X86
    if (wino_isa == FNN_ISA_AVX512) { wino_dy_avx512(dy, y, OH, OW, F, th, tw, r0, r1, dM, TF, db); return; }
    if (wino_isa == FNN_ISA_AVX2) { wino_dy_avx2(dy, y, OH, OW, F, th, tw, r0, r1, dM, TF, db); return; }
#endif
    wino_dy_base(dy, y, OH, OW, F, th, tw, r0, r1, dM, TF, db);
}

static void wino_input_adjoint(const float *dV, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t r0, ptrdiff_t r1, float *dx, ptrdiff_t TC)
{
#if FNN_X86
    if (wino_isa == FNN_ISA_AVX512) { wino_input_adjoint_avx512(dV, H, W, C, pt, pl, th, tw, r0, r1, dx, TC); return; }
    if (wino_isa == FNN_ISA_AVX2) { wino_input_adjoint_avx2(dV, H, W, C, pt, pl, th, tw, r0, r1, dx, TC); return; }
#endif
    wino_input_adjoint_base(dV, H, W, C, pt, pl, th, tw, r0, r1, dx, TC);
}

#endif
