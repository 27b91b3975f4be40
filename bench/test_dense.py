"""Dense (128, 784) x (784, 1024) + bias + relu, forward and backward: the NumPy reference, the
fastnn kernel and the bare GEMM ceiling (np.matmul into a preallocated output) in one group.

    pytest bench/test_dense.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from benchutil import record
from fastnn.kernels import activation as A
from fastnn.kernels import dense as K
from fastnn.reference import dense as R

M, KK, U = 128, 784, 1024


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, KK)).astype(np.float32)
    w = (rng.standard_normal((KK, U)) / np.sqrt(KK)).astype(np.float32)
    b = rng.standard_normal(U).astype(np.float32)
    dy = rng.standard_normal((M, U)).astype(np.float32)
    return x, w, b, dy


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
def test_dense_relu_forward(benchmark, data, gemm_ceiling, impl):
    x, w, b, _ = data
    benchmark.group = f"dense ({M},{KK})x({KK},{U}) relu forward"
    if impl == "reference":
        run = lambda: R.dense(x, w, b, "relu")
    elif impl == "kernel":
        out = np.empty((M, U), np.float32)
        run = lambda: K.dense(x, w, b, "relu", out=out)
    else:
        run = gemm_ceiling(M, KK, U)
    got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, flops=2 * M * KK * U)
    if impl == "kernel":
        np.testing.assert_allclose(got, R.dense(x, w, b, "relu"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
def test_dense_relu_backward(benchmark, data, gemm_ceiling, impl):
    """relu grad, then dx = dz @ w.T, dw = x.T @ dz, db = sum(dz)."""
    x, w, b, dy = data
    y = K.dense(x, w, b, "relu")
    benchmark.group = f"dense ({M},{KK})x({KK},{U}) relu backward"
    if impl == "reference":
        from fastnn.reference import activation as RA

        def run():
            dz = RA.grad("relu", y, y, dy)
            return R.dense_backward(x, w, dz)
    elif impl == "kernel":
        dz, dx = np.empty_like(dy), np.empty_like(x)
        dw, db = np.empty_like(w), np.empty_like(b)

        def run():
            A.grad("relu", y, y, dy, out=dz)
            return K.dense_backward(x, w, dz, dx=dx, dw=dw, db=db)
    else:
        g1, g2 = gemm_ceiling(M, U, KK), gemm_ceiling(KK, M, U)    # the two GEMMs of backward
        run = lambda: (g1(), g2())
    benchmark(run)
    if not benchmark.disabled:
        record(benchmark, flops=4 * M * KK * U)
