/* One instruction-set flavour of the batch-norm row loops (see norm.h, which includes this file
   once per flavour with NB_SFX, NB_TGT, NB_VL, NB_DL, NB_NVS defined).

   GCC vector extensions, as conv_direct_isa.h: VF = NB_VL floats (the elementwise passes),
   VD = NB_DL doubles (the float64 statistics), VH = NB_DL floats (what one VD converts from).
   -ffp-contract=fast turns `s += g*d` and `(x - c)*s + h` into FMAs where the target has them
   (AVX2+FMA, AVX-512), so those flavours round differently from the baseline (SSE2: no FMA,
   the same bits as the scalar Cython loops this replaced).

   Statistics: the channels are cut into strips of NV <= NB_NVS double vectors (NV*DL channels;
   DL = NB_DL) whose accumulators stay in registers while the strip walks every row of the
   chunk; the channels past the last whole double vector (c % DL) take one partial vector
   (zeros past c; the elementwise passes do the same with their tail). Each channel's float64
   sum runs over the rows in row order, exactly as the scalar loop did: only which channels
   share an instruction changes. NV is a constant after inlining (a switch picks
   the instantiation), so the accumulators are registers, not memory. */

#define NB_CAT2(a, b) a##_##b
#define NB_CAT(a, b) NB_CAT2(a, b)
#define NB_FN(name) NB_CAT(name, NB_SFX)
#define VF NB_FN(nb_vf)
#define VI NB_FN(nb_vi)
#define VH NB_FN(nb_vh)
#define VHI NB_FN(nb_vhi)
#define VD NB_FN(nb_vd)
#define NB_AI static inline __attribute__((always_inline)) NB_TGT

typedef float VF __attribute__((vector_size(NB_VL * 4)));
typedef int VI __attribute__((vector_size(NB_VL * 4)));
typedef float VH __attribute__((vector_size(NB_DL * 4)));
typedef int VHI __attribute__((vector_size(NB_DL * 4)));
typedef double VD __attribute__((vector_size(NB_DL * 8)));

NB_AI VF NB_FN(nb_ld)(const float* p) { VF v; memcpy(&v, p, sizeof v); return v; }
NB_AI void NB_FN(nb_st)(float* p, VF v) { memcpy(p, &v, sizeof v); }
NB_AI VH NB_FN(nb_ldh)(const float* p) { VH v; memcpy(&v, p, sizeof v); return v; }
/* float -> double: gcc 12 lowers __builtin_convertvector of 8 or 16 floats to 4-float halves
   re-inserted (3 extra instructions per vector, some through the stack), so x86 uses the one
   instruction directly */
NB_AI VD NB_FN(nb_cvt)(VH h) {
#if NB_X86_ISA && NB_DL == 8
    return (VD)_mm512_cvtps_pd((__m256)h);
#elif NB_X86_ISA && NB_DL == 4
    return (VD)_mm256_cvtps_pd((__m128)h);
#elif NB_X86_ISA && NB_DL == 2
    __m128 q = {h[0], h[1], 0.0f, 0.0f};
    return (VD)_mm_cvtps_pd(q);
#else
    return __builtin_convertvector(h, VD);
#endif
}
NB_AI VD NB_FN(nb_ldd)(const float* p) {
#if NB_X86_ISA && NB_DL == 2
    double d;                  /* two floats through memcpy: p is only 4-byte aligned, and a */
    memcpy(&d, p, sizeof d);   /* (const double*) load of it is undefined (UBSan); same movsd */
    return (VD)_mm_cvtps_pd(_mm_castpd_ps(_mm_set_sd(d)));
#else
    return NB_FN(nb_cvt)(NB_FN(nb_ldh)(p));
#endif
}
NB_AI void NB_FN(nb_std)(double* p, VD v) { memcpy(p, &v, sizeof v); }

/* the first n (< a whole vector) floats of p into a zeroed vector, and back: the channel tails
   run the same vector arithmetic as the other channels (a scalar tail would not contract to
   FMA the same way, and gcc vectorises a scalar tail behind alias checks, so in-place and
   out-of-place calls could round differently) */
