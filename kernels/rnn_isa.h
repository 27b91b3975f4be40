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

#undef RN_CAT2
#undef RN_CAT
#undef RN_FN
#undef RVF
#undef RN_AI
