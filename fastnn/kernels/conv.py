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

import functools
import numbers
import os
import queue
import threading

import numpy as np

from fastnn._kernels import conv as _k
from fastnn._kernels import conv_direct as _cd
from fastnn._kernels import winograd as _wg
from fastnn.kernels._checks import as_tuple, check_array, check_no_overlap, prepare_out
from fastnn.kernels._geometry import conv_geometry, conv_transpose_padding, resolve_padding
from fastnn.kernels.threads import get_num_threads

__all__ = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "conv2d_transpose",
           "conv2d_transpose_backward", "conv1d_transpose", "conv1d_transpose_backward"]

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
# Smallest number of 2x2 output tiles (over the batch) for the Winograd forward; below, im2col
# (filter blocks for a small product): the 16 GEMMs of a few tiles read 16/9 as many weights
# (U) as im2col for little work. Measured (batch 1, 3x3 'same' + ReLU, two threads, medians):
# 7x7x512 -> 512 (16 tiles) Winograd 4.63 ms, im2col 2.31; 14x14x256 (49 tiles) 1.44 / 1.65;
# 28x28x128 1.01 / 1.74.
WINO_MIN_TILES = 32
# Smallest output image (OH * OW) for Winograd, forward and backward: a 7x7 output fills 4x4
# tiles of 2x2 (64 outputs computed for 49) and ResNet50's last stage (7x7, 512 -> 512) ran
# faster on im2col at batch 16 too (forward 42.9 vs 60.7 ms, backward 113 vs 131; 14x14x256:
# Winograd 28.9 / 87.9 vs im2col 47.9 / 96.0).
WINO_MIN_PIXELS = 64
# Target size of a chunk's V (16, T, C) and M (16, T, F) tile buffers together.
WINO_CHUNK_BYTES = 1536 << 10

_tls = threading.local()
_pool_lock = threading.Lock()
_pool_state = {"pool": None, "n": 0, "pid": None, "blas": None}


class _Done:
    """The outcome of one task handed to a worker: result() waits and re-raises its error."""

    __slots__ = ("event", "error")

    def __init__(self):
        self.event, self.error = threading.Event(), None

    def result(self):
        self.event.wait()
        if self.error is not None:
            raise self.error