NB_AI VF NB_FN(nb_ldp)(const float* p, Py_ssize_t n) {
    float t[NB_VL] = {0};
    for (Py_ssize_t i = 0; i < n; i++)
        t[i] = p[i];
    return NB_FN(nb_ld)(t);
}
NB_AI void NB_FN(nb_stp)(float* p, VF v, Py_ssize_t n) {
    float t[NB_VL];
    NB_FN(nb_st)(t, v);
    for (Py_ssize_t i = 0; i < n; i++)
        p[i] = t[i];
}
NB_AI VH NB_FN(nb_ldph)(const float* p, Py_ssize_t n) {
    float t[NB_DL] = {0};
    for (Py_ssize_t i = 0; i < n; i++)
        t[i] = p[i];
    return NB_FN(nb_ldh)(t);
}
NB_AI void NB_FN(nb_stpd)(double* p, VD v, Py_ssize_t n) {
    double t[NB_DL];
    NB_FN(nb_std)(t, v);
    for (Py_ssize_t i = 0; i < n; i++)
        p[i] = t[i];
}

/* dy * relu'(z) given y = relu(z), as norm.pyx's _relu_d / activation.grad("relu"): the factor
   is 1 for y > 0, 0 otherwise, y itself (NaN) for NaN y; a multiply, so inf*0 and NaN dy
   propagate as in the unfused pair. */
NB_AI VH NB_FN(nb_mask_h)(VH dy, VH y) {
    VH one = {0};
    one += 1.0f;
    VHI nan = (VHI)(y != y);
    VHI f = ((VHI)one & (VHI)(y > (VH){0})) & ~nan;
    return dy * (VH)(f | ((VHI)y & nan));
}
NB_AI VF NB_FN(nb_mask)(VF dy, VF y) {
    VF one = {0};
    one += 1.0f;
    VI nan = (VI)(y != y);
    VI f = ((VI)one & (VI)(y > (VF){0})) & ~nan;
    return dy * (VF)(f | ((VI)y & nan));
}
/* ------------------------------------------------------------------ statistics */

/* s1 = sum(x - shift), s2 = sum((x - shift)^2) over rows [r0, r1), channels [j0, j0 + NV*DL) */
NB_AI void NB_FN(nb_mom_strip)(const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                               Py_ssize_t j0, const float* shift, double* s1, double* s2,
                               const int NV) {
    VD a1[NB_NVS], a2[NB_NVS], sh[NB_NVS];
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        a1[v] = (VD){0};
        a2[v] = (VD){0};
        sh[v] = NB_FN(nb_ldd)(shift + j0 + v * NB_DL);
    }
    for (Py_ssize_t r = r0; r < r1; r++) {
        const float* row = x + r * c + j0;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            VD d = NB_FN(nb_ldd)(row + v * NB_DL) - sh[v];
            a1[v] += d;
            a2[v] += d * d;
        }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        NB_FN(nb_std)(s1 + j0 + v * NB_DL, a1[v]);
        NB_FN(nb_std)(s2 + j0 + v * NB_DL, a2[v]);
    }
}

NB_TGT static void NB_FN(nb_moments)(const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                                     const float* shift, double* s1, double* s2) {
    Py_ssize_t j0 = 0;
    while (c - j0 >= NB_DL) {
        Py_ssize_t nv = (c - j0) / NB_DL;
        if (nv > NB_NVS)
            nv = NB_NVS;
        switch (nv) {   /* a constant NV per instantiation: the accumulators are registers */
#define NB_CASE(n) case n: NB_FN(nb_mom_strip)(x, r0, r1, c, j0, shift, s1, s2, n); break;
            NB_CASE(1) NB_CASE(2) NB_CASE(3) NB_CASE(4)
#if NB_NVS > 4
            NB_CASE(5) NB_CASE(6) NB_CASE(7) NB_CASE(8)
#endif
#undef NB_CASE
        }
        j0 += nv * NB_DL;
    }
    if (j0 < c) {   /* the last c % DL channels: one partial vector, zeros past c */
        const Py_ssize_t nt = c - j0;
        VD a1 = {0}, a2 = {0};
        VD sh = NB_FN(nb_cvt)(NB_FN(nb_ldph)(shift + j0, nt));
        for (Py_ssize_t r = r0; r < r1; r++) {
            VD d = NB_FN(nb_cvt)(NB_FN(nb_ldph)(x + r * c + j0, nt)) - sh;
            a1 += d;
            a2 += d * d;
        }
        NB_FN(nb_stpd)(s1 + j0, a1, nt);
        NB_FN(nb_stpd)(s2 + j0, a2, nt);
    }
}

/* sdy = sum(g), sdyxc = sum(g*(x - mean)), sx = sum(x - mean) over rows [r0, r1), channels
   [j0, j0 + NV*DL); g = dy, or dy masked by y > 0 when y is not NULL (MASK: a constant) */
