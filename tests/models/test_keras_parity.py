"""Keras 3 parity: the same model in Keras (torch backend) and fastnn, weights copied across;
predictions, losses, metrics and weights after training steps must agree (rtol ~1e-5)."""
import numpy as np
import pytest

import fastnn

pytestmark = pytest.mark.keras

RTOL, ATOL = 1e-5, 1e-6


def _both(keras, build):
    """build(ns) -> layer list, with ns = keras or fastnn; returns (fastnn model, keras model)."""
    fm = fastnn.models.Sequential(build(fastnn))
    km = keras.Sequential(build(keras))
    km.set_weights(fm.get_weights())
    return fm, km


def _close(a, b, rtol=RTOL, atol=ATOL, what=""):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def _weights_close(fm, km, rtol=RTOL, atol=ATOL):
    for i, (a, b) in enumerate(zip(fm.get_weights(), km.get_weights())):
        _close(a, b, rtol, atol, f"weight {i} of shape {a.shape}")


LAYER_CASES = {
    "dense": ((7,), lambda K: [K.layers.Dense(5, activation="tanh"), K.layers.Dense(3)]),
    "conv2d_valid": ((6, 6, 2), lambda K: [K.layers.Conv2D(3, 3, activation="relu")]),
    "conv2d_same_stride": ((7, 7, 2), lambda K: [K.layers.Conv2D(4, (3, 2), strides=2, padding="same")]),
    "conv2d_dilated": ((8, 8, 1), lambda K: [K.layers.Conv2D(2, 3, dilation_rate=2, activation="elu")]),
    "conv1d_causal": ((9, 3), lambda K: [K.layers.Conv1D(4, 3, padding="causal", activation="tanh")]),
    "conv1d_same_stride": ((9, 3), lambda K: [K.layers.Conv1D(4, 4, strides=2, padding="same")]),
    "maxpool2d": ((6, 6, 2), lambda K: [K.layers.Conv2D(3, 2), K.layers.MaxPooling2D()]),
    "maxpool2d_same": ((7, 7, 2), lambda K: [K.layers.MaxPooling2D(3, 2, padding="same")]),
    "avgpool2d_same": ((7, 7, 2), lambda K: [K.layers.Conv2D(2, 1), K.layers.AveragePooling2D(2, padding="same")]),
    "pool1d": ((8, 3), lambda K: [K.layers.Conv1D(2, 2), K.layers.MaxPooling1D(), K.layers.AveragePooling1D(2, 1)]),
    "global2d": ((5, 5, 3), lambda K: [K.layers.Conv2D(4, 2), K.layers.GlobalAveragePooling2D()]),
    "globalmax2d": ((5, 5, 3), lambda K: [K.layers.Conv2D(4, 2), K.layers.GlobalMaxPooling2D()]),
    "global1d": ((6, 3), lambda K: [K.layers.Conv1D(4, 2), K.layers.GlobalMaxPooling1D()]),
    "globalavg1d": ((6, 3), lambda K: [K.layers.Conv1D(4, 2), K.layers.GlobalAveragePooling1D()]),
    "batchnorm": ((6,), lambda K: [K.layers.Dense(5), K.layers.BatchNormalization(), K.layers.Activation("relu")]),
    "batchnorm4d": ((4, 4, 2), lambda K: [K.layers.Conv2D(3, 2), K.layers.BatchNormalization(momentum=0.9)]),
    "reshape_permute": ((6,), lambda K: [K.layers.Dense(6), K.layers.Reshape((2, 3)), K.layers.Permute((2, 1))]),
    "repeat": ((4,), lambda K: [K.layers.Dense(3, activation="sigmoid"), K.layers.RepeatVector(2)]),
    "pad_crop_up": ((4, 4, 2), lambda K: [K.layers.ZeroPadding2D(((1, 0), (0, 2))), K.layers.Conv2D(2, 2),
                                          K.layers.Cropping2D(((0, 1), (1, 0))), K.layers.UpSampling2D((2, 1))]),
    "zeropad1d": ((5, 2), lambda K: [K.layers.ZeroPadding1D((2, 1)), K.layers.Conv1D(2, 2)]),
    "leaky_relu": ((6,), lambda K: [K.layers.Dense(6), K.layers.LeakyReLU()]),
    "elu": ((6,), lambda K: [K.layers.Dense(6), K.layers.ELU()]),
    "relu_max": ((6,), lambda K: [K.layers.Dense(6), K.layers.ReLU(max_value=1.0)]),
    "prelu": ((6,), lambda K: [K.layers.Dense(6), K.layers.PReLU(alpha_initializer="random_uniform")]),
    "softmax_layer": ((6,), lambda K: [K.layers.Dense(6), K.layers.Softmax()]),
    "dropout_inference": ((6,), lambda K: [K.layers.Dense(6), K.layers.Dropout(0.5)]),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_forward_and_training_match_keras(keras, case, rng):
    shape, make = LAYER_CASES[case]

    def build(K):
        return [K.Input(shape), *make(K), K.layers.Flatten(), K.layers.Dense(3)]

    fm, km = _both(keras, build)
    x = rng.standard_normal((10, *shape)).astype(np.float32)
    y = rng.standard_normal((10, 3)).astype(np.float32)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")
    if case == "dropout_inference":
        return
    fm.compile(fastnn.optimizers.SGD(learning_rate=0.05), "mse")
    km.compile(keras.optimizers.SGD(learning_rate=0.05), "mse")
    for _ in range(3):
        lf, lk = fm.train_on_batch(x, y), km.train_on_batch(x, y)
        _close(lf, lk, rtol=1e-5, what="train_on_batch loss")
    _weights_close(fm, km, rtol=1e-5, atol=2e-6)
    _close(fm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0), what="evaluate")


