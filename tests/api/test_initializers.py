"""fastnn.initializers against Keras 3: fans, limits, stddevs, distributions, exact constants."""
import math
import os

import numpy as np
import pytest

import fastnn
import fastnn.initializers as I

os.environ.setdefault("KERAS_BACKEND", "torch")


SHAPES = [(5,), (30, 20), (3, 3, 8, 16), (2, 3, 3, 4, 5)]
VS = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal"]


@pytest.mark.keras
@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_keras(keras, shape):
    from keras.src.initializers.random_initializers import compute_fans
    assert I.compute_fans(shape) == compute_fans(shape)


@pytest.mark.keras
@pytest.mark.parametrize("name", VS + ["random_normal", "random_uniform", "truncated_normal",
                                       "variance_scaling", "orthogonal", "uniform", "normal"])
def test_defaults_and_config_match_keras(keras, name):
    ours, theirs = I.get(name).get_config(), keras.initializers.get(name).get_config()
    assert ours == theirs


@pytest.mark.keras
@pytest.mark.parametrize("name", VS)
@pytest.mark.parametrize("shape", [(200, 300), (3, 3, 32, 64)])
def test_variance_scaling_distribution_matches_keras(keras, name, shape):
    keras.utils.set_random_seed(0)
    ours = I.get(name).__class__(seed=1)(shape)
    theirs = keras.ops.convert_to_numpy(keras.initializers.get(name)(shape))
    assert ours.dtype == np.float32 and ours.shape == shape
    ki = keras.initializers.get(name)
    fan_in, fan_out = I.compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[ki.mode]
    if ki.distribution == "uniform":
        lim = math.sqrt(3 * ki.scale / fan)
        assert I.get(name).limit(shape) == pytest.approx(lim)
        assert ours.min() >= -lim and ours.max() <= lim
        assert ours.min() < -0.98 * lim and ours.max() > 0.98 * lim
    else:
        sd = math.sqrt(ki.scale / fan) / 0.87962566103423978
        assert I.get(name).stddev(shape) == pytest.approx(sd)
        assert np.abs(ours).max() < 2 * sd
        # Keras's torch backend keeps an out-of-range draw when 4 tries fail (p ~ 4e-6)
        assert np.quantile(np.abs(theirs), 0.999) < 2 * sd
    # both draws have the same spread (target variance scale/fan) within sampling error
    assert ours.std() == pytest.approx(theirs.std(), rel=0.05)
    assert ours.std() == pytest.approx(math.sqrt(ki.scale / fan), rel=0.05)
    assert abs(ours.mean()) < 0.05 * ours.std() + 1e-3


@pytest.mark.keras
def test_simple_random_initializers_match_keras(keras):
    for name, kw in [("RandomNormal", {"mean": 1.0, "stddev": 0.3}), ("RandomUniform", {"minval": -2, "maxval": 1}),
                     ("TruncatedNormal", {"mean": 0.5, "stddev": 0.2}),
                     ("VarianceScaling", {"scale": 3.0, "mode": "fan_out", "distribution": "untruncated_normal"})]:
        keras.utils.set_random_seed(0)
        ours = getattr(I, name)(**kw, seed=1)((400, 300))
        theirs = keras.ops.convert_to_numpy(getattr(keras.initializers, name)(**kw)((400, 300)))
        assert ours.mean() == pytest.approx(theirs.mean(), abs=float(0.01 * (theirs.std() + 1)))
        assert ours.std() == pytest.approx(theirs.std(), rel=0.02)
        for q in (0.01, 0.1, 0.5, 0.9, 0.99):
            assert np.quantile(ours, q) == pytest.approx(np.quantile(theirs, q), abs=float(0.05 * theirs.std()))


@pytest.mark.keras
def test_deterministic_initializers_equal_keras(keras):
    for name, kw, shape in [("Zeros", {}, (3, 4)), ("Ones", {}, (2, 5)), ("Constant", {"value": 2.5}, (4,)),
                            ("Identity", {"gain": 3.0}, (4, 6)), ("Identity", {}, (5, 3))]:
        np.testing.assert_array_equal(getattr(I, name)(**kw)(shape),
                                      keras.ops.convert_to_numpy(getattr(keras.initializers, name)(**kw)(shape)))


@pytest.mark.parametrize("shape", [(6, 6), (10, 4), (4, 10), (3, 3, 4, 8)])
def test_orthogonal_is_orthogonal_times_gain(shape):
    w = I.Orthogonal(gain=2.0, seed=3)(shape).astype(np.float64)
    m = w.reshape(-1, shape[-1])
    small = min(m.shape)
    g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(g, 4.0 * np.eye(small), atol=1e-5)


def test_seeding():
    a, b = I.GlorotUniform(seed=7)((5, 5)), I.GlorotUniform(seed=7)((5, 5))
    np.testing.assert_array_equal(a, b)
    fastnn._random.set_seed(11)
    c = I.get("he_normal")((4, 4))
    fastnn._random.set_seed(11)
    np.testing.assert_array_equal(c, I.get("he_normal")((4, 4)))
    assert not np.array_equal(c, I.get("he_normal")((4, 4)))


def test_get_serialize_round_trip():
    for obj in [I.GlorotUniform(seed=3), I.VarianceScaling(2.0, "fan_avg", "uniform"), I.Constant(1.5),
                I.Orthogonal(gain=0.5), I.RandomNormal(1.0, 2.0)]:
        back = I.deserialize(I.serialize(obj))
        assert type(back) is type(obj) and back.get_config() == obj.get_config()
        assert I.get(obj) is obj
    assert isinstance(I.get(I.HeNormal), I.HeNormal)
    assert isinstance(I.get({"class_name": "GlorotUniform", "config": {"seed": None}}), I.GlorotUniform)
    assert I.get(None) is None
    arr = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(I.get(arr)((2, 3)), arr)
    f = lambda shape, dtype=None: np.ones(shape)
    assert I.get(f) is f


def test_errors():
    with pytest.raises(ValueError, match="glorot_uniform"):
        I.get("glorot_uniformm")
    with pytest.raises(ValueError, match="scale"):
        I.VarianceScaling(scale=-1)
    with pytest.raises(ValueError, match="mode"):
        I.VarianceScaling(mode="fan")
    with pytest.raises(ValueError, match="distribution"):
        I.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="two-dimensional"):
        I.Orthogonal()((5,))
    with pytest.raises(ValueError, match="2D"):
        I.Identity()((2, 2, 2))
    with pytest.raises(ValueError, match="seed"):
        I.RandomNormal(seed="x")
