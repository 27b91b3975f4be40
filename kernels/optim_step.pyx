# cython: language_level=3
"""Fused Keras 3 optimizer updates over one flat float32 parameter buffer (C, OpenMP).

Design note
- Layout: params `w__n`, grads `g__n` and the optimizer slots (`s0__n`, `s1__n`, `s2__n`) are
  flat float32 vectors of the same length n; the model's variables are runs of it, given by the
  int64 offsets `seg__k1` (k+1 of them). One call does a whole training step:
      clip (clipvalue bounds, then the variable's norm-clipping scale) -> decoupled weight decay
      -> the rule's update of the slots and of w
  in a single pass over memory (read w, g, slots; write w, slots). The buffer is cut into
  CHUNK-element chunks run in parallel (prange); inside a chunk the walk follows the variables
  so each gets its own gradient scale (Keras clips `clipnorm` per variable). The rule is chosen
  once per run of elements, never per element, and each rule is one plain elementwise loop that
  GCC vectorises (packed sqrt/div thanks to -fno-math-errno).
- Constants `c` (float32, computed once per step by fastnn.kernels.optim as Keras does in
  float32): c[0] lr, c[1] weight decay, c[2] clip low, c[3] clip high, c[4:12] rule constants.
- Why C and not Numba: a first version in Numba was as fast, but loading it from Numba's cache
  cost ~1 s per process (Numba's import pulls in SciPy), which alone broke the 1 s
  time-to-first-step budget. Numba (fastnn._kernels.optim_jit) keeps only the norm-clipping
  reduction, imported when a step clips by norm.
- Numerics: IEEE float32, no fast-math, the operation order of Keras's update_step, float32
  temporaries. Without -march flags there is no FMA, so nothing is contracted.
- No checks here: fastnn.kernels.optim validates every buffer first.
"""
from cython.parallel cimport prange
from libc.math cimport sqrtf, fabsf

cdef enum:
    CHUNK = 16384

# rule variants; fastnn.kernels.optim maps (kind, options) onto them through VARIANTS
cdef enum:
    SGD = 0
    SGD_MOMENTUM = 1
    SGD_NESTEROV = 2
    RMSPROP = 3
    RMSPROP_MOMENTUM = 4
    RMSPROP_CENTERED = 5
    RMSPROP_CENTERED_MOMENTUM = 6
    ADAGRAD = 7
    ADADELTA = 8
    ADAM = 9
    ADAM_AMSGRAD = 10
    ADAMAX = 11
    NADAM = 12
    N_VARIANTS = 13

VARIANTS = {"SGD": SGD, "SGD_MOMENTUM": SGD_MOMENTUM, "SGD_NESTEROV": SGD_NESTEROV, "RMSPROP": RMSPROP,
            "RMSPROP_MOMENTUM": RMSPROP_MOMENTUM, "RMSPROP_CENTERED": RMSPROP_CENTERED,
            "RMSPROP_CENTERED_MOMENTUM": RMSPROP_CENTERED_MOMENTUM, "ADAGRAD": ADAGRAD, "ADADELTA": ADADELTA,
            "ADAM": ADAM, "ADAM_AMSGRAD": ADAM_AMSGRAD, "ADAMAX": ADAMAX, "NADAM": NADAM}


cdef inline float _nanmax(float a, float b) noexcept nogil:
    # max(a, b) propagating NaN from either side (np.maximum)
    if a >= b or a != a:
        return a
    return b


cdef inline float _grad(const float* g, Py_ssize_t i, float gs, float lo, float hi) noexcept nogil:
    # clipped gradient: clamp to [lo, hi] (NaN passes), then scale
    cdef float gi = g[i]
    if gi < lo:
        gi = lo
    if gi > hi:
        gi = hi
    return gi * gs


cdef inline float _decayed(const float* w, Py_ssize_t i, bint decay, float wd, float lr) noexcept nogil:
    # w after Keras's decoupled weight decay `w - w*wd*lr` (skipped when off)
    cdef float wi = w[i]
    if decay:
        wi = wi - wi * wd * lr
    return wi


