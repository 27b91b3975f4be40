"""Inference runs Conv2D [-> BatchNormalization] [-> ReLU] [-> MaxPooling2D 2x2] and residual ends
Conv2D [-> BatchNormalization] -> Add [-> ReLU] as one conv call (fastnn.models.fusion): the same
predictions and evaluations as the layers one by one, bit for bit, and only where every tensor
of the run has its one reader inside it."""
import numpy as np
import pytest

import fastnn
from fastnn import layers as L


def _mnist_convnet():
    return fastnn.models.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
        L.Dense(10, activation="softmax")])


def _vgg(relu=lambda: L.ReLU()):
    layers = [L.Input((16, 16, 3))]
    for f in (8, 16):
        for _ in range(2):
            layers += [L.Conv2D(f, 3, padding="same"), L.BatchNormalization(), relu()]
        layers.append(L.MaxPooling2D(2))
    return fastnn.models.Sequential(layers + [L.Flatten(), L.Dense(10, activation="softmax")])


def _train_a_little(m, rng, shape, n=32):
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)   # moving statistics away from 0 and 1
    return x, y


@pytest.mark.parametrize("build, shape, n_chains", [
    (_mnist_convnet, (28, 28, 1), 2),
    (_vgg, (16, 16, 3), 4),
    (lambda: _vgg(lambda: L.Activation("relu")), (16, 16, 3), 4),
])
def test_fused_inference_equals_layers(rng, build, shape, n_chains):
    fastnn._random.set_seed(5)
    m = build()
    x, y = _train_a_little(m, rng, shape)
    chains = m._chains
    assert len(chains) == n_chains
    fused_pred = m.predict(x, batch_size=8, verbose=0)
    fused_eval = m.evaluate(x, y, verbose=0)
    m._chains = {}
    np.testing.assert_array_equal(fused_pred, m.predict(x, batch_size=8, verbose=0))
    assert fused_eval == m.evaluate(x, y, verbose=0)
    m._chains = chains
    np.testing.assert_array_equal(m.predict_on_batch(x[:5]), m(x[:5]))
    # training still runs the layers one by one (and afterwards inference fuses again)
    m.train_on_batch(x, y)
    pred = m.predict(x, verbose=0)
    m._chains = {}
    np.testing.assert_array_equal(pred, m.predict(x, verbose=0))


def test_runs_stop_where_a_tensor_has_other_readers(rng):
    inp = fastnn.Input((12, 12, 3))
    r = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inp)))
    side = L.Dense(3)(L.Flatten()(r))              # the ReLU output has two readers
    pooled = L.Dense(3)(L.Flatten()(L.MaxPooling2D(2)(r)))
    c2 = L.Dense(3)(L.Flatten()(L.Conv2D(4, 3, activation="relu")(inp)))   # nothing to fuse
    m = fastnn.Model(inp, [side, pooled, c2])
    m.set_weights([rng.standard_normal(w.shape).astype(np.float32) ** 2 + 0.1 for w in m.get_weights()])
    names = [type(node[0]).__name__ for node in m._nodes]
    assert [(names[k], names[end]) for k, (end, *_) in m._chains.items()] == [("Conv2D", "ReLU")]
    x = rng.standard_normal((6, 12, 12, 3)).astype(np.float32)
    pred = m.predict(x, verbose=0)
    m._chains = {}
    for a, b in zip(pred, m.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


def test_no_fusion_with_activity_regularizer_or_odd_pool():
    m = fastnn.models.Sequential([
        L.Input((10, 10, 2)), L.Conv2D(4, 3, activation="relu", activity_regularizer="l2"),
        L.MaxPooling2D(2), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2, strides=1),
        L.Conv2D(4, 1), L.BatchNormalization(activity_regularizer="l1"), L.Flatten()])
    assert m._chains == {}


