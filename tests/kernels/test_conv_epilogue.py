"""conv2d's inference epilogues: the batch-norm affine map (affine=) and the 2x2 max pool
(pool=) against the separate kernels (bit for bit) and the NumPy reference, and their checks."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnn import set_num_threads
from fastnn.kernels import activation, conv, norm, pool
from fastnn.kernels.threads import get_num_threads
from fastnn.reference import conv as R
from fastnn.reference import norm as RN


def rand(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def bn_params(rng, f):
    gamma = rng.random(f, dtype=np.float32) + 0.5
    beta = rand(rng, f)
    mean = rand(rng, f)
    var = rng.random(f, dtype=np.float32) + 0.1
    return gamma, beta, mean, var


@st.composite
def case(draw):
    n = draw(st.integers(1, 4))
    h, w = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    c, f = draw(st.integers(1, 9)), draw(st.integers(1, 20))
    k = draw(st.integers(1, min(3, h, w)))
    padding = draw(st.sampled_from(["valid", "same"]))
    s = draw(st.integers(1, 2))
    oh = (h - k) // s + 1 if padding == "valid" else -(-h // s)
    ow = (w - k) // s + 1 if padding == "valid" else -(-w // s)
    return (n, h, w, c), (k, k, c, f), (s, s), padding, (oh, ow), draw(st.integers(0, 2 ** 31))


@given(case(), st.sampled_from(["linear", "relu", "sigmoid"]), st.booleans(), st.booleans(),
       st.sampled_from([1, 600, conv.CHUNK_BYTES]))
def test_epilogues_equal_separate_kernels(spec, act, with_bn, with_pool, chunk):
    xs, ws, strides, padding, (oh, ow), seed = spec
    if with_pool and (oh < 2 or ow < 2):
        with_pool = False
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, ws[3])
    gamma, beta, mean, var = bn_params(rng, ws[3])
    old = conv.CHUNK_BYTES
    conv.CHUNK_BYTES = chunk      # 1: one row pair (or one image) per chunk
    try:
        z = conv.conv2d(x, w, b, strides, padding)
        affine = None
        if with_bn:
            z = norm.batch_norm_inference(z, gamma, beta, mean, var, 1e-3)
            scale, shift = norm.inference_fold(gamma, beta, var, 1e-3)
            affine = (mean, scale, shift)
        want = activation.apply(act, z)
        if with_pool:
            want = pool.max_pool2d(want, (2, 2))[0]
        got = conv.conv2d(x, w, b, strides, padding, activation=act, affine=affine,
                          pool=(2, 2) if with_pool else None)
    finally:
        conv.CHUNK_BYTES = old
    # Same arithmetic, but the chunks differ (row pairs, whole images), and BLAS's kernels for
    # tiny or one-column products may round differently for another number of rows: equal to
    # float32 rounding here; bit for bit on the model-sized shapes below.
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    # and the float64 textbook twin (fastnn.reference.conv.conv2d with the same epilogues)
    ref_affine = None
    if with_bn:
        ref_affine = (mean, *RN.inference_fold(gamma, beta, var, 1e-3))
    ref = R.conv2d(*[a.astype(np.float64) for a in (x, w, b)], strides, padding, activation=act,
                   affine=ref_affine, pool=(2, 2) if with_pool else None)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs, ws, padding", [
    ((5, 28, 28, 1), (3, 3, 1, 32), "valid"),    # the MNIST convnet's layers
    ((5, 13, 13, 32), (3, 3, 32, 64), "valid"),
    ((3, 32, 32, 3), (3, 3, 3, 32), "same"),     # the small VGG's
    ((3, 32, 32, 32), (3, 3, 32, 32), "same"),
    ((3, 16, 16, 64), (3, 3, 64, 64), "same"),
])
def test_epilogues_bit_identical_on_model_shapes(rng, xs, ws, padding):
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, ws[3])
    gamma, beta, mean, var = bn_params(rng, ws[3])
    scale, shift = norm.inference_fold(gamma, beta, var, 1e-3)
    z = conv.conv2d(x, w, b, padding=padding)
    y = norm.batch_norm_inference(z, gamma, beta, mean, var, 1e-3, relu=True)
    np.testing.assert_array_equal(
        conv.conv2d(x, w, b, padding=padding, activation="relu", affine=(mean, scale, shift)), y)
    np.testing.assert_array_equal(
        conv.conv2d(x, w, b, padding=padding, activation="relu", affine=(mean, scale, shift),
                    pool=(2, 2)), pool.max_pool2d(y, (2, 2))[0])
    np.testing.assert_array_equal(conv.conv2d(x, w, b, padding=padding, activation="relu", pool=(2, 2)),
                                  pool.max_pool2d(activation.apply("relu", z), (2, 2))[0])


def test_pool_epilogue_nan_inf_and_out(rng):
    x, w = rand(rng, (3, 9, 8, 2)), rand(rng, (3, 3, 2, 16))
    x[0, 2, 3, 1] = np.nan
    x[1, 4, 4, 0] = np.inf
    x[2, 0, 0, :] = -np.inf
    out = np.empty((3, 3, 3, 16), np.float32)
    got = conv.conv2d(x, w, None, activation="relu", pool=(2, 2), out=out)
    assert np.shares_memory(got, out)
    want = pool.max_pool2d(conv.conv2d(x, w, None, activation="relu"), (2, 2))[0]
    np.testing.assert_array_equal(got, want)     # NaN where the separate pool has NaN
    assert np.isnan(got).any()


def test_epilogues_thread_counts_agree(rng):
    x, w, b = rand(rng, (6, 14, 14, 8)), rand(rng, (3, 3, 8, 32)), rand(rng, 32)
    gamma, beta, mean, var = bn_params(rng, 32)
    scale, shift = norm.inference_fold(gamma, beta, var, 1e-3)
    n0 = get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            set_num_threads(t)
            outs.append(conv.conv2d(x, w, b, padding="same", activation="relu",
                                    affine=(mean, scale, shift), pool=(2, 2)))
    finally:
        set_num_threads(n0)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_inference_fold_matches_batch_norm_inference(rng):
    x = rand(rng, (50, 7))
    gamma, beta, mean, var = bn_params(rng, 7)
    for g, bb in ((gamma, beta), (None, beta), (gamma, None), (None, None)):
        scale, shift = norm.inference_fold(g, bb, var, 1e-2)
        for got, ref in zip((scale, shift), RN.inference_fold(g, bb, var, 1e-2)):
            np.testing.assert_allclose(got, ref, rtol=1e-6)
        want = norm.batch_norm_inference(x, g, bb, mean, var, 1e-2)
        y = conv.conv2d(x.reshape(50, 1, 1, 7), np.eye(7, dtype=np.float32).reshape(1, 1, 7, 7),
                        affine=(mean, scale, shift)).reshape(50, 7)
        # the identity 1x1 conv is exact, so the epilogue alone decides the bits
        np.testing.assert_array_equal(y, want)


def test_epilogue_checks(rng):
    x, w = rand(rng, (2, 6, 6, 3)), rand(rng, (3, 3, 3, 4))
    v = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="affine must be"):
        conv.conv2d(x, w, affine=(v, v))
    with pytest.raises(ValueError, match=r"affine\[1\]"):
        conv.conv2d(x, w, affine=(v, np.ones(5, np.float32), v))
    with pytest.raises(TypeError, match=r"affine\[2\]"):
        conv.conv2d(x, w, affine=(v, v, np.ones(4)))
    with pytest.raises(ValueError, match="pool must be None or"):
        conv.conv2d(x, w, pool=(3, 3))
    with pytest.raises(ValueError, match="at least 2x2"):
        conv.conv2d(rand(rng, (1, 3, 3, 3)), w, pool=(2, 2))
    with pytest.raises(ValueError, match="out"):
        conv.conv2d(x, w, pool=(2, 2), out=np.empty((2, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="moving_var"):
        norm.inference_fold(None, None, np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="epsilon"):
        norm.inference_fold(None, None, v, -1.0)


# ---- a batch of one small image: its grid is cut by filter blocks (1x1) or into MIN_CHUNKS
# row runs (1x1 rows, im2col, Winograd) where one chunk would hold it all (conv._col_blocks,
# conv._chunk_rows). The thresholds are lowered so that small shapes take those paths.
@pytest.fixture
def small_splits(monkeypatch):
    monkeypatch.setattr(conv, "SPLIT_MIN_FLOPS", 0.0)
    monkeypatch.setattr(conv, "SPLIT_MIN_PIXELS", 8)     # filter blocks below 16 pixels
    monkeypatch.setattr(conv, "SERIAL_FLOPS", 0.0)
    monkeypatch.setattr(conv, "WINO_MIN_TILES", 0)
    monkeypatch.setattr(conv, "WINO_MIN_PIXELS", 0)


SPLIT_CASES = [
    ((1, 3, 3, 72), (1, 1, 72, 72), "valid", "cols"),    # 9 pixels, 72 filters: blocks 32 + 40
    ((1, 2, 5, 80), (1, 1, 80, 100), "valid", "cols"),   # 48 + 52 filters
    ((3, 2, 2, 70), (1, 1, 70, 64), "valid", "cols"),    # 3 images of 4 pixels
    ((1, 12, 9, 72), (1, 1, 72, 24), "valid", "rows"),   # too few filters for blocks: row runs
    ((1, 12, 8, 8), (3, 3, 8, 16), "same", "wino"),      # Winograd tile rows
    ((1, 13, 11, 5), (5, 5, 5, 70), "same", "rows"),     # im2col (5x5: not Winograd)
]


@pytest.mark.parametrize("xs, ws, padding, kind", SPLIT_CASES)
@pytest.mark.parametrize("act, with_bn", [("relu", True), ("linear", False), ("relu6", True),
                                          ("sigmoid", False)])
def test_batch_one_splits(rng, small_splits, xs, ws, padding, kind, act, with_bn):
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, ws[3])
    f = ws[3]
    n, h, wd, c = xs
    oh = h if padding == "same" else h - ws[0] + 1
    ow = wd if padding == "same" else wd - ws[1] + 1
    # the path the case is for is the one taken (K > DIRECT_MAX_K: not the direct kernels)
    assert not conv._use_direct(ws[0] * ws[1] * c, f)
    cols = conv._col_blocks(n * oh * ow, c, f) if ws[:2] == (1, 1) else []
    assert bool(cols) == (kind == "cols")
    if cols:
        assert cols[0][0] == 0 and cols[-1][1] == f and all(a % 16 == 0 for a, _ in cols)
    elif kind == "wino":
        th, tw = -(-oh // 2), -(-ow // 2)
        assert conv._use_winograd(w, (1, 1), (1, 1), (1, 1, 1, 1)) and conv._wino_pays(n, oh, ow)
        rows = conv._chunk_rows(n, th, conv._wino_rows(tw, c, f), 1.0, 4 * tw)
        assert len(conv._grid(n, th, rows)) >= conv.MIN_CHUNKS
    else:
        assert len(conv._gemm_grid(n, oh, ow, c, f)) >= conv.MIN_CHUNKS
    gamma, beta, mean, var = bn_params(rng, f)
    scale, shift = norm.inference_fold(gamma, beta, var, 1e-3)
    affine = (mean, scale, shift) if with_bn else None
    params = {"max_value": 6.0} if act == "relu6" else {}
    name = "relu" if act == "relu6" else act
    outs = []
    for threads in (1, 2, 3):
        old = get_num_threads()
        set_num_threads(threads)
        try:
            y = conv.conv2d(x, w, b, padding=padding, activation=name, affine=affine, **params)
            yp = conv.conv2d(x, w, b, padding=padding, activation=name, affine=affine,
                             pool=(2, 2), **params) if min(oh, ow) >= 2 else None
        finally:
            set_num_threads(old)
        outs.append((y, yp))
    for y, yp in outs[1:]:            # the same bits for every thread count
        np.testing.assert_array_equal(y, outs[0][0])
        if yp is not None:
            np.testing.assert_array_equal(yp, outs[0][1])
    y, yp = outs[0]
    if yp is not None:                # the fused pool: the unfused output pooled, bit for bit
        np.testing.assert_array_equal(yp, pool.max_pool2d(y, (2, 2))[0])
    ref_affine = (mean, *RN.inference_fold(gamma, beta, var, 1e-3)) if with_bn else None
    ref = R.conv2d(*[a.astype(np.float64) for a in (x, w, b)], (1, 1), padding, activation=name,
                   affine=ref_affine, **params)
    # float32 sums of <= 80 products of N(0, 1) numbers against float64: measured <= 2e-5
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_winograd_needs_enough_tiles_and_pixels(rng, monkeypatch):
    """Winograd (forward and backward) from WINO_MIN_TILES 2x2 output tiles over the batch and
    WINO_MIN_PIXELS outputs an image, else im2col (a 7x7 image: 16 tiles, 49 outputs); the same
    values either way."""
    calls = []
    fwd, bwd = conv._wino_forward, conv._wino_backward
    monkeypatch.setattr(conv, "_wino_forward", lambda *a, **k: calls.append("f") or fwd(*a, **k))
    monkeypatch.setattr(conv, "_wino_backward", lambda *a, **k: calls.append("b") or bwd(*a, **k))
    w, b = rand(rng, (3, 3, 16, 24)), rand(rng, 24)
    for n, hw, wino in ((1, 7, False), (4, 7, False), (1, 8, False), (2, 8, True), (1, 12, True)):
        x = rand(rng, (n, hw, hw, 16))
        calls.clear()
        y = conv.conv2d(x, w, b, padding="same", activation="relu")
        dy = rand(rng, y.shape)
        dx, dw, _ = conv.conv2d_backward(x, w, dy, padding="same")
        assert calls == (["f", "b"] if wino else []), (n, hw, calls)
        assert (hw * hw >= conv.WINO_MIN_PIXELS and n * (-(-hw // 2)) ** 2 >= conv.WINO_MIN_TILES) == wino
        ref = R.conv2d(*[a.astype(np.float64) for a in (x, w, b)], (1, 1), "same", activation="relu")
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
        rdx, rdw, _ = R.conv2d_backward(x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64),
                                        (1, 1), "same")
        # float32 against float64, N(0, 1) data: measured <= 2.0e-5 (y), 1.4e-5 (dx), 1.8e-5 (dw)
        np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dw, rdw, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs, ws, padding, strides", [
    ((3, 9, 9, 8), (3, 3, 8, 1), "same", (1, 1)),
    ((2, 12, 10, 6), (3, 3, 6, 2), "valid", (2, 2)),      # depth_multiplier 2, stride 2
    ((1, 40, 40, 24), (3, 3, 24, 1), "same", (1, 1)),     # several epilogue chunks
])
@pytest.mark.parametrize("act, params", [("linear", {}), ("relu", {}), ("relu", {"max_value": 6.0}),
                                         ("sigmoid", {})])
def test_depthwise_affine_equals_batch_norm_then_activation(rng, monkeypatch, xs, ws, padding,
                                                             strides, act, params):
    """depthwise_conv2d(affine=, activation=): the depthwise conv, then batch_norm_inference and
    the activation, bit for bit, for 1, 2 and 3 threads (MobileNet's fused inference runs)."""
    from fastnn.kernels import depthwise
    from fastnn.reference import activation as RA
    from fastnn.reference import depthwise as RD

    monkeypatch.setattr(conv, "EPILOGUE_BYTES", 4 * 24 * 50)   # 50-row chunks
    x, w = rand(rng, xs), rand(rng, ws)
    ce = ws[2] * ws[3]
    b = rand(rng, ce)
    gamma, beta, mean, var = bn_params(rng, ce)
    scale, shift = norm.inference_fold(gamma, beta, var, 1e-3)
    z = depthwise.depthwise_conv2d(x, w, b, strides, padding)
    want = activation.apply(act, norm.batch_norm_inference(z, gamma, beta, mean, var, 1e-3), **params)
    for threads in (1, 2, 3):
        old = get_num_threads()
        set_num_threads(threads)
        try:
            got = depthwise.depthwise_conv2d(x, w, b, strides, padding, activation=act,
                                             affine=(mean, scale, shift), **params)
        finally:
            set_num_threads(old)
        np.testing.assert_array_equal(got, want)
    ref_scale, ref_shift = RN.inference_fold(gamma, beta, var, 1e-3)
    ref = RD.depthwise_conv2d(*[a.astype(np.float64) for a in (x, w, b)], strides, padding)
    ref = RA.apply(act, (ref - mean) * ref_scale + ref_shift, **params)
    # float32 sums of 9 products, the affine map after, against float64: measured <= 5.4e-6
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)


def test_depthwise_affine_checks(rng):
    from fastnn.kernels import depthwise

    x, w = rand(rng, (1, 5, 5, 4)), rand(rng, (3, 3, 4, 1))
    v = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"affine\[1\] must have shape \(4,\)"):
        depthwise.depthwise_conv2d(x, w, affine=(v, np.ones(3, np.float32), v))
    with pytest.raises(ValueError, match="affine must be"):
        depthwise.depthwise_conv2d(x, w, affine=(v, v))
    out = np.empty((1, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        depthwise.depthwise_conv2d(x, w, out=out, affine=(v, out[0, 0, 0], v))
