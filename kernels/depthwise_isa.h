/* One instruction-set flavour of the depthwise kernels (see depthwise.h, which includes this
   file once per flavour with DW_SFX, DW_TGT, DW_VL, DW_P, DW_NV, DW_G, DW_GNV defined).

   GCC vector extensions: the same source serves AVX-512F (16 floats), AVX2+FMA (8) and the
   portable baseline (4: SSE2 on x86-64); -ffp-contract=fast turns `acc += x * w` into FMAs
   where the target has them. Channels are the vector axis (NHWC: they are contiguous), so
   every load is a whole vector of one pixel's channels and no shuffles are needed:
    - forward and dx: DW_P pixels x DW_NV vectors of accumulators per block; per tap (kh, kw)
      one weight load per vector, then one load + FMA per pixel and vector;
    - dw: DW_G taps x DW_GNV vectors of accumulators, summed over a row's pixels, one dy load
      per vector and pixel, then one x load + FMA per tap;
    - the channel tail (Ce not a multiple of the vector) runs one partial vector (memcpy'd
      lanes), so every channel count works with every flavour. */

#define DW_CAT2(a, b) a##_##b
#define DW_CAT(a, b) DW_CAT2(a, b)
#define DW_FN(name) DW_CAT(name, DW_SFX)
#define VF DW_FN(dw_vf)
#define VI DW_FN(dw_vi)
#define DW_AI static inline __attribute__((always_inline)) DW_TGT

typedef float VF __attribute__((vector_size(DW_VL * 4)));
typedef int VI __attribute__((vector_size(DW_VL * 4)));

DW_AI VF DW_FN(dw_ld)(const float* p) { VF v; memcpy(&v, p, sizeof v); return v; }
DW_AI void DW_FN(dw_st)(float* p, VF v) { memcpy(p, &v, sizeof v); }
/* the first nf (< DW_VL) lanes, zeros above */
DW_AI VF DW_FN(dw_ldp)(const float* p, Py_ssize_t nf) {
    VF v = {0};
    memcpy(&v, p, (size_t)nf * sizeof(float));
    return v;
}
DW_AI void DW_FN(dw_stp)(float* p, VF v, Py_ssize_t nf) { memcpy(p, &v, (size_t)nf * sizeof(float)); }
/* dst[0, n) += the first n lanes of v (n = DW_VL: one vector load, add and store) */
DW_AI void DW_FN(dw_addf)(float* dst, VF v, Py_ssize_t n) {
    if (n == DW_VL)
        DW_FN(dw_st)(dst, DW_FN(dw_ld)(dst) + v);
    else
        DW_FN(dw_stp)(dst, DW_FN(dw_ldp)(dst, n) + v, n);
}

/* fnn_relu of activation.pxd with its default parameters, bit for bit (as conv_direct's):
   (v <= 0 ? 0 : v), so NaN stays NaN and -inf gives 0 (Keras's relu). */
DW_AI VF DW_FN(dw_relu)(VF v) {
    VF z = {0};
    return (VF)((VI)v & ~(VI)(v <= z));
}

#define DW_LD(p) (PART ? DW_FN(dw_ldp)((p), nf) : DW_FN(dw_ld)(p))

/* P pixels x NV vectors at channel cb: dst[p*ds + cb ...] = b + sum over taps t of
   src(t, p) * w(t), with src(t, p) = rb[t] + off + xo[t] + p*xs + cb and w(t) = wp[t] + cb.
   PART: one partial vector of nf channels (the tail). b may be NULL (zeros). */
DW_AI void DW_FN(dw_blk)(const float* const* rb, const Py_ssize_t* xo, const float* const* wp,
                         Py_ssize_t T, Py_ssize_t off, Py_ssize_t xs, const float* b,
                         float* dst, Py_ssize_t ds, int relu, Py_ssize_t cb, Py_ssize_t nf,
                         const int P, const int NV, const int PART) {
    VF acc[DW_P][DW_NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        VF b0 = {0};
        if (b != NULL)
            b0 = DW_LD(b + cb + v * DW_VL);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++)
            acc[p][v] = b0;
    }
    for (Py_ssize_t t = 0; t < T; t++) {
        const float* xp = rb[t] + (off + xo[t] + cb);
        const float* w = wp[t] + cb;
        VF wv[DW_NV];
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            wv[v] = DW_LD(w + v * DW_VL);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++)
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                acc[p][v] += DW_LD(xp + p * xs + v * DW_VL) * wv[v];
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            VF a = relu ? DW_FN(dw_relu)(acc[p][v]) : acc[p][v];
            if (PART)
                DW_FN(dw_stp)(dst + p * ds + cb, a, nf);
            else
                DW_FN(dw_st)(dst + p * ds + cb + v * DW_VL, a);
        }
}

