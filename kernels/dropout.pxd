# C-level API of fastnn._kernels.dropout: inverted dropout on n contiguous float32 values with a
# counter-based mask (a pure function of (seed, element index), so any thread count gives the
# same mask). No checks: the caller guarantees the lengths and 0 <= drop_below32 < 2**32.

# The 32-bit uniform of element i: half i%2 (low half for even i) of mix64(key + (i//2 + 1)*G),
# key = mix64(seed + G), G = 0x9E3779B97F4A7C15, mix64 = the splitmix64 finalizer.
cdef unsigned long long dropout_key(unsigned long long seed) noexcept nogil

cdef void dropout_forward_n(const float* x__n, Py_ssize_t n, unsigned long long seed,
                            unsigned long long drop_below32, float keep,
                            float* y__n, unsigned char* mask__n) noexcept nogil

cdef void dropout_backward_n(const float* dy__n, const unsigned char* mask__n, Py_ssize_t n,
                             float keep, float* dx__n) noexcept nogil
