# cython: language_level=3
"""Pooling kernels over NHWC float32: max and average, forward and backward, and global pools.

Design note
-----------
* Layout: NHWC, C-contiguous, so every output pixel owns a run of C contiguous channels and the
  innermost loop of every kernel walks channels: unit stride, no branches, which gcc turns into
  SIMD loads, compares and blends (max) or adds (average). 1-D pools run as 2-D pools with H = 1,
  global pools as a window covering the whole image.
* Forward average: `prange` over the N*OH output rows; each output pixel reads the valid part
  of its window (padded cells are skipped, never materialised: Keras's "same" average pooling
  leaves them out of the divisor). Cells are folded into the output row two at a time.
* Max, the rule: the running maximum starts at the window's first valid cell and a later cell
  replaces it when `best == best and not (v <= best)`: that is v > best, or v is NaN while best
  is not. So ties keep the first maximum in window order (row-major over the window), and the
  first NaN of a window wins and stays, as np.max/np.argmax do. argmax stores, per output, the
  flat index (h*W + w)*C + c into one image; the backward needs nothing else. Padded cells are
  skipped ("same" max pooling treats pads as -inf).
* Max, the code: SSE2 intrinsics in the C block below (gcc's if-conversion of the scalar rule
  gave 1/4 of the copy ceiling). `prange` over N*OH output rows, times channel groups when there
  are few rows (global pools), so both threads get many equal tasks. The running max and argmax
  live in registers and are stored once per output: a 2x2 window is a tournament ((a, b), (c, d),
  then the winners), other windows fold cell by cell, 16 channels at a time. A later cell wins
  where `cmplt(best, v)` and `maxps(v, best)` keeps best unless v > best, which is the rule for
  NaN-free input; NaNs are detected on the side (cmpunord, or a sum for global pools) and a
  block that holds one is redone with the scalar rule. Global max walks the image in 8-cell
  chunks (sequential memory, all channel blocks per chunk), keeps only maxps inside a chunk and
  the chunk index between chunks, then rescans the winning chunk for the first equal cell.
* Max backward: the geometry is not known there (only argmax), so it zeroes dx and scatters dy
  to argmax, accumulating where windows overlap. `prange` over images: an index only ever points
  into its own image, so no two threads write the same cell. Out-of-range indices are counted and
  skipped (one unsigned compare), never written; the caller raises when the count is not zero.
* Average backward: a gather over dx rows, not a scatter from dy. For an input row h the
  outputs whose window covers it are the contiguous range oh in [ceil((h+pt-kh+1)/sh),
  floor((h+pt)/sh)]; along the row the windows are walked left to right, so each dx cell is
  written by the first window reaching it (dy * (1 / count)), added to by overlapping ones and
  zeroed if none reaches it: `prange` over N*H rows and no zeroing pass over dx.
* Scheduling: OpenMP `dynamic` in chunks of ~1/16 of a thread's share (see `_chunk`).
* Global average: sums over H*W run in double, in cell order, because a float32 running sum
  over thousands of cells would lose digits that Keras keeps. Like global max it walks the image
  in 8-cell chunks over 16-channel blocks (register accumulators, a per-thread stack row of
  doubles between chunks): a strided pass per channel block ran at 1/3 of a sequential read.
"""

from cython.parallel cimport prange
from libc.string cimport memset
cimport openmp


