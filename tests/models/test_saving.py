"""model.save / load_model (.keras zip of JSON + .npy), save_weights / load_weights (.weights.h5)."""
import io
import json
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import layers as L
from fastnn.models import Model, Sequential, load_model


def _model():
    m = Sequential([L.Input((6, 6, 1)), L.Conv2D(3, 3, activation="relu"), L.BatchNormalization(),
                    L.MaxPooling2D(), L.Flatten(), L.Dropout(0.2), L.Dense(4, activation="softmax")])
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return m


def _data(rng, n=32):
    x = rng.standard_normal((n, 6, 6, 1)).astype(np.float32)
    return x, np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]


def test_keras_file_round_trip_with_optimizer_state(rng, tmp_path):
    x, y = _data(rng)
    m = _model()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    m.save(path)
    m2 = load_model(path)
    assert [type(l) for l in m2.layers] == [type(l) for l in m.layers]
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))
    assert m2.optimizer.iterations == m.optimizer.iterations == 8
    # the optimizer state came along: one more identical step gives identical weights
    fastnn._random.set_seed(3)
    m.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    fastnn._random.set_seed(3)
    m2.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_keras_file_is_json_and_npy_only(rng, tmp_path):
    m = _model()
    path = tmp_path / "m.keras"
    m.save(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert {"metadata.json", "config.json"} <= set(names)
        assert all(n.endswith((".json", ".npy")) for n in names)
        config = json.loads(z.read("config.json"))
        assert config["class_name"] == "Sequential"
        assert config["compile_config"]["loss"] == "categorical_crossentropy"
        for n in names:
            if n.endswith(".npy"):
                np.load(io.BytesIO(z.read(n)), allow_pickle=False)


def test_load_refuses_pickled_arrays(rng, tmp_path):
    m = _model()
    path = tmp_path / "m.keras"
    m.save(path)
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            if n == "weights/0.npy":
                buf = io.BytesIO()
                np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
                data = buf.getvalue()
            dst.writestr(n, data)
    with pytest.raises(ValueError, match="pickle"):
        load_model(evil)


def test_interrupted_save_keeps_old_file(rng, tmp_path, monkeypatch):
    m = _model()
    path = tmp_path / "m.keras"
    m.save(path)
    before = path.read_bytes()
    import fastnn.models.saving as saving

    def boom(a):
        raise KeyboardInterrupt("interrupted mid-write")
    monkeypatch.setattr(saving, "_npy_bytes", boom)
    with pytest.raises(KeyboardInterrupt):
        m.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]   # no temp file left behind


def test_functional_model_round_trip(rng, tmp_path):
    inp = fastnn.Input((5,))
    out = L.Dense(2, activation="sigmoid")(L.Dense(4, activation="tanh")(inp))
    m = Model(inp, out)
    m.compile("sgd", "binary_crossentropy")
    path = tmp_path / "f.keras"
    m.save(path)
    m2 = load_model(path)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))


def test_weights_h5_layout_and_round_trip(rng, tmp_path, require):
    h5py = require("h5py")
    m = _model()
    path = tmp_path / "w.weights.h5"
    m.save_weights(path)
    with h5py.File(path, "r") as h:   # Keras 3's keys: class names, not layer names (§2.13)
        conv = m.layers[0]
        np.testing.assert_array_equal(h["layers/conv2d/vars/0"][()], conv.get_weights()[0])
        bn = m.layers[1]
        np.testing.assert_array_equal(h["layers/batch_normalization/vars/3"][()], bn.get_weights()[3])
    m2 = _model()
    # same architecture under other layer names: the file still loads (keys are class names)
    assert [l.name for l in m2.layers] != [l.name for l in m.layers]
    m2.load_weights(path)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="weights.h5"):
        m.save_weights(tmp_path / "w.h5")