/* every channel of P pixels: blocks of NV vectors, then single vectors, then the tail */
DW_AI void DW_FN(dw_chans)(const float* const* rb, const Py_ssize_t* xo, const float* const* wp,
                           Py_ssize_t T, Py_ssize_t off, Py_ssize_t xs, const float* b,
                           float* dst, Py_ssize_t ds, int relu, Py_ssize_t Ce, const int P) {
    Py_ssize_t cb = 0;
    for (; cb + DW_NV * DW_VL <= Ce; cb += DW_NV * DW_VL)
        DW_FN(dw_blk)(rb, xo, wp, T, off, xs, b, dst, ds, relu, cb, 0, P, DW_NV, 0);
    for (; cb + DW_VL <= Ce; cb += DW_VL)
        DW_FN(dw_blk)(rb, xo, wp, T, off, xs, b, dst, ds, relu, cb, 0, P, 1, 0);
    if (cb < Ce)
        DW_FN(dw_blk)(rb, xo, wp, T, off, xs, b, dst, ds, relu, cb, Ce - cb, P, 1, 1);
}

/* pixels [j0, j1) of a run in blocks of DW_P (a narrower block for the rest): pixel j reads
   off = j * xs and writes dst + j * ds */
#define DW_REST(R) case R: if ((R) < DW_P) DW_FN(dw_chans)(rb, xo, wp, T, j * xs, xs, b, dst + j * ds, ds, relu, Ce, (R) < DW_P ? (R) : 1); break;
DW_AI void DW_FN(dw_run)(const float* const* rb, const Py_ssize_t* xo, const float* const* wp,
                         Py_ssize_t T, Py_ssize_t xs, const float* b, float* dst,
                         Py_ssize_t ds, int relu, Py_ssize_t Ce, Py_ssize_t j0, Py_ssize_t j1) {
    Py_ssize_t j = j0;
    for (; j + DW_P <= j1; j += DW_P)
        DW_FN(dw_chans)(rb, xo, wp, T, j * xs, xs, b, dst + j * ds, ds, relu, Ce, DW_P);
    switch (j1 - j) {
        DW_REST(1) DW_REST(2) DW_REST(3) DW_REST(4) DW_REST(5) DW_REST(6) DW_REST(7)
        DW_REST(8) DW_REST(9) DW_REST(10) DW_REST(11) DW_REST(12) DW_REST(13) DW_REST(14)
        DW_REST(15)
        default: break;
    }
}
#undef DW_REST

/* ---------------------------------------------------------------- sliding windows */

/* The common case (KW = 3 or 5, column step S = 1 or 2, dilation 1) with each input column
   loaded once per kernel row and multiplied into every (pixel, kw) pair that reads it (the
   generic block loads it once per tap): P pixels x NV vectors at channel cb,
   dst[p*Ce + cb ...] = b + sum over rows r, kw of rows[r][x0 + (p*S + kw)*Ce + cb] * wk[r*KW + kw].
   Per accumulator the terms still come in (r, kw) order. Measured (1 thread, AVX-512, in cache):
   1.1-1.2x the generic block on MobileNetV2's 3x3 shapes; 3x3 itself now takes dw_w3 below,
   this serves 5x5 (EfficientNet) and the 3x3 tails. */
