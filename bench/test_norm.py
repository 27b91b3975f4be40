"""Batch-norm benchmarks: NumPy reference vs fastnn kernel vs copy ceiling, NHWC float32.

GB/s counts the memory traffic of the kernel's passes: training forward reads x twice and
writes y (3 arrays), backward reads dy, x twice and writes dx (5 arrays; 7 with the ReLU mask
y= read in both passes), inference reads x and writes y (2 arrays). kernel_portable is the same
kernel forced to its portable (SSE2 on x86-64) flavour, the A/B baseline of the AVX ones. The copy ceiling is np.copyto moving the same number of bytes (read half,
write half), so kernel GB/s / ceiling GB/s is the fraction of the copy speed reached.
Run: pytest bench/test_norm.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from fastnn._kernels import norm as _norm
from fastnn.kernels import norm
from fastnn.reference import norm as ref
from benchutil import record



SHAPES = [(64, 32, 32, 32), (64, 16, 16, 64), (64, 32, 32, 64)]   # M3's BN layers, a wider one
ARRAYS = {"train": 3, "backward": 5, "backward_relu": 7, "inference": 2}


def _setup(shape):
    rng = np.random.default_rng(0)
    c = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = (rng.standard_normal(c) + 1).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    mm = np.zeros(c, np.float32)
    mv = np.ones(c, np.float32)
    return x, dy, gamma, beta, mm, mv


def _traffic(shape, kind):
    return ARRAYS[kind] * int(np.prod(shape)) * 4


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", list(ARRAYS))
@pytest.mark.parametrize("impl", ["reference", "kernel", "kernel_portable", "copy_ceiling"])
def test_batch_norm(benchmark, copy_ceiling, shape, kind, impl):
    benchmark.group = f"batchnorm-{kind} {shape}"
    old_isa = _norm.set_isa(0) if impl == "kernel_portable" else None
    try:
        _bench(benchmark, copy_ceiling, shape, kind, impl)
    finally:
        if old_isa is not None:
            _norm.set_isa(old_isa)


def _bench(benchmark, copy_ceiling, shape, kind, impl):
    x, dy, gamma, beta, mm, mv = _setup(shape)
    nbytes = _traffic(shape, kind)
    if impl == "copy_ceiling":
        benchmark(copy_ceiling(nbytes // 2))
        record(benchmark, nbytes=nbytes)
        return
    _, mean, invstd = ref.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())
    if kind == "train":
        expect = ref.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())[0]
        if impl == "reference":
            got = benchmark(lambda: ref.batch_norm_train(x, gamma, beta, mm, mv)[0])
        else:
            out, m_, i_ = np.empty_like(x), np.empty_like(mm), np.empty_like(mm)
            got = benchmark(lambda: norm.batch_norm_train(x, gamma, beta, mm, mv, out=out,
                                                          mean=m_, invstd=i_)[0])
    elif kind == "backward_relu":
        y = np.maximum(ref.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())[0], 0)
        dym = dy * (y > 0)
        expect = ref.batch_norm_backward(dym, x, gamma, mean, invstd)[0]
        if impl == "reference":
            got = benchmark(lambda: ref.batch_norm_backward(dy * (y > 0), x, gamma, mean,
                                                            invstd)[0])
        else:
            dx, dg, db = np.empty_like(x), np.empty_like(mm), np.empty_like(mm)
            got = benchmark(lambda: norm.batch_norm_backward(dy, x, gamma, mean, invstd, dx=dx,
                                                             dgamma=dg, dbeta=db, y=y)[0])
    elif kind == "backward":
        expect = ref.batch_norm_backward(dy, x, gamma, mean, invstd)[0]
        if impl == "reference":
            got = benchmark(lambda: ref.batch_norm_backward(dy, x, gamma, mean, invstd)[0])
        else:
            dx, dg, db = np.empty_like(x), np.empty_like(mm), np.empty_like(mm)
            got = benchmark(lambda: norm.batch_norm_backward(dy, x, gamma, mean, invstd, dx=dx,
                                                             dgamma=dg, dbeta=db)[0])
    else:
        expect = ref.batch_norm_inference(x, gamma, beta, mm, mv)
        if impl == "reference":
            got = benchmark(lambda: ref.batch_norm_inference(x, gamma, beta, mm, mv))
        else:
            out = np.empty_like(x)
            got = benchmark(lambda: norm.batch_norm_inference(x, gamma, beta, mm, mv, out=out))
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * float(np.abs(expect).max()))
    record(benchmark, nbytes=nbytes)
