"""The direct (im2col-free) convolution path of fastnn.kernels.conv for few input channels:
against the NumPy reference, against the im2col + GEMM path, every instruction-set flavour."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastnn._kernels import conv_direct as CD
from fastnn.kernels import activation as A
from fastnn.kernels import conv as K
from fastnn.kernels._geometry import resolve_padding
from fastnn.reference import conv as R

TOL = dict(rtol=1e-4, atol=1e-4)    # float32 kernel vs float64 reference (as test_conv.py)


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def rand(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def fits(n, k, s, d, p):
    try:
        resolve_padding(n, k, s, d, p, "padding", "test")
    except ValueError:
        return False
    return True



class path:
    """Force the direct path (direct=True, with flavour isa) or im2col (direct=False), and
    optionally a task count (threads: the batch split over that many tasks, even if tiny)."""

    def __init__(self, direct, isa=None, threads=None):
        self.direct, self.isa, self.threads = direct, isa, threads

    def __enter__(self):
        self.saved = K.DIRECT, K.DIRECT_ISA, K.SERIAL_FLOPS, K.get_num_threads
        K.DIRECT, K.DIRECT_ISA = self.direct, self.isa
        if self.threads is not None:
            K.SERIAL_FLOPS = 0.0
            K.get_num_threads = lambda: self.threads

    def __exit__(self, *exc):
        K.DIRECT, K.DIRECT_ISA, K.SERIAL_FLOPS, K.get_num_threads = self.saved


pad_1d = st.one_of(st.sampled_from(["valid", "same"]), st.tuples(st.integers(0, 3), st.integers(0, 3)))


@st.composite
def direct_case(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    c, f = draw(st.integers(1, 4)), draw(st.one_of(st.integers(1, 40), st.integers(41, 100)))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ph, pw = draw(pad_1d), draw(pad_1d)
    if isinstance(ph, str) or isinstance(pw, str):
        padding = draw(st.sampled_from(["valid", "same"]))
        ph = pw = padding
    else:
        padding = (ph, pw)
    assume(fits(h, kh, s[0], d[0], ph) and fits(w, kw, s[1], d[1], pw))
    return (n, h, w, c), (kh, kw, c, f), s, padding, d


@settings(max_examples=150)
@given(direct_case(), st.booleans(), st.sampled_from([None, 1, 2, 3]),
       st.integers(0, 2**32 - 1))
def test_direct_matches_reference(isa, case, with_bias, threads, seed):
    xs, ws, s, p, d = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, xs), rand(rng, ws)
    b = rand(rng, ws[3]) if with_bias else None
    with path(True, isa, threads):
        y = K.conv2d(x, w, b, s, p, d)
        dy = rand(rng, y.shape)
        dx, dw, db = K.conv2d_backward(x, w, dy, s, p, d, need_dx=False)
    ref = R.conv2d(*f64(x, w, b), s, p, d)
    _, rdw, rdb = R.conv2d_backward(*f64(x, w, dy), s, p, d)
    assert dx is None and y.dtype == np.float32 and y.shape == ref.shape
    np.testing.assert_allclose(y, ref, **TOL)
    np.testing.assert_allclose(dw, rdw, **TOL)
    np.testing.assert_allclose(db, rdb, **TOL)


@settings(max_examples=60)
@given(direct_case(), st.integers(0, 2**32 - 1))
def test_direct_relu_epilogue_and_masked_backward(isa, case, seed):
    xs, ws, s, p, d = case
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, ws[3])
    with path(True, isa):
        y = K.conv2d(x, w, b, s, p, d, activation="relu")
        dy = rand(rng, y.shape)
        expect = K.conv2d_backward(x, w, A.grad("relu", y, y, dy), s, p, d, need_dx=False)
        got = K.conv2d_backward(x, w, dy, s, p, d, need_dx=False, y=y)
    np.testing.assert_allclose(y, np.maximum(R.conv2d(*f64(x, w, b), s, p, d), 0), **TOL)
    # the mask is the same 1/0 product as activation.grad: bit-identical
    for a, g in zip(expect[1:], got[1:]):
        np.testing.assert_array_equal(a, g)
    _, rdw, rdb = R.conv2d_backward(*f64(x, w, A.grad("relu", y, y, dy)), s, p, d)
    np.testing.assert_allclose(got[1], rdw, **TOL)
    np.testing.assert_allclose(got[2], rdb, **TOL)


@pytest.mark.parametrize("xs, ws, s, p", [
    ((8, 28, 28, 1), (3, 3, 1, 32), 1, "valid"),     # M2's first layer
    ((4, 32, 32, 3), (3, 3, 3, 32), 1, "same"),      # M3's first layer
    ((3, 17, 19, 3), (5, 5, 3, 24), 2, "same"),      # stride 2, F a multiple of 8 only
    ((2, 15, 16, 2), (3, 3, 2, 40), 2, "valid"),     # F = 40: a partial F-block
    ((2, 11, 13, 3), (3, 3, 3, 64), 1, "same"),      # F-blocks of 4 vectors (AVX-512)
    ((2, 11, 13, 1), (3, 2, 1, 100), 1, "same"),     # 4 + 2 + 1 vectors and a tail
    ((2, 12, 12, 4), (1, 1, 4, 7), 1, "valid"),      # 1x1
    ((2, 30, 9, 1), (7, 1, 1, 5), (2, 1), ((3, 3), (0, 0))),
])
def test_direct_agrees_with_im2col(rng, isa, xs, ws, s, p):
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, ws[3])
    res = {}
    for direct in (False, True):
        with path(direct, isa):
            y = K.conv2d(x, w, b, s, p, activation="relu")
            dy = rand(np.random.default_rng(5), y.shape)
            res[direct] = (y, *K.conv2d_backward(x, w, dy, s, p, need_dx=False, y=y)[1:])
    for a, g in zip(res[False], res[True]):   # float32 sums of up to 5000 terms in other orders
        np.testing.assert_allclose(g, a, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(a).max()))


@pytest.mark.parametrize("act, params", [("tanh", {}), ("leaky_relu", {}), ("relu", {"max_value": 1.0}),
                                         ("softmax", {}), ("gelu", {})])
def test_direct_other_activations_in_the_epilogue(rng, act, params):
    x, w, b = rand(rng, (5, 9, 11, 2)), rand(rng, (3, 3, 2, 13)), rand(rng, 13)
    with path(False):
        expect = K.conv2d(x, w, b, 1, "same", activation=act, **params)
    with path(True, threads=2):
        got = K.conv2d(x, w, b, 1, "same", activation=act, **params)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, A.apply(act, R.conv2d(x, w, b, 1, "same"), **params), rtol=1e-4, atol=1e-5)


def test_direct_threads_agree(rng, isa):
    x, w, b = rand(rng, (7, 13, 13, 3)), rand(rng, (3, 3, 3, 20)), rand(rng, 20)
    outs = []
    for threads in (1, 2):
        with path(True, isa, threads):
            y = K.conv2d(x, w, b, 1, "same", activation="relu")
            dy = rand(np.random.default_rng(3), y.shape)
            outs.append((y, *K.conv2d_backward(x, w, dy, 1, "same", need_dx=False, y=y)[1:]))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])    # every output computed alone
    for a, g in zip(outs[0][1:], outs[1][1:]):               # partial sums split differently
        np.testing.assert_allclose(g, a, rtol=1e-6, atol=1e-6 * np.abs(a).max())


def test_direct_batch_one_splits_rows(rng):
    x, w, b = rand(rng, (1, 20, 20, 1)), rand(rng, (3, 3, 1, 32)), rand(rng, 32)
    with path(True, threads=2):
        y = K.conv2d(x, w, b, 1, "same")
        dy = rand(rng, y.shape)
        _, dw, db = K.conv2d_backward(x, w, dy, 1, "same", need_dx=False)
    _, rdw, rdb = R.conv2d_backward(*f64(x, w, dy), 1, "same")
    np.testing.assert_allclose(y, R.conv2d(*f64(x, w, b), 1, "same"), **TOL)
    np.testing.assert_allclose(dw, rdw, **TOL)
    np.testing.assert_allclose(db, rdb, **TOL)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_direct_nan_inf_like_im2col(rng, isa):
    x, w, b = rand(rng, (2, 9, 9, 2)), rand(rng, (3, 3, 2, 17)), rand(rng, 17)
    x[0, 0, 0, 1] = np.nan
    x[1, 4, 4, 0] = np.inf
    x[1, 8, 0, 1] = -np.inf
    w[0, 1, 1, 3] = np.inf       # also reaches the border outputs through padded (0 * inf) taps
    res = {}
    for direct in (False, True):
        with path(direct, isa):
            y = K.conv2d(x, w, b, 1, "same", activation="relu")
            dy = rand(np.random.default_rng(7), y.shape)
            dy[0, 3, 3, 5] = np.inf
            dy[1, 0, 8, 2] = np.nan
            res[direct] = (y, *K.conv2d_backward(x, w, dy, 1, "same", need_dx=False, y=y)[1:])
    for a, g in zip(res[False], res[True]):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(g))
        np.testing.assert_array_equal(np.isinf(a), np.isinf(g))
        fin = np.isfinite(a)
        np.testing.assert_allclose(g[fin], a[fin], rtol=1e-5, atol=1e-5)
    assert np.isnan(res[True][0]).any() and np.isnan(res[True][1]).any()


def test_direct_relu_edge_values_match_bias_act():
    # the in-register ReLU must equal activation.apply("relu") on NaN, +-inf and -0.0
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 2.0, 1e-38], np.float32).reshape(1, 1, 8, 1)
    w = np.ones((1, 1, 1, 3), np.float32)
    with path(True):
        got = K.conv2d(x, w, activation="relu")
    expect = A.apply("relu", np.repeat(x.reshape(8, 1), 3, axis=1)).reshape(got.shape)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expect))
    np.testing.assert_array_equal(got, expect)


def test_direct_buffers_used_and_overwritten(rng):
    x, w, b = rand(rng, (3, 10, 10, 1)), rand(rng, (3, 3, 1, 9)), rand(rng, 9)
    out = np.full((3, 8, 8, 9), np.nan, np.float32)
    dw, db = np.full_like(w, np.nan), np.full(9, np.nan, np.float32)
    with path(True):
        y = K.conv2d(x, w, b, out=out, activation="relu")
        dy = rand(rng, y.shape)
        r = K.conv2d_backward(x, w, dy, need_dx=False, dw=dw, db=db, y=y)
    assert y is out and np.shares_memory(y, out) and r[1] is dw and r[2] is db
    np.testing.assert_allclose(out, np.maximum(R.conv2d(*f64(x, w, b)), 0), **TOL)
    again = K.conv2d_backward(x, w, dy, need_dx=False, dw=dw, db=db, y=y)   # written, not added
    np.testing.assert_array_equal(again[1], r[1])


def test_direct_conv1d(rng):
    x, w, b = rand(rng, (4, 50, 2)), rand(rng, (5, 2, 19)), rand(rng, 19)
    for p in ("valid", "same", "causal", (1, 4)):
        with path(True):
            y = K.conv1d(x, w, b, 2, p, 2)
            dy = rand(rng, y.shape)
            _, dw, db = K.conv1d_backward(x, w, dy, 2, p, 2, need_dx=False)
        np.testing.assert_allclose(y, R.conv1d(*f64(x, w, b), 2, p, 2), **TOL)
        _, rdw, rdb = R.conv1d_backward(*f64(x, w, dy), 2, p, 2)
        np.testing.assert_allclose(dw, rdw, **TOL)
        np.testing.assert_allclose(db, rdb, **TOL)


def test_direct_dispatch_rules(rng, monkeypatch):
    calls = []
    monkeypatch.setattr(K, "_forward_direct", lambda *a: calls.append("fwd"))
    monkeypatch.setattr(K, "_backward_direct", lambda *a: calls.append("bwd"))
    x, w = rand(rng, (2, 6, 6, 1)), rand(rng, (3, 3, 1, 4))
    dy = rand(rng, (2, 4, 4, 4))
    with path(None):          # automatic: small K goes direct, dx stays on the im2col path
        K.conv2d(x, w)
        K.conv2d_backward(x, w, dy, need_dx=False)
        K.conv2d_backward(x, w, dy, need_dx=True)
    assert calls == ["fwd", "bwd"]
    with path(False):
        K.conv2d(x, w)
        K.conv2d_backward(x, w, dy, need_dx=False)
    assert calls == ["fwd", "bwd"]
    big = rand(rng, (2, 6, 6, CD.KMAX))        # beyond the direct kernels' tables: im2col even if forced
    with path(True):
        K.conv2d(big, rand(rng, (1, 1, CD.KMAX + 0, 2)))
        K.conv2d(rand(rng, (1, 6, 6, 60)), rand(rng, (3, 3, 60, 2)))
    assert calls == ["fwd", "bwd", "fwd"]
    assert K.DIRECT_MAX_K < CD.KMAX


def test_direct_need_dx_stays_correct(rng):
    x, w = rand(rng, (3, 8, 8, 2)), rand(rng, (3, 3, 2, 5))
    dy = rand(rng, (3, 8, 8, 5))
    with path(True):
        dx, dw, db = K.conv2d_backward(x, w, dy, 1, "same")
    rdx, rdw, rdb = R.conv2d_backward(*f64(x, w, dy), 1, "same")
    np.testing.assert_allclose(dx, rdx, **TOL)
    np.testing.assert_allclose(dw, rdw, **TOL)
    np.testing.assert_allclose(db, rdb, **TOL)


# ---- fused inference conv + bias + ReLU + 2x2 max pool --------------------------------------

from fastnn.kernels import pool as P  # noqa: E402
from fastnn.reference import pool as RP  # noqa: E402


def _chain_ref(x, w, b, s, p, d):
    y = np.maximum(R.conv2d(*f64(x, w, b), s, p, d), 0)
    return RP.max_pool2d(y, (2, 2))[0]


@settings(max_examples=80)
@given(direct_case(), st.booleans(), st.booleans(), st.sampled_from([None, 1, 2, 3]),
       st.integers(0, 2**32 - 1))
def test_conv_relu_maxpool_matches_reference(isa, case, with_bias, direct, threads, seed):
    isa = isa if direct else None
    xs, ws, s, p, d = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, xs), rand(rng, ws)
    b = rand(rng, ws[3]) if with_bias else None
    with path(isa is not None, isa, threads):      # isa None: the conv2d + max_pool2d fallback
        conv_shape = K.conv2d(x[:1], w, b, s, p, d).shape
        assume(conv_shape[1] >= 2 and conv_shape[2] >= 2)
        y = K.conv2d(x, w, b, s, p, d, activation="relu", pool=(2, 2))
    ref = _chain_ref(x, w, b, s, p, d)
    assert y.shape == ref.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("xs, ws, p", [((5, 28, 28, 1), (3, 3, 1, 32), "valid"),   # M2: 26x26 -> 13x13
                                       ((3, 15, 15, 3), (3, 3, 3, 20), "same"),    # odd conv size
                                       ((2, 9, 12, 2), (2, 2, 2, 40), "valid")])
def test_conv_relu_maxpool_equals_two_kernels(rng, isa, xs, ws, p):
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, ws[3])
    out = np.full((xs[0], *[v // 2 for v in K.conv2d(x[:1], w, b, 1, p).shape[1:3]], ws[3]), np.nan,
                  np.float32)
    with path(True, isa, threads=2):
        y = K.conv2d(x, w, b, 1, p, activation="relu", pool=(2, 2), out=out)
        expect = P.max_pool2d(K.conv2d(x, w, b, 1, p, activation="relu"), 2)[0]
    assert y is out
    np.testing.assert_array_equal(y, expect)      # the same conv kernel, then an exact max


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("f", [8, 40])        # vector max and scalar tail
def test_conv_relu_maxpool_nan_inf(rng, isa, f):
    x, w, b = rand(rng, (2, 10, 10, 1)), rand(rng, (3, 3, 1, f)), rand(rng, f)
    x[0, 3, 3, 0] = np.nan      # NaN in every cell position of some windows (3x3 conv spread)
    x[1, 6, 2, 0] = np.inf
    x[1, 0, 9, 0] = -np.inf
    with path(True, isa):
        y = K.conv2d(x, w, b, activation="relu", pool=(2, 2))
        expect = P.max_pool2d(K.conv2d(x, w, b, activation="relu"), 2)[0]
    np.testing.assert_array_equal(y, expect)
    assert np.isnan(y).any() and np.isinf(y).any()


def test_conv_relu_maxpool_validation(rng):
    x, w = rand(rng, (2, 6, 6, 1)), rand(rng, (3, 3, 1, 4))
    with pytest.raises(ValueError, match=r"conv2d: pool must be None or \(2, 2\)"):
        K.conv2d(x, w, activation="relu", pool=(3, 3))
    with pytest.raises(ValueError, match="conv2d: pool=\\(2, 2\\) needs a convolution output of at least 2x2"):
        K.conv2d(rand(rng, (2, 3, 6, 1)), w, activation="relu", pool=(2, 2))
    with pytest.raises(ValueError, match="conv2d: w has 1 input channels"):
        K.conv2d(rand(rng, (2, 6, 6, 2)), w, activation="relu", pool=(2, 2))
    with pytest.raises(ValueError, match="out"):
        K.conv2d(x, w, activation="relu", pool=(2, 2), out=np.empty((2, 2, 2, 5), np.float32))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        K.conv2d(x.astype(np.float64), w, activation="relu", pool=(2, 2))
    assert K.conv2d(x[:0], w, activation="relu", pool=(2, 2)).shape == (0, 2, 2, 4)
