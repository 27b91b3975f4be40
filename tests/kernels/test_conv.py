"""fastnn.kernels.conv against the NumPy reference, numerical gradients, and every check."""
import collections

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastnn.kernels import conv as K
from fastnn.kernels._geometry import resolve_padding
from fastnn.reference import conv as R


# the bodies of the paths other than im2col + GEMM, by the name conv2d / conv2d_backward call
PATHS = {"direct": ("_forward_direct", "_forward_direct_pooled", "_backward_direct"),
         "winograd": ("_wino_forward", "_wino_forward_pooled", "_wino_backward")}


class record_paths:
    """Count, inside the block, the calls of the direct and Winograd bodies (im2col is the rest)."""

    def __init__(self, forbid=False):
        self.forbid = forbid

    def _wrap(self, kind, name, body):
        def spy(*args, **kwargs):
            if self.forbid:
                raise AssertionError(f"the im2col variant ran the {kind} path ({name})")
            self.calls[kind] += 1
            return body(*args, **kwargs)
        return spy

    def __enter__(self):
        self.calls = collections.Counter()
        self.saved = {name: getattr(K, name) for names in PATHS.values() for name in names}
        for kind, names in PATHS.items():
            for name in names:
                setattr(K, name, self._wrap(kind, name, self.saved[name]))
        return self.calls

    def __exit__(self, *exc):
        for name, body in self.saved.items():
            setattr(K, name, body)


@pytest.fixture(autouse=True, scope="module", params=["auto", "im2col"])
def conv_path(request):
    """Every test twice: the automatic choice (direct kernels for few input channels, Winograd
    for 3x3 stride-1 with C >= 8, tests/kernels/test_conv_direct.py and test_winograd.py) and
    im2col + GEMM forced for every shape (a call of another path fails the test)."""
    saved = K.DIRECT, K.WINOGRAD
    if request.param == "im2col":
        K.DIRECT = K.WINOGRAD = False
    try:
        with record_paths(forbid=request.param == "im2col"):
            yield request.param
    finally:
        K.DIRECT, K.WINOGRAD = saved


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


pad_1d = st.one_of(st.sampled_from(["valid", "same"]),
                   st.tuples(st.integers(0, 2), st.integers(0, 2)))


@st.composite
def conv2d_case(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    c, f = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ph, pw = draw(pad_1d), draw(pad_1d)
    if isinstance(ph, str) and draw(st.booleans()):
        pw = ph
        padding = ph
    else:
        ph = (0, 0) if ph == "valid" else ph
        pw = (0, 0) if pw == "valid" else pw
        if isinstance(ph, str) or isinstance(pw, str):
            ph = pw = "same" if "same" in (ph, pw) else ph
            padding = "same"
        else:
            padding = (ph, pw)
    ph_, pw_ = (padding, padding) if isinstance(padding, str) else padding
    assume(fits(h, kh, s[0], d[0], ph_) and fits(w, kw, s[1], d[1], pw_))
    chunk = draw(st.sampled_from([1, 600, K.CHUNK_BYTES]))   # 1: one output row per chunk
    threads = draw(st.sampled_from([None, 1, 2, 3]))   # None: the policy, serial below SERIAL_FLOPS
    return (n, h, w, c), (kh, kw, c, f), s, padding, d, (chunk, threads)


class forced_split:
    """Small chunks and/or a forced task count, so tiny shapes take every code path: several
    chunks per call (im2col's CHUNK_BYTES; Winograd's chunks scaled alike), the batch split over
    1-3 tasks (uneven ranges) and the N < tasks fallback."""

    def __init__(self, chunk, threads):
        self.chunk, self.threads = chunk, threads

    def __enter__(self):
        self.saved = K.CHUNK_BYTES, K.WINO_CHUNK_BYTES, K.SERIAL_FLOPS, K.get_num_threads
        K.CHUNK_BYTES = self.chunk
        K.WINO_CHUNK_BYTES = self.chunk * self.saved[1] // self.saved[0]
        if self.threads is not None:
            K.SERIAL_FLOPS = 0.0
            K.get_num_threads = lambda: self.threads

    def __exit__(self, *exc):
        K.CHUNK_BYTES, K.WINO_CHUNK_BYTES, K.SERIAL_FLOPS, K.get_num_threads = self.saved


@given(conv2d_case(), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference(conv_close, case, with_bias, seed):
    xs, ws, s, p, d, split = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, xs), rand(rng, ws)
    b = rand(rng, ws[3]) if with_bias else None
    with forced_split(*split):
        y = K.conv2d(x, w, b, s, p, d)
        dy = rand(rng, y.shape)
        need_dx = bool(rng.integers(2))
        grads = K.conv2d_backward(x, w, dy, s, p, d, need_dx=need_dx)
    conv_close(y, R.conv2d, (x, w, b), s, p, d)
    conv_close(grads, R.conv2d_backward, (x, w, dy), s, p, d, need_dx=need_dx)


@given(st.integers(1, 3), st.integers(1, 12), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3),
       st.one_of(st.sampled_from(["valid", "same", "causal"]), st.tuples(st.integers(0, 3), st.integers(0, 3))),
       st.sampled_from([1, K.CHUNK_BYTES]), st.sampled_from([None, 2]), st.integers(0, 2**32 - 1))
