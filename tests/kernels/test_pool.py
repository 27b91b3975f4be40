"""fastnn.kernels.pool against the im2col NumPy reference, numerical gradients and Keras."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fastnn.kernels import pool as K
from fastnn.kernels import set_num_threads, get_num_threads
from fastnn.reference import pool as R

# float32 kernel vs float64 reference: an average or a scatter-add of a few float32 numbers is
# off by a few eps32 times the sum of their |values| (the reference run on |operand|): measured
# <= 1.3 over 400 random shapes, forward and backward, 1-D and 2-D
TERMS_EPS = 4
EPS32 = float(np.finfo(np.float32).eps)


def close(got, ref_fn, operand, *args):
    """got against ref_fn(operand, *args) in float64, elementwise within TERMS_EPS eps32 of
    ref_fn(|operand|, *args)."""
    want = ref_fn(operand.astype(np.float64), *args)
    terms = ref_fn(np.abs(operand.astype(np.float64)), *args)
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got - want)
    bad = err > TERMS_EPS * EPS32 * terms
    assert not bad.any(), f"{bad.sum()} of {bad.size} off; worst {err[bad].max():.3g}"


def _x(rng, shape, distinct=False):
    if distinct:  # no ties anywhere, gaps far above any finite-difference step
        return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 3.0).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


# ---- geometry strategies: batch 1, odd sizes, stride > pool, stride < pool, same/valid ----

@st.composite
def case2d(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    c = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = draw(st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 5))))
    padding = draw(st.sampled_from(["valid", "same"]))
    if padding == "valid":
        assume(pool[0] <= h and pool[1] <= w)
    seed = draw(st.integers(0, 2**31))
    return (n, h, w, c), pool, strides, padding, seed


@st.composite
def case1d(draw):
    n = draw(st.integers(1, 3))
    length = draw(st.integers(1, 12))
    c = draw(st.sampled_from([1, 3, 4, 17]))
    pool = draw(st.integers(1, 5))
    strides = draw(st.one_of(st.none(), st.integers(1, 6)))
    padding = draw(st.sampled_from(["valid", "same"]))
    if padding == "valid":
        assume(pool <= length)
    seed = draw(st.integers(0, 2**31))
    return (n, length, c), pool, strides, padding, seed


def _check_max(k_fwd, k_bwd, r_fwd, r_bwd, shape, pool, strides, padding, seed):
    rng = np.random.default_rng(seed)
    # small integers make ties frequent: the first maximum in window order must win
    x = rng.integers(-3, 4, shape).astype(np.float32) if seed % 2 else _x(rng, shape)
    y, a = k_fwd(x, pool, strides, padding)
    yr, ar = r_fwd(x, pool, strides, padding)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(a, ar)
    assert a.dtype == np.int32 and y.dtype == np.float32
    dy = _x(rng, y.shape)
    dx = k_bwd(dy, a, shape)
    close(dx, r_bwd, dy, ar, shape)


def _check_avg(k_fwd, k_bwd, r_fwd, r_bwd, shape, pool, strides, padding, seed):
    rng = np.random.default_rng(seed)
    x = _x(rng, shape)
    y = k_fwd(x, pool, strides, padding)
    close(y, r_fwd, x, pool, strides, padding)
    dy = _x(rng, y.shape)
    dx = k_bwd(dy, shape, pool, strides, padding)
    close(dx, r_bwd, dy, shape, pool, strides, padding)


@given(case2d())
def test_max_pool2d_matches_reference(case):
    _check_max(K.max_pool2d, K.max_pool2d_backward, R.max_pool2d, R.max_pool2d_backward, *case)


@given(case2d())
def test_avg_pool2d_matches_reference(case):
    _check_avg(K.avg_pool2d, K.avg_pool2d_backward, R.avg_pool2d, R.avg_pool2d_backward, *case)


@given(case1d())
def test_max_pool1d_matches_reference(case):
    _check_max(K.max_pool1d, K.max_pool1d_backward, R.max_pool1d, R.max_pool1d_backward, *case)


@given(case1d())
def test_avg_pool1d_matches_reference(case):
    _check_avg(K.avg_pool1d, K.avg_pool1d_backward, R.avg_pool1d, R.avg_pool1d_backward, *case)


@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 4, 19]),
       st.integers(0, 2**31), st.booleans())
def test_global_pools_match_reference(n, h, w, c, seed, one_d):
    rng = np.random.default_rng(seed)
    shape = (n, h * w, c) if one_d else (n, h, w, c)
    x = rng.integers(-2, 3, shape).astype(np.float32) if seed % 2 else _x(rng, shape)
    if one_d:
        kmax, kmaxb, kavg, kavgb = (K.global_max_pool1d, K.global_max_pool1d_backward,
                                    K.global_avg_pool1d, K.global_avg_pool1d_backward)
    else:
        kmax, kmaxb, kavg, kavgb = (K.global_max_pool2d, K.global_max_pool2d_backward,
                                    K.global_avg_pool2d, K.global_avg_pool2d_backward)
    y, a = kmax(x)
    yr, ar = R.global_max_pool2d(x)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(a, ar)
    dy = _x(rng, (n, c))
    np.testing.assert_array_equal(kmaxb(dy, a, shape), R.global_max_pool2d_backward(dy, ar, shape))
    close(kavg(x), R.global_avg_pool2d, x)
    close(kavgb(dy, shape), R.global_avg_pool2d_backward, dy, shape)


def test_global_avg_sums_in_double():
    # 1e4 copies of 0.1 plus one 1.0: a float32 running sum drifts by ~1e-4 relative
    x = np.full((1, 100, 100, 2), 0.1, np.float32)
    x[0, 0, 0] = 1.0
    want = (x.astype(np.float64).sum(axis=(1, 2)) / 1e4).astype(np.float32)
    np.testing.assert_array_equal(K.global_avg_pool2d(x), want)


# ---- gradients against central differences (float64 forward) ----

def _numeric_grad(f, x, dy, eps):
    """d sum(f(x) * dy) / dx by central differences in float64."""
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = np.sum(f(x) * dy)
        x[i] = old - eps
        down = np.sum(f(x) * dy)
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


GRAD_CASES = [
    ((2, 5, 6, 3), (2, 2), None, "valid"),
    ((1, 5, 5, 2), (3, 3), (1, 1), "same"),      # overlap + padding
    ((2, 7, 4, 3), (2, 3), (3, 1), "same"),      # stride > pool along H, non-square
    ((1, 6, 6, 2), (3, 2), (2, 1), "valid"),     # overlapping windows
]


@pytest.mark.parametrize("shape, pool, strides, padding", GRAD_CASES)
def test_avg_pool2d_gradient_is_exact(shape, pool, strides, padding, rng):
    x = _x(rng, shape)
    dy = _x(rng, K.avg_pool2d(x, pool, strides, padding).shape)
    num = _numeric_grad(lambda v: R.avg_pool2d(v, pool, strides, padding), x, dy, 1e-3)
    np.testing.assert_allclose(K.avg_pool2d_backward(dy, shape, pool, strides, padding), num,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, pool, strides, padding", GRAD_CASES)
def test_max_pool2d_gradient_away_from_ties(shape, pool, strides, padding, rng):
    x = _x(rng, shape, distinct=True)   # values 0.01 apart, step 1e-3: no max switches
    y, a = K.max_pool2d(x, pool, strides, padding)
    dy = _x(rng, y.shape)
    num = _numeric_grad(lambda v: R.max_pool2d(v, pool, strides, padding)[0], x, dy, 1e-3)
    np.testing.assert_allclose(K.max_pool2d_backward(dy, a, shape), num, rtol=1e-5, atol=1e-5)


def test_1d_and_global_gradients(rng):
    x = _x(rng, (2, 7, 3), distinct=True)
    for pool, strides, padding in [(3, 2, "same"), (2, None, "valid"), (3, 1, "valid")]:
        y, a = K.max_pool1d(x, pool, strides, padding)
        dy = _x(rng, y.shape)
        num = _numeric_grad(lambda v: R.max_pool1d(v, pool, strides, padding)[0], x, dy, 1e-3)
        np.testing.assert_allclose(K.max_pool1d_backward(dy, a, x.shape), num, rtol=1e-5, atol=1e-5)
        num = _numeric_grad(lambda v: R.avg_pool1d(v, pool, strides, padding), x, dy, 1e-3)
        np.testing.assert_allclose(K.avg_pool1d_backward(dy, x.shape, pool, strides, padding), num,
                                   rtol=1e-5, atol=1e-6)
    x4 = _x(rng, (2, 3, 4, 3), distinct=True)
    dy = _x(rng, (2, 3))
    y, a = K.global_max_pool2d(x4)
    num = _numeric_grad(lambda v: R.global_max_pool2d(v)[0], x4, dy, 1e-3)
    np.testing.assert_allclose(K.global_max_pool2d_backward(dy, a, x4.shape), num, rtol=1e-5, atol=1e-5)
    num = _numeric_grad(R.global_avg_pool2d, x4, dy, 1e-3)
    np.testing.assert_allclose(K.global_avg_pool2d_backward(dy, x4.shape), num, rtol=1e-5, atol=1e-6)


# ---- Keras semantics spelled out ----

def test_same_padding_never_picks_pads_and_excludes_them_from_the_mean():
    x = np.full((1, 3, 3, 1), -5.0, np.float32)      # all negative: a zero pad would win
    x[0, 2, 2, 0] = -np.inf
    y, a = K.max_pool2d(x, 2, 2, "same")             # out 2x2, one padded row/column at the end
    np.testing.assert_array_equal(y[..., 0], [[[-5, -5], [-5, -np.inf]]])
    assert a[0, 1, 1, 0] == 8                        # the only real cell of the corner window
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    y = K.avg_pool2d(x, 2, 2, "same")
    np.testing.assert_allclose(y[..., 0], [[[2.0, 3.5], [6.5, 8.0]]])   # divisors 4, 2, 2, 1


def test_ties_pick_first_in_window_order():
    x = np.ones((1, 2, 2, 3), np.float32)
    _, a = K.max_pool2d(x, 2)
    np.testing.assert_array_equal(a.ravel(), [0, 1, 2])
    _, a = K.global_max_pool2d(x)
    np.testing.assert_array_equal(a.ravel(), [0, 1, 2])


def test_nan_and_inf_propagate():
    x = np.zeros((1, 4, 4, 2), np.float32)
    x[0, 0, 1, 0] = np.nan       # window (0, 0), channel 0
    x[0, 1, 0, 0] = 7.0          # a larger value after the NaN does not win
    x[0, 1, 1, 0] = np.nan       # a second NaN does not move argmax
    x[0, 3, 3, 1] = np.inf
    y, a = K.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and a[0, 0, 0, 0] == (0 * 4 + 1) * 2 + 0
    assert y[0, 1, 1, 1] == np.inf
    assert np.isfinite(np.delete(y.ravel(), [0, 7])).all()
    yr, ar = R.max_pool2d(x, 2)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(a, ar)
    ya = K.avg_pool2d(x, 2)
    assert np.isnan(ya[0, 0, 0, 0]) and ya[0, 1, 1, 1] == np.inf
    g, ga = K.global_max_pool2d(x)
    assert np.isnan(g[0, 0]) and ga[0, 0] == 2 and g[0, 1] == np.inf
    assert np.isnan(K.global_avg_pool2d(x)[0, 0])
    dy = np.full(y.shape, np.nan, np.float32)
    assert np.isnan(K.max_pool2d_backward(dy, a, x.shape)).sum() == y.size
    assert np.isnan(K.avg_pool2d_backward(dy, x.shape)).all()


def test_threads_give_identical_results(rng):
    x = _x(rng, (3, 9, 8, 21))
    before = get_num_threads()
    try:
        results = []
        for n in (1, 2):
            set_num_threads(n)
            y, a = K.max_pool2d(x, 3, 2, "same")
            dy = _x(np.random.default_rng(0), y.shape)
            results.append((y, a, K.max_pool2d_backward(dy, a, x.shape),
                            K.avg_pool2d(x, 3, 2, "same"), K.avg_pool2d_backward(dy, x.shape, 3, 2, "same")))
    finally:
        set_num_threads(before)
    for p, q in zip(*results):
        np.testing.assert_array_equal(p, q)


# ---- out= buffers, read-only inputs, empty batch ----

def test_out_buffers_are_used(rng):
    x = _x(rng, (2, 6, 6, 3))
    out, am = np.empty((2, 3, 3, 3), np.float32), np.empty((2, 3, 3, 3), np.int32)
    y, a = K.max_pool2d(x, out=out, argmax=am)
    assert np.shares_memory(y, out) and np.shares_memory(a, am)
    dx = np.full(x.shape, 9.0, np.float32)                 # stale contents must be overwritten
    assert np.shares_memory(K.max_pool2d_backward(y, a, x.shape, dx=dx), dx)
    np.testing.assert_array_equal(dx, R.max_pool2d_backward(y, a, x.shape))
    assert np.shares_memory(K.avg_pool2d(x, out=out), out)
    dx.fill(9.0)
    assert np.shares_memory(K.avg_pool2d_backward(out, x.shape, dx=dx), dx)
    close(dx, R.avg_pool2d_backward, out, x.shape)
    g, ga = np.empty((2, 3), np.float32), np.empty((2, 3), np.int32)
    r = K.global_max_pool2d(x, out=g, argmax=ga)
    assert np.shares_memory(r[0], g) and np.shares_memory(r[1], ga)
    assert np.shares_memory(K.global_max_pool2d_backward(g, ga, x.shape, dx=dx), dx)
    assert np.shares_memory(K.global_avg_pool2d(x, out=g), g)
    assert np.shares_memory(K.global_avg_pool2d_backward(g, x.shape, dx=dx), dx)
    x1 = _x(rng, (2, 6, 3))
    o1, a1 = np.empty((2, 3, 3), np.float32), np.empty((2, 3, 3), np.int32)
    y1, r1 = K.max_pool1d(x1, out=o1, argmax=a1)
    assert np.shares_memory(y1, o1) and np.shares_memory(r1, a1)
    d1 = np.empty_like(x1)
    assert np.shares_memory(K.max_pool1d_backward(y1, r1, x1.shape, dx=d1), d1)
    assert np.shares_memory(K.avg_pool1d(x1, out=o1), o1)
    assert np.shares_memory(K.avg_pool1d_backward(o1, x1.shape, dx=d1), d1)
    assert np.shares_memory(K.global_max_pool1d(x1, out=g, argmax=ga)[0], g)
    assert np.shares_memory(K.global_avg_pool1d(x1, out=g), g)
    assert np.shares_memory(K.global_avg_pool1d_backward(g, x1.shape, dx=d1), d1)
    assert np.shares_memory(K.global_max_pool1d_backward(g, ga, x1.shape, dx=d1), d1)


def _every_call(x):
    """Every pool kernel on x, its outputs fed back as dy (read-only too when x is)."""
    y, a = K.max_pool2d(x, (2, 3))
    ya = K.avg_pool2d(x, (2, 3))
    g, ga = K.global_max_pool2d(x)
    outs = [y, a, ya, g, ga]
    if not x.flags.writeable:
        for o in outs:
            o.setflags(write=False)
    return outs + [K.max_pool2d_backward(y, a, x.shape), K.avg_pool2d_backward(ya, x.shape, (2, 3)),
                   K.global_max_pool2d_backward(g, ga, x.shape), K.global_avg_pool2d_backward(g, x.shape),
                   K.global_avg_pool2d(x), *K.max_pool1d(x[0]), K.avg_pool1d(x[0])]


def test_read_only_inputs(rng):
    """Read-only inputs (x, dy, argmax) give the bits writeable ones give."""
    x = _x(rng, (2, 4, 6, 3))
    want = _every_call(x.copy())
    x.setflags(write=False)
    got = _every_call(x)
    assert len(got) == len(want) == 13
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[5], R.max_pool2d_backward(want[0], want[1], x.shape))


def test_empty_batch():
    x = np.empty((0, 4, 4, 3), np.float32)
    y, a = K.max_pool2d(x)
    assert y.shape == a.shape == (0, 2, 2, 3)
    assert K.max_pool2d_backward(y, a, x.shape).shape == x.shape
    assert K.avg_pool2d_backward(K.avg_pool2d(x), x.shape).shape == x.shape
    assert K.global_avg_pool2d(x).shape == (0, 3)


# ---- validation: every path raises a named error ----

X4 = np.zeros((2, 4, 4, 3), np.float32)
X3 = np.zeros((2, 4, 3), np.float32)
Y3 = np.zeros((2, 2, 3), np.float32)
A3 = np.zeros((2, 2, 3), np.int32)
Y4 = np.zeros((2, 2, 2, 3), np.float32)
A4 = np.zeros((2, 2, 2, 3), np.int32)
G2 = np.zeros((2, 3), np.float32)
GA = np.zeros((2, 3), np.int32)

BAD_CALLS = [
    # inputs: type, dtype, rank, contiguity, empty spatial dims
    (lambda: K.max_pool2d(X4.tolist()), TypeError, "x must be a numpy.ndarray"),
    (lambda: K.max_pool2d(X4.astype(np.float64)), TypeError, "x must have dtype float32"),
    (lambda: K.avg_pool2d(X3), ValueError, "x must have 4 dimensions"),
    (lambda: K.max_pool1d(X4), ValueError, "x must have 3 dimensions"),
    (lambda: K.avg_pool2d(X4[:, :, ::2]), ValueError, "C-contiguous"),
    (lambda: K.global_avg_pool2d(X4[..., ::2]), ValueError, "C-contiguous"),
    (lambda: K.max_pool2d(np.zeros((1, 0, 4, 1), np.float32), 1, 1, "same"), ValueError, "non-empty"),
    # geometry
    (lambda: K.max_pool2d(X4, 0), ValueError, "pool_size must be >= 1"),
    (lambda: K.avg_pool2d(X4, (2, 2), (0, 1)), ValueError, "strides must be >= 1"),
    (lambda: K.avg_pool2d(X4, (2, 2, 2)), ValueError, "pool_size must be an int or a tuple of 2"),
    (lambda: K.avg_pool2d(X4, 2.0), TypeError, "pool_size must be an int or a tuple"),
    (lambda: K.max_pool2d(X4, 5), ValueError, "larger than the padded input"),
    (lambda: K.max_pool1d(X3, 5), ValueError, "larger than the padded input"),
    (lambda: K.max_pool2d(X4, 2, None, "causal"), ValueError, "padding must be 'valid' or 'same'"),
    (lambda: K.avg_pool1d(X3, 2, None, ((0, 1),)), ValueError, "padding must be 'valid' or 'same'"),
    (lambda: K.max_pool2d(X4, 2**40, 1, "same"), ValueError, "pool_size must be below"),
    # out= buffers
    (lambda: K.max_pool2d(X4, out=np.zeros((2, 3, 3, 3), np.float32)), ValueError, "out must have shape"),
    (lambda: K.max_pool2d(X4, argmax=np.zeros((2, 2, 2, 3), np.int64)), TypeError, "argmax must have dtype int32"),
    (lambda: K.avg_pool2d(X4, out=np.zeros((2, 2, 2, 3), np.float64)), TypeError, "out must have dtype float32"),
    (lambda: K.avg_pool2d(X4, out=np.zeros((2, 2, 2, 6), np.float32)[..., ::2]), ValueError, "out must be C-contiguous"),
    (lambda: K.global_avg_pool2d(X4, out=np.zeros((2, 3), np.float32)[::-1]), ValueError, "C-contiguous"),
    (lambda: K.avg_pool2d(X4, 4, out=X4[:, :1, :1]), ValueError, "must be C-contiguous"),
    (lambda: K.max_pool2d(X4, 1, out=X4), ValueError, "out must not share memory with x"),
    (lambda: K.max_pool2d(Y4, out=G2.reshape(2, 1, 1, 3), argmax=G2.view(np.int32).reshape(2, 1, 1, 3)),
     ValueError, "argmax must not share memory with out"),
    (lambda: K.max_pool2d(Y4, 1, argmax=Y4.view(np.int32)), ValueError, "argmax must not share memory with x"),
    (lambda: K.global_max_pool2d(X4, out=G2, argmax=G2.view(np.int32)), ValueError,
     "argmax must not share memory with out"),
    # backward: dy, argmax, x_shape, dx
    (lambda: K.max_pool2d_backward(Y4, A4.astype(np.int64), X4.shape), TypeError, "argmax must have dtype int32"),
    (lambda: K.max_pool2d_backward(Y4, A4[:, :1], X4.shape), ValueError, "argmax must have shape"),
    (lambda: K.max_pool2d_backward(Y4, A4, (2, 4, 4)), ValueError, "x_shape must be 4 non-negative ints"),
    (lambda: K.max_pool2d_backward(Y4, A4, 7), TypeError, "x_shape must be a tuple"),
    (lambda: K.max_pool2d_backward(Y4, A4, (3, 4, 4, 3)), ValueError, "batch and channels must be equal"),
    (lambda: K.max_pool2d_backward(Y4, A4, (2, 4, 4, 4)), ValueError, "batch and channels must be equal"),
    (lambda: K.max_pool2d_backward(Y4, A4, (2, 1, 4, 3)), ValueError, "more outputs than"),
    (lambda: K.max_pool2d_backward(Y4, A4, (2, 4.0, 4, 3)), ValueError, "x_shape must be 4"),
    (lambda: K.max_pool2d_backward(Y4.astype(np.float64), A4, X4.shape), TypeError, "dy must have dtype float32"),
    (lambda: K.max_pool2d_backward(Y4, A4, X4.shape, dx=np.zeros((2, 4, 4, 3), np.float64)), TypeError,
     "dx must have dtype float32"),
    (lambda: K.max_pool2d_backward(Y4, A4, X4.shape, dx=np.zeros((2, 4, 4, 3), np.float32)[::-1]), ValueError,
     "C-contiguous"),
    (lambda: K.max_pool2d_backward(Y4, np.full((2, 2, 2, 3), 48, np.int32), X4.shape), ValueError,
     "indices outside [0, 48)"),
    (lambda: K.max_pool2d_backward(Y4, np.full((2, 2, 2, 3), -1, np.int32), X4.shape), ValueError,
     "outside [0, 48)"),
    (lambda: K.max_pool1d_backward(Y3, A3 + 12, X3.shape), ValueError, "outside [0, 12)"),
    (lambda: K.global_max_pool2d_backward(G2, GA - 5, X4.shape), ValueError, "outside [0, 48)"),
    (lambda: K.global_max_pool1d_backward(G2, GA, (2, 4, 4, 3)), ValueError, "x_shape must be 3"),
    (lambda: K.max_pool2d_backward(Y4, A4, (2, 2**16, 2**16, 3)), ValueError, "more than int32"),
    (lambda: K.avg_pool2d_backward(Y4, X4.shape, 3), ValueError, "dy must have shape (2, 1, 1, 3)"),
    (lambda: K.avg_pool2d_backward(Y4, X4.shape, 2, 1), ValueError, "dy must have shape"),
    (lambda: K.avg_pool2d_backward(Y4, X4.shape, dx=Y4), ValueError, "dx must have shape"),
    (lambda: K.avg_pool1d_backward(Y3, X3.shape, 2, None, "full"), ValueError, "padding must be"),
    (lambda: K.global_avg_pool2d_backward(Y4, X4.shape), ValueError, "dy must have 2 dimensions"),
    (lambda: K.global_avg_pool1d_backward(G2, (2, 0, 3)), ValueError, "non-empty spatial"),
    (lambda: K.global_avg_pool2d_backward(G2, X4.shape, dx=np.zeros((2, 4, 4, 3), np.float32)[..., ::-1]),
     ValueError, "C-contiguous"),
]


@pytest.mark.parametrize("call, exc, message", BAD_CALLS)
def test_validation_raises(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    if message:
        assert message in str(info.value)
    fn = str(info.value).split(":")[0]
    assert "pool" in fn                      # the message names the function


def test_backward_output_may_not_alias_inputs():
    y, a = K.max_pool2d(X4)
    buf = np.zeros(X4.size, np.float32)
    with pytest.raises(ValueError, match="dx must not share memory with dy"):
        K.max_pool2d_backward(buf[: y.size].reshape(y.shape), a, X4.shape, dx=buf.reshape(X4.shape))


# ---- Keras itself as the oracle for the padding rules ----

@pytest.mark.keras
def test_matches_keras(keras, rng):
    ops = keras.ops
    x = _x(rng, (2, 7, 7, 3))
    checked_avg_same = 0
    for pool, strides in [((3, 3), (2, 2)), ((3, 3), (1, 1)), ((2, 3), (1, 2)), ((2, 2), (3, 3))]:
        for padding in ("same", "valid"):
            want = np.asarray(ops.convert_to_numpy(ops.max_pool(x, pool, strides, padding)))
            np.testing.assert_array_equal(K.max_pool2d(x, pool, strides, padding)[0], want)
            # Keras's torch backend pads asymmetric "same" by replicating the edge and then
            # counts those cells (TF and JAX do not): compare averages where pads are symmetric.
            totals = [max(0, (-(-7 // s) - 1) * s + k - 7) for k, s in zip(pool, strides)]
            if padding == "same" and any(t % 2 for t in totals):
                continue
            checked_avg_same += padding == "same"
            want = np.asarray(ops.convert_to_numpy(ops.average_pool(x, pool, strides, padding)))
            np.testing.assert_allclose(K.avg_pool2d(x, pool, strides, padding), want, rtol=1e-6, atol=1e-6)
    assert checked_avg_same == 2
