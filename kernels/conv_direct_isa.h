/* One instruction-set flavour of the direct convolution kernels (see conv_direct.h, which
   includes this file once per flavour with CD_SFX, CD_TGT, CD_VL, CD_PB, CD_G defined).

   Written with GCC vector extensions so the same source serves AVX-512F (16 floats), AVX2+FMA
   (8 floats) and the portable baseline (4 floats: SSE2 on x86-64, whatever the target has
   elsewhere); -ffp-contract=fast turns `acc += x * w` into FMAs where the target has them.
   Register blocking: F is cut into F-blocks of NV = 4, 2 or 1 vectors (the widest that fits
   what is left of F, padded to whole vectors; 4 only with 32 registers, CD_NVMAX: with 16,
   3 x 4 accumulators + 4 weight vectors + the broadcast spilled, measured 20% slower); forward keeps P output pixels x NV vectors of
   accumulators, backward G kernel rows x NV vectors, P*NV and G*NV up to 2*CD_PB / 2*CD_G (24
   of the 32 zmm registers, 12 of the 16 ymm ones), so the inner loops are loads, broadcasts
   and FMAs only. A wider F-block loads each broadcast x for more FMAs (F = 64 on AVX-512: one
   block of 4 instead of two of 2). The blocking factors are constants after inlining. */

#define CD_CAT2(a, b) a##_##b
#define CD_CAT(a, b) CD_CAT2(a, b)
#define CD_FN(name) CD_CAT(name, CD_SFX)
#define VF CD_FN(cd_vf)
#define VI CD_FN(cd_vi)
#define CD_AI static inline __attribute__((always_inline)) CD_TGT

typedef float VF __attribute__((vector_size(CD_VL * 4)));
typedef int VI __attribute__((vector_size(CD_VL * 4)));

CD_AI VF CD_FN(cd_ld)(const float* p) { VF v; memcpy(&v, p, sizeof v); return v; }
CD_AI void CD_FN(cd_st)(float* p, VF v) { memcpy(p, &v, sizeof v); }
CD_AI VF CD_FN(cd_bc)(float s) {
    /* a broadcast: s - 0 is s for every s, -0.0 included (0 + s would not be); an element
       loop instead became 16 masked inserts */
    return s - (VF){0};
}

/* fnn_relu of activation.pxd with its default parameters, bit for bit: (v <= 0 ? 0 : v), so
   NaN stays NaN and -inf gives 0 (Keras's relu) exactly as bias_act does. */
CD_AI VF CD_FN(cd_relu)(VF v) {
    VF z = {0};
    return (VF)((VI)v & ~(VI)(v <= z));
}

/* the running max m of a pool window taking cell v: v if v > m or v is NaN, m once it is NaN
   (the first NaN wins, as np.max and the pool kernels) */
CD_AI VF CD_FN(cd_max_nan)(VF m, VF v) {
    VI keep = (VI)(m != m) | ~((VI)(v > m) | (VI)(v != v));
    return (VF)(((VI)m & keep) | ((VI)v & ~keep));
}

/* vector v of an output pixel's F-block (nf = F - its first filter: the real ones) */
CD_AI void CD_FN(cd_store1)(float* y, VF a, Py_ssize_t nf, int relu) {
    if (relu)
        a = CD_FN(cd_relu)(a);
    if (nf >= CD_VL) {
        CD_FN(cd_st)(y, a);
    } else if (nf > 0) {       /* F tail: only the real filters are written */
        float t[CD_VL];
        CD_FN(cd_st)(t, a);
        memcpy(y, t, (size_t)nf * sizeof(float));
    }
}

/* ---------------------------------------------------------------- forward */

/* P interior output pixels (every tap inside the image or on a zero row) x the F-block of NV
   vectors at fb; iw0C = (first pixel's window column) * C, xs = sw * C. */
