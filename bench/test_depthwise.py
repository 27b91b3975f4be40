"""Depthwise convolution forward / backward: NumPy reference, fastnn kernel and the copy ceiling.

Run: pytest bench/test_depthwise.py --benchmark-group-by=group --benchmark-min-rounds=5
The shapes are MobileNetV2's depthwise layers at 224x224 (3x3, training batch 16, and batch 1
for inference) and EfficientNet-B0's 5x5 ones (batch 16). A depthwise layer does 9 (or 25)
multiply-adds per output value, so it is bound by memory more than by arithmetic: the ceiling is
np.copyto of the bytes the kernel must move at least (forward: read x, write y; backward: read x
and dy, write dx). Targets: faster than the reference by a wide margin, near the copy ceiling.
Each result is checked against the reference on its first image inside the benchmark file.
"""
import numpy as np
import pytest

from fastnn.kernels import depthwise as K
from fastnn.reference import depthwise as R

# name: x (N, H, W, C), k, strides, backward too
SHAPES = {
    "mbv2-112x112x32-3x3-b16": ((16, 112, 112, 32), 3, 1, True),
    "mbv2-112x112x96-3x3-s2-b16": ((16, 112, 112, 96), 3, 2, True),
    "mbv2-56x56x144-3x3-b16": ((16, 56, 56, 144), 3, 1, True),
    "mbv2-28x28x192-3x3-b16": ((16, 28, 28, 192), 3, 1, True),
    "mbv2-14x14x576-3x3-b16": ((16, 14, 14, 576), 3, 1, True),
    "mbv2-7x7x960-3x3-b16": ((16, 7, 7, 960), 3, 1, True),
    "mbv2-112x112x32-3x3-b1": ((1, 112, 112, 32), 3, 1, False),
    "mbv2-56x56x144-3x3-b1": ((1, 56, 56, 144), 3, 1, False),
    "effb0-56x56x144-5x5-s2-b16": ((16, 56, 56, 144), 5, 2, True),
    "effb0-14x14x672-5x5-b16": ((16, 14, 14, 672), 5, 1, True),
}
IMPLS = ["reference", "kernel", "copy"]


def _data(name):
    xs, k, s, _ = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal((k, k, xs[3], 1), dtype=np.float32) * np.float32(0.3)
    b = rng.standard_normal(xs[3], dtype=np.float32)
    y = K.depthwise_conv2d(x, w, b, s, "same")
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    return x, w, b, s, y, dy


def _run(benchmark, impl, fn):
    if impl == "reference":   # up to seconds per call: a few rounds are enough
        return benchmark.pedantic(fn, rounds=2, iterations=1, warmup_rounds=0)
    return benchmark(fn)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_depthwise_forward(benchmark, copy_ceiling, record, name, impl):
    x, w, b, s, y_ref, _ = _data(name)
    benchmark.group = f"depthwise fwd {name}"
    nbytes = x.nbytes + y_ref.nbytes
    out = np.empty_like(y_ref)
    if impl == "reference":
        y = _run(benchmark, impl, lambda: R.depthwise_conv2d(x, w, b, s, "same"))
    elif impl == "kernel":
        y = _run(benchmark, impl, lambda: K.depthwise_conv2d(x, w, b, s, "same", out=out))
    else:
        _run(benchmark, impl, copy_ceiling(nbytes // 2))   # reads and writes nbytes in total
        y = None
    if y is not None:
        np.testing.assert_allclose(y[:1], R.depthwise_conv2d(x[:1], w, b, s, "same"), rtol=1e-4, atol=1e-4)
    record(benchmark, flops=2.0 * y_ref.size * w.shape[0] * w.shape[1], nbytes=nbytes)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", [n for n, v in SHAPES.items() if v[3]])
def test_depthwise_backward(benchmark, copy_ceiling, record, name, impl):
    x, w, b, s, _, dy = _data(name)
    benchmark.group = f"depthwise bwd {name}"
    nbytes = 2 * x.nbytes + dy.nbytes       # read x and dy, write dx
    if impl == "reference":
        res = _run(benchmark, impl, lambda: R.depthwise_conv2d_backward(x, w, dy, s, "same"))
    elif impl == "kernel":
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(w.shape[2], np.float32)
        res = _run(benchmark, impl, lambda: K.depthwise_conv2d_backward(x, w, dy, s, "same", dx=dx, dw=dw, db=db))
    else:
        _run(benchmark, impl, copy_ceiling(nbytes // 2))
        res = None
    if res is not None:   # dx of the first image depends only on its dy
        rdx, _, _ = R.depthwise_conv2d_backward(x[:1], w, dy[:1], s, "same")
        np.testing.assert_allclose(res[0][:1], rdx, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(res[2], dy.sum(axis=(0, 1, 2), dtype=np.float64), rtol=1e-4, atol=1e-2)
    record(benchmark, flops=4.0 * dy.size * w.shape[0] * w.shape[1], nbytes=nbytes)
