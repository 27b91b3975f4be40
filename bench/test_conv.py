"""conv2d forward / backward: NumPy reference, fastnn kernel and the bare GEMM ceiling per shape.

Run: pytest bench/test_conv.py --benchmark-group-by=group --benchmark-min-rounds=3
Targets: kernel time <= 1.43x the GEMM ceiling (>= 70% of it) and >= 3x faster than the
reference. The forward ceiling is np.matmul of (N*OH*OW, KH*KW*C) @ (KH*KW*C, F); the backward
ceiling is the two GEMMs dW = colᵀ @ dY and dcol = dY @ Wᵀ.
"""
import numpy as np
import pytest

from fastnn.kernels import conv as K
from fastnn.reference import conv as R

# name: x (N, H, W, C), w (KH, KW, C, F), strides, padding
SHAPES = {
    "13x13x32-3x3x64-valid": ((128, 13, 13, 32), (3, 3, 32, 64), 1, "valid"),
    "32x32x32-3x3x32-same": ((64, 32, 32, 32), (3, 3, 32, 32), 1, "same"),
    "16x16x64-3x3x64-same": ((64, 16, 16, 64), (3, 3, 64, 64), 1, "same"),
    "56x56x64-3x3x64-same": ((32, 56, 56, 64), (3, 3, 64, 64), 1, "same"),
    "28x28x128-1x1x256": ((32, 28, 28, 128), (1, 1, 128, 256), 1, "valid"),
    "56x56x64-3x3x128-s2": ((32, 56, 56, 64), (3, 3, 64, 128), 2, "same"),
}
IMPLS = ["reference", "kernel", "gemm"]


def _data(name):
    xs, ws, s, p = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32) * np.float32(0.1)
    b = rng.standard_normal(ws[3], dtype=np.float32)
    y_shape = K.conv2d(x[:1], w, None, s, p).shape
    dy = rng.standard_normal((xs[0], *y_shape[1:]), dtype=np.float32)
    m = xs[0] * y_shape[1] * y_shape[2]
    k = ws[0] * ws[1] * ws[2]
    return x, w, b, s, p, dy, (m, k, ws[3])


def _run(benchmark, impl, fn):
    if impl == "reference":   # seconds per call on the big shapes: a few rounds are enough
        return benchmark.pedantic(fn, rounds=2, iterations=1, warmup_rounds=0)
    return benchmark(fn)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_conv2d_forward(benchmark, gemm_ceiling, record, name, impl):
    x, w, b, s, p, dy, (m, k, f) = _data(name)
    benchmark.group = f"conv2d fwd {name}"
    out = np.empty(dy.shape, np.float32)
    if impl == "reference":
        y = _run(benchmark, impl, lambda: R.conv2d(x, w, b, s, p))
    elif impl == "kernel":
        y = _run(benchmark, impl, lambda: K.conv2d(x, w, b, s, p, out=out))
    else:
        _run(benchmark, impl, gemm_ceiling(m, k, f))
        y = None
    if y is not None:   # the first two images against the reference (cheap)
        np.testing.assert_allclose(y[:2], R.conv2d(x[:2], w, b, s, p), rtol=1e-4, atol=1e-3)
    record(benchmark, flops=2.0 * m * k * f)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_conv2d_backward(benchmark, gemm_ceiling, record, name, impl):
    x, w, b, s, p, dy, (m, k, f) = _data(name)
    benchmark.group = f"conv2d bwd {name}"
    if impl == "reference":
        res = _run(benchmark, impl, lambda: R.conv2d_backward(x, w, dy, s, p))
    elif impl == "kernel":
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(f, np.float32)
        res = _run(benchmark, impl, lambda: K.conv2d_backward(x, w, dy, s, p, dx=dx, dw=dw, db=db))
    else:
        g_dw = gemm_ceiling(k, m, f)      # dW = colᵀ @ dY
        g_dx = gemm_ceiling(m, f, k)      # dcol = dY @ Wᵀ
        _run(benchmark, impl, lambda: (g_dw(), g_dx()))
        res = None
    if res is not None:   # dx of the first two images depends only on their dy
        dx2, _, _ = R.conv2d_backward(x[:2], w, dy[:2], s, p)
        np.testing.assert_allclose(res[0][:2], dx2, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(res[2], dy.sum(axis=(0, 1, 2), dtype=np.float64), rtol=1e-4, atol=1e-2)
    record(benchmark, flops=4.0 * m * k * f)
