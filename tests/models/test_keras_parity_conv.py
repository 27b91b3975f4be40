"""Keras 3 parity of the mobile-conv, grouped, transposed and preprocessing layers: the same model
in Keras (torch backend) and fastnn, fastnn's weights copied into Keras (so the weight order and
shapes must be Keras's); predictions, training losses, the weights after several optimizer steps
and evaluate must agree (rtol 1e-5, atol 1e-6; measured: every difference below 0.19 of that
allowance, so the bound is ~5x the worst seen)."""
import numpy as np
import pytest

import fastnn

pytestmark = pytest.mark.keras      # Keras comes from conftest's `keras` fixture (tests/oracles.py)

RTOL, ATOL = 1e-5, 1e-6


def _close(a, b, rtol=RTOL, atol=ATOL, what=""):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def _both(keras, build):
    fm = fastnn.models.Sequential(build(fastnn))
    km = keras.Sequential(build(keras))
    fw, kw = fm.get_weights(), km.get_weights()
    assert [w.shape for w in fw] == [tuple(w.shape) for w in kw], "weight shapes/order differ from Keras"
    km.set_weights(fw)
    return fm, km


CASES = {
    "depthwise2d_same": ((7, 7, 4), lambda K: [K.layers.DepthwiseConv2D(3, padding="same")]),
    "depthwise2d_stride_mult_relu": ((8, 7, 3), lambda K: [
        K.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu", padding="same")]),
    "depthwise2d_dilated_rect": ((9, 8, 5), lambda K: [
        K.layers.DepthwiseConv2D((2, 3), dilation_rate=2, use_bias=False, activation="tanh")]),
    "depthwise2d_stride_valid_even": ((8, 8, 6), lambda K: [K.layers.DepthwiseConv2D(4, strides=(2, 3))]),
    "depthwise1d": ((9, 3), lambda K: [K.layers.DepthwiseConv1D(3, padding="same", depth_multiplier=2)]),
    "depthwise1d_stride": ((10, 4), lambda K: [K.layers.DepthwiseConv1D(4, strides=2, activation="relu")]),
    "separable2d": ((7, 7, 3), lambda K: [K.layers.SeparableConv2D(4, 3, padding="same", activation="relu")]),
    "separable2d_mult_stride": ((8, 8, 2), lambda K: [
        K.layers.SeparableConv2D(5, 3, strides=2, depth_multiplier=2, use_bias=False)]),
    "separable1d": ((9, 3), lambda K: [K.layers.SeparableConv1D(4, 3, depth_multiplier=2, activation="elu")]),
    "conv2d_groups": ((6, 6, 4), lambda K: [K.layers.Conv2D(6, 3, groups=2, activation="relu")]),
    "conv2d_groups_depthwise": ((6, 6, 4), lambda K: [K.layers.Conv2D(8, 3, groups=4, padding="same")]),
    "conv2d_groups_stride": ((7, 7, 6), lambda K: [K.layers.Conv2D(3, 2, strides=2, groups=3)]),
    "conv1d_groups": ((9, 4), lambda K: [K.layers.Conv1D(6, 3, groups=2, padding="causal")]),
    "conv2d_transpose_same": ((4, 5, 3), lambda K: [K.layers.Conv2DTranspose(4, 3, strides=2, padding="same")]),
    "conv2d_transpose_valid": ((4, 4, 2), lambda K: [
        K.layers.Conv2DTranspose(3, 3, strides=2, activation="relu")]),
    "conv2d_transpose_output_padding": ((3, 4, 2), lambda K: [
        K.layers.Conv2DTranspose(3, (3, 2), strides=(2, 3), padding="same", output_padding=(1, 2))]),
    "conv2d_transpose_dilated": ((5, 5, 2), lambda K: [
        K.layers.Conv2DTranspose(2, 3, dilation_rate=2, padding="same", activation="tanh")]),
    "conv1d_transpose": ((5, 3), lambda K: [K.layers.Conv1DTranspose(4, 4, strides=2, padding="same")]),
    "conv1d_transpose_valid_op": ((5, 3), lambda K: [K.layers.Conv1DTranspose(2, 3, strides=3, output_padding=1)]),
    "mobile_block": ((8, 8, 3), lambda K: [
        K.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False), K.layers.BatchNormalization(),
        K.layers.ReLU(6.0), K.layers.DepthwiseConv2D(3, padding="same", use_bias=False),
        K.layers.BatchNormalization(), K.layers.ReLU(6.0), K.layers.Conv2D(4, 1, use_bias=False),
        K.layers.BatchNormalization()]),
    "rescaling": ((6, 6, 2), lambda K: [K.layers.Rescaling(0.5, -0.25), K.layers.Conv2D(2, 3)]),
    "rescaling_per_channel_mid": ((5,), lambda K: [K.layers.Dense(3), K.layers.Rescaling([0.5, 2.0, -1.0], 0.25)]),
    "normalization_adapted": ((4, 3), lambda K: [_adapted(K.layers.Normalization()), K.layers.Conv1D(2, 2)]),
    "normalization_axes_mid": ((4, 3), lambda K: [K.layers.Conv1D(3, 1), _adapted(K.layers.Normalization(axis=(1, 2)))]),
    "normalization_const_invert": ((5,), lambda K: [
        K.layers.Dense(3), K.layers.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0], invert=True)]),
    "resizing_bilinear_mid": ((6, 7, 2), lambda K: [K.layers.Conv2D(3, 2), K.layers.Resizing(9, 4)]),
    "resizing_nearest_mid": ((6, 7, 2), lambda K: [K.layers.Conv2D(3, 2), K.layers.Resizing(11, 3, "nearest")]),
    "resizing_crop_mid": ((6, 9, 2), lambda K: [K.layers.Conv2D(2, 1), K.layers.Resizing(4, 4, crop_to_aspect_ratio=True)]),
    "resizing_pad_mid": ((6, 9, 2), lambda K: [K.layers.Conv2D(2, 1), K.layers.Resizing(5, 3, pad_to_aspect_ratio=True,
                                                                                      fill_value=0.5)]),
}