class _Workers:
    """n - 1 worker threads (the caller is task 0); worker k always runs task k. So every task
    runs on the same thread call after call and finds its per-thread workspaces already grown:
    a steady training step allocates nothing (with a shared pool, a thread could meet a task
    of another size, or its first item of a layer, after the warm-up)."""

    def __init__(self, n: int):
        self.queues = [queue.SimpleQueue() for _ in range(n - 1)]
        self.threads = [threading.Thread(target=self._loop, args=(q,), daemon=True,
                                         name=f"fastnn-conv-{k + 1}") for k, q in enumerate(self.queues)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _loop(q):
        while True:
            item = q.get()
            if item is None:
                return
            fn, done = item
            try:
                fn()
            except BaseException as e:      # handed to the caller by _Done.result()
                done.error = e
            finally:
                done.event.set()

    def submit(self, task: int, fn) -> _Done:
        """Run fn() as task `task` (1 .. n-1) on its worker."""
        done = _Done()
        self.queues[task - 1].put((fn, done))
        return done

    def shutdown(self):
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join()


def _pool(n: int) -> _Workers:
    """The worker threads of n tasks, made anew after a fork (the child has no threads)."""
    if _pool_state["n"] != n or _pool_state["pid"] != os.getpid():
        if _pool_state["pool"] is not None and _pool_state["pid"] == os.getpid():
            _pool_state["pool"].shutdown()
        _pool_state["pool"] = _Workers(n)
        _pool_state["n"], _pool_state["pid"] = n, os.getpid()
    return _pool_state["pool"]


def _blas_single_thread():
    """Context in which the BLAS libraries NumPy uses run each call on one thread."""
    if _pool_state["blas"] is None:
        from threadpoolctl import ThreadpoolController

        _pool_state["blas"] = ThreadpoolController().select(user_api="blas")
    return _pool_state["blas"].limit(limits=1)


class _blas_one:
    """Cheap context (~1 us, threadpoolctl's limit costs ~25) in which BLAS runs each call on
    one thread: a GEMM's bits must not depend on how BLAS splits it over its threads. A no-op
    inside blas_pinned (already one thread)."""

    def __enter__(self):
        self.saved = []
        if pinned():
            return self
        libs = _pool_state.get("blas_libs")
        if libs is None:
            from threadpoolctl import ThreadpoolController

            libs = _pool_state["blas_libs"] = [
                c for c in ThreadpoolController().select(user_api="blas").lib_controllers]
        for lib in libs:
            n = lib.num_threads
            if n != 1:
                lib.set_num_threads(1)
                self.saved.append((lib, n))
        return self

    def __exit__(self, *exc):
        for lib, n in self.saved:
            lib.set_num_threads(n)
        return False


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


def _grid(n: int, per: int, rows: int, even: bool = False) -> list:
    """The chunks of a batch of n images of `per` rows each (output rows, or Winograd tile rows),
    as (r0, r1) ranges of the rows r = image * per + row. The grid depends on the shape only,
    never on the thread count, so every GEMM of a call has the same operands whatever the
    threads: BLAS's kernels may round a row differently depending on where it falls in a GEMM
    (its tail kernels), so another split would give other bits.

    rows: the target rows per chunk. Images that fit go whole, in runs of equal size; a bigger
    image is cut into runs of equal length (even with even=True: a 2x2 pool's row pairs stay in
    one chunk), so no chunk spans a cut image and another one."""
    if n == 0 or per == 0:
        return []
    if rows >= per:
        k = rows // per
        k = -(-n // -(-n // k))                  # equal runs: 10 images at 4 -> 4, 3, 3
        return [(i * per, min(i + k, n) * per) for i in range(0, n, k)]
    step = max(2, rows - rows % 2) if even else max(1, rows)
    cuts = -(-per // step)
    step = -(-per // cuts)
    if even:
        step += step % 2
    return [(i * per + j, i * per + min(j + step, per)) for i in range(n) for j in range(0, per, step)]


def _units(chunks: list, per: int) -> list:
    """Backward's work items over a _grid: runs of chunks that cover whole images (one chunk of
    whole images, or all the chunks of one cut image) as (first chunk, end chunk) indices. A dx
    row belongs to one image, so one thread does all of an image's chunks, in order."""
    units, i = [], 0
    while i < len(chunks):
        j = i + 1
        while chunks[j - 1][1] % per:            # a cut image: up to its last chunk
            j += 1
        units.append((i, j))
        i = j
    return units


# ---------------------------------------------------------------- argument checks

def _check_weights(x, w, fn: str, rank: int, groups=1):
    """x (N, *spatial, C) and w (*kernel, C / groups, F): float32, C-contiguous, matching C."""
    lay = "NHWC" if rank == 2 else "NLC"
    klay = "(KH, KW, C, F)" if rank == 2 else "(K, C, F)"
    x = check_array(x, "x", fn, ndim=rank + 2)
    w = check_array(w, "w", fn, ndim=rank + 2)
    if any(s < 1 for s in w.shape):
        raise ValueError(f"{fn}: w must have shape {klay} with every size >= 1; received shape {w.shape}.")
    if groups != 1:
        return _check_groups(x, w, groups, fn, rank)
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(f"{fn}: w has {w.shape[-2]} input channels (w.shape[{rank}]) but x ({lay}) has "
                         f"{x.shape[-1]}; w must have shape {klay} with C = x.shape[-1] (or pass groups=G "
                         f"for a grouped convolution, w with C / G input channels).")
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
    For work whose every output element is computed the same way wherever the split falls
    (the direct kernels' rows, dense's column shares on fastnn's sgemm); GEMMs on BLAS and
    reductions go through _run_items instead, whose results do not depend on the split.

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
        with _blas_one():
            # the caller runs the first share itself: one thread hand-off fewer per call
            futures = [pool.submit(i, functools.partial(work, i, bounds[i], bounds[i + 1], 1))
                       for i in range(1, t)]
            try:
                work(0, bounds[0], bounds[1], 1)
            finally:
                for fut in futures:
                    fut.result()
    finally:
        _pool_lock.release()


class _Turnstile:
    """Lets the partial sums of chunks into one accumulator in chunk order, whichever thread
    computed them: enter(i) waits until chunks 0..i-1 are in, leave(i) lets i + 1 through. So a
    backward's dw and db are ((c0 + c1) + c2) + ... for any thread count. Each task runs its
    items in increasing order (_run_items), so the lowest chunk not yet added is always being
    computed or waiting only on lower ones: no deadlock; a failed task breaks the turnstile and
    wakes the others."""

    def __init__(self):
        self._next, self._broken = 0, False
        self._cv = threading.Condition()

    def enter(self, i: int):
        with self._cv:
            while self._next != i and not self._broken:
                self._cv.wait()
            if self._broken:
                raise RuntimeError("conv: another worker of this call failed")

    def leave(self, i: int):
        with self._cv:
            self._next = i + 1
            self._cv.notify_all()

    def add(self, i: int, acc, part):
        """acc += part as the i-th term of the ordered sum."""
        self.enter(i)
        try:
            np.add(acc, part, out=acc)
        finally:
            self.leave(i)

    def fail(self):
        with self._cv:
            self._broken = True
            self._cv.notify_all()


def _run_items(work, n_items: int, flops: float, turn: _Turnstile | None = None):
    """Run work(i, nthreads=1) for every item i in [0, n_items): task k of the policy's t
    threads runs items k, k + t, k + 2t, ... in order (round robin: with a _Turnstile the items
    finish about in order, and each task meets the same items call after call, so its
    workspaces stop growing after the first), BLAS single-threaded throughout (its bits must
    not depend on its own split) and the kernels' OpenMP loops too (GNU OpenMP cannot start a
    team in a forked child once the parent has used one, and the threads here already share the
    cores). turn: the call's _Turnstile, broken when a task fails so the others do not wait
    for ever."""
    t = min(get_num_threads(), n_items) if flops >= SERIAL_FLOPS else 1
    if t <= 1 or not _pool_lock.acquire(blocking=False):   # (or another thread uses the pool)
        with _blas_one():
            for i in range(n_items):
                work(i, 1)
        return
    try:
        def task(k):
            try:
                for i in range(k, n_items, t):
                    work(i, 1)
            except BaseException:
                if turn is not None:
                    turn.fail()
                raise

        pool = _pool(t)
        with _blas_one():
            futures = [pool.submit(k, functools.partial(task, k)) for k in range(1, t)]
            try:
                task(0)
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
    for i, a in enumerate(affine):
        if isinstance(a, np.ndarray) and a.shape != (f,):
            raise ValueError(f"{fn}: affine[{i}] must have shape ({f},), one value per filter of w "
                             f"(w.shape[-1] = {f}); received shape {a.shape}.")
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


_zero_state = {"z": np.zeros(0, np.float32)}


def _isa(f: int) -> int:
    """The flavour for F filters: F is padded to whole vectors, 16 floats with AVX-512, 8 with
    AVX2; where AVX2 pads less it wins (measured, 1 thread, interleaved: AVX2/AVX-512 time 0.62
    at F=8, 0.73 at F=24, 0.83 forward / 1.06 backward at F=40), else AVX-512 (F=48: 0.95/1.17)."""
    if DIRECT_ISA is not None:
        return DIRECT_ISA
    lvl = _cd.get_isa()       # the flavour in force (fastnn.kernels.isa)
    if lvl == 2 and _padded_f(f, 1) < _padded_f(f, 2):
        return 1
    return lvl


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


# rows of an epilogue chunk (affine map, activation) run while in cache (L2): the direct
# kernels' and fastnn.kernels.depthwise's affine epilogues
EPILOGUE_BYTES = 256 << 10


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
    # an affine map or an activation other than plain ReLU runs on chunks of rows of ~256 KB
    # while they are in cache (L2). Chunks of 64 KB cost more in calls than they saved: a 1x1
    # conv 112x112x16 -> 96 with BN + ReLU6 (MobileNetV2's first expansion, batch 1) ran 1 row
    # per chunk, 2 x 112 Python -> C calls, 1.49 ms against 0.36 ms without the epilogue.
    rows = n * oh if rest is None and affine is None else max(1, EPILOGUE_BYTES // max(1, ow * f * 4))

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


# output elements (rows x F) per chunk of the direct backward: its float64 partial sums are
# per chunk, and the chunks add in order, so the grid (not the thread count) fixes the bits
DIRECT_BWD_CHUNK = 1 << 16


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
    # the float64 [dW; db] (F padded), summed chunk by chunk in chunk order
    acc = _workspace("cd_acc", (k + 1) * fp, np.float64).reshape(k + 1, fp)
    acc.fill(0.0)
    rows = max(1, DIRECT_BWD_CHUNK // max(1, ow * fp))
    chunks = [(q, min(q + rows, n * oh)) for q in range(0, n * oh, rows)]
    turn = _Turnstile()

    def work(i, nthreads):
        q0, q1 = chunks[i]
        part = _workspace("cd_part", (k + 1) * fp, np.float64).reshape(k + 1, fp)
        part.fill(0.0)
        dys = _workspace("cd_dys", (ow + k + 1) * fp)     # dy rows, float partials
        _cd.backward(x, dy2, y2, zrow, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, dys,
                     part[:k], part[k], isa)
        turn.add(i, acc, part)

    _run_items(work, len(chunks), flops, turn)
    dw_out.reshape(k, f)[...] = acc[:k, :f]
    db[...] = acc[k, :f]


# ---------------------------------------------------------------- Winograd F(2x2, 3x3)

def _use_winograd(w, strides, dilation, pads) -> bool:
    """3x3, stride 1, dilation 1, pads <= 2 (valid, same or explicit), C and F in range."""
    kh, kw, c, f = w.shape
    return (WINOGRAD and kh == 3 and kw == 3 and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)
            and all(0 <= p <= 2 for p in pads) and c >= WINO_MIN_C and f >= WINO_MIN_F
            and max(c, f) <= _wg.CMAX)


def _wino_pays(n: int, oh: int, ow: int) -> bool:
    """Whether a call's batch and output size are worth Winograd (WINO_MIN_TILES 2x2 tiles over
    the batch, WINO_MIN_PIXELS outputs an image); the rest of the rule is _use_winograd."""
    return oh * ow >= WINO_MIN_PIXELS and n * -(-oh // 2) * -(-ow // 2) >= WINO_MIN_TILES


def _wino_rows(tw: int, c: int, f: int) -> int:
    """Target tile rows per chunk: V and M stay near WINO_CHUNK_BYTES."""
    return max(1, WINO_CHUNK_BYTES // (16 * 4 * tw * (c + f)))


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
    # The tile rows (n, ti) are cut by _grid (whole images, or runs of one image's tile rows)
    # and the threads take the chunks; a chunk's outputs are its own, so even a batch of 1
    # splits. Per chunk: input transform, 16 GEMMs V[xi] @ U[xi], output transform (+ bias,
    # ReLU) straight into y, and any other activation while the chunk's rows are in cache.
    g = _WinoForward(x, w, b, pads, out_hw, act, affine)
    n, oh, ow, th, f, act = x.shape[0], g.oh, g.ow, g.th, g.f, g.act
    out2 = out.reshape(n * oh * ow, f)
    rows = _chunk_rows(n, th, _wino_rows(g.tw, g.c, f), 18.0 * out2.shape[0] * g.c * f, 4 * g.tw)
    chunks = _grid(n, th, rows)

    def work(i, nthreads):
        r0, r1 = chunks[i]
        g.chunk(x, r0, r1, rows, out)
        if act is not None or affine is not None:     # output rows q = n*OH + oh
            q0 = (r0 // th) * oh + 2 * (r0 % th)
            q1 = ((r1 - 1) // th) * oh + min(2 * ((r1 - 1) % th) + 2, oh)
            _apply_epilogue(out2[q0 * ow:q1 * ow], act, nthreads, affine)

    _run_items(work, len(chunks), 18.0 * out2.shape[0] * g.c * f)


def _wino_forward_pooled(x, w, b, pads, out_hw, out, act, affine):
    """Inference: Winograd conv -> epilogue -> 2x2 max pool, chunk by chunk of _wino_forward's
    grid into a per-thread scratch that the pool reads in cache; only the pooled output is
    written. The chunks, and so every GEMM and tile, are _wino_forward's: the same bits."""
    from fastnn._kernels import pool as _pool_k

    g = _WinoForward(x, w, b, pads, out_hw, act, affine)
    n, oh, ow, th, f, act = x.shape[0], g.oh, g.ow, g.th, g.f, g.act
    ph = oh // 2
    rows = _chunk_rows(n, th, _wino_rows(g.tw, g.c, f), 18.0 * n * oh * ow * g.c * f, 4 * g.tw)
    chunks = _grid(n, th, rows)

    def work(i, nthreads):
        r0, r1 = chunks[i]
        i0 = r0 // th
        if r0 % th == 0 and r1 % th == 0:          # whole images [i0, i1)
            i1 = r1 // th
            ys = _workspace("wino_ypool", (i1 - i0) * oh * ow * f).reshape(i1 - i0, oh, ow, f)
            g.chunk(x[i0:i1], 0, r1 - r0, rows, ys)
            _apply_epilogue(ys.reshape(-1, f), act, nthreads, affine)
            _pool_k.max_pool2x2_rows(ys, out[i0:i1])
            return
        # tile rows [t0, t1) of image i0: output rows [2 t0, 2 t1), pooled rows [t0, t1)
        t0, t1 = r0 - i0 * th, r1 - i0 * th
        ys = _workspace("wino_ypool", oh * ow * f).reshape(1, oh, ow, f)
        g.chunk(x[i0:i0 + 1], t0, t1, rows, ys)
        q1 = min(2 * t1, oh)
        _apply_epilogue(ys[0, 2 * t0:q1].reshape(-1, f), act, nthreads, affine)
        p1 = min(t1, ph)
        if p1 > t0:
            _pool_k.max_pool2x2_rows(ys[:, 2 * t0:2 * p1], out[i0:i0 + 1, t0:p1])

    _run_items(work, len(chunks), 18.0 * n * oh * ow * g.c * f)


def _wino_backward(x, w, dy, pads, out_hw, dx, dw_out, db, y):
    # Per chunk of _wino_forward's grid: V recomputed from x, dM = A dY A^T (masked, db summed),
    # dU = V^T dM added to the call's dU in chunk order (_Turnstile: the same sums for any
    # thread count); with dx, dV = dM U^T (into V's buffer, free by then) and dx += B dV B^T.
    # The tiles' dx overlap within an image, so one thread does all the chunks of an image
    # (_units), in order.
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
    du = _workspace("wino_du", 16 * c * f).reshape(16, c, f)
    du.fill(0.0)
    dbacc = _workspace("wino_db", f, np.float64)
    dbacc.fill(0.0)
    has_y = y is not None
    yv = y if has_y else dy
    rows = _wino_rows(tw, c, f)
    chunks = _grid(n, th, rows)
    units = _units(chunks, th)
    turn = _Turnstile()

    def work(u, nthreads):
        dut = _workspace("wino_dut", 16 * c * f).reshape(16, c, f)
        dbt = _workspace("wino_dbt", f, np.float64)
        for i in range(*units[u]):
            r0, r1 = chunks[i]
            t = (r1 - r0) * tw
            vb, v = _tiles("wino_v", rows * tw, t, c)
            dmb, dm = _tiles("wino_m", rows * tw, t, f)
            _wg.input_tiles(x, pt, pl, th, tw, r0, r1, vb)
            dbt.fill(0.0)
            _wg.dy_tiles(dy, yv, has_y, th, tw, r0, r1, dmb, dbt)
            np.matmul(v.transpose(0, 2, 1), dm, out=dut)
            turn.enter(i)
            try:
                np.add(du, dut, out=du)
                np.add(dbacc, dbt, out=dbacc)
            finally:
                turn.leave(i)
            if ut is not None:
                np.matmul(dm, ut, out=v)
                _wg.input_adjoint(vb, pt, pl, th, tw, r0, r1, dx)

    _run_items(work, len(units), flops, turn)
    _wg.weight_adjoint(du, dw_out)
    db[...] = dbacc


def _forward(x, w, b, strides, dilation, pads, out_hw, out, act=None, affine=None, pool=None):
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, out_hw
    if n == 0:
        return
    direct = _use_direct(kh * kw * c, f)
    wino = not direct and _use_winograd(w, strides, dilation, pads) and _wino_pays(n, oh, ow)
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
        cols = _col_blocks(out2.shape[0], c, f)
        if cols:
            _forward_1x1_cols(x2, w2, b, out2, cols, act, affine, flops)
            return
        chunks = _gemm_grid(n, oh, ow, c, f)

        def work_1x1(i, nthreads):        # output rows [q0, q1) = pixel rows [q0*OW, q1*OW)
            m0, m1 = chunks[i][0] * ow, chunks[i][1] * ow
            np.matmul(x2[m0:m1], w2, out=out2[m0:m1])
            if b is not None:
                _k.bias_add(out2[m0:m1], b, nthreads)
            _apply_epilogue(out2[m0:m1], act, nthreads, affine)

        _run_items(work_1x1, len(chunks), flops)
        return
    # The bias rides in the GEMM: col gets a column of ones and w a row b, which saves a pass
    # over the output (measured: the same GEMM speed with K+1 columns).
    wa = _weights_with_bias(w2, b)
    ldc = wa.shape[0]
    cols = _col_blocks(out2.shape[0], ldc, f)
    if cols:                              # a small product: one col matrix, filter blocks
        col = _workspace("col_all", out2.shape[0] * ldc).reshape(-1, ldc)
        _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, 0, n * oh, col, 1)
        _forward_1x1_cols(col, wa, None, out2, cols, act, affine, flops)
        return
    chunks = _gemm_grid(n, oh, ow, ldc, f)

    def work(i, nthreads):                # output rows q = n*OH + oh in [q0, q1)
        q0, q1 = chunks[i]
        col = _workspace("col", (q1 - q0) * ow * ldc).reshape(-1, ldc)
        _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
        np.matmul(col, wa, out=out2[q0 * ow:q1 * ow])
        _apply_epilogue(out2[q0 * ow:q1 * ow], act, nthreads, affine)

    _run_items(work, len(chunks), flops)


# A call of at least SPLIT_MIN_FLOPS whose chunks (CHUNK_BYTES) would be fewer than MIN_CHUNKS
# is cut into MIN_CHUNKS where each keeps at least SPLIT_MIN_PIXELS output pixels (by the shape
# only, as the rest of the grid: the bits do not follow the thread count). Without it a batch of
# one image fit in one chunk from 56x56 down, and ran on one thread. Measured (batch 1, 1x1 conv
# 56x56x24 -> 144, two threads, OpenBLAS): one chunk 253 us, two 191, four 217-261 (each
# hand-off costs ~25-50 us of Python and wake-up, so a GEMM of a few MFLOP is not worth
# cutting); 14x14x64 -> 384 in two chunks of 98 pixels 173 us against 99 in one (OpenBLAS packs
# all of w for each chunk: half the rows took 87% of the time).
MIN_CHUNKS = 2
SPLIT_MIN_FLOPS = 2e7
SPLIT_MIN_PIXELS = 512


def _chunk_rows(n: int, per: int, rows: int, flops: float, pixels_per_row: int) -> int:
    """`rows` (target rows per chunk of a _grid over n images of `per` rows of
    `pixels_per_row` output pixels), lowered to give MIN_CHUNKS chunks where that pays."""
    total = n * per
    if (flops >= SPLIT_MIN_FLOPS and -(-total // max(1, rows)) < MIN_CHUNKS
            and total * pixels_per_row >= MIN_CHUNKS * SPLIT_MIN_PIXELS):
        rows = min(rows, -(-total // MIN_CHUNKS))
    return rows


def _col_blocks(m: int, k: int, f: int) -> list:
    """Filter blocks [(f0, f1), ...] for a 1x1 or im2col convolution (GEMM m x k @ k x f) of m
    output pixels whose row grid would not split (a batch of one small image: 14x14 and 7x7 in
    ResNet50), or [] to keep the rows. Each block's GEMM packs only its part of w; cut rows, OpenBLAS packs all of w per
    chunk. By the shape only (multiples of 16 filters), so the bits do not follow the threads."""
    flops = 2.0 * m * k * f
    if (MIN_CHUNKS < 2 or flops < SPLIT_MIN_FLOPS or m >= MIN_CHUNKS * SPLIT_MIN_PIXELS
            or f < 32 * MIN_CHUNKS):
        return []
    blocks = -(-f // 16)
    bounds = [min(f, 16 * (blocks * i // MIN_CHUNKS)) for i in range(MIN_CHUNKS + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(MIN_CHUNKS)]


def _forward_1x1_cols(x2, w2, b, out2, cols, act, affine, flops):
    """out2 = epilogue(x2 @ w2 + b) computed by filter blocks: each task's block goes into a
    contiguous scratch (GEMM, bias, affine and activation while in cache), then into out2."""
    m = x2.shape[0]

    def work(i, nthreads):
        f0, f1 = cols[i]
        tmp = _workspace("c1x1_cols", m * (f1 - f0)).reshape(m, f1 - f0)
        np.matmul(x2, w2[:, f0:f1], out=tmp)
        if b is not None:
            _k.bias_add(tmp, b[f0:f1], nthreads)
        _apply_epilogue(tmp, act, nthreads, None if affine is None else tuple(a[f0:f1] for a in affine))
        out2[:, f0:f1] = tmp

    _run_items(work, len(cols), flops)


def _gemm_grid(n: int, oh: int, ow: int, k: int, f: int) -> list:
    """The chunks (output-row ranges) of an im2col or 1x1 convolution: the col buffer (rows x K)
    and the output block (rows x F) stay near CHUNK_BYTES; row pairs stay whole (the pooled
    path runs the same chunks); MIN_CHUNKS chunks for a call worth splitting (_chunk_rows)."""
    rows = max(1, CHUNK_BYTES // max(1, ow * max(k, f) * 4))
    return _grid(n, oh, _chunk_rows(n, oh, rows, 2.0 * n * oh * ow * k * f, ow), even=True)


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

    The chunks are _forward's (_gemm_grid: runs of whole images, or runs of row pairs of one
    image); each chunk's GEMM writes a per-thread scratch block that the epilogue and the pool
    read while it is in cache, so the full-size convolution output never goes to memory. The
    same GEMMs, row for row, as conv2d -> (affine, activation) -> max_pool2d: the same bits.
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
    if not direct and _col_blocks(n * oh * ow, c if one else wa.shape[0], f):
        # a small product runs by filter blocks (_forward_1x1_cols): the whole (small) output
        # into a scratch by _forward itself, then the pool: the same bits again
        ys = _workspace("ypool_cols", n * oh * ow * f).reshape(n, oh, ow, f)
        _forward(x, w, b, strides, dilation, pads, out_hw, ys, act, affine)
        _pool_k.max_pool2x2_rows(ys, out)
        return
    x2 = x.reshape(-1, c) if one else None
    ldc = 0 if direct else wa.shape[0]
    chunks = _gemm_grid(n, oh, ow, c if one else ldc, f)
    flops = 2.0 * n * oh * ow * kh * kw * c * f

    def work(i, nthreads):                # output rows [q0, q1) -> scratch, epilogue, pool
        q0, q1 = chunks[i]
        y2 = _workspace("ypool", (q1 - q0) * ow * f).reshape(-1, f)
        if direct:
            _cd.forward(x, wp, bp, zrow, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, y2, False,
                        isa, True)
        elif one:
            np.matmul(x2[q0 * ow:q1 * ow], wa, out=y2)
            if b is not None:
                _k.bias_add(y2, b, nthreads)
        else:
            col = _workspace("col", (q1 - q0) * ow * ldc).reshape(-1, ldc)
            _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
            np.matmul(col, wa, out=y2)
        _apply_epilogue(y2, act, nthreads, affine)
        i0 = q0 // oh
        if q0 % oh == 0 and q1 % oh == 0:          # whole images [i0, i1)
            i1 = q1 // oh
            _pool_k.max_pool2x2_rows(y2.reshape(i1 - i0, oh, ow, f), out[i0:i1])
            return
        p0, p1 = (q0 - i0 * oh) // 2, min((q1 - i0 * oh) // 2, ph)   # rows of one image
        if p1 > p0:
            _pool_k.max_pool2x2_rows(y2[:2 * (p1 - p0) * ow].reshape(1, 2 * (p1 - p0), ow, f),
                                     out[i0:i0 + 1, p0:p1])

    _run_items(work, len(chunks), flops)


# A batch of fewer images than this, whose whole dcol fits in DCOL_MAX_BYTES, runs the im2col
# backward in two phases (dW + dcol over chunks, then col2im over input rows) so that a batch of
# 1 still splits over the threads; the choice depends on the shape only (the bits of dx differ
# between the two orders of summation).
SMALL_BATCH = 4
DCOL_MAX_BYTES = 64 << 20


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
    if _use_winograd(w, strides, dilation, pads) and _wino_pays(n, oh, ow):
        _wino_backward(x, w, dy, pads, out_hw, dx, dw_out, db, y)
        return
    ldc = k + 1
    flops = (4.0 if dx is not None else 2.0) * dy2.shape[0] * k * f
    # [dW; db], summed over the chunks in chunk order (_Turnstile): the same for any thread count
    acc = _workspace("dwacc", ldc * f).reshape(ldc, f)
    acc.fill(0.0)
    turn = _Turnstile()

    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
        x2 = x.reshape(n * h * wd, c)
        dx2 = None if dx is None else dx.reshape(n * h * wd, c)
        chunks = _gemm_grid(n, oh, ow, c, f)
        dbacc = _workspace("dbacc", f, np.float64)
        dbacc.fill(0.0)

        def work_1x1(i, nthreads):     # pixel rows [m0, m1): dW, db in order, dx rows
            m0, m1 = chunks[i][0] * ow, chunks[i][1] * ow
            dwt = _workspace("dwt", k * f).reshape(k, f)
            dbt = _workspace("db", f, np.float64)
            dbt.fill(0.0)
            dyc = _dy_rows(m0, m1)
            np.matmul(x2[m0:m1].T, dyc, out=dwt)
            _k.column_sums_add(dyc, dbt, nthreads)
            if dx2 is not None:
                np.matmul(dyc, w2.T, out=dx2[m0:m1])
            turn.enter(i)
            try:
                np.add(acc[:k], dwt, out=acc[:k])
                np.add(dbacc, dbt, out=dbacc)
            finally:
                turn.leave(i)

        _run_items(work_1x1, len(chunks), flops, turn)
        dw2[...] = acc[:k]
        db[...] = dbacc
        return
    # col has a column of ones, so colᵀ @ dY also yields db in its last row (no extra pass);
    # dcol = dY @ [w | 0]ᵀ reuses col (the dW GEMM is done with it), col2im skips column K.
    chunks = _gemm_grid(n, oh, ow, ldc, f)
    if dx is not None:
        wt = _workspace("wt", f * ldc).reshape(f, ldc)
        wt[:, :k] = w2.T
        wt[:, k] = 0.0
    dx_rows = None if dx is None else dx.reshape(n * h, wd * c)

    def chunk_dw(i, col, nthreads):    # col of chunk i, dW/db added in order; returns dy rows
        q0, q1 = chunks[i]
        dw_tmp = _workspace("dwt", ldc * f).reshape(ldc, f)
        dyc = _dy_rows(q0 * ow, q1 * ow)
        _k.im2col(x, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, q0, q1, col, nthreads)
        np.matmul(col.T, dyc, out=dw_tmp)
        turn.add(i, acc, dw_tmp)
        return dyc

    if dx is not None and n < SMALL_BATCH and n * oh * ow * ldc * 4 <= DCOL_MAX_BYTES:
        # Phase 1 keeps the whole dcol so that phase 2, the col2im gather split over input
        # rows, reads every output row that touches its rows: no races, and a batch of 1 splits.
        dcol_all = _workspace("dcol", n * oh * ow * ldc).reshape(-1, ldc)

        def work_chunk(i, nthreads):
            q0, q1 = chunks[i]
            col = _workspace("col", (q1 - q0) * ow * ldc).reshape(-1, ldc)
            dyc = chunk_dw(i, col, nthreads)
            np.matmul(dyc, wt, out=dcol_all[q0 * ow:q1 * ow])

        _run_items(work_chunk, len(chunks), flops, turn)
        n_rows = n * h
        rows_dx = [(r, min(r + 16, n_rows)) for r in range(0, n_rows, 16)]

        def work_dx(i, nthreads):       # input rows [r0, r1), all fresh
            r0, r1 = rows_dx[i]
            _k.col2im_add(dcol_all, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, 0, n * oh, r0, r1, r0,
                          dx, nthreads)

        _run_items(work_dx, len(rows_dx), flops)
    else:
        units = _units(chunks, oh)

        def work(u, nthreads):          # the chunks of whole images: their dx rows are ours alone
            c_lo, c_hi = units[u]
            n_lo, n_hi = chunks[c_lo][0] // oh, -(-chunks[c_hi - 1][1] // oh)
            zeroed = n_lo * h     # dx rows (n*H + ih) below this hold their partial sums already
            for i in range(c_lo, c_hi):
                q0, q1 = chunks[i]
                col = _workspace("col", (q1 - q0) * ow * ldc).reshape(-1, ldc)
                dyc = chunk_dw(i, col, nthreads)
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

        _run_items(work, len(units), flops, turn)
    dw2[...] = acc[:k]
    db[...] = acc[k]


# ---------------------------------------------------------------- public API

def conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), *, out=None,
           activation="linear", affine=None, pool=None, groups=1, **act_params):
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
    groups: G > 1 for a grouped convolution (Keras Conv2D(groups=G)): w is (KH, KW, C / G, F)
    and filters [g*F/G, (g+1)*F/G) see input channels [g*C/G, (g+1)*C/G) only.
    """
    fn = "conv2d"
    x, w = _check_weights(x, w, fn, 2, groups)
    b = _check_bias(b, w.shape[3], fn)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    affine = _check_affine(affine, w.shape[3], fn)
    pooled = _check_pool(pool, out_hw, fn)
    out = prepare_out(out, (x.shape[0], *(pooled or out_hw), w.shape[3]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)] +
                [(f"affine[{i}]", a) for i, a in enumerate(affine or ())], fn)
    act = _epilogue(activation, act_params, fn)
    if groups > 1:
        _grouped_forward(x, w, b, strides, dilation, pads, out_hw, out, act, affine, pooled, groups)
        return out
    _forward(x, w, b, strides, dilation, pads, out_hw, out, act, affine, pooled and (2, 2))
    return out


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", dilation=(1, 1), *, need_dx=True,
                    dx=None, dw=None, db=None, y=None, groups=1):
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
    groups: as conv2d (w is (KH, KW, C / G, F)).
    """
    fn = "conv2d_backward"
    x, w = _check_weights(x, w, fn, 2, groups)
    strides, dilation, pads, out_hw = _geometry_2d(x, w, strides, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db,
                            y_shape=(x.shape[0], *out_hw, w.shape[3]), views=None, y=y, groups=groups)


def _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db, y_shape, views,
                     y=None, groups=1):
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
    bw = _backward if groups == 1 else functools.partial(_grouped_backward, groups=groups)
    if views is None:
        bw(x, w, dy, strides, dilation, pads, out_hw, dx, dw, db, y)
    else:   # conv1d: the same buffers seen as (N, 1, L, C) images
        x4, w4, dy4 = views(x), w[None], dy[:, None]
        bw(x4, w4, dy4, strides, dilation, pads, out_hw,
                  None if dx is None else dx[:, None], dw[None], db, None if y is None else y[:, None])
    return dx, dw, db


def conv1d(x, w, b=None, stride=1, padding="valid", dilation=1, *, out=None, activation="linear",
           groups=1, **act_params):
    """1-D convolution (as Keras Conv1D) of NLC float32 x with w (K, C, F).

    x (N, L, C), w (K, C, F), b (F,) or None -> y (N, OL, F) float32. stride, dilation: int >= 1.
    padding: "valid", "same", "causal" (all K-1 dilated pads on the left) or (left, right).
    out: optional C-contiguous writeable float32 (N, OL, F) buffer, filled and returned.
    activation: as conv2d (fused into the output pass). groups: as conv2d (w is (K, C / G, F)).
    """
    fn = "conv1d"
    x, w = _check_weights(x, w, fn, 1, groups)
    b = _check_bias(b, w.shape[2], fn)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    out = prepare_out(out, (x.shape[0], out_hw[1], w.shape[2]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    act = _epilogue(activation, act_params, fn)
    if groups > 1:
        _grouped_forward(x[:, None], w[None], b, strides, dilation, pads, out_hw, out[:, None], act,
                         None, None, groups)
        return out
    _forward(x[:, None], w[None], b, strides, dilation, pads, out_hw, out[:, None], act)
    return out


def conv1d_backward(x, w, dy, stride=1, padding="valid", dilation=1, *, need_dx=True,
                    dx=None, dw=None, db=None, y=None, groups=1):
    """Gradients of conv1d (NLC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, L, C), w (K, C, F), dy (N, OL, F) -> (dx (N, L, C) or None, dw (K, C, F), db (F,)).
    Same stride / padding / dilation as the forward call; buffers and y (ReLU-fused forward
    output, (N, OL, F)) as conv2d_backward; groups as conv1d.
    """
    fn = "conv1d_backward"
    x, w = _check_weights(x, w, fn, 1, groups)
    strides, dilation, pads, out_hw = _geometry_1d(x, w, stride, padding, dilation, fn)
    return _backward_public(fn, x, w, dy, strides, dilation, pads, out_hw, need_dx, dx, dw, db,
                            y_shape=(x.shape[0], out_hw[1], w.shape[2]), views=lambda a: a[:, None], y=y,
                            groups=groups)


# ---------------------------------------------------------------- grouped convolution

def _check_groups(x, w, groups, fn: str, rank: int):
    """groups G >= 1 with x (N, *spatial, C) and w (*kernel, C / G, F), F divisible by G."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{fn}: groups must be a positive int; received groups={groups!r}.")
    c, cg, f = x.shape[-1], w.shape[-2], w.shape[-1]
    klay = "(KH, KW, C / groups, F)" if rank == 2 else "(K, C / groups, F)"
    if cg * groups != c:
        raise ValueError(f"{fn}: with groups={groups}, w must have shape {klay} = C / {groups} input channels "
                         f"per group; x has C = {c} channels and w has {cg} (w.shape[{rank}]).")
    if f % groups:
        raise ValueError(f"{fn}: with groups={groups} the filters (w.shape[-1] = {f}) must be divisible by "
                         f"{groups}; each group computes F / groups of them.")
    return x, w


def _grouped_forward(x, w, b, strides, dilation, pads, out_hw, out, act, affine, pooled, groups):
    """Grouped convolution (NHWC): groups == C runs the depthwise kernels (w (KH, KW, 1, C*M) is
    the depthwise kernel (KH, KW, C, M) as it lies in memory); otherwise each group's channels
    are copied out and convolved on conv2d's paths into a scratch, then copied into its filters.
    The epilogue (affine, activation) and the 2x2 pool run on the whole output afterwards, with
    the helpers of the ungrouped paths (so a fused run gives the layers' bits)."""
    from fastnn.kernels import depthwise as _dw

    n, h, wd, c = x.shape
    kh, kw, cg, f = w.shape
    fg = f // groups
    oh, ow = out_hw
    y = out if pooled is None else _workspace("grp_y", n * oh * ow * f).reshape(n, oh, ow, f)
    explicit = ((pads[0], pads[1]), (pads[2], pads[3]))
    if n == 0:
        return
    if cg == 1:
        _dw.depthwise_conv2d(x, w.reshape(kh, kw, c, f // c), b, strides, explicit, dilation, out=y)
    else:
        xg = _workspace("grp_x", n * h * wd * cg).reshape(n, h, wd, cg)
        wg = _workspace("grp_w", kh * kw * cg * fg).reshape(kh, kw, cg, fg)
        yg = _workspace("grp_yg", n * oh * ow * fg).reshape(n, oh, ow, fg)
        for g in range(groups):
            np.copyto(xg, x[..., g * cg:(g + 1) * cg])
            np.copyto(wg, w[..., g * fg:(g + 1) * fg])
            conv2d(xg, wg, None if b is None else b[g * fg:(g + 1) * fg], strides, explicit, dilation,
                   out=yg)
            y[..., g * fg:(g + 1) * fg] = yg
    _apply_epilogue(y.reshape(-1, f), act, 0, affine)
    if pooled is not None:
        from fastnn._kernels import pool as _pool_k

        _pool_k.max_pool2x2_rows(y, out)


def _grouped_backward(x, w, dy, strides, dilation, pads, out_hw, dx, dw_out, db, y=None, *, groups):
    """Gradients of _grouped_forward: the depthwise kernels when groups == C, else conv2d_backward
    per group on copies of its channels, the results copied into dx, dw and db."""
    from fastnn.kernels import depthwise as _dw
    from fastnn.kernels import activation as A

    n, h, wd, c = x.shape
    kh, kw, cg, f = w.shape
    fg = f // groups
    oh, ow = out_hw
    explicit = ((pads[0], pads[1]), (pads[2], pads[3]))
    if y is not None:     # the ReLU-fused output: mask dy first (the same product as the kernels')
        dy = A.grad("relu", y, y, dy, out=_workspace("grp_dym", dy.size).reshape(dy.shape))
    if cg == 1:
        _dw.depthwise_conv2d_backward(x, w.reshape(kh, kw, c, f // c), dy, strides, explicit, dilation,
                                      need_dx=dx is not None, dx=dx,
                                      dw=dw_out.reshape(kh, kw, c, f // c), db=db)
        return
    xg = _workspace("grp_x", n * h * wd * cg).reshape(n, h, wd, cg)
    wg = _workspace("grp_w", kh * kw * cg * fg).reshape(kh, kw, cg, fg)
    dyg = _workspace("grp_dy", n * oh * ow * fg).reshape(n, oh, ow, fg)
    dxg = None if dx is None else _workspace("grp_dx", n * h * wd * cg).reshape(n, h, wd, cg)
    dwg = _workspace("grp_dw", kh * kw * cg * fg).reshape(kh, kw, cg, fg)
    dbg = _workspace("grp_db", fg)
    for g in range(groups):
        cs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        np.copyto(xg, x[..., cs])
        np.copyto(wg, w[..., fs])
        np.copyto(dyg, dy[..., fs])
        conv2d_backward(xg, wg, dyg, strides, explicit, dilation, need_dx=dx is not None, dx=dxg, dw=dwg,
                        db=dbg)
        if dx is not None:
            dx[..., cs] = dxg
        dw_out[..., fs] = dwg
        db[fs] = dbg


# ---------------------------------------------------------------- transposed convolution

def _backward_data(dy, w, strides, dilation, pads, dx):
    """dx (N, H, W, C) = the input gradient of conv(x, w) (w (KH, KW, C, F)) for dy (N, OH, OW, F):
    per chunk of _forward's grid dcol = dy @ wᵀ and col2im gathers it into dx, a thread owning
    whole images (or, for small batches, all of dcol then input rows), as _backward's dx: the
    same bits for any thread count."""
    n, h, wd, c = dx.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dwl), (pt, _, pl, _), (oh, ow) = strides, dilation, pads, dy.shape[1:3]
    k = kh * kw * c
    if dx.size == 0:        # (a "same" transposed conv of an even window can have OH or OW 0)
        return
    if dy.size == 0:        # no output pixel: nothing reaches dx (the loops below would not zero it)
        dx.fill(0.0)
        return
    wt = _workspace("tw", f * k).reshape(f, k)
    wt[...] = w.reshape(k, f).T
    dy2 = dy.reshape(n * oh * ow, f)
    flops = 2.0 * dy2.shape[0] * k * f
    chunks = _gemm_grid(n, oh, ow, k, f)
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
        dx2 = dx.reshape(n * h * wd, c)

        def work_1x1(i, nthreads):
            m0, m1 = chunks[i][0] * ow, chunks[i][1] * ow
            np.matmul(dy2[m0:m1], wt, out=dx2[m0:m1])

        _run_items(work_1x1, len(chunks), flops)
        return
    if n < SMALL_BATCH and n * oh * ow * k * 4 <= DCOL_MAX_BYTES:
        # all of dcol first, then the col2im gather split over input rows (a batch of 1 splits)
        dcol_all = _workspace("dcol", n * oh * ow * k).reshape(-1, k)

        def work_chunk(i, nthreads):
            q0, q1 = chunks[i]
            np.matmul(dy2[q0 * ow:q1 * ow], wt, out=dcol_all[q0 * ow:q1 * ow])

        _run_items(work_chunk, len(chunks), flops)
        rows_dx = [(r, min(r + 16, n * h)) for r in range(0, n * h, 16)]

        def work_dx(i, nthreads):       # input rows [r0, r1), all fresh
            r0, r1 = rows_dx[i]
            _k.col2im_add(dcol_all, kh, kw, oh, ow, sh, sw, dh, dwl, pt, pl, 0, n * oh, r0, r1, r0, dx,
                          nthreads)

        _run_items(work_dx, len(rows_dx), flops)
        return
    units = _units(chunks, oh)
    dx_rows = dx.reshape(n * h, wd * c)

    def work(u, nthreads):              # the chunks of whole images: their dx rows are ours alone
        c_lo, c_hi = units[u]
        n_lo, n_hi = chunks[c_lo][0] // oh, -(-chunks[c_hi - 1][1] // oh)
        zeroed = n_lo * h
        for i in range(c_lo, c_hi):
            q0, q1 = chunks[i]
            col = _workspace("col", (q1 - q0) * ow * k).reshape(-1, k)
            np.matmul(dy2[q0 * ow:q1 * ow], wt, out=col)
            n0, oh0 = divmod(q0, oh)
            n1, oh1 = divmod(q1 - 1, oh)
            r0 = n0 * h + min(max(oh0 * sh - pt, 0), h)
            r1 = n1 * h + min(max(oh1 * sh - pt + (kh - 1) * dh + 1, 0), h)
            lo = min(r0, zeroed)
            if r1 > lo:
                _k.col2im_add(col, kh, kw, oh, ow, sh, sw, dh, dwl, pt, pl, q0, q1, lo, r1, zeroed, dx,
                              nthreads)
            zeroed = max(zeroed, r1)
        if zeroed < n_hi * h:
            dx_rows[zeroed:n_hi * h].fill(0.0)

    _run_items(work, len(units), flops)


def _transpose_geometry(x, w, strides, padding, output_padding, dilation, fn, rank):
    """(strides, dilation, pads (pt, pb, pl, pr) of the convolution whose adjoint this is, the
    output's spatial shape) of a transposed convolution, 2-D or 1-D (as (1, L))."""
    strides = as_tuple(strides, rank, "strides", fn)
    dilation = as_tuple(dilation, rank, "dilation", fn)
    if output_padding is None:
        ops = (None,) * rank
    elif isinstance(output_padding, numbers.Integral) and not isinstance(output_padding, bool):
        ops = (int(output_padding),) * rank
    else:
        try:
            ops = tuple(output_padding)
        except TypeError:
            raise ValueError(f"{fn}: output_padding must be None, an int or a tuple of {rank} ints; received "
                             f"{output_padding!r}.") from None
        if len(ops) != rank:
            raise ValueError(f"{fn}: output_padding must be None, an int or a tuple of {rank} ints; received "
                             f"{output_padding!r}.")
    pads, out = [], []
    for n_, k_, s_, d_, op in zip(x.shape[1:-1], w.shape[:rank], strides, dilation, ops):
        before, after, o = conv_transpose_padding(n_, k_, s_, d_, padding, op, "padding", fn)
        pads += [before, max(after, 0)]
        out.append(o)
    if rank == 1:
        return (1, strides[0]), (1, dilation[0]), (0, 0, *pads), (1, out[0])
    return strides, dilation, tuple(pads), tuple(out)


def _check_transpose(x, w, fn, rank):
    lay = "NHWC (N, H, W, C)" if rank == 2 else "NLC (N, L, C)"
    klay = "(KH, KW, F, C)" if rank == 2 else "(K, F, C)"
    x = check_array(x, "x", fn, ndim=rank + 2)
    w = check_array(w, "w", fn, ndim=rank + 2)
    if any(s < 1 for s in w.shape):
        raise ValueError(f"{fn}: w must have shape {klay} with every size >= 1; received shape {w.shape}.")
    if w.shape[-1] != x.shape[-1]:
        raise ValueError(f"{fn}: w has {w.shape[-1]} input channels (w.shape[-1]; a transposed kernel is "
                         f"{klay} as Keras's Conv{rank}DTranspose) but x ({lay}) has {x.shape[-1]}.")
    if any(d < 1 for d in x.shape[1:-1]):
        raise ValueError(f"{fn}: x must have non-empty spatial dimensions; received shape {x.shape}.")
    return x, w


def _transpose_forward(x4, w4, b, strides, dilation, pads, out4, act):
    _backward_data(x4, w4, strides, dilation, pads, out4)
    y2 = out4.reshape(-1, out4.shape[-1])
    if b is not None and y2.shape[0]:
        _k.bias_add(y2, b, 0)
    _apply_epilogue(y2, act, 0)


def _transpose_backward(x4, w4, dy4, strides, dilation, pads, dx4, dw4, db):
    """dx = conv(dy, w) (the transposed conv's adjoint), dw from conv2d_backward with the roles
    of x and dy exchanged, db = the column sums of dy."""
    explicit = ((pads[0], pads[1]), (pads[2], pads[3]))
    if dy4.size == 0:       # an empty output (OH or OW 0, or F 0): every gradient is 0 * what it
        # multiplies, as the textbook scatter with its cropped-away (zero) dy gives: NaN where a
        # channel of x (for dw) or of w (for dx) holds a NaN or inf, else zero
        with np.errstate(invalid="ignore", over="ignore"):
            c = x4.shape[3]
            dw4[...] = np.float32(0.0) * x4.reshape(-1, c).sum(axis=0, dtype=np.float64).astype(np.float32)
            if dx4 is not None:
                dx4[...] = np.float32(0.0) * w4.reshape(-1, c).sum(axis=0, dtype=np.float64).astype(np.float32)
        db.fill(0.0)
        return
    if dx4 is not None:
        conv2d(dy4, w4, None, strides, explicit, dilation, out=dx4)
    cdb = _workspace("tr_db", w4.shape[3])
    conv2d_backward(dy4, w4, x4, strides, explicit, dilation, need_dx=False, dw=dw4, db=cdb)
    acc = _workspace("tr_dbsum", db.size, np.float64)
    acc.fill(0.0)
    dy2 = dy4.reshape(-1, dy4.shape[-1])
    if dy2.shape[0]:
        _k.column_sums_add(dy2, acc, 0)
    db[...] = acc


def conv2d_transpose(x, w, b=None, strides=(1, 1), padding="valid", output_padding=None, dilation=(1, 1), *,
                     out=None, activation="linear", **act_params):
    """Transposed 2-D convolution (Keras Conv2DTranspose) of NHWC float32 x with w (KH, KW, F, C).

    x (N, H, W, C), w (KH, KW, F, C) (Keras's layout: filters, then input channels), b (F,) or
    None -> y (N, OH, OW, F). strides, dilation: int or pair >= 1; padding "valid" or "same";
    output_padding: None, an int or a pair, each < its stride (Keras's rule sets OH: "valid"
    (H - 1)*s + (KH - 1)*d + 1 [+ max(s - k_eff, 0) or output_padding], "same" H*s, or
    (H - 1)*s + k_eff % 2 + output_padding). y is the adjoint of conv2d(y, w) applied to x:
    per chunk dcol = x @ wᵀ, gathered by col2im; bias and activation follow.
    out: optional C-contiguous writeable float32 buffer of y's shape.
    """
    fn = "conv2d_transpose"
    x, w = _check_transpose(x, w, fn, 2)
    b = _check_bias(b, w.shape[2], fn)
    strides, dilation, pads, out_hw = _transpose_geometry(x, w, strides, padding, output_padding, dilation, fn, 2)
    out = prepare_out(out, (x.shape[0], *out_hw, w.shape[2]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    act = _epilogue(activation, act_params, fn)
    _transpose_forward(x, w, b, strides, dilation, pads, out, act)
    return out


def conv2d_transpose_backward(x, w, dy, strides=(1, 1), padding="valid", output_padding=None,
                              dilation=(1, 1), *, need_dx=True, dx=None, dw=None, db=None):
    """Gradients of conv2d_transpose (NHWC float32) w.r.t. x, w and b, given dy = dL/dy.

    x (N, H, W, C), w (KH, KW, F, C), dy (N, OH, OW, F) -> (dx (N, H, W, C) or None,
    dw (KH, KW, F, C), db (F,)). dx = conv2d(dy, w) (every conv2d path applies), dw =
    conv2d_backward's weight gradient with x and dy exchanged, db = the sums of dy. Buffers:
    optional, overwritten and returned.
    """
    fn = "conv2d_transpose_backward"
    x, w = _check_transpose(x, w, fn, 2)
    strides, dilation, pads, out_hw = _transpose_geometry(x, w, strides, padding, output_padding, dilation, fn, 2)
    return _transpose_backward_public(fn, x, w, dy, strides, dilation, pads,
                                      (x.shape[0], *out_hw, w.shape[2]), need_dx, dx, dw, db, False)


def _transpose_backward_public(fn, x, w, dy, strides, dilation, pads, y_shape, need_dx, dx, dw, db, one_d):
    if not isinstance(need_dx, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_dx must be True or False; received {need_dx!r}.")
    dy = check_array(dy, "dy", fn, ndim=len(y_shape))
    if dy.shape != tuple(y_shape):
        raise ValueError(f"{fn}: dy must have the forward output's shape {tuple(y_shape)}; received shape "
                         f"{dy.shape}. Pass the same x, w, strides, padding, output_padding and dilation as "
                         f"the forward call.")
    dx = prepare_out(dx, x.shape, "dx", fn) if need_dx else None
    dw = prepare_out(dw, w.shape, "dw", fn)
    db = prepare_out(db, (w.shape[-2],), "db", fn)
    _no_overlap([("dx", dx), ("dw", dw), ("db", db)],
                [("x", x), ("w", w), ("dy", dy), ("dx", dx), ("dw", dw), ("db", db)], fn)
    if one_d:
        _transpose_backward(x[:, None], w[None], dy[:, None], strides, dilation, pads,
                            None if dx is None else dx[:, None], dw[None], db)
    else:
        _transpose_backward(x, w, dy, strides, dilation, pads, dx, dw, db)
    return dx, dw, db


def conv1d_transpose(x, w, b=None, strides=1, padding="valid", output_padding=None, dilation=1, *, out=None,
                     activation="linear", **act_params):
    """Transposed 1-D convolution (Keras Conv1DTranspose) of NLC float32 x with w (K, F, C).

    x (N, L, C), w (K, F, C), b (F,) or None -> y (N, OL, F); the other arguments as
    conv2d_transpose (ints for the one axis).
    """
    fn = "conv1d_transpose"
    x, w = _check_transpose(x, w, fn, 1)
    b = _check_bias(b, w.shape[1], fn)
    strides, dilation, pads, out_hw = _transpose_geometry(x, w, strides, padding, output_padding, dilation, fn, 1)
    out = prepare_out(out, (x.shape[0], out_hw[1], w.shape[1]), "out", fn)
    _no_overlap([("out", out)], [("x", x), ("w", w), ("b", b)], fn)
    act = _epilogue(activation, act_params, fn)
    _transpose_forward(x[:, None], w[None], b, strides, dilation, pads, out[:, None], act)
    return out


def conv1d_transpose_backward(x, w, dy, strides=1, padding="valid", output_padding=None, dilation=1, *,
                              need_dx=True, dx=None, dw=None, db=None):
    """Gradients of conv1d_transpose (NLC float32): x (N, L, C), w (K, F, C), dy (N, OL, F) ->
    (dx or None, dw (K, F, C), db (F,)), as conv2d_transpose_backward."""
    fn = "conv1d_transpose_backward"
    x, w = _check_transpose(x, w, fn, 1)
    strides, dilation, pads, out_hw = _transpose_geometry(x, w, strides, padding, output_padding, dilation, fn, 1)
    return _transpose_backward_public(fn, x, w, dy, strides, dilation, pads, (x.shape[0], out_hw[1], w.shape[1]),
                                      need_dx, dx, dw, db, True)