def test_conv1d_matches_reference(conv_close, n, length, c, f, k, s, d, p, chunk, threads, seed):
    assume(fits(length, k, s, d, p))
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (n, length, c)), rand(rng, (k, c, f)), rand(rng, f)
    with forced_split(chunk, threads):
        y = K.conv1d(x, w, b, s, p, d)
        dy = rand(rng, y.shape)
        grads = K.conv1d_backward(x, w, dy, s, p, d)
    conv_close(y, R.conv1d, (x, w, b), s, p, d)
    conv_close(grads, R.conv1d_backward, (x, w, dy), s, p, d)


def test_known_values_and_keras_same_rule():
    # 2x2 all-ones kernel, "same": Keras pads 0 top/left and 1 bottom/right (extra pixel after)
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.ones((2, 2, 1, 1), np.float32)
    y = K.conv2d(x, w, padding="same")[0, :, :, 0]
    np.testing.assert_array_equal(y, [[8, 12, 7], [20, 24, 13], [13, 15, 8]])
    # causal conv1d: y[t] = x[t] + 2 x[t-1] (cross-correlation, kernel [2, 1])
    x1 = np.array([[1, 2, 3, 4]], np.float32)[..., None]
    w1 = np.array([2, 1], np.float32).reshape(2, 1, 1)
    np.testing.assert_array_equal(K.conv1d(x1, w1, padding="causal")[0, :, 0], [1, 4, 7, 10])


@pytest.mark.parametrize("n,threads", [(5, 2), (1, 2), (2, 3)])
def test_realistic_shape_with_chunks(conv_close, rng, n, threads, conv_path):
    # several chunks per call, the batch split over tasks (n >= threads) or the output rows and
    # then the input rows split (batch smaller than the thread count)
    x, w, b = rand(rng, (n, 17, 15, 8)), rand(rng, (3, 3, 8, 16)), rand(rng, 16)
    # the automatic choice: Winograd where it applies (3x3, stride 1, pads <= 2), else im2col;
    # the im2col variant: im2col everywhere (the conv_path fixture fails any other call)
    winograd = {(1, "same"): conv_path == "auto"}
    with forced_split(20_000, threads):
        for s, p in [(1, "same"), (2, "same"), (2, "valid"), (1, ((2, 0), (1, 3)))]:
            with record_paths() as calls:
                y = K.conv2d(x, w, b, s, p)
                dy = rand(rng, y.shape)
                grads = K.conv2d_backward(x, w, dy, s, p)
            assert calls == (collections.Counter(winograd=2) if winograd.get((s, p)) else {}), (s, p)
            conv_close(y, R.conv2d, (x, w, b), s, p)
            conv_close(grads, R.conv2d_backward, (x, w, dy), s, p)


@pytest.mark.parametrize("threads", [None, 2, 3])
@pytest.mark.parametrize("s,p", [(1, "valid"), (2, "valid"), (1, ((1, 0), (0, 2)))])
def test_1x1(conv_close, rng, s, p, threads):
    x, w, b = rand(rng, (3, 5, 4, 6)), rand(rng, (1, 1, 6, 7)), rand(rng, 7)
    with forced_split(K.CHUNK_BYTES, threads):
        y = K.conv2d(x, w, b, s, p)
        dy = rand(rng, y.shape)
        grads = K.conv2d_backward(x, w, dy, s, p)
    conv_close(y, R.conv2d, (x, w, b), s, p)
    conv_close(grads, R.conv2d_backward, (x, w, dy), s, p)