DW_AI void DW_FN(dw_fblk)(const float* const* rows, const float* const* wk, Py_ssize_t R,
                          Py_ssize_t x0, Py_ssize_t Ce, const float* b, float* dst, int relu,
                          Py_ssize_t cb, const int P, const int NV, const int S, const int KW) {
    VF acc[DW_P][DW_NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        VF b0 = {0};
        if (b != NULL)
            b0 = DW_FN(dw_ld)(b + cb + v * DW_VL);
#pragma GCC unroll 16
        for (int p = 0; p < P; p++)
            acc[p][v] = b0;
    }
    for (Py_ssize_t r = 0; r < R; r++) {
        const float* xr = rows[r] + (x0 + cb);
        VF wv[5][DW_NV];
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; kw++)
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                wv[kw][v] = DW_FN(dw_ld)(wk[r * KW + kw] + cb + v * DW_VL);
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
#pragma GCC unroll 64
            for (int c = 0; c < (P - 1) * S + KW; c++) {
                VF xv = DW_FN(dw_ld)(xr + c * Ce + v * DW_VL);
#pragma GCC unroll 8
                for (int kw = 0; kw < KW; kw++) {
                    int q = c - kw;
                    if (q >= 0 && q % S == 0 && q / S < P)
                        acc[q / S][v] += xv * wv[kw][v];
                }
            }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            DW_FN(dw_st)(dst + p * Ce + cb + v * DW_VL, relu ? DW_FN(dw_relu)(acc[p][v]) : acc[p][v]);
}

/* all whole vectors of channels of P pixels (the tail is left to the generic block) */
DW_AI void DW_FN(dw_fchans)(const float* const* rows, const float* const* wk, Py_ssize_t R,
                            Py_ssize_t x0, Py_ssize_t Ce, const float* b, float* dst, int relu,
                            const int P, const int S, const int KW) {
    Py_ssize_t cb = 0;
    /* NV = 2 keeps KW x 2 weight and P x 2 accumulator vectors: with 16 registers only for 3x3 */
    if (DW_FNV2(KW))
        for (; cb + 2 * DW_VL <= Ce; cb += 2 * DW_VL)
            DW_FN(dw_fblk)(rows, wk, R, x0, Ce, b, dst, relu, cb, P, 2, S, KW);
    for (; cb + DW_VL <= Ce; cb += DW_VL)
        DW_FN(dw_fblk)(rows, wk, R, x0, Ce, b, dst, relu, cb, P, 1, S, KW);
}

/* pixels [j0, j1) of a row in sliding-window blocks: pixel j's window starts at x0 + j*S*Ce,
   its output at dst + j*ds (ds = Ce, or sw*Ce for dx); the channel tail (Ce % DW_VL) is not
   written (the caller runs the generic block on it). */
#define DW_FREST(R_) case R_: if ((R_) < DW_P) DW_FN(dw_fchans)(rows, wk, R, x0 + j * S * Ce, Ce, b, dst + j * ds, relu, (R_) < DW_P ? (R_) : 1, S, KW); break;
DW_AI void DW_FN(dw_frun)(const float* const* rows, const float* const* wk, Py_ssize_t R,
                          Py_ssize_t x0, Py_ssize_t Ce, const float* b, float* dst, Py_ssize_t ds,
                          int relu, Py_ssize_t j0, Py_ssize_t j1, const int S, const int KW) {
    Py_ssize_t j = j0;
    for (; j + DW_P <= j1; j += DW_P)
        DW_FN(dw_fchans)(rows, wk, R, x0 + j * S * Ce, Ce, b, dst + j * ds, relu, DW_P, S, KW);
    switch (j1 - j) {
        DW_FREST(1) DW_FREST(2) DW_FREST(3) DW_FREST(4) DW_FREST(5) DW_FREST(6) DW_FREST(7)
        default: break;
    }
}
#undef DW_FREST

/* the sliding-window run for (S, KW) in {1, 2} x {3, 5}; 0 if the shape is not one of them */
static DW_TGT int DW_FN(dw_fast)(const float* const* rows, const float* const* wk, Py_ssize_t R,
                                 Py_ssize_t x0, Py_ssize_t Ce, const float* b, float* dst,
                                 Py_ssize_t ds, int relu, Py_ssize_t j0, Py_ssize_t j1,
                                 Py_ssize_t S, Py_ssize_t KW) {
    if (S == 1 && KW == 3) DW_FN(dw_frun)(rows, wk, R, x0, Ce, b, dst, ds, relu, j0, j1, 1, 3);
    else if (S == 1 && KW == 5) DW_FN(dw_frun)(rows, wk, R, x0, Ce, b, dst, ds, relu, j0, j1, 1, 5);
    else if (S == 2 && KW == 3) DW_FN(dw_frun)(rows, wk, R, x0, Ce, b, dst, ds, relu, j0, j1, 2, 3);
    else if (S == 2 && KW == 5) DW_FN(dw_frun)(rows, wk, R, x0, Ce, b, dst, ds, relu, j0, j1, 2, 5);
    else return 0;
    return 1;
}

