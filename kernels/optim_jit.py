"""Fused Keras 3 optimizer updates over one flat float32 parameter buffer (Numba).

Design note
-----------
Layout: params `w__n`, grads `g__n` and the optimizer slots (`s0__n`, `s1__n`, `s2__n`) are
flat float32 vectors of the same length n; the model's variables are runs of it, given by the
int64 offsets `seg__k1` (k+1 of them). One call does a whole training step:

    clip (clipvalue bounds, then the run's norm-clipping scale) -> decoupled weight decay
    -> the rule's update of the slots and of w

in a single pass over memory (read w, g, slots; write w, slots). The buffer is cut into
CHUNK-element chunks run in parallel (`prange`); inside a chunk the walk follows the variables
so each run gets its own gradient scale (Keras clips `clipnorm` per variable). The rule is
chosen once per run (an `if` chain over a few thousand elements), never per element, and each
rule's loop is a plain elementwise loop that LLVM vectorises (sqrt and divide included).

Why Numba and not Cython here: GCC vectorises `sqrtf` only under -fno-math-errno, which the
shared build does not pass, so a Cython loop ran the square roots and divisions one at a time;
LLVM (through Numba) emits packed sqrt/div without any fast-math flag.

Numerics: no fast-math on the update loops (IEEE float32, same operation order as Keras's
`update_step`, so the NumPy reference agrees to the last bit or so). Only the sum of squares
for norm clipping allows reassociation, and it accumulates in float64.

Rule constants `c` (float32, computed once per step by fastnn.kernels.optim):
    c[0] lr, c[1] weight decay, c[2] clip low, c[3] clip high, c[4:12] rule constants (below).
"""
import numpy as np
from numba import njit, prange

# Flags in one place. error_model="numpy": float division by zero gives inf/NaN as in NumPy
# (and keeps the loops free of Python-style zero checks, which would block vectorisation).
UPDATE_FLAGS = dict(cache=True, nogil=True, error_model="numpy")
# Reassociation only where a reduction needs it; never nnan/ninf (NaN must stay visible).
SUM_FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})

CHUNK = 16384  # elements per parallel work item: 64 KiB per stream, a few streams fit L2

# rule variants (one per update loop); fastnn.kernels.optim maps (kind, options) onto them
SGD, SGD_MOMENTUM, SGD_NESTEROV = 0, 1, 2
RMSPROP, RMSPROP_MOMENTUM, RMSPROP_CENTERED, RMSPROP_CENTERED_MOMENTUM = 3, 4, 5, 6
ADAGRAD, ADADELTA, ADAM, ADAM_AMSGRAD, ADAMAX, NADAM = 7, 8, 9, 10, 11, 12
N_VARIANTS = 13


@njit(inline="always", **UPDATE_FLAGS)
def _grad(g, i, gs, lo, hi):
    """Clipped gradient: clamp to [lo, hi] (NaN passes, as torch.clamp), then scale."""
    gi = g[i]
    if gi < lo:
        gi = lo
    if gi > hi:
        gi = hi
    return gi * gs


@njit(inline="always", **UPDATE_FLAGS)
def _decayed(w, i, decay, wd, lr):
    """w after Keras's decoupled weight decay `w - w*wd*lr` (skipped when off)."""
    wi = w[i]
    if decay:
        wi = wi - wi * wd * lr
    return wi


@njit(inline="always", **UPDATE_FLAGS)
def _nanmax(a, b):
    """max(a, b) propagating NaN from either side (torch.maximum / np.maximum)."""
    if a >= b or a != a:
        return a
    return b