# ---------------------------------------------------------------- numerical gradients

def _numgrad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


GRAD_CASES = [
    ("2d", (2, 5, 4, 2), (3, 2, 2, 3), (1, 1), "valid", (1, 1)),
    ("2d", (1, 5, 6, 2), (2, 2, 2, 2), (1, 1), "same", (1, 1)),
    ("2d", (2, 6, 5, 1), (2, 3, 1, 2), (2, 2), "same", (2, 1)),
    ("2d", (1, 4, 4, 2), (3, 3, 2, 2), (3, 2), ((2, 1), (0, 2)), (1, 1)),
    ("1d", (2, 7, 2), (3, 2, 3), 1, "causal", 2),
    ("1d", (2, 8, 2), (2, 2, 2), 2, "same", 1),
]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_numerically(rng, case):
    kind, xs, ws, s, p, d = case
    fwd, bwd = (R.conv2d, R.conv2d_backward) if kind == "2d" else (R.conv1d, R.conv1d_backward)
    kfwd, kbwd = (K.conv2d, K.conv2d_backward) if kind == "2d" else (K.conv1d, K.conv1d_backward)
    x, w, b = (rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[-1]))
    g = rng.standard_normal(fwd(x, w, b, s, p, d).shape)      # L = sum(y * g)

    def loss():
        return float(np.sum(fwd(x, w, b, s, p, d) * g))

    num = [_numgrad(loss, a) for a in (x, w, b)]
    ana = bwd(x, w, g, s, p, d)
    for n_, a_ in zip(num, ana):        # the float64 reference is exact up to the FD error
        np.testing.assert_allclose(a_, n_, rtol=1e-6, atol=1e-7)
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w, g))
    got = kbwd(x32, w32, g32, s, p, d)
    for n_, k_ in zip(num, got):       # and the float32 kernel agrees to float32 accuracy
        np.testing.assert_allclose(k_, n_, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- buffers and special values

def test_out_buffers_used_and_overwritten(conv_close, rng):
    x, w, b = rand(rng, (2, 6, 6, 3)), rand(rng, (3, 3, 3, 4)), rand(rng, 4)
    out = np.full((2, 6, 6, 4), 7.0, np.float32)
    y = K.conv2d(x, w, b, 1, "same", out=out)
    assert y is out and np.shares_memory(y, out)
    conv_close(y, R.conv2d, (x, w, b), 1, "same")
    dy = rand(rng, y.shape)
    dx, dw, db = np.full_like(x, 5), np.full_like(w, 5), np.full(4, 5, np.float32)
    rx, rw, rb = K.conv2d_backward(x, w, dy, 1, "same", dx=dx, dw=dw, db=db)
    assert rx is dx and rw is dw and rb is db
    conv_close((dx, dw, db), R.conv2d_backward, (x, w, dy), 1, "same")        # written, not accumulated
    out1 = np.empty((2, 4, 4), np.float32)
    x1 = np.ascontiguousarray(x[:, 0])
    y1 = K.conv1d(x1, w[0], b, 1, "valid", out=out1)
    assert np.shares_memory(y1, out1)
    dx1, dw1, db1 = np.empty_like(x1), np.empty_like(w[0]), np.empty(4, np.float32)
    r = K.conv1d_backward(x1, w[0], rand(rng, (2, 4, 4)), dx=dx1, dw=dw1, db=db1)
    assert all(np.shares_memory(a, o) for a, o in zip(r, (dx1, dw1, db1)))


def test_read_only_inputs(conv_close, rng):
    x, w, b = rand(rng, (2, 5, 5, 3)), rand(rng, (3, 3, 3, 2)), rand(rng, 2)
    dy = rand(rng, (2, 5, 5, 2))
    x1, dy1 = x[:, 0].copy(), dy[:, 0].copy()
    for a in (x, w, b, dy, x1, dy1):
        a.setflags(write=False)
    conv_close(K.conv2d(x, w, b, padding="same"), R.conv2d, (x, w, b), padding="same")
    conv_close(K.conv2d_backward(x, w, dy, padding="same"), R.conv2d_backward, (x, w, dy), padding="same")
    conv_close(K.conv1d(x1, w[0], b, padding="causal"), R.conv1d, (x1, w[0], b), padding="causal")
    conv_close(K.conv1d_backward(x1, w[0], dy1, padding="causal"), R.conv1d_backward, (x1, w[0], dy1), padding="causal")


def test_workspace_reused_between_calls(rng):
    x, w = rand(rng, (2, 8, 8, 3)), rand(rng, (3, 3, 3, 4))
    K.conv2d(x, w)
    before = K._workspace("col", 1).base
    K.conv2d(x, w)
    K.conv2d_backward(x, w, rand(rng, (2, 6, 6, 4)))
    assert K._workspace("col", 1).base is before


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_propagate(rng, bad):
    x, w = rand(rng, (1, 7, 7, 2)), rand(rng, (3, 3, 2, 2))
    x[0, 0, 0, 1] = bad
    y = K.conv2d(x, w, padding="valid")
    assert not np.isfinite(y[0, 0, 0]).any()           # the window that reads the pixel
    assert np.isfinite(y[0, 1:, :]).all() and np.isfinite(y[0, :, 1:]).all()   # others don't
    dy = rand(rng, y.shape)
    dx, dw, db = K.conv2d_backward(x, w, dy, padding="valid")
    assert not np.isfinite(dw[0, 0, 1]).all() and np.isfinite(db).all()
    dy[0, 2, 2, 0] = bad
    dx, dw, db = K.conv2d_backward(x, w, dy, padding="valid")
    assert not np.isfinite(dx[0, 2:5, 2:5]).all() and np.isfinite(dx[0, 6, 6]).all()
    assert not np.isfinite(db[0]) and np.isfinite(db[1])


def test_empty_batch():
    x, w = np.zeros((0, 5, 5, 2), np.float32), np.ones((3, 3, 2, 4), np.float32)
    assert K.conv2d(x, w, padding="same").shape == (0, 5, 5, 4)
    dx, dw, db = K.conv2d_backward(x, w, np.zeros((0, 5, 5, 4), np.float32), padding="same")
    assert dx.shape == x.shape and not dw.any() and not db.any()


# ---------------------------------------------------------------- validation

def _args():
    x = np.zeros((2, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    return x, w


@pytest.mark.parametrize("mutate,err,match", [
    (lambda x, w: ([[1.0]], w, {}), TypeError, "conv2d: x must be a numpy.ndarray"),
    (lambda x, w: (x.astype(np.float64), w, {}), TypeError, "conv2d: x must have dtype float32"),
    (lambda x, w: (x[0], w, {}), ValueError, "conv2d: x must have 4 dimensions"),
    (lambda x, w: (x, w[0], {}), ValueError, "conv2d: w must have 4 dimensions"),
    (lambda x, w: (x, w.astype(np.float16), {}), TypeError, "conv2d: w must have dtype float32"),
    (lambda x, w: (x, w[:, :, :2].copy(), {}), ValueError, "conv2d: w has 2 input channels"),
    (lambda x, w: (x, w[:, :0].copy(), {}), ValueError, "every size >= 1"),
    (lambda x, w: (x[:, :, ::2], w, {}), ValueError, "conv2d: x must be C-contiguous"),
    (lambda x, w: (x, np.asfortranarray(w), {}), ValueError, "conv2d: w must be C-contiguous"),
    (lambda x, w: (x, w, {"b": np.zeros(3, np.float32)}), ValueError, r"conv2d: b must have shape \(4\)"),
    (lambda x, w: (x, w, {"b": np.zeros(4, np.float64)}), TypeError, "conv2d: b must have dtype float32"),
    (lambda x, w: (x, w, {"b": [0.0] * 4}), TypeError, "conv2d: b must be a numpy.ndarray"),
    (lambda x, w: (x, w, {"strides": 0}), ValueError, "conv2d: strides must be >= 1"),
    (lambda x, w: (x, w, {"strides": (1, 2, 3)}), ValueError, "conv2d: strides must be an int or a tuple of 2"),
    (lambda x, w: (x, w, {"strides": 1.5}), TypeError, "conv2d: strides must be an int"),
    (lambda x, w: (x, w, {"dilation": (1, 0)}), ValueError, "conv2d: dilation must be >= 1"),
    (lambda x, w: (x, w, {"padding": "full"}), ValueError, "conv2d: padding must be 'valid', 'same'"),
    (lambda x, w: (x, w, {"padding": "causal"}), ValueError, "conv2d: padding 'causal' is only"),
    (lambda x, w: (x, w, {"padding": (1, 1)}), ValueError, "conv2d: padding must be"),
    (lambda x, w: (x, w, {"padding": ((1, 1), (1, -1))}), ValueError, "non-negative ints"),
    (lambda x, w: (x, w, {"dilation": 3}), ValueError, "larger than the padded input"),
    (lambda x, w: (x[:, :2].copy(), w, {}), ValueError, "larger than the padded input"),
    (lambda x, w: (x, w, {"out": np.zeros((2, 3, 3, 5), np.float32)}), ValueError, r"conv2d: out must have shape \(2, 3, 3, 4\)"),
    (lambda x, w: (x, w, {"out": np.zeros((2, 3, 3, 4), np.float64)}), TypeError, "conv2d: out must have dtype float32"),
    (lambda x, w: (x, w, {"out": np.zeros((2, 3, 4, 4), np.float32)[:, :, :3]}), ValueError, "conv2d: out must be C-contiguous"),
    (lambda x, w: (x, w, {"out": np.zeros((2, 3, 3, 4), np.float32).view()}), None, None),
])
def test_conv2d_validation(mutate, err, match):
    x, w = _args()
    x, w, kw = mutate(x, w)
    if err is None:     # accepted: a view of a buffer is a fine out=, and is written
        y = K.conv2d(x, w, **kw)
        assert np.shares_memory(y, kw["out"])
        np.testing.assert_array_equal(y, K.conv2d(x, w))
        return
    with pytest.raises(err, match=match):
        K.conv2d(x, w, **kw)


def test_conv2d_out_checks():
    x, w = _args()
    out = np.zeros((2, 3, 3, 4), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="conv2d: out is written to and must be writeable"):
        K.conv2d(x, w, out=out)
    big = np.zeros(200, np.float32)
    xs = big[:150].reshape(2, 5, 5, 3)
    with pytest.raises(ValueError, match="conv2d: out must not share memory with x"):
        K.conv2d(xs, w, out=big[100:172].reshape(2, 3, 3, 4))


@pytest.mark.parametrize("kw,err,match", [
    ({"dy": np.zeros((2, 3, 3, 5), np.float32)}, ValueError, r"conv2d_backward: dy must have the forward output's shape \(2, 3, 3, 4\)"),
    ({"dy": np.zeros((2, 5, 5, 4), np.float32), "padding": "valid"}, ValueError, "dy must have the forward output's shape"),
    ({"dy": np.zeros((2, 3, 3), np.float32)}, ValueError, "conv2d_backward: dy must have 4 dimensions"),
    ({"dy": np.zeros((2, 3, 3, 4), np.float64)}, TypeError, "conv2d_backward: dy must have dtype float32"),
    ({"dy": np.zeros((2, 3, 3, 8), np.float32)[..., ::2]}, ValueError, "conv2d_backward: dy must be C-contiguous"),
    ({"dx": np.zeros((2, 5, 5, 4), np.float32)}, ValueError, r"conv2d_backward: dx must have shape \(2, 5, 5, 3\)"),
    ({"dw": np.zeros((3, 3, 3, 4), np.float64)}, TypeError, "conv2d_backward: dw must have dtype float32"),
    ({"db": np.zeros(5, np.float32)}, ValueError, r"conv2d_backward: db must have shape \(4\)"),
    ({"db": np.zeros(8, np.float32)[::2]}, ValueError, "conv2d_backward: db must be C-contiguous"),
    ({"need_dx": "yes"}, TypeError, "conv2d_backward: need_dx must be True or False"),
    ({"strides": -1}, ValueError, "conv2d_backward: strides must be >= 1"),
])
def test_conv2d_backward_validation(kw, err, match):
    x, w = _args()
    kw = {"dy": np.zeros((2, 3, 3, 4), np.float32), **kw}
    dy = kw.pop("dy")
    with pytest.raises(err, match=match):
        K.conv2d_backward(x, w, dy, **kw)


def test_conv2d_backward_buffer_checks():
    x, w = _args()
    dy = np.zeros((2, 3, 3, 4), np.float32)
    dw = np.zeros_like(w)
    dw.setflags(write=False)
    with pytest.raises(ValueError, match="conv2d_backward: dw is written to and must be writeable"):
        K.conv2d_backward(x, w, dy, dw=dw)
    with pytest.raises(ValueError, match="conv2d_backward: dx must not share memory with x"):
        K.conv2d_backward(x, w, dy, dx=x)
    buf = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match="conv2d_backward: dw must not share memory with db"):
        K.conv2d_backward(x[:, :, :, :1].copy(), w[:, :, :1].copy(), dy,
                          dw=buf[:36].reshape(3, 3, 1, 4), db=buf[32:36])
    # need_dx=False: no dx, dx= ignored
    assert K.conv2d_backward(x, w, dy, need_dx=False)[0] is None


@pytest.mark.parametrize("call,err,match", [
    (lambda: K.conv1d(np.zeros((2, 5, 3, 1), np.float32), np.zeros((3, 3, 4), np.float32)), ValueError, "conv1d: x must have 3 dimensions"),
    (lambda: K.conv1d(np.zeros((2, 5, 3), np.float32), np.zeros((3, 2, 4), np.float32)), ValueError, "conv1d: w has 2 input channels"),
    (lambda: K.conv1d(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), stride=(1, 1)), ValueError, "conv1d: stride must be an int or a tuple of 1"),
    (lambda: K.conv1d(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), dilation=0), ValueError, "conv1d: dilation must be >= 1"),
    (lambda: K.conv1d(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), padding="full"), ValueError, "conv1d: padding must be"),
    (lambda: K.conv1d(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), padding=2), ValueError, "conv1d: padding must be"),
    (lambda: K.conv1d(np.zeros((2, 2, 3), np.float32), np.zeros((3, 3, 4), np.float32)), ValueError, "conv1d: the window"),
    (lambda: K.conv1d(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), out=np.zeros((2, 5, 4), np.float32)), ValueError, r"conv1d: out must have shape \(2, 3, 4\)"),
    (lambda: K.conv1d_backward(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), np.zeros((2, 5, 4), np.float32)), ValueError, r"conv1d_backward: dy must have the forward output's shape \(2, 3, 4\)"),
    (lambda: K.conv1d_backward(np.zeros((2, 5, 3), np.float32), np.zeros((3, 3, 4), np.float32), np.zeros((2, 3, 4), np.float32), dw=np.zeros((3, 3, 3, 4), np.float32)), ValueError, r"conv1d_backward: dw must have shape \(3, 3, 4\)"),
])
def test_conv1d_validation(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_threaded_path_works_after_fork(rng):
    import os

    x, w = rand(rng, (4, 9, 9, 4)), rand(rng, (3, 3, 4, 8))
    with forced_split(1, 2):              # one output row pair per chunk: several chunks
        want = K.conv2d(x, w)             # the worker threads exist in this process now
        assert K._pool_state["pool"] is not None and K._pool_state["pid"] == os.getpid()
        pid = os.fork()
        if pid == 0:                      # child: a fresh pool, same result, no hang
            ok = np.allclose(K.conv2d(x, w), want, rtol=1e-6, atol=1e-6)
            os._exit(0 if ok else 1)
    import signal
    import time

    deadline = time.monotonic() + 60
    while True:                           # a hung child must fail the test, not hang it
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("conv2d hung in a forked child (stale worker pool)")
        time.sleep(0.05)
    assert os.WEXITSTATUS(status) == 0


# ---- ReLU gradient fused into the backward (y= the ReLU-fused forward output) ---------------

from fastnn.kernels import activation as A  # noqa: E402
from fastnn.kernels import threads  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), h=st.integers(1, 9), w_=st.integers(1, 9), c=st.integers(1, 5),
       f=st.integers(1, 6), k=st.integers(1, 3), s=st.integers(1, 2),
       pad=st.sampled_from(["valid", "same"]), need_dx=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_backward_relu_mask_equals_separate_grad(n, h, w_, c, f, k, s, pad, need_dx, seed):
    assume(fits(h, k, s, 1, pad) and fits(w_, k, s, 1, pad))
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (n, h, w_, c)), rand(rng, (k, k, c, f)), rand(rng, (f,))
    y = K.conv2d(x, w, b, s, pad, activation="relu")
    dy = rand(rng, y.shape)
    expect = K.conv2d_backward(x, w, A.grad("relu", y, y, dy), s, pad, need_dx=need_dx)
    got = K.conv2d_backward(x, w, dy, s, pad, need_dx=need_dx, y=y)
    for a, g in zip(expect, got):
        if a is None:
            assert g is None
        else:
            np.testing.assert_array_equal(a, g)