cdef void _run(int variant, float* w, const float* g, float* s0, float* s1, float* s2,
               Py_ssize_t n, float gs, const float* c, bint decay) noexcept nogil:
    # update the n elements at w (one variable's run inside one chunk) with rule `variant`
    cdef float lr = c[0], wd = c[1], lo = c[2], hi = c[3]
    cdef float c0 = c[4], c1 = c[5], c2 = c[6], c3 = c[7], c4 = c[8], c5 = c[9], c6 = c[10], c7 = c[11]
    cdef Py_ssize_t i
    cdef float gi, wi, m, v, avg, acc, ag, ad, delta, u, m_hat, v_hat
    # the rule is chosen once per run; each rule's loop is plain elementwise code
    if variant == SGD:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            w[i] = _decayed(w, i, decay, wd, lr) - gi * lr
    elif variant == SGD_MOMENTUM:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i] * c0 - gi * lr
            s0[i] = m
            w[i] = wi + m
    elif variant == SGD_NESTEROV:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i] * c0 - gi * lr
            s0[i] = m
            w[i] = wi + (m * c0 - gi * lr)
    elif variant == RMSPROP:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            w[i] = wi - (lr * gi) / sqrtf(v + c2)
    elif variant == RMSPROP_MOMENTUM:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            m = c3 * s1[i] + (lr * gi) / sqrtf(v + c2)
            s1[i] = m
            w[i] = wi - m
    elif variant == RMSPROP_CENTERED:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            avg = c0 * s2[i] + c1 * gi
            s2[i] = avg
            w[i] = wi - (lr * gi) / sqrtf(v - avg * avg + c2)
    elif variant == RMSPROP_CENTERED_MOMENTUM:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            avg = c0 * s2[i] + c1 * gi
            s2[i] = avg
            m = c3 * s1[i] + (lr * gi) / sqrtf(v - avg * avg + c2)
            s1[i] = m
            w[i] = wi - m
    elif variant == ADAGRAD:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            acc = s0[i] + gi * gi
            s0[i] = acc
            w[i] = wi - (lr * gi) / sqrtf(acc + c0)
    elif variant == ADADELTA:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            ag = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = ag
            ad = s1[i]
            delta = -((sqrtf(ad + c2) * gi) / sqrtf(ag + c2))
            s1[i] = c0 * ad + c1 * (delta * delta)
            w[i] = wi + lr * delta
    elif variant == ADAM:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i]
            m = m + (gi - m) * c0
            s0[i] = m
            v = s1[i]
            v = v + (gi * gi - v) * c1
            s1[i] = v
            w[i] = wi - (m * c2) / (sqrtf(v) + c3)
    elif variant == ADAM_AMSGRAD:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i]
            m = m + (gi - m) * c0
            s0[i] = m
            v = s1[i]
            v = v + (gi * gi - v) * c1
            s1[i] = v
            v = _nanmax(s2[i], v)
            s2[i] = v
            w[i] = wi - (m * c2) / (sqrtf(v) + c3)
    elif variant == ADAMAX:
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i]
            m = m + (gi - m) * c0
            s0[i] = m
            u = _nanmax(c1 * s1[i], fabsf(gi))
            s1[i] = u
            w[i] = wi - (lr * m) / (c2 * (u + c3))
    else:  # NADAM
        for i in range(n):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i]
            m = m + (gi - m) * c0
            s0[i] = m
            v = s1[i]
            v = v + (gi * gi - v) * c1
            s1[i] = v
            m_hat = (c2 * m) / c3 + (c4 * gi) / c5
            v_hat = v / c6
            w[i] = wi - (m_hat * lr) / (sqrtf(v_hat) + c7)


cdef inline Py_ssize_t _first_segment(const long long* seg, Py_ssize_t k, Py_ssize_t start) noexcept nogil:
    # the variable holding element `start`: largest s < k with seg[s] <= start
    cdef Py_ssize_t lo = 0, hi = k - 1, mid
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if seg[mid] <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo


def step(int variant, float[::1] w__n, const float[::1] g__n, float[::1] s0__n, float[::1] s1__n,
         float[::1] s2__n, const long long[::1] seg__k1, const float[::1] gscale__k,
         const float[::1] c, bint decay, int nthreads):
    """One fused optimizer step in place (see the module note).

    w__n (n,) OUT params; g__n (n,) IN grads (not written); s0/s1/s2 (n,) IN/OUT slots;
    seg__k1 (k+1,) int64 offsets 0..n; gscale__k (k,) float32 per-variable gradient scale
    (1 without norm clipping); c (12,) float32 constants; decay: apply weight decay.

    Slots that the rule does not use may be any float32 vector (they are never indexed); used
    slots have n elements. nthreads: OpenMP threads (1 runs serially in the caller).
    """
    cdef Py_ssize_t n = w__n.shape[0]
    cdef Py_ssize_t k = seg__k1.shape[0] - 1
    cdef Py_ssize_t nchunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t ci, a, b, end, s
    cdef float* w = &w__n[0] if n else NULL
    cdef const float* g = &g__n[0] if n else NULL
    # unused slots are short dummies: point them at w (never read or written by the rule)
    cdef float* s0 = &s0__n[0] if s0__n.shape[0] >= n and n else w
    cdef float* s1 = &s1__n[0] if s1__n.shape[0] >= n and n else w
    cdef float* s2 = &s2__n[0] if s2__n.shape[0] >= n and n else w
    cdef const long long* seg = &seg__k1[0]
    cdef const float* gsc = &gscale__k[0]
    cdef const float* cc = &c[0]
    if n == 0:
        return
    if nthreads < 1:
        nthreads = 1
    if nchunks < nthreads:
        nthreads = <int>nchunks
    for ci in prange(nchunks, nogil=True, schedule="static", num_threads=nthreads):
        a = ci * CHUNK
        end = a + CHUNK
        if end > n:
            end = n
        s = _first_segment(seg, k, a)
        while a < end:
            b = seg[s + 1]
            if b > end:
                b = end
            if b > a:
                _run(variant, w + a, g + a, s0 + a, s1 + a, s2 + a, b - a, gsc[s], cc, decay)
            a = b
            s = s + 1
