"""Models in steady state: a training step (the batch gathered as fit gathers it, forward,
backward, optimizer, metrics) and an inference batch allocate no array larger than 64 KiB, not
even one freed before the step ends (the peak counts). The benchmark models (bench/peers.py's
M1, M2, M3) take every convolution path (direct kernels for the first layers, Winograd for the
3x3 ones, the fused inference runs); the small convnet adds Dropout and BatchNormalization on
a flat tensor; the threaded one the split Dense GEMMs and the threaded conv shares."""
import gc
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import layers as L
from fastnn.kernels import conv
from fastnn.models import memplan


def _m1():
    return [L.Input((784,)), L.Dense(1024, activation="relu"), L.Dense(1024, activation="relu"),
            L.Dense(10, activation="softmax")]


def _m2():
    return [L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
            L.Dense(10, activation="softmax")]


def _m3():
    layers = [L.Input((32, 32, 3))]
    for f in (32, 64):
        for _ in range(2):
            layers += [L.Conv2D(f, 3, padding="same"), L.BatchNormalization(), L.ReLU()]
        layers.append(L.MaxPooling2D(2))
    return layers + [L.Flatten(), L.Dense(256, activation="relu"), L.Dense(10, activation="softmax")]


def _small_convnet():
    return [L.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
            L.Dropout(0.5), L.BatchNormalization(), L.Dense(10, activation="softmax")]


def _threaded():
    """The paths model.profile points at: split Dense GEMMs, threaded conv shares, fused ReLU."""
    return [L.Input((12, 12, 3)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
            L.Dense(512, activation="relu"), L.Dense(10, activation="softmax")]


def _big_allocations(fn):
    """What fn() allocates beyond what was live before: the live blocks > 64 KiB at its end,
    and its peak (a buffer allocated and freed inside one step counts there)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    big = [str(s) for s in snap.statistics("traceback") if s.size > 64 * 1024][:3]
    return big + ([f"peak {peak} bytes above the start"] if peak > 64 * 1024 else [])


def _big_inference_allocations(m, xs):
    """_big_allocations of two inference passes over the inputs xs: the planned one (predict's:
    shared buffers) and the plain one."""
    def infer():
        for _ in range(2):
            with conv.blas_pinned(), memplan.planned(m, "infer", xs):
                m._forward(xs, False)
            with conv.blas_pinned():
                m._forward(xs, False)
    return _big_allocations(infer)


@pytest.mark.parametrize("build, shape, batch", [(_m1, (784,), 32), (_m2, (28, 28, 1), 32), (_m3, (32, 32, 3), 32),
                                                  (_small_convnet, (8, 8, 1), 64), (_threaded, (12, 12, 3), 128)],
                         ids=["M1", "M2", "M3", "small_convnet", "threaded"])
def test_models_allocate_nothing_large(rng, build, shape, batch):
    assert conv.WINOGRAD and conv.DIRECT is None     # the default paths
    m = fastnn.models.Sequential(build())
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((2 * batch, *shape), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 2 * batch)]
    if build is not _m1:
        assert m._chains     # inference runs the fused conv chains
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0)   # warm up: buffers, workspaces, slots
    idx = np.arange(batch)
    for _ in range(2):
        bx, by, _ = m._batch_bufs("train", [x, y, None], idx)
        m._train_step([bx], by, None)
        m.predict_on_batch(x[:batch])
        with conv.blas_pinned():
            m._forward([x[:batch]], False)

    def steps():
        for _ in range(2):
            bx, by, _ = m._batch_bufs("train", [x, y, None], idx)
            m._train_step([bx], by, None)
    assert not (big := _big_allocations(steps)), big
    x = x[:batch]

    assert not (big := _big_inference_allocations(m, [x])), big


def _m4():
    return [L.Input((28, 28)), L.LSTM(128), L.Dense(10, activation="softmax")]


def _m5():
    return [L.Input((200,), dtype="int32"), L.Embedding(20000, 128), L.Bidirectional(L.LSTM(64)),
            L.Dense(1, activation="sigmoid")]


def _masked_gru():
    return [L.Input((30,), dtype="int32"), L.Embedding(500, 16, mask_zero=True),
            L.GRU(24, return_sequences=True, dropout=0.2, recurrent_dropout=0.2),
            L.GlobalAveragePooling1D(), L.Dense(10, activation="softmax")]


@pytest.mark.parametrize("build", [_m4, _m5, _masked_gru], ids=["M4", "M5", "masked_gru"])
def test_recurrent_models_allocate_nothing_large(rng, build):
    """bench/peers.py's M4 and M5 (and a masked GRU with dropout): the same bound."""
    m = fastnn.models.Sequential(build())
    binary = build is _m5
    m.compile(optimizer="adam", loss="binary_crossentropy" if binary else "categorical_crossentropy")
    shape = m.input_shape[1:]
    if m.layers[0].__class__.__name__ == "Embedding":
        x = rng.integers(0, m.layers[0].input_dim, (32, *shape)).astype(np.int32)
        x[:, :5] = 0
    else:
        x = rng.random((32, *shape), dtype=np.float32)
    y = (rng.integers(0, 2, (32, 1)).astype(np.float32) if binary
         else np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)])
    for _ in range(3):
        m.train_on_batch(x, y)
        m.predict_on_batch(x)
        with conv.blas_pinned():
            m._forward(x if isinstance(x, list) else [x], False)

    def steps():
        for _ in range(2):
            m._train_step([x], y, None)
    assert not (big := _big_allocations(steps)), big

    assert not (big := _big_inference_allocations(m, [x])), big


def _graph():
    """A residual block with a shared layer, a nested model and two outputs (two losses)."""
    a, b = L.Input((16, 16, 8)), L.Input((16, 16, 8))
    conv = L.Conv2D(8, 3, padding="same")
    x = conv(a)                                                   # read by the block and its shortcut
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x)))
    h = L.ReLU()(L.Add()([x, L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(h))]))
    h2 = conv(b)                                                  # the shared conv's second call
    i = L.Input((16, 16, 8))
    inner = fastnn.Model(i, L.GlobalAveragePooling2D()(L.Conv2D(8, 1, activation="relu")(i)))
    z = L.Concatenate()([inner(h), inner(h2)])
    return fastnn.Model([a, b], [L.Dense(10, activation="softmax")(z), L.Dense(1)(z)])


def test_graph_model_allocates_nothing_large(rng):
    m = _graph()
    m.compile(optimizer="adam", loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
              metrics=[["accuracy"], ["mae"]])
    x = [rng.random((32, 16, 16, 8), dtype=np.float32) for _ in range(2)]
    y = [np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)], rng.random((32, 1), dtype=np.float32)]
    assert m._chains and m._shared_grads
    for _ in range(3):
        m.train_on_batch(x, y)
        m.predict_on_batch(x)
        with conv.blas_pinned():
            m._forward(x if isinstance(x, list) else [x], False)

    def steps():
        for _ in range(2):
            m._train_step(x, y, [None, None])
    assert not (big := _big_allocations(steps)), big

    assert not (big := _big_inference_allocations(m, x)), big
