"""Results do not depend on the thread count, on any instruction-set flavour (this file runs
under each flavour the CPU has: tests/kernels/conftest.py).

Every kernel that splits work over threads is run with 1, 2 and 3 threads (the pool really
splits: SERIAL_FLOPS is 0, chunks are small) and must give the same bits, forward and backward:
the convolution paths (im2col, 1x1, direct, Winograd, their fused epilogues and 2x2 pool, batches
smaller than the thread count), dense on fastnn's sgemm and on BLAS, batch norm, pooling, the
activations, the losses and the optimizer step with norm clipping. BLAS itself may round a row
differently depending on where it falls inside a GEMM (OpenBLAS's Haswell kernels do), so this
also runs with OPENBLAS_CORETYPE=Haswell in a subprocess (the AVX2 machines' BLAS kernels).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn.kernels import activation, conv, dense, loss, norm, optim, pool
from fastnn.kernels import threads as T

THREADS = (1, 2, 3)


class split:
    """Thread count n, and every call split as finely as the kernels allow."""

    def __init__(self, n, chunk=None):
        self.n, self.chunk = n, chunk

    def __enter__(self):
        self.saved = (T.get_num_threads(), conv.SERIAL_FLOPS, conv.CHUNK_BYTES, conv.WINO_CHUNK_BYTES,
                      dense.SPLIT_FLOPS)
        T.set_num_threads(self.n)
        conv.SERIAL_FLOPS = 0.0
        dense.SPLIT_FLOPS = 0.0
        if self.chunk is not None:
            conv.CHUNK_BYTES = conv.WINO_CHUNK_BYTES = self.chunk

    def __exit__(self, *exc):
        n, conv.SERIAL_FLOPS, conv.CHUNK_BYTES, conv.WINO_CHUNK_BYTES, dense.SPLIT_FLOPS = self.saved
        T.set_num_threads(n)


def same_for_every_thread_count(fn, chunk=None):
    """fn() -> tuple of arrays, run with 1, 2, 3 threads: all bit-identical."""
    res = []
    for n in THREADS:
        with split(n, chunk):
            res.append([np.array(a, copy=True) for a in fn()])
    for n, r in zip(THREADS[1:], res[1:]):
        for i, (a, b) in enumerate(zip(res[0], r)):
            np.testing.assert_array_equal(a, b, err_msg=f"output {i}: 1 thread vs {n}")
    return res[0]


def rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# (x shape, w shape, strides, padding, path): every conv path of fastnn.kernels.conv
CONV_CASES = [
    ((5, 12, 11, 16), (3, 3, 16, 24), 1, "same", "winograd"),
    ((3, 13, 13, 32), (3, 3, 32, 8), 1, "valid", "winograd"),
    ((1, 17, 15, 8), (3, 3, 8, 16), 1, "same", "winograd"),          # batch 1: tile rows split
    ((4, 10, 9, 12), (3, 3, 12, 20), 2, "same", "im2col"),
    ((6, 8, 8, 40), (1, 1, 40, 24), 1, "valid", "1x1"),
    ((2, 11, 10, 7), (5, 5, 7, 9), 1, "same", "im2col"),             # batch < SMALL_BATCH: 2 phases
    ((5, 14, 14, 1), (3, 3, 1, 32), 1, "valid", "direct"),
    ((3, 16, 16, 3), (3, 3, 3, 48), 1, "same", "direct"),
]


@pytest.mark.parametrize("xs, ws, s, p, path", CONV_CASES, ids=[c[-1] + str(i) for i, c in enumerate(CONV_CASES)])
@pytest.mark.parametrize("chunk", [600, None], ids=["small-chunks", "default-chunks"])
def test_conv_forward_backward(rng, xs, ws, s, p, path, chunk):
    x, w, b = rand(rng, xs), rand(rng, ws, 0.2), rand(rng, ws[3])
    old = conv.WINOGRAD, conv.DIRECT
    conv.WINOGRAD = path == "winograd"
    conv.DIRECT = None if path == "direct" else False
    try:
        y = conv.conv2d(x, w, b, s, p)
        dy = rand(rng, y.shape)

        def run():
            yy = conv.conv2d(x, w, b, s, p, activation="relu")
            return (yy,) + conv.conv2d_backward(x, w, dy, s, p, y=yy) \
                + conv.conv2d_backward(x, w, dy, s, p, need_dx=False)[1:]

        got = same_for_every_thread_count(run, chunk)
    finally:
        conv.WINOGRAD, conv.DIRECT = old
    if path == "direct":
        assert conv._use_direct(ws[0] * ws[1] * ws[2], ws[3])
    if path == "winograd":
        assert conv._use_winograd(w, (s, s), (1, 1), (1, 1, 1, 1) if p == "same" else (0, 0, 0, 0))
    assert np.isfinite(got[0]).all() and got[0].any()


@pytest.mark.parametrize("xs, ws, p, path", [
    ((6, 14, 14, 8), (3, 3, 8, 32), "same", "winograd"),
    ((3, 15, 13, 16), (3, 3, 16, 16), "valid", "winograd"),
    ((4, 9, 12, 12), (3, 3, 12, 8), "same", "im2col"),
    ((5, 10, 10, 24), (1, 1, 24, 16), "valid", "1x1"),
    ((5, 11, 11, 2), (3, 3, 2, 16), "valid", "direct"),
])
@pytest.mark.parametrize("chunk", [600, None], ids=["small-chunks", "default-chunks"])
def test_conv_inference_epilogues(rng, xs, ws, p, path, chunk):
    """The fused BN + ReLU + pool inference call: the same bits for any thread count, and the
    same bits as the separate kernels (the chunks and GEMMs are the same)."""
    x, w, b = rand(rng, xs), rand(rng, ws, 0.2), rand(rng, ws[3])
    f = ws[3]
    gamma, beta = rng.random(f, dtype=np.float32) + 0.5, rand(rng, f)
    mean, var = rand(rng, f), rng.random(f, dtype=np.float32) + 0.1
    scale, shift = norm.inference_fold(gamma, beta, var, 1e-3)
    old = conv.WINOGRAD, conv.DIRECT
    conv.WINOGRAD = path == "winograd"
    conv.DIRECT = None if path == "direct" else False
    try:
        def run():
            fused = conv.conv2d(x, w, b, 1, p, activation="relu", affine=(mean, scale, shift),
                                pool=(2, 2))
            z = conv.conv2d(x, w, b, 1, p)
            sep = pool.max_pool2d(norm.batch_norm_inference(z, gamma, beta, mean, var, 1e-3,
                                                            relu=True), (2, 2))[0]
            return fused, sep

        fused, sep = same_for_every_thread_count(run, chunk)
    finally:
        conv.WINOGRAD, conv.DIRECT = old
    np.testing.assert_array_equal(fused, sep)


@pytest.mark.parametrize("gemm", ["auto", "own", "blas"])
@pytest.mark.parametrize("m, k, u, act", [(128, 784, 512, "relu"), (70, 300, 10, "softmax"),
                                          (33, 64, 48, "linear"), (256, 40, 200, "tanh")])
def test_dense(rng, gemm, m, k, u, act):
    x, w, b, dy = rand(rng, (m, k)), rand(rng, (k, u), 0.05), rand(rng, u), rand(rng, (m, u))
    old = dense.GEMM
    dense.GEMM = gemm
    try:
        for pinned in (False, True):
            def run():
                if pinned:
                    with conv.blas_pinned():
                        return (dense.dense(x, w, b, act),) + dense.dense_backward(x, w, dy)
                return (dense.dense(x, w, b, act),) + dense.dense_backward(x, w, dy)

            same_for_every_thread_count(run)
    finally:
        dense.GEMM = old


def test_norm_pool_activation_loss(rng):
    x = rand(rng, (64, 9, 9, 48))
    g, bt = rng.random(48, dtype=np.float32) + 0.5, rand(rng, 48)
    z, yl = rand(rng, (300, 1000)), rng.integers(0, 1000, 300)

    def run():
        mm, mv = np.zeros(48, np.float32), np.ones(48, np.float32)
        y, mean, invstd = norm.batch_norm_train(x, g, bt, mm, mv)
        grads = norm.batch_norm_backward(y, x, g, mean, invstd)
        p, am = pool.max_pool2d(x, (2, 2))
        gp = pool.global_avg_pool2d(x)
        a = activation.apply("gelu", x)
        sm = activation.apply("softmax", z)
        l, pr = loss.softmax_crossentropy(z, yl, sparse=True)
        return (y, mean, invstd, mm, mv, *grads, p, am, gp, a, sm, l, pr)

    same_for_every_thread_count(run)


@pytest.mark.parametrize("kind, clip", [("adam", {"global_clipnorm": 1.0}), ("sgd", {"clipnorm": 0.5}),
                                        ("rmsprop", {})])
def test_optimizer_step(rng, kind, clip):
    n = 300_001
    p0, g0 = rand(rng, n), rand(rng, n)
    segs = np.array([0, 1000, 250_000, n], np.int64)

    def run():
        params, grads = p0.copy(), g0.copy()
        slots = optim.init_slots(kind, n)
        for it in range(3):
            optim.step(kind, params, grads.copy(), slots, lr=0.01, iteration=it, segments=segs, **clip)
        return (params,)

    same_for_every_thread_count(run)


@pytest.mark.skipif(os.environ.get("FASTNN_DETERMINISM_CHILD") == "1", reason="the child run itself")
def test_with_haswell_blas_kernels(flavour, tmp_path):
    """The conv and dense cases again with OpenBLAS forced onto its Haswell kernels (what an
    AVX2-only machine runs; their tail kernels round rows by their place in the GEMM)."""
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", FASTNN_ISA=flavour,
               FASTNN_DETERMINISM_CHILD="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        "-k", "conv or dense", __file__], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
