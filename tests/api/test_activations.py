"""fastnn.activations against Keras 3 (values), numerical derivatives (grad) and bad names."""
import os

import numpy as np
import pytest

import fastnn.activations as A

os.environ.setdefault("KERAS_BACKEND", "torch")


CASES = [  # (name, params)
    ("linear", {}), ("relu", {}), ("relu", {"negative_slope": 0.1}), ("relu", {"max_value": 1.5}),
    ("relu", {"threshold": 0.3}), ("relu", {"negative_slope": 0.2, "max_value": 2.0, "threshold": 0.5}),
    ("relu6", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.05}), ("elu", {}),
    ("elu", {"alpha": 0.5}), ("selu", {}), ("celu", {}), ("celu", {"alpha": 2.0}), ("gelu", {}),
    ("gelu", {"approximate": True}), ("sigmoid", {}), ("hard_sigmoid", {}), ("hard_silu", {}),
    ("hard_swish", {}), ("sparse_sigmoid", {}), ("tanh", {}), ("tanh_shrink", {}), ("hard_tanh", {}),
    ("softsign", {}), ("softplus", {}), ("log_sigmoid", {}), ("silu", {}), ("swish", {}),
    ("mish", {}), ("exponential", {}), ("softmax", {}), ("softmax", {"axis": 0}),
    ("log_softmax", {}), ("soft_shrink", {}), ("hard_shrink", {"threshold": 1.0}),
    ("sparse_plus", {}), ("squareplus", {}), ("squareplus", {"b": 1.0}),
    ("threshold", {"threshold": 0.2, "default_value": -1.0}), ("glu", {}), ("sparsemax", {}),
]


def _x(seed=0, shape=(6, 8)):
    x = np.random.default_rng(seed).normal(0, 2.5, shape).astype(np.float32)
    x[0, :4] = [-3.0, 3.0, 0.0, 6.0]  # breakpoints of hard_sigmoid / relu6 / relu
    return x


@pytest.mark.keras
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{p}" for n, p in CASES])
def test_matches_keras(keras, name, params):
    x = _x()
    want = keras.ops.convert_to_numpy(getattr(keras.activations, name)(x, **params))
    got = getattr(A, name)(x, **params)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


@pytest.mark.keras
def test_every_keras_activation_is_named_here(keras):
    from keras.src.activations import ALL_OBJECTS_DICT
    for name in ALL_OBJECTS_DICT:
        act = A.get(name)
        assert callable(act) and act.name in A._FUNCTIONS


# grad (float32) against central differences of the float64 function (h = 1e-5: error ~1e-10):
# measured |err| <= 2.5e-7 |num| + ATOL with ATOL = 4e-8, except tanh (4.5e-7, its derivative
# 1 - y^2 from the float32 y) and softmax (1.2e-7): rtol and each atol 2.5-4x that
GRAD_RTOL = 1e-6
GRAD_ATOL = {"tanh": 1.5e-6, "softmax": 4e-7}


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{p}" for n, p in CASES])
def test_grad_matches_central_differences(name, params):
    x = _x(1, (4, 6)).astype(np.float64)
    if name == "sparsemax":   # at the scale of _x most rows keep one entry: a zero Jacobian
        x *= 0.3
    # keep away from kinks, where the derivative is one-sided
    kinks = [0.0, 6.0, -3.0, 3.0, -1.0, 1.0, 0.3, 0.5, -0.5, 0.2, 1.5, 2.0, -2.0]
    for k in kinks:
        x[np.abs(x - k) < 2e-2] += 5e-2
    act = A.get(name).with_params(**params)
    y = act(x)
    dy = np.random.default_rng(2).normal(size=y.shape)
    dx = act.grad(x, y, dy)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    f = lambda z: float(np.sum(A._np_apply(name, z, params).astype(np.float64) * dy))
    h, num = 1e-5, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        num[i] = (f(x + e) - f(x - e)) / (2 * h)
    assert np.abs(num).max() > 0.1     # the check sees a gradient
    np.testing.assert_allclose(dx, num, rtol=GRAD_RTOL, atol=GRAD_ATOL.get(name, 1e-7))


def test_get_and_serialize_round_trip():
    assert A.get(None) is A.linear
    assert A.get("relu") is A.relu and A.relu.name == "relu" and A.relu.params == {}
    assert A.get("swish").name == "silu" and A.get("hard_swish").name == "hard_silu"
    r = A.relu.with_params(max_value=6.0)
    assert r.params == {"max_value": 6.0}
    assert A.deserialize(A.serialize(r)) == r
    assert A.deserialize(A.serialize(A.tanh)) is A.tanh
    assert A.serialize(A.gelu) == "gelu"
    assert A.get({"class_name": "function", "config": "elu"}) is A.elu
    custom = A.get(lambda z: 2 * z)
    np.testing.assert_allclose(custom(np.ones(3)), 2.0)
    np.testing.assert_allclose(custom.grad(np.ones(3), None, np.ones(3)), 2.0, rtol=1e-5)


def test_float32_out_and_inputs_accepted():
    y = A.sigmoid([[-1000.0, 0.0, 1000.0]])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0.0, 0.5, 1.0]])
    assert np.isnan(A.relu(np.array([np.nan], np.float32)))[0]


@pytest.mark.parametrize("bad", ["relu7", "Relu", "softmx"])
def test_unknown_name_lists_close_names(bad):
    with pytest.raises(ValueError, match="Did you mean") as e:
        A.get(bad)
    assert "Valid names" in str(e.value)


def test_bad_identifier_types():
    with pytest.raises(ValueError, match="activation"):
        A.get(3)
    with pytest.raises(TypeError, match="threshold"):
        A.threshold(np.zeros(3))
    with pytest.raises(ValueError, match="even"):
        A.glu(np.zeros((2, 3)))