/* ---------------------------------------------------------------- 3x3 weights in registers */

/* 3x3, dilation 1, stride S (1 or 2), whole vectors of channels: the 9 weight vectors of a
   channel vector stay in registers while the row's interior pixels [a, e) stream past; each
   input column is loaded once per kernel row (S = 1; two new columns per pixel for S = 2) and
   kept in a rolling window, so a pixel costs 3 (or 6) loads, 9 FMAs and a store. The terms come
   in (kh, kw) order after the bias, as in the other blocks. Measured (1 thread, in cache,
   interleaved): forward 1.2-1.3x, dx 1.2x and dw 1.3-1.5x the blocked loops before it on
   MobileNetV2's layers (AVX-512; AVX2 spills a register or two and still gains 0.95-1.1x). */
DW_AI void DW_FN(dw_w3_cols)(const float* const* rows, Py_ssize_t Ce, Py_ssize_t pl, const float* wt,
                             const float* b, float* y, int relu, Py_ssize_t a, Py_ssize_t e, Py_ssize_t cb,
                             const int S) {
    VF w0 = DW_FN(dw_ld)(wt + 0 * Ce + cb), w1 = DW_FN(dw_ld)(wt + 1 * Ce + cb), w2 = DW_FN(dw_ld)(wt + 2 * Ce + cb);
    VF w3 = DW_FN(dw_ld)(wt + 3 * Ce + cb), w4 = DW_FN(dw_ld)(wt + 4 * Ce + cb), w5 = DW_FN(dw_ld)(wt + 5 * Ce + cb);
    VF w6 = DW_FN(dw_ld)(wt + 6 * Ce + cb), w7 = DW_FN(dw_ld)(wt + 7 * Ce + cb), w8 = DW_FN(dw_ld)(wt + 8 * Ce + cb);
    VF b0 = {0};
    if (b != NULL)
        b0 = DW_FN(dw_ld)(b + cb);
    Py_ssize_t o = (a * S - pl) * Ce + cb;
    const float* p0 = rows[0] + o;
    const float* p1 = rows[1] + o;
    const float* p2 = rows[2] + o;
    float* yp = y + a * Ce + cb;
    VF x00 = DW_FN(dw_ld)(p0), x01 = DW_FN(dw_ld)(p0 + Ce);
    VF x10 = DW_FN(dw_ld)(p1), x11 = DW_FN(dw_ld)(p1 + Ce);
    VF x20 = DW_FN(dw_ld)(p2), x21 = DW_FN(dw_ld)(p2 + Ce);
    for (Py_ssize_t ow = a; ow < e; ow++) {
        VF x02 = DW_FN(dw_ld)(p0 + 2 * Ce), x12 = DW_FN(dw_ld)(p1 + 2 * Ce), x22 = DW_FN(dw_ld)(p2 + 2 * Ce);
        VF acc = b0;
        acc += x00 * w0; acc += x01 * w1; acc += x02 * w2;
        acc += x10 * w3; acc += x11 * w4; acc += x12 * w5;
        acc += x20 * w6; acc += x21 * w7; acc += x22 * w8;
        DW_FN(dw_st)(yp, relu ? DW_FN(dw_relu)(acc) : acc);
        yp += Ce;
        if (S == 1) {
            x00 = x01; x01 = x02; x10 = x11; x11 = x12; x20 = x21; x21 = x22;
        } else if (ow + 1 < e) {
            x00 = x02; x10 = x12; x20 = x22;
            x01 = DW_FN(dw_ld)(p0 + 3 * Ce); x11 = DW_FN(dw_ld)(p1 + 3 * Ce); x21 = DW_FN(dw_ld)(p2 + 3 * Ce);
        }
        p0 += S * Ce; p1 += S * Ce; p2 += S * Ce;
    }
}

/* 1 if it ran (3x3, dilation 1, stride 1 or 2), 0 otherwise; the channel tail is left over */
static DW_TGT int DW_FN(dw_w3)(const dw_geom* g, const float* const* rows, const float* wt,
                               const float* b, float* y, int relu, Py_ssize_t a, Py_ssize_t e) {
    if (g->KH != 3 || g->KW != 3 || g->dw != 1 || (g->sw != 1 && g->sw != 2) || e <= a)
        return 0;
    for (Py_ssize_t cb = 0; cb + DW_VL <= g->Ce; cb += DW_VL) {
        if (g->sw == 1) DW_FN(dw_w3_cols)(rows, g->Ce, g->pl, wt, b, y, relu, a, e, cb, 1);
        else DW_FN(dw_w3_cols)(rows, g->Ce, g->pl, wt, b, y, relu, a, e, cb, 2);
    }
    return 1;
}

