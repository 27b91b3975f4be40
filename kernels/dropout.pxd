# C-level API of fastnn._kernels.dropout: inverted dropout on n contiguous float32 values with a
# counter-based mask (a pure function of (seed, element index), so any thread count gives the
# same mask). No checks: the caller guarantees the lengths and 0 <= drop_below32 < 2**32.

# The 32-bit uniform of element i is U_i = hi_i * 2**24 + lo_i, hi_i = byte i % 8 of
# W(key, i//8 + 1), lo_i = low 24 bits of W(key2, i + 1) (needed only when hi_i ties the
# threshold's top byte); W(k, c) = mum(s, s ^ WY1), s = k + c*WY0 (wyrand; mum = high xor low 64 bits of the
# 128-bit product); key = splitmix64(seed + G), key2 = splitmix64(key + G),
# G = 0x9E3779B97F4A7C15, WY0 = 0xA0761D6478BD642F, WY1 = 0xE7037ED1A0B428DB. Kept iff
# U_i >= drop_below32.
cdef unsigned long long dropout_key(unsigned long long seed) noexcept nogil

cdef void dropout_forward_n(const float* x__n, Py_ssize_t n, unsigned long long seed,
                            unsigned long long drop_below32, float scale,
                            float* y__n, unsigned char* mask__n) noexcept nogil

# The same, element i drawing as element offset + i (a slice of a longer array's mask).
cdef void dropout_forward_offset_n(const float* x__n, Py_ssize_t n, unsigned long long seed,
                                   unsigned long long offset, unsigned long long drop_below32,
                                   float scale, float* y__n,
                                   unsigned char* mask__n) noexcept nogil

cdef void dropout_backward_n(const float* dy__n, const unsigned char* mask__n, Py_ssize_t n,
                             float scale, float* dx__n) noexcept nogil
