"""fastnn.kernels.norm against the float64 NumPy reference, numerical gradients and Keras's rules."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastnn._kernels import norm as _norm
from fastnn.kernels import norm, threads
from fastnn.reference import norm as ref

# every test of this file runs under each instruction-set flavour this CPU has (the `flavour`
# and `isa` fixtures of tests/kernels/conftest.py: 0 portable, 1 AVX2+FMA, 2 AVX-512)
ISAS = [i for i in (0, 1, 2) if _norm.isa_supported(i)]

# float32 kernel vs float64 oracle: a few ulps of the largest magnitude in the computation
RTOL = 2e-6


def _data(rng, shape, loc=0.0, scale=1.0):
    return (rng.standard_normal(shape) * scale + loc).astype(np.float32)


def _params(rng, c, with_gamma=True, with_beta=True):
    gamma = (rng.standard_normal(c) + 1.0).astype(np.float32) if with_gamma else None
    beta = rng.standard_normal(c).astype(np.float32) if with_beta else None
    mm = rng.standard_normal(c).astype(np.float32)
    mv = (rng.random(c) + 0.5).astype(np.float32)
    return gamma, beta, mm, mv


def _tol_y(x, gamma, invstd, beta):
    """Absolute tolerance per element for y: rounding of (x - mean)*scale + shift in float32."""
    x2 = np.abs(x.reshape(-1, x.shape[-1]).astype(np.float64))
    g = 1.0 if gamma is None else np.abs(gamma.astype(np.float64))
    b = 0.0 if beta is None else np.abs(beta.astype(np.float64))
    dev = np.abs(x2 - x2.mean(axis=0))
    return (8 * RTOL * (dev * g * invstd + b) + 1e-6).reshape(x.shape)


shapes = st.one_of(
    st.tuples(st.integers(1, 70), st.integers(1, 19)),
    st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 7), st.integers(1, 9)),
)


@given(shape=shapes, seed=st.integers(0, 2**16), with_gamma=st.booleans(),
       with_beta=st.booleans(), momentum=st.sampled_from([0.0, 0.5, 0.99, 1.0]),
       loc=st.sampled_from([0.0, 3.0, -50.0]))
def test_train_matches_reference(shape, seed, with_gamma, with_beta, momentum, loc):
    rng = np.random.default_rng(seed)
    x = _data(rng, shape, loc=loc)
    c = shape[-1]
    gamma, beta, mm, mv = _params(rng, c, with_gamma, with_beta)
    mm_r, mv_r = mm.copy(), mv.copy()
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv, momentum, 1e-3)
    y_r, mean_r, invstd_r = ref.batch_norm_train(x, gamma, beta, mm_r, mv_r, momentum, 1e-3)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(mean, mean_r, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(invstd, invstd_r, rtol=RTOL)
    np.testing.assert_allclose(mm, mm_r, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(mv, mv_r, rtol=RTOL, atol=1e-6)
    assert np.all(np.abs(y - y_r) <= _tol_y(x, gamma, invstd_r.astype(np.float64), beta))


@given(shape=shapes, seed=st.integers(0, 2**16), with_gamma=st.booleans(),
       loc=st.sampled_from([0.0, 3.0, -50.0]))
def test_backward_matches_reference(shape, seed, with_gamma, loc):
    rng = np.random.default_rng(seed)
    x = _data(rng, shape, loc=loc)
    dy = _data(rng, shape)
    gamma, beta, mm, mv = _params(rng, shape[-1], with_gamma)
    _, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv)
    dx, dg, db = norm.batch_norm_backward(dy, x, gamma, mean, invstd)
    dx_r, dg_r, db_r = ref.batch_norm_backward(dy, x, gamma, mean, invstd)
    m = x.size // x.shape[-1]
    # sums over M rows: absolute error ~ eps32 * sum|terms|
    s = np.abs(dy.reshape(-1, shape[-1])).sum(axis=0)
    np.testing.assert_allclose(db, db_r, rtol=RTOL, atol=1e-6 * s.max())
    np.testing.assert_allclose(dg, dg_r, rtol=1e-5, atol=1e-5 * s.max() + 1e-6)
    g = 1.0 if gamma is None else np.abs(gamma)
    scale = (g * invstd * (np.abs(dy).reshape(-1, shape[-1]).max(axis=0) + 1)).max()
    np.testing.assert_allclose(dx, dx_r, rtol=1e-4, atol=3e-5 * scale * max(1, np.sqrt(m) / 8))


def _loss64(x, gamma, beta, w, eps):
    """sum(w * batchnorm(x)) in float64, with batch statistics."""
    x2 = x.reshape(-1, x.shape[-1])
    mean = x2.mean(axis=0)
    var = ((x2 - mean) ** 2).mean(axis=0)
    y = (x2 - mean) / np.sqrt(var + eps) * gamma + beta
    return float((y * w.reshape(y.shape)).sum())


@pytest.mark.parametrize("shape", [(7, 3), (2, 3, 1, 4), (1, 5), (2, 2)])
@pytest.mark.parametrize("loc", [0.0, 100.0])
def test_gradients_vs_numerical_differentiation(shape, loc, rng):
    x = _data(rng, shape, loc=loc, scale=2.0)
    c = shape[-1]
    gamma = (rng.standard_normal(c) + 1).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    w = _data(rng, shape)   # dy of the loss sum(w * y)
    eps = 1e-3
    mm, mv = np.zeros(c, np.float32), np.ones(c, np.float32)
    _, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv, epsilon=eps)
    dx, dg, db = norm.batch_norm_backward(w, x, gamma, mean, invstd)

    x64, g64, b64, w64 = (a.astype(np.float64) for a in (x, gamma, beta, w))

    def central(f, a):
        grad = np.zeros_like(a)
        h = 1e-5 * max(1.0, np.abs(a).max())
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            fp = f()
            a[i] = old - h
            fm = f()
            a[i] = old
            grad[i] = (fp - fm) / (2 * h)
        return grad

    f = lambda: _loss64(x64, g64, b64, w64, eps)  # noqa: E731
    num_dx, num_dg, num_db = central(f, x64), central(f, g64), central(f, b64)
    big = np.abs(w64).sum() * np.abs(g64).max() * float(invstd.max())
    np.testing.assert_allclose(dx, num_dx, rtol=1e-3, atol=2e-5 * big)
    np.testing.assert_allclose(dg, num_dg, rtol=1e-4, atol=1e-5 * np.abs(w64).sum())
    np.testing.assert_allclose(db, num_db, rtol=1e-4, atol=1e-5 * np.abs(w64).sum())


def test_batch_of_one_row_has_zero_variance(rng):
    x = _data(rng, (1, 6))
    gamma, beta, mm, mv = _params(rng, 6)
    mm0, mv0 = mm.copy(), mv.copy()
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv, 0.9, 1e-3)
    np.testing.assert_array_equal(mean, x[0])
    np.testing.assert_allclose(invstd, 1 / np.sqrt(1e-3), rtol=1e-6)
    np.testing.assert_allclose(y[0], beta, atol=1e-6)   # x - mean = 0 exactly
    np.testing.assert_allclose(mv, mv0 * 0.9, rtol=1e-6)   # batch var 0
    np.testing.assert_allclose(mm, mm0 * 0.9 + x[0] * 0.1, rtol=1e-6, atol=1e-7)
    dx, dg, db = norm.batch_norm_backward(x, x, gamma, mean, invstd)
    np.testing.assert_allclose(dx, 0, atol=1e-5)   # the output does not depend on x


def test_moving_statistics_update_keras_rule(rng):
    x = _data(rng, (4, 5, 3), loc=2.0)
    gamma, beta, mm, mv = _params(rng, 3)
    mm0, mv0 = mm.astype(np.float64), mv.astype(np.float64)
    x2 = x.reshape(-1, 3).astype(np.float64)
    norm.batch_norm_train(x, gamma, beta, mm, mv, momentum=0.99, epsilon=1e-3)
    np.testing.assert_allclose(mm, mm0 * 0.99 + x2.mean(0) * 0.01, rtol=1e-6)
    # the biased variance, no N/(N-1) correction
    np.testing.assert_allclose(mv, mv0 * 0.99 + x2.var(0) * 0.01, rtol=1e-6)
    mm1 = mm.copy()
    norm.batch_norm_train(x, gamma, beta, mm, mv, momentum=1.0)
    np.testing.assert_array_equal(mm, mm1)
    norm.batch_norm_train(x, gamma, beta, mm, mv, momentum=0.0)
    np.testing.assert_allclose(mm, x2.mean(0), rtol=1e-6)
    np.testing.assert_allclose(mv, x2.var(0), rtol=1e-6)


def test_train_output_is_normalised(rng):
    x = _data(rng, (64, 9, 5), loc=-3.0, scale=4.0)
    c = 5
    y, mean, invstd = norm.batch_norm_train(x, None, None, np.zeros(c, np.float32),
                                            np.ones(c, np.float32), epsilon=1e-7)
    y2 = y.reshape(-1, c).astype(np.float64)
    np.testing.assert_allclose(y2.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y2.var(0), 1, rtol=1e-5)


@given(shape=shapes, seed=st.integers(0, 2**16), with_gamma=st.booleans(),
       with_beta=st.booleans())
def test_inference_matches_reference(shape, seed, with_gamma, with_beta):
    rng = np.random.default_rng(seed)
    x = _data(rng, shape, loc=1.0)
    gamma, beta, mm, mv = _params(rng, shape[-1], with_gamma, with_beta)
    y = norm.batch_norm_inference(x, gamma, beta, mm, mv, 1e-3)
    y_r = ref.batch_norm_inference(x, gamma, beta, mm, mv, 1e-3)
    g = 1.0 if gamma is None else np.abs(gamma)
    b = 0.0 if beta is None else np.abs(beta)
    tol = 4 * RTOL * (np.abs(x - mm) * g / np.sqrt(mv + 1e-3) + b) + 1e-7
    assert np.all(np.abs(y - y_r) <= tol)


def test_inference_formula_and_equals_train_with_batch_statistics(rng):
    x = _data(rng, (8, 4, 4, 6))
    gamma, beta, mm, mv = _params(rng, 6)
    y = norm.batch_norm_inference(x, gamma, beta, mm, mv, epsilon=1e-3)
    inv = 1 / np.sqrt(mv.astype(np.float64) + 1e-3)
    expect = x * gamma * inv + (beta - mm * gamma * inv)   # Keras 3's expression
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
    # with moving stats = batch stats (momentum 0), inference reproduces the training output
    y_t, _, _ = norm.batch_norm_train(x, gamma, beta, mm, mv, momentum=0.0)
    np.testing.assert_allclose(norm.batch_norm_inference(x, gamma, beta, mm, mv), y_t,
                               rtol=1e-5, atol=1e-5)


def test_gamma_beta_none_equal_ones_zeros(rng):
    x = _data(rng, (33, 7), loc=2.0)
    ones, zeros = np.ones(7, np.float32), np.zeros(7, np.float32)
    mm, mv = np.zeros(7, np.float32), np.ones(7, np.float32)
    a = norm.batch_norm_train(x, None, None, mm.copy(), mv.copy())
    b = norm.batch_norm_train(x, ones, zeros, mm.copy(), mv.copy())
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(norm.batch_norm_inference(x, None, None, mm, mv),
                                  norm.batch_norm_inference(x, ones, zeros, mm, mv))
    dy = _data(rng, x.shape)
    for u, v in zip(norm.batch_norm_backward(dy, x, None, a[1], a[2]),
                    norm.batch_norm_backward(dy, x, ones, a[1], a[2])):
        np.testing.assert_array_equal(u, v)


def test_large_mean_keeps_variance_and_output(rng):
    c = 3
    noise = rng.standard_normal((4096, c)) * 1e-2
    x = (1e4 + noise).astype(np.float32)
    x64 = x.astype(np.float64)
    var64 = x64.var(0)
    mm, mv = np.zeros(c, np.float32), np.ones(c, np.float32)
    y, mean, invstd = norm.batch_norm_train(x, None, None, mm, mv, momentum=0.0, epsilon=1e-7)
    np.testing.assert_allclose(mv, var64, rtol=1e-5)
    np.testing.assert_allclose(1 / invstd.astype(np.float64) ** 2 - 1e-7, var64, rtol=1e-5)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-7)
    truth = (x64 - x64.mean(0)) / np.sqrt(var64 + 1e-7)
    np.testing.assert_allclose(y, truth, atol=1e-3)   # y ~ N(0,1); the plain fold is off by ~0.06
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dg, db = norm.batch_norm_backward(dy, x, None, mean, invstd)
    dx_r, dg_r, db_r = ref.batch_norm_backward(dy, x, None, mean, invstd)
    np.testing.assert_allclose(dg, (dy * truth).sum(0), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(dx, dx_r, rtol=1e-3, atol=1e-3 * np.abs(dx_r).max())
    # the backward output is orthogonal to 1 and xhat, as the exact gradient is
    assert np.abs(dx.astype(np.float64).sum(0)).max() < 1e-3 * np.abs(dx).sum(0).max()


def test_out_buffers_are_used_and_in_place_allowed(rng):
    x = _data(rng, (5, 4, 3))
    gamma, beta, mm, mv = _params(rng, 3)
    out, mean, invstd = np.empty_like(x), np.empty(3, np.float32), np.empty(3, np.float32)
    y, m_, i_ = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy(), out=out, mean=mean,
                                      invstd=invstd)
    assert y is out and m_ is mean and i_ is invstd
    xc = x.copy()
    y2, _, _ = norm.batch_norm_train(xc, gamma, beta, mm.copy(), mv.copy(), out=xc)
    assert y2 is xc
    np.testing.assert_array_equal(y2, y)
    out = np.empty_like(x)
    assert norm.batch_norm_inference(x, gamma, beta, mm, mv, out=out) is out
    xc = x.copy()
    np.testing.assert_array_equal(norm.batch_norm_inference(xc, gamma, beta, mm, mv, out=xc), out)
    dy = _data(rng, x.shape)
    dx, dg, db = np.empty_like(x), np.empty(3, np.float32), np.empty(3, np.float32)
    r = norm.batch_norm_backward(dy, x, gamma, mean, invstd, dx=dx, dgamma=dg, dbeta=db)
    assert r[0] is dx and r[1] is dg and r[2] is db
    assert np.shares_memory(r[0], dx)
    dyc = dy.copy()
    r2 = norm.batch_norm_backward(dyc, x, gamma, mean, invstd, dx=dyc)
    np.testing.assert_array_equal(r2[0], dx)
    xc = x.copy()
    r3 = norm.batch_norm_backward(dy, xc, gamma, mean, invstd, dx=xc)
    np.testing.assert_array_equal(r3[0], dx)


def test_read_only_inputs_accepted(rng):
    """Read-only inputs give the bits that writeable copies give, and are left as they were."""
    x = _data(rng, (6, 4))
    gamma, beta, mm, mv = _params(rng, 4)
    dy = _data(rng, x.shape)
    mm_w, mv_w = mm.copy(), mv.copy()
    want_train = norm.batch_norm_train(x.copy(), gamma.copy(), beta.copy(), mm_w, mv_w)
    want_inf = norm.batch_norm_inference(x.copy(), gamma.copy(), beta.copy(), mm_w.copy(), mv_w.copy())
    want_bwd = norm.batch_norm_backward(dy.copy(), x.copy(), gamma.copy(), *[a.copy() for a in want_train[1:]])
    before = [a.copy() for a in (x, gamma, beta, dy)]
    for a in (x, gamma, beta, dy):
        a.setflags(write=False)
    got_train = norm.batch_norm_train(x, gamma, beta, mm, mv)   # mm, mv are updated: writeable
    for a in (mm, mv, *got_train[1:]):
        a.setflags(write=False)
    got_inf = norm.batch_norm_inference(x, gamma, beta, mm, mv)
    got_bwd = norm.batch_norm_backward(dy, x, gamma, *got_train[1:])
    for got, want in zip((*got_train, mm, mv, got_inf, *got_bwd), (*want_train, mm_w, mv_w, want_inf, *want_bwd)):
        np.testing.assert_array_equal(got, want)
    for a, b in zip((x, gamma, beta, dy), before):
        np.testing.assert_array_equal(a, b)


def test_nan_and_inf_propagate(rng):
    x = _data(rng, (10, 3))
    x[4, 1] = np.nan
    x[2, 2] = np.inf
    gamma, beta, mm, mv = _params(rng, 3)
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv)
    assert np.isfinite(y[:, 0]).all() and np.isnan(y[:, 1]).all() and not np.isfinite(y[:, 2]).any()
    assert np.isnan(mean[1]) and np.isnan(mv[1]) and np.isfinite(mm[0])
    yi = norm.batch_norm_inference(x, gamma, beta, np.zeros(3, np.float32), np.ones(3, np.float32))
    assert np.isnan(yi[4, 1]) and np.isinf(yi[2, 2]) and np.isfinite(yi[0]).all()
    dy = _data(rng, x.shape)
    dy[0, 0] = np.nan
    dx, dg, db = norm.batch_norm_backward(dy, x, gamma, mean, invstd)
    assert np.isnan(dx[:, 0]).all() and np.isnan(dg[0]) and np.isnan(db[0])


def test_thread_count_does_not_change_results(rng):
    x = _data(rng, (64, 8, 8, 16), loc=5.0)
    dy = _data(rng, x.shape)
    gamma, beta, mm, mv = _params(rng, 16)
    n0 = threads.get_num_threads()
    try:
        res = []
        for n in (1, 2):
            threads.set_num_threads(n)
            y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())
            res.append((y, mean, invstd, *norm.batch_norm_backward(dy, x, gamma, mean, invstd)))
    finally:
        threads.set_num_threads(n0)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


# ---- validation -------------------------------------------------------------------------------

def _args(rng, shape=(4, 3)):
    x = _data(rng, shape)
    gamma, beta, mm, mv = _params(rng, shape[-1])
    return x, gamma, beta, mm, mv


@pytest.mark.parametrize("change, exc, match", [
    (dict(x=[[1.0, 2.0]]), TypeError, "x must be a numpy.ndarray"),
    (dict(x=np.ones((4, 3))), TypeError, "x must have dtype float32"),
    (dict(x=np.ones((3, 4), np.float32).T), ValueError, "x must be C-contiguous"),
    (dict(x=np.ones((), np.float32)), ValueError, "at least 1 dimension"),
    (dict(x=np.ones((0, 3), np.float32)), ValueError, "at least one row"),
    (dict(gamma=np.ones(4, np.float32)), ValueError, r"gamma must have shape \(3\)"),
    (dict(beta=np.ones((1, 3), np.float32)), ValueError, "beta must have 1 dimensions"),
    (dict(gamma=np.ones(3)), TypeError, "gamma must have dtype float32"),
    (dict(moving_mean=np.ones(2, np.float32)), ValueError, "moving_mean must have shape"),
    (dict(moving_var=None), TypeError, "moving_var must be a numpy.ndarray"),
    (dict(moving_var=np.ones(6, np.float32)[::2]), ValueError, "moving_var must be C-contiguous"),
    (dict(momentum=1.5), ValueError, "momentum must be a finite number in"),
    (dict(momentum=-0.1), ValueError, "momentum"),
    (dict(momentum="0.9"), TypeError, "momentum must be a real number"),
    (dict(epsilon=0.0), ValueError, "epsilon"),
    (dict(epsilon=float("nan")), ValueError, "epsilon"),
    (dict(out=np.empty((4, 3), np.float64)), TypeError, "out must have dtype float32"),
    (dict(out=np.empty((3, 4), np.float32)), ValueError, "out must have shape"),
    (dict(mean=np.empty(4, np.float32)), ValueError, "mean must have shape"),
    (dict(invstd=np.empty(3, np.float32)[::1].copy().reshape(1, 3)), ValueError, "invstd"),
])
def test_train_validation(rng, change, exc, match):
    x, gamma, beta, mm, mv = _args(rng)
    kw = dict(x=x, gamma=gamma, beta=beta, moving_mean=mm, moving_var=mv)
    kw.update(change)
    with pytest.raises(exc, match=match) as e:
        norm.batch_norm_train(**kw)
    assert "batch_norm_train" in str(e.value)


def test_train_validation_writeable_and_aliasing(rng):
    x, gamma, beta, mm, mv = _args(rng)
    ro = mm.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="moving_mean is written to and must be writeable"):
        norm.batch_norm_train(x, gamma, beta, ro, mv)
    with pytest.raises(ValueError, match="moving_mean must not share memory with moving_var"):
        norm.batch_norm_train(x, gamma, beta, mm, mm)
    buf = np.empty(4 * 3 + 3, np.float32)
    with pytest.raises(ValueError, match="out must not share memory with x"):
        norm.batch_norm_train(buf[:12].reshape(4, 3), gamma, beta, mm, mv,
                              out=buf[3:].reshape(4, 3))
    with pytest.raises(ValueError, match="mean must not share memory with x"):
        norm.batch_norm_train(x, gamma, beta, mm, mv, mean=x[0])
    with pytest.raises(ValueError, match="mean must not share memory with invstd"):
        m = np.empty(3, np.float32)
        norm.batch_norm_train(x, gamma, beta, mm, mv, mean=m, invstd=m)
    with pytest.raises(ValueError, match="moving_mean must not share memory with gamma"):
        norm.batch_norm_train(x, mm, beta, mm, mv)
    ro_out = np.empty_like(x)
    ro_out.setflags(write=False)
    with pytest.raises(ValueError, match="out is written to"):
        norm.batch_norm_train(x, gamma, beta, mm, mv, out=ro_out)


@pytest.mark.parametrize("change, exc, match", [
    (dict(x=np.ones((4, 3), np.float16)), TypeError, "x must have dtype float32"),
    (dict(gamma=np.ones(2, np.float32)), ValueError, "gamma must have shape"),
    (dict(moving_mean=np.ones(2, np.float32)), ValueError, "moving_mean must have shape"),
    (dict(moving_var=[1.0, 1.0, 1.0]), TypeError, "moving_var must be a numpy.ndarray"),
    (dict(epsilon=-1e-3), ValueError, "epsilon"),
    (dict(out=np.empty((4, 3), np.float32)[:, ::-1]), ValueError, "out must be C-contiguous"),
])
def test_inference_validation(rng, change, exc, match):
    x, gamma, beta, mm, mv = _args(rng)
    kw = dict(x=x, gamma=gamma, beta=beta, moving_mean=mm, moving_var=mv)
    kw.update(change)
    with pytest.raises(exc, match=match) as e:
        norm.batch_norm_inference(**kw)
    assert "batch_norm_inference" in str(e.value)


def test_inference_empty_batch(rng):
    x = np.empty((0, 4, 3), np.float32)
    _, gamma, beta, mm, mv = _args(rng)
    assert norm.batch_norm_inference(x, gamma, beta, mm, mv).shape == (0, 4, 3)


@pytest.mark.parametrize("change, exc, match", [
    (dict(dy=np.ones((4, 4), np.float32)), ValueError, r"dy must have shape \(4, 3\)"),
    (dict(dy=np.ones((4, 3))), TypeError, "dy must have dtype float32"),
    (dict(x=np.ones((0, 3), np.float32), dy=np.ones((0, 3), np.float32)), ValueError, "one row"),
    (dict(gamma=np.ones(4, np.float32)), ValueError, "gamma must have shape"),
    (dict(mean=None), TypeError, "mean must be a numpy.ndarray"),
    (dict(invstd=np.ones(3, np.float64)), TypeError, "invstd must have dtype float32"),
    (dict(dx=np.empty((4, 3), np.float64)), TypeError, "dx must have dtype float32"),
    (dict(dgamma=np.empty(2, np.float32)), ValueError, "dgamma must have shape"),
    (dict(dbeta=np.empty((3, 1), np.float32)), ValueError, "dbeta must have shape"),
])
def test_backward_validation(rng, change, exc, match):
    x, gamma, beta, mm, mv = _args(rng)
    dy = _data(rng, x.shape)
    kw = dict(dy=dy, x=x, gamma=gamma, mean=mm, invstd=mv)
    kw.update(change)
    with pytest.raises(exc, match=match) as e:
        norm.batch_norm_backward(**kw)
    assert "batch_norm_backward" in str(e.value)


def test_backward_validation_aliasing(rng):
    x, gamma, beta, mm, mv = _args(rng)
    dy = _data(rng, x.shape)
    with pytest.raises(ValueError, match="dgamma must not share memory with dbeta"):
        g = np.empty(3, np.float32)
        norm.batch_norm_backward(dy, x, gamma, mm, mv, dgamma=g, dbeta=g)
    with pytest.raises(ValueError, match="dbeta must not share memory with mean"):
        norm.batch_norm_backward(dy, x, gamma, mm, mv, dbeta=mm)
    buf = np.empty(15, np.float32)
    with pytest.raises(ValueError, match="dx must not share memory with dy"):
        norm.batch_norm_backward(buf[:12].reshape(4, 3), x, gamma, mm, mv,
                                 dx=buf[3:].reshape(4, 3))


# ---- ReLU epilogue (relu=True forward, y= backward): bit-identical to the unfused pair ---------

from fastnn.kernels import activation as act  # noqa: E402


@given(shape=shapes, seed=st.integers(0, 2**16), with_gamma=st.booleans(), with_beta=st.booleans())
def test_relu_epilogue_equals_separate_relu(shape, seed, with_gamma, with_beta):
    rng = np.random.default_rng(seed)
    x = _data(rng, shape, loc=0.5)
    gamma, beta, mm, mv = _params(rng, shape[-1], with_gamma, with_beta)
    mm2, mv2 = mm.copy(), mv.copy()
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv)
    r = act.apply("relu", y)
    yf, mean2, invstd2 = norm.batch_norm_train(x, gamma, beta, mm2, mv2, relu=True)
    for a, b in ((r, yf), (mean, mean2), (invstd, invstd2), (mm, mm2), (mv, mv2)):
        np.testing.assert_array_equal(a, b)
    dy = _data(rng, shape)
    ref_out = norm.batch_norm_backward(act.grad("relu", y, r, dy), x, gamma, mean, invstd)
    fused = norm.batch_norm_backward(dy, x, gamma, mean, invstd, y=yf)
    for a, b in zip(ref_out, fused):
        np.testing.assert_array_equal(a, b)
    yi = norm.batch_norm_inference(x, gamma, beta, mm, mv)
    np.testing.assert_array_equal(act.apply("relu", yi),
                                  norm.batch_norm_inference(x, gamma, beta, mm, mv, relu=True))


def test_relu_epilogue_large_parallel_shape_and_in_place(rng):
    shape = (16, 16, 16, 32)   # many chunks and row blocks: the threaded paths
    x = _data(rng, shape)
    gamma, beta, mm, mv = _params(rng, shape[-1])
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())
    r = act.apply("relu", y)
    buf = x.copy()
    yf, _, _ = norm.batch_norm_train(buf, gamma, beta, mm.copy(), mv.copy(), out=buf, relu=True)
    assert yf is buf
    np.testing.assert_array_equal(r, yf)
    dy = _data(rng, shape)
    expect = norm.batch_norm_backward(act.grad("relu", y, r, dy), x, gamma, mean, invstd)
    ycopy = yf.copy()
    dx, dg, db = norm.batch_norm_backward(dy, x, gamma, mean, invstd, y=ycopy, dx=ycopy)
    assert dx is ycopy   # dx may be y itself (read before written, element by element)
    for a, b in zip(expect, (dx, dg, db)):
        np.testing.assert_array_equal(a, b)


def test_relu_epilogue_nan_and_inf_as_unfused(rng):
    x = _data(rng, (40, 4))
    x[3, 1] = np.nan
    gamma, beta, mm, mv = _params(rng, 4)
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())
    r = act.apply("relu", y)
    yf, _, _ = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy(), relu=True)
    np.testing.assert_array_equal(r, yf)   # NaN at the same places
    assert np.isnan(yf[:, 1]).all()
    x2 = _data(rng, (40, 4))
    y2, mean2, invstd2 = norm.batch_norm_train(x2, gamma, beta, mm.copy(), mv.copy())
    r2 = act.apply("relu", y2)
    dy = _data(rng, (40, 4))
    dy[np.nonzero(r2[:, 0] == 0)[0][0], 0] = np.inf   # inf * 0 on a masked element: NaN as unfused
    r2[5, 2] = np.nan
    expect = norm.batch_norm_backward(act.grad("relu", r2, r2, dy), x2, gamma, mean2, invstd2)
    got = norm.batch_norm_backward(dy, x2, gamma, mean2, invstd2, y=r2)
    for a, b in zip(expect, got):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(got[1][0]) and np.isnan(got[1][2])


@pytest.mark.parametrize("fn", ["train", "inference"])
@pytest.mark.parametrize("relu", [1, "yes", None, np.float32(1.0)])
def test_relu_argument_validation(rng, fn, relu):
    x, gamma, beta, mm, mv = _args(rng)
    with pytest.raises(TypeError, match=f"batch_norm_{fn}: relu must be True or False"):
        if fn == "train":
            norm.batch_norm_train(x, gamma, beta, mm, mv, relu=relu)
        else:
            norm.batch_norm_inference(x, gamma, beta, mm, mv, relu=relu)
    assert norm.batch_norm_inference(x, gamma, beta, mm, mv, relu=np.True_).min() >= 0


def test_backward_y_validation(rng):
    x, gamma, beta, mm, mv = _args(rng)
    dy = _data(rng, x.shape)
    f = norm.batch_norm_backward
    with pytest.raises(ValueError, match=r"batch_norm_backward: y must have shape \(4, 3\)"):
        f(dy, x, gamma, mm, mv, y=np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="batch_norm_backward: y must have dtype float32"):
        f(dy, x, gamma, mm, mv, y=np.ones((4, 3)))
    with pytest.raises(TypeError, match="batch_norm_backward: y must be a numpy.ndarray"):
        f(dy, x, gamma, mm, mv, y=[[1.0] * 3] * 4)
    with pytest.raises(ValueError, match="batch_norm_backward: y must be C-contiguous"):
        f(dy, x, gamma, mm, mv, y=np.ones((3, 4), np.float32).T)
    buf = np.empty(15, np.float32)
    buf[:] = 1.0
    with pytest.raises(ValueError, match="dx must not share memory with y"):
        f(dy, x, gamma, mm, mv, y=buf[:12].reshape(4, 3), dx=buf[3:].reshape(4, 3))
    ro = np.maximum(x, 0)
    ro.flags.writeable = False
    f(dy, x, gamma, mm, mv, y=ro)   # a read-only y is fine


# ---- instruction-set flavours -----------------------------------------------------------------
# channel counts around the vector widths (tails: C % 2, 4, 8 != 0) and M around the chunk and
# row-block sizes (M*C >= 64K: several statistics chunks)
FLAVOUR_SHAPES = [(m, c) for c in (1, 3, 7, 9, 15, 17, 33, 40, 63, 65, 100, 130)
                  for m in (1, 5, 33, 4099)]


def _all_outputs(x, dy, gamma, beta, mm, mv, relu):
    mm, mv = mm.copy(), mv.copy()
    y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm, mv, 0.9, relu=relu)
    dx, dg, db = norm.batch_norm_backward(dy, x, gamma, mean, invstd, y=y if relu else None)
    yi = norm.batch_norm_inference(x, gamma, beta, mm, mv, relu=relu)
    return [y, mean, invstd, mm, mv, dx, dg, db, yi]


@pytest.mark.parametrize("m, c", FLAVOUR_SHAPES, ids=str)
def test_flavours_agree_with_portable(isa, m, c):
    """Each flavour vs the portable one: the same sums in the same order per channel, so they
    differ only by FMA contraction (a few ulps); tails and chunk edges included."""
    rng = np.random.default_rng(m * 1000 + c)
    x = (rng.standard_normal((m, c)) * 2 + 100 * rng.standard_normal(c)).astype(np.float32)
    dy = _data(rng, (m, c))
    gamma, beta, mm, mv = _params(rng, c)
    for relu in (False, True):
        got = _all_outputs(x, dy, gamma, beta, mm, mv, relu)
        old = _norm.set_isa(0)
        try:
            expect = _all_outputs(x, dy, gamma, beta, mm, mv, relu)
        finally:
            _norm.set_isa(old)
        names = ["y", "mean", "invstd", "moving_mean", "moving_var", "dx", "dgamma", "dbeta", "yi"]
        for name, a, b in zip(names, got, expect):
            scale = float(np.abs(b).max()) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(scale, 1e-3),
                                       err_msg=f"{name} relu={relu}")
        if isa == 0:   # the same code: the same bits
            for a, b in zip(got, expect):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("m, c", [(33, 7), (4099, 17), (1000, 40), (513, 130), (64, 32)], ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_affine_rows_equals_inference_in_and_out_of_place(isa, m, c, relu):
    """conv's BN epilogue (affine_rows, in place) and batch_norm_inference (out of place, and in
    place) run the same C code on every channel, tails included: the same bits."""
    rng = np.random.default_rng(c)
    x = _data(rng, (m, c), loc=2.0)
    gamma, beta, mm, mv = _params(rng, c)
    yi = norm.batch_norm_inference(x, gamma, beta, mm, mv, relu=relu)
    buf = x.copy()
    norm.batch_norm_inference(buf, gamma, beta, mm, mv, out=buf, relu=relu)
    scale, shift = norm.inference_fold(gamma, beta, mv)
    ya = x.copy()
    _norm.affine_rows(ya, mm, scale, shift, relu)
    np.testing.assert_array_equal(yi, buf)
    np.testing.assert_array_equal(yi, ya)


@pytest.mark.parametrize("m, c", [(4099, 17), (2000, 33), (513, 130)], ids=str)
def test_flavour_relu_fusion_and_threads_bit_identical(isa, m, c):
    """Per flavour: the fused ReLU forward/backward equal the unfused pair bit for bit, with a
    channel tail and several chunks, for 1 and 2 threads alike."""
    rng = np.random.default_rng(c)
    x = _data(rng, (m, c), loc=0.3)
    dy = _data(rng, (m, c))
    x[3, c - 1] = np.nan          # a NaN in the tail channel
    dy[7, c - 1] = np.inf
    gamma, beta, mm, mv = _params(rng, c)
    n0 = threads.get_num_threads()
    res = []
    try:
        for n in (1, 2):
            threads.set_num_threads(n)
            y, mean, invstd = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())
            r = act.apply("relu", y)
            yf, _, _ = norm.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy(), relu=True)
            np.testing.assert_array_equal(r, yf)
            unfused = norm.batch_norm_backward(act.grad("relu", y, r, dy), x, gamma, mean, invstd)
            fused = norm.batch_norm_backward(dy, x, gamma, mean, invstd, y=yf)
            for a, b in zip(unfused, fused):
                np.testing.assert_array_equal(a, b)
            res.append((yf, mean, invstd, *fused))
    finally:
        threads.set_num_threads(n0)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(res[0][0][:, c - 1]).all() and np.isfinite(res[0][0][:, 0]).all()


def test_set_isa_rejects_unknown_flavour():
    with pytest.raises(ValueError, match="flavour"):
        _norm.set_isa(3)
    assert _norm.get_isa() in ISAS


# ---- synchronised statistics: the batch split over processes, float64 sums added in between
def _split_train(x, cuts, gamma, beta, mm, mv, momentum=0.9, relu=False):
    """batch_norm_train of x's row blocks with the statistics of all rows (as the processes of a
    data-parallel step compute it): moments with a common shift, summed, then each block."""
    c = x.shape[-1]
    parts = np.split(x, cuts)
    shift = mm.copy()
    sums = sum(norm.batch_norm_moments(p, shift) for p in parts)
    outs = []
    for p in parts:
        m1, v1 = mm.copy(), mv.copy()
        outs.append(norm.batch_norm_train(np.ascontiguousarray(p), gamma, beta, m1, v1, momentum,
                                          1e-3, relu=relu, stats=(x.shape[0], shift, sums)))
    return outs, m1, v1


@settings(max_examples=15)   # runs once per instruction-set flavour
@given(m=st.integers(2, 90), c=st.integers(1, 13), seed=st.integers(0, 2**16),
       ncut=st.integers(1, 3), loc=st.sampled_from([0.0, 3.0, -50.0]), relu=st.booleans())
def test_split_statistics_equal_the_whole_batch(m, c, seed, ncut, loc, relu):
    rng = np.random.default_rng(seed)
    x = _data(rng, (m, c), loc=loc)
    gamma, beta, mm, mv = _params(rng, c)
    cuts = sorted(rng.integers(0, m + 1, ncut))    # may leave a block with 0 rows
    m_w, v_w = mm.copy(), mv.copy()
    y_w, mean_w, inv_w = norm.batch_norm_train(x, gamma, beta, m_w, v_w, 0.9, 1e-3, relu=relu)
    outs, m1, v1 = _split_train(x, cuts, gamma, beta, mm, mv, relu=relu)
    # float64 sums around another shift: the statistics agree to float32 rounding
    for _, mean, invstd in outs:
        np.testing.assert_allclose(mean, mean_w, rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(invstd, inv_w, rtol=RTOL)
    np.testing.assert_allclose(m1, m_w, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(v1, v_w, rtol=RTOL, atol=1e-6)
    y = np.concatenate([o[0] for o in outs])
    assert np.all(np.abs(y - y_w) <= _tol_y(x, gamma, inv_w.astype(np.float64), beta))
    # reference with the same stats
    sums = norm.batch_norm_moments(x, mm)
    np.testing.assert_allclose(sums, ref.batch_norm_moments(x, mm), rtol=1e-9, atol=1e-9 * m)
    y_r, mean_r, _ = ref.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy(), 0.9, 1e-3,
                                          stats=(m, mm, sums))
    np.testing.assert_allclose(mean_w, mean_r, rtol=RTOL, atol=1e-6)

    # backward: the three sums added over the blocks, then each block's dx
    dy = _data(rng, (m, c))
    yk = y_w if relu else None
    dx_w, dg_w, db_w = norm.batch_norm_backward(dy, x, gamma, mean_w, inv_w, y=yk)
    parts = list(zip(np.split(x, cuts), np.split(dy, cuts), np.split(y_w, cuts)))
    s3 = sum(norm.batch_norm_grad_sums(np.ascontiguousarray(d), np.ascontiguousarray(p), mean_w,
                                       y=np.ascontiguousarray(q) if relu else None)
             for p, d, q in parts)
    np.testing.assert_allclose(s3, ref.batch_norm_grad_sums(dy, x, mean_w, y=yk), rtol=1e-9,
                               atol=1e-9 * m)
    dxs = []
    for p, d, q in parts:
        dx, dg, db = norm.batch_norm_backward(
            np.ascontiguousarray(d), np.ascontiguousarray(p), gamma, mean_w, inv_w,
            y=np.ascontiguousarray(q) if relu else None, sums=(m, None, s3))
        dxs.append(dx)
        # measured: dgamma/dbeta agree to ~1e-6 of sum|dy*xhat| (float32 output of float64 sums)
        np.testing.assert_allclose(dg, dg_w, rtol=1e-5, atol=1e-5 * m)
        np.testing.assert_allclose(db, db_w, rtol=1e-5, atol=1e-5 * m)
    dx_r, _, _ = ref.batch_norm_backward(dy * (y_w > 0) if relu else dy, x, gamma, mean_w, inv_w,
                                         sums=(m, None, s3))
    # dx = a*dy + b*(x - mean) + d cancels: measure against its terms' size, |gamma*invstd*dy|
    scale = np.abs(dy).max() * np.abs(gamma * inv_w).max() + 1e-6
    np.testing.assert_allclose(np.concatenate(dxs), dx_w, rtol=0, atol=2e-5 * scale)
    np.testing.assert_allclose(np.concatenate(dxs), dx_r, rtol=0, atol=2e-5 * scale)


def test_synchronised_arguments_are_checked(rng):
    x = _data(rng, (8, 3))
    g, b, mm, mv = _params(rng, 3)
    s = norm.batch_norm_moments(x, mm)
    with pytest.raises(TypeError, match="stats must be a tuple"):
        norm.batch_norm_train(x, g, b, mm, mv, stats=s)
    with pytest.raises(ValueError, match="count"):
        norm.batch_norm_train(x, g, b, mm, mv, stats=(0, mm, s))
    with pytest.raises(TypeError, match="float64"):
        norm.batch_norm_train(x, g, b, mm, mv, stats=(8, mm, s.astype(np.float32)))
    with pytest.raises(ValueError, match="shape"):
        norm.batch_norm_train(x, g, b, mm, mv, stats=(8, mm, s[:1]))
    with pytest.raises(ValueError, match="shift"):
        norm.batch_norm_moments(x, mm[:2])
    y, mean, inv = norm.batch_norm_train(x, g, b, mm, mv)
    with pytest.raises(ValueError, match="shape"):
        norm.batch_norm_backward(x, x, g, mean, inv, sums=(8, None, s))
    # a process with no rows of this batch still takes part: no output, moving stats updated
    empty = np.zeros((0, 3), np.float32)
    m0 = mm.copy()
    y0, _, _ = norm.batch_norm_train(empty, g, b, m0, mv.copy(), stats=(8, mm, s))
    assert y0.shape == (0, 3) and not np.array_equal(m0, mm)
    np.testing.assert_array_equal(norm.batch_norm_moments(empty, mm), np.zeros((2, 3)))