@pytest.mark.parametrize("shape, k, pad, nthreads", [
    ((16, 16, 16, 8), 3, "same", None),    # threaded over images
    ((1, 20, 20, 8), 3, "same", None),     # batch 1: the split over output rows
    ((8, 10, 10, 16), 1, "valid", None),   # the 1x1 path
    ((8, 10, 10, 16), 3, "valid", 1),      # one thread
])
def test_conv2d_backward_relu_mask_paths(rng, shape, k, pad, nthreads):
    x, w = rand(rng, shape), rand(rng, (k, k, shape[-1], 12))
    y = K.conv2d(x, w, None, 1, pad, activation="relu")
    dy = rand(rng, y.shape)
    n0 = threads.get_num_threads()
    try:
        if nthreads:
            threads.set_num_threads(nthreads)
        expect = K.conv2d_backward(x, w, A.grad("relu", y, y, dy), 1, pad)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(12, np.float32)
        got = K.conv2d_backward(x, w, dy, 1, pad, y=y, dx=dx, dw=dw, db=db)
    finally:
        threads.set_num_threads(n0)
    assert got[0] is dx and got[1] is dw and got[2] is db
    for a, g in zip(expect, got):
        np.testing.assert_array_equal(a, g)


def test_conv1d_backward_relu_mask_and_nan(rng):
    x, w = rand(rng, (3, 11, 4)), rand(rng, (3, 4, 5))
    y = K.conv1d(x, w, None, 1, "causal", activation="relu")
    dy = rand(rng, y.shape)
    y[1, 2, 3] = np.nan                     # NaN propagates as through activation.grad
    zero = np.argwhere(y == 0)[0]
    dy[tuple(zero)] = np.inf                # inf * 0 on a masked element: NaN as unfused
    expect = K.conv1d_backward(x, w, A.grad("relu", y, y, dy), 1, "causal")
    got = K.conv1d_backward(x, w, dy, 1, "causal", y=y)
    for a, g in zip(expect, got):
        np.testing.assert_array_equal(a, g)
    assert np.isnan(got[2][3])


