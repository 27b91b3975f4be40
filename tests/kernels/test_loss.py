"""fastnn.kernels.loss against the NumPy reference, closed forms, finite differences and Keras."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastnn.kernels import loss as K
from fastnn.reference import loss as R

LN_EPS = -np.log(np.float32(1e-7))            # 16.118095...: the clipped -log(1e-7)


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def problem(rng, n, k, scale=3.0):
    z = f32(rng.standard_normal((n, k)) * scale)
    labels = rng.integers(0, k, n)
    return z, labels, np.eye(k, dtype=np.float32)[labels]


FLAGS = [(fl, ls) for fl in (True, False) for ls in (0.0, 0.1)]


# ------------------------------------------------------------------------ softmax crossentropy

@settings(max_examples=40)
@given(n=st.integers(1, 17), k=st.integers(1, 40), seed=st.integers(0, 2**31),
       from_logits=st.booleans(), sparse=st.booleans(), ls=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       spread=st.sampled_from([0.1, 3.0, 30.0]))
def test_softmax_ce_matches_reference(n, k, seed, from_logits, sparse, ls, spread):
    rng = np.random.default_rng(seed)
    z, labels, onehot = problem(rng, n, k, spread)
    y = labels if sparse else onehot
    kw = dict(sparse=sparse, from_logits=from_logits, label_smoothing=ls)
    loss, p = K.softmax_crossentropy(z, y, **kw)
    want, pw = R.softmax_crossentropy(z.astype(np.float64), y, **kw)
    np.testing.assert_allclose(p, pw, rtol=1e-6, atol=1e-7)
    if from_logits:
        np.testing.assert_allclose(loss, want, rtol=2e-6, atol=1e-6)
    else:
        # Keras clips and logs in float32: compare with the reference run in float32
        want32, _ = R.softmax_crossentropy(z, y, **kw)
        np.testing.assert_allclose(loss, want32, rtol=2e-6, atol=2e-6)
    scale = rng.uniform(0.1, 2, n)
    dz = K.softmax_crossentropy_backward(p, y, scale=scale, **kw)
    dw = R.softmax_crossentropy_backward(p.astype(np.float64), y, scale=scale, **kw)
    np.testing.assert_allclose(dz, dw, rtol=1e-5, atol=2e-7)


def _numeric_grad(f, z, h=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[i] = h
        g[i] = (f(z + e) - f(z - e)) / (2 * h)
    return g


@pytest.mark.parametrize("from_logits,ls", FLAGS)
@pytest.mark.parametrize("sparse", [True, False])
def test_softmax_ce_grad_central_differences(from_logits, ls, sparse, rng):
    n, k = 5, 7
    z, labels, onehot = problem(rng, n, k)
    z[0] = [25.0, 0, -25, 1, 2, 3, -30]       # some probabilities below 1e-7: clipped
    z[1, labels[1]] = 40.0                      # the label's probability above 1 - 1e-7
    y = labels if sparse else onehot
    kw = dict(sparse=sparse, from_logits=from_logits, label_smoothing=ls)
    scale = rng.uniform(0.5, 2, n)
    _, p = K.softmax_crossentropy(z, y, **kw)
    dz = K.softmax_crossentropy_backward(p, y, scale=scale, **kw)
    num = _numeric_grad(lambda v: np.sum(scale * R.softmax_crossentropy(v, y, **kw)[0]),
                        z.astype(np.float64))
    np.testing.assert_allclose(dz, num, rtol=1e-4, atol=1e-6)


def test_softmax_ce_closed_forms():
    z = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]], np.float32)
    loss, p = K.softmax_crossentropy(z, np.array([0, 1, 1]), sparse=True)
    np.testing.assert_allclose(loss, [np.log(2), np.log1p(np.exp(-1.0)), np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(p, [[0.5, 0.5], [1 / (1 + np.e), 1 / (1 + 1 / np.e)], [0.5, 0.5]],
                               rtol=1e-6)
    # uniform logits: -log(1/K) whatever the label or smoothing
    z = np.zeros((3, 10), np.float32)
    for ls in (0.0, 0.2):
        loss, _ = K.softmax_crossentropy(z, np.array([0, 5, 9]), sparse=True, label_smoothing=ls)
        np.testing.assert_allclose(loss, np.log(10), rtol=1e-6)
    # gradient (p - y) * scale with no clip active
    p = np.array([[0.2, 0.3, 0.5]], np.float32)
    dz = K.softmax_crossentropy_backward(p, np.array([2]), sparse=True, scale=0.5)
    np.testing.assert_allclose(dz, [[0.1, 0.15, -0.25]], rtol=1e-6)
    dz = K.softmax_crossentropy_backward(p, np.array([2]), sparse=True, label_smoothing=0.3)
    np.testing.assert_allclose(dz, p - (np.eye(3)[2] * 0.7 + 0.1), rtol=1e-6)


def test_softmax_ce_saturation_and_clipping():
    z = np.array([[1e4, 0.0]], np.float32)
    loss, p = K.softmax_crossentropy(z, np.array([1]), sparse=True, from_logits=False)
    np.testing.assert_allclose(loss, [16.118095], rtol=1e-6)       # -ln(1e-7), as Keras
    np.testing.assert_allclose(loss, [LN_EPS], rtol=1e-6)
    loss, _ = K.softmax_crossentropy(z, np.array([0]), sparse=True, from_logits=False)
    np.testing.assert_allclose(loss, [-np.log(np.float32(1 - 1e-7))], rtol=1e-5)
    loss, _ = K.softmax_crossentropy(z, np.array([1]), sparse=True, from_logits=True)
    np.testing.assert_allclose(loss, [1e4], rtol=1e-6)
    # both components clipped: no gradient flows; from logits the gradient is p - y
    dz = K.softmax_crossentropy_backward(p, np.array([1]), sparse=True, from_logits=False)
    np.testing.assert_array_equal(dz, [[0.0, 0.0]])
    dz = K.softmax_crossentropy_backward(p, np.array([1]), sparse=True, from_logits=True)
    np.testing.assert_array_equal(dz, [[1.0, -1.0]])
    # extreme logits stay finite everywhere
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [88.0, -88.0, 89.0]], np.float32)
    for fl in (True, False):
        loss, p = K.softmax_crossentropy(z, np.array([1, 0, 2]), sparse=True, from_logits=fl)
        assert np.isfinite(loss).all() and np.isfinite(p).all()
        want = R.softmax_crossentropy(z.astype(np.float64) if fl else z, np.array([1, 0, 2]),
                                      sparse=True, from_logits=fl)[0]
        np.testing.assert_allclose(loss, want, rtol=1e-6)


@pytest.mark.parametrize("from_logits,ls", FLAGS)
def test_sparse_and_one_hot_agree(from_logits, ls, rng):
    z, labels, onehot = problem(rng, 300, 13)
    kw = dict(from_logits=from_logits, label_smoothing=ls)
    ls_, ps = K.softmax_crossentropy(z, labels, sparse=True, **kw)
    ld, pd = K.softmax_crossentropy(z, onehot, **kw)
    np.testing.assert_allclose(ls_, ld, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ps, pd)
    np.testing.assert_allclose(K.softmax_crossentropy_backward(ps, labels, sparse=True, **kw),
                               K.softmax_crossentropy_backward(pd, onehot, **kw), rtol=1e-6, atol=5e-7)
    # (N, 1) integer labels, as Keras accepts
    np.testing.assert_array_equal(K.softmax_crossentropy(z, labels[:, None], sparse=True, **kw)[0], ls_)


def test_soft_labels_and_nd_logits(rng):
    z = f32(rng.standard_normal((4, 3, 6)))
    y = rng.dirichlet(np.ones(6), (4, 3)).astype(np.float64)       # float64 labels convert
    loss, p = K.softmax_crossentropy(z, y)
    assert loss.shape == (4, 3) and p.shape == z.shape
    np.testing.assert_allclose(loss, R.softmax_crossentropy(z.astype(np.float64), y)[0], rtol=1e-6)
    # labels that do not sum to 1: the gradient of sum(y) * lse - y.z
    y2 = 2 * y
    dz = K.softmax_crossentropy_backward(p, y2)
    np.testing.assert_allclose(dz, R.softmax_crossentropy_backward(p.astype(np.float64), y2),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n,k", [(1, 1000), (4096, 10), (700, 1000)])
def test_softmax_ce_large_parallel(n, k, rng):
    z, labels, onehot = problem(rng, n, k)
    for fl in (True, False):
        loss, p = K.softmax_crossentropy(z, labels, sparse=True, from_logits=fl)
        want = R.softmax_crossentropy(z.astype(np.float64) if fl else z, labels, sparse=True,
                                      from_logits=fl)[0]
        np.testing.assert_allclose(loss, want, rtol=2e-6, atol=2e-6)
        dz = K.softmax_crossentropy_backward(p, labels, sparse=True, from_logits=fl, scale=1 / n)
        np.testing.assert_allclose(dz, R.softmax_crossentropy_backward(
            p.astype(np.float64), labels, sparse=True, from_logits=fl, scale=1 / n), rtol=1e-5, atol=1e-9)


def test_softmax_ce_nan_propagates():
    z = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], np.float32)
    for fl in (True, False):
        loss, p = K.softmax_crossentropy(z, np.array([1, 2]), sparse=True, from_logits=fl)
        assert np.isnan(loss[0]) and np.isfinite(loss[1])
        dz = K.softmax_crossentropy_backward(p, np.array([1, 2]), sparse=True, from_logits=fl)
        assert np.isnan(dz[0]).all() and np.isfinite(dz[1]).all()


# --------------------------------------------------------------------- binary crossentropy

@settings(max_examples=40)
@given(n=st.integers(1, 17), k=st.integers(1, 20), seed=st.integers(0, 2**31),
       from_logits=st.booleans(), ls=st.sampled_from([0.0, 0.1, 1.0]),
       spread=st.sampled_from([0.1, 3.0, 30.0]), soft=st.booleans())
def test_bce_matches_reference(n, k, seed, from_logits, ls, spread, soft):
    rng = np.random.default_rng(seed)
    z = f32(rng.standard_normal((n, k)) * spread)
    y = f32(rng.uniform(0, 1, (n, k)) if soft else rng.integers(0, 2, (n, k)))
    kw = dict(from_logits=from_logits, label_smoothing=ls)
    loss, p = K.sigmoid_binary_crossentropy(z, y, **kw)
    # (+ the smallest normal float32: a subnormal sigmoid, z near -87.4, may flush to 0)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-6,
                               atol=np.finfo(np.float32).tiny)
    if from_logits:
        want = R.sigmoid_binary_crossentropy(z.astype(np.float64), y, **kw)[0]
        # float32 terms of size ~|z| cancel in a row's mean (soft labels): the error scales with
        # the row's largest |z|, not with the mean (measured <= 1.02 eps32 (max|z| + 1) over 9000
        # random cases in the portable flavour; hypothesis found 1.9e-5 relative at a mean of 0.097)
        bound = 3 * np.finfo(np.float32).eps * (np.abs(z.astype(np.float64)).max(axis=1) + 1)
        err = np.abs(loss - want)
        assert np.all(err <= bound + 2e-6 * np.abs(want)), f"worst error {(err / bound).max():.2f} x the bound"
    else:
        want = R.sigmoid_binary_crossentropy(z, y, **kw)[0]          # float32, as Keras
        np.testing.assert_allclose(loss, want, rtol=1e-5, atol=2e-6)
    scale = rng.uniform(0.1, 2, n)
    dz = K.sigmoid_binary_crossentropy_backward(p, y, scale=scale, **kw)
    dw = R.sigmoid_binary_crossentropy_backward(p, y, scale=scale, **kw)
    # an element that cancels keeps the rounding of its O(max) neighbours: atol a few eps32 of
    # the largest (measured: at rtol 1e-5, atol <= 0.81 eps32 max|dw| over 4000 random cases;
    # hypothesis found 2.3e-8 at max|dw| 0.23, over the atol of 1e-8 this had)
    np.testing.assert_allclose(dz, dw, rtol=1e-5, atol=4 * np.finfo(np.float32).eps * np.abs(dw).max(initial=0))


@pytest.mark.parametrize("from_logits,ls", FLAGS)
def test_bce_grad_central_differences(from_logits, ls, rng):
    z = f32(rng.standard_normal((4, 6)) * 3)
    z[0, :3] = [20.0, -20.0, 0.5]                # saturated: clipped when from_logits=False
    y = f32(rng.integers(0, 2, (4, 6)))
    kw = dict(from_logits=from_logits, label_smoothing=ls)
    scale = rng.uniform(0.5, 2, 4)
    _, p = K.sigmoid_binary_crossentropy(z, y, **kw)
    dz = K.sigmoid_binary_crossentropy_backward(p, y, scale=scale, **kw)
    num = _numeric_grad(lambda v: np.sum(scale * R.sigmoid_binary_crossentropy(v, y, **kw)[0]),
                        z.astype(np.float64))
    np.testing.assert_allclose(dz, num, rtol=1e-4, atol=1e-7)


def test_bce_extremes_and_closed_forms():
    z = np.array([[1e4, -1e4, 0.0, 1e4]], np.float32)
    y = np.array([[0.0, 1.0, 1.0, 1.0]], np.float32)
    loss, p = K.sigmoid_binary_crossentropy(z, y)
    np.testing.assert_allclose(loss, [(1e4 + 1e4 + np.log(2) + 0) / 4], rtol=1e-6)
    np.testing.assert_array_equal(p, [[1, 0, 0.5, 1]])
    loss, _ = K.sigmoid_binary_crossentropy(z, y, from_logits=False)
    clip_hi = -np.log(1 - np.float32(1 - 1e-7))             # Keras: log(1 - clip(p)) in float32
    np.testing.assert_allclose(loss, [(clip_hi + LN_EPS + np.log(2) + 0) / 4], rtol=1e-5)
    # (N,) labels for (N, 1) outputs
    l1, _ = K.sigmoid_binary_crossentropy(np.array([[0.0], [2.0]], np.float32), np.array([1, 0]))
    np.testing.assert_allclose(l1, [np.log(2), 2 + np.log1p(np.exp(-2))], rtol=1e-6)
    dz = K.sigmoid_binary_crossentropy_backward(p, y, scale=2.0)
    np.testing.assert_allclose(dz, 2.0 / 4 * (p - y), rtol=1e-6)
    dz = K.sigmoid_binary_crossentropy_backward(p, y, from_logits=False)
    np.testing.assert_allclose(dz, [[0, 0, -0.125, 0]], rtol=1e-6)     # clipped: no gradient
    nan = K.sigmoid_binary_crossentropy(np.array([[np.nan, 0.0]], np.float32), np.ones((1, 2)))[0]
    assert np.isnan(nan).all()


# ------------------------------------------------------------------------- buffers, validation

def test_out_buffers_and_in_place(rng):
    z, labels, _ = problem(rng, 8, 5)
    probs, out = np.empty_like(z), np.empty(8, np.float32)
    loss, p = K.softmax_crossentropy(z, labels, sparse=True, probs=probs, out=out)
    assert loss is out and p is probs
    want = K.softmax_crossentropy_backward(probs, labels, sparse=True, scale=0.25)
    dz = np.empty_like(z)
    assert K.softmax_crossentropy_backward(probs, labels, sparse=True, scale=0.25, dz=dz) is dz
    got = K.softmax_crossentropy_backward(probs, labels, sparse=True, scale=0.25, dz=probs)
    assert got is probs
    np.testing.assert_array_equal(got, want)
    y = f32(rng.integers(0, 2, (8, 5)))
    loss, p = K.sigmoid_binary_crossentropy(z, y, probs=probs, out=out)
    assert loss is out and p is probs
    want = K.sigmoid_binary_crossentropy_backward(p, y)
    assert K.sigmoid_binary_crossentropy_backward(p, y, dz=p) is p
    np.testing.assert_array_equal(p, want)
    ro = z.copy()
    ro.flags.writeable = False
    K.softmax_crossentropy(ro, labels, sparse=True)       # read-only inputs are fine


def test_validation_messages():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"sparse label 4 at index \(1,\) is out of range.*\[0, 3\]"):
        K.softmax_crossentropy(z, np.array([0, 4, 1]), sparse=True)
    with pytest.raises(ValueError, match=r"sparse label -1 at index \(2,\)"):
        K.softmax_crossentropy(z, np.array([0, 1, -1]), sparse=True)
    with pytest.raises(TypeError, match="integer dtype"):
        K.softmax_crossentropy(z, np.array([0.0, 1.0, 2.0]), sparse=True)
    with pytest.raises(ValueError, match=r"sparse labels must have shape \(3,\)"):
        K.softmax_crossentropy(z, np.array([0, 1]), sparse=True)
    with pytest.raises(ValueError, match="pass sparse=True"):
        K.softmax_crossentropy(z, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="real numbers"):
        K.softmax_crossentropy(z, np.full((3, 4), "a"))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.softmax_crossentropy(z, [0, 1, 2], sparse=True)
    with pytest.raises(ValueError, match=r"z must have shape \(N, K\)"):
        K.softmax_crossentropy(np.zeros(4, np.float32), np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="dtype float32"):
        K.softmax_crossentropy(z.astype(np.float64), np.array([0, 1, 2]), sparse=True)
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0.0, 1.0\]"):
        K.softmax_crossentropy(z, np.array([0, 1, 2]), sparse=True, label_smoothing=1.5)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        K.softmax_crossentropy(z, np.array([0, 1, 2]), sparse=True, from_logits=None)
    with pytest.raises(ValueError, match=r"probs must have shape \(3, 4\)"):
        K.softmax_crossentropy(z, np.array([0, 1, 2]), sparse=True, probs=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="probs must not share memory with z"):
        K.softmax_crossentropy(z, np.array([0, 1, 2]), sparse=True, probs=z)
    with pytest.raises(ValueError, match=r"scale must be a number or have shape \(3,\)"):
        K.softmax_crossentropy_backward(z, np.array([0, 1, 2]), sparse=True, scale=np.ones(2))
    with pytest.raises(ValueError, match="scale must be a finite number"):
        K.softmax_crossentropy_backward(z, np.array([0, 1, 2]), sparse=True, scale=float("inf"))
    with pytest.raises(ValueError, match="dz must not share memory with probs"):
        big = np.zeros((4, 4), np.float32)
        K.softmax_crossentropy_backward(big[:3], np.array([0, 1, 2]), sparse=True, dz=big[1:])
    with pytest.raises(ValueError, match=r"y must have the logits' shape \(3, 4\)"):
        K.sigmoid_binary_crossentropy(z, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.sigmoid_binary_crossentropy(np.zeros((3, 8), np.float32)[:, ::2], np.zeros((3, 4)))


# ----------------------------------------------------------------------------------- Keras


@pytest.mark.keras
@pytest.mark.parametrize("from_logits,ls", FLAGS)
def test_matches_keras(keras, from_logits, ls, rng):
    conv = keras.ops.convert_to_numpy
    z, labels, onehot = problem(rng, 64, 10, 4.0)
    z[0, :2] = [40.0, -40.0]                     # saturated row: Keras's clip shows
    pred = z if from_logits else conv(keras.activations.softmax(z))
    want = conv(keras.losses.categorical_crossentropy(onehot, pred, from_logits=from_logits,
                                                      label_smoothing=ls))
    got = K.softmax_crossentropy(z, onehot, from_logits=from_logits, label_smoothing=ls)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if ls == 0.0:
        want = conv(keras.losses.sparse_categorical_crossentropy(labels, pred, from_logits=from_logits))
        got = K.softmax_crossentropy(z, labels, sparse=True, from_logits=from_logits)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    yb = f32(rng.integers(0, 2, z.shape))
    pred = z if from_logits else conv(keras.activations.sigmoid(z))
    want = conv(keras.losses.binary_crossentropy(yb, pred, from_logits=from_logits, label_smoothing=ls))
    got = K.sigmoid_binary_crossentropy(z, yb, from_logits=from_logits, label_smoothing=ls)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dz_must_not_overlap_scale():
    """dz is written while the per-sample scale is read: a dz over scale's memory is refused
    (found by the fuzzer: a dz that began one float into scale was accepted)."""
    probs = np.full((4, 3), 1 / 3, np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    buf = np.zeros(4 + 12, np.float32)
    scale, dz = buf[:4], buf[1:13].reshape(4, 3)
    scale[:] = 1.0
    for f in (lambda: K.softmax_crossentropy_backward(probs, y, scale=scale, dz=dz),
              lambda: K.sigmoid_binary_crossentropy_backward(probs, y, scale=scale, dz=dz)):
        with pytest.raises(ValueError, match="dz must not share memory with scale"):
            f()
