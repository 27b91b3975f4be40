"""Recurrent kernels: SimpleRNN, LSTM and GRU over whole sequences, forward and backward through
time, and the embedding gather / scatter-add. float32, batch-major (N, T, features).

    y, h, c, cache = rnn.forward("lstm", x, w, u, b, training=True)    # x (N, T, D)
    dx, dw, du, db, dh0, dc0 = rnn.backward(cache, dy=dy)              # dy (N, T, U)

Keras 3 weights and numerics (shared/KERAS-NUMERICS.md section 2.7): kernel (D, G*U),
recurrent_kernel (U, G*U), gate order i f c o (LSTM) and z r h (GRU); GRU bias (2, 3U) with
reset_after (row 0 input, row 1 recurrent), (3U,) without. One call runs the whole sequence:
the input projection of every step is ONE GEMM (fastnn.kernels.dense), then the compiled time
loop (fastnn._kernels.rnn: per step one recurrent GEMM and one fused pass over the gates, the
cell update, the mask and the output write), with no Python per step. Backward keeps the gates
of the forward pass, runs the per-step recurrent GEMMs in reverse, and computes dW, dU and dx
as one GEMM each over all steps.

Threads: the batch rows are independent through the whole sequence, so each thread runs the
time loop of a contiguous share of rows (fastnn.kernels.conv._run); every row is computed with
the same operations whatever share it falls in, so results do not depend on the thread count.
`bidirectional_forward` / `bidirectional_backward` run both directions in the same loop call
(with two threads: one direction each).

Masks (N, T) bool/uint8: a masked step keeps the states and repeats the previous output
(zeros before the first valid step, or always with zero_output_for_mask), as Keras's rnn().
Outputs are in step order: with go_backwards the sequence comes out reversed, as in Keras.
"""
from __future__ import annotations

import numpy as np

from fastnn._kernels import activation as _actk
from fastnn._kernels import rnn as _k
from fastnn.kernels import activation as _activation
from fastnn.kernels import conv as _conv
from fastnn.kernels import gemm as _gemm
from fastnn.kernels._checks import check_aliases, check_array

__all__ = ["CELLS", "forward", "backward", "bidirectional_forward", "bidirectional_backward",
           "embedding", "embedding_backward", "ISA"]

CELLS = ("simple_rnn", "lstm", "gru")
_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}

# Instruction-set flavour of the recurrent GEMM: 0 portable, 1 AVX2+FMA, 2 AVX-512; None = the
# flavour fastnn.kernels.isa puts in force (FASTNN_ISA). Tests set it to run every flavour.
ISA = None


def _isa() -> int:
    return int(ISA) if ISA is not None else _k.get_isa()


# ---------------------------------------------------------------------------- GEMMs over all steps
# The projection and weight-gradient GEMMs are cut into blocks of output rows whose size
# depends only on the shape (ROW_BLOCK), each block one single-threaded GEMM (fastnn's sgemm
# where it runs, else BLAS), the blocks shared out over the threads: the same operations for
# any thread count. (dense's column shares pick the GEMM per share size, so their bits can
# change with the number of threads.)
ROW_BLOCK = 128
COL_BLOCK = 128      # output columns per block of the few-row GEMMs (weight gradients)
_LINEAR = (0.0, 0.0, 0.0, 0.0)
_SERIAL = 1 << 62      # bias_act's parallel threshold that keeps it in the calling thread


def _mm1(a, b, out):
    if _gemm.available() and min(a.shape[0], a.shape[1], b.shape[1]) >= 32:
        _gemm.matmul(a, b, out)
    else:
        np.matmul(a, b, out=out)


