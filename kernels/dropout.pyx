# cython: language_level=3
"""Inverted dropout over contiguous float32 values, with a counter-based mask.

Design note
- The mask is a pure function of (seed, element index) through wyrand (passes BigCrush and
  PractRand): W(k, c) = mum(s, s ^ WY1), s = k + c*WY0, mum = high xor low half of the 128-bit
  product (one mulq). Element i draws the 32-bit uniform U_i = hi_i * 2**16 + lo_i where
  hi_i = 16-bit quarter (i % 4) of W(key, i//4 + 1) (one mulq per four elements) and
  lo_i = low 16 bits of W(key2, i + 1), evaluated only when hi_i ties the threshold (p = 2**-16);
  key = splitmix64(seed + G), key2 = splitmix64(key + G). Element i is kept iff
  U_i >= floor(rate * 2**32): the keep probability is 1 - rate to 2**-32 (finer than Keras's
  float32 uniform), every block is generated independently, and the result is the same for
  any thread count.
- Kept values are x * scale with scale = float32(1 / (1 - rate)) (as tf.nn.dropout and torch;
  Keras's NumPy backend divides, which differs in the last bit at most and costs a divps per
  4 values, as much time as the memory traffic on these cores); dropped values are exactly 0 (a select, not a multiply, so NaN/inf at a dropped position give 0 as
  Keras's np.where does).
- One pass: each thread hashes a block of BLOCK elements into 16-bit draws, compares them into
  the uint8 mask and applies it while all is in L1 (compare and select vectorize; the hash is
  scalar 64-bit: splitmix64 per element pair cost ~4x more time per element than this).
"""
from cython.parallel cimport prange
from libc.string cimport memcpy

cdef enum:
    BLOCK = 4096   # a multiple of 4, so a block never splits a hash

cdef unsigned long long GOLDEN = 0x9E3779B97F4A7C15ULL
cdef unsigned long long WY0 = 0xA0761D6478BD642FULL
cdef unsigned long long WY1 = 0xE7037ED1A0B428DBULL

cdef extern from *:
    """
    /* wyhash's mum: the 128-bit product of a and b, high half xor low half (one mulq). */
    static inline unsigned long long fastnn_wymum(unsigned long long a, unsigned long long b) {
        unsigned __int128 r = (unsigned __int128)a * b;
        return (unsigned long long)(r >> 64) ^ (unsigned long long)r;
    }
    """
    unsigned long long fastnn_wymum(unsigned long long a, unsigned long long b) noexcept nogil


cdef inline unsigned long long _mix64(unsigned long long z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef unsigned long long dropout_key(unsigned long long seed) noexcept nogil:
    return _mix64(seed + GOLDEN)


cdef inline unsigned long long _wyrand(unsigned long long key, Py_ssize_t counter) noexcept nogil:
    # wyrand's output at `counter`: s = key + counter*WY0, mum(s, s ^ WY1)
    cdef unsigned long long s = key + <unsigned long long>counter * WY0
    return fastnn_wymum(s, s ^ WY1)


cdef void _refine(Py_ssize_t i0, Py_ssize_t n, const unsigned short* u, unsigned short thr_hi,
                  unsigned short thr_lo, unsigned long long key2,  # IN
                  unsigned char* mask__n) noexcept nogil:  # OUT
    """Decide the elements whose high 16 bits tie the threshold with their low 16 bits."""
    cdef Py_ssize_t i
    for i in range(n):
        if u[i] == thr_hi:
            mask__n[i0 + i] = <unsigned short>_wyrand(key2, i0 + i + 1) >= thr_lo


cdef void _block_forward(const float* x__n, Py_ssize_t i0, Py_ssize_t i1,
                         unsigned long long key, unsigned long long drop_below32,
                         float scale,  # IN
                         float* y__n, unsigned char* mask__n) noexcept nogil:  # OUT
    """Mask and scale elements [i0, i1) (i0 a multiple of 4, i1 - i0 <= BLOCK)."""
    # Short loops instead of one: the hash loop is a tight mulq chain writing four 16-bit draws
    # per product, and the compare and apply loops vectorize.
    cdef unsigned short u[BLOCK]
    cdef Py_ssize_t i, n = i1 - i0
    cdef unsigned long long h
    cdef unsigned long long s = key + <unsigned long long>(i0 // 4) * WY0
    cdef unsigned short thr_hi = <unsigned short>(drop_below32 >> 16)
    cdef unsigned short thr_lo = <unsigned short>(drop_below32 & 0xFFFF)
    cdef int tie = 0
    for i in range(0, n - 3, 4):
        s = s + WY0                  # wyrand at counter (i0 + i)/4 + 1
        h = fastnn_wymum(s, s ^ WY1)
        u[i] = <unsigned short>h
        u[i + 1] = <unsigned short>(h >> 16)
        u[i + 2] = <unsigned short>(h >> 32)
        u[i + 3] = <unsigned short>(h >> 48)
    if n & 3:   # the array's last 1-3 elements
        h = _wyrand(key, (i1 - 1) // 4 + 1)
        for i in range(n & ~3, n):
            u[i] = <unsigned short>(h >> (16 * (i & 3)))
    for i in range(n):
        mask__n[i0 + i] = u[i] > thr_hi
        tie |= u[i] == thr_hi
    if tie:   # probability n / 65536 per block
        _refine(i0, n, u, thr_hi, thr_lo, _mix64(key + GOLDEN), mask__n)
    _apply_mask(x__n + i0, mask__n + i0, i1 - i0, scale, y__n + i0)


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
    cdef unsigned long long key = dropout_key(seed)
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t b, i1
    for b in prange(nb, schedule="dynamic", nogil=True):
        i1 = (b + 1) * BLOCK
        if i1 > n:
            i1 = n
        _block_forward(x__n, b * BLOCK, i1, key, drop_below32, scale, y__n, mask__n)


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
            float[::1] y__n, unsigned char[::1] mask__n):  # OUT
    """Inverted dropout of n >= 1 float32 values: y = mask ? x*scale : 0, mask uint8."""
    with nogil:
        dropout_forward_n(&x__n[0], x__n.shape[0], seed, drop_below32, scale, &y__n[0], &mask__n[0])


def dropout_backward(const float[::1] dy__n, const unsigned char[::1] mask__n,  # IN
                     float scale,
                     float[::1] dx__n):  # OUT
    """Gradient of inverted dropout over n >= 1 float32 values: dx = mask ? dy*scale : 0."""
    with nogil:
        dropout_backward_n(&dy__n[0], &mask__n[0], dy__n.shape[0], scale, &dx__n[0])
