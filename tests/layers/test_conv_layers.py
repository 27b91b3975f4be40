"""The depthwise, separable, grouped, transposed and preprocessing layers: backward via
gradient_check, weight layouts, configs, summary, saving, inference fusion and errors."""
import numpy as np
import pytest

import fastnn
from fastnn import layers as L
from fastnn.models import Sequential, load_model
from fastnn.models.gradient_check import gradient_check
from fastnn.reference import conv as RC
from fastnn.reference import depthwise as RD


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


GRAD_CASES = {
    "depthwise2d": (lambda: [L.DepthwiseConv2D(3, padding="same", activation="tanh")], (5, 5, 3)),
    "depthwise2d_relu_mult": (lambda: [L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu"),
                                       L.DepthwiseConv2D(2, activation="tanh")], (7, 7, 2)),
    "depthwise1d": (lambda: [L.DepthwiseConv1D(3, padding="same", depth_multiplier=2, activation="tanh")], (7, 2)),
    "separable2d": (lambda: [L.SeparableConv2D(3, 3, padding="same", activation="tanh"),
                             L.SeparableConv2D(2, 2, depth_multiplier=2, activation="tanh")], (6, 6, 2)),
    "separable1d": (lambda: [L.SeparableConv1D(3, 3, strides=2, activation="tanh")], (8, 2)),
    "conv2d_groups": (lambda: [L.Conv2D(4, 3, groups=2, padding="same", activation="relu"),
                               L.Conv2D(4, 2, groups=4, activation="tanh")], (5, 5, 4)),
    "conv1d_groups": (lambda: [L.Conv1D(4, 3, groups=2, activation="tanh")], (7, 4)),
    "conv2d_transpose": (lambda: [L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"),
                                  L.Conv2DTranspose(2, 2, activation="tanh")], (3, 3, 2)),
    "conv1d_transpose": (lambda: [L.Conv1DTranspose(3, 3, strides=2, output_padding=1, activation="tanh")],
                         (4, 2)),
    "preprocessing": (lambda: [L.Conv2D(2, 2, activation="tanh"), L.Rescaling(0.5, 0.1),
                               L.Normalization(mean=[0.2, -0.1], variance=[2.0, 0.5]), L.Resizing(5, 3),
                               L.Conv2D(2, 2, activation="tanh"), L.Resizing(3, 3, "nearest")], (5, 6, 2)),
    "resizing_crop_pad": (lambda: [L.Conv2D(2, 1, activation="tanh"), L.Resizing(3, 3, crop_to_aspect_ratio=True),
                                   L.Conv2D(2, 1, activation="tanh"), L.Resizing(4, 2, pad_to_aspect_ratio=True)],
                          (4, 6, 2)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_backward_gradient_check(rng, case):
    make, shape = GRAD_CASES[case]
    fastnn._random.set_seed(7)
    model = Sequential([L.Input(shape), *make(), L.Flatten(), L.Dense(3, activation="tanh")])
    model.compile("sgd", loss="mse")
    report = gradient_check(model, _x(rng, 6, *shape), _x(rng, 6, 3), eps=1e-3)
    assert set(report) == {l.name for l in model.layers if l.trainable_weights}
    assert max(report.values()) < 2e-2, report     # as tests/layers/test_layers.py


def test_forward_matches_the_references(rng):
    x = _x(rng, 2, 7, 6, 3)
    dw = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)
    np.testing.assert_allclose(dw(x), RD.depthwise_conv2d(x, *dw.get_weights(), 2, "same"), rtol=1e-5, atol=1e-5)
    sep = L.SeparableConv2D(4, 3, depth_multiplier=2, activation="relu")
    got = sep(x)
    dk, pk, b = sep.get_weights()
    want = np.maximum(RC.conv2d(RD.depthwise_conv2d(x, dk, None), pk, b), 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    g = L.Conv2D(6, 3, groups=3)
    np.testing.assert_allclose(g(x), RC.conv2d(x, *g.get_weights(), groups=3), rtol=1e-5, atol=1e-5)
    t = L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1)
    y = t(x)
    assert y.shape == (2, 14, 12, 4)
    np.testing.assert_allclose(y, RC.conv2d_transpose(x, *t.get_weights(), 2, "same", 1), rtol=1e-5, atol=1e-5)


def test_weight_layouts_and_counts_are_keras():
    m = Sequential([L.Input((8, 8, 4)), L.DepthwiseConv2D(3, depth_multiplier=2), L.SeparableConv2D(6, 3),
                    L.Conv2D(6, 1, groups=2), L.Conv2DTranspose(3, 2, strides=2), L.Conv2D(2, 1),
                    L.Reshape((-1, 2)), L.DepthwiseConv1D(2, use_bias=False), L.SeparableConv1D(3, 2),
                    L.Conv1DTranspose(2, 3), L.Conv1D(4, 1, groups=2)])
    assert [w.shape for w in m.get_weights()] == [
        (3, 3, 4, 2), (8,), (3, 3, 8, 1), (1, 1, 8, 6), (6,), (1, 1, 3, 6), (6,), (2, 2, 3, 6), (3,),
        (1, 1, 3, 2), (2,), (2, 2, 1), (2, 2, 1), (1, 2, 3), (3,), (3, 2, 3), (2,), (1, 1, 4), (4,)]
    assert [v.name for v in m.layers[1].weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert m.count_params() == sum(w.size for w in m.get_weights())


@pytest.mark.parametrize("layer", [
    L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3, activation="relu", use_bias=False),
    L.DepthwiseConv1D(5, dilation_rate=2, depthwise_regularizer="l2"),
    L.SeparableConv2D(4, (3, 1), depth_multiplier=2, pointwise_initializer="he_normal"),
    L.SeparableConv1D(4, 3, padding="same", bias_constraint="non_neg"),
    L.Conv2D(4, 3, groups=2), L.Conv1D(6, 2, groups=3, padding="causal"),
    L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1, activation="tanh"),
    L.Conv1DTranspose(2, 4, strides=3, dilation_rate=1),
    L.Rescaling([0.5, 2.0], offset=-1.0), L.Normalization(axis=(1, 2), invert=True),
    L.Normalization(mean=[1.0, 2.0], variance=[3.0, 4.0]),
    L.Resizing(7, 9, "nearest", crop_to_aspect_ratio=True),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert fastnn.layers.deserialize(fastnn.layers.serialize(layer)).get_config() == config


def _all_layers_model():
    return Sequential([
        L.Input((9, 9, 3)), L.Rescaling(1 / 255.0), L.Normalization(), L.Resizing(8, 8),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2), L.BatchNormalization(), L.ReLU(6.0),
        L.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu"),
        L.Conv2D(8, 3, groups=4, padding="same"), L.Conv2DTranspose(4, 3, strides=2, padding="same"),
        L.Reshape((-1, 4)), L.DepthwiseConv1D(3), L.SeparableConv1D(4, 3), L.Conv1D(4, 3, groups=2),
        L.Conv1DTranspose(3, 2, strides=2), L.Flatten(), L.Dense(5, activation="softmax")])


def test_save_load_round_trip_and_weights_file(rng, tmp_path):
    m = _all_layers_model()
    x = (rng.random((16, 9, 9, 3)) * 255).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)]
    m.layers[1].adapt(x / 255.0)
    m.compile("adam", "categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.keras"
    m.save(path)
    m2 = load_model(path)
    assert [type(a) for a in m2.layers] == [type(a) for a in m.layers]
    for a, b in zip(m.get_weights(), m2.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))
    wpath = tmp_path / "m.weights.h5"
    m.save_weights(wpath)
    before = m.predict(x, verbose=0)
    m.set_weights([np.zeros_like(w) for w in m.get_weights()])
    m.load_weights(wpath)
    np.testing.assert_array_equal(m.predict(x, verbose=0), before)