NB_AI void NB_FN(nb_grad_strip)(const float* dy, const float* x, const float* y, Py_ssize_t r0,
                                Py_ssize_t r1, Py_ssize_t c, Py_ssize_t j0, const float* mean,
                                double* sdy, double* sdyxc, double* sx, const int NV,
                                const int MASK) {
    VD ag[NB_NVS], agd[NB_NVS], ad[NB_NVS], mu[NB_NVS];
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        ag[v] = agd[v] = ad[v] = (VD){0};
        mu[v] = NB_FN(nb_ldd)(mean + j0 + v * NB_DL);
    }
    for (Py_ssize_t r = r0; r < r1; r++) {
        const Py_ssize_t o = r * c + j0;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            VH gh = NB_FN(nb_ldh)(dy + o + v * NB_DL);
            if (MASK)
                gh = NB_FN(nb_mask_h)(gh, NB_FN(nb_ldh)(y + o + v * NB_DL));
            VD g = NB_FN(nb_cvt)(gh);
            VD d = NB_FN(nb_ldd)(x + o + v * NB_DL) - mu[v];
            ag[v] += g;
            agd[v] += g * d;
            ad[v] += d;
        }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        NB_FN(nb_std)(sdy + j0 + v * NB_DL, ag[v]);
        NB_FN(nb_std)(sdyxc + j0 + v * NB_DL, agd[v]);
        NB_FN(nb_std)(sx + j0 + v * NB_DL, ad[v]);
    }
}

NB_AI void NB_FN(nb_grad_sums_m)(const float* dy, const float* x, const float* y, Py_ssize_t r0,
                                 Py_ssize_t r1, Py_ssize_t c, const float* mean, double* sdy,
                                 double* sdyxc, double* sx, const int MASK) {
    Py_ssize_t j0 = 0;
    while (c - j0 >= NB_DL) {
        Py_ssize_t nv = (c - j0) / NB_DL;
        if (nv > NB_NVS)
            nv = NB_NVS;
        switch (nv) {
#define NB_CASE(n) case n: NB_FN(nb_grad_strip)(dy, x, y, r0, r1, c, j0, mean, sdy, sdyxc, sx, \
                                                 n, MASK); break;
            NB_CASE(1) NB_CASE(2) NB_CASE(3) NB_CASE(4)
#if NB_NVS > 4
            NB_CASE(5) NB_CASE(6) NB_CASE(7) NB_CASE(8)
#endif
#undef NB_CASE
        }
        j0 += nv * NB_DL;
    }
    if (j0 < c) {   /* the last c % DL channels: one partial vector, zeros past c */
        const Py_ssize_t nt = c - j0;
        VD ag = {0}, agd = {0}, ad = {0};
        VD mu = NB_FN(nb_cvt)(NB_FN(nb_ldph)(mean + j0, nt));
        for (Py_ssize_t r = r0; r < r1; r++) {
            const Py_ssize_t o = r * c + j0;
            VH gh = NB_FN(nb_ldph)(dy + o, nt);
            if (MASK)
                gh = NB_FN(nb_mask_h)(gh, NB_FN(nb_ldph)(y + o, nt));
            VD g = NB_FN(nb_cvt)(gh);
            VD d = NB_FN(nb_cvt)(NB_FN(nb_ldph)(x + o, nt)) - mu;
            ag += g;
            agd += g * d;
            ad += d;
        }
        NB_FN(nb_stpd)(sdy + j0, ag, nt);
        NB_FN(nb_stpd)(sdyxc + j0, agd, nt);
        NB_FN(nb_stpd)(sx + j0, ad, nt);
    }
}

NB_TGT static void NB_FN(nb_grad_sums)(const float* dy, const float* x, const float* y,
                                       Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                                       const float* mean, double* sdy, double* sdyxc, double* sx) {
    if (y != NULL)
        NB_FN(nb_grad_sums_m)(dy, x, y, r0, r1, c, mean, sdy, sdyxc, sx, 1);
    else
        NB_FN(nb_grad_sums_m)(dy, x, NULL, r0, r1, c, mean, sdy, sdyxc, sx, 0);
}

/* ------------------------------------------------------------------ elementwise passes */

/* y = (x - center)*scale + shift over rows [r0, r1) (then 0 where y <= 0 if RELU: activation
   relu's select, so NaN survives). The one definition of the inference affine: batch_norm_train's
   output pass, batch_norm_inference and the conv epilogue (affine_rows) all run it, so they give
   the same bits. y may be x (in place: each element is read before it is written). */
