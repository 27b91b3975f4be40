"""model.profile: the per-layer table of a training step (structure, shares, FLOP counts)."""
import numpy as np
import pytest

from fastnn import layers as L
from fastnn.models import Sequential


def _convnet():
    model = Sequential([L.Input((10, 9, 3)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2),
                        L.Flatten(), L.Dropout(0.5), L.Dense(5, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(rng, n=16):
    x = rng.random((n, 10, 9, 3), dtype=np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
    return x, y


def test_rows_structure_and_shares(rng):
    model = _convnet()
    x, y = _data(rng)
    lines = []
    rows = model.profile(x, y, steps=3, batch_size=8, print_fn=lines.append)
    names = [r["name"] for r in rows]
    assert names == [l.name for l in model.layers] + ["loss", "optimizer", "other", "total"]
    for r in rows:
        assert set(r) >= {"name", "type", "output_shape", "forward_ms", "backward_ms", "share", "gflops"}
        assert r["forward_ms"] >= 0 and r["backward_ms"] >= 0 and r["share"] >= 0
    by = {r["name"]: r for r in rows}
    conv, dense = model.layers[0], model.layers[-1]
    assert by[conv.name]["type"] == "Conv2D" and by[conv.name]["output_shape"] == (8, 8, 7, 4)
    assert by[dense.name]["output_shape"] == (8, 5)
    assert by[model.layers[2].name]["gflops"] is None      # Flatten does no arithmetic
    assert by[conv.name]["gflops"] > 0 and by[dense.name]["gflops"] > 0
    assert sum(r["share"] for r in rows[:-1]) == pytest.approx(1.0, abs=1e-6)
    assert by["total"]["step_ms"] > 0
    assert any("conv2d" in line for line in lines) and lines[-1].startswith("total")


def test_flop_counts(rng):
    model = _convnet()
    x, y = _data(rng)
    rows = {r["name"]: r for r in model.profile(x, y, steps=1, batch_size=8, print_fn=None)}
    conv, dense = model.layers[0], model.layers[-1]
    # first layer: forward GEMM 2*M*K*F (M = 8*8*7 pixels, K = 3*3*3) plus dW only (no dx)
    f_conv = 2 * (8 * 8 * 7) * 27 * 4
    assert rows[conv.name]["flops"] == 2 * f_conv
    # dense: x (8, 4*3*4=48) @ (48, 5): forward, dW and dx
    f_dense = 2 * 8 * 48 * 5
    assert rows[dense.name]["flops"] == 3 * f_dense
    assert rows["total"]["flops"] == 2 * f_conv + 3 * f_dense


def test_profile_leaves_model_untouched(rng):
    model = _convnet()
    x, y = _data(rng)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    it = model.optimizer.iterations
    model.profile(x, y, steps=2, batch_size=8, print_fn=None)
    assert model.optimizer.iterations == it
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model._timer is None
    # training afterwards behaves as usual
    model.train_on_batch(x[:8], y[:8])


def test_profile_checks_arguments(rng):
    model = _convnet()
    x, y = _data(rng)
    with pytest.raises(ValueError, match="steps"):
        model.profile(x, y, steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.profile(x, y, batch_size=-1)
    uncompiled = Sequential([L.Input((3,)), L.Dense(2)])
    with pytest.raises(RuntimeError, match="compile"):
        uncompiled.profile(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32))

