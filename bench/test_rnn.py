"""Recurrent kernels on the benchmark models' shapes: M4's LSTM (batch 128, 28 steps of 28 ->
128 units) and M5's bidirectional LSTM (batch 32, 200 steps of 128 -> 2 x 64 units), forward and
backward through time, plus M5's embedding. NumPy reference (step by step), the fastnn kernel,
and the ceiling: the bare GEMMs of the same FLOPs (one np.matmul per step and the projection /
weight-gradient GEMMs), in one group each. The kernel's result is checked inside.

    pytest bench/test_rnn.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from benchutil import record
from fastnn.kernels import conv as C
from fastnn.kernels import rnn as K
from fastnn.reference import rnn as R

SHAPES = {"M4": (128, 28, 28, 128), "M5": (32, 200, 128, 64)}   # N, T, D, U


def _data(name):
    n, t, d, u = SHAPES[name]
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((n, t, d)).astype(np.float32),
                kernel=(rng.standard_normal((d, 4 * u)) / np.sqrt(d)).astype(np.float32),
                recurrent_kernel=(rng.standard_normal((u, 4 * u)) / np.sqrt(u)).astype(np.float32),
                bias=np.zeros(4 * u, np.float32))


class _Bufs(dict):
    def __call__(self, key, shape, dtype=np.float32):
        k = (key, tuple(shape))
        if k not in self:
            self[k] = np.empty(shape, dtype)
        return self[k]


def _flops(name, backward):
    n, t, d, u = SHAPES[name]
    f = 2.0 * n * t * (d + u) * 4 * u
    dirs = 2 if name == "M5" else 1
    return dirs * f * (2 if backward else 1)


def _ceiling(name, backward):
    """The GEMMs of the same problem, bare: projection + one recurrent GEMM per step (+ backward's
    per-step GEMM and the weight-gradient GEMMs)."""
    n, t, d, u = SHAPES[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n * t, d), dtype=np.float32)
    w = rng.standard_normal((d, 4 * u), dtype=np.float32)
    uk = rng.standard_normal((u, 4 * u), dtype=np.float32)
    h = rng.standard_normal((n, u), dtype=np.float32)
    z = np.empty((n * t, 4 * u), np.float32)
    r = np.empty((n, 4 * u), np.float32)
    dh = np.empty((n, u), np.float32)
    hp = rng.standard_normal((n * t, u), dtype=np.float32)
    dw, du = np.empty((d, 4 * u), np.float32), np.empty((u, 4 * u), np.float32)
    dirs = 2 if name == "M5" else 1

    def run():
        for _ in range(dirs):
            np.matmul(x, w, out=z)
            for _ in range(t):
                np.matmul(h, uk, out=r)
            if backward:
                for _ in range(t):
                    np.matmul(r, uk.T, out=dh)
                np.matmul(x.T, z, out=dw)
                np.matmul(hp.T, z, out=du)
    return run


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
@pytest.mark.parametrize("name", ["M4", "M5"])
def test_lstm_forward(benchmark, name, impl):
    p = _data(name)
    benchmark.group = f"lstm {name} {SHAPES[name]} forward (training, kept gates)"
    if impl == "reference":
        run = lambda: R.forward("lstm", **p, training=True)
    elif impl == "kernel":
        bufs = _Bufs()
        if name == "M5":
            specs = [dict(cell="lstm", **p, training=True, alloc=bufs),
                     dict(cell="lstm", **p, go_backwards=True, training=True, alloc=bufs)]
            run = lambda: K.bidirectional_forward(*specs)
        else:
            run = lambda: K.forward("lstm", **p, training=True, alloc=bufs)
    else:
        run = _ceiling(name, False)
    with C.blas_pinned():
        got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, flops=_flops(name, False))
    if impl == "kernel":
        y = got[0][0] if name == "M5" else got[0]
        want = R.forward("lstm", **p)[0]
        np.testing.assert_allclose(y, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
@pytest.mark.parametrize("name", ["M4", "M5"])
def test_lstm_backward(benchmark, name, impl):
    p = _data(name)
    n, t, d, u = SHAPES[name]
    dyl = np.random.default_rng(2).standard_normal((n, u)).astype(np.float32)
    benchmark.group = f"lstm {name} {SHAPES[name]} backward through time"
    if impl == "reference":
        cache = R.forward("lstm", **p, training=True)[3]
        run = lambda: R.backward(cache, dy_last=dyl)
    elif impl == "kernel":
        bufs = _Bufs()
        if name == "M5":
            (_, _, _, kf), (_, _, _, kb) = K.bidirectional_forward(
                dict(cell="lstm", **p, training=True, alloc=bufs),
                dict(cell="lstm", **p, go_backwards=True, training=True, alloc=bufs))
            run = lambda: K.bidirectional_backward(kf, kb, {"dy_last": dyl}, {"dy_last": dyl})
        else:
            cache = K.forward("lstm", **p, training=True, alloc=bufs)[3]
            run = lambda: K.backward(cache, dy_last=dyl)
    else:
        run = _ceiling(name, True)
    with C.blas_pinned():
        got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, flops=_flops(name, True))
    if impl == "kernel":
        dw = got[0][1] if name == "M5" else got[1]
        want = R.backward(R.forward("lstm", **p, training=True)[3], dy_last=dyl)[1]
        np.testing.assert_allclose(dw, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
def test_embedding(benchmark, impl, copy_ceiling):
    """M5's Embedding(20000, 128) on (32, 200) ids: gather forward + scatter-add backward."""
    rng = np.random.default_rng(3)
    table = rng.standard_normal((20000, 128)).astype(np.float32)
    ids = rng.integers(0, 20000, (32, 200)).astype(np.int32)
    dout = rng.standard_normal((32, 200, 128)).astype(np.float32)
    benchmark.group = "embedding (20000, 128) on (32, 200) ids, forward + backward"
    if impl == "reference":
        run = lambda: (R.embedding(ids, table), R.embedding_backward(ids, dout, 20000))
    elif impl == "kernel":
        out, dt = np.empty((32, 200, 128), np.float32), np.empty_like(table)
        run = lambda: (K.embedding(ids, table, out=out), K.embedding_backward(ids, dout, 20000, dtable=dt))
    else:   # the bytes moved: the gathered rows twice and the zeroed table
        c1, c2 = copy_ceiling(dout.nbytes * 2), copy_ceiling(table.nbytes)
        run = lambda: (c1(), c2())
    got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, nbytes=4 * dout.nbytes + 2 * table.nbytes)
    if impl == "kernel":
        np.testing.assert_allclose(got[1], R.embedding_backward(ids, dout, 20000), rtol=1e-5, atol=1e-5)
