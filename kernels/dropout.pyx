# cython: language_level=3
"""Inverted dropout over contiguous float32 values, with a counter-based mask.

Design note
- The mask is a pure function of (seed, element index) through wyrand (passes BigCrush and
  PractRand): W(k, c) = mum(s, s ^ WY1), s = k + c*WY0, mum = high xor low half of the 128-bit
  product (one mulq). Element i draws the 32-bit uniform U_i = hi_i * 2**24 + lo_i where
  hi_i = byte (i % 8) of W(key, i//8 + 1) (one mulq per eight elements) and
  lo_i = low 24 bits of W(key2, i + 1), evaluated only when hi_i ties the threshold's top byte
  (p = 2**-8); key = splitmix64(seed + G), key2 = splitmix64(key + G). Element i is kept iff
  U_i >= floor(rate * 2**32): the keep probability is 1 - rate to 2**-32 (finer than Keras's
  float32 uniform), every block is generated independently, and the result is the same for
  any thread count.
- Kept values are x * scale with scale = float32(1 / (1 - rate)) (as tf.nn.dropout and torch;
  Keras's NumPy backend divides, which differs in the last bit at most and costs a divps per
  4 values, as much time as the memory traffic on these cores); dropped values are exactly 0
  (a bitwise AND with 0 or ~0, not a multiply, so NaN/inf at a dropped position give 0 as
  Keras's np.where does).
- One pass per block of BLOCK elements: the scalar hash loop stores each 64-bit product as
  eight byte draws (one store), then SSE2 takes 16 elements at a time: unsigned byte compare
  against the threshold's top byte into the 0/1 mask, ties (one chunk in 16 has one) decided
  from the low 24 bits, and the mask bytes widened to 32-bit AND masks for the scaled values,
  while the draws are in L1. The earlier 16-bit draws cost a mulq per four elements and a
  separate compare pass and ran at 1/3 of the copy ceiling, arithmetic-bound.
- From STREAM_MIN elements on, y and the mask are written with streaming (non-temporal) stores
  when 16-byte aligned: arrays that large leave the cache anyway, and skipping their
  read-for-ownership took ~12% off the forward (measured interleaved with a copy).
"""
from cython.parallel cimport prange
from libc.string cimport memcpy

cdef enum:
    BLOCK = 4096   # a multiple of 16: a block never splits a hash or an SSE2 chunk
    STREAM_MIN = 1 << 20   # elements (9 MB of traffic) from which y and mask are streamed

cdef unsigned long long GOLDEN = 0x9E3779B97F4A7C15ULL

