/* One instruction-set flavour of the recurrent GEMM (see rnn.h, which includes this file once
   per flavour with RN_SFX, RN_TGT, RN_VL, RN_MR defined).

   c (m x n) (+)= a (m x k, rows lda apart) @ B, with B packed by rn_pack into panels of
   NR = 2 * RN_VL columns (rn_pack: panel p holds B[kk, p*NR + j] at bp[p*k*NR + kk*NR + j], zero
   past n). The microkernel keeps an MR x NR tile of c in registers (RN_MR x 2 vectors: 24 of the
   32 zmm registers, 12 of the 16 ymm/xmm ones), broadcasts a[i, kk] and FMAs the packed row.
   Rows past the last whole MR block go through the same code with MR = 4, 2, 1: every element
   of c is the same sequence of multiply-adds in kk order whichever block its row falls in, so a
   row's result does not depend on how the batch was cut into shares (thread-count
   independence). GCC vector extensions + -ffp-contract=fast: FMAs where the target has them. */

#define RN_CAT2(a, b) a##_##b
#define RN_CAT(a, b) RN_CAT2(a, b)
#define RN_FN(name) RN_CAT(name, RN_SFX)
#define RVF RN_FN(rn_vf)
#define RN_AI static inline __attribute__((always_inline)) RN_TGT

typedef float RVF __attribute__((vector_size(RN_VL * 4)));
typedef int RN_FN(rn_vi) __attribute__((vector_size(RN_VL * 4)));

RN_AI RVF RN_FN(rn_ld)(const float* p) { RVF v; memcpy(&v, p, sizeof v); return v; }
RN_AI void RN_FN(rn_st)(float* p, RVF v) { memcpy(p, &v, sizeof v); }

/* rows [0, MR) of a, one NR-wide panel of B, into c (nc <= NR real columns) */
RN_AI void RN_FN(rn_tile)(Py_ssize_t k, const float* a, Py_ssize_t lda, const float* bp,
                          float* c, Py_ssize_t ldc, Py_ssize_t nc, int accumulate, const int MR) {
    RVF acc[RN_MR][2];
    float tmp[2 * RN_VL];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (accumulate) {
            if (nc == 2 * RN_VL) {
                acc[i][0] = RN_FN(rn_ld)(c + i * ldc);
                acc[i][1] = RN_FN(rn_ld)(c + i * ldc + RN_VL);
            } else {
                memset(tmp, 0, sizeof tmp);
                memcpy(tmp, c + i * ldc, (size_t)nc * sizeof(float));
                acc[i][0] = RN_FN(rn_ld)(tmp);
                acc[i][1] = RN_FN(rn_ld)(tmp + RN_VL);
            }
        } else {
            acc[i][0] = (RVF){0};
            acc[i][1] = (RVF){0};
        }
    }
    for (Py_ssize_t kk = 0; kk < k; kk++) {
        RVF b0 = RN_FN(rn_ld)(bp + kk * 2 * RN_VL);
        RVF b1 = RN_FN(rn_ld)(bp + kk * 2 * RN_VL + RN_VL);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            RVF av = a[i * lda + kk] - (RVF){0};     /* broadcast (s - 0 keeps -0.0) */
            acc[i][0] += av * b0;
            acc[i][1] += av * b1;
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (nc == 2 * RN_VL) {
            RN_FN(rn_st)(c + i * ldc, acc[i][0]);
            RN_FN(rn_st)(c + i * ldc + RN_VL, acc[i][1]);
        } else {
            RN_FN(rn_st)(tmp, acc[i][0]);
            RN_FN(rn_st)(tmp + RN_VL, acc[i][1]);
            memcpy(c + i * ldc, tmp, (size_t)nc * sizeof(float));
        }
    }
}

/* every NR-wide panel for rows [i, i + MR) */
RN_AI void RN_FN(rn_rows)(Py_ssize_t k, Py_ssize_t n, const float* a, Py_ssize_t lda,
                          const float* bp, float* c, Py_ssize_t ldc, int accumulate, const int MR) {
    const Py_ssize_t NR = 2 * RN_VL;
    for (Py_ssize_t p = 0; p * NR < n; p++) {
        Py_ssize_t nc = n - p * NR < NR ? n - p * NR : NR;
        RN_FN(rn_tile)(k, a, lda, bp + p * k * NR, c + p * NR, ldc, nc, accumulate, MR);
    }
}

static RN_TGT void RN_FN(rn_gemm)(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, const float* a,
                                  Py_ssize_t lda, const float* bp, float* c, Py_ssize_t ldc,
                                  int accumulate) {
    /* whole MR blocks, then the rest in blocks of 4, 2 and 1 rows (a one-row tail would load
       the whole packed B for each row: measured 2-3x slower steps at 32-64 rows a share) */
    Py_ssize_t i = 0;
    for (; i + RN_MR <= m; i += RN_MR)
        RN_FN(rn_rows)(k, n, a + i * lda, lda, bp, c + i * ldc, ldc, accumulate, RN_MR);
    for (; i + 4 <= m; i += 4)
        RN_FN(rn_rows)(k, n, a + i * lda, lda, bp, c + i * ldc, ldc, accumulate, 4);
    for (; i + 2 <= m; i += 2)
        RN_FN(rn_rows)(k, n, a + i * lda, lda, bp, c + i * ldc, ldc, accumulate, 2);
    for (; i < m; i++)
        RN_FN(rn_rows)(k, n, a + i * lda, lda, bp, c + i * ldc, ldc, accumulate, 1);
}

