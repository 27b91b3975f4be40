"""fastnn.kernels.conv's grouped (groups=) and transposed (conv{1,2}d_transpose) convolutions
against the NumPy reference (written as Keras describes them), numerical gradients, fused
epilogues and checks."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fastnn.kernels import conv as K
from fastnn.kernels import norm as N
from fastnn.kernels import pool as P
from fastnn.kernels._geometry import conv_transpose_padding
from fastnn.reference import conv as R

# float32 kernel vs float64 reference (as test_conv.py): sums of <= ~100 products of O(1) numbers
TOL = dict(rtol=1e-4, atol=1e-4)


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def rand(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


class forced_split:
    """Small chunks and a forced task count (as test_conv.py): several chunks per call, the batch
    split over tasks, and the fewer-images-than-tasks path of the transposed forward."""

    def __init__(self, chunk, threads):
        self.chunk, self.threads = chunk, threads

    def __enter__(self):
        self.saved = K.CHUNK_BYTES, K.SERIAL_FLOPS, K.get_num_threads
        K.CHUNK_BYTES = self.chunk
        if self.threads is not None:
            K.SERIAL_FLOPS = 0.0
            K.get_num_threads = lambda: self.threads

    def __exit__(self, *exc):
        K.CHUNK_BYTES, K.SERIAL_FLOPS, K.get_num_threads = self.saved


splits = st.tuples(st.sampled_from([1, 600, K.CHUNK_BYTES]), st.sampled_from([None, 1, 2, 3]))


# ---------------------------------------------------------------- groups

@given(st.integers(1, 3), st.integers(3, 8), st.integers(3, 8), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.sampled_from(["valid", "same"]),
       st.booleans(), st.booleans(), splits, st.integers(0, 2**32 - 1))
def test_grouped_conv2d_matches_reference(n, h, w, g, cg, fg, k, s, p, relu, need_dx, split, seed):
    assume(p == "same" or min(h, w) >= k)
    rng = np.random.default_rng(seed)
    x, wt, b = rand(rng, (n, h, w, g * cg)), rand(rng, (k, k, cg, g * fg)), rand(rng, g * fg)
    act = "relu" if relu else "linear"
    with forced_split(*split):
        y = K.conv2d(x, wt, b, s, p, groups=g, activation=act)
        ref = R.conv2d(*f64(x, wt, b), s, p, groups=g, activation=act)
        dy = rand(rng, y.shape)
        dx, dw, db = K.conv2d_backward(x, wt, dy, s, p, groups=g, need_dx=need_dx, y=y if relu else None)
    dz = dy * (ref > 0) if relu else dy
    rdx, rdw, rdb = R.conv2d_backward(*f64(x, wt, dz), s, p, groups=g)
    np.testing.assert_allclose(y, ref, **TOL)
    np.testing.assert_allclose(dw, rdw, **TOL)
    np.testing.assert_allclose(db, rdb, **TOL)
    if need_dx:
        np.testing.assert_allclose(dx, rdx, **TOL)
    else:
        assert dx is None


@given(st.integers(1, 3), st.integers(4, 12), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3), st.sampled_from(["valid", "same", "causal"]), st.integers(0, 2**32 - 1))
def test_grouped_conv1d_matches_reference(n, length, g, cg, fg, k, p, seed):
    rng = np.random.default_rng(seed)
    x, wt, b = rand(rng, (n, length, g * cg)), rand(rng, (k, cg, g * fg)), rand(rng, g * fg)
    y = K.conv1d(x, wt, b, 1, p, groups=g)
    np.testing.assert_allclose(y, R.conv1d(*f64(x, wt, b), 1, p, groups=g), **TOL)
    dy = rand(rng, y.shape)
    for got, want in zip(K.conv1d_backward(x, wt, dy, 1, p, groups=g),
                         R.conv1d_backward(*f64(x, wt, dy), 1, p, groups=g)):
        np.testing.assert_allclose(got, want, **TOL)


def test_groups_one_is_the_plain_convolution(rng):
    x, w = rand(rng, (2, 6, 6, 4)), rand(rng, (3, 3, 4, 6))
    np.testing.assert_array_equal(K.conv2d(x, w, groups=1), K.conv2d(x, w))


@pytest.mark.parametrize("cg", [1, 2])       # groups == C (the depthwise kernels) and C / 2
@pytest.mark.parametrize("bn,relu,pool", [(True, False, False), (True, True, True), (False, True, True),
                                          (False, False, True)])
def test_grouped_fused_epilogues_are_bit_identical(rng, cg, bn, relu, pool):
    """conv2d(groups=, affine=, activation=, pool=) (the model's fused inference runs) gives the
    bits of the grouped conv followed by batch_norm_inference, relu and max_pool2d."""
    c = 6
    x, w, b = rand(rng, (3, 8, 8, c)), rand(rng, (3, 3, cg, 12)), rand(rng, 12)
    gamma, beta, mm = rand(rng, 12), rand(rng, 12), rand(rng, 12)
    mv = np.abs(rand(rng, 12)) + np.float32(0.5)
    y = K.conv2d(x, w, b, 1, "same", groups=c // cg)
    if bn:
        y = N.batch_norm_inference(y, gamma, beta, mm, mv, 1e-3)
    if relu:
        y = np.maximum(y, 0) + np.float32(0)
    if pool:
        y = P.max_pool2d(y, (2, 2))[0]
    affine = None
    if bn:
        scale, shift = N.inference_fold(gamma, beta, mv, 1e-3)
        affine = (mm, scale, shift)
    fused = K.conv2d(x, w, b, 1, "same", groups=c // cg, affine=affine, activation="relu" if relu else "linear",
                     pool=(2, 2) if pool else None)
    np.testing.assert_array_equal(fused, y)


@pytest.mark.parametrize("call,match", [
    (lambda x, w: K.conv2d(x, w, groups=2), "with groups=2, w must have shape"),
    (lambda x, w: K.conv2d(x, np.zeros((3, 3, 2, 5), np.float32), groups=2), "must be divisible by 2"),
    (lambda x, w: K.conv2d(x, w, groups=0), "groups must be a positive int"),
    (lambda x, w: K.conv2d(x, np.zeros((3, 3, 1, 4), np.float32)), "or pass groups=G"),
    (lambda x, w: K.conv2d_backward(x, np.zeros((3, 3, 2, 4), np.float32), np.zeros((1, 3, 3, 4), np.float32),
                                    groups=3), "with groups=3"),
])
def test_groups_validation(call, match):
    x, w = np.zeros((1, 5, 5, 4), np.float32), np.zeros((3, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        call(x, w)


# ---------------------------------------------------------------- transposed

@st.composite
def transpose_case(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c, f = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = draw(st.sampled_from(["valid", "same"]))
    op = draw(st.one_of(st.none(), st.tuples(st.integers(0, s[0] - 1), st.integers(0, s[1] - 1))))
    return (n, h, w, c), (kh, kw, f, c), s, p, op, d


@given(transpose_case(), st.booleans(), st.booleans(), splits, st.integers(0, 2**32 - 1))
def test_conv2d_transpose_matches_reference(case, with_bias, need_dx, split, seed):
    xs, ws, s, p, op, d = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, xs), rand(rng, ws)
    b = rand(rng, ws[2]) if with_bias else None
    with forced_split(*split):
        y = K.conv2d_transpose(x, w, b, s, p, op, d)
        dy = rand(rng, y.shape)
        dx, dw, db = K.conv2d_transpose_backward(x, w, dy, s, p, op, d, need_dx=need_dx)
    ref = R.conv2d_transpose(*f64(x, w, b), s, p, op, d)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, **TOL)
    rdx, rdw, rdb = R.conv2d_transpose_backward(*f64(x, w, dy), s, p, op, d)
    np.testing.assert_allclose(dw, rdw, **TOL)
    np.testing.assert_allclose(db, rdb, **TOL)
    if need_dx:
        np.testing.assert_allclose(dx, rdx, **TOL)
    else:
        assert dx is None


@given(st.integers(1, 3), st.integers(1, 8), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 2), st.sampled_from(["valid", "same"]), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_conv1d_transpose_matches_reference(n, length, c, f, k, s, d, p, with_op, seed):
    rng = np.random.default_rng(seed)
    op = s - 1 if with_op else None
    x, w, b = rand(rng, (n, length, c)), rand(rng, (k, f, c)), rand(rng, f)
    y = K.conv1d_transpose(x, w, b, s, p, op, d)
    np.testing.assert_allclose(y, R.conv1d_transpose(*f64(x, w, b), s, p, op, d), **TOL)
    dy = rand(rng, y.shape)
    for got, want in zip(K.conv1d_transpose_backward(x, w, dy, s, p, op, d),
                         R.conv1d_transpose_backward(*f64(x, w, dy), s, p, op, d)):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("n,k,s,d,p,op,out", [
    (5, 3, 2, 1, "same", None, 10), (5, 3, 2, 1, "valid", None, 11), (4, 2, 2, 1, "same", 1, 7),
    (4, 3, 3, 1, "valid", 2, 14), (3, 1, 2, 1, "same", None, 6), (4, 4, 2, 1, "same", 0, 6),
    (5, 3, 1, 2, "same", None, 5), (3, 1, 3, 1, "valid", None, 9), (4, 5, 2, 1, "valid", None, 11),
])
def test_output_sizes_follow_keras(n, k, s, d, p, op, out):
    """Keras's conv_transpose output lengths (values from keras.layers.Conv1DTranspose)."""
    assert conv_transpose_padding(n, k, s, d, p, op, "padding", "t")[2] == out


# ---------------------------------------------------------------- numerical gradients

GRAD_CASES = [
    ("groups", (2, 5, 5, 4), (3, 3, 2, 4), dict(strides=(1, 1), padding="same", groups=2)),
    ("groups", (1, 6, 5, 3), (2, 2, 1, 6), dict(strides=(2, 1), padding="valid", groups=3)),
    ("transpose", (2, 3, 4, 2), (3, 3, 3, 2), dict(strides=(2, 2), padding="same")),
    ("transpose", (1, 3, 3, 2), (2, 3, 2, 2), dict(strides=(3, 2), padding="valid", output_padding=(1, 0))),
    ("transpose", (1, 4, 3, 1), (3, 2, 2, 1), dict(strides=(1, 1), padding="same", dilation=(2, 1))),
]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_numerically(rng, numgrad, case):
    kind, xs, ws, kw = case
    if kind == "groups":
        fwd, bwd, kbwd = R.conv2d, R.conv2d_backward, K.conv2d_backward
        nb = ws[-1]
    else:
        fwd, bwd, kbwd = R.conv2d_transpose, R.conv2d_transpose_backward, K.conv2d_transpose_backward
        nb = ws[-2]
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(nb)
    g = rng.standard_normal(fwd(x, w, b, **kw).shape)

    def loss():
        return float(np.sum(fwd(x, w, b, **kw) * g))

    num = [numgrad(loss, a) for a in (x, w, b)]
    for n_, a_ in zip(num, bwd(x, w, g, **kw)):
        np.testing.assert_allclose(a_, n_, rtol=1e-6, atol=1e-7)
    got = kbwd(*(a.astype(np.float32) for a in (x, w, g)), **kw)
    for n_, k_ in zip(num, got):
        np.testing.assert_allclose(k_, n_, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- buffers and checks

def test_transpose_out_buffers_used_and_overwritten(rng):
    x, w, b = rand(rng, (2, 4, 5, 3)), rand(rng, (3, 3, 2, 3)), rand(rng, 2)
    out = np.full((2, 8, 10, 2), 7.0, np.float32)
    y = K.conv2d_transpose(x, w, b, 2, "same", out=out)
    assert y is out
    np.testing.assert_allclose(y, R.conv2d_transpose(*f64(x, w, b), 2, "same"), **TOL)
    dy = rand(rng, y.shape)
    bufs = np.full_like(x, 5), np.full_like(w, 5), np.full(2, 5, np.float32)
    got = K.conv2d_transpose_backward(x, w, dy, 2, "same", dx=bufs[0], dw=bufs[1], db=bufs[2])
    assert all(a is o for a, o in zip(got, bufs))
    for g, want in zip(got, R.conv2d_transpose_backward(*f64(x, w, dy), 2, "same")):
        np.testing.assert_allclose(g, want, **TOL)


def test_transpose_empty_batch():
    x, w = np.zeros((0, 3, 3, 2), np.float32), np.ones((3, 3, 4, 2), np.float32)
    y = K.conv2d_transpose(x, w, None, 2, "same")
    assert y.shape == (0, 6, 6, 4)
    dx, dw, db = K.conv2d_transpose_backward(x, w, y, 2, "same")
    assert dx.shape == x.shape and not dw.any() and not db.any()


@pytest.mark.parametrize("call,err,match", [
    (lambda x, w: K.conv2d_transpose(x, np.zeros((3, 3, 4, 3), np.float32)), ValueError, "w has 3 input channels"),
    (lambda x, w: K.conv2d_transpose(x, w, padding="causal"), ValueError, "must be 'valid' or 'same'"),
    (lambda x, w: K.conv2d_transpose(x, w, strides=2, output_padding=2), ValueError, r"output_padding must be"),
    (lambda x, w: K.conv2d_transpose(x, w, output_padding=(0, 0, 0)), ValueError, "tuple of 2 ints"),
    (lambda x, w: K.conv2d_transpose(x.astype(np.float64), w), TypeError, "x must have dtype float32"),
    (lambda x, w: K.conv2d_transpose(x, w, np.zeros(2, np.float32)), ValueError, "b must have shape"),
    (lambda x, w: K.conv2d_transpose_backward(x, w, np.zeros((1, 5, 5, 4), np.float32)), ValueError,
     "dy must have the forward output's shape"),
    (lambda x, w: K.conv1d_transpose(x[:, :, 0], w[0]), ValueError, "C-contiguous"),
])
def test_transpose_validation(call, err, match):
    x, w = np.zeros((1, 4, 4, 2), np.float32), np.zeros((3, 3, 4, 2), np.float32)
    with pytest.raises(err, match=match):
        call(x, w)


@pytest.mark.parametrize("chunk", [600, K.CHUNK_BYTES])
def test_grouped_and_transposed_do_not_depend_on_the_thread_count(rng, chunk):
    """Bit for bit with 1, 2 and 3 threads (calls split as finely as the grid allows)."""
    x, wg, bg = rand(rng, (3, 9, 8, 6)), rand(rng, (3, 3, 2, 9)), rand(rng, 9)
    wt, bt = rand(rng, (3, 3, 4, 6)), rand(rng, 4)
    dyg, dyt = rand(rng, (3, 9, 8, 9)), rand(rng, (3, 18, 16, 4))
    x1 = rand(rng, (1, 9, 8, 6))         # a batch smaller than the threads (the dcol path)
    runs = []
    for threads in (1, 2, 3):
        with forced_split(chunk, threads):
            runs.append([K.conv2d(x, wg, bg, 1, "same", groups=3),
                         *K.conv2d_backward(x, wg, dyg, 1, "same", groups=3),
                         K.conv2d_transpose(x, wt, bt, 2, "same"),
                         *K.conv2d_transpose_backward(x, wt, dyt, 2, "same"),
                         K.conv2d_transpose(x1, wt, bt, 2, "same")])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)
