"""fastnn.kernels.activation against the float64 NumPy reference, finite differences and Keras.

Tolerances (float32 kernel vs float64 truth): |k - r| <= RTOL |r| + ATOL, RTOL = 8 ulp
(1e-6), ATOL = 1e-7 for values of order one, so a formula that cancels where the true value
is tiny (hard_sigmoid near -3, y-based derivatives near saturation) passes on its absolute
error while any real mistake fails.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastnn.kernels import activation as K
from fastnn.reference import activation as R

RTOL, ATOL = 1e-6, 1e-7
GRAD_RTOL, GRAD_ATOL = 2e-6, 3e-7       # derivative formulas from y lose one more rounding

ELEMENTWISE = [n for n in K.NAMES if n not in ("softmax", "log_softmax")]
# every elementwise name with its defaults, plus parameter settings that change the formula
CASES = [(n, {}) for n in ELEMENTWISE] + [
    ("relu", {"negative_slope": 0.1}),
    ("relu", {"max_value": 2.5}),
    ("relu", {"threshold": 0.5}),
    ("relu", {"threshold": -1.0}),
    ("relu", {"negative_slope": 0.3, "max_value": 4.0, "threshold": 1.5}),
    ("relu", {"max_value": 6.0}),
    ("leaky_relu", {"negative_slope": 0.01}),
    ("elu", {"alpha": 0.5}),
    ("gelu", {"approximate": True}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" if p else n for n, p in CASES]


def assert_close(got, want, rtol=RTOL, atol=ATOL, scale=1.0):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    err = np.abs(got[fin] - want[fin])
    # (+ 1e-37: subnormal float32 results carry fewer digits)
    tol = rtol * np.abs(want[fin]) + atol * np.broadcast_to(scale, want.shape)[fin] + 1e-37
    bad = err > tol
    if bad.any():
        i = np.argmax(err - tol)
        raise AssertionError(f"{bad.sum()} of {bad.size} values off; worst: got {got[fin][i]!r}, "
                             f"want {want[fin][i]!r} (err {err[i]:.3g}, tol {tol[i]:.3g})")


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def check_forward_and_grad(name, params, x, dy):
    y = K.apply(name, x, **params)
    assert y.dtype == np.float32 and y.shape == x.shape
    x64 = x.astype(np.float64)
    assert_close(y, R.apply(name, x64, **params))
    dx = K.grad(name, x, y, dy, **params)
    want = R.grad(name, x64, R.apply(name, x64, **params), dy.astype(np.float64), **params)
    assert_close(dx, want, GRAD_RTOL, GRAD_ATOL, scale=np.abs(dy))


# ------------------------------------------------------------------------------ elementwise

@pytest.mark.parametrize("name,params", CASES, ids=IDS)
@settings(max_examples=15)
@given(data=st.data())
def test_matches_reference_any_shape(name, params, data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=9))
    elems = st.floats(-30, 30, width=32)
    x = data.draw(hnp.arrays(np.float32, shape, elements=elems))
    dy = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-3, 3, width=32)))
    check_forward_and_grad(name, params, x, dy)


@pytest.mark.parametrize("n", [1, 7, 1000, (1 << 16) + 13, 300_001])
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_matches_reference_serial_and_parallel_sizes(name, params, n, rng):
    # sizes on both sides of PARALLEL_MIN and not a multiple of the chunk or the vector width
    x = f32(rng.standard_normal(n) * 5)
    dy = f32(rng.standard_normal(n))
    check_forward_and_grad(name, params, x, dy)


def _away_from_kinks(name, params, x):
    kinks = {"relu": [0.0, params.get("threshold", 0.0)] + ([params["max_value"]] if params.get("max_value") is not None else []),
             "relu6": [0.0, 6.0], "leaky_relu": [0.0], "elu": [0.0], "selu": [0.0],
             "hard_sigmoid": [-3.0, 3.0], "hard_silu": [-3.0, 3.0], "hard_swish": [-3.0, 3.0]}
    for k in kinks.get(name, []):
        x = np.where(np.abs(x - k) < 1e-2, x + 0.05, x)
    return x


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_grad_matches_central_differences(name, params, rng):
    x = f32(_away_from_kinks(name, params, rng.uniform(-6, 6, 400)))
    dy = f32(rng.standard_normal(400))
    dx = K.grad(name, x, K.apply(name, x, **params), dy, **params)
    x64 = x.astype(np.float64)
    h = 1e-6 * np.maximum(1.0, np.abs(x64))
    num = (R.apply(name, x64 + h, **params) - R.apply(name, x64 - h, **params)) / (2 * h)
    assert_close(dx, num * dy, 1e-5, 1e-6, scale=np.abs(dy))


EXTREMES = np.array([0.0, -0.0, 1e4, -1e4, 88.0, -88.0, 88.5, -87.5, 1e-6, -1e-6, 1e-30, 3.0, -3.0,
                     6.0, 20.0, -20.0, np.inf, -np.inf], np.float32)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_extreme_values(name, params):
    x = EXTREMES
    y = K.apply(name, x, **params)
    with np.errstate(all="ignore"):
        want = R.apply(name, x.astype(np.float64), **params).astype(np.float32)
    # the float32 result is the float64 truth rounded (inf where it overflows float32)
    assert_close(y, want)
    dy = np.ones_like(x)
    dx = K.grad(name, x[:-2], y[:-2], dy[:-2], **params)      # inf inputs: forward only
    assert np.isfinite(dx).all() or name == "exponential"


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_nan_propagates(name, params):
    x = np.array([np.nan, 1.0, -1.0, np.nan], np.float32)
    y = K.apply(name, x, **params)
    assert np.isnan(y[[0, 3]]).all() and np.isfinite(y[[1, 2]]).all()
    dx = K.grad(name, x, y, np.ones_like(x), **params)
    if name != "linear":
        assert np.isnan(dx[[0, 3]]).all()
    assert np.isfinite(dx[[1, 2]]).all()
    dx = K.grad(name, x[1:3], y[1:3], np.array([np.nan, 1.0], np.float32), **params)
    assert np.isnan(dx[0])


def test_keras_relu_semantics():
    # the docstring examples of keras.activations.relu
    x = np.array([-10, -5, 0.0, 5, 10], np.float32)
    np.testing.assert_array_equal(K.apply("relu", x), [0, 0, 0, 5, 10])
    np.testing.assert_array_equal(K.apply("relu", x, negative_slope=0.5), [-5, -2.5, 0, 5, 10])
    np.testing.assert_array_equal(K.apply("relu", x, max_value=5.0), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(K.apply("relu", x, threshold=5.0), [0, 0, 0, 0, 10])
    np.testing.assert_array_equal(K.apply("relu6", np.array([-1, 3, 7], np.float32)), [0, 3, 6])
    np.testing.assert_array_equal(K.apply("leaky_relu", np.array([-1, 2], np.float32)),
                                  np.array([-0.2, 2], np.float32))
    # Keras 3 hard_sigmoid is relu6(x + 3) / 6, not Keras 2's clip(0.2 x + 0.5)
    np.testing.assert_allclose(K.apply("hard_sigmoid", np.array([-3, -2.5, 0, 1.5, 3], np.float32)),
                               [0, 1 / 12, 0.5, 0.75, 1], rtol=1e-6)


def test_softplus_and_sigmoid_are_stable():
    x = np.array([-1e4, -100, 100, 1e4], np.float32)
    # softplus(-100) = 3.7e-44 is subnormal in float32; exp flushes such results to 0
    assert_close(K.apply("softplus", x), [0, 3.720076e-44, 100, 1e4])
    np.testing.assert_array_equal(K.apply("sigmoid", x), [0, 0, 1, 1])
    np.testing.assert_array_equal(K.apply("tanh", x), [-1, -1, 1, 1])


# ---------------------------------------------------------------------------------- softmax

SOFTMAX_SHAPES = [(7,), (3, 5), (4, 1), (1, 6), (2, 3, 4), (3, 200, 2), (2, 3, 4, 5), (2, 1, 3, 130)]


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_softmax_every_axis(name, shape, rng):
    x = f32(rng.standard_normal(shape) * 4)
    dy = f32(rng.standard_normal(shape))
    for axis in list(range(-len(shape), len(shape))):
        y = K.apply(name, x, axis=axis)
        x64 = x.astype(np.float64)
        assert_close(y, R.apply(name, x64, axis=axis), atol=3e-7)
        dx = K.grad(name, x, y, dy, axis=axis)
        want = R.grad(name, x64, None, dy.astype(np.float64), axis=axis)
        assert_close(dx, want, 2e-6, 1e-6, scale=np.abs(dy).max())


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((64, 3000), -1), ((300, 400), 0), ((40, 50, 60), 1)])
def test_softmax_large_parallel(name, shape, axis, rng):
    x = f32(rng.standard_normal(shape) * 3)
    y = K.apply(name, x, axis=axis)
    assert_close(y, R.apply(name, x.astype(np.float64), axis=axis), atol=3e-7)


@settings(max_examples=25)
@given(data=st.data())
def test_softmax_hypothesis(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=8))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-50, 50, width=32)))
    name = data.draw(st.sampled_from(["softmax", "log_softmax"]))
    y = K.apply(name, x, axis=axis)
    assert_close(y, R.apply(name, x.astype(np.float64), axis=axis), atol=3e-7)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_extreme_logits(axis):
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [88.0, -88.0, 0.0]], np.float32)
    y = K.apply("softmax", x, axis=axis)
    ly = K.apply("log_softmax", x, axis=axis)
    assert np.isfinite(y).all() and np.isfinite(ly).all()
    assert_close(y, R.apply("softmax", x.astype(np.float64), axis=axis))
    assert_close(ly, R.apply("log_softmax", x.astype(np.float64), axis=axis))
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-6)


def test_softmax_grad_central_differences(rng):
    x = rng.standard_normal((3, 4, 5))
    dy = rng.standard_normal((3, 4, 5))
    for name in ("softmax", "log_softmax"):
        for axis in (0, 1, 2):
            y = K.apply(name, f32(x), axis=axis)
            dx = K.grad(name, f32(x), y, f32(dy), axis=axis)
            num = np.zeros_like(x)
            h = 1e-6
            for i in np.ndindex(x.shape):
                e = np.zeros_like(x)
                e[i] = h
                num[i] = (np.sum(dy * R.apply(name, f32(x).astype(np.float64) + e, axis=axis))
                          - np.sum(dy * R.apply(name, f32(x).astype(np.float64) - e, axis=axis))) / (2 * h)
            assert_close(dx, num, 1e-5, 1e-6)


def test_softmax_nan_row():
    x = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]], np.float32)
    y = K.apply("softmax", x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    assert np.isnan(K.apply("log_softmax", x)[0]).all()


# ---------------------------------------------------------------------- out=, in place, views

@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "softmax", "log_softmax", "sigmoid"])
def test_out_in_place_and_read_only(name, rng):
    x = f32(rng.standard_normal((64, 33)))
    want = K.apply(name, x)
    out = np.empty_like(x)
    assert K.apply(name, x, out=out) is out
    np.testing.assert_array_equal(out, want)
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(K.apply(name, ro), want)
    inplace = x.copy()
    assert K.apply(name, inplace, out=inplace) is inplace
    np.testing.assert_allclose(inplace, want, rtol=1e-6, atol=1e-7)
    dy = f32(rng.standard_normal(x.shape))
    gwant = K.grad(name, x, want, dy)
    dx = np.empty_like(x)
    assert np.shares_memory(K.grad(name, x, want, dy, out=dx), dx)
    np.testing.assert_array_equal(dx, gwant)
    dyc = dy.copy()
    assert K.grad(name, x, want, dyc, out=dyc) is dyc           # dx over dy in place
    np.testing.assert_allclose(dyc, gwant, rtol=1e-6, atol=1e-7)


def test_empty_and_scalar_arrays():
    assert K.apply("relu", np.zeros((0, 5), np.float32)).shape == (0, 5)
    assert K.apply("softmax", np.zeros((0, 5), np.float32)).shape == (0, 5)
    assert K.apply("tanh", np.array(0.5, np.float32)).shape == ()


# ------------------------------------------------------------------------------ validation

def test_validation_messages():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation 'relux'.*Valid names: linear, relu"):
        K.apply("relux", x)
    with pytest.raises(TypeError, match="activation name"):
        K.apply(None, x)
    with pytest.raises(ValueError, match="unknown parameter.*alpha.*valid parameters: negative_slope, max_value, threshold"):
        K.apply("relu", x, alpha=0.1)
    with pytest.raises(ValueError, match="'tanh' got unknown parameter.*valid parameters: none"):
        K.apply("tanh", x, axis=0)
    with pytest.raises(TypeError, match="dtype float32"):
        K.apply("relu", x.astype(np.float64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.apply("relu", [1.0, 2.0])
    with pytest.raises(ValueError, match="C-contiguous"):
        K.apply("relu", np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="out must have shape"):
        K.apply("relu", x, out=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros((2, 3), np.float32)
        ro.flags.writeable = False
        K.apply("relu", x, out=ro)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        K.apply("softmax", x, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        K.apply("softmax", x, axis=1.0)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        K.apply("softmax", np.zeros((), np.float32))
    with pytest.raises(TypeError, match="approximate must be True or False"):
        K.apply("gelu", x, approximate="yes")
    with pytest.raises(ValueError, match="max_value must be a finite number"):
        K.apply("relu", x, max_value=-1.0)
    with pytest.raises(ValueError, match="finite number"):
        K.apply("elu", x, alpha=float("nan"))
    with pytest.raises(ValueError, match="y must have shape"):
        K.grad("relu", x, np.zeros((3, 2), np.float32), x)
    with pytest.raises(ValueError, match="dy must have shape"):
        K.grad("relu", x, x, np.zeros(6, np.float32))
    big = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="overlaps x partially"):
        K.apply("relu", big[:8], out=big[2:])


# ----------------------------------------------------------------------------------- Keras


@pytest.mark.keras
@pytest.mark.parametrize("name,params", CASES + [("softmax", {"axis": 0}), ("softmax", {}),
                                                 ("log_softmax", {"axis": 1}), ("log_softmax", {})],
                         ids=IDS + ["softmax-axis=0", "softmax", "log_softmax-axis=1", "log_softmax"])
def test_matches_keras(keras, name, params, rng):
    x = f32(rng.standard_normal((64, 50)) * 3)
    x[0, :6] = [0.0, 3.0, -3.0, 6.0, 20.0, -20.0]
    fn = getattr(keras.activations, name)
    want = keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(x), **params))
    np.testing.assert_allclose(K.apply(name, x, **params), want, rtol=1e-5, atol=1e-6)


def test_names_and_defaults_match_the_reference():
    assert K.NAMES == R.NAMES
    assert K.PARAMS == R.PARAMS