/* ---------------------------------------------------------------- forward */

/* one output row (OW x Ce floats at y) from its KH input rows (zrow in the padding) */
static DW_TGT void DW_FN(dw_fwd_row)(const dw_geom* g, const float* const* rows,
                                      const float* zrow, const float* wt, const float* b,
                                      float* y, int relu) {
    const float* rb[DW_TMAX];
    const float* wp[DW_TMAX];
    Py_ssize_t xo[DW_TMAX];
    Py_ssize_t Ce = g->Ce, KW = g->KW, T = g->KH * g->KW, a, e, t;
    dw_interior(g, &a, &e);
    for (t = 0; t < T; t++) {        /* interior pixel ow reads x[ow*sw - pl + kw*dw] */
        rb[t] = rows[t / KW];
        xo[t] = ((t % KW) * g->dw - g->pl) * Ce;
        wp[t] = wt + t * Ce;
    }
    if (g->dw == 1 && Ce >= DW_VL && (DW_FN(dw_w3)(g, rows, wt, b, y, relu, a, e) ||
        DW_FN(dw_fast)(rows, wp, g->KH, -g->pl * Ce, Ce, b, y, Ce, relu, a, e, g->sw, KW))) {
        Py_ssize_t ct = Ce - Ce % DW_VL;     /* the channel tail, generic */
        if (ct < Ce)
            for (Py_ssize_t ow = a; ow < e; ow++)
                DW_FN(dw_blk)(rb, xo, wp, T, ow * g->sw * Ce, 0, b, y + ow * Ce, 0, relu, ct, Ce - ct, 1, 1, 1);
    } else {
        DW_FN(dw_run)(rb, xo, wp, T, g->sw * Ce, b, y, Ce, relu, Ce, a, e);
    }
    for (Py_ssize_t ow = 0; ow < g->OW; ow++) {   /* border pixels: taps outside read zeros */
        if (ow >= a && ow < e)
            continue;
        const float* rp[DW_TMAX];
        Py_ssize_t po[DW_TMAX];
        for (t = 0; t < T; t++) {
            Py_ssize_t iw = ow * g->sw - g->pl + (t % KW) * g->dw;
            int in = iw >= 0 && iw < g->W;
            rp[t] = in ? rows[t / KW] : zrow;
            po[t] = in ? iw * Ce : 0;
        }
        DW_FN(dw_chans)(rp, po, wp, T, 0, 0, b, y + ow * Ce, Ce, relu, Ce, 1);
    }
}

/* ---------------------------------------------------------------- backward: dx */

/* one input row's gradient (W x Ce floats at dst) from the nk dy rows that read it (dyrows,
   their kernel rows khs). Input column iw = rho + j*sw (rho = iw mod sw) is read by the taps
   kw with (iw + pl - kw*dw) divisible by sw, at output column ow = j + e(kw): the same taps for
   a whole phase rho, so a phase's interior pixels run in blocks like the forward's (dy read
   with pixel step Ce, dx written with step sw*Ce); every pixel is written once. */
