/* The Winograd F(2x2, 3x3) transform bodies, included by winograd.h once per instruction-set
 * flavour with WINO_FN(name) (the flavour's suffix) and WINO_TGT (its target attribute) set;
 * see winograd.h for the shared definitions and the dispatch. No include guard on purpose. */

/* The (16, T, C) / (16, T, F) tile buffers take the distance TC / TF (in floats) between their
 * 16 slices as an argument: the caller pads it off multiples of 4 KB, or the 16 streams of a
 * tile land in one L1 set (8-way) and thrash (measured: 2-3x slower transforms).
 *
 * V[xi, t, c] (16, T, C), T = (r1 - r0) * tw: B^T d B of the 4x4 input tile of tile t.
 * Tile rows R = n*th + ti in [r0, r1), tile (ti, tj) reads x rows 2ti - pt + [0, 4) and
 * columns 2tj - pl + [0, 4). B^T = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]]. */
WINO_TGT static void WINO_FN(wino_input)(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                   ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t th, ptrdiff_t tw,
                                   ptrdiff_t r0, ptrdiff_t r1, float *V, ptrdiff_t TC)
{
    for (ptrdiff_t R = r0; R < r1; R++) {
        const ptrdiff_t n = R / th, ti = R - n * th;
        for (ptrdiff_t tj = 0; tj < tw; tj++) {
            const float *p[16];
            for (int r = 0; r < 4; r++) {
                const ptrdiff_t ih = 2 * ti - pt + r;
                for (int s = 0; s < 4; s++) {
                    const ptrdiff_t iw = 2 * tj - pl + s;
                    p[r * 4 + s] = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                       ? x + ((n * H + ih) * W + iw) * C : wino_zeros;
                }
            }
            float *v = V + ((R - r0) * tw + tj) * C;
#pragma GCC ivdep
            for (ptrdiff_t c = 0; c < C; c++) {
                float t[16];
                for (int s = 0; s < 4; s++) {        /* columns: B^T d */
                    const float d0 = p[s][c], d1 = p[4 + s][c], d2 = p[8 + s][c], d3 = p[12 + s][c];
                    t[s] = d0 - d2;
                    t[4 + s] = d1 + d2;
                    t[8 + s] = d2 - d1;
                    t[12 + s] = d1 - d3;
                }
                for (int i = 0; i < 4; i++) {        /* rows: (B^T d) B */
                    const float *q = t + 4 * i;
                    v[(4 * i + 0) * TC + c] = q[0] - q[2];
                    v[(4 * i + 1) * TC + c] = q[1] + q[2];
                    v[(4 * i + 2) * TC + c] = q[2] - q[1];
                    v[(4 * i + 3) * TC + c] = q[1] - q[3];
                }
            }
        }
    }
}


/* y[n, 2ti + a, 2tj + b, f] = (A^T M A)[a, b] + bias[f] for the outputs inside (OH, OW),
 * then ReLU when relu != 0. A^T = [[1,1,1,0], [0,1,-1,-1]]. bias NULL: none. */
WINO_TGT static void WINO_FN(wino_output)(const float *M, const float *bias, ptrdiff_t OH, ptrdiff_t OW,
                                    ptrdiff_t F, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t r0,
                                    ptrdiff_t r1, float *y, ptrdiff_t TF, int relu)
{
    const float *bb = bias ? bias : wino_zeros;
    for (ptrdiff_t R = r0; R < r1; R++) {
        const ptrdiff_t n = R / th, ti = R - n * th;
        for (ptrdiff_t tj = 0; tj < tw; tj++) {
            float *q[4];
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    const ptrdiff_t oh = 2 * ti + a, ow = 2 * tj + b;
                    q[2 * a + b] = (oh < OH && ow < OW) ? y + ((n * OH + oh) * OW + ow) * F : wino_sink;
                }
            const float *m = M + ((R - r0) * tw + tj) * F;
#pragma GCC ivdep
            for (ptrdiff_t f = 0; f < F; f++) {
                float s[8];
                for (int j = 0; j < 4; j++) {        /* rows: A^T M */
                    const float m0 = m[j * TF + f], m1 = m[(4 + j) * TF + f];
                    const float m2 = m[(8 + j) * TF + f], m3 = m[(12 + j) * TF + f];
                    s[j] = m0 + m1 + m2;
                    s[4 + j] = m1 - m2 - m3;
                }
                float o[4] = {s[0] + s[1] + s[2] + bb[f], s[1] - s[2] - s[3] + bb[f],
                              s[4] + s[5] + s[6] + bb[f], s[5] - s[6] - s[7] + bb[f]};
                if (relu)   /* loop-invariant: gcc unswitches it */
                    for (int k = 0; k < 4; k++)
                        o[k] = wino_relu(o[k]);
                for (int k = 0; k < 4; k++)
                    q[k][f] = o[k];
            }
        }
    }
}