NB_AI VF NB_FN(nb_affine_v)(VF x, VF center, VF scale, VF shift, const int RELU) {
    VF v = (x - center) * scale + shift;
    if (RELU)
        v = (VF)((VI)v & ~(VI)(v <= (VF){0}));
    return v;
}

NB_AI void NB_FN(nb_affine_m)(const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                              const float* center, const float* scale, const float* shift,
                              float* y, const int RELU) {
    const Py_ssize_t jt = c - c % NB_VL, nt = c - jt;   /* the tail: a partial vector */
    const VF ct = NB_FN(nb_ldp)(center + jt, nt), st = NB_FN(nb_ldp)(scale + jt, nt),
             ht = NB_FN(nb_ldp)(shift + jt, nt);
    for (Py_ssize_t r = r0; r < r1; r++) {
        const float* xr = x + r * c;
        float* yr = y + r * c;
        Py_ssize_t j = 0;
        for (; j < jt; j += NB_VL)
            NB_FN(nb_st)(yr + j, NB_FN(nb_affine_v)(NB_FN(nb_ld)(xr + j), NB_FN(nb_ld)(center + j),
                                                    NB_FN(nb_ld)(scale + j),
                                                    NB_FN(nb_ld)(shift + j), RELU));
        if (j < c)
            NB_FN(nb_stp)(yr + j, NB_FN(nb_affine_v)(NB_FN(nb_ldp)(xr + j, c - j), ct, st, ht, RELU),
                          c - j);
    }
}

NB_TGT static void NB_FN(nb_affine)(const float* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                                    const float* center, const float* scale, const float* shift,
                                    int relu, float* y) {
    if (relu)
        NB_FN(nb_affine_m)(x, r0, r1, c, center, scale, shift, y, 1);
    else
        NB_FN(nb_affine_m)(x, r0, r1, c, center, scale, shift, y, 0);
}

/* dx = a*g + b*(x - mean) + d over rows [r0, r1), g = dy (masked by y > 0 if MASK). dx may be
   dy, x or y (elementwise, read before written). */
NB_AI VF NB_FN(nb_backward_v)(VF g, VF x, VF y, VF a, VF b, VF d, VF mean, const int MASK) {
    if (MASK)
        g = NB_FN(nb_mask)(g, y);
    return a * g + b * (x - mean) + d;
}

NB_AI void NB_FN(nb_backward_m)(const float* dy, const float* x, const float* y, Py_ssize_t r0,
                                Py_ssize_t r1, Py_ssize_t c, const float* a, const float* b,
                                const float* d, const float* mean, float* dx, const int MASK) {
    const Py_ssize_t jt = c - c % NB_VL, nt = c - jt;   /* the tail: a partial vector */
    const VF at = NB_FN(nb_ldp)(a + jt, nt), bt = NB_FN(nb_ldp)(b + jt, nt),
             dt = NB_FN(nb_ldp)(d + jt, nt), mt = NB_FN(nb_ldp)(mean + jt, nt);
    const VF z = {0};
    for (Py_ssize_t r = r0; r < r1; r++) {
        const Py_ssize_t o = r * c;
        Py_ssize_t j = 0;
        for (; j < jt; j += NB_VL)
            NB_FN(nb_st)(dx + o + j, NB_FN(nb_backward_v)(
                NB_FN(nb_ld)(dy + o + j), NB_FN(nb_ld)(x + o + j),
                MASK ? NB_FN(nb_ld)(y + o + j) : z, NB_FN(nb_ld)(a + j), NB_FN(nb_ld)(b + j),
                NB_FN(nb_ld)(d + j), NB_FN(nb_ld)(mean + j), MASK));
        if (j < c)
            NB_FN(nb_stp)(dx + o + j, NB_FN(nb_backward_v)(
                NB_FN(nb_ldp)(dy + o + j, nt), NB_FN(nb_ldp)(x + o + j, nt),
                MASK ? NB_FN(nb_ldp)(y + o + j, nt) : z, at, bt, dt, mt, MASK), nt);
    }
}

NB_TGT static void NB_FN(nb_backward)(const float* dy, const float* x, const float* y,
                                      Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c, const float* a,
                                      const float* b, const float* d, const float* mean,
                                      float* dx) {
    if (y != NULL)
        NB_FN(nb_backward_m)(dy, x, y, r0, r1, c, a, b, d, mean, dx, 1);
    else
        NB_FN(nb_backward_m)(dy, x, NULL, r0, r1, c, a, b, d, mean, dx, 0);
}

#undef NB_AI
#undef VD
#undef VHI
#undef VH
#undef VI
#undef VF
#undef NB_FN
#undef NB_CAT
#undef NB_CAT2