cdef extern from *:
    """
    #include <emmintrin.h>
    #include <string.h>
    #include <stddef.h>

    /* wyhash's mum: the 128-bit product of a and b, high half xor low half (one mulq). */
    static inline unsigned long long fastnn_wymum(unsigned long long a, unsigned long long b) {
    #if defined(__x86_64__)
        /* gcc 12 moves the __int128 halves through the stack; mulq leaves them in rdx:rax */
        unsigned long long lo, hi;
        __asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(a), "rm"(b) : "cc");
        return hi ^ lo;
    #else
        unsigned __int128 r = (unsigned __int128)a * b;
        return (unsigned long long)(r >> 64) ^ (unsigned long long)r;
    #endif
    }

    #define FASTNN_WY0 0xA0761D6478BD642FULL
    #define FASTNN_WY1 0xE7037ED1A0B428DBULL

    /* Is element i (its counter index) kept, given its top byte hi (the low 24 bits decide
       a tie)? */
    static inline int fastnn_keep(unsigned long long i, unsigned hi, unsigned thr_hi,
                                  unsigned thr_lo, unsigned long long key2) {
        if (hi != thr_hi)
            return hi > thr_hi;
        unsigned long long s = key2 + (i + 1) * FASTNN_WY0;
        return (unsigned)(fastnn_wymum(s, s ^ FASTNN_WY1) & 0xFFFFFF) >= thr_lo;
    }

    /* Mask and scale elements [i0, i1) (i0 a multiple of 16, i1 - i0 <= BLOCK) whose counter
       indices start at c0 (element i0 draws as element c0 of the mask; c0 = i0 unless the
       call continues a larger array); u is scratch of BLOCK + 16 bytes; stream: use
       non-temporal stores if aligned. */
    static void fastnn_dropout_block(const float* x, ptrdiff_t i0, ptrdiff_t i1,
                                     unsigned long long c0,
                                     unsigned long long key, unsigned long long key2,
                                     unsigned long long drop_below32, float scale,
                                     float* y, unsigned char* mask, unsigned char* u,
                                     int stream) {
        ptrdiff_t n = i1 - i0, j;
        /* the hashes cover counters from c0 rounded down to a multiple of 8: lead bytes
           before element i0's draw */
        const ptrdiff_t lead = (ptrdiff_t)(c0 % 8);
        /* streaming (non-temporal) stores when asked and y, mask are 16-byte aligned: they
           skip the read-for-ownership of arrays too large to stay in cache anyway */
        const int nt = stream && ((size_t)y % 16 == 0) && ((size_t)mask % 16 == 0);
        unsigned long long s = key + (c0 / 8) * FASTNN_WY0;
        for (j = 0; j < lead + n; j += 8) {   /* wyrand at counter (c0 - lead + j)/8 + 1 */
            s += FASTNN_WY0;
            unsigned long long h = fastnn_wymum(s, s ^ FASTNN_WY1);
            memcpy(u + j, &h, 8);             /* byte q = bits 8q..8q+7 (little-endian) */
        }
        u += lead;                            /* u[j]: the draw of element i0 + j */
        const unsigned thr_hi = (unsigned)(drop_below32 >> 24);
        const unsigned thr_lo = (unsigned)(drop_below32 & 0xFFFFFF);
        const __m128i T = _mm_set1_epi8((char)thr_hi), one = _mm_set1_epi8(1);
        const __m128i zero = _mm_setzero_si128();
        const __m128 sc = _mm_set1_ps(scale);
        const float* xp = x + i0;
        float* yp = y + i0;
        unsigned char* mp = mask + i0;
        for (j = 0; j + 16 <= n; j += 16) {
            __m128i uv = _mm_loadu_si128((const __m128i*)(u + j));
            __m128i le = _mm_cmpeq_epi8(_mm_min_epu8(uv, T), uv);   /* u <= thr_hi */
            __m128i m01 = _mm_andnot_si128(le, one);
            int tie = _mm_movemask_epi8(_mm_cmpeq_epi8(uv, T));
            if (tie) {                                             /* p ~ 1/16 per chunk */
                unsigned char b[16];
                _mm_storeu_si128((__m128i*)b, m01);
                while (tie) {
                    int q = __builtin_ctz(tie);
                    tie &= tie - 1;
                    b[q] = (unsigned char)fastnn_keep(c0 + j + q, thr_hi, thr_hi, thr_lo, key2);
                }
                m01 = _mm_loadu_si128((const __m128i*)b);
            }
            if (nt) _mm_stream_si128((__m128i*)(mp + j), m01);
            else _mm_storeu_si128((__m128i*)(mp + j), m01);
            __m128i ff = _mm_sub_epi8(zero, m01);                  /* 0x00 / 0xFF bytes */
            __m128i w0 = _mm_unpacklo_epi8(ff, ff), w1 = _mm_unpackhi_epi8(ff, ff);
            __m128 k0 = _mm_castsi128_ps(_mm_unpacklo_epi16(w0, w0));
            __m128 k1 = _mm_castsi128_ps(_mm_unpackhi_epi16(w0, w0));
            __m128 k2 = _mm_castsi128_ps(_mm_unpacklo_epi16(w1, w1));
            __m128 k3 = _mm_castsi128_ps(_mm_unpackhi_epi16(w1, w1));
            __m128 y0 = _mm_and_ps(_mm_mul_ps(_mm_loadu_ps(xp + j), sc), k0);
            __m128 y1 = _mm_and_ps(_mm_mul_ps(_mm_loadu_ps(xp + j + 4), sc), k1);
            __m128 y2 = _mm_and_ps(_mm_mul_ps(_mm_loadu_ps(xp + j + 8), sc), k2);
            __m128 y3 = _mm_and_ps(_mm_mul_ps(_mm_loadu_ps(xp + j + 12), sc), k3);
            if (nt) {
                _mm_stream_ps(yp + j, y0); _mm_stream_ps(yp + j + 4, y1);
                _mm_stream_ps(yp + j + 8, y2); _mm_stream_ps(yp + j + 12, y3);
            } else {
                _mm_storeu_ps(yp + j, y0); _mm_storeu_ps(yp + j + 4, y1);
                _mm_storeu_ps(yp + j + 8, y2); _mm_storeu_ps(yp + j + 12, y3);
            }
        }
        if (nt)
            _mm_sfence();   /* streaming stores are weakly ordered: drain them per block */
        for (; j < n; j++) {                  /* the array's last 1-15 elements */
            int k = fastnn_keep(c0 + j, u[j], thr_hi, thr_lo, key2);
            float v = xp[j] * scale;
            unsigned bits;
            memcpy(&bits, &v, 4);
            bits &= 0u - (unsigned)k;
            memcpy(yp + j, &bits, 4);
            mp[j] = (unsigned char)k;
        }
    }
    """
    unsigned long long fastnn_wymum(unsigned long long a, unsigned long long b) noexcept nogil
    void fastnn_dropout_block(const float* x, Py_ssize_t i0, Py_ssize_t i1,
                              unsigned long long c0, unsigned long long key, unsigned long long key2,
                              unsigned long long drop_below32, float scale,
                              float* y, unsigned char* mask, unsigned char* u,
                              int stream) noexcept nogil


