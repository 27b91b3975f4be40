"""3x3 stride-1 conv2d: the im2col + GEMM path against the Winograd F(2x2, 3x3) path, forward
and backward, one group per shape (fastnn.kernels.conv.WINOGRAD switches the path).

Run: pytest bench/test_winograd.py --benchmark-group-by=group --benchmark-min-rounds=5
The shapes are the 3x3 convolutions of M3 (small VGG, batch 64 training / 256 inference,
BatchNorm after, no activation) and M2's second conv (batch 128 / 256, ReLU fused, backward
with y=). GFLOP/s are counted as the direct convolution's (2*M*9*C*F), so the Winograd
path's figure is "effective". Each timed result is checked against the other path.
"""
import numpy as np
import pytest

from fastnn.kernels import conv as K

# name: x (N, H, W, C), F, padding, fused ReLU
SHAPES = {
    "M3-32x32x32-32-same-b64": ((64, 32, 32, 32), 32, "same", False),
    "M3-16x16x32-64-same-b64": ((64, 16, 16, 32), 64, "same", False),
    "M3-16x16x64-64-same-b64": ((64, 16, 16, 64), 64, "same", False),
    "M3-32x32x32-32-same-b256": ((256, 32, 32, 32), 32, "same", False),
    "M3-16x16x64-64-same-b256": ((256, 16, 16, 64), 64, "same", False),
    "M2-13x13x32-64-valid-relu-b128": ((128, 13, 13, 32), 64, "valid", True),
    "M2-13x13x32-64-valid-relu-b256": ((256, 13, 13, 32), 64, "valid", True),
}
PATHS = ["im2col", "winograd"]


def _data(name):
    xs, f, p, relu = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal((3, 3, xs[3], f), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * xs[3])))
    b = rng.standard_normal(f, dtype=np.float32)
    act = "relu" if relu else "linear"
    y = K.conv2d(x, w, b, 1, p, activation=act)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    flops = 2.0 * y.shape[0] * y.shape[1] * y.shape[2] * 9 * xs[3] * f
    return x, w, b, p, act, (y if relu else None), dy, flops


class _path:
    def __init__(self, name):
        self.on = name == "winograd"

    def __enter__(self):
        self.saved, K.WINOGRAD = K.WINOGRAD, self.on

    def __exit__(self, *exc):
        K.WINOGRAD = self.saved


def _other(fn, impl):
    with _path("im2col" if impl == "winograd" else "winograd"):
        return fn()


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_winograd_forward(benchmark, record, name, impl):
    x, w, b, p, act, _, dy, flops = _data(name)
    benchmark.group = f"conv3x3 fwd {name}"
    out = np.empty(dy.shape, np.float32)
    with _path(impl):
        benchmark(lambda: K.conv2d(x, w, b, 1, p, out=out, activation=act))
    want = _other(lambda: K.conv2d(x, w, b, 1, p, activation=act), impl)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    record(benchmark, flops=flops)


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_winograd_backward(benchmark, record, name, impl):
    x, w, b, p, act, y, dy, flops = _data(name)
    benchmark.group = f"conv3x3 bwd {name}"
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(w.shape[3], np.float32)
    with _path(impl):
        benchmark(lambda: K.conv2d_backward(x, w, dy, 1, p, dx=dx, dw=dw, db=db, y=y))
    want = _other(lambda: K.conv2d_backward(x, w, dy, 1, p, y=y), impl)
    for got, ref in zip((dx, dw, db), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    record(benchmark, flops=2 * flops)