def _adapted(layer):
    """layer.adapt() on fixed (40, 4, 3) data, the same in both libraries."""
    layer.adapt(np.random.default_rng(7).standard_normal((40, 4, 3)).astype(np.float32) * 3 + 1)
    return layer


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_forward_and_training_match_keras(keras, case, rng):
    shape, make = CASES[case]

    def build(K):
        return [K.Input(shape), *make(K), K.layers.Flatten(), K.layers.Dense(3)]

    fm, km = _both(keras, build)
    assert fm.count_params() == km.count_params()
    assert [l.name.split("_")[0] for l in fm.layers] == [l.name.split("_")[0] for l in km.layers]
    x = rng.standard_normal((10, *shape)).astype(np.float32)
    y = rng.standard_normal((10, 3)).astype(np.float32)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")
    fm.compile(fastnn.optimizers.SGD(learning_rate=0.05, momentum=0.9), "mse")
    km.compile(keras.optimizers.SGD(learning_rate=0.05, momentum=0.9), "mse")
    for _ in range(3):
        _close(fm.train_on_batch(x, y), km.train_on_batch(x, y), what="train_on_batch loss")
    for i, (a, b) in enumerate(zip(fm.get_weights(), km.get_weights())):
        _close(a, b, rtol=1e-5, atol=2e-6, what=f"weight {i} of shape {a.shape} after 3 steps")
    _close(fm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0), what="evaluate")
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict after training")


@pytest.mark.parametrize("case", ["depthwise2d_same", "separable2d", "conv2d_groups", "conv2d_transpose_same"])
def test_layer_config_matches_keras(keras, case):
    """get_config has Keras's keys, and Keras rebuilds the layer from fastnn's config."""
    shape, make = CASES[case]
    (fl,), (kl,) = make(fastnn), make(keras)
    fc, kc = fl.get_config(), kl.get_config()
    missing = set(kc) - set(fc) - {"dtype"}
    assert not missing, f"keys Keras has and fastnn lacks: {sorted(missing)}"
    fc = {k: v for k, v in fc.items() if k not in ("name", "dtype", "trainable")}
    rebuilt = type(kl).from_config({**kl.get_config(), **fc})
    x = np.zeros((1, *shape), np.float32)
    assert tuple(rebuilt(x).shape) == tuple(kl(x).shape)


@pytest.mark.parametrize("kw", [{}, {"axis": None}, {"axis": (1, 2)}, {"axis": 1, "invert": True}])
def test_normalization_adapt_matches_keras(keras, kw, rng):
    """adapt() on an array gives Keras's mean, variance (and its unused int32 count) and outputs."""
    data = rng.standard_normal((50, 4, 3)).astype(np.float32) * 3 + 1
    fl, kl = fastnn.layers.Normalization(**kw), keras.layers.Normalization(**kw)
    fl.adapt(data)
    kl.adapt(data)
    for a, b in zip(fl.get_weights(), kl.get_weights()):
        assert a.dtype == b.dtype and a.shape == b.shape
        _close(a, b, rtol=1e-6, what="adapted weights")
    _close(fl(data), kl(data), rtol=1e-6, atol=1e-6, what="normalized data")
