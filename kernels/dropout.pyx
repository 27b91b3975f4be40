# cython: language_level=3
"""Inverted dropout over contiguous float32 values, with a counter-based mask.

Design note
- The mask is a pure function of (seed, element index): element i draws the 32-bit uniform
  u_i = half (i % 2) of splitmix64(key + (i//2 + 1) * G) (one 64-bit hash serves two
  elements), and is kept iff u_i >= floor(rate * 2**32). So the keep probability is
  1 - rate to 2**-32 (finer than Keras's float32 uniform), every block of the array can be
  generated independently, and the result is the same for any thread count.
- Kept values are x / keep with keep = float32(1 - rate), as Keras's `x / keep_prob`; dropped
  values are exactly 0 (a select, not a multiply, so NaN/inf at a dropped position give 0 as
  Keras's np.where does).
- One pass: each thread hashes a block of BLOCK elements into the uint8 mask, then applies it
  to the block while both are in L1 (the select loop vectorizes; the hash is scalar 64-bit).
"""
from cython.parallel cimport prange

cdef enum:
    BLOCK = 4096   # even, so a block never splits a hash pair

cdef unsigned long long GOLDEN = 0x9E3779B97F4A7C15ULL


cdef inline unsigned long long _mix64(unsigned long long z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef unsigned long long dropout_key(unsigned long long seed) noexcept nogil:
    return _mix64(seed + GOLDEN)


cdef void _block_forward(const float* x__n, Py_ssize_t i0, Py_ssize_t i1,
                         unsigned long long key, unsigned long long drop_below32,
                         float keep,  # IN
                         float* y__n, unsigned char* mask__n) noexcept nogil:  # OUT
    """Mask and scale elements [i0, i1) (i0 even)."""
    cdef Py_ssize_t i
    cdef unsigned long long h
    for i in range(i0, i1 - 1, 2):
        h = _mix64(key + <unsigned long long>(i // 2 + 1) * GOLDEN)
        mask__n[i] = (h & 0xFFFFFFFFULL) >= drop_below32
        mask__n[i + 1] = (h >> 32) >= drop_below32
    if (i1 - i0) & 1:   # the array's odd last element
        h = _mix64(key + <unsigned long long>((i1 - 1) // 2 + 1) * GOLDEN)
        mask__n[i1 - 1] = (h & 0xFFFFFFFFULL) >= drop_below32
    for i in range(i0, i1):
        y__n[i] = x__n[i] / keep if mask__n[i] else 0.0


cdef void dropout_forward_n(const float* x__n, Py_ssize_t n, unsigned long long seed,
                            unsigned long long drop_below32, float keep,
                            float* y__n, unsigned char* mask__n) noexcept nogil:
    cdef unsigned long long key = dropout_key(seed)
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t b, i1
    for b in prange(nb, schedule="static", nogil=True):
        i1 = (b + 1) * BLOCK
        if i1 > n:
            i1 = n
        _block_forward(x__n, b * BLOCK, i1, key, drop_below32, keep, y__n, mask__n)


cdef void _block_backward(const float* dy__n, const unsigned char* mask__n, Py_ssize_t i0,
                          Py_ssize_t i1, float keep, float* dx__n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(i0, i1):
        dx__n[i] = dy__n[i] / keep if mask__n[i] else 0.0


cdef void dropout_backward_n(const float* dy__n, const unsigned char* mask__n, Py_ssize_t n,
                             float keep, float* dx__n) noexcept nogil:
    cdef Py_ssize_t nb = (n + 4 * BLOCK - 1) // (4 * BLOCK)
    cdef Py_ssize_t b, i1
    for b in prange(nb, schedule="static", nogil=True):
        i1 = (b + 1) * 4 * BLOCK
        if i1 > n:
            i1 = n
        _block_backward(dy__n, mask__n, b * 4 * BLOCK, i1, keep, dx__n)


# ---- Python entry points (fastnn.kernels.dropout validates everything before calling these) ----

def dropout(const float[::1] x__n,  # IN
            unsigned long long seed, unsigned long long drop_below32, float keep,
            float[::1] y__n, unsigned char[::1] mask__n):  # OUT
    """Inverted dropout of n >= 1 float32 values: y = mask ? x/keep : 0, mask uint8."""
    with nogil:
        dropout_forward_n(&x__n[0], x__n.shape[0], seed, drop_below32, keep, &y__n[0], &mask__n[0])


def dropout_backward(const float[::1] dy__n, const unsigned char[::1] mask__n,  # IN
                     float keep,
                     float[::1] dx__n):  # OUT
    """Gradient of inverted dropout over n >= 1 float32 values: dx = mask ? dy/keep : 0."""
    with nogil:
        dropout_backward_n(&dy__n[0], &mask__n[0], dy__n.shape[0], keep, &dx__n[0])