/* tanh(x) as Eigen's rational approximation (odd degree-13 over even degree-6 polynomial,
   |x| clamped at 7.9053: there the float result is +-1): one division and 11 FMAs, no exp;
   measured against float64 within 2e-7 absolute. Used by the fused LSTM pass only. */
RN_AI RVF RN_FN(rn_vtanh)(RVF x) {
    const RVF hi = (RVF){0} + 7.90531110763549805f, lo = (RVF){0} - 7.90531110763549805f;
    typedef RN_FN(rn_vi) VI_;
    VI_ m = (VI_)(x > hi);
    x = (RVF)(((VI_)hi & m) | ((VI_)x & ~m));
    m = (VI_)(x < lo);
    x = (RVF)(((VI_)lo & m) | ((VI_)x & ~m));
    RVF x2 = x * x;
    RVF p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    p = x * p;
    RVF q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    return p / q;
}

/* sigmoid(x) = 0.5 + 0.5 tanh(x / 2) */
RN_AI RVF RN_FN(rn_vsig)(RVF x) {
    return 0.5f + 0.5f * RN_FN(rn_vtanh)(0.5f * x);
}

/* One LSTM row with the default activations (tanh, sigmoid recurrent) in one pass: gates
   a = [sig(z_i) | sig(z_f) | tanh(z_g) | sig(z_o)], c = f * cp + i * g, hc = tanh(c), h = o * hc.
   U is walked in vectors, the tail through a zero-padded stack vector (the same operations, so
   every element's result is the same whatever U's remainder). NaN propagates through the
   clamps' comparisons as the generic path's does not necessarily: only finite inputs matter. */
static RN_TGT void RN_FN(rn_lstm_row)(const float* z, const float* cp, float* a, float* c,
                                     float* hc, float* h, Py_ssize_t u) {
    for (Py_ssize_t j = 0; j < u; j += RN_VL) {
        Py_ssize_t n = u - j < RN_VL ? u - j : RN_VL;
        RVF zi, zf, zg, zo, vc;
        if (n == RN_VL) {
            zi = RN_FN(rn_ld)(z + j); zf = RN_FN(rn_ld)(z + u + j);
            zg = RN_FN(rn_ld)(z + 2 * u + j); zo = RN_FN(rn_ld)(z + 3 * u + j);
            vc = RN_FN(rn_ld)(cp + j);
        } else {
            float t[5][RN_VL];
            memset(t, 0, sizeof t);
            memcpy(t[0], z + j, (size_t)n * 4); memcpy(t[1], z + u + j, (size_t)n * 4);
            memcpy(t[2], z + 2 * u + j, (size_t)n * 4); memcpy(t[3], z + 3 * u + j, (size_t)n * 4);
            memcpy(t[4], cp + j, (size_t)n * 4);
            zi = RN_FN(rn_ld)(t[0]); zf = RN_FN(rn_ld)(t[1]); zg = RN_FN(rn_ld)(t[2]);
            zo = RN_FN(rn_ld)(t[3]); vc = RN_FN(rn_ld)(t[4]);
        }
        RVF i = RN_FN(rn_vsig)(zi), f = RN_FN(rn_vsig)(zf), g = RN_FN(rn_vtanh)(zg);
        RVF o = RN_FN(rn_vsig)(zo);
        RVF cn = f * vc + i * g;
        RVF th = RN_FN(rn_vtanh)(cn);
        RVF hn = o * th;
        if (n == RN_VL) {
            RN_FN(rn_st)(a + j, i); RN_FN(rn_st)(a + u + j, f);
            RN_FN(rn_st)(a + 2 * u + j, g); RN_FN(rn_st)(a + 3 * u + j, o);
            RN_FN(rn_st)(c + j, cn); RN_FN(rn_st)(hc + j, th); RN_FN(rn_st)(h + j, hn);
        } else {
            float t[7][RN_VL];
            RN_FN(rn_st)(t[0], i); RN_FN(rn_st)(t[1], f); RN_FN(rn_st)(t[2], g); RN_FN(rn_st)(t[3], o);
            RN_FN(rn_st)(t[4], cn); RN_FN(rn_st)(t[5], th); RN_FN(rn_st)(t[6], hn);
            memcpy(a + j, t[0], (size_t)n * 4); memcpy(a + u + j, t[1], (size_t)n * 4);
            memcpy(a + 2 * u + j, t[2], (size_t)n * 4); memcpy(a + 3 * u + j, t[3], (size_t)n * 4);
            memcpy(c + j, t[4], (size_t)n * 4); memcpy(hc + j, t[5], (size_t)n * 4);
            memcpy(h + j, t[6], (size_t)n * 4);
        }
    }
}

#undef RN_CAT2
#undef RN_CAT
#undef RN_FN
#undef RVF
#undef RN_AI