cdef extern from *:
    """
    #include <emmintrin.h>
    #include <immintrin.h>
    #include <stddef.h>

    /* Max over the window rows [hs, he) x columns [ws, we) of one image x0 (W x C floats per
       row), channels [c0, c0 + 4*NV): running max and argmax in registers, y and argmax written
       once. A cell v replaces the running max m where m < v (cmplt: false for NaN either side),
       and m = maxps(v, m) (returns m unless v > m), so ties keep the first cell. A NaN after
       the first cell would be skipped: NaNs are flagged (cmpunord, one per two vectors) and the
       caller redoes a flagged block with the scalar rule. Returns the flag. */
    #define FASTNN_MAXWIN(NV)                                                                   \\
    static inline int fastnn_maxwin##NV(const float* x0, ptrdiff_t W, ptrdiff_t C,              \\
            ptrdiff_t hs, ptrdiff_t he, ptrdiff_t ws, ptrdiff_t we, ptrdiff_t c0,               \\
            float* y, int* a) {                                                                 \\
        __m128 m[NV]; __m128i ix[NV];                                                           \\
        __m128 nan = _mm_setzero_ps();                                                          \\
        const __m128i lane = _mm_set_epi32(3, 2, 1, 0);                                         \\
        ptrdiff_t h, w, off = (hs * W + ws) * C + c0;                                           \\
        for (int v = 0; v < NV; v++) {                                                          \\
            m[v] = _mm_loadu_ps(x0 + off + 4 * v);                                              \\
            ix[v] = _mm_add_epi32(_mm_set1_epi32((int)(off + 4 * v)), lane);                    \\
            nan = _mm_or_ps(nan, _mm_cmpunord_ps(m[v], m[v]));                                  \\
        }                                                                                       \\
        for (h = hs; h < he; h++) {                                                             \\
            for (w = (h == hs ? ws + 1 : ws); w < we; w++) {                                    \\
                off = (h * W + w) * C + c0;                                                     \\
                const __m128i cur = _mm_add_epi32(_mm_set1_epi32((int)off), lane);              \\
                __m128 xv[NV];                                                                  \\
                for (int v = 0; v < NV; v++) {                                                  \\
                    xv[v] = _mm_loadu_ps(x0 + off + 4 * v);                                     \\
                    __m128i gt = _mm_castps_si128(_mm_cmplt_ps(m[v], xv[v]));                   \\
                    m[v] = _mm_max_ps(xv[v], m[v]);                                             \\
                    __m128i ci = _mm_add_epi32(cur, _mm_set1_epi32(4 * v));                     \\
                    ix[v] = _mm_or_si128(_mm_and_si128(gt, ci), _mm_andnot_si128(gt, ix[v]));   \\
                }                                                                               \\
                for (int v = 0; v + 1 < NV; v += 2)                                             \\
                    nan = _mm_or_ps(nan, _mm_cmpunord_ps(xv[v], xv[v + 1]));                    \\
                if (NV & 1)                                                                     \\
                    nan = _mm_or_ps(nan, _mm_cmpunord_ps(xv[NV - 1], xv[NV - 1]));              \\
            }                                                                                   \\
        }                                                                                       \\
        for (int v = 0; v < NV; v++) {                                                          \\
            _mm_storeu_ps(y + c0 + 4 * v, m[v]);                                                \\
            _mm_storeu_si128((__m128i*)(a + c0 + 4 * v), ix[v]);                                \\
        }                                                                                       \\
        return _mm_movemask_ps(nan);                                                            \\
    }
    FASTNN_MAXWIN(1)
    FASTNN_MAXWIN(4)

    /* 2x2 window whose four cells are x0 + off + {0, C, rs, rs + C} (rs = W*C), channels
       [c0, c0 + 4*floor((c1 - c0)/4)): a tournament, (a vs b) and (c vs d), then the winners; a
       later cell wins only when strictly greater (cmplt; maxps(later, earlier) returns the
       earlier one unless the later is greater), which is the first maximum in window order for
       NaN-free input. Returns nonzero if any of the cells is NaN (the caller then redoes the
       pixel with the scalar rule). */
    static __attribute__((noinline)) int fastnn_max2x2(const float* x0, ptrdiff_t rs, ptrdiff_t C, ptrdiff_t off,
                                    ptrdiff_t c0, ptrdiff_t c1, float* y, int* a) {
        const float* p0 = x0 + off;
        const float* p1 = p0 + C;
        const float* p2 = p0 + rs;
        const float* p3 = p2 + C;
        const __m128i d1 = _mm_set1_epi32((int)C), d2 = _mm_set1_epi32((int)rs);
        const __m128i four = _mm_set1_epi32(4);
        __m128i base = _mm_add_epi32(_mm_set1_epi32((int)(off + c0)), _mm_set_epi32(3, 2, 1, 0));
        __m128 nan = _mm_setzero_ps();
        for (ptrdiff_t c = c0; c + 4 <= c1; c += 4) {
            __m128 xa = _mm_loadu_ps(p0 + c), xb = _mm_loadu_ps(p1 + c);
            __m128 xc = _mm_loadu_ps(p2 + c), xd = _mm_loadu_ps(p3 + c);
            __m128i gab = _mm_castps_si128(_mm_cmplt_ps(xa, xb));
            __m128i gcd = _mm_castps_si128(_mm_cmplt_ps(xc, xd));
            __m128 mab = _mm_max_ps(xb, xa), mcd = _mm_max_ps(xd, xc);
            __m128i g = _mm_castps_si128(_mm_cmplt_ps(mab, mcd));
            __m128 m = _mm_max_ps(mcd, mab);
            __m128i iab = _mm_and_si128(gab, d1);
            __m128i icd = _mm_add_epi32(d2, _mm_and_si128(gcd, d1));
            __m128i i = _mm_or_si128(_mm_and_si128(g, icd), _mm_andnot_si128(g, iab));
            nan = _mm_or_ps(nan, _mm_or_ps(_mm_cmpunord_ps(xa, xb), _mm_cmpunord_ps(xc, xd)));
            _mm_storeu_ps(y + c, m);
            _mm_storeu_si128((__m128i*)(a + c), _mm_add_epi32(base, i));
            base = _mm_add_epi32(base, four);
        }
        return _mm_movemask_ps(nan);
    }

    /* Two floats at p as two doubles: one cvtps2pd with a 64-bit memory operand (a 128-bit
       load, movhlps and two converts cost twice the instructions, and the loop is bound by them). */
    static inline __m128d fastnn_cvt2(const float* p) {
        return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)p)));
    }

    /* Sum over the cells p of x0 (P x C floats), channels [c0, c0 + 4) in double (two double
       accumulators), y[c] = sum / P as float: the 4-channel tail of the tiled form below. */
    static inline void fastnn_avgcells1(const float* x0, ptrdiff_t P, ptrdiff_t C, ptrdiff_t c0,
                                        float* y) {
        __m128d lo = _mm_setzero_pd(), hi = _mm_setzero_pd();
        const float* xp = x0 + c0;
        for (ptrdiff_t p = 0; p < P; p++, xp += C) {
            lo = _mm_add_pd(lo, fastnn_cvt2(xp));
            hi = _mm_add_pd(hi, fastnn_cvt2(xp + 2));
        }
        const __m128d np_ = _mm_set1_pd((double)P);
        __m128 ylo = _mm_cvtpd_ps(_mm_div_pd(lo, np_)), yhi = _mm_cvtpd_ps(_mm_div_pd(hi, np_));
        _mm_storeu_ps(y + c0, _mm_movelh_ps(ylo, yhi));
    }

    /* The tiled forms below walk a global pool's cells in order, in chunks of 8 cells (a few KB
       of contiguous memory) and within a chunk over every 16-channel block: reading a whole
       image one block at a time strides 4*C bytes per cell and ran at a third of the speed of
       a sequential read. Between chunks the state lives in y / a / acc (L1). */

    /* Global max of channels [c0, c1) ((c1 - c0) % 16 == 0) over the P cells of x0: per chunk
       and block the chunk max with maxps only, then the running max keeps the chunk index
       (stored in a meanwhile) where a later chunk is strictly greater; at the end the winning
       chunk of each channel is rescanned for the first cell equal to the max. A NaN anywhere
       (found by a per-chunk sum: NaN sticks; inf - inf only costs a needless fallback) makes it
       return nonzero, and the caller redoes the channels with the scalar rule. */
    static __attribute__((noinline)) int fastnn_gmax_tiled(const float* x0, ptrdiff_t P,
            ptrdiff_t C, ptrdiff_t c0, ptrdiff_t c1, float* y, int* a) {
        enum { K = 8 };
        __m128 nan = _mm_setzero_ps();
        for (ptrdiff_t k = 0; k * K < P; k++) {
            const ptrdiff_t p0 = k * K, pe = p0 + K < P ? p0 + K : P;
            const __m128i kv = _mm_set1_epi32((int)k);
            for (ptrdiff_t c = c0; c < c1; c += 16) {
                const float* xp = x0 + p0 * C + c;
                __m128 cm[4], z[4];
                for (int v = 0; v < 4; v++)
                    cm[v] = z[v] = _mm_loadu_ps(xp + 4 * v);
                for (ptrdiff_t p = p0 + 1; p < pe; p++) {
                    xp += C;
                    for (int v = 0; v < 4; v++) {
                        __m128 xv = _mm_loadu_ps(xp + 4 * v);
                        cm[v] = _mm_max_ps(cm[v], xv);
                        z[v] = _mm_add_ps(z[v], xv);
                    }
                }
                for (int v = 0; v < 4; v++) {
                    nan = _mm_or_ps(nan, _mm_cmpunord_ps(z[v], z[v]));
                    float* ym = y + c + 4 * v;
                    __m128i* am = (__m128i*)(a + c + 4 * v);
                    if (k == 0) {
                        _mm_storeu_ps(ym, cm[v]);
                        _mm_storeu_si128(am, _mm_setzero_si128());
                    } else {
                        __m128 m = _mm_loadu_ps(ym);
                        __m128i ck = _mm_loadu_si128(am);
                        __m128i gt = _mm_castps_si128(_mm_cmplt_ps(m, cm[v]));
                        _mm_storeu_ps(ym, _mm_max_ps(cm[v], m));
                        _mm_storeu_si128(am, _mm_or_si128(_mm_and_si128(gt, kv),
                                                          _mm_andnot_si128(gt, ck)));
                    }
                }
            }
        }
        if (_mm_movemask_ps(nan))
            return 1;
        for (ptrdiff_t c = c0; c < c1; c++) {
            ptrdiff_t q = (ptrdiff_t)a[c] * K, qe = q + K < P ? q + K : P;
            for (; q + 1 < qe; q++)          /* the chunk's max is one of its cells */
                if (x0[q * C + c] == y[c])
                    break;
            y[c] = x0[q * C + c];
            a[c] = (int)(q * C + c);
        }
        return 0;
    }

    /* The same sum with AVX in the avx2 and avx512 flavours (the build targets SSE2):
       vcvtps2pd converts four floats instead of two, and the loop is bound by converts.
       Same additions in the same order, so the same result. */

    __attribute__((target("avx"))) static void fastnn_gavg_tiled_avx(const float* x0,
            ptrdiff_t P, ptrdiff_t C, ptrdiff_t c0, ptrdiff_t c1, float* y, double* acc) {
        enum { K = 8 };
        for (ptrdiff_t c = 0; c < c1 - c0; c++)
            acc[c] = 0.0;
        for (ptrdiff_t p0 = 0; p0 < P; p0 += K) {
            const ptrdiff_t pe = p0 + K < P ? p0 + K : P;
            for (ptrdiff_t c = c0; c < c1; c += 16) {
                double* ap = acc + (c - c0);
                __m256d s[4];
                for (int v = 0; v < 4; v++)
                    s[v] = _mm256_loadu_pd(ap + 4 * v);
                const float* xp = x0 + p0 * C + c;
                for (ptrdiff_t p = p0; p < pe; p++, xp += C)
                    for (int v = 0; v < 4; v++)
                        s[v] = _mm256_add_pd(s[v], _mm256_cvtps_pd(_mm_loadu_ps(xp + 4 * v)));
                for (int v = 0; v < 4; v++)
                    _mm256_storeu_pd(ap + 4 * v, s[v]);
            }
        }
        for (ptrdiff_t c = c0; c < c1; c++)
            y[c] = (float)(acc[c - c0] / (double)P);
    }

    /* Global mean of channels [c0, c1) ((c1 - c0) % 16 == 0, c1 - c0 <= 512) over the P cells
       of x0, each channel summed in double in cell order; acc: scratch of c1 - c0 doubles. */
    static __attribute__((noinline)) void fastnn_gavg_tiled(const float* x0, ptrdiff_t P,
            ptrdiff_t C, ptrdiff_t c0, ptrdiff_t c1, float* y, double* acc) {
        enum { K = 8 };
        for (ptrdiff_t c = 0; c < c1 - c0; c++)
            acc[c] = 0.0;
        for (ptrdiff_t p0 = 0; p0 < P; p0 += K) {
            const ptrdiff_t pe = p0 + K < P ? p0 + K : P;
            for (ptrdiff_t c = c0; c < c1; c += 16) {
                double* ap = acc + (c - c0);
                __m128d lo[4], hi[4];
                for (int v = 0; v < 4; v++) {
                    lo[v] = _mm_loadu_pd(ap + 4 * v);
                    hi[v] = _mm_loadu_pd(ap + 4 * v + 2);
                }
                const float* xp = x0 + p0 * C + c;
                for (ptrdiff_t p = p0; p < pe; p++, xp += C)
                    for (int v = 0; v < 4; v++) {
                        lo[v] = _mm_add_pd(lo[v], fastnn_cvt2(xp + 4 * v));
                        hi[v] = _mm_add_pd(hi[v], fastnn_cvt2(xp + 4 * v + 2));
                    }
                for (int v = 0; v < 4; v++) {
                    _mm_storeu_pd(ap + 4 * v, lo[v]);
                    _mm_storeu_pd(ap + 4 * v + 2, hi[v]);
                }
            }
        }
        for (ptrdiff_t c = c0; c < c1; c++)
            y[c] = (float)(acc[c - c0] / (double)P);
    }
    """
    int fastnn_maxwin1(const float* x0, Py_ssize_t W, Py_ssize_t C, Py_ssize_t hs, Py_ssize_t he,
                       Py_ssize_t ws, Py_ssize_t we, Py_ssize_t c0, float* y, int* a) noexcept nogil
    int fastnn_maxwin4(const float* x0, Py_ssize_t W, Py_ssize_t C, Py_ssize_t hs, Py_ssize_t he,
                       Py_ssize_t ws, Py_ssize_t we, Py_ssize_t c0, float* y, int* a) noexcept nogil
    int fastnn_max2x2(const float* x0, Py_ssize_t rs, Py_ssize_t C, Py_ssize_t off, Py_ssize_t c0,
                      Py_ssize_t c1, float* y, int* a) noexcept nogil
    int fastnn_gmax_tiled(const float* x0, Py_ssize_t P, Py_ssize_t C, Py_ssize_t c0,
                          Py_ssize_t c1, float* y, int* a) noexcept nogil
    void fastnn_gavg_tiled(const float* x0, Py_ssize_t P, Py_ssize_t C, Py_ssize_t c0,
                           Py_ssize_t c1, float* y, double* acc) noexcept nogil
    void fastnn_gavg_tiled_avx(const float* x0, Py_ssize_t P, Py_ssize_t C, Py_ssize_t c0,
                               Py_ssize_t c1, float* y, double* acc) noexcept nogil
    void fastnn_avgcells1(const float* x0, Py_ssize_t P, Py_ssize_t C, Py_ssize_t c0,
                          float* y) noexcept nogil


cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _chunk(Py_ssize_t rows) noexcept nogil:
    """Rows per dynamic-schedule chunk: ~16 chunks per thread.

    Dynamic rather than static scheduling: on a machine shared with other processes a thread
    that loses its core for a time slice then only delays its current chunk, and the others take
    the rest, instead of the whole region waiting for its fixed share. (Under heavy load the
    larger effect is libgomp's spinning wait policy; see bench/test_pool.py.)
    """
    cdef Py_ssize_t chunk = rows // (16 * openmp.omp_get_max_threads())
    return chunk if chunk > 0 else 1


cdef inline bint _wins(float v, float b) noexcept nogil:
    """v replaces the running max b: v > b, or v is NaN while b is not (first NaN sticks)."""
    return (b == b) & (not (v <= b))


cdef void _max_scalar(const float* x0, Py_ssize_t W, Py_ssize_t C, Py_ssize_t hs, Py_ssize_t he,
                     Py_ssize_t ws, Py_ssize_t we, Py_ssize_t c0, Py_ssize_t c1,  # IN
                     float* yr, int* ar) noexcept nogil:  # OUT
    """yr, ar[c0:c1] <- max and argmax over the window, the reference rule cell by cell (for
    channel tails and for blocks whose window holds a NaN)."""
    cdef Py_ssize_t c, h, w, off
    cdef float b, v
    cdef int i
    for c in range(c0, c1):
        off = (hs * W + ws) * C + c
        b = x0[off]
        i = <int>off
        for h in range(hs, he):
            for w in range(ws, we):
                off = (h * W + w) * C + c
                v = x0[off]
                if _wins(v, b):
                    b = v
                    i = <int>off
        yr[c] = b
        ar[c] = i


