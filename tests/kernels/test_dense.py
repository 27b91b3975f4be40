"""fastnn.kernels.dense against the NumPy reference (float64) and central differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastnn.kernels import activation as A
from fastnn.kernels import dense as K
from fastnn.reference import dense as R

ACTIVATIONS = [("linear", {}), ("relu", {}), ("relu", {"max_value": 1.0, "negative_slope": 0.1}),
               ("sigmoid", {}), ("tanh", {}), ("gelu", {}), ("gelu", {"approximate": True}),
               ("elu", {"alpha": 0.7}), ("softplus", {}), ("silu", {}), ("hard_silu", {}),
               ("softmax", {}), ("log_softmax", {}), ("softmax", {"axis": 1})]


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def operands(rng, m, k, u, bias=True):
    x = f32(rng.standard_normal((m, k)))
    w = f32(rng.standard_normal((k, u)) / np.sqrt(k))
    b = f32(rng.standard_normal(u)) if bias else None
    return x, w, b


@pytest.mark.parametrize("act,params", ACTIVATIONS, ids=lambda v: str(v))
@pytest.mark.parametrize("m,k,u", [(1, 1, 1), (1, 5, 3), (7, 13, 10), (128, 784, 64), (300, 40, 257)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_matches_reference(act, params, m, k, u, bias, rng):
    x, w, b = operands(rng, m, k, u, bias)
    y = K.dense(x, w, b, act, **params)
    want = R.dense(x.astype(np.float64), w.astype(np.float64),
                   None if b is None else b.astype(np.float64), act, **params)
    # the GEMM's float32 rounding (~sqrt(k) ulp of the dot products) dominates
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=2e-6 * np.sqrt(k))
    # the fused pass of apply() over the bias-added GEMM of the linear call: the same bits of
    # the GEMM on fastnn's sgemm (any split gives them); on BLAS (the portable flavour) softmax
    # splits rows and linear splits columns, which BLAS may round differently (~sqrt(k) ulp)
    z = K.dense(x, w, b)
    atol = 1e-6 if K._own(m, k, u) else 2e-6 * np.sqrt(k)
    np.testing.assert_allclose(y, A.apply(act, z, **params), rtol=1e-6, atol=atol)


@settings(max_examples=20)
@given(m=st.integers(1, 40), k=st.integers(1, 40), u=st.integers(1, 40), seed=st.integers(0, 2**31),
       act=st.sampled_from(["linear", "relu", "softmax", "tanh"]))
def test_dense_hypothesis(m, k, u, seed, act):
    x, w, b = operands(np.random.default_rng(seed), m, k, u)
    want = R.dense(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), act)
    np.testing.assert_allclose(K.dense(x, w, b, act), want, rtol=1e-5, atol=1e-5)
    dy = f32(np.random.default_rng(seed + 1).standard_normal((m, u)))
    for got, ref in zip(K.dense_backward(x, w, dy), R.dense_backward(x.astype(np.float64),
                                                                     w.astype(np.float64), dy)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_dense_backward_central_differences(rng):
    x, w, b = operands(rng, 4, 5, 3)
    dy = rng.standard_normal((4, 3))
    dx, dw, db = K.dense_backward(x, w, f32(dy))
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    f = lambda x_, w_, b_: np.sum(dy * (x_ @ w_ + b_))
    h = 1e-6
    for got, arg in ((dx, 0), (dw, 1), (db, 2)):
        args = [x64, w64, b64]
        num = np.zeros_like(args[arg])
        for i in np.ndindex(num.shape):
            e = np.zeros_like(num)
            e[i] = h
            hi = list(args)
            lo = list(args)
            hi[arg] = args[arg] + e
            lo[arg] = args[arg] - e
            num[i] = (f(*hi) - f(*lo)) / (2 * h)
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-5)


def test_dense_with_activation_grad_chain(rng):
    # the layer's backward: dz = activation.grad, then dense_backward
    x, w, b = operands(rng, 6, 4, 5)
    y = K.dense(x, w, b, "tanh")
    dy = f32(rng.standard_normal(y.shape))
    dz = A.grad("tanh", y, y, dy)
    dx, dw, db = K.dense_backward(x, w, dz)
    x64 = x.astype(np.float64)
    loss = lambda w_: np.sum(dy * np.tanh(x64 @ w_ + b))
    num = np.zeros(w.shape)
    for i in np.ndindex(w.shape):
        e = np.zeros(w.shape)
        e[i] = 1e-6
        num[i] = (loss(w + e) - loss(w - e)) / 2e-6
    np.testing.assert_allclose(dw, num, rtol=1e-4, atol=1e-5)


def test_out_buffers_and_need_dx(rng):
    x, w, b = operands(rng, 8, 6, 5)
    out = np.empty((8, 5), np.float32)
    assert K.dense(x, w, b, "relu", out=out) is out
    dy = f32(rng.standard_normal((8, 5)))
    arena = np.zeros(6 * 5 + 5 + 3, np.float32)                # gradient arena views
    dw, db = arena[:30].reshape(6, 5), arena[30:35]
    dx = np.empty_like(x)
    rdx, rdw, rdb = K.dense_backward(x, w, dy, dx=dx, dw=dw, db=db)
    assert rdx is dx and rdw is dw and rdb is db
    assert np.shares_memory(rdw, arena) and np.shares_memory(rdb, arena)
    np.testing.assert_allclose(dw, x.T @ dy, rtol=1e-5)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5)
    none, dw2, _ = K.dense_backward(x, w, dy, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)
    ro = [a.copy() for a in (x, w, b)]
    for a in ro:
        a.flags.writeable = False
    np.testing.assert_array_equal(K.dense(*ro, "relu"), out)


def test_extreme_pre_activations():
    x = np.array([[1.0]], np.float32)
    w = np.array([[1e4, -1e4, 0.0]], np.float32)
    y = K.dense(x, w, np.zeros(3, np.float32), "softmax")
    np.testing.assert_array_equal(y, [[1, 0, 0]])
    assert np.isfinite(K.dense(x, w, None, "log_softmax")).all()
    np.testing.assert_array_equal(K.dense(x, w, None, "sigmoid"), [[1, 0, 0.5]])


def test_validation_messages(rng):
    x, w, b = operands(rng, 4, 3, 2)
    with pytest.raises(ValueError, match=r"w must have shape \(3, units\)"):
        K.dense(x, w.T.copy())
    with pytest.raises(ValueError, match=r"b must have shape \(2\)"):
        K.dense(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        K.dense(x[None], w)
    with pytest.raises(TypeError, match="dtype float32"):
        K.dense(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        K.dense(x, w, b, "relu7")
    with pytest.raises(ValueError, match="unknown parameter"):
        K.dense(x, w, b, "relu", alpha=2.0)
    with pytest.raises(ValueError, match="acts across the units"):
        K.dense(x, w, b, "softmax", axis=0)
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\)"):
        K.dense(x, w, b, out=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="out must not share memory with x"):
        buf = np.zeros((4, 3), np.float32)
        K.dense(buf, np.eye(3, 3, dtype=np.float32)[:, :3].copy(), out=buf)
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2\)"):
        K.dense_backward(x, w, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"dw must have shape \(3, 2\)"):
        K.dense_backward(x, w, np.zeros((4, 2), np.float32), dw=np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="need_dx must be True or False"):
        K.dense_backward(x, w, np.zeros((4, 2), np.float32), need_dx="no")