static DW_TGT void DW_FN(dw_dx_row)(const dw_geom* g, const float* const* dyrows,
                                     const Py_ssize_t* khs, Py_ssize_t nk, const float* wt,
                                     const float* wflip, float* dst) {
    dw_geom gd = *g;        /* the dx gather as a forward: stride 1, left pad 2 - pl */
    gd.pl = g->KW - 1 - g->pl;
    const float* rb[DW_TMAX];
    const float* wp[DW_TMAX];
    Py_ssize_t xo[DW_TMAX], kws[DW_TMAX], es[DW_TMAX];
    Py_ssize_t Ce = g->Ce, sw = g->sw, KW = g->KW, OW = g->OW;
    for (Py_ssize_t rho = 0; rho < sw && rho < g->W; rho++) {
        Py_ssize_t nkw = 0, emax = 0, emin = 0;
        for (Py_ssize_t kw = 0; kw < KW; kw++) {
            Py_ssize_t t = rho + g->pl - kw * g->dw;
            if (((t % sw) + sw) % sw != 0)
                continue;
            Py_ssize_t e = t / sw;       /* exact */
            if (nkw == 0 || e > emax) emax = e;
            if (nkw == 0 || e < emin) emin = e;
            kws[nkw] = kw;
            es[nkw++] = e;
        }
        Py_ssize_t J = (g->W - rho + sw - 1) / sw, T = 0;
        Py_ssize_t jlo = nkw ? (emin < 0 ? -emin : 0) : 0;
        Py_ssize_t jhi = nkw ? OW - emax : J;
        if (jhi > J) jhi = J;
        if (jhi < jlo) jhi = jlo;
        if (jlo > J) jlo = jhi = J;
        for (Py_ssize_t i = 0; i < nk; i++)
            for (Py_ssize_t k = 0; k < nkw; k++, T++) {
                rb[T] = dyrows[i];
                xo[T] = es[k] * Ce;
                wp[T] = wt + (khs[i] * KW + kws[k]) * Ce;
            }
        float* d0 = dst + rho * Ce;
        if (wflip != NULL && sw == 1 && g->dw == 1 && nk == 3 && g->KH == 3 && KW == 3 && Ce >= DW_VL) {
            /* dx[j] = sum over kh, m of dy_kh[j + pl - 2 + m] * w[kh, 2 - m]: the forward's
               3x3 columns on the dy rows with the kw-flipped weights */
            DW_FN(dw_w3)(&gd, dyrows, wflip, NULL, d0, 0, jlo, jhi);
            Py_ssize_t ct = Ce - Ce % DW_VL;
            if (ct < Ce)
                for (Py_ssize_t j = jlo; j < jhi; j++)
                    DW_FN(dw_blk)(rb, xo, wp, T, j * Ce, 0, NULL, d0 + j * Ce, 0, 0, ct, Ce - ct, 1, 1, 1);
        } else if (sw == 1 && g->dw == 1 && Ce >= DW_VL && nkw == KW && (KW == 3 || KW == 5)) {
            /* stride 1: a correlation of dy with the flipped kernel, sliding window over dy
               columns j + pl - (KW-1) + m, m = KW-1-kw */
            const float* wf[DW_TMAX];
            for (Py_ssize_t i = 0; i < nk; i++)
                for (Py_ssize_t m = 0; m < KW; m++)
                    wf[i * KW + m] = wt + (khs[i] * KW + KW - 1 - m) * Ce;
            DW_FN(dw_fast)(dyrows, wf, nk, (g->pl - (KW - 1)) * Ce, Ce, NULL, d0, Ce, 0, jlo, jhi, 1, KW);
            Py_ssize_t ct = Ce - Ce % DW_VL;
            if (ct < Ce)
                for (Py_ssize_t j = jlo; j < jhi; j++)
                    DW_FN(dw_blk)(rb, xo, wp, T, j * Ce, 0, NULL, d0 + j * Ce, 0, 0, ct, Ce - ct, 1, 1, 1);
        } else {
            DW_FN(dw_run)(rb, xo, wp, T, Ce, NULL, d0, sw * Ce, 0, Ce, jlo, jhi);
        }
        for (Py_ssize_t j = 0; j < J; j++) {        /* border pixels: only the taps in range */
            if (j >= jlo && j < jhi)
                continue;
            const float* rp[DW_TMAX];
            const float* pw[DW_TMAX];
            Py_ssize_t po[DW_TMAX], n = 0;
            for (Py_ssize_t i = 0; i < nk; i++)
                for (Py_ssize_t k = 0; k < nkw; k++) {
                    Py_ssize_t ow = j + es[k];
                    if (ow < 0 || ow >= OW)
                        continue;
                    rp[n] = dyrows[i];
                    po[n] = ow * Ce;
                    pw[n++] = wt + (khs[i] * KW + kws[k]) * Ce;
                }
            DW_FN(dw_chans)(rp, po, pw, n, 0, 0, NULL, d0 + j * sw * Ce, 0, 0, Ce, 1);
        }
    }
}

/* ---------------------------------------------------------------- backward: dw, db */

/* taps [t0, t0 + G) x NV vectors at channel cb, summed over one output row's pixels:
   part[t*Ce + cb ...] += sum over ow of x(t, ow) * dy[ow]; x(t, ow) = rb[t] + ow*xs +
   xo[t] in the interior [a, e), checked against the width (zrow outside) elsewhere. */