OPT_CASES = [
    ("sgd", {}), ("sgd", {"momentum": 0.9, "nesterov": True}), ("adam", {}), ("rmsprop", {}), ("adamax", {}),
]


@pytest.mark.parametrize("opt,kw", OPT_CASES, ids=[f"{o}{'_' + '_'.join(kw) if kw else ''}" for o, kw in OPT_CASES])
def test_fit_with_optimizers_matches_keras(keras, opt, kw, rng):
    def build(K):
        return [K.Input((8,)), K.layers.Dense(16, activation="relu"), K.layers.Dense(4, activation="softmax")]

    fm, km = _both(keras, build)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 50)]
    fopt = fastnn.optimizers.get({"class_name": opt, "config": {"name": opt, "learning_rate": 0.01, **kw}}) \
        if kw else fastnn.optimizers.get(opt)
    kopt = keras.optimizers.get({"class_name": opt, "config": {"learning_rate": 0.01, **kw}}) if kw else opt
    fm.compile(fopt, "categorical_crossentropy", metrics=["accuracy"])
    km.compile(kopt, "categorical_crossentropy", metrics=["accuracy"])
    hf = fm.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    hk = km.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    assert list(hf.history) == list(hk.history)
    for k in hk.history:
        _close(hf.history[k], hk.history[k], rtol=1e-5, what=k)
    _weights_close(fm, km, rtol=1e-5, atol=2e-6)


LOSS_CASES = {
    "categorical_crossentropy": ("softmax", 4, "onehot"),
    "sparse_categorical_crossentropy": ("softmax", 4, "int"),
    "binary_crossentropy": ("sigmoid", 3, "binary"),
    "mse": ("linear", 3, "real"),
    "kld": ("softmax", 4, "prob"),
}


@pytest.mark.parametrize("loss", sorted(LOSS_CASES))
def test_losses_and_metrics_match_keras(keras, loss, rng):
    act, k, kind = LOSS_CASES[loss]

    def build(K):
        return [K.Input((5,)), K.layers.Dense(8, activation="tanh"), K.layers.Dense(k, activation=act)]

    fm, km = _both(keras, build)
    n = 40
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = {"onehot": lambda: np.eye(k, dtype=np.float32)[rng.integers(0, k, n)],
         "int": lambda: rng.integers(0, k, n),
         "binary": lambda: (rng.random((n, k)) > 0.5).astype(np.float32),
         "real": lambda: rng.standard_normal((n, k)).astype(np.float32),
         "prob": lambda: rng.dirichlet(np.ones(k), n).astype(np.float32)}[kind]()
    metrics = ["accuracy"] if kind != "real" else ["mae"]
    sw = rng.random(n).astype(np.float32)
    fm.compile("adam", loss, metrics=metrics)
    km.compile("adam", loss, metrics=metrics)
    _close(fm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0), what="evaluate")
    _close(fm.evaluate(x, y, sample_weight=sw, verbose=0), km.evaluate(x, y, sample_weight=sw, verbose=0),
           what="evaluate with sample_weight")
    for _ in range(3):
        _close(fm.train_on_batch(x, y), km.train_on_batch(x, y), what="train_on_batch")
    hf = fm.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, validation_split=0.25)
    hk = km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, validation_split=0.25)
    for key in hk.history:
        _close(hf.history[key], hk.history[key], rtol=1e-5, what=key)
    _weights_close(fm, km, rtol=1e-5, atol=2e-6)


# a ReLU right before BatchNormalization leaves near-dead channels whose tiny gradients Adam
# rescales to full steps: float noise then decides the sign, in Keras as here; tanh keeps it smooth
def test_convnet_train_steps_match_keras(keras, rng):
    def build(K):
        return [K.Input((10, 10, 1)), K.layers.Conv2D(4, 3, activation="relu"), K.layers.MaxPooling2D(),
                K.layers.Conv2D(6, 2, activation="tanh"), K.layers.BatchNormalization(), K.layers.Flatten(),
                K.layers.Dense(5, activation="softmax")]

    fm, km = _both(keras, build)
    x = rng.standard_normal((24, 10, 10, 1)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 24)]
    fm.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    km.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    for _ in range(3):
        _close(fm.train_on_batch(x, y), km.train_on_batch(x, y), what="train_on_batch")
    hf = fm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    hk = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for key in hk.history:
        _close(hf.history[key], hk.history[key], rtol=1e-5, what=key)
    _weights_close(fm, km, rtol=1e-5, atol=2e-6)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")


def test_founding_notes_model_matches_keras(keras, rng):
    def build(K):
        return [K.layers.Dense(64, input_dim=3, activation="tanh"), K.layers.Dense(1, activation="softplus")]

    fm, km = _both(keras, build)
    x = rng.random((40, 3), dtype=np.float32)
    y = rng.random((40, 1), dtype=np.float32)
    fm.compile("adamax", loss="kld", metrics=["accuracy"])
    km.compile("adamax", loss="kld", metrics=["accuracy"])
    hf = fm.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    hk = km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert list(hf.history) == list(hk.history) == ["accuracy", "loss"]
    for key in hk.history:
        _close(hf.history[key], hk.history[key], rtol=1e-5, what=key)
    _weights_close(fm, km, rtol=1e-5, atol=2e-6)