/* U[xi, c, f] (16, C, F) = (G g G^T)[xi] of w (3, 3, C, F); G = [[1,0,0], [.5,.5,.5],
 * [.5,-.5,.5], [0,0,1]]. */
WINO_TGT static void WINO_FN(wino_weight)(const float *w, ptrdiff_t C, ptrdiff_t F, float *U)
{
    const ptrdiff_t CF = C * F;
#pragma GCC ivdep
    for (ptrdiff_t k = 0; k < CF; k++) {
        float g[9], t[12];
        for (int i = 0; i < 9; i++)
            g[i] = w[i * CF + k];
        for (int s = 0; s < 3; s++) {            /* columns: G g */
            t[s] = g[s];
            t[3 + s] = 0.5f * (g[s] + g[3 + s] + g[6 + s]);
            t[6 + s] = 0.5f * (g[s] - g[3 + s] + g[6 + s]);
            t[9 + s] = g[6 + s];
        }
        for (int i = 0; i < 4; i++) {            /* rows: (G g) G^T */
            const float *r = t + 3 * i;
            U[(4 * i + 0) * CF + k] = r[0];
            U[(4 * i + 1) * CF + k] = 0.5f * (r[0] + r[1] + r[2]);
            U[(4 * i + 2) * CF + k] = 0.5f * (r[0] - r[1] + r[2]);
            U[(4 * i + 3) * CF + k] = r[2];
        }
    }
}

/* dw (3, 3, C, F) = G^T dU G (the adjoint of wino_weight). */
WINO_TGT static void WINO_FN(wino_weight_adjoint)(const float *dU, ptrdiff_t C, ptrdiff_t F, float *dw)
{
    const ptrdiff_t CF = C * F;
#pragma GCC ivdep
    for (ptrdiff_t k = 0; k < CF; k++) {
        float u[16], t[12];
        for (int i = 0; i < 16; i++)
            u[i] = dU[i * CF + k];
        for (int j = 0; j < 4; j++) {            /* columns: G^T dU */
            const float h = 0.5f * (u[4 + j] + u[8 + j]);
            t[j] = u[j] + h;
            t[4 + j] = 0.5f * (u[4 + j] - u[8 + j]);
            t[8 + j] = h + u[12 + j];
        }
        for (int a = 0; a < 3; a++) {            /* rows: (G^T dU) G */
            const float *r = t + 4 * a;
            const float h = 0.5f * (r[1] + r[2]);
            dw[(3 * a + 0) * CF + k] = r[0] + h;
            dw[(3 * a + 1) * CF + k] = 0.5f * (r[1] - r[2]);
            dw[(3 * a + 2) * CF + k] = h + r[3];
        }
    }
}

/* dM[xi, t, f] (16, T, F) = (A dY A^T)[xi] of the 2x2 dy tile (0 outside (OH, OW)), the
 * adjoint of wino_output. y non-NULL: dy is first multiplied by relu'(y) (1 if y > 0, 0 if
 * y == 0, NaN if y is NaN: the product conv.relu_grad_rows forms). db[f] += the sum of the
 * (masked) dy in float64. */