CD_AI void CD_FN(cd_fwd_blk)(const cd_rows* t, Py_ssize_t iw0C, Py_ssize_t xs, const float* wp,
                             const float* bp, Py_ssize_t Fp, float* y, Py_ssize_t F, int relu,
                             Py_ssize_t fb, const int P, const int NV) {
    VF acc[CD_PB * 2][4];
#pragma GCC unroll 32
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[p][v] = CD_FN(cd_ld)(bp + fb + v * CD_VL);
    for (Py_ssize_t r = 0; r < t->n; r++) {
        const float* wr = wp + r * Fp + fb;
        VF wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            wv[v] = CD_FN(cd_ld)(wr + v * CD_VL);
        const float* xr = t->row[r] + iw0C + t->coff[r];
#pragma GCC unroll 32
        for (int p = 0; p < P; p++) {
            VF xv = CD_FN(cd_bc)(xr[p * xs]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[p][v] += xv * wv[v];
        }
    }
#pragma GCC unroll 32
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            CD_FN(cd_store1)(y + p * F + fb + v * CD_VL, acc[p][v], F - fb - v * CD_VL, relu);
}

/* one border output pixel: taps outside the image read 0 (0 * w, as the zero padding of
   im2col: a NaN weight poisons the output the same way) */
CD_AI void CD_FN(cd_fwd_px)(const cd_rows* t, Py_ssize_t iw0, Py_ssize_t C, Py_ssize_t W,
                            const float* wp, const float* bp, Py_ssize_t Fp, float* y,
                            Py_ssize_t F, int relu, Py_ssize_t fb, const int NV) {
    VF acc[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        acc[v] = CD_FN(cd_ld)(bp + fb + v * CD_VL);
    for (Py_ssize_t r = 0; r < t->n; r++) {
        const float* wr = wp + r * Fp + fb;
        Py_ssize_t iw = iw0 + t->kwd[r];
        float s = (iw >= 0 && iw < W) ? t->row[r][iw0 * C + t->coff[r]] : 0.0f;
        VF xv = CD_FN(cd_bc)(s);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[v] += xv * CD_FN(cd_ld)(wr + v * CD_VL);
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        CD_FN(cd_store1)(y + fb + v * CD_VL, acc[v], F - fb - v * CD_VL, relu);
}

#define CD_FWD_BLK(P) \
    if ((P) < PM) CD_FN(cd_fwd_blk)(t, (ow * g->sw - g->pl) * C, xs, wp, bp, Fp, yq + ow * F, F, relu, fb, (P) < PM ? (P) : 1, NV)

/* the F-block at fb (NV vectors) of one output row: pixel blocks of PM, [a, b) the interior */
CD_AI void CD_FN(cd_fwd_cols)(const cd_rows* t, const cd_geom* g, Py_ssize_t a, Py_ssize_t b,
                              const float* wp, const float* bp, Py_ssize_t Fp, float* yq,
                              int relu, Py_ssize_t fb, const int NV, const int PM) {
    Py_ssize_t C = g->C, F = g->F, xs = g->sw * g->C, ow;
    for (ow = 0; ow < a; ow++)
        CD_FN(cd_fwd_px)(t, ow * g->sw - g->pl, C, g->W, wp, bp, Fp, yq + ow * F, F, relu, fb, NV);
    for (ow = a; ow + PM <= b; ow += PM)
        CD_FN(cd_fwd_blk)(t, (ow * g->sw - g->pl) * C, xs, wp, bp, Fp, yq + ow * F, F, relu, fb, PM, NV);
    switch (b - ow) {      /* the rest of the interior in one narrower block */
        case 1: CD_FWD_BLK(1); break;
        case 2: CD_FWD_BLK(2); break;
        case 3: CD_FWD_BLK(3); break;
        case 4: CD_FWD_BLK(4); break;
        case 5: CD_FWD_BLK(5); break;
        case 6: CD_FWD_BLK(6); break;
        case 7: CD_FWD_BLK(7); break;
        case 8: CD_FWD_BLK(8); break;
        case 9: CD_FWD_BLK(9); break;
        case 10: CD_FWD_BLK(10); break;
        case 11: CD_FWD_BLK(11); break;
        default: break;
    }
    for (ow = b; ow < g->OW; ow++)
        CD_FN(cd_fwd_px)(t, ow * g->sw - g->pl, C, g->W, wp, bp, Fp, yq + ow * F, F, relu, fb, NV);
}
#undef CD_FWD_BLK

/* one output row (its kernel-row table t filled), OW x F floats at yq; [a, b): interior */
static CD_TGT void CD_FN(cd_fwd_row)(const cd_rows* t, const cd_geom* g, Py_ssize_t a,
                                      Py_ssize_t b, const float* wp, const float* bp,
                                      Py_ssize_t Fp, float* yq, int relu) {
    Py_ssize_t fb = 0;
    while (fb < Fp) {
        Py_ssize_t nv = (Fp - fb) / CD_VL;
        if (nv >= 4 && CD_NVMAX >= 4) {
            CD_FN(cd_fwd_cols)(t, g, a, b, wp, bp, Fp, yq, relu, fb, 4, CD_PB / 2);
            fb += 4 * CD_VL;
        } else if (nv >= 2) {
            CD_FN(cd_fwd_cols)(t, g, a, b, wp, bp, Fp, yq, relu, fb, 2, CD_PB);
            fb += 2 * CD_VL;
        } else {
            CD_FN(cd_fwd_cols)(t, g, a, b, wp, bp, Fp, yq, relu, fb, 1, CD_PB);
            fb += CD_VL;
        }
    }
}

static CD_TGT void CD_FN(cd_forward)(const float* x, const cd_geom* g, const float* wp,
                                      const float* bp, Py_ssize_t Fp, const float* zrow,
                                      Py_ssize_t q0, Py_ssize_t q1, float* y, int relu) {
    cd_rows t;
    Py_ssize_t a, b;
    cd_interior(g, &a, &b);
    for (Py_ssize_t q = q0; q < q1; q++) {
        Py_ssize_t n = q / g->OH, oh = q - n * g->OH;
        cd_fill_rows(g, x + n * g->H * g->W * g->C, zrow, oh, &t);
        CD_FN(cd_fwd_row)(&t, g, a, b, wp, bp, Fp, y + (q - q0) * g->OW * g->F, relu);
    }
}

/* Fused inference conv + bias + ReLU + 2x2 / stride 2 'valid' max pool: pooled rows
   pr = n*PH + ph in [p0, p1). The two conv rows of a pooled row go to the scratch (2 x OW x F
   floats, in L1/L2), then each pooled pixel is the max of its 4 cells in window order, the
   first NaN winning as np.max / the pool kernels; only the pooled output reaches memory. */
static CD_TGT void CD_FN(cd_conv_pool)(const float* x, const cd_geom* g, const float* wp,
                                        const float* bp, Py_ssize_t Fp, const float* zrow,
                                        Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t PH,
                                        Py_ssize_t PW, float* scratch, float* yp) {
    cd_rows t;
    Py_ssize_t a, b, F = g->F, OW = g->OW;
    cd_interior(g, &a, &b);
    for (Py_ssize_t pr = p0; pr < p1; pr++) {
        Py_ssize_t n = pr / PH, ph = pr - n * PH;
        for (int i = 0; i < 2; i++) {
            cd_fill_rows(g, x + n * g->H * g->W * g->C, zrow, 2 * ph + i, &t);
            CD_FN(cd_fwd_row)(&t, g, a, b, wp, bp, Fp, scratch + i * OW * F, 1);
        }
        float* o = yp + pr * PW * F;
        for (Py_ssize_t pw = 0; pw < PW; pw++) {
            const float* c0 = scratch + 2 * pw * F;
            const float* c2 = c0 + OW * F;
            Py_ssize_t f = 0;
            for (; f + CD_VL <= F; f += CD_VL) {     /* (a scalar loop stayed scalar: 2x slower) */
                VF m = CD_FN(cd_ld)(c0 + f);
                m = CD_FN(cd_max_nan)(m, CD_FN(cd_ld)(c0 + F + f));
                m = CD_FN(cd_max_nan)(m, CD_FN(cd_ld)(c2 + f));
                m = CD_FN(cd_max_nan)(m, CD_FN(cd_ld)(c2 + F + f));
                CD_FN(cd_st)(o + pw * F + f, m);
            }
            for (; f < F; f++) {
                float m = c0[f], v;
                v = c0[F + f]; m = (m != m || !(v > m || v != v)) ? m : v;
                v = c2[f]; m = (m != m || !(v > m || v != v)) ? m : v;
                v = c2[F + f]; m = (m != m || !(v > m || v != v)) ? m : v;
                o[pw * F + f] = m;
            }
        }
    }
}

/* ---------------------------------------------------------------- backward (dw, db) */

/* dw rows [r0, r0 + G) x the F-block at fb (NV vectors) of one output row: register sums over
   its pixels, then added to the float partial fpart (K, Fp). dyr: the row's OW dy rows, ldd
   floats apart. */
CD_AI void CD_FN(cd_bwd_grp)(const cd_rows* t, Py_ssize_t r0, const cd_geom* g, Py_ssize_t a,
                             Py_ssize_t b, const float* dyr, Py_ssize_t ldd, Py_ssize_t fb,
                             float* fpart, Py_ssize_t Fp, const int G, const int NV) {
    VF acc[CD_G * 2][4];
    const float* row[CD_G * 2];
    Py_ssize_t coff[CD_G * 2], kwd[CD_G * 2];
    Py_ssize_t C = g->C, W = g->W, sw = g->sw, pl = g->pl, ow;
#pragma GCC unroll 32
    for (int j = 0; j < G; j++) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[j][v] = (VF){0};
        row[j] = t->row[r0 + j];
        coff[j] = t->coff[r0 + j];
        kwd[j] = t->kwd[r0 + j];
    }
    for (ow = 0; ow < g->OW; ow++) {
        VF d[4];
        if (ow == a) {     /* interior: no checks */
            for (; ow < b; ow++) {
                Py_ssize_t base = (ow * sw - pl) * C;
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    d[v] = CD_FN(cd_ld)(dyr + ow * ldd + fb + v * CD_VL);
#pragma GCC unroll 32
                for (int j = 0; j < G; j++) {
                    VF xv = CD_FN(cd_bc)(row[j][base + coff[j]]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++)
                        acc[j][v] += xv * d[v];
                }
            }
            if (ow >= g->OW)
                break;
        }
        /* border pixel: a tap outside the image reads 0 (0 * dy, as im2col's padding) */
        Py_ssize_t iw0 = ow * sw - pl;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            d[v] = CD_FN(cd_ld)(dyr + ow * ldd + fb + v * CD_VL);
#pragma GCC unroll 32
        for (int j = 0; j < G; j++) {
            Py_ssize_t iw = iw0 + kwd[j];
            float s = (iw >= 0 && iw < W) ? row[j][iw0 * C + coff[j]] : 0.0f;
            VF xv = CD_FN(cd_bc)(s);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[j][v] += xv * d[v];
        }
    }
#pragma GCC unroll 32
    for (int j = 0; j < G; j++) {      /* into the float partial (L1); float64 every few rows */
        float* dst = fpart + (r0 + j) * Fp + fb;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            CD_FN(cd_st)(dst + v * CD_VL, CD_FN(cd_ld)(dst + v * CD_VL) + acc[j][v]);
    }
}

#define CD_BWD_GRP(G) \
    if ((G) <= GM) CD_FN(cd_bwd_grp)(t, r0, g, a, b, dyr, ldd, fb, fpart, Fp, (G) <= GM ? (G) : 1, NV)

/* all kernel rows x the F-block at fb: groups of at most GM rows, of balanced sizes (27 rows:
   9 + 9 + 9, not 12 + 12 + 3, whose last pass would load dy for 3 rows only) */
CD_AI void CD_FN(cd_bwd_rows)(const cd_rows* t, const cd_geom* g, Py_ssize_t a, Py_ssize_t b,
                              const float* dyr, Py_ssize_t ldd, Py_ssize_t fb, float* fpart,
                              Py_ssize_t Fp, const int NV, const int GM) {
    Py_ssize_t ng = (t->n + GM - 1) / GM, r0 = 0;
    for (Py_ssize_t i = 0; i < ng; i++) {
        Py_ssize_t gs = (t->n - r0 + (ng - i) - 1) / (ng - i);
        switch (gs) {
            case 1: CD_BWD_GRP(1); break;
            case 2: CD_BWD_GRP(2); break;
            case 3: CD_BWD_GRP(3); break;
            case 4: CD_BWD_GRP(4); break;
            case 5: CD_BWD_GRP(5); break;
            case 6: CD_BWD_GRP(6); break;
            case 7: CD_BWD_GRP(7); break;
            case 8: CD_BWD_GRP(8); break;
            case 9: CD_BWD_GRP(9); break;
            case 10: CD_BWD_GRP(10); break;
            case 11: CD_BWD_GRP(11); break;
            case 12: CD_BWD_GRP(12); break;
            default: break;
        }
        r0 += gs;
    }
}
#undef CD_BWD_GRP

/* dwp (K, Fp) and dbp (Fp,) float64 += the gradients of output rows [q0, q1). y (or NULL):
   the ReLU-fused forward output, dy is masked by y > 0 (1/0 multiply, NaN of y kept) into the
   scratch rows dys (OW, Fp), which also take dy when F is not a multiple of the vector.
   dys holds (OW + K + 1) * Fp floats: the scratch rows, then float partials of dw and db that
   go into the float64 ones every CD_FLUSH output rows (at most CD_FLUSH * OW terms in float). */
#ifndef CD_FLUSH
#define CD_FLUSH 16
#endif
static CD_TGT void CD_FN(cd_backward)(const float* x, const cd_geom* g, const float* dy,
                                       const float* y, const float* zrow, Py_ssize_t Fp,
                                       Py_ssize_t q0, Py_ssize_t q1, float* dys, double* dwp,
                                       double* dbp) {
    cd_rows t;
    Py_ssize_t a, b, C = g->C, F = g->F, OW = g->OW, K = g->KH * g->KW * g->C;
    int copy = y != NULL || F % CD_VL != 0;
    float* fpart = dys + OW * Fp;       /* (K, Fp), then db's (Fp,) */
    float* fdb = fpart + K * Fp;
    cd_interior(g, &a, &b);
    memset(fpart, 0, (size_t)((K + 1) * Fp) * sizeof(float));
    for (Py_ssize_t q = q0; q < q1; q++) {
        Py_ssize_t n = q / g->OH, oh = q - n * g->OH, ldd = F;
        const float* dyr = dy + q * OW * F;
        if (copy) {
            const float* yr = y ? y + q * OW * F : NULL;
            for (Py_ssize_t ow = 0; ow < OW; ow++) {
                float* d = dys + ow * Fp;
                const float* s = dyr + ow * F;
                if (yr) {
                    const float* v = yr + ow * F;
                    for (Py_ssize_t f = 0; f < F; f++) {   /* relu_grad_rows' product */
                        float m = v[f] > 0.0f ? 1.0f : 0.0f;
                        m = v[f] != v[f] ? v[f] : m;
                        d[f] = s[f] * m;
                    }
                } else {
                    memcpy(d, s, (size_t)F * sizeof(float));
                }
                for (Py_ssize_t f = F; f < Fp; f++)
                    d[f] = 0.0f;
            }
            dyr = dys;
            ldd = Fp;
        }
        for (Py_ssize_t fv = 0; fv < Fp; fv += CD_VL) {
            VF s0 = {0};
            for (Py_ssize_t ow = 0; ow < OW; ow++)
                s0 += CD_FN(cd_ld)(dyr + ow * ldd + fv);
            CD_FN(cd_st)(fdb + fv, CD_FN(cd_ld)(fdb + fv) + s0);
        }
        cd_fill_rows(g, x + n * g->H * g->W * C, zrow, oh, &t);
        Py_ssize_t fb = 0;
        while (fb < Fp) {
            Py_ssize_t nv = (Fp - fb) / CD_VL;
            if (nv >= 4 && CD_NVMAX >= 4) {
                CD_FN(cd_bwd_rows)(&t, g, a, b, dyr, ldd, fb, fpart, Fp, 4, CD_G / 2);
                fb += 4 * CD_VL;
            } else if (nv >= 2) {
                CD_FN(cd_bwd_rows)(&t, g, a, b, dyr, ldd, fb, fpart, Fp, 2, CD_G);
                fb += 2 * CD_VL;
            } else {
                CD_FN(cd_bwd_rows)(&t, g, a, b, dyr, ldd, fb, fpart, Fp, 1, CD_G);
                fb += CD_VL;
            }
        }
        if ((q - q0) % CD_FLUSH == CD_FLUSH - 1 || q == q1 - 1) {
            for (Py_ssize_t i = 0; i < K * Fp; i++) {
                dwp[i] += fpart[i];
                fpart[i] = 0.0f;
            }
            for (Py_ssize_t i = 0; i < Fp; i++) {
                dbp[i] += fdb[i];
                fdb[i] = 0.0f;
            }
        }
    }
}

#undef CD_CAT2
#undef CD_CAT
#undef CD_FN
#undef VF
#undef VI
#undef CD_AI