def test_summary_lists_the_layers_and_their_params(capsys):
    m = _all_layers_model()
    m.summary()
    out = capsys.readouterr().out
    for layer in m.layers:
        assert layer.name in out
    assert f"{m.count_params():,}" in out


def test_grouped_conv_runs_fused_in_inference_with_the_same_bits(rng):
    fastnn._random.set_seed(3)
    m = Sequential([L.Input((10, 10, 4)), L.Conv2D(8, 3, groups=2, padding="same"), L.BatchNormalization(),
                    L.ReLU(), L.MaxPooling2D(), L.Conv2D(8, 3, groups=8), L.BatchNormalization(), L.ReLU(),
                    L.Flatten(), L.Dense(3, activation="softmax")])
    x = _x(rng, 12, 10, 10, 4)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
    m.compile("adam", "categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    chains = m._chains
    assert len(chains) == 2
    fused = m.predict(x, verbose=0)
    m._chains = {}
    np.testing.assert_array_equal(fused, m.predict(x, verbose=0))


def test_normalization_adapt_on_batches_equals_the_whole_array(rng):
    data = _x(rng, 50, 4, 3) * 3 + 1
    a, b = L.Normalization(), L.Normalization()
    a.adapt(data)
    b.adapt([(data[:20], None), data[20:33], data[33:]])   # (x, y) tuples use x, as Keras
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a(data).reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a(data).reshape(-1, 3).std(0), 1, atol=1e-4)


@pytest.mark.parametrize("make,match", [
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier must be a positive int"),
    (lambda: L.DepthwiseConv2D(3, padding="causal"), "padding must be one of"),
    (lambda: L.SeparableConv2D(0, 3), "filters must be a positive int"),
    (lambda: L.Conv2D(6, 3, groups=4), "filters must be divisible by groups"),
    (lambda: L.Conv2D(4, 3, groups=0), "groups must be a positive int"),
    (lambda: L.Conv2DTranspose(3, 3, strides=2, output_padding=2), "strictly less than strides"),
    (lambda: L.Conv2DTranspose(3, 3, strides=2, dilation_rate=2), "dilation_rate > 1"),
    (lambda: L.Conv2DTranspose(3, 3, data_format="channels_first"), "channels_last only"),
    (lambda: L.Resizing(4, 4, interpolation="bicubic"), "interpolation must be one of"),
    (lambda: L.Resizing(4, 4, antialias=True), "antialias"),
    (lambda: L.Resizing(0, 4), "height must be a positive int"),
    (lambda: L.Normalization(mean=[1.0]), "set both mean and variance"),
    (lambda: L.Normalization(mean=[1.0, 2.0], variance=[1.0]), "same shape"),
])
def test_constructor_errors_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_errors_name_the_layer(rng):
    with pytest.raises(ValueError, match="input channels \\(5\\) must be divisible by groups=2"):
        Sequential([L.Input((6, 6, 5)), L.Conv2D(4, 3, groups=2)])
    with pytest.raises(ValueError, match="expects inputs of rank 4"):
        Sequential([L.Input((6, 5)), L.DepthwiseConv2D(3)])
    with pytest.raises(ValueError, match="expects NHWC images"):
        Sequential([L.Input((6, 5)), L.Resizing(3, 3)])
    n = L.Normalization(axis=0)
    with pytest.raises(ValueError, match="must have a known size"):
        Sequential([L.Input((6,)), n])
