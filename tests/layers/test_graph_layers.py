"""Identity, Lambda (forward only; refused at load time unless safe_mode=False, as Keras), nested
Sequential models, and the merging layers' shape rules (no Keras needed)."""
import numpy as np
import pytest

import fastnn
from fastnn import layers as L


def test_identity_passes_values_and_gradients(rng):
    inp = fastnn.Input((3,))
    m = fastnn.Model(inp, L.Dense(2)(L.Identity()(L.Dense(3)(inp))))
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = m.get_weights()
    ref = (x @ w[0] + w[1]) @ w[2] + w[3]
    np.testing.assert_allclose(m.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-6)
    m.compile("sgd", "mse")
    m.fit(x, np.zeros((4, 2)), verbose=0)
    assert not np.array_equal(w[0], m.get_weights()[0])   # the gradient went through Identity


def _lambda_model():
    inp = fastnn.Input((4,))
    h = L.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(L.Dense(4, name="d")(inp))
    return fastnn.Model(inp, L.Lambda(lambda t, k=3: t[:, :k], name="first3")(h))


def test_lambda_forward_shape_and_training_refusal(rng):
    m = _lambda_model()
    assert m.output_shape == (None, 3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    w = m.get_weights()
    np.testing.assert_allclose(m.predict(x, verbose=0), ((x @ w[0] + w[1]) * 2 + 1)[:, :3], rtol=1e-5, atol=1e-6)
    m.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="cannot differentiate"):
        m.fit(x, np.zeros((5, 3)), verbose=0)


def test_lambda_loads_only_with_safe_mode_false(rng, tmp_path):
    m = _lambda_model()
    path = tmp_path / "lam.keras"
    m.save(path)
    with pytest.raises(ValueError, match="safe_mode=False"):
        fastnn.models.load_model(path)
    back = fastnn.models.load_model(path, safe_mode=False)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    # a function given by name in custom_objects loads in safe mode
    def double(t):
        return t * 2.0
    inp = fastnn.Input((2,))
    named = fastnn.Model(inp, L.Lambda(double)(inp))
    named.save(tmp_path / "named.keras")
    got = fastnn.models.load_model(tmp_path / "named.keras", custom_objects={"double": double})
    np.testing.assert_array_equal(got.predict(np.ones((1, 2), np.float32), verbose=0), [[2.0, 2.0]])


def test_sequential_nested_in_sequential(rng):
    inner = fastnn.models.Sequential([L.Dense(5, activation="tanh"), L.Dense(3)], name="inner")
    outer = fastnn.models.Sequential([fastnn.Input((4,)), inner, L.Dense(2)], name="outer")
    assert [l.name for l in outer.layers][0] == "inner" and len(outer.weights) == 6
    x = rng.standard_normal((6, 4)).astype(np.float32)
    w = outer.get_weights()
    ref = (np.tanh(x @ w[0] + w[1]) @ w[2] + w[3]) @ w[4] + w[5]
    np.testing.assert_allclose(outer.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-6)
    outer.compile("adam", "mse")
    outer.fit(x, np.zeros((6, 2)), epochs=2, verbose=0)
    assert not np.array_equal(w[0], inner.get_weights()[0])   # the nested layers trained
    inner.trainable = False
    outer.compile("adam", "mse")
    frozen = inner.get_weights()
    outer.fit(x, np.zeros((6, 2)), epochs=2, verbose=0)
    for a, b in zip(frozen, inner.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make, shapes, out", [
    (lambda: L.Concatenate(axis=1), [(None, 2, 3), (None, 4, 3)], (None, 6, 3)),
    (lambda: L.Concatenate(), [(None, 2, 3), (None, 2, 5)], (None, 2, 8)),
    (lambda: L.Dot(axes=(2, 2)), [(None, 3, 4), (None, 5, 4)], (None, 3, 5)),
    (lambda: L.Dot(axes=1), [(None, 7), (None, 7)], (None, 1)),
    (lambda: L.Average(), [(None, 3)] * 3, (None, 3)),
])
def test_merge_output_shapes(make, shapes, out):
    assert make()([fastnn.Input(s[1:]) for s in shapes]).shape == out


@pytest.mark.parametrize("make, shapes, match", [
    (lambda: L.Concatenate(axis=1), [(None, 2, 3), (None, 4, 5)], "matching shapes"),
    (lambda: L.Dot(axes=1), [(None, 3), (None, 4)], "incompatible"),
    (lambda: L.Multiply(), [(None, 3)], None),
    (lambda: L.Concatenate(axis=0), [(None, 3), (None, 3)], "batch axis"),
])
def test_merge_shape_errors(make, shapes, match):
    layer = make()
    if match is None:   # one input is allowed (Keras merges need >= 1); the result is a copy
        assert layer([fastnn.Input(s[1:]) for s in shapes]).shape == shapes[0]
        return
    with pytest.raises(ValueError, match=match):
        layer([fastnn.Input(s[1:]) for s in shapes])


def test_functional_forms_of_the_merging_layers(rng):
    a, b = fastnn.Input((3,)), fastnn.Input((3,))
    outs = [L.add([a, b]), L.subtract([a, b]), L.multiply([a, b]), L.average([a, b]), L.maximum([a, b]),
            L.minimum([a, b]), L.concatenate([a, b]), L.dot([a, b], axes=1)]
    m = fastnn.Model([a, b], outs)
    x = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(2)]
    got = m.predict(x, verbose=0)
    want = [x[0] + x[1], x[0] - x[1], x[0] * x[1], (x[0] + x[1]) * np.float32(0.5), np.maximum(*x),
            np.minimum(*x), np.concatenate(x, -1), np.sum(x[0] * x[1], axis=1, keepdims=True)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