cdef inline void _max_window(const float* x0, Py_ssize_t W, Py_ssize_t C, Py_ssize_t hs,
                             Py_ssize_t he, Py_ssize_t ws, Py_ssize_t we, Py_ssize_t c0,
                             Py_ssize_t c1,  # IN
                             float* yr, int* ar) noexcept nogil:  # OUT
    """Channels [c0, c1) of one output: 16 then 4 channels at a time in SSE2 registers, the
    rest (and any block whose window holds a NaN) by the scalar rule."""
    cdef Py_ssize_t c = c0
    if he - hs == 2 and we - ws == 2:
        c = c0 + (c1 - c0) // 4 * 4
        if fastnn_max2x2(x0, W * C, C, (hs * W + ws) * C, c0, c1, yr, ar):
            c = c0
    elif hs == 0 and ws == 0 and we == W and he * W >= 16:
        # the whole image (a global pool): its cells are contiguous, p = h*W + w
        c = c0 + (c1 - c0) // 16 * 16
        if c > c0 and fastnn_gmax_tiled(x0, he * W, C, c0, c, yr, ar):
            _max_scalar(x0, W, C, hs, he, ws, we, c0, c, yr, ar)
    while c + 16 <= c1:
        if fastnn_maxwin4(x0, W, C, hs, he, ws, we, c, yr, ar):
            _max_scalar(x0, W, C, hs, he, ws, we, c, c + 16, yr, ar)
        c = c + 16
    while c + 4 <= c1:
        if fastnn_maxwin1(x0, W, C, hs, he, ws, we, c, yr, ar):
            _max_scalar(x0, W, C, hs, he, ws, we, c, c + 4, yr, ar)
        c = c + 4
    if c < c1:
        _max_scalar(x0, W, C, hs, he, ws, we, c, c1, yr, ar)