@njit(**UPDATE_FLAGS)
def _run(variant, w, g, s0, s1, s2, a, b, gs, c, decay):
    """Update elements a..b of one variable with rule `variant` (see the module note)."""
    lr, wd, lo, hi = c[0], c[1], c[2], c[3]
    c0, c1, c2, c3, c4, c5, c6, c7 = c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
    # Views of the run, indexed from 0: with a provably non-negative index LLVM drops the
    # negative-index wraparound and vectorises the loops (it does not for range(a, b)).
    w, g, s0, s1, s2 = w[a:b], g[a:b], s0[a:b], s1[a:b], s2[a:b]
    a, b = 0, w.shape[0]
    if variant == SGD:                      # w -= g*lr
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            w[i] = _decayed(w, i, decay, wd, lr) - gi * lr
    elif variant == SGD_MOMENTUM:           # c0 momentum: m = m*mu - g*lr; w += m
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i] * c0 - gi * lr
            s0[i] = m
            w[i] = wi + m
    elif variant == SGD_NESTEROV:           # m = m*mu - g*lr; w += m*mu - g*lr
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i] * c0 - gi * lr
            s0[i] = m
            w[i] = wi + (m * c0 - gi * lr)
    elif variant == RMSPROP:                # c0 rho, c1 1-rho, c2 epsilon; s0 velocity
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            w[i] = wi - (lr * gi) / np.sqrt(v + c2)
    elif variant == RMSPROP_MOMENTUM:       # c3 momentum; s1 momentum: m = mu*m + inc; w -= m
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            m = c3 * s1[i] + (lr * gi) / np.sqrt(v + c2)
            s1[i] = m
            w[i] = wi - m
    elif variant == RMSPROP_CENTERED:       # s2 average gradient: denominator v - avg^2 + eps
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            avg = c0 * s2[i] + c1 * gi
            s2[i] = avg
            w[i] = wi - (lr * gi) / np.sqrt(v - avg * avg + c2)
    elif variant == RMSPROP_CENTERED_MOMENTUM:
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            v = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = v
            avg = c0 * s2[i] + c1 * gi
            s2[i] = avg
            m = c3 * s1[i] + (lr * gi) / np.sqrt(v - avg * avg + c2)
            s1[i] = m
            w[i] = wi - m
    elif variant == ADAGRAD:                # c0 epsilon; s0 accumulator
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            acc = s0[i] + gi * gi
            s0[i] = acc
            w[i] = wi - (lr * gi) / np.sqrt(acc + c0)
    elif variant == ADADELTA:               # c0 rho, c1 1-rho, c2 eps; s0 E[g^2], s1 E[dx^2]
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            ag = c0 * s0[i] + c1 * (gi * gi)
            s0[i] = ag
            ad = s1[i]
            delta = -((np.sqrt(ad + c2) * gi) / np.sqrt(ag + c2))
            s1[i] = c0 * ad + c1 * (delta * delta)
            w[i] = wi + lr * delta
    elif variant == ADAM or variant == ADAM_AMSGRAD:
        # c0 1-beta_1, c1 1-beta_2, c2 alpha = lr*sqrt(1-beta_2^t)/(1-beta_1^t), c3 epsilon;
        # s0 m, s1 v, s2 v_hat
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i]
            m = m + (gi - m) * c0
            s0[i] = m
            v = s1[i]
            v = v + (gi * gi - v) * c1
            s1[i] = v
            if variant == ADAM_AMSGRAD:
                v = _nanmax(s2[i], v)
                s2[i] = v
            w[i] = wi - (m * c2) / (np.sqrt(v) + c3)
    elif variant == ADAMAX:
        # c0 1-beta_1, c1 beta_2, c2 1-beta_1^t, c3 epsilon; s0 m, s1 u
        for i in range(a, b):
            gi = _grad(g, i, gs, lo, hi)
            wi = _decayed(w, i, decay, wd, lr)
            m = s0[i]
            m = m + (gi - m) * c0
            s0[i] = m
            u = _nanmax(c1 * s1[i], np.abs(gi))
            s1[i] = u
            w[i] = wi - (lr * m) / (c2 * (u + c3))
    elif variant == NADAM:
        # c0 1-beta_1, c1 1-beta_2, c2 u_{t+1}, c3 1-prod_{t+1}, c4 1-u_t, c5 1-prod_t,
        # c6 1-beta_2^t, c7 epsilon; s0 m, s1 v
        for i in range(a, b):
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
            w[i] = wi - (m_hat * lr) / (np.sqrt(v_hat) + c7)


@njit(inline="always", **UPDATE_FLAGS)
def _first_segment(seg__k1, k, start):
    """The variable holding element `start`: largest s < k with seg[s] <= start."""
    lo, hi = 0, k - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if seg__k1[mid] <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo


@njit(parallel=True, **UPDATE_FLAGS)
def step(variant, w__n, g__n, s0__n, s1__n, s2__n, seg__k1, gscale__k, c, decay):
    """One fused optimizer step in place over the flat float32 buffer (see the module note).

    w__n (n,) OUT params; g__n (n,) IN grads (not written); s0/s1/s2 (n,) IN/OUT slots (unused
    ones may be any float32 vector); seg__k1 (k+1,) int64 offsets 0..n; gscale__k (k,) float32
    per-variable gradient scale (1 without norm clipping); c (12,) float32 constants.
    """
    n = w__n.shape[0]
    k = seg__k1.shape[0] - 1
    nchunks = (n + CHUNK - 1) // CHUNK
    for ci in prange(nchunks):
        a = ci * CHUNK
        end = min(a + CHUNK, n)
        s = _first_segment(seg__k1, k, a)
        while a < end:
            b = min(end, seg__k1[s + 1])
            if b > a:
                _run(variant, w__n, g__n, s0__n, s1__n, s2__n, a, b, gscale__k[s], c, decay)
            a = b
            s += 1


@njit(**SUM_FLAGS)
def _sumsq(x, a, b):
    """sum(x[a:b]**2) accumulated in float64."""
    x = x[a:b]  # index from 0 so the loop vectorises (see _run)
    acc = 0.0
    for i in range(x.shape[0]):
        xi = np.float64(x[i])
        acc += xi * xi
    return acc


@njit(parallel=True, **SUM_FLAGS)
def sumsq_segments(g__n, seg__k1, pieces, out__k):
    """out__k[s] = sum of g[seg[s]:seg[s+1]]**2 in float64, for every variable s.

    One parallel pass: each chunk writes the partial sum of every variable it touches into
    `pieces` at index chunk+variable (unique, since along the buffer one of the two grows at
    each step), then a short serial pass adds the pieces per variable.
    pieces: float64 (nchunks + k,) workspace; out__k: float64 (k,), overwritten.
    """
    n = g__n.shape[0]
    k = seg__k1.shape[0] - 1
    nchunks = (n + CHUNK - 1) // CHUNK
    for ci in prange(nchunks):
        a = ci * CHUNK
        end = min(a + CHUNK, n)
        s = _first_segment(seg__k1, k, a)
        while a < end:
            b = min(end, seg__k1[s + 1])
            pieces[ci + s] = _sumsq(g__n, a, b)
            a = b
            s += 1
    out__k[:] = 0.0
    for ci in range(nchunks):
        a = ci * CHUNK
        end = min(a + CHUNK, n)
        s = _first_segment(seg__k1, k, a)
        while a < end:
            b = min(end, seg__k1[s + 1])
            out__k[s] += pieces[ci + s]
            a = b
            s += 1


def n_pieces(n, k):
    """Size of the `pieces` workspace of sumsq_segments for n elements in k variables."""
    return (n + CHUNK - 1) // CHUNK + k


__all__ = ["step", "sumsq_segments", "n_pieces", "CHUNK", "N_VARIANTS"]
