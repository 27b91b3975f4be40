/* Direct (im2col-free) convolution for few input channels: NHWC float32, kernel (KH, KW, C, F).
   Driven by kernels/conv_direct.pyx; see the design note there. This file: the geometry helpers
   shared by every instruction-set flavour, the flavours (conv_direct_isa.h included once each)
   and the run-time choice between them. */
#ifndef FASTNN_CONV_DIRECT_H
#define FASTNN_CONV_DIRECT_H

#include <string.h>

/* Kernel rows (kh, kw, c) a call may have: the tables below live on the stack. fastnn.kernels.conv
   only takes the direct path far below this (CD_KMAX is a safety bound, checked there). */
#define CD_KMAX 512

typedef struct {
    Py_ssize_t N, H, W, C, KH, KW, F, OH, OW, sh, sw, dh, dw, pt, pl;
} cd_geom;

/* For one output row (n, oh): every kernel row r = (kh, kw, c) in w's order as the input row it
   reads (or a row of zeros when ih falls in the padding: no check per pixel for that), the
   offset kw*dw*C + c inside it and kw*dw (for the column check of border pixels). */
typedef struct {
    Py_ssize_t n;
    const float* row[CD_KMAX];
    Py_ssize_t coff[CD_KMAX];
    Py_ssize_t kwd[CD_KMAX];
} cd_rows;

static inline void cd_fill_rows(const cd_geom* g, const float* ximg, const float* zrow,
                                Py_ssize_t oh, cd_rows* t) {
    Py_ssize_t r = 0;
    for (Py_ssize_t kh = 0; kh < g->KH; kh++) {
        Py_ssize_t ih = oh * g->sh - g->pt + kh * g->dh;
        const float* row = (ih >= 0 && ih < g->H) ? ximg + ih * g->W * g->C : zrow;
        for (Py_ssize_t kw = 0; kw < g->KW; kw++)
            for (Py_ssize_t c = 0; c < g->C; c++, r++) {
                t->row[r] = row;
                t->coff[r] = kw * g->dw * g->C + c;
                t->kwd[r] = kw * g->dw;
            }
    }
    t->n = r;
}

/* Output columns [*a, *b) whose whole window lies inside the image width (the rest, at most a
   few per side, take the checked path): ow*sw - pl >= 0 and ow*sw - pl + (KW-1)*dw <= W-1. */
static inline void cd_interior(const cd_geom* g, Py_ssize_t* a, Py_ssize_t* b) {
    Py_ssize_t lo = (g->pl + g->sw - 1) / g->sw;
    Py_ssize_t t = g->W - 1 - (g->KW - 1) * g->dw + g->pl;
    Py_ssize_t hi = t < 0 ? 0 : t / g->sw + 1;
    if (lo > g->OW) lo = g->OW;
    if (hi > g->OW) hi = g->OW;
    if (hi < lo) hi = lo;
    *a = lo;
    *b = hi;
}

/* ---- flavours. 0: portable (4-float vectors, SSE2 on x86-64); 1: AVX2+FMA; 2: AVX-512F. */
#define CD_SFX base
#define CD_TGT
#define CD_VL 4
#define CD_PB 6
#define CD_G 6
#define CD_NVMAX 2
#include "conv_direct_isa.h"
#undef CD_NVMAX
#undef CD_SFX
#undef CD_TGT
#undef CD_VL
#undef CD_PB
#undef CD_G

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CD_X86 1
#define CD_SFX avx2
#define CD_TGT __attribute__((target("avx2,fma")))
#define CD_VL 8
#define CD_PB 6
#define CD_G 6
#define CD_NVMAX 2
#include "conv_direct_isa.h"
#undef CD_NVMAX
#undef CD_SFX
#undef CD_TGT
#undef CD_VL
#undef CD_PB
#undef CD_G

#define CD_SFX avx512
#define CD_TGT __attribute__((target("avx512f")))
#define CD_VL 16
#define CD_PB 12
#define CD_G 12
#define CD_NVMAX 4
#include "conv_direct_isa.h"
#undef CD_NVMAX
#undef CD_SFX
#undef CD_TGT
#undef CD_VL
#undef CD_PB
#undef CD_G
#endif

/* floats per vector of flavour isa: F is padded to a multiple of it in wp / bp / dwp */
static int cd_block(int isa) { return isa == 2 ? 16 : isa == 1 ? 8 : 4; }

static void cd_forward(int isa, const float* x, const cd_geom* g, const float* wp, const float* bp,
                       Py_ssize_t Fp, const float* zrow, Py_ssize_t q0, Py_ssize_t q1, float* y /* row q0 */,
                       int relu) {
#ifdef CD_X86
    if (isa == 2) { cd_forward_avx512(x, g, wp, bp, Fp, zrow, q0, q1, y, relu); return; }
    if (isa == 1) { cd_forward_avx2(x, g, wp, bp, Fp, zrow, q0, q1, y, relu); return; }
#endif
    cd_forward_base(x, g, wp, bp, Fp, zrow, q0, q1, y, relu);
}

static void cd_conv_pool(int isa, const float* x, const cd_geom* g, const float* wp, const float* bp,
                         Py_ssize_t Fp, const float* zrow, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t PH,
                         Py_ssize_t PW, float* scratch, float* yp) {
#ifdef CD_X86
    if (isa == 2) { cd_conv_pool_avx512(x, g, wp, bp, Fp, zrow, p0, p1, PH, PW, scratch, yp); return; }
    if (isa == 1) { cd_conv_pool_avx2(x, g, wp, bp, Fp, zrow, p0, p1, PH, PW, scratch, yp); return; }
#endif
    cd_conv_pool_base(x, g, wp, bp, Fp, zrow, p0, p1, PH, PW, scratch, yp);
}

static void cd_backward(int isa, const float* x, const cd_geom* g, const float* dy, const float* y,
                        const float* zrow, Py_ssize_t Fp, Py_ssize_t q0, Py_ssize_t q1, float* dys,
                        double* dwp, double* dbp) {
#ifdef CD_X86
    if (isa == 2) { cd_backward_avx512(x, g, dy, y, zrow, Fp, q0, q1, dys, dwp, dbp); return; }
    if (isa == 1) { cd_backward_avx2(x, g, dy, y, zrow, Fp, q0, q1, dys, dwp, dbp); return; }
#endif
    cd_backward_base(x, g, dy, y, zrow, Fp, q0, q1, dys, dwp, dbp);
}

#endif