def _mm(a, b, out, bias=None):
    """out = a @ b (+ bias): a (M, K) or a transposed view, b (K, N), out (M, N) C-contiguous.

    With few output rows and more columns (the weight gradients: M = input features or units,
    K = N*T), the output is cut into blocks of COL_BLOCK columns instead, each one BLAS call
    on a (transposed) view with no copy, so both threads get work. Measured single-threaded
    against the transposed row blocks before (M4: dU 128 x 3584 x 512, dW 28 x 3584 x 512;
    M5: dU 64 x 6400 x 256, dW 128 x 6400 x 256; CPU time, load ~9): 5.5 vs 7.2, 1.7 vs
    2.4, 2.8 vs 3.4, 5.8 vs 5.9 ms."""
    m, k = a.shape
    n = b.shape[1]
    if bias is None and m < 2 * ROW_BLOCK and n > m and n >= COL_BLOCK:
        nblocks = -(-n // COL_BLOCK)

        def cols(task, i0, i1, nthreads):
            for blk in range(i0, i1):
                c0, c1 = blk * COL_BLOCK, min(n, (blk + 1) * COL_BLOCK)
                np.matmul(a, b[:, c0:c1], out=out[:, c0:c1])

        _conv._run(cols, nblocks, 2.0 * m * k * n)
        return out
    rb = ROW_BLOCK if m > ROW_BLOCK else max(m, 1)
    nblocks = -(-m // rb)

    def work(task, i0, i1, nthreads):
        for blk in range(i0, i1):
            r0, r1 = blk * rb, min(m, (blk + 1) * rb)
            if k == 0:
                out[r0:r1] = 0.0
            else:
                _mm1(a[r0:r1], b, out[r0:r1])
            if bias is not None:     # compiled row pass (NumPy's broadcast += buffers 32 KB)
                _actk.bias_act(out[r0:r1], bias, True, 0, 0, _LINEAR, _SERIAL)

    _conv._run(work, nblocks, 2.0 * m * k * n)
    return out


def _rowscale(x, m, out):
    """out[n, t, :] = x[n, t, :] * m[n, :] (einsum: NumPy's broadcasting multiply buffers 32 KB)."""
    return np.einsum("ntd,nd->ntd", x, m, out=out)


def _colsum(dz2, out):
    """out = dz2.sum(axis=0) (NumPy's pairwise sum: one thread, a fixed order)."""
    np.sum(dz2, axis=0, out=out, dtype=np.float32)
    return out


def _np_alloc(key, shape, dtype=np.float32):
    return np.empty(shape, dtype)


class _Job:
    """One direction of one layer: checked arguments, buffers and what backward needs."""


def _act(name, fn, arg):
    if not isinstance(name, str):
        raise TypeError(f"{fn}: {arg} must be an activation name; received {name!r}.")
    kind, params, axis = _activation.resolve(name, {}, f"{fn}({arg}={name!r})")
    if kind < 0:
        raise ValueError(f"{fn}: {arg}={name!r} acts across an axis; recurrent cells take elementwise "
                         f"activations (tanh, sigmoid, relu, ...).")
    return kind, tuple(float(p) for p in params)


def _prepare(cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, activation,
             recurrent_activation, go_backwards, zero_output_for_mask, input_mask,
             recurrent_mask, reset_after, training, alloc, fn, tag):
    if cell not in _GATES:
        raise ValueError(f"{fn}: cell must be one of {CELLS}; received {cell!r}.")
    x = check_array(x, "x", fn)
    if x.ndim != 3:
        raise ValueError(f"{fn}: x must have 3 dimensions (batch, timesteps, features); received "
                         f"shape {x.shape}. Add the time axis, e.g. x[:, None, :] for one step.")
    n, t, d = x.shape
    if t == 0:
        raise ValueError(f"{fn}: x has 0 timesteps; a recurrent layer needs at least one step.")
    G = _GATES[cell]
    w = check_array(kernel, "kernel", fn, ndim=2)
    if w.shape[0] != d or w.shape[1] % G or w.shape[1] == 0:
        raise ValueError(f"{fn}: kernel must have shape ({d}, {G} * units) for a {cell} on {d} input "
                         f"features; received {w.shape}.")
    U = w.shape[1] // G
    GU = G * U
    u = check_array(recurrent_kernel, "recurrent_kernel", fn, shape=(U, GU))
    gru_after = cell == "gru" and bool(reset_after)
    brec = None
    bin_ = None
    if bias is not None:
        want = (2, GU) if gru_after else (GU,)
        bias = check_array(bias, "bias", fn, shape=want)
        bin_, brec = (bias[0], bias[1]) if gru_after else (bias, None)
    if gru_after and brec is None:
        brec = np.zeros(GU, np.float32)
    if h0 is not None:
        h0 = check_array(h0, "h0", fn, shape=(n, U))
    if cell == "lstm" and c0 is not None:
        c0 = check_array(c0, "c0", fn, shape=(n, U))
    elif cell != "lstm" and c0 is not None:
        raise ValueError(f"{fn}: c0 is the LSTM carry state; a {cell} has only h0.")
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype not in (np.bool_, np.uint8):
            raise TypeError(f"{fn}: mask must be a bool or uint8 ndarray of shape ({n}, {t}); received "
                            f"{type(mask).__name__} {getattr(mask, 'dtype', '')}.")
        if mask.shape != (n, t):
            raise ValueError(f"{fn}: mask must have shape (batch, timesteps) = ({n}, {t}) to match x "
                             f"{x.shape}; received {mask.shape}.")
        mask = np.ascontiguousarray(mask).view(np.uint8)
    act, pa = _act(activation, fn, "activation")
    rec, pr = _act(recurrent_activation, fn, "recurrent_activation")
    j = _Job()
    j.fn, j.tag, j.alloc = fn, tag, alloc
    j.cell, j.G, j.U, j.GU, j.N, j.T, j.D = cell, G, U, GU, n, t, d
    j.kind = {"simple_rnn": 0, "lstm": 1}.get(cell, 2 if gru_after else 3)
    j.x, j.w, j.u, j.bin, j.brec, j.mask = x, w, u, bin_, brec, mask
    j.act, j.pa, j.rec, j.pr = act, pa, rec, pr
    j.go_back, j.zero_out = bool(go_backwards), bool(zero_output_for_mask)
    j.training = bool(training)
    j.isa = _isa()
    # dropout masks (already scaled by 1/(1-rate)), one per gate or one for all
    j.xmask = None
    if input_mask is not None:
        im = check_array(input_mask, "input_mask", fn, ndim=(2, 3))
        if im.shape[-2:] != (n, d) or (im.ndim == 3 and im.shape[0] not in (1, G)):
            raise ValueError(f"{fn}: input_mask must have shape ({n}, {d}) or ({G}, {n}, {d}); received "
                             f"{im.shape}.")
        j.xmask = im.reshape(im.shape[0] if im.ndim == 3 else 1, n, d)
    j.rmask = None
    if recurrent_mask is not None:
        rm = check_array(recurrent_mask, "recurrent_mask", fn, ndim=(2, 3))
        if (rm.ndim == 2 and rm.shape != (n, U)) or (rm.ndim == 3 and rm.shape != (n, G, U)):
            raise ValueError(f"{fn}: recurrent_mask must have shape ({n}, {U}) or ({n}, {G}, {U}); "
                             f"received {rm.shape}.")
        if rm.ndim == 2:
            full = alloc(tag + "rmask", (n, G, U))
            full[...] = rm[:, None, :]
            rm = full
        j.rmask = rm
    return j


def _project(j):
    """z = x @ W + b_in (N, T, GU): one GEMM over all steps (per gate with input dropout masks)."""
    a = j.alloc
    n, t, d, GU, U = j.N, j.T, j.D, j.GU, j.U
    z = a(j.tag + "z", (n, t, GU))
    z2 = z.reshape(n * t, GU)
    if j.xmask is None:
        _mm(j.x.reshape(n * t, d), j.w, z2, j.bin)
    elif j.xmask.shape[0] == 1:
        xm = a(j.tag + "xm0", (n, t, d))
        _rowscale(j.x, j.xmask[0], xm)
        _mm(xm.reshape(n * t, d), j.w, z2, j.bin)
    else:
        tmp = a(j.tag + "zg", (n * t, U))
        xm = a(j.tag + "xmg", (n, t, d))
        for g in range(j.G):
            _rowscale(j.x, j.xmask[g], xm)
            _mm(xm.reshape(n * t, d), j.w[:, g * U:(g + 1) * U], tmp,
                None if j.bin is None else j.bin[g * U:(g + 1) * U])
            z2[:, g * U:(g + 1) * U] = tmp
    j.z = z


def _buffers_forward(j, out):
    a = j.alloc
    n, t, U, GU, tag = j.N, j.T, j.U, j.GU, j.tag
    if out is not None:
        j.y = check_array(out, "out", j.fn, shape=(n, t, U), writeable=True)
        check_aliases(j.fn, [("out", j.y)], [("x", j.x), ("kernel", j.w), ("recurrent_kernel", j.u),
                                              ("bias", j.bin), ("h0", j.h0), ("c0", j.c0)])
    else:
        j.y = a(tag + "y", (n, t, U))
    j.hT = a(tag + "hT", (n, U))
    j.cT = a(tag + "cT", (n, U)) if j.kind == 1 else None
    if j.h0 is None:
        j.h0 = a(tag + "h0", (n, U))
        j.h0.fill(0.0)
    if j.kind == 1 and j.c0 is None:
        j.c0 = a(tag + "c0", (n, U))
        j.c0.fill(0.0)
    keep = j.training
    j.ca = a(tag + "ca", (n, t, GU)) if keep else None
    j.chp = a(tag + "chp", (n, t, U)) if keep else None
    lstm = j.kind == 1
    j.ccp = a(tag + "ccp", (n, t, U)) if keep and lstm else None
    j.ccc = a(tag + "ccc", (n, t, U)) if keep and lstm else None
    j.chc = a(tag + "chc", (n, t, U)) if keep and lstm else None
    j.crh = a(tag + "crh", (n, t, U)) if keep and j.kind >= 2 else None


def _loop(jobs, backward):
    """Run the compiled time loops of several jobs in one split over their concatenated rows."""
    starts = np.cumsum([0] + [j.N for j in jobs])
    flops = sum(2.0 * j.N * j.T * j.U * j.GU * (2 if backward else 1) for j in jobs)

    def work(task, i0, i1, nthreads):
        for j, s in zip(jobs, starts[:-1]):
            a, b = max(i0, s), min(i1, s + j.N)
            if b <= a:
                continue
            if backward:
                ws = _conv._workspace("rnn_bw", _k.backward_ws(j.isa, j.G, j.U, b - a))
                _k.backward_rows(j.kind, j.isa, j.G, j.act, j.pa, j.rec, j.pr, j.go_back, j.zero_out,
                                 a - s, b - s, j.z, j.u, j.mask, j.rmask, j.dy, j.dyl, j.dhT, j.dcT,
                                 j.ca, j.chp, j.ccp, j.ccc, j.chc, j.crh, j.dz, j.drec, j.dh0,
                                 j.dc0, ws)
            else:
                ws = _conv._workspace("rnn_fw", _k.forward_ws(j.isa, j.G, j.U, b - a))
                _k.forward_rows(j.kind, j.isa, j.G, j.act, j.pa, j.rec, j.pr, j.go_back, j.zero_out,
                                a - s, b - s, j.z, j.u, j.brec, j.h0, j.c0, j.mask, j.rmask, j.y,
                                j.hT, j.cT, j.ca, j.chp, j.ccp, j.ccc, j.chc, j.crh, ws)

    _conv._run(work, int(starts[-1]), flops)


def _forward_jobs(specs, fn):
    jobs = []
    for tag, kw in specs:
        kw = dict(kw)
        out = kw.pop("out", None)
        alloc = kw.pop("alloc", None)
        alloc = _np_alloc if alloc is None else alloc     # (an empty dict-like pool is falsy)
        cell = kw.pop("cell")
        args = {k: kw.pop(k, None) for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0",
                                               "mask", "input_mask", "recurrent_mask")}
        j = _prepare(cell, args["x"], args["kernel"], args["recurrent_kernel"], args["bias"],
                     args["h0"], args["c0"], args["mask"], kw.pop("activation", "tanh"),
                     kw.pop("recurrent_activation", "sigmoid"), kw.pop("go_backwards", False),
                     kw.pop("zero_output_for_mask", False), args["input_mask"],
                     args["recurrent_mask"], kw.pop("reset_after", True), kw.pop("training", False),
                     alloc, fn, tag)
        if kw:
            raise TypeError(f"{fn}: unexpected keyword argument(s) {sorted(kw)}.")
        j.h0, j.c0 = args["h0"], args["c0"]
        jobs.append(j)
    # BLAS single-threaded, dense's GEMMs split by its own fixed column shares: the same
    # GEMM kernel and summation order for any thread count (as inside a model step)
    with _conv.blas_pinned():
        for j, (_, kw) in zip(jobs, specs):
            _project(j)
            _buffers_forward(j, kw.get("out"))
        _loop(jobs, backward=False)
    return [(j.y, j.hT, j.cT, j if j.training else None) for j in jobs]


def forward(cell, x, kernel, recurrent_kernel, bias=None, *, h0=None, c0=None, mask=None,
            activation="tanh", recurrent_activation="sigmoid", go_backwards=False,
            zero_output_for_mask=False, reset_after=True, input_mask=None, recurrent_mask=None,
            training=False, out=None, alloc=None):
    """Run a recurrent cell over the whole sequence x (N, T, D) float32.

    cell: "simple_rnn", "lstm" or "gru" (reset_after selects the GRU variant). kernel (D, G*U),
    recurrent_kernel (U, G*U), bias (G*U,) or (2, 3U) for a reset_after GRU, or None. h0, c0
    (N, U) initial states (zeros when None; c0 for the LSTM only). mask (N, T) bool/uint8 or
    None. input_mask (N, D) or (G, N, D) and recurrent_mask (N, U) or (N, G, U): dropout masks
    already scaled by 1/(1-rate), the same for every step (one per gate: Keras's
    implementation=1). training=True keeps what backward needs. out: (N, T, U) buffer for y.
    alloc(key, shape, dtype=float32): where the call takes its buffers (a layer's reusable
    `_buffer`, so a steady-state step allocates nothing); default np.empty.

    Returns (y (N, T, U) in step order, h (N, U), c (N, U) or None, cache or None).
    """
    ((y, h, c, cache),) = _forward_jobs([("", dict(
        cell=cell, x=x, kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias, h0=h0, c0=c0,
        mask=mask, activation=activation, recurrent_activation=recurrent_activation,
        go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask,
        reset_after=reset_after, input_mask=input_mask, recurrent_mask=recurrent_mask,
        training=training, out=out, alloc=alloc))], "rnn.forward")
    return y, h, c, cache


def bidirectional_forward(forward_kwargs, backward_kwargs):
    """Two forward() calls (keyword dicts) whose time loops run in one split: with two threads
    each direction gets one. Returns [(y, h, c, cache)] * 2."""
    return _forward_jobs([("f:", forward_kwargs), ("b:", backward_kwargs)], "rnn.bidirectional_forward")


def _grad_in(a, name, shape, fn):
    if a is None:
        return None
    return check_array(a, name, fn, shape=shape)


def _prepare_backward(j, dy, dy_last, dh, dc, fn):
    if not isinstance(j, _Job) or not getattr(j, "training", False):
        raise ValueError(f"{fn}: cache must be the cache returned by forward(..., training=True).")
    n, t, U, GU, a, tag = j.N, j.T, j.U, j.GU, j.alloc, j.tag
    j.dy = _grad_in(dy, "dy", (n, t, U), fn)
    j.dyl = _grad_in(dy_last, "dy_last", (n, U), fn)
    j.dhT = _grad_in(dh, "dh", (n, U), fn)
    j.dcT = _grad_in(dc, "dc", (n, U), fn) if j.kind == 1 else None
    if dc is not None and j.kind != 1:
        raise ValueError(f"{fn}: dc is the LSTM carry gradient; a {j.cell} has no carry.")
    j.dz = a(tag + "dz", (n, t, GU))
    j.drec = a(tag + "drec", (n, t, GU)) if j.kind == 2 else None
    j.dh0 = a(tag + "dh0", (n, U))
    j.dc0 = a(tag + "dc0", (n, U)) if j.kind == 1 else None


def _weight_grads(j, need_dx, dx, dkernel, drecurrent, dbias, fn):
    """dW = x^T dz, db, dx = dz W^T and dU = h_{t-1}^T dz_rec: one GEMM each over all steps
    (per gate where dropout masks differ between gates)."""
    a, tag = j.alloc, j.tag
    n, t, d, U, GU, G = j.N, j.T, j.D, j.U, j.GU, j.G
    dw = _out(dkernel, "dkernel", j.w.shape, fn, a, tag)
    du = _out(drecurrent, "drecurrent", j.u.shape, fn, a, tag)
    db = _out(dbias, "dbias", (2, GU) if j.kind == 2 else (GU,), fn, a, tag)
    dx = _out(dx, "dx", j.x.shape, fn, a, tag) if need_dx else None
    nt = n * t
    dz2 = j.dz.reshape(nt, GU)
    x2 = j.x.reshape(nt, d)
    if j.xmask is None or j.xmask.shape[0] == 1:
        src = x2
        if j.xmask is not None:
            xm = a(tag + "bxm", (n, t, d))
            _rowscale(j.x, j.xmask[0], xm)
            src = xm.reshape(nt, d)
        _mm(src.T, dz2, dw)
        if need_dx:
            if j.xmask is None:
                _mm(dz2, j.w.T, dx.reshape(nt, d))
            else:
                dxg = a(tag + "gdx", (n, t, d))
                _mm(dz2, j.w.T, dxg.reshape(nt, d))
                _rowscale(dxg, j.xmask[0], dx)
    else:
        xm = a(tag + "bxm", (n, t, d))
        dwg = a(tag + "gdw", (d, U))
        dxg = a(tag + "gdx", (n, t, d)) if need_dx else None
        if need_dx:
            dx.fill(0.0)
        for g in range(G):
            m = j.xmask[g]
            cols = slice(g * U, (g + 1) * U)
            _rowscale(j.x, m, xm)
            _mm(xm.reshape(nt, d).T, dz2[:, cols], dwg)
            dw[:, cols] = dwg
            if need_dx:
                _mm(dz2[:, cols], j.w[:, cols].T, dxg.reshape(nt, d))
                _rowscale(dxg, m, xm)
                dx += xm
    db_in = db[0] if j.kind == 2 else db
    _colsum(dz2, db_in)
    hp2 = j.chp.reshape(nt, U)
    drec2 = (j.drec if j.drec is not None else j.dz).reshape(nt, GU)
    if j.kind == 2:
        _colsum(drec2, db[1])
    if j.rmask is None and j.kind != 3:
        _mm(hp2.T, drec2, du)
    else:
        dug = a(tag + "gdu", (U, U))
        hm = a(tag + "ghm", (n, t, U))
        for g in range(G):
            cols = slice(g * U, (g + 1) * U)
            if j.kind == 3 and g == 2:
                src = j.crh            # r * h_{t-1} (* m_h): the h gate's GEMM operand
            elif j.rmask is not None:
                _rowscale(j.chp, j.rmask[:, g], hm)
                src = hm
            else:
                src = j.chp
            _mm(src.reshape(nt, U).T, drec2[:, cols], dug)
            du[:, cols] = dug
    if j.bin is None:
        db.fill(0.0)
    return dx, dw, du, db


def _out(buf, name, shape, fn, alloc, tag):
    if buf is None:
        return alloc(tag + name, shape)
    return check_array(buf, name, fn, shape=shape, writeable=True)


def backward(cache, dy=None, dy_last=None, dh=None, dc=None, *, need_dx=True, dx=None,
             dkernel=None, drecurrent=None, dbias=None):
    """Gradients of a forward(..., training=True) call.

    dy (N, T, U): gradient of the output sequence (step order) or None; dy_last (N, U): of the
    last output only (return_sequences=False) or None; dh, dc (N, U): of the final states, or
    None. Returns (dx (N, T, D) or None, dkernel, drecurrent, dbias (zeros without a bias),
    dh0 (N, U), dc0 (N, U) or None). dkernel etc. may be views into a gradient arena
    (overwritten, not accumulated).
    """
    fn = "rnn.backward"
    _prepare_backward(cache, dy, dy_last, dh, dc, fn)
    with _conv.blas_pinned():
        _loop([cache], backward=True)
        dx, dw, du, db = _weight_grads(cache, need_dx, dx, dkernel, drecurrent, dbias, fn)
    return dx, dw, du, db, cache.dh0, cache.dc0


def bidirectional_backward(forward_cache, backward_cache, forward_grads, backward_grads):
    """backward() of both directions of bidirectional_forward, the time loops in one split.

    *_grads: dicts of backward()'s keyword arguments (dy, dy_last, dh, dc, need_dx, dx,
    dkernel, drecurrent, dbias). Returns two tuples as backward() does."""
    fn = "rnn.bidirectional_backward"
    jobs = [forward_cache, backward_cache]
    grads = [dict(forward_grads), dict(backward_grads)]
    for j, g in zip(jobs, grads):
        _prepare_backward(j, g.pop("dy", None), g.pop("dy_last", None), g.pop("dh", None),
                          g.pop("dc", None), fn)
    outs = []
    with _conv.blas_pinned():
        _loop(jobs, backward=True)
        for j, g in zip(jobs, grads):
            dx, dw, du, db = _weight_grads(j, g.pop("need_dx", True), g.pop("dx", None),
                                           g.pop("dkernel", None), g.pop("drecurrent", None),
                                           g.pop("dbias", None), fn)
            if g:
                raise TypeError(f"{fn}: unexpected gradient argument(s) {sorted(g)}.")
            outs.append((dx, dw, du, db, j.dh0, j.dc0))
    return outs


# ---------------------------------------------------------------------------- embedding

def _ids(ids, fn):
    if not isinstance(ids, np.ndarray):
        raise TypeError(f"{fn}: ids must be an integer numpy.ndarray; received {type(ids).__name__}.")
    if ids.dtype.kind not in "iu":
        if ids.dtype.kind == "f" and ids.size and np.all(ids == np.floor(ids)):
            return ids.astype(np.int64)
        raise TypeError(f"{fn}: ids must hold integer token ids; received dtype {ids.dtype}. "
                        f"Use ids.astype('int64').")
    return ids


def embedding(ids, table, *, out=None, layer=None):
    """out[...] = table[ids[...]]: ids int (any shape), table (V, D) -> (*ids.shape, D).

    An id < 0 or >= V is a ValueError naming it (and `layer`, when given); nothing is read
    out of bounds."""
    fn = "embedding"
    ids = _ids(ids, fn)
    table = check_array(table, "table", fn, ndim=2)
    shape = (*ids.shape, table.shape[1])
    if out is None:
        out = np.empty(shape, np.float32)
    else:
        check_array(out, "out", fn, shape=shape, writeable=True)
        check_aliases(fn, [("out", out)], [("table", table), ("ids", ids)])
    flat = _flat_ids(ids)
    bad = _k.embedding_forward(flat, table, out.reshape(flat.size, table.shape[1]))
    if bad >= 0:
        where = f" of layer '{layer}'" if layer else ""
        pos = tuple(int(i) for i in np.unravel_index(bad, ids.shape))
        raise ValueError(f"{fn}: token id {int(flat[bad])} at index {pos} is outside the vocabulary"
                         f"{where}: ids must be in [0, input_dim={table.shape[0]}). Raise input_dim "
                         f"or map rare words to an out-of-vocabulary id.")
    return out


def embedding_backward(ids, dout, vocab, *, dtable=None):
    """dtable (vocab, D) = scatter-add of dout's rows (ids.shape + (D,)) at ids, zero elsewhere
    (rows added in order: the same result for any thread count)."""
    fn = "embedding_backward"
    ids = _ids(ids, fn)
    dout = check_array(dout, "dout", fn, ndim=ids.ndim + 1)
    if dout.shape[:-1] != ids.shape:
        raise ValueError(f"{fn}: dout must have shape {(*ids.shape, '?')} to match ids; received {dout.shape}.")
    d = dout.shape[-1]
    if isinstance(vocab, (bool, np.bool_)) or not isinstance(vocab, (int, np.integer)) or vocab < 0:
        raise TypeError(f"{fn}: vocab must be a non-negative int (the embedding's input_dim); "
                        f"received {vocab!r}.")
    vocab = int(vocab)
    if dtable is None:
        dtable = np.empty((vocab, d), np.float32)
    else:
        check_array(dtable, "dtable", fn, shape=(vocab, d), writeable=True)
        check_aliases(fn, [("dtable", dtable)], [("dout", dout), ("ids", ids)])
    flat = _flat_ids(ids)
    bad = _k.embedding_backward(flat, dout.reshape(flat.size, d), dtable)
    if bad >= 0:
        raise ValueError(f"{fn}: ids must be in [0, {vocab}); received id {int(flat[bad])}.")
    return dtable


def _flat_ids(ids):
    """ids as a flat C-contiguous int32 or int64 array (no copy when they already are)."""
    if ids.dtype in (np.int32, np.int64):
        if not ids.flags.aligned:   # the compiled loops load whole ints: copy (UBSan under bench/asan.sh)
            return ids.copy().reshape(-1)
        return np.ascontiguousarray(ids).reshape(-1)
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
