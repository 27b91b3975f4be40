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

/* fnn_relu of activation.pxd with its default parameters, bit for bit (as conv_direct's):
   (v <= 0 ? 0 : v) + 0 * (v < 0 ? v : 0), so NaN stays NaN and -inf gives NaN. */
DW_AI VF DW_FN(dw_relu)(VF v) {
    VF z = {0};
    VF r = (VF)((VI)v & ~(VI)(v <= z));
    VF neg = (VF)((VI)v & (VI)(v < z));
    return r + z * neg;
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
    DW_FN(dw_run)(rb, xo, wp, T, g->sw * Ce, b, y, Ce, relu, Ce, a, e);
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
                                     float* dst) {
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
        DW_FN(dw_run)(rb, xo, wp, T, Ce, NULL, d0, sw * Ce, 0, Ce, jlo, jhi);
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
   part[t*Ce + cb ...] (float64) += sum over ow of x(t, ow) * dy[ow]; x(t, ow) = rb[t] + ow*xs +
   xo[t] in the interior [a, e), checked against the width (zrow outside) elsewhere. */
DW_AI void DW_FN(dw_wgrp)(const dw_geom* g, const float* const* rows, const float* zrow,
                          const float* dyr, Py_ssize_t a, Py_ssize_t e, Py_ssize_t t0,
                          double* part, Py_ssize_t cb, Py_ssize_t nf, const int G,
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
        for (int v = 0; v < NV; v++) {
            float tmp[DW_VL];
            DW_FN(dw_st)(tmp, acc[j][v]);
            double* dst = part + (t0 + j) * Ce + cb + v * DW_VL;
            Py_ssize_t n = PART ? nf : DW_VL;
            for (Py_ssize_t i = 0; i < n; i++)
                dst[i] += tmp[i];
        }
}

#define DW_GRP(S) case S: if ((S) <= DW_G) DW_FN(dw_wgrp)(g, rows, zrow, dyr, a, e, t0, part, cb, nf, (S) <= DW_G ? (S) : 1, NV, PART); break;
/* all taps at channel cb: groups of at most DW_G taps, of balanced sizes */
DW_AI void DW_FN(dw_wtaps)(const dw_geom* g, const float* const* rows, const float* zrow,
                           const float* dyr, Py_ssize_t a, Py_ssize_t e, double* part,
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
        float tmp[DW_VL];
        DW_FN(dw_st)(tmp, s);
        double* dst = part + T * g->Ce + cb + v * DW_VL;
        Py_ssize_t n = PART ? nf : DW_VL;
        for (Py_ssize_t i = 0; i < n; i++)
            dst[i] += tmp[i];
    }
}
#undef DW_GRP

/* part ((KH*KW + 1) x Ce, float64) += dw and db of one output row (rows: its KH input rows) */
static DW_TGT void DW_FN(dw_dw_row)(const dw_geom* g, const float* const* rows,
                                     const float* zrow, const float* dyr, double* part) {
    Py_ssize_t Ce = g->Ce, a, e, cb = 0;
    dw_interior(g, &a, &e);
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
