"""First-layer convolutions (few input channels): the im2col + GEMM path vs the direct kernels.

Run: pytest bench/test_conv_direct.py --benchmark-group-by=group --benchmark-min-rounds=5
One group per shape and direction, the two paths forced with fastnn.kernels.conv.DIRECT. The
shapes are the first layers of the Keras MNIST convnet (M2: 3x3x1x32 'valid' + ReLU, training
batch 128 and inference batch 256) and of the small VGG (M3: 3x3x3x32 'same', no activation,
BatchNorm after; training batch 64, inference 256). Backward is need_dx=False (a first layer),
with y= the ReLU-fused output for M2. Each result is checked against the other path inside.
Target: the direct path faster than im2col on every row.
"""
import numpy as np
import pytest

from fastnn.kernels import conv as K

# name: x (N, H, W, C), w (KH, KW, C, F), padding, activation, backward too (training batch)
SHAPES = {
    "M2-28x28x1-3x3x32-valid-relu-b128": ((128, 28, 28, 1), (3, 3, 1, 32), "valid", "relu", True),
    "M2-28x28x1-3x3x32-valid-relu-b256": ((256, 28, 28, 1), (3, 3, 1, 32), "valid", "relu", False),
    "M3-32x32x3-3x3x32-same-b64": ((64, 32, 32, 3), (3, 3, 3, 32), "same", "linear", True),
    "M3-32x32x3-3x3x32-same-b256": ((256, 32, 32, 3), (3, 3, 3, 32), "same", "linear", False),
}
PATHS = {"im2col": False, "direct": True}


def _data(name):
    xs, ws, p, act, _ = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32) * np.float32(0.3)
    b = rng.standard_normal(ws[3], dtype=np.float32) * np.float32(0.1)
    saved, K.DIRECT = K.DIRECT, False
    try:
        y = K.conv2d(x, w, b, 1, p, activation=act)       # the im2col result, to check against
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        _, dw, db = K.conv2d_backward(x, w, dy, 1, p, need_dx=False, y=y if act == "relu" else None)
    finally:
        K.DIRECT = saved
    m = y.shape[0] * y.shape[1] * y.shape[2]
    return x, w, b, p, act, y, dy, (dw, db), 2.0 * m * ws[0] * ws[1] * ws[2] * ws[3]


@pytest.fixture
def forced():
    saved = K.DIRECT
    yield lambda mode: setattr(K, "DIRECT", mode)
    K.DIRECT = saved


@pytest.mark.parametrize("impl", list(PATHS))
@pytest.mark.parametrize("name", list(SHAPES))
def test_conv_direct_forward(benchmark, record, forced, name, impl):
    x, w, b, p, act, y_ref, _, _, flops = _data(name)
    benchmark.group = f"conv first layer fwd {name}"
    forced(PATHS[impl])
    out = np.empty_like(y_ref)
    y = benchmark(lambda: K.conv2d(x, w, b, 1, p, out=out, activation=act))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    record(benchmark, flops=flops)


@pytest.mark.parametrize("impl", list(PATHS))
@pytest.mark.parametrize("name", [n for n, s in SHAPES.items() if s[4]])
def test_conv_direct_backward(benchmark, record, forced, name, impl):
    x, w, b, p, act, y_ref, dy, (dw_ref, db_ref), flops = _data(name)
    benchmark.group = f"conv first layer bwd (dw, db) {name}"
    forced(PATHS[impl])
    y = y_ref if act == "relu" else None
    dw, db = np.empty_like(w), np.empty(w.shape[3], np.float32)
    res = benchmark(lambda: K.conv2d_backward(x, w, dy, 1, p, need_dx=False, dw=dw, db=db, y=y))
    assert res[0] is None
    np.testing.assert_allclose(res[1], dw_ref, rtol=1e-4, atol=1e-4 * np.abs(dw_ref).max())
    np.testing.assert_allclose(res[2], db_ref, rtol=1e-4, atol=1e-4 * np.abs(db_ref).max())
    record(benchmark, flops=flops)


FUSED = ["im2col+pool", "direct+pool", "fused"]


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("batch", [128, 256])
def test_conv_relu_maxpool_predict(benchmark, record, forced, batch, impl):
    """M2's first two layers in predict: Conv2D(32, 3, relu) -> MaxPooling2D(2)."""
    from fastnn.kernels import pool as P

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 28, 28, 1), dtype=np.float32)
    w = rng.standard_normal((3, 3, 1, 32), dtype=np.float32) * np.float32(0.3)
    b = rng.standard_normal(32, dtype=np.float32) * np.float32(0.1)
    benchmark.group = f"conv+relu+maxpool M2 predict b{batch}"
    yc = np.empty((batch, 26, 26, 32), np.float32)
    yp = np.empty((batch, 13, 13, 32), np.float32)
    am = np.empty(yp.shape, np.int32)
    if impl == "fused":
        forced(None)
        fn = lambda: K.conv2d(x, w, b, activation="relu", pool=(2, 2), out=yp)  # noqa: E731
    else:
        forced(impl == "direct+pool")

        def fn():
            K.conv2d(x, w, b, out=yc, activation="relu")
            return P.max_pool2d(yc, 2, out=yp, argmax=am)[0]
    y = benchmark(fn)
    forced(False)
    expect = P.max_pool2d(K.conv2d(x, w, b, activation="relu"), 2)[0]
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
    record(benchmark, flops=2.0 * batch * 26 * 26 * 9 * 32)