def test_conv_backward_y_validation(rng):
    x, w = rand(rng, (2, 5, 5, 3)), rand(rng, (3, 3, 3, 4))
    dy = rand(rng, (2, 3, 3, 4))
    with pytest.raises(ValueError, match=r"conv2d_backward: y must be the ReLU-fused forward output, "
                                         r"of shape \(2, 3, 3, 4\); received shape \(2, 3, 3, 5\)"):
        K.conv2d_backward(x, w, dy, y=np.zeros((2, 3, 3, 5), np.float32))
    with pytest.raises(ValueError, match="conv2d_backward: y must have 4 dimensions"):
        K.conv2d_backward(x, w, dy, y=np.zeros((18, 4), np.float32))
    with pytest.raises(TypeError, match="conv2d_backward: y must have dtype float32"):
        K.conv2d_backward(x, w, dy, y=np.zeros((2, 3, 3, 4)))
    with pytest.raises(TypeError, match="conv2d_backward: y must be a numpy.ndarray"):
        K.conv2d_backward(x, w, dy, y=0.0)
    with pytest.raises(ValueError, match="conv1d_backward: y must be the ReLU-fused forward output"):
        K.conv1d_backward(rand(rng, (2, 5, 3)), rand(rng, (3, 3, 4)), rand(rng, (2, 3, 4)),
                          y=np.zeros((2, 4, 4), np.float32))
    buf = np.zeros(2 * 5 * 5 * 3 + 8, np.float32)
    with pytest.raises(ValueError, match="dx.*y|y.*dx"):
        K.conv2d_backward(x, w, dy, dx=buf[:150].reshape(2, 5, 5, 3), y=buf[8:80].reshape(2, 3, 3, 4))
    ro = np.maximum(rand(rng, (2, 3, 3, 4)), 0)
    ro.flags.writeable = False
    K.conv2d_backward(x, w, dy, y=ro)   # a read-only y is fine
