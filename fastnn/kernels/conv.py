"""Convolution kernels: NHWC / NLC float32, kernel (KH, KW, C, F) as Keras, forward and backward.

A convolution is `col (N*OH*OW, KH*KW*C) @ w (KH*KW*C, F)`, whose (M, F) result already is the
NHWC output. The batch's output rows (n, oh) are cut into chunks whose col buffer stays near
CHUNK_BYTES; for each chunk the compiled im2col (fastnn._kernels.conv) fills the col buffer and
ONE np.matmul writes the chunk's slice of the output. The bias rides in that GEMM (a ones column
in col, a bias row under w). 1x1 convolutions with stride 1 and no padding skip im2col (x viewed
as (N*H*W, C)).

Backward per chunk: [dW; db] += [col | 1]ᵀ @ dY (one GEMM gives both), dcol = dY @ Wᵀ (written
into the col buffer, which is free by then) and col2im gathers it into dx; need_dx=False skips
the last two.

Threads: with at least as many images (output rows, forward) as threads, each thread runs a
contiguous share of the batch end to end with single-threaded BLAS and kernels (see `_run`: the
OpenMP and OpenBLAS thread pools do not mix well around every chunk). Smaller batches use the
OpenMP loops plus multi-threaded BLAS per chunk.

Few input channels (KH*KW*C <= DIRECT_MAX_K): im2col would be the bulk of the work (a GEMM of
10-28 columns is memory-bound), so forward and the need_dx=False backward run the direct kernels
of fastnn._kernels.conv_direct instead (no col buffer; bias, ReLU and the y= mask fused; the
same `_run` shares over output rows). `DIRECT` forces either path. conv2d(pool=(2, 2)) with a
plain ReLU runs conv + ReLU + 2x2 max pool on them in one pass (inference).

3x3 convolutions with stride 1, dilation 1, pads <= 2 and C >= 8, F >= 4 take the Winograd
F(2x2, 3x3) path instead (`_wino_forward` / `_wino_backward`, transforms in
fastnn._kernels.winograd): per chunk of 4x4 input tiles, V = BᵀdB, 16 GEMMs V[xi] @ U[xi]
(U = GgGᵀ), y = AᵀMA; 16 multiplications per 2x2 outputs instead of 36, measured 1.5-2x faster
than im2col forward and backward on the bench shapes, as accurate (float32 error ~3e-7 of the
output's scale). `WINOGRAD = False` (or FASTNN_CONV_WINOGRAD=0) forces im2col everywhere.

The col, weight and partial-gradient buffers live in a per-thread workspace that only grows, so
a training step at a fixed shape allocates nothing. Every argument is checked here: the compiled
loops behind trust what they get.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastnn._kernels import conv as _k
from fastnn._kernels import conv_direct as _cd
from fastnn._kernels import winograd as _wg
from fastnn.kernels._checks import as_tuple, check_array, check_no_overlap, prepare_out
from fastnn.kernels._geometry import conv_geometry, resolve_padding
from fastnn.kernels.threads import get_num_threads

__all__ = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward"]

# Target size of the col buffer of one chunk. Measured on the bench shapes (2-core EPYC, 1 MB
# L2 per core, OpenBLAS, CPU time of one thread): 0.5-2 MB are best and equal, 4 MB is 3-5% and
# 8 MB 5-15% slower (the col no longer stays in L2 between im2col and the GEMM); the chunked
# conv then beats the bare GEMM of the whole shape, whose operands come from memory.
CHUNK_BYTES = 2 << 20

# Below this many flops a call runs in the calling thread (thread start-up would dominate).
SERIAL_FLOPS = 4e6

# The direct (im2col-free) kernels of fastnn._kernels.conv_direct, for few input channels.
# DIRECT: None = automatic (kernel rows KH*KW*C <= DIRECT_MAX_K, and F <= DIRECT_MAX_F in
# forward; backward only with need_dx=False), True = direct whenever it applies (KH*KW*C <=
# conv_direct.KMAX), False = always im2col + GEMM. Tests and benchmarks set it to force a path.
# Measured (bench/test_conv_direct.py and a sweep over C, F, KH at 32x32, batch 64, 2 threads,
# interleaved): direct/im2col time 0.3-0.7 for K <= 64 with F <= 64 (forward and dw/db), about
# 1.0 for forward at F = 128 and 1.08 at F = 256 (the GEMM reuses x better over many filters);
# backward stayed faster up to F = 256. Up to K = 288 it was faster at 32x32 but mixed on
# smaller images (13x13x32 -> 64: 0.9-1.5), so the automatic rule stops at 64.
DIRECT = None
DIRECT_MAX_K = 64
DIRECT_MAX_F = 128
# Instruction-set flavour of the direct kernels (0 portable, 1 AVX2+FMA, 2 AVX-512F); None: the
# best this CPU runs. Tests set it to exercise every flavour.
DIRECT_ISA = None
# Winograd F(2x2, 3x3) for 3x3 stride-1 dilation-1 convolutions (see _use_winograd and
# kernels/winograd.pyx). False (or FASTNN_CONV_WINOGRAD=0 at import) forces im2col + GEMM.
WINOGRAD = os.environ.get("FASTNN_CONV_WINOGRAD", "1") != "0"
# Smallest C and F that take the Winograd path. Measured (batch 64, 32x32 'same', forward /
# backward speed-up over im2col): C=8 F=8 1.2x / 1.7x, C=32 F=4 1.9x / 2.2x, C=32 F=1 1.3x /
# 2.0x, but C=3 F=32 0.9x / 1.2x, C=4 F=16 0.93x / 1.05x, C=1 F=32 0.15x (im2col's K = 9*C
# GEMM is thin but Winograd's K = C GEMMs are thinner still).
WINO_MIN_C = 8
WINO_MIN_F = 4
# Target size of a chunk's V (16, T, C) and M (16, T, F) tile buffers together.
WINO_CHUNK_BYTES = 1536 << 10

_tls = threading.local()
_pool_lock = threading.Lock()
_pool_state = {"pool": None, "n": 0, "pid": None, "blas": None}


def _pool(n: int) -> ThreadPoolExecutor:
    """The worker threads (n of them), made anew after a fork (the child has no threads)."""
    if _pool_state["n"] != n or _pool_state["pid"] != os.getpid():
        if _pool_state["pool"] is not None and _pool_state["pid"] == os.getpid():
            _pool_state["pool"].shutdown(wait=True)
        _pool_state["pool"] = ThreadPoolExecutor(n, thread_name_prefix="fastnn-conv")
        _pool_state["n"], _pool_state["pid"] = n, os.getpid()
    return _pool_state["pool"]


def _blas_single_thread():
    """Context in which the BLAS libraries NumPy uses run each call on one thread."""
    if _pool_state["blas"] is None:
        from threadpoolctl import ThreadpoolController

        _pool_state["blas"] = ThreadpoolController().select(user_api="blas")
    return _pool_state["blas"].limit(limits=1)


class blas_pinned:
    """Context for a whole model step: BLAS runs single-threaded, parallelism comes only from
    the kernels' own shares (see `_run`).

    Measured (2 cores): OpenBLAS's idle worker spins ~0.1 s after every multi-threaded call,
    so a step that mixed BLAS-threaded GEMMs with the kernels' shares and OpenMP loops ran with
    a spinning thread on one core: M1 training 21 ms a step instead of 13, and on a loaded
    machine 280 ms. Reentrant; `pinned()` tells the kernels to split smaller GEMMs too.
    """

    def __enter__(self):
        if _pool_state.setdefault("pinned", 0) == 0:
            _pool_state["limiter"] = _blas_single_thread()
        _pool_state["pinned"] += 1
        return self

    def __exit__(self, *exc):
        _pool_state["pinned"] -= 1
        if _pool_state["pinned"] == 0:
            limiter, _pool_state["limiter"] = _pool_state["limiter"], None
            limiter.restore_original_limits()
        return False


def pinned() -> bool:
    return _pool_state.get("pinned", 0) > 0


def _workspace(name: str, size: int, dtype=np.float32) -> np.ndarray:
    """A flat per-thread scratch buffer of at least `size` elements, reused across calls."""
    cache = getattr(_tls, "buffers", None)
    if cache is None:
        cache = _tls.buffers = {}
    buf = cache.get(name)
    if buf is None or buf.size < size:
        buf = cache[name] = np.empty(max(size, 1), dtype)
    return buf[:size]


def _chunk_rows(total_rows: int, ow: int, k: int) -> int:
    """Output rows (n, oh) per chunk: col stays near CHUNK_BYTES, chunks of equal size."""
    rows = max(1, CHUNK_BYTES // max(1, ow * k * 4))
    nchunks = -(-total_rows // rows)
    return -(-total_rows // nchunks)


# ---------------------------------------------------------------- argument checks

def _check_weights(x, w, fn: str, rank: int):
    """x (N, *spatial, C) and w (*kernel, C, F): float32, C-contiguous, matching C."""
    lay = "NHWC" if rank == 2 else "NLC"
    klay = "(KH, KW, C, F)" if rank == 2 else "(K, C, F)"
    x = check_array(x, "x", fn, ndim=rank + 2)
    w = check_array(w, "w", fn, ndim=rank + 2)
    if any(s < 1 for s in w.shape):
        raise ValueError(f"{fn}: w must have shape {klay} with every size >= 1; received shape {w.shape}.")
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(f"{fn}: w has {w.shape[-2]} input channels (w.shape[{rank}]) but x ({lay}) has "
                         f"{x.shape[-1]}; w must have shape {klay} with C = x.shape[-1].")
    return x, w


def _check_padding_2d(padding, fn: str):
    names = [padding] if isinstance(padding, str) else (list(padding) if isinstance(padding, (tuple, list)) else [])
    for p in names:
        if isinstance(p, str) and p.lower() == "causal":
            raise ValueError(f"{fn}: padding 'causal' is only defined for conv1d; use 'valid', 'same' "
                             f"or ((top, bottom), (left, right)).")


def _geometry_2d(x, w, strides, padding, dilation, fn: str):
    strides = as_tuple(strides, 2, "strides", fn)
    dilation = as_tuple(dilation, 2, "dilation", fn)
    _check_padding_2d(padding, fn)
    if not isinstance(padding, str) and isinstance(padding, (tuple, list)) and len(padding) == 2 \
            and not all(isinstance(p, (tuple, list)) for p in padding):
        raise ValueError(f"{fn}: padding must be 'valid', 'same' or ((top, bottom), (left, right)); "
                         f"received {padding!r}.")
    (pt, pb, oh), (pl, pr, ow) = conv_geometry(x.shape[1:3], w.shape[:2], strides, dilation, padding, fn,
                                               window="w", data="x")
    _check_pad_size((pt, pb, pl, pr), padding, fn)
    return strides, dilation, (pt, pb, pl, pr), (oh, ow)


_MAX_PAD = 1 << 30


def _check_pad_size(pads, padding, fn: str):
    """Pads of 2**30 and more (explicit, or 'same'/'causal' with a huge dilation) would ask for
    outputs or padded copies of terabytes (a MemoryError, not a message)."""
    if max(pads) >= _MAX_PAD:
        raise ValueError(f"{fn}: the pads must be below 2**30; padding {padding!r} with this "
                         f"dilation gives {tuple(pads)}. Use a smaller dilation or padding.")


def _geometry_1d(x, w, stride, padding, dilation, fn: str):
    stride = as_tuple(stride, 1, "stride", fn)[0]
    dilation = as_tuple(dilation, 1, "dilation", fn)[0]
    if not isinstance(padding, str):
        if not isinstance(padding, (tuple, list)):
            raise ValueError(f"{fn}: padding must be 'valid', 'same', 'causal' or (left, right); "
                             f"received {padding!r}.")
    left, right, ol = resolve_padding(x.shape[1], w.shape[0], stride, dilation, padding, "padding", fn,
                                      window="w", data="x")
    _check_pad_size((left, right), padding, fn)
    return (1, stride), (1, dilation), (0, 0, left, right), (1, ol)


def _check_bias(b, f: int, fn: str):
    if b is None:
        return None
    return check_array(b, "b", fn, ndim=1, shape=(f,))


def _no_overlap(outs, ins, fn: str):
    for name_o, o in outs:
        if o is None:
            continue
        for name_i, i in ins:
            if i is not None and name_i != name_o:
                check_no_overlap(o, i, name_o, name_i, fn)


# ---------------------------------------------------------------- compute (validated 4-D NHWC)

def _threads_for(n_items: int, flops: float) -> int:
    """How many tasks _run will split n_items into (1, or the policy's thread count)."""
    t = get_num_threads()
    return t if (t > 1 and flops >= SERIAL_FLOPS and n_items >= t) else 1


def _run(work, n_items: int, flops: float):
    """Run work(task, i0, i1, nthreads) over items [0, n_items): split across threads or not.

    Measured: interleaving OpenMP regions (im2col) with multi-threaded OpenBLAS GEMMs makes the
    two thread pools wait on each other (idle threads spin or sleep/wake around every chunk), and
    on a busy machine a conv ran 5-20x slower than its bare GEMM. So when there are at least as
    many items (images, or output rows) as threads, each thread runs its share end to end with a
    single-threaded BLAS and single-threaded kernels: no synchronisation until the end. A
    small problem runs in the caller; a batch too small to split (N=1) uses OpenMP + BLAS threads.
    Task i of _threads_for(n_items, flops) tasks covers a contiguous range of items.
    """
    t = _threads_for(n_items, flops)
    if t == 1:
        serial = get_num_threads() == 1 or flops < SERIAL_FLOPS
        work(0, 0, n_items, 1 if serial else 0)
        return
    if not _pool_lock.acquire(blocking=False):     # another thread is using the pool
        for i in range(t):
            work(i, n_items * i // t, n_items * (i + 1) // t, 0)
        return
    try:
        pool = _pool(t)
        bounds = [n_items * i // t for i in range(t + 1)]
        with _blas_single_thread():
            # the caller runs the first share itself: one thread hand-off fewer per call
            futures = [pool.submit(work, i, bounds[i], bounds[i + 1], 1) for i in range(1, t)]
            try:
                work(0, bounds[0], bounds[1], 1)
            finally:
                for fut in futures:
                    fut.result()
    finally:
        _pool_lock.release()


_NO_BIAS = np.zeros(1, np.float32)
_SERIAL = 1 << 62      # bias_act's parallel threshold that keeps it in the calling thread


def _epilogue(activation, act_params, fn):
    """(kind, smax, params) of the activation for fastnn._kernels.activation.bias_act, None if linear."""
    from fastnn.kernels import activation as A

    if activation == "linear" and not act_params:
        return None
    kind, p, axis = A.resolve(activation, act_params, f"{fn}(activation={activation!r})")
    if axis is not None and axis not in (-1,):
        raise ValueError(f"{fn}: the fused {activation} acts across the filters (axis -1); received "
                         f"axis={axis}. Apply fastnn.kernels.activation.apply to the output instead.")
    if kind == 0:
        return None
    return max(kind, 0), (1 if kind == -1 else 2 if kind == -2 else 0), p


_PLAIN_RELU = (1, 0, (0.0, 0.0, 0.0, 0.0))


def _apply_epilogue(y2, act, nthreads, affine=None):
    """In place epilogue of the (rows, F) output rows y2 (no bias: it rode in the GEMM):
    the per-filter affine (y - center)*scale + shift when given, then the activation."""
    from fastnn._kernels import activation as _act
    from fastnn.kernels import activation as A

    if not y2.shape[0]:
        return
    if affine is not None:
        from fastnn._kernels import norm as _norm

        relu = act == _PLAIN_RELU
        _norm.affine_rows(y2, affine[0], affine[1], affine[2], relu)
        if relu:
            return
    if act is not None:
        _act.bias_act(y2, _NO_BIAS, False, act[0], act[1], act[2], _SERIAL if nthreads == 1 else A.PARALLEL_MIN)


def _check_affine(affine, f: int, fn: str):
    """(center, scale, shift), each float32 (F,), or None."""
    if affine is None:
        return None
    if not isinstance(affine, (tuple, list)) or len(affine) != 3:
        raise ValueError(f"{fn}: affine must be (center, scale, shift), three float32 arrays of shape "
                         f"({f},); received {type(affine).__name__}.")
    return tuple(check_array(a, f"affine[{i}]", fn, ndim=1, shape=(f,)) for i, a in enumerate(affine))


def _check_pool(pool, out_hw, fn: str):
    """pool=(2, 2) (max, stride 2, 'valid') or None -> the pooled (OH // 2, OW // 2)."""
    if pool is None:
        return None
    if not isinstance(pool, (tuple, list)) or tuple(pool) != (2, 2):
        raise ValueError(f"{fn}: pool must be None or (2, 2) (a 2x2 stride-2 'valid' max pool); "
                         f"received {pool!r}. Call fastnn.kernels.pool.max_pool2d on the output instead.")
    if out_hw[0] < 2 or out_hw[1] < 2:
        raise ValueError(f"{fn}: pool=(2, 2) needs a convolution output of at least 2x2; the output "
                         f"is {out_hw[0]}x{out_hw[1]}.")
    return (out_hw[0] // 2, out_hw[1] // 2)


_BEST_ISA = next(i for i in (2, 1, 0) if _cd.isa_ok(i))
_zero_state = {"z": np.zeros(0, np.float32)}


def _isa(f: int) -> int:
    """The flavour for F filters: F is padded to whole vectors, 16 floats with AVX-512, 8 with
    AVX2; where AVX2 pads less it wins (measured, 1 thread, interleaved: AVX2/AVX-512 time 0.62
    at F=8, 0.73 at F=24, 0.83 forward / 1.06 backward at F=40), else AVX-512 (F=48: 0.95/1.17)."""
    if DIRECT_ISA is not None:
        return DIRECT_ISA
    if _BEST_ISA == 2 and _padded_f(f, 1) < _padded_f(f, 2):
        return 1
    return _BEST_ISA


def _zeros(size: int) -> np.ndarray:
    """A read-only row of >= size zeros (what padded kernel rows of the direct kernels read)."""
    z = _zero_state["z"]
    if z.size < size:
        z = np.zeros(max(size, 2 * z.size), np.float32)
        z.flags.writeable = False
        _zero_state["z"] = z
    return z


def _use_direct(k: int, f: int | None = None) -> bool:
    """Whether to run the direct kernels for K kernel rows (and f filters, forward)."""
    if DIRECT is False or k > _cd.KMAX:
        return False
    return DIRECT is True or (k <= DIRECT_MAX_K and (f is None or f <= DIRECT_MAX_F))


def _padded_f(f: int, isa: int) -> int:
    fb = _cd.block(isa)
    return -(-f // fb) * fb


def _direct_weights(w, b, isa):
    """w as (K, Fp) and b as (Fp,) with F padded to the F-block with zeros, in the caller's
    workspace (read by every task of the call)."""
    kh, kw, c, f = w.shape
    k = kh * kw * c
    fp = _padded_f(f, isa)
    wp = _workspace("cd_w", k * fp).reshape(k, fp)
    wp[:, :f] = w.reshape(k, f)
    wp[:, f:] = 0.0
    bp = _workspace("cd_b", fp)
    bp[:f] = 0.0 if b is None else b
    bp[f:] = 0.0
    return wp, bp


def _forward_direct(x, w, b, strides, dilation, pads, out_hw, out, act, affine=None):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    k = kh * kw * c
    isa = _isa(f)
    wp, bp = _direct_weights(w, b, isa)
    zrow = _zeros(wd * c)
    out2 = out.reshape(n * oh * ow, f)
    relu = affine is None and act == _PLAIN_RELU      # in registers (after an affine it cannot)
    rest = None if relu else act
    # an affine map or an activation other than plain ReLU runs on chunks of rows of ~64 KB
    # while they are in cache
    rows = n * oh if rest is None and affine is None else max(1, (64 << 10) // max(1, ow * f * 4))

    def work(task, q_lo, q_hi, nthreads):     # output rows q = n*OH + oh in [q_lo, q_hi)
        for q0 in range(q_lo, q_hi, rows):
            q1 = min(q0 + rows, q_hi)
            _cd.forward(x, wp, bp, zrow, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, out2, relu, isa)
            _apply_epilogue(out2[q0 * ow:q1 * ow], rest, nthreads, affine)

    _run(work, n * oh, 2.0 * out2.shape[0] * k * f)


def _forward_direct_pooled(x, w, b, strides, dilation, pads, out_hw, out):
    """conv + bias + ReLU + 2x2 max pool on the direct kernels: each task computes the two
    conv rows of a pooled row into a scratch pair in cache; only the pooled output is written."""
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    ph = oh // 2
    isa = _isa(f)
    wp, bp = _direct_weights(w, b, isa)
    zrow = _zeros(wd * c)

    def work(task, p_lo, p_hi, nthreads):     # pooled rows n*PH + ph in [p_lo, p_hi)
        scratch = _workspace("cd_pool", 2 * ow * f)
        _cd.conv_relu_maxpool(x, wp, bp, zrow, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, p_lo, p_hi,
                              scratch, out, isa)

    _run(work, n * ph, 2.0 * n * 2 * ph * ow * kh * kw * c * f)


def _backward_direct(x, w, dy, strides, dilation, pads, out_hw, dw_out, db, y):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    k = kh * kw * c
    isa = _isa(f)
    fp = _padded_f(f, isa)
    dy2 = dy.reshape(n * oh * ow, f)
    y2 = None if y is None else y.reshape(n * oh * ow, f)
    zrow = _zeros(wd * c)
    flops = 2.0 * dy2.shape[0] * k * f
    # one float64 partial [dW; db] (F padded) per task, summed below in a fixed order
    parts = _workspace("cd_parts", _threads_for(n * oh, flops) * (k + 1) * fp, np.float64)
    parts = parts.reshape(-1, k + 1, fp)

    def work(task, q_lo, q_hi, nthreads):     # output rows [q_lo, q_hi)
        part = parts[task]
        part.fill(0.0)
        dys = _workspace("cd_dys", (ow + k + 1) * fp)     # dy rows, float partials
        _cd.backward(x, dy2, y2, zrow, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q_lo, q_hi, dys,
                     part[:k], part[k], isa)

    _run(work, n * oh, flops)
    for extra in parts[1:]:
        np.add(parts[0], extra, out=parts[0])
    dw_out.reshape(k, f)[...] = parts[0][:k, :f]
    db[...] = parts[0][k, :f]


# ---------------------------------------------------------------- Winograd F(2x2, 3x3)

def _use_winograd(w, strides, dilation, pads) -> bool:
    """3x3, stride 1, dilation 1, pads <= 2 (valid, same or explicit), C and F in range."""
    kh, kw, c, f = w.shape
    return (WINOGRAD and kh == 3 and kw == 3 and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)
            and all(0 <= p <= 2 for p in pads) and c >= WINO_MIN_C and f >= WINO_MIN_F
            and max(c, f) <= _wg.CMAX)


def _wino_rows(n_rows: int, tw: int, c: int, f: int) -> int:
    """Tile rows per chunk: V and M stay near WINO_CHUNK_BYTES, chunks of equal size."""
    rows = max(1, WINO_CHUNK_BYTES // (16 * 4 * tw * (c + f)))
    nchunks = -(-n_rows // rows)
    return -(-n_rows // nchunks) if n_rows else 1


def _tiles(name: str, rows: int, t: int, k: int):
    """A (16, t, k) view of a per-thread workspace sized for `rows` tiles, its 16 slices
    1024*j + 16 floats apart: a multiple of 4 KB would put the 16 streams the transforms read
    or write per tile in one L1 set (8 ways), measured 2-3x slower. Returns (the (16, ld)
    buffer the transforms take, the (16, t, k) view the GEMMs take)."""
    ld = -(-rows * k // 1024) * 1024 + 16
    buf = _workspace(name, 16 * ld).reshape(16, ld)
    return buf, buf[:, :t * k].reshape(16, t, k)


def _wino_weights(w):
    """U (16, C, F) = G g G^T in the calling thread's workspace (read by every share)."""
    c, f = w.shape[2], w.shape[3]
    u = _workspace("wino_u", 16 * c * f).reshape(16, c, f)
    _wg.weight_transform(w, u)
    return u


class _WinoForward:
    """One Winograd forward call's geometry, transformed weights U and fused epilogue: the
    plain ReLU rides in the output transform (the same bits) unless an affine map (a following
    inference batch norm) has to come first; `act` is what is left for _apply_epilogue."""

    def __init__(self, x, w, b, pads, out_hw, act, affine):
        self.c, self.f = x.shape[3], w.shape[3]
        self.pt, self.pl = pads[0], pads[2]
        self.oh, self.ow = out_hw
        self.th, self.tw = -(-self.oh // 2), -(-self.ow // 2)
        self.u = _wino_weights(w)
        self.b, self.bias = b, _NO_BIAS if b is None else b
        self.relu = affine is None and act == _PLAIN_RELU
        self.act = None if self.relu else act

    def chunk(self, x, r0, r1, rows, out):
        """Tile rows [r0, r1) of x (of at most `rows`): input transform, 16 GEMMs V[xi] @ U[xi],
        output transform (+ bias, fused ReLU) into out (x's images)."""
        t = (r1 - r0) * self.tw
        vb, v = _tiles("wino_v", rows * self.tw, t, self.c)
        mb, m = _tiles("wino_m", rows * self.tw, t, self.f)
        _wg.input_tiles(x, self.pt, self.pl, self.th, self.tw, r0, r1, vb)
        np.matmul(v, self.u, out=m)
        _wg.output_tiles(mb, self.bias, self.b is not None, self.th, self.tw, r0, r1, out, self.relu)


def _wino_forward(x, w, b, pads, out_hw, out, act, affine=None):
    # Each thread owns a contiguous range of tile rows (n, ti), whose outputs no other tile
    # row writes, so even a batch of 1 splits; per chunk of tile rows: input transform, 16
    # GEMMs V[xi] @ U[xi], output transform (+ bias, ReLU) straight into y, and any other
    # activation while the chunk's output rows are in cache.
    g = _WinoForward(x, w, b, pads, out_hw, act, affine)
    n, oh, ow, th, f, act = x.shape[0], g.oh, g.ow, g.th, g.f, g.act
    out2 = out.reshape(n * oh * ow, f)

    def work(task, r_lo, r_hi, nthreads):
        rows = _wino_rows(r_hi - r_lo, g.tw, g.c, f)
        for r0 in range(r_lo, r_hi, rows):
            r1 = min(r0 + rows, r_hi)
            g.chunk(x, r0, r1, rows, out)
            if act is not None or affine is not None:     # output rows q = n*OH + oh
                q0 = (r0 // th) * oh + 2 * (r0 % th)
                q1 = (r1 // th) * oh + 2 * (r1 % th)
                _apply_epilogue(out2[q0 * ow:q1 * ow], act, nthreads, affine)

    _run(work, n * th, 18.0 * out2.shape[0] * g.c * f)


def _wino_forward_pooled(x, w, b, pads, out_hw, out, act, affine):
    """Inference: Winograd conv -> epilogue -> 2x2 max pool, a chunk of whole images at a time
    into a per-thread scratch that the pool reads in cache; only the pooled output is written.
    Each tile's arithmetic is _wino_forward's, so the bits are too."""
    from fastnn._kernels import pool as _pool_k

    g = _WinoForward(x, w, b, pads, out_hw, act, affine)
    n, oh, ow, th, f, act = x.shape[0], g.oh, g.ow, g.th, g.f, g.act

    def work(task, n_lo, n_hi, nthreads):     # images [n_lo, n_hi)
        rows = _wino_rows((n_hi - n_lo) * th, g.tw, g.c, f)      # tile rows per GEMM chunk
        per = max(1, rows // th)              # images per pooled chunk
        ybuf = _workspace("wino_ypool", min(per, n_hi - n_lo) * oh * ow * f)
        for i0 in range(n_lo, n_hi, per):
            i1 = min(i0 + per, n_hi)
            xs = x[i0:i1]
            ys = ybuf[:(i1 - i0) * oh * ow * f].reshape(i1 - i0, oh, ow, f)
            for r0 in range(0, (i1 - i0) * th, rows):
                g.chunk(xs, r0, min(r0 + rows, (i1 - i0) * th), rows, ys)
            _apply_epilogue(ys.reshape(-1, f), act, 1, affine)
            _pool_k.max_pool2x2_rows(ys, out[i0:i1])

    _run(work, n, 18.0 * n * oh * ow * g.c * f)


def _wino_backward(x, w, dy, pads, out_hw, dx, dw_out, db, y):
    # Per chunk: V recomputed from x, dM = A dY A^T (masked, db summed), dU += V^T dM; with dx,
    # dV = dM U^T (into V's buffer, free by then) and dx += B dV B^T. Threads own whole images
    # (the tiles' dx overlap only within an image): no races. dU and db are per-task partials.
    n, _, _, c = x.shape
    f = w.shape[3]
    pt, pl = pads[0], pads[2]
    oh, ow = out_hw
    th, tw = -(-oh // 2), -(-ow // 2)
    flops = (36.0 if dx is not None else 18.0) * n * oh * ow * c * f
    ut = None
    if dx is not None:   # U^T contiguous: dM @ U^T runs at the NN GEMM's speed (72 -> 108 GFLOP/s)
        ut = _workspace("wino_ut", 16 * c * f).reshape(16, f, c)
        np.copyto(ut, _wino_weights(w).transpose(0, 2, 1))
    tasks = _threads_for(n, flops)
    parts = _workspace("wino_parts", tasks * 16 * c * f).reshape(tasks, 16, c, f)
    dbs = _workspace("wino_db", tasks * f, np.float64).reshape(tasks, f)
    has_y = y is not None
    yv = y if has_y else dy

    def work(task, n_lo, n_hi, nthreads):
        du, dba = parts[task], dbs[task]
        du.fill(0.0)
        dba.fill(0.0)
        r_lo, r_hi = n_lo * th, n_hi * th
        rows = _wino_rows(r_hi - r_lo, tw, c, f)
        dut = _workspace("wino_dut", 16 * c * f).reshape(16, c, f)
        for r0 in range(r_lo, r_hi, rows):
            r1 = min(r0 + rows, r_hi)
            t = (r1 - r0) * tw
            vb, v = _tiles("wino_v", rows * tw, t, c)
            dmb, dm = _tiles("wino_m", rows * tw, t, f)
            _wg.input_tiles(x, pt, pl, th, tw, r0, r1, vb)
            _wg.dy_tiles(dy, yv, has_y, th, tw, r0, r1, dmb, dba)
            np.matmul(v.transpose(0, 2, 1), dm, out=dut)
            np.add(du, dut, out=du)
            if ut is not None:
                np.matmul(dm, ut, out=v)
                _wg.input_adjoint(vb, pt, pl, th, tw, r0, r1, dx)

    _run(work, n, flops)
    for extra in parts[1:]:
        np.add(parts[0], extra, out=parts[0])
    _wg.weight_adjoint(parts[0], dw_out)
    db_sum = _workspace("wino_dbsum", f, np.float64)
    np.sum(dbs, axis=0, out=db_sum)
    db[...] = db_sum


def _forward(x, w, b, strides, dilation, pads, out_hw, out, act=None, affine=None, pool=None):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    if n == 0:
        return
    direct = _use_direct(kh * kw * c, f)
    wino = not direct and _use_winograd(w, strides, dilation, pads)
    if pool is not None:
        if direct and affine is None and act == _PLAIN_RELU:
            _forward_direct_pooled(x, w, b, strides, dilation, pads, out_hw, out)
        elif wino:
            _wino_forward_pooled(x, w, b, pads, out_hw, out, act, affine)
        else:
            _forward_pooled(x, w, b, strides, dilation, pads, out_hw, out, act, affine)
        return
    if direct:
        _forward_direct(x, w, b, strides, dilation, pads, out_hw, out, act, affine)
        return
    if wino:
        _wino_forward(x, w, b, pads, out_hw, out, act, affine)
        return
    k = kh * kw * c
    w2 = w.reshape(k, f)
    out2 = out.reshape(n * oh * ow, f)
    flops = 2.0 * out2.shape[0] * k * f
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
        x2 = x.reshape(n * h * wd, c)

        def work_1x1(task, m0, m1, nthreads):
            np.matmul(x2[m0:m1], w2, out=out2[m0:m1])
            if b is not None and m1 > m0:
                _k.bias_add(out2[m0:m1], b, nthreads)
            _apply_epilogue(out2[m0:m1], act, nthreads, affine)

        _run(work_1x1, out2.shape[0], flops)
        return
    # The bias rides in the GEMM: col gets a column of ones and w a row b, which saves a pass
    # over the output (measured: the same GEMM speed with K+1 columns).
    wa = _weights_with_bias(w2, b)
    ldc = wa.shape[0]
    rows = _chunk_rows(n * oh, ow, ldc)

    def work(task, q_lo, q_hi, nthreads):     # output rows q = n*OH + oh in [q_lo, q_hi)
        col_all = _workspace("col", min(rows, max(q_hi - q_lo, 0)) * ow * ldc)
        for q0 in range(q_lo, q_hi, rows):
            q1 = min(q0 + rows, q_hi)
            col = col_all[:(q1 - q0) * ow * ldc].reshape(-1, ldc)
            _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
            np.matmul(col, wa, out=out2[q0 * ow:q1 * ow])
            _apply_epilogue(out2[q0 * ow:q1 * ow], act, nthreads, affine)

    _run(work, n * oh, flops)


def _weights_with_bias(w2, b):
    """(K [+1], F) GEMM operand: w with the bias as an extra row (col then has a ones column)."""
    if b is None:
        return w2
    k, f = w2.shape
    wa = _workspace("w", (k + 1) * f).reshape(k + 1, f)
    wa[:k] = w2
    wa[k] = b
    return wa


def _forward_pooled(x, w, b, strides, dilation, pads, out_hw, out, act, affine):
    """Inference: conv -> epilogue -> 2x2 max pool per chunk, only the pooled output written.

    A chunk is a run of whole images (or, for an image whose col buffer exceeds CHUNK_BYTES,
    a run of its output-row pairs (2p, 2p + 1)); its GEMM writes a per-thread scratch block that
    the epilogue and the pool read while it is in cache, so the full-size convolution output
    never goes to memory. The same arithmetic as conv2d -> (affine, activation) -> max_pool2d,
    and the same bits wherever BLAS's GEMM rounds a row block as it rounds the whole (it does
    on every model shape tests/kernels/test_conv_epilogue.py checks; its small-matrix and
    matrix-vector kernels for tiny or one-filter products may differ in the last bit).
    """
    from fastnn._kernels import pool as _pool_k

    n = x.shape[0]
    kh, kw, c, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    ph = oh // 2
    # the conv rows as _forward computes them, so that both give the same bits: the direct
    # kernels for few input channels, the 1x1 path (x viewed as rows, bias added after the
    # GEMM), else im2col with the bias in the GEMM
    direct = _use_direct(kh * kw * c, f)
    one = not direct and kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads)
    if direct:
        isa = _isa(f)
        wp, bp = _direct_weights(w, b, isa)
        zrow = _zeros(x.shape[2] * c)
        wa = wp
    else:
        wa = w.reshape(c, f) if one else _weights_with_bias(w.reshape(kh * kw * c, f), b)
    x2 = x.reshape(-1, c) if one else None
    ldc = 0 if direct else wa.shape[0]
    rows = _chunk_rows(n * oh, ow, max(ldc, f))
    per_img = rows // oh                      # whole images per chunk (0: pairs of one image)
    pairs = max(1, rows // 2)
    flops = 2.0 * n * oh * ow * kh * kw * c * f

    def block(q0, q1, col_all, ybuf, nthreads):   # output rows [q0, q1) -> scratch, epilogue
        y2 = ybuf[:(q1 - q0) * ow * f].reshape(-1, f)
        if direct:
            _cd.forward(x, wp, bp, zrow, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, y2, False,
                        isa, True)
        elif one:
            np.matmul(x2[q0 * ow:q1 * ow], wa, out=y2)
            if b is not None:
                _k.bias_add(y2, b, 1)
        else:
            col = col_all[:(q1 - q0) * ow * ldc].reshape(-1, ldc)
            _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
            np.matmul(col, wa, out=y2)
        _apply_epilogue(y2, act, 1, affine)
        return y2

    def work(task, n_lo, n_hi, nthreads):     # images [n_lo, n_hi)
        if per_img:
            col_all = _workspace("col", min(per_img, n_hi - n_lo) * oh * ow * ldc)
            ybuf = _workspace("ypool", min(per_img, n_hi - n_lo) * oh * ow * f)
            for i0 in range(n_lo, n_hi, per_img):
                i1 = min(i0 + per_img, n_hi)
                y2 = block(i0 * oh, i1 * oh, col_all, ybuf, nthreads)
                _pool_k.max_pool2x2_rows(y2.reshape(i1 - i0, oh, ow, f), out[i0:i1])
            return
        col_all = _workspace("col", min(pairs, ph) * 2 * ow * ldc)
        ybuf = _workspace("ypool", min(pairs, ph) * 2 * ow * f)
        for i in range(n_lo, n_hi):
            for p0 in range(0, ph, pairs):
                p1 = min(p0 + pairs, ph)
                y2 = block(i * oh + 2 * p0, i * oh + 2 * p1, col_all, ybuf, nthreads)
                _pool_k.max_pool2x2_rows(y2.reshape(1, 2 * (p1 - p0), ow, f), out[i:i + 1, p0:p1])

    _run(work, n, flops)


def _backward(x, w, dy, strides, dilation, pads, out_hw, dx, dw_out, db, y=None):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    k = kh * kw * c
    w2 = w.reshape(k, f)
    dw2 = dw_out.reshape(k, f)
    dy2 = dy.reshape(n * oh * ow, f)
    y2 = None if y is None else y.reshape(n * oh * ow, f)

    def _dy_rows(a0, a1):     # dy rows [a0, a1), masked by y > 0 (fused ReLU) into a scratch chunk
        if y2 is None:
            return dy2[a0:a1]
        buf = _workspace("dym", (a1 - a0) * f).reshape(a1 - a0, f)
        _k.relu_grad_rows(dy2[a0:a1], y2[a0:a1], buf)
        return buf
    if n == 0:
        dw2.fill(0.0)
        db.fill(0.0)
        return
    if dx is None and _use_direct(k):
        _backward_direct(x, w, dy, strides, dilation, pads, out_hw, dw_out, db, y)
        return
    if _use_winograd(w, strides, dilation, pads):
        _wino_backward(x, w, dy, pads, out_hw, dx, dw_out, db, y)
        return
    ldc = k + 1
    flops = (4.0 if dx is not None else 2.0) * dy2.shape[0] * k * f

    def _parts(n_items):      # one partial [dW; db] per task, summed below
        return _workspace("parts", _threads_for(n_items, flops) * ldc * f).reshape(-1, ldc, f)

    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
        x2 = x.reshape(n * h * wd, c)
        dx2 = None if dx is None else dx.reshape(n * h * wd, c)

        def work_1x1(task, m0, m1, nthreads):     # pixel rows [m0, m1): partial [dW; db]
            dwa = parts[task]
            acc = _workspace("db", f, np.float64)
            acc.fill(0.0)
            dyc = _dy_rows(m0, m1)
            np.matmul(x2[m0:m1].T, dyc, out=dwa[:k])
            if m1 > m0:
                _k.column_sums_add(dyc, acc, nthreads)
                if dx2 is not None:
                    np.matmul(dyc, w2.T, out=dx2[m0:m1])
            dwa[k] = acc

        parts = _parts(x2.shape[0])
        _run(work_1x1, x2.shape[0], flops)
    else:
        # col has a column of ones, so colᵀ @ dY also yields db in its last row (no extra pass);
        # dcol = dY @ [w | 0]ᵀ reuses col (the dW GEMM is done with it), col2im skips column K.
        rows = _chunk_rows(n * oh, ow, ldc)
        if dx is not None:
            wt = _workspace("wt", f * ldc).reshape(f, ldc)
            wt[:, :k] = w2.T
            wt[:, k] = 0.0
        dx_rows = None if dx is None else dx.reshape(n * h, wd * c)

        def work(task, n_lo, n_hi, nthreads):     # images [n_lo, n_hi): their dx rows are ours alone
            dwa = parts[task]
            dw_tmp = _workspace("dwt", ldc * f).reshape(ldc, f)
            col_all = _workspace("col", min(rows, (n_hi - n_lo) * oh) * ow * ldc)
            dwa.fill(0.0)
            zeroed = n_lo * h     # dx rows (n*H + ih) below this hold their partial sums already
            for q0 in range(n_lo * oh, n_hi * oh, rows):
                q1 = min(q0 + rows, n_hi * oh)
                col = col_all[:(q1 - q0) * ow * ldc].reshape(-1, ldc)
                dyc = _dy_rows(q0 * ow, q1 * ow)
                _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
                np.matmul(col.T, dyc, out=dw_tmp)
                np.add(dwa, dw_tmp, out=dwa)
                if dx_rows is None:
                    continue
                np.matmul(dyc, wt, out=col)
                n0, oh0 = divmod(q0, oh)
                n1, oh1 = divmod(q1 - 1, oh)
                r0 = n0 * h + min(max(oh0 * sh - pt, 0), h)
                r1 = n1 * h + min(max(oh1 * sh - pt + (kh - 1) * dh + 1, 0), h)
                lo = min(r0, zeroed)      # rows in [zeroed, r0) no window reads: zeroed on the way
                if r1 > lo:
                    _k.col2im_add(col, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, lo, r1,
                                  zeroed, dx, nthreads)
                zeroed = max(zeroed, r1)
            if dx_rows is not None and zeroed < n_hi * h:
                dx_rows[zeroed:n_hi * h].fill(0.0)    # bottom rows no window reads

        if _threads_for(n, flops) > 1 or _threads_for(n * oh, flops) == 1:
            parts = _parts(n)
            _run(work, n, flops)
        else:
            # Fewer images than threads (batch 1): split output rows instead. Phase 1 keeps the
            # whole dcol (at most threads-1 images) so that phase 2, the col2im gather split
            # over input rows, reads every output row that touches its rows: no races, and no
            # multi-threaded BLAS (which stalls on small GEMMs on a busy machine).
            dcol_all = None if dx is None else _workspace("dcol", n * oh * ow * ldc).reshape(-1, ldc)

            def work_rows(task, q_lo, q_hi, nthreads):     # output rows [q_lo, q_hi)
                dwa = parts[task]
                dw_tmp = _workspace("dwt", ldc * f).reshape(ldc, f)
                col_all = _workspace("col", min(rows, q_hi - q_lo) * ow * ldc)
                dwa.fill(0.0)
                for q0 in range(q_lo, q_hi, rows):
                    q1 = min(q0 + rows, q_hi)
                    col = col_all[:(q1 - q0) * ow * ldc].reshape(-1, ldc)
                    dyc = _dy_rows(q0 * ow, q1 * ow)
                    _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
                    np.matmul(col.T, dyc, out=dw_tmp)
                    np.add(dwa, dw_tmp, out=dwa)
                    if dcol_all is not None:
                        np.matmul(dyc, wt, out=dcol_all[q0 * ow:q1 * ow])

            def work_dx(task, r_lo, r_hi, nthreads):     # input rows [r_lo, r_hi), all fresh
                if r_hi > r_lo:
                    _k.col2im_add(dcol_all, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, 0, n * oh,
                                  r_lo, r_hi, r_lo, dx, nthreads)

            parts = _parts(n * oh)
            _run(work_rows, n * oh, flops)
            if dx is not None:
                _run(work_dx, n * h, flops)
    for extra in parts[1:]:
        np.add(parts[0], extra, out=parts[0])
    dw2[...] = parts[0][:k]
    db[...] = parts[0][k]


# ---------------------------------------------------------------- public API

def conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, out=None,
           activation="linear", affine=None, pool=None, **act_params):
    """2-D convolution (cross-correlation, as Keras Conv2D) of NHWC float32 x with w (KH, KW, C, F).

    x (N, H, W, C), w (KH, KW, C, F), b (F,) or None -> y (N, OH, OW, F) float32.
    strides, dilation: int or (h, w) pair, >= 1. padding: "valid", "same" (Keras/TF rule: the
    extra pixel of an even window goes bottom/right) or ((top, bottom), (left, right)).
    out: optional C-contiguous writeable float32 (N, OH, OW, F) buffer, filled and returned.
    activation: any name fastnn.kernels.activation.apply accepts (softmax across F), applied
    to each chunk right after its GEMM while it is in cache (one pass over y fewer).
    affine: optional (center, scale, shift), float32 (F,) each: y = (conv + b - center)*scale
    + shift before the activation, the inference batch norm that follows a convolution (with
    fastnn.kernels.norm.inference_fold's scale and shift and center = moving_mean it computes
    what batch_norm_inference computes on the output, bit for bit).
    pool: None or (2, 2): a 2x2 stride-2 'valid' max pool after the activation, per chunk while
    it is in cache; y (and out) are then (N, OH // 2, OW // 2, F) and the full-size output is
    never written (inference: there is no argmax for a backward).
    Algorithm: few input channels (KH*KW*C <= DIRECT_MAX_K) run the direct kernels; 3x3
    kernels with stride 1, dilation 1, pads <= 2, C >= 8 and F >= 4 use Winograd F(2x2, 3x3)
    (2.25x fewer multiplications; plain ReLU fused into its output transform); everything else
    im2col + GEMM. fastnn.kernels.conv.DIRECT / WINOGRAD = False (or FASTNN_CONV_WINOGRAD=0)
    force im2col. The paths agree to float32 rounding, not bit for bit.
    """
    fn = "conv2d"
    x, w = _check_weights(x, w, fn, 2)
    b = _check_bias(b, w.shape[3], fn)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    affine = _check_affine(affine, w.shape[3], fn)
    pooled = _check_pool(pool, out_hw, fn)
    out = prepare_out(out, (x.shape[0], *(pooled or out_hw), w.shape[3]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)] +
                [(f"affine[{i}]", a) for i, a in enumerate(affine or ())], fn)
    act = _epilogue(activation, act_params, fn)
    _forward(x, w, b, strides, dilation, pads, out_hw, out, act, affine, pooled and (2, 2))
    return out


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *, need_dx=True,
                    dx=None, dw=None, db=None, y=None):
    """Gradients of conv2d (NHWC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, H, W, C), w (KH, KW, C, F), dy (N, OH, OW, F) -> (dx (N, H, W, C) or None, dw
    (KH, KW, C, F), db (F,)). Same strides / padding / dilation as the forward call.
    need_dx=False skips dx (a first layer) and returns None for it. dx, dw, db: optional
    C-contiguous writeable float32 buffers, overwritten (not accumulated) and returned.
    y: optional (N, OH, OW, F) output of conv2d(..., activation="relu"); dy is then dL/dy of
    that ReLU output and is masked by y > 0 chunk by chunk inside the kernel (bit-identical to
    activation.grad("relu", ...) followed by the plain call, without its pass over memory).
    Algorithm: as conv2d (Winograd F(2x2, 3x3) for the 3x3 stride-1 cases, the adjoint of each
    transform; dx is overlap-added image by image), im2col + GEMM otherwise.
    """
    fn = "conv2d_backward"
    x, w = _check_weights(x, w, fn, 2)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db,
                            y_shape=(x.shape[0], *out_hw, w.shape[3]), views=None, y=y)


def _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db, y_shape, views,
                     y=None):
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_dx must be True or False; received {need_dx!r}.")
    dy = check_array(dy, "dy", fn, ndim=len(y_shape))
    if dy.shape != tuple(y_shape):
        raise ValueError(f"{fn}: dy must have the forward output's shape {tuple(y_shape)}; received "
                         f"shape {dy.shape}. Pass the same x, w, strides, padding and dilation as the "
                         f"forward call.")
    if y is not None:
        y = check_array(y, "y", fn, ndim=len(y_shape))
        if y.shape != tuple(y_shape):
            raise ValueError(f"{fn}: y must be the ReLU-fused forward output, of shape "
                             f"{tuple(y_shape)}; received shape {y.shape}.")
    dx = prepare_out(dx, x.shape, "dx", fn) if need_dx else None
    dw = prepare_out(dw, w.shape, "dw", fn)
    db = prepare_out(db, (w.shape[-1],), "db", fn)
    _no_overlap([("dx", dx), ("dw", dw), ("db", db)],
                [("x", x), ("w", w), ("dy", dy), ("y", y), ("dx", dx), ("dw", dw), ("db", db)], fn)
    if views is None:
        _backward(x, w, dy, strides, dilation, pads, out_hw, dx, dw, db, y)
    else:   # conv1d: the same buffers seen as (N, 1, L, C) images
        x4, w4, dy4 = views(x), w[None], dy[:, None]
        _backward(x4, w4, dy4, strides, dilation, pads, out_hw,
                  None if dx is None else dx[:, None], dw[None], db, None if y is None else y[:, None])
    return dx, dw, db


def conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, out=None, activation="linear",
           **act_params):
    """1-D convolution (as Keras Conv1D) of NLC float32 x with w (K, C, F).

    x (N, L, C), w (K, C, F), b (F,) or None -> y (N, OL, F) float32. stride, dilation: int >= 1.
    padding: "valid", "same", "causal" (all K-1 dilated pads on the left) or (left, right).
    out: optional C-contiguous writeable float32 (N, OL, F) buffer, filled and returned.
    activation: as conv2d (fused into the output pass).
    """
    fn = "conv1d"
    x, w = _check_weights(x, w, fn, 1)
    b = _check_bias(b, w.shape[2], fn)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    out = prepare_out(out, (x.shape[0], out_hw[1], w.shape[2]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    act = _epilogue(activation, act_params, fn)
    _forward(x[:, None], w[None], b, strides, dilation, pads, out_hw, out[:, None], act)
    return out


def conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True,
                    dx=None, dw=None, db=None, y=None):
    """Gradients of conv1d (NLC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, L, C), w (K, C, F), dy (N, OL, F) -> (dx (N, L, C) or None, dw (K, C, F), db (F,)).
    Same stride / padding / dilation as the forward call; buffers and y (ReLU-fused forward
    output, (N, OL, F)) as conv2d_backward.
    """
    fn = "conv1d_backward"
    x, w = _check_weights(x, w, fn, 1)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db,
                            y_shape=(x.shape[0], out_hw[1], w.shape[2]), views=lambda a: a[:, None], y=y)