WINO_TGT static void WINO_FN(wino_dy)(const float *dy, const float *y, ptrdiff_t OH, ptrdiff_t OW,
                                ptrdiff_t F, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t r0, ptrdiff_t r1,
                                float *dM, ptrdiff_t TF, double *db)
{
    for (ptrdiff_t R = r0; R < r1; R++) {
        const ptrdiff_t n = R / th, ti = R - n * th;
        for (ptrdiff_t tj = 0; tj < tw; tj++) {
            const float *g[4], *yy[4];
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    const ptrdiff_t oh = 2 * ti + a, ow = 2 * tj + b;
                    const int in = oh < OH && ow < OW;
                    const ptrdiff_t off = ((n * OH + oh) * OW + ow) * F;
                    g[2 * a + b] = in ? dy + off : wino_zeros;
                    yy[2 * a + b] = in ? (y ? y + off : wino_ones) : wino_zeros;
                }
            float *m = dM + ((R - r0) * tw + tj) * F;
#pragma GCC ivdep
            for (ptrdiff_t f = 0; f < F; f++) {
                float d[4];
                for (int k = 0; k < 4; k++) {
                    const float v = yy[k][f];
                    float msk = v > 0.0f ? 1.0f : 0.0f;
                    msk = v != v ? v : msk;
                    d[k] = g[k][f] * msk;
                }
                db[f] += ((double)d[0] + (double)d[1]) + ((double)d[2] + (double)d[3]);
                /* A = [[1,0], [1,1], [1,-1], [0,-1]]: rows A dY, then columns (A dY) A^T */
                const float s[8] = {d[0], d[1], d[0] + d[2], d[1] + d[3],
                                    d[0] - d[2], d[1] - d[3], -d[2], -d[3]};
                for (int i = 0; i < 4; i++) {
                    const float u0 = s[2 * i], u1 = s[2 * i + 1];
                    m[(4 * i + 0) * TF + f] = u0;
                    m[(4 * i + 1) * TF + f] = u0 + u1;
                    m[(4 * i + 2) * TF + f] = u0 - u1;
                    m[(4 * i + 3) * TF + f] = -u1;
                }
            }
        }
    }
}

/* dx += B dV B^T of every tile (the adjoint of wino_input), overlap-added: tiles overlap by 2
 * rows / columns. An image's dx is zeroed when its first tile (0, 0) comes, so the caller must
 * pass whole images in order (one thread per image: no races). */
WINO_TGT static void WINO_FN(wino_input_adjoint)(const float *dV, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                           ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t th, ptrdiff_t tw,
                                           ptrdiff_t r0, ptrdiff_t r1, float *dx, ptrdiff_t TC)
{
    for (ptrdiff_t R = r0; R < r1; R++) {
        const ptrdiff_t n = R / th, ti = R - n * th;
        if (ti == 0)
            memset(dx + n * H * W * C, 0, (size_t)(H * W * C) * sizeof(float));
        for (ptrdiff_t tj = 0; tj < tw; tj++) {
            float *p[16];
            for (int r = 0; r < 4; r++) {
                const ptrdiff_t ih = 2 * ti - pt + r;
                for (int s = 0; s < 4; s++) {
                    const ptrdiff_t iw = 2 * tj - pl + s;
                    p[r * 4 + s] = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                       ? dx + ((n * H + ih) * W + iw) * C : wino_sink;
                }
            }
            const float *v = dV + ((R - r0) * tw + tj) * C;
#pragma GCC ivdep
            for (ptrdiff_t c = 0; c < C; c++) {
                /* B = (B^T)^T: dd0 = v0, dd1 = v1 - v2 + v3, dd2 = v1 + v2 - v0, dd3 = -v3 */
                float t[16];
                for (int i = 0; i < 4; i++) {        /* rows: dV B^T */
                    const float v0 = v[(4 * i) * TC + c], v1 = v[(4 * i + 1) * TC + c];
                    const float v2 = v[(4 * i + 2) * TC + c], v3 = v[(4 * i + 3) * TC + c];
                    t[4 * i] = v0;
                    t[4 * i + 1] = v1 - v2 + v3;
                    t[4 * i + 2] = v1 + v2 - v0;
                    t[4 * i + 3] = -v3;
                }
                for (int s = 0; s < 4; s++) {        /* columns: B (dV B^T) */
                    const float u0 = t[s], u1 = t[4 + s], u2 = t[8 + s], u3 = t[12 + s];
                    p[s][c] += u0;
                    p[4 + s][c] += u1 - u2 + u3;
                    p[8 + s][c] += u1 + u2 - u0;
                    p[12 + s][c] += -u3;
                }
            }
        }
    }
}