cdef inline unsigned long long _mix64(unsigned long long z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef unsigned long long dropout_key(unsigned long long seed) noexcept nogil:
    return _mix64(seed + GOLDEN)


cdef inline void _apply_mask(const float* x__n, const unsigned char* mask__n, Py_ssize_t n,
                             float scale, float* y__n) noexcept nogil:
    """y = mask ? x*scale : 0, as a bitwise AND of the quotient with 0 or ~0: gcc leaves a
    `?:` select as a branch (a random mask mispredicts it, ~10x slower) but vectorizes this."""
    cdef Py_ssize_t i
    cdef float v
    cdef unsigned int bits
    for i in range(n):
        v = x__n[i] * scale
        memcpy(&bits, &v, 4)
        bits = bits & (0u - <unsigned int>(mask__n[i] != 0))
        memcpy(&y__n[i], &bits, 4)


cdef void dropout_forward_n(const float* x__n, Py_ssize_t n, unsigned long long seed,
                            unsigned long long drop_below32, float scale,
                            float* y__n, unsigned char* mask__n) noexcept nogil:
    dropout_forward_offset_n(x__n, n, seed, 0, drop_below32, scale, y__n, mask__n)


cdef void dropout_forward_offset_n(const float* x__n, Py_ssize_t n, unsigned long long seed,
                                   unsigned long long offset, unsigned long long drop_below32,
                                   float scale, float* y__n,
                                   unsigned char* mask__n) noexcept nogil:
    # element i draws as element offset + i of one long mask: a process of a data-parallel
    # step passes its rows' place in the global batch, so the mask does not depend on the split
    cdef unsigned long long key = dropout_key(seed)
    cdef unsigned long long key2 = _mix64(key + GOLDEN)
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t b, i1
    # y and mask bypass the caches (streaming stores) once they are larger than a core's share
    # of the last-level cache would hold; smaller outputs stay cached for their consumer
    cdef int stream = n >= STREAM_MIN
    for b in prange(nb, schedule="dynamic", nogil=True):
        i1 = (b + 1) * BLOCK
        if i1 > n:
            i1 = n
        _block(x__n, b * BLOCK, i1, offset + <unsigned long long>(b * BLOCK), key, key2,
               drop_below32, scale, y__n, mask__n, stream)


cdef void _block(const float* x__n, Py_ssize_t i0, Py_ssize_t i1, unsigned long long c0,
                 unsigned long long key, unsigned long long key2,
                 unsigned long long drop_below32, float scale,  # IN
                 float* y__n, unsigned char* mask__n, int stream) noexcept nogil:  # OUT
    cdef unsigned char u[BLOCK + 16]
    fastnn_dropout_block(x__n, i0, i1, c0, key, key2, drop_below32, scale, y__n, mask__n, u,
                         stream)


cdef void _block_backward(const float* dy__n, const unsigned char* mask__n, Py_ssize_t i0,
                          Py_ssize_t i1, float scale, float* dx__n) noexcept nogil:
    _apply_mask(dy__n + i0, mask__n + i0, i1 - i0, scale, dx__n + i0)


cdef void dropout_backward_n(const float* dy__n, const unsigned char* mask__n, Py_ssize_t n,
                             float scale, float* dx__n) noexcept nogil:
    cdef Py_ssize_t nb = (n + 4 * BLOCK - 1) // (4 * BLOCK)
    cdef Py_ssize_t b, i1
    for b in prange(nb, schedule="dynamic", nogil=True):
        i1 = (b + 1) * 4 * BLOCK
        if i1 > n:
            i1 = n
        _block_backward(dy__n, mask__n, b * 4 * BLOCK, i1, scale, dx__n)


# ---- Python entry points (fastnn.kernels.dropout validates everything before calling these) ----

def dropout(const float[::1] x__n,  # IN
            unsigned long long seed, unsigned long long drop_below32, float scale,
            float[::1] y__n, unsigned char[::1] mask__n,  # OUT
            unsigned long long offset=0):
    """Inverted dropout of n >= 1 float32 values: y = mask ? x*scale : 0, mask uint8; element i
    draws as element offset + i of a longer array."""
    with nogil:
        dropout_forward_offset_n(&x__n[0], x__n.shape[0], seed, offset, drop_below32, scale,
                                 &y__n[0], &mask__n[0])


def dropout_backward(const float[::1] dy__n, const unsigned char[::1] mask__n,  # IN
                     float scale,
                     float[::1] dx__n):  # OUT
    """Gradient of inverted dropout over n >= 1 float32 values: dx = mask ? dy*scale : 0."""
    with nogil:
        dropout_backward_n(&dy__n[0], &mask__n[0], dy__n.shape[0], scale, &dx__n[0])