cdef inline Py_ssize_t _channel_groups(Py_ssize_t tasks, Py_ssize_t C) noexcept nogil:
    """How many 16-channel-aligned groups to split C into so that there are >= 64 tasks per
    thread (few images or a global pool would otherwise leave threads idle or unbalanced)."""
    cdef Py_ssize_t want = 64 * openmp.omp_get_max_threads()
    cdef Py_ssize_t g
    if tasks >= want:
        return 1
    g = (want + tasks - 1) // tasks
    return _imin(g, (C + 15) // 16)


cdef void max_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
    int[:, :, :, ::1] argmax__nhwc,             # OUT (N, OH, OW, C): flat index into H*W*C
) noexcept nogil:
    cdef Py_ssize_t N = x__nhwc.shape[0], H = x__nhwc.shape[1]
    cdef Py_ssize_t W = x__nhwc.shape[2], C = x__nhwc.shape[3]
    cdef Py_ssize_t OH = y__nhwc.shape[1], OW = y__nhwc.shape[2]
    cdef Py_ssize_t r, n, oh, ow, hs, he, ws, we, g, G, cg, c0, c1, tasks
    cdef const float* x0
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    G = _channel_groups(N * OH, C)
    cg = ((C + G - 1) // G + 15) // 16 * 16     # channels per group, a multiple of 16
    G = (C + cg - 1) // cg
    tasks = N * OH * G
    for r in prange(tasks, schedule="dynamic", chunksize=_chunk(tasks)):
        g = r % G
        n = r // G // OH
        oh = r // G - n * OH
        c0 = g * cg
        c1 = _imin(c0 + cg, C)
        hs = _imax(oh * sh - pad_top, 0)
        he = _imin(oh * sh - pad_top + kh, H)
        x0 = &x__nhwc[n, 0, 0, 0]
        for ow in range(OW):
            ws = _imax(ow * sw - pad_left, 0)
            we = _imin(ow * sw - pad_left + kw, W)
            _max_window(x0, W, C, hs, he, ws, we, c0, c1,
                        &y__nhwc[n, oh, ow, 0], &argmax__nhwc[n, oh, ow, 0])


cdef void avg_pool2d_nhwc(
    const float[:, :, :, ::1] x__nhwc,          # IN  (N, H, W, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] y__nhwc,                # OUT (N, OH, OW, C)
) noexcept nogil:
    cdef Py_ssize_t N = x__nhwc.shape[0], H = x__nhwc.shape[1]
    cdef Py_ssize_t W = x__nhwc.shape[2], C = x__nhwc.shape[3]
    cdef Py_ssize_t OH = y__nhwc.shape[1], OW = y__nhwc.shape[2]
    cdef Py_ssize_t r, n, oh, ow, hs, he, ws, we, ww, cells, t, ia, ib, c
    cdef const float* x0
    cdef float* yr
    cdef float inv
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    for r in prange(N * OH, schedule="dynamic", chunksize=_chunk(N * OH)):
        n = r // OH
        oh = r - n * OH
        hs = _imax(oh * sh - pad_top, 0)
        he = _imin(oh * sh - pad_top + kh, H)
        x0 = &x__nhwc[n, 0, 0, 0]
        for ow in range(OW):
            ws = _imax(ow * sw - pad_left, 0)
            we = _imin(ow * sw - pad_left + kw, W)
            ww = we - ws
            cells = (he - hs) * ww
            yr = &y__nhwc[n, oh, ow, 0]
            # Sum the valid cells in window order, ((x0 + x1) + x2) + x3 ..., two per pass over
            # the output row (as in max pooling); the last pass also scales by 1 / count, the
            # number of valid cells: padded cells are not counted (Keras "same" average
            # pooling). A multiply, not a divide: exact for power-of-two counts (2x2 windows),
            # within 1 ulp of sum / count otherwise, and the divide dominated the loop.
            inv = 1.0 / <float>cells
            ia = (hs * W + ws) * C
            if cells == 1:
                for c in range(C):
                    yr[c] = x0[ia + c] * inv
                continue
            ib = ((hs + 1 // ww) * W + ws + 1 % ww) * C
            if cells == 2:
                for c in range(C):
                    yr[c] = (x0[ia + c] + x0[ib + c]) * inv
                continue
            if cells % 2 == 0:
                for c in range(C):
                    yr[c] = x0[ia + c] + x0[ib + c]
                t = 2
            else:
                for c in range(C):
                    yr[c] = x0[ia + c]
                t = 1
            while t + 2 < cells:
                ia = ((hs + t // ww) * W + ws + t % ww) * C
                ib = ((hs + (t + 1) // ww) * W + ws + (t + 1) % ww) * C
                for c in range(C):
                    yr[c] = (yr[c] + x0[ia + c]) + x0[ib + c]
                t = t + 2
            ia = ((hs + t // ww) * W + ws + t % ww) * C
            ib = ((hs + (t + 1) // ww) * W + ws + (t + 1) % ww) * C
            for c in range(C):
                yr[c] = ((yr[c] + x0[ia + c]) + x0[ib + c]) * inv


cdef void avg_pool2d_backward_nhwc(
    const float[:, :, :, ::1] dy__nhwc,         # IN  (N, OH, OW, C)
    int kh, int kw, int sh, int sw, int pad_top, int pad_left,
    float[:, :, :, ::1] dx__nhwc,               # OUT (N, H, W, C)
) noexcept nogil:
    cdef Py_ssize_t N = dx__nhwc.shape[0], H = dx__nhwc.shape[1]
    cdef Py_ssize_t W = dx__nhwc.shape[2], C = dx__nhwc.shape[3]
    cdef Py_ssize_t OH = dy__nhwc.shape[1], OW = dy__nhwc.shape[2]
    cdef Py_ssize_t r, n, h, w, oh, ow, oh_lo, oh_hi, num, c, ws, we, done, cnt_h
    cdef bint first_oh
    cdef const float* dyr
    cdef float* dxr
    cdef float* row
    cdef float inv
    if N == 0 or H == 0 or W == 0 or C == 0:
        return
    for r in prange(N * H, schedule="dynamic", chunksize=_chunk(N * H)):
        n = r // H
        h = r - n * H
        row = &dx__nhwc[n, h, 0, 0]
        # outputs oh whose window [oh*sh - pt, oh*sh - pt + kh) contains h
        num = h + pad_top - kh + 1
        oh_lo = 0 if num <= 0 else (num + sh - 1) // sh
        oh_hi = _imin((h + pad_top) // sh, OH - 1)
        if oh_lo > oh_hi:                   # a row no window reaches (stride > pool)
            memset(row, 0, W * C * sizeof(float))
            continue
        first_oh = True
        for oh in range(oh_lo, oh_hi + 1):
            cnt_h = _imin(oh * sh - pad_top + kh, H) - _imax(oh * sh - pad_top, 0)
            # Walk the windows of this output row left to right: the cells [0, done) already
            # hold a contribution. A cell is written by the first window that reaches it and
            # added to by the others (overlap), and cells between windows (stride > pool) are
            # zeroed, so dx needs no zeroing pass.
            done = 0
            for ow in range(OW):
                ws = _imax(ow * sw - pad_left, 0)
                we = _imin(ow * sw - pad_left + kw, W)
                if first_oh and ws > done:
                    memset(row + done * C, 0, (ws - done) * C * sizeof(float))
                    done = ws
                # a multiply, not a divide per element (divps dominated the loop): exact for
                # power-of-two counts (2x2 windows), within 1 ulp of dy / count otherwise
                inv = 1.0 / <float>(cnt_h * (we - ws))
                dyr = &dy__nhwc[n, oh, ow, 0]
                for w in range(ws, we):
                    dxr = row + w * C
                    if first_oh and w >= done:
                        for c in range(C):
                            dxr[c] = dyr[c] * inv
                    else:
                        for c in range(C):
                            dxr[c] = dxr[c] + dyr[c] * inv
                if we > done:
                    done = we
            if first_oh and W > done:
                memset(row + done * C, 0, (W - done) * C * sizeof(float))
            first_oh = False


cdef Py_ssize_t max_pool_backward_scatter(
    const float[:, ::1] dy__nk,                 # IN  (N, K): one image's outputs, flattened
    const int[:, ::1] argmax__nk,               # IN  (N, K): flat index into one image's M cells
    float[:, ::1] dx__nm,                       # OUT (N, M): one image's input cells, flattened
) noexcept nogil:
    """Zero dx, then dx[n, argmax[n, k]] += dy[n, k]; returns how many indices were out of range."""
    cdef Py_ssize_t N = dx__nm.shape[0], M = dx__nm.shape[1], K = dy__nk.shape[1]
    cdef Py_ssize_t n, k
    cdef Py_ssize_t bad = 0
    cdef unsigned int a
    cdef float* dxr
    cdef const float* dyr
    cdef const int* ar
    if N == 0 or M == 0:
        return 0
    for n in prange(N, schedule="dynamic", chunksize=_chunk(N)):
        dxr = &dx__nm[n, 0]
        memset(dxr, 0, M * sizeof(float))
        if K == 0:
            continue
        dyr = &dy__nk[n, 0]
        ar = &argmax__nk[n, 0]
        for k in range(K):
            a = <unsigned int>ar[k]          # a negative index becomes huge: one compare
            if a < <unsigned int>M:
                dxr[a] += dyr[k]
            else:
                bad += 1
    return bad


cdef inline void _avg_scalar(const float* x0, Py_ssize_t P, Py_ssize_t C, Py_ssize_t c,
                             float* yr) noexcept nogil:
    cdef double acc = 0.0
    cdef Py_ssize_t p
    for p in range(P):
        acc = acc + x0[p * C + c]
    yr[c] = <float>(acc / P)


cdef bint _HAS_AVX = False


cdef void _apply_isa(int isa) noexcept nogil:
    global _HAS_AVX
    _HAS_AVX = isa >= 1     # AVX is part of both AVX flavours (x86-64-v3 and v4)

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


cdef Py_ssize_t _avg_tiled(const float* x0, Py_ssize_t P, Py_ssize_t C, Py_ssize_t c,
                           Py_ssize_t c1, float* yr) noexcept nogil:
    """The 16-channel blocks of [c, c1) by the tiled double sum; returns where they end."""
    cdef double acc[512]            # on this thread's stack
    cdef Py_ssize_t c2
    while c + 16 <= c1:
        c2 = _imin(c + 512, c + (c1 - c) // 16 * 16)
        if _HAS_AVX:
            fastnn_gavg_tiled_avx(x0, P, C, c, c2, yr, acc)
        else:
            fastnn_gavg_tiled(x0, P, C, c, c2, yr, acc)
        c = c2
    return c


cdef int global_avg_pool_npc(
    const float[:, :, ::1] x__npc,              # IN  (N, P, C), P = H*W (or L)
    float[:, ::1] y__nc,                        # OUT (N, C)
) noexcept nogil:
    """y[n, c] = mean over p of x[n, p, c], summed in double; returns 0 (never fails)."""
    cdef Py_ssize_t N = x__npc.shape[0], P = x__npc.shape[1], C = x__npc.shape[2]
    cdef Py_ssize_t r, n, g, G, cg, c, c1
    cdef const float* x0
    cdef float* yr
    if N == 0 or C == 0:
        return 0
    G = _channel_groups(N, C)
    cg = ((C + G - 1) // G + 15) // 16 * 16
    G = (C + cg - 1) // cg
    for r in prange(N * G, schedule="dynamic", chunksize=_chunk(N * G)):
        n = r // G
        g = r - n * G
        c = g * cg
        c1 = _imin(c + cg, C)
        x0 = &x__npc[n, 0, 0]
        yr = &y__nc[n, 0]
        c = _avg_tiled(x0, P, C, c, c1, yr)
        while c + 4 <= c1:
            fastnn_avgcells1(x0, P, C, c, yr)
            c = c + 4
        while c < c1:
            _avg_scalar(x0, P, C, c, yr)
            c = c + 1
    return 0


# ---- Python entry points (fastnn.kernels.pool validates before calling these) ----

def max_pool2d(const float[:, :, :, ::1] x__nhwc, int kh, int kw, int sh, int sw,
               int pad_top, int pad_left, float[:, :, :, ::1] y__nhwc,
               int[:, :, :, ::1] argmax__nhwc):
    """NHWC float32 max pooling into y and argmax (unchecked: call fastnn.kernels.pool)."""
    with nogil:
        max_pool2d_nhwc(x__nhwc, kh, kw, sh, sw, pad_top, pad_left, y__nhwc, argmax__nhwc)


def avg_pool2d(const float[:, :, :, ::1] x__nhwc, int kh, int kw, int sh, int sw,
               int pad_top, int pad_left, float[:, :, :, ::1] y__nhwc):
    """NHWC float32 average pooling into y, pads excluded (unchecked)."""
    with nogil:
        avg_pool2d_nhwc(x__nhwc, kh, kw, sh, sw, pad_top, pad_left, y__nhwc)


def avg_pool2d_backward(const float[:, :, :, ::1] dy__nhwc, int kh, int kw, int sh, int sw,
                        int pad_top, int pad_left, float[:, :, :, ::1] dx__nhwc):
    """Gradient of NHWC average pooling into dx (unchecked)."""
    with nogil:
        avg_pool2d_backward_nhwc(dy__nhwc, kh, kw, sh, sw, pad_top, pad_left, dx__nhwc)


def max_pool_backward(const float[:, ::1] dy__nk, const int[:, ::1] argmax__nk,
                      float[:, ::1] dx__nm):
    """Scatter dy to argmax per image into zeroed dx; returns the count of out-of-range indices."""
    cdef Py_ssize_t bad
    with nogil:
        bad = max_pool_backward_scatter(dy__nk, argmax__nk, dx__nm)
    return bad


def global_avg_pool(const float[:, :, ::1] x__npc, float[:, ::1] y__nc):
    """Mean over the middle axis of (N, P, C) into y (N, C), accumulated in double (unchecked)."""
    cdef int status
    with nogil:
        status = global_avg_pool_npc(x__npc, y__nc)
    if status != 0:
        raise MemoryError("global_avg_pool: could not allocate the per-thread accumulators")



def max_pool2x2_rows(const float[:, :, :, ::1] x__nhwc,  # IN  (n, H, W, C): conv output rows
                     float[:, :, :, ::1] y__nhwc):        # OUT (n, PH, PW, C), PH <= H // 2
    """2x2 stride-2 "valid" max (values only) of each image's row pairs, in the calling thread.

    The epilogue of a convolution chunk in inference (fastnn.kernels.conv, pool=): it runs
    inside a thread's share of the batch, so no OpenMP team here. Same rule as max_pool2d:
    the window's first NaN wins, else the maximum (argmax is not needed in inference).
    """
    cdef Py_ssize_t n = y__nhwc.shape[0], ph = y__nhwc.shape[1], pw = y__nhwc.shape[2]
    cdef Py_ssize_t C = y__nhwc.shape[3]
    cdef Py_ssize_t i, r, j
    if n == 0 or ph == 0 or pw == 0 or C == 0:
        return
    with nogil:
        for i in range(n):
            for r in range(ph):
                for j in range(pw):
                    _max4(&x__nhwc[i, 2 * r, 2 * j, 0], &x__nhwc[i, 2 * r + 1, 2 * j, 0], C,
                          &y__nhwc[i, r, j, 0])


cdef inline void _max4(const float* a, const float* b, Py_ssize_t C, float* y) noexcept nogil:
    # The _wins rule for the window (0,0), (0,1), (1,0), (1,1) as selects without branches, so
    # that gcc vectorises the channel loop: the maximum, unless the window holds a NaN, then
    # its first NaN (t is the first NaN, or the last cell when there is none).
    cdef Py_ssize_t c
    cdef float a0, a1, b0, b1, m, t
    for c in range(C):
        a0 = a[c]
        a1 = a[C + c]
        b0 = b[c]
        b1 = b[C + c]
        m = a1 if a1 > a0 else a0
        m = b0 if b0 > m else m
        m = b1 if b1 > m else m
        t = b0 if b0 != b0 else b1
        t = a1 if a1 != a1 else t
        t = a0 if a0 != a0 else t
        y[c] = t if t != t else m
