"""activity_regularizer: Keras 3 adds regularizer(layer output) / batch size to the loss, in
training and evaluation; its gradient flows back through the layer."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn


def _model(ns, reg1, reg2):
    return [ns.Input((5,)), ns.layers.Dense(4, activation="tanh", activity_regularizer=reg1),
            ns.layers.Dense(3, activation="softmax", activity_regularizer=reg2)]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    return x, y


def test_penalty_is_added_to_the_loss_as_keras_defines_it():
    x, y = _data()
    plain = fastnn.Sequential(_model(fastnn, None, None))
    reg = fastnn.Sequential(_model(fastnn, fastnn.regularizers.L2(0.1), "l1"))
    reg.set_weights(plain.get_weights())
    for m in (plain, reg):
        m.compile("sgd", "categorical_crossentropy")
    h = np.tanh(x @ plain.get_weights()[0] + plain.get_weights()[1])
    p = plain.predict(x, verbose=0)
    expected = (0.1 * np.sum(h.astype(np.float64) ** 2) + 0.01 * np.sum(np.abs(p.astype(np.float64)))) / len(x)
    diff = reg.evaluate(x, y, verbose=0, batch_size=16) - plain.evaluate(x, y, verbose=0, batch_size=16)
    assert diff == pytest.approx(expected, rel=1e-4)


def test_gradient_check_with_activity_regularizer():
    x, y = _data(1)
    m = fastnn.Sequential(_model(fastnn, fastnn.regularizers.L2(0.5), fastnn.regularizers.L2(0.3)))
    m.compile("sgd", "categorical_crossentropy")
    m.predict(x, verbose=0)
    report = fastnn.utils.gradient_check(m, x, y)
    assert max(report.values()) < 1e-3, report   # measured <= 4.8e-5 (tests/layers: GRAD_TOL)
    # and the penalty really moves the weights: one step differs from the unregularized model
    plain = fastnn.Sequential(_model(fastnn, None, None))
    plain.compile("sgd", "categorical_crossentropy")
    plain.predict(x, verbose=0)
    plain.set_weights(m.get_weights())
    m.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    assert not np.allclose(m.get_weights()[0], plain.get_weights()[0])


def test_config_round_trip():
    layer = fastnn.layers.Dense(3, activity_regularizer=fastnn.regularizers.L1(0.2))
    clone = fastnn.layers.Dense.from_config(layer.get_config())
    assert clone.activity_regularizer.get_config() == layer.activity_regularizer.get_config()


@pytest.mark.keras
def test_matches_keras_training(keras):
    x, y = _data(2)
    fm = fastnn.Sequential(_model(fastnn, fastnn.regularizers.L2(0.05), fastnn.regularizers.L1(0.02)))
    km = keras.Sequential(_model(keras, keras.regularizers.L2(0.05), keras.regularizers.L1(0.02)))
    km.set_weights(fm.get_weights())
    fm.compile(fastnn.optimizers.SGD(0.1), "categorical_crossentropy")
    km.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    for _ in range(3):
        lf = fm.train_on_batch(x, y)
        lk = km.train_on_batch(x, y)
        np.testing.assert_allclose(lf, float(np.asarray(lk)), rtol=1e-5)
    for a, b in zip(fm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fm.evaluate(x, y, verbose=0, batch_size=16),
                               km.evaluate(x, y, verbose=0, batch_size=16), rtol=1e-5)