DW_AI void DW_FN(dw_wgrp)(const dw_geom* g, const float* const* rows, const float* zrow,
                          const float* dyr, Py_ssize_t a, Py_ssize_t e, Py_ssize_t t0,
                          float* part, Py_ssize_t cb, Py_ssize_t nf, const int G,
                          const int NV, const int PART) {
    VF acc[DW_G][DW_GNV];
    const float* rb[DW_G];
    Py_ssize_t xo[DW_G], kwd[DW_G];
    Py_ssize_t Ce = g->Ce, KW = g->KW, xs = g->sw * Ce;
#pragma GCC unroll 16
    for (int j = 0; j < G; j++) {
        rb[j] = rows[(t0 + j) / KW];
        kwd[j] = ((t0 + j) % KW) * g->dw - g->pl;
        xo[j] = kwd[j] * Ce + cb;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            acc[j][v] = (VF){0};
    }
    for (Py_ssize_t ow = 0; ow < g->OW; ow++) {
        VF d[DW_GNV];
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            d[v] = DW_LD(dyr + ow * Ce + cb + v * DW_VL);
        if (ow >= a && ow < e) {
#pragma GCC unroll 16
            for (int j = 0; j < G; j++)
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    acc[j][v] += DW_LD(rb[j] + (ow * xs + xo[j] + v * DW_VL)) * d[v];
        } else {            /* a tap outside the image reads 0 (0 * dy, as zero padding) */
#pragma GCC unroll 16
            for (int j = 0; j < G; j++) {
                Py_ssize_t iw = ow * g->sw + kwd[j];
                const float* p = (iw >= 0 && iw < g->W) ? rb[j] + iw * Ce + cb : zrow + cb;
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    acc[j][v] += DW_LD(p + v * DW_VL) * d[v];
            }
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < G; j++)
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            DW_FN(dw_addf)(part + (t0 + j) * Ce + cb + v * DW_VL, acc[j][v], PART ? nf : DW_VL);
}

/* 3x3, dilation 1, stride 1 or 2, one whole channel vector at cb: the 9 tap sums of one output
   row in registers, the input window rolling along the row (3 loads per pixel for stride 1, 6 for
   stride 2, plus dy's), border pixels checked; added into part afterwards. */
DW_AI void DW_FN(dw_w3_grad)(const dw_geom* g, const float* const* rows, const float* zrow,
                             const float* dyr, Py_ssize_t a, Py_ssize_t e, float* part, Py_ssize_t cb,
                             const int S) {
    Py_ssize_t Ce = g->Ce, pl = g->pl, W = g->W;
    VF s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0}, s8 = {0}, sb = {0};
    for (Py_ssize_t ow = 0; ow < g->OW; ow++) {      /* border pixels: taps outside read zeros */
        if (ow >= a && ow < e)
            continue;
        VF d = DW_FN(dw_ld)(dyr + ow * Ce + cb);
        VF x[9];
        for (int t = 0; t < 9; t++) {
            Py_ssize_t iw = ow * S - pl + t % 3;
            const float* p = (iw >= 0 && iw < W) ? rows[t / 3] + iw * Ce + cb : zrow + cb;
            x[t] = DW_FN(dw_ld)(p);
        }
        s0 += x[0] * d; s1 += x[1] * d; s2 += x[2] * d; s3 += x[3] * d; s4 += x[4] * d;
        s5 += x[5] * d; s6 += x[6] * d; s7 += x[7] * d; s8 += x[8] * d; sb += d;
    }
    if (e > a) {
        Py_ssize_t o = (a * S - pl) * Ce + cb;
        const float* p0 = rows[0] + o;
        const float* p1 = rows[1] + o;
        const float* p2 = rows[2] + o;
        const float* dp = dyr + a * Ce + cb;
        VF x00 = DW_FN(dw_ld)(p0), x01 = DW_FN(dw_ld)(p0 + Ce);
        VF x10 = DW_FN(dw_ld)(p1), x11 = DW_FN(dw_ld)(p1 + Ce);
        VF x20 = DW_FN(dw_ld)(p2), x21 = DW_FN(dw_ld)(p2 + Ce);
        for (Py_ssize_t ow = a; ow < e; ow++) {
            VF x02 = DW_FN(dw_ld)(p0 + 2 * Ce), x12 = DW_FN(dw_ld)(p1 + 2 * Ce), x22 = DW_FN(dw_ld)(p2 + 2 * Ce);
            VF d = DW_FN(dw_ld)(dp);
            s0 += x00 * d; s1 += x01 * d; s2 += x02 * d;
            s3 += x10 * d; s4 += x11 * d; s5 += x12 * d;
            s6 += x20 * d; s7 += x21 * d; s8 += x22 * d;
            sb += d;
            dp += Ce;
            if (S == 1) {
                x00 = x01; x01 = x02; x10 = x11; x11 = x12; x20 = x21; x21 = x22;
            } else if (ow + 1 < e) {
                x00 = x02; x10 = x12; x20 = x22;
                x01 = DW_FN(dw_ld)(p0 + 3 * Ce); x11 = DW_FN(dw_ld)(p1 + 3 * Ce); x21 = DW_FN(dw_ld)(p2 + 3 * Ce);
            }
            p0 += S * Ce; p1 += S * Ce; p2 += S * Ce;
        }
    }
    VF sums[10] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, sb};
    for (int t = 0; t < 10; t++)
        DW_FN(dw_addf)(part + t * Ce + cb, sums[t], DW_VL);
}

