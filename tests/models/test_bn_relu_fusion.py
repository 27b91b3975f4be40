"""BatchNormalization -> ReLU fused by the model: same numbers as the unfused pair, and only
where the norm's output feeds nothing but a plain ReLU."""
import numpy as np
import pytest

import fastnn
from fastnn import layers as L
from fastnn.models.gradient_check import gradient_check


def _model(act="relu_layer", frozen=False, seed=3):
    fastnn._random.set_seed(seed)
    relu = (lambda: L.ReLU()) if act == "relu_layer" else (lambda: L.Activation("relu"))
    bn1 = L.BatchNormalization(trainable=not frozen)
    m = fastnn.models.Sequential([
        L.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), bn1, relu(),
        L.Conv2D(5, 3, padding="same"), L.BatchNormalization(), relu(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


def _data(rng, n=12):
    x = rng.standard_normal((n, 8, 8, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


@pytest.mark.parametrize("act", ["relu_layer", "activation"])
@pytest.mark.parametrize("frozen", [False, True])
def test_fused_training_equals_unfused(rng, act, frozen):
    x, y = _data(rng)
    fused, plain = _model(act, frozen), _model(act, frozen)
    plain.set_weights(fused.get_weights())
    assert len(fused._bn_relu) == 2
    plain._bn_relu = ()   # the unfused path: separate ReLU kernels
    for step in range(3):
        assert fused.train_on_batch(x, y) == plain.train_on_batch(x, y)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused.predict(x, verbose=0), plain.predict(x, verbose=0))
    fused_out = fused(x, training=True)
    plain_out = plain(x, training=True)
    np.testing.assert_array_equal(fused_out, plain_out)


def test_fused_pair_gradient_check_same_as_unfused(rng):
    # the per-layer bound itself is checked by tests/layers (case batchnorm_relu); here the
    # fused model must report exactly what the unfused one does
    x, y = _data(rng, 6)
    fused, plain = _model(), _model()
    plain.set_weights(fused.get_weights())
    plain._bn_relu = ()
    a = gradient_check(fused, x, y, eps=1e-3)
    b = gradient_check(plain, x, y, eps=1e-3)
    assert list(a.values()) == list(b.values())
    # the first conv and norm feed 384 ReLU inputs per channel through the batch statistics:
    # central differences cross ReLU kinks there at any eps (measured 3.1e-2, 6.0e-3); the
    # layers after them measure <= 2.8e-4
    bounds = [0.1, 2e-2, 1e-3, 1e-3, 1e-3]
    assert all(e < t for e, t in zip(a.values(), bounds)), a


def test_relu_layer_stays_in_summary_and_profile(rng):
    x, y = _data(rng, 8)
    model = _model()
    lines = []
    model.summary(print_fn=lines.append)
    assert sum("ReLU" in line for line in lines) == 2
    rows = model.profile(x, y, steps=1, batch_size=4, print_fn=lambda *a: None)
    assert [r["type"] for r in rows].count("ReLU") == 2


def test_flags_live_only_during_the_forward_pass(rng):
    x, _ = _data(rng, 4)
    model = _model()
    model.predict(x, verbose=0)
    bn, relu = model._bn_relu[0]
    assert isinstance(bn, L.BatchNormalization) and isinstance(relu, L.ReLU)
    assert not bn._relu_epilogue and not relu._fused_into_bn
    # an eager call of the norm alone gives the plain (un-ReLU'd) output
    assert (bn(np.full((2, 8, 8, 4), -5.0, np.float32)) < 0).any()


def test_not_fused_when_the_norm_output_has_other_readers(rng):
    inp = L.Input((6,))
    bn = L.BatchNormalization()(L.Dense(4)(inp))
    model = fastnn.models.Model(inp, [L.Dense(2)(L.ReLU()(bn)), L.Dense(3)(bn)])
    assert not model._bn_relu
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y2 = model(x, training=True)[1]
    assert np.isfinite(y2).all()
    # a norm that is a model output is not fused either
    inp2 = L.Input((6,))
    b2 = L.BatchNormalization()(L.Dense(4)(inp2))
    model2 = fastnn.models.Model(inp2, [b2, L.ReLU()(b2)])
    assert not model2._bn_relu
    out_bn, out_relu = model2(x, training=True)
    assert (out_bn < 0).any()
    np.testing.assert_array_equal(np.maximum(out_bn, 0), out_relu)
    # a ReLU with parameters is not a plain ReLU
    model3 = fastnn.models.Sequential([L.Input((6,)), L.Dense(4), L.BatchNormalization(),
                                       L.ReLU(max_value=1.0)])
    assert not model3._bn_relu
    model4 = fastnn.models.Sequential([L.Input((6,)), L.Dense(4), L.BatchNormalization(),
                                       L.ReLU()])
    assert len(model4._bn_relu) == 1