def _resnet(relu=lambda name: L.ReLU(name=name)):
    inp = fastnn.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    for k in range(2):
        h = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
        h = relu(f"r{k}a")(L.BatchNormalization()(h))
        h = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(h))
        x = relu(f"r{k}b")(L.Add()([x, h]))
    # a nested model whose conv + BN + ReLU6 runs fuse inside the outer graph
    i2 = fastnn.Input((10, 10, 8))
    tail = fastnn.Model(i2, L.ReLU(max_value=6.0)(L.BatchNormalization()(L.Conv2D(8, 1)(i2))))
    x = tail(x)
    y = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return fastnn.Model(inp, y)


@pytest.mark.parametrize("relu", [lambda name: L.ReLU(name=name), lambda name: L.ReLU(max_value=6.0, name=name),
                                  lambda name: L.Activation("relu6", name=name)])
def test_residual_and_relu6_runs_fuse_bit_identically(rng, relu):
    fastnn._random.set_seed(3)
    m = _resnet(relu)
    x, y = _train_a_little(m, rng, (10, 10, 3))
    kinds = sorted(tuple(type(m._nodes[j][0]).__name__ for j in sorted(ch[5])) for ch in m._chains.values())
    act = type(relu("probe")).__name__
    # two conv+BN+act, two conv+BN+Add+act (the residual ends), the nested conv+BN+ReLU(6)
    assert kinds == sorted([("BatchNormalization", act)] * 2 + [("BatchNormalization", "Add", act)] * 2
                           + [("BatchNormalization", "ReLU")])
    fused = m.predict(x, batch_size=8, verbose=0)
    fused_eval = m.evaluate(x, y, verbose=0)
    chains = m._chains
    m._chains = {}
    np.testing.assert_array_equal(fused, m.predict(x, batch_size=8, verbose=0))
    assert fused_eval == m.evaluate(x, y, verbose=0)
    m._chains = chains


def _mobilenet_block():
    inp = fastnn.Input((12, 12, 8))
    x = L.ReLU(max_value=6.0)(L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(inp)))
    x = L.ReLU(max_value=6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    x = L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(x))
    x = L.Add()([inp, x])
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=2, depth_multiplier=2)(x)))
    x = L.DepthwiseConv2D(3, activation="relu", padding="same")(x)      # its own ReLU, nothing to fuse
    y = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return fastnn.Model(inp, y)


def test_depthwise_bn_relu_runs_fuse_bit_identically(rng):
    """DepthwiseConv2D -> BatchNormalization -> ReLU(6) runs (MobileNet's blocks) as one
    depthwise_conv2d(affine=, activation=) call: the same predictions and evaluations."""
    fastnn._random.set_seed(4)
    m = _mobilenet_block()
    x, y = _train_a_little(m, rng, (12, 12, 8))
    starts = sorted(type(m._nodes[k][0]).__name__ for k in m._chains)
    assert starts == ["Conv2D", "Conv2D", "DepthwiseConv2D", "DepthwiseConv2D"]
    fused = m.predict(x, batch_size=8, verbose=0)
    fused_eval = m.evaluate(x, y, verbose=0)
    chains = m._chains
    m._chains = {}
    np.testing.assert_array_equal(fused, m.predict(x, batch_size=8, verbose=0))
    assert fused_eval == m.evaluate(x, y, verbose=0)
    m._chains = chains


def test_mobilenetv2_fused_inference_is_bit_identical(rng):
    from fastnn.applications import MobileNetV2

    fastnn._random.set_seed(6)
    m = MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    for layer in m.layers:                 # moving statistics away from 0 and 1
        if type(layer).__name__ == "BatchNormalization":
            c = layer.moving_mean.value.shape[0]
            layer.moving_mean.value[...] = rng.standard_normal(c) * 0.1
            layer.moving_variance.value[...] = rng.random(c) + 0.5
    n_dw = sum(type(m._nodes[k][0]).__name__ == "DepthwiseConv2D" for k in m._chains)
    assert n_dw == 17
    x = rng.standard_normal((3, 32, 32, 3)).astype(np.float32)
    fused = m.predict(x, verbose=0)
    chains = m._chains
    m._chains = {}
    np.testing.assert_array_equal(fused, m.predict(x, verbose=0))
    m._chains = chains