#define DW_GRP(S) case S: if ((S) <= DW_G) DW_FN(dw_wgrp)(g, rows, zrow, dyr, a, e, t0, part, cb, nf, (S) <= DW_G ? (S) : 1, NV, PART); break;
/* all taps at channel cb: groups of at most DW_G taps, of balanced sizes */
DW_AI void DW_FN(dw_wtaps)(const dw_geom* g, const float* const* rows, const float* zrow,
                           const float* dyr, Py_ssize_t a, Py_ssize_t e, float* part,
                           Py_ssize_t cb, Py_ssize_t nf, const int NV, const int PART) {
    Py_ssize_t T = g->KH * g->KW, ng = (T + DW_G - 1) / DW_G, t0 = 0;
    for (Py_ssize_t i = 0; i < ng; i++) {
        Py_ssize_t gs = (T - t0 + (ng - i) - 1) / (ng - i);
        switch (gs) {
            DW_GRP(1) DW_GRP(2) DW_GRP(3) DW_GRP(4) DW_GRP(5) DW_GRP(6) DW_GRP(7) DW_GRP(8)
            DW_GRP(9) DW_GRP(10) DW_GRP(11) DW_GRP(12)
            default: break;
        }
        t0 += gs;
    }
    /* db: the row's dy summed over its pixels (once per channel block) */
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        VF s = {0};
        for (Py_ssize_t ow = 0; ow < g->OW; ow++)
            s += DW_LD(dyr + ow * g->Ce + cb + v * DW_VL);
        DW_FN(dw_addf)(part + T * g->Ce + cb + v * DW_VL, s, PART ? nf : DW_VL);
    }
}
#undef DW_GRP

/* part ((KH*KW + 1) x Ce, float) += dw and db of one output row (rows: its KH input rows) */
static DW_TGT void DW_FN(dw_dw_row)(const dw_geom* g, const float* const* rows,
                                     const float* zrow, const float* dyr, float* part) {
    Py_ssize_t Ce = g->Ce, a, e, cb = 0;
    dw_interior(g, &a, &e);
    if (g->KH == 3 && g->KW == 3 && g->dw == 1 && (g->sw == 1 || g->sw == 2)) {
        for (; cb + DW_VL <= Ce; cb += DW_VL) {
            if (g->sw == 1) DW_FN(dw_w3_grad)(g, rows, zrow, dyr, a, e, part, cb, 1);
            else DW_FN(dw_w3_grad)(g, rows, zrow, dyr, a, e, part, cb, 2);
        }
    }
    for (; cb + DW_GNV * DW_VL <= Ce; cb += DW_GNV * DW_VL)
        DW_FN(dw_wtaps)(g, rows, zrow, dyr, a, e, part, cb, 0, DW_GNV, 0);
    for (; cb + DW_VL <= Ce; cb += DW_VL)
        DW_FN(dw_wtaps)(g, rows, zrow, dyr, a, e, part, cb, 0, 1, 0);
    if (cb < Ce)
        DW_FN(dw_wtaps)(g, rows, zrow, dyr, a, e, part, cb, Ce - cb, 1, 1);
}

#undef DW_LD
#undef DW_CAT2
#undef DW_CAT
#undef DW_FN
#undef VF
#undef VI
#undef DW_AI
