"""The layer features the applications brought: merging layers broadcasting size-1 axes
(EfficientNet's squeeze-and-excitation Multiply of (N,H,W,C) by (N,1,1,C)) and Dropout's
noise_shape (EfficientNet's stochastic depth), against Keras and numerical gradients."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn
from fastnn.models.gradient_check import gradient_check


def _se_model(K, op):
    L = K.layers
    inp = K.Input((5, 4, 6), name="x")
    h = L.Conv2D(6, 1, activation="tanh", name="conv")(inp)
    s = L.GlobalAveragePooling2D(name="squeeze")(h)
    s = L.Reshape((1, 1, 6), name="reshape")(s)
    s = L.Conv2D(6, 1, activation="sigmoid", name="excite")(s)
    y = getattr(L, op)(name="merge")([h, s])
    out = L.Dense(3, name="out")(L.Flatten(name="flat")(y))
    return K.Model(inp, out)


@pytest.mark.parametrize("op", ["Multiply", "Add", "Subtract", "Maximum", "Minimum", "Average"])
def test_broadcasting_merge_matches_keras(op, keras, rng):
    km, fm = _se_model(keras, op), _se_model(fastnn, op)
    assert fm.layers[-3].output.shape == (None, 5, 4, 6)
    fm.set_weights(km.get_weights())
    x = rng.standard_normal((4, 5, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(fm.predict(x, verbose=0), km.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # one SGD step on the same batch: the gradients through the broadcast agree
    y = rng.standard_normal((4, 3)).astype(np.float32)
    for m in (km, fm):
        m.compile(optimizer=(fastnn if m is fm else keras).optimizers.SGD(0.1), loss="mse")
        m.train_on_batch(x, y)
    for a, b in zip(fm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def test_broadcasting_merge_gradient_is_numerical(rng):
    m = _se_model(fastnn, "Multiply")
    m.compile("sgd", "mse")
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    y = rng.standard_normal((3, 3)).astype(np.float32)
    errs = gradient_check(m, x, y)
    assert max(errs.values()) < 2e-2, errs


def test_merge_shapes_that_do_not_broadcast_are_refused():
    a, b = fastnn.Input((4, 6)), fastnn.Input((3, 6))
    with pytest.raises(ValueError, match="size 1"):
        fastnn.layers.Multiply()([a, b])


def test_dropout_noise_shape(rng):
    layer = fastnn.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), seed=3)
    x = rng.uniform(1, 2, (64, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    y = layer.forward(x, training=True)
    kept = y.reshape(64, -1) != 0
    assert np.all(kept.all(axis=1) | (~kept).all(axis=1)), "a sample is dropped whole or kept whole"
    assert 10 < kept.all(axis=1).sum() < 54
    np.testing.assert_allclose(y[kept.all(axis=1)], 2 * x[kept.all(axis=1)], rtol=1e-7)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, np.where(y != 0, 2 * dy, 0))
    assert layer.get_config()["noise_shape"] == [None, 1, 1, 1]
    same = fastnn.layers.Dropout.from_config(layer.get_config())
    assert same.noise_shape == (None, 1, 1, 1)
    with pytest.raises(ValueError, match="noise_shape"):
        fastnn.layers.Dropout(0.5, noise_shape=(None, 2, 1, 1)).forward(x, training=True)
    with pytest.raises(ValueError, match="noise_shape"):
        fastnn.layers.Dropout(0.5, noise_shape="batch")


def test_dropout_noise_shape_matches_keras_config(keras):
    k = keras.layers.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="d")
    f = fastnn.layers.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="d")
    assert list(k.get_config()["noise_shape"]) == f.get_config()["noise_shape"]
