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

    def steps():
        for _ in range(2):
            bx, by, _ = m._batch_bufs("train", [x, y, None], idx)
            m._train_step([bx], by, None)
    assert not (big := _big_allocations(steps)), big
    x = x[:batch]

    def infer():
        for _ in range(2):
            with conv.blas_pinned():
                m._forward([x], False)
    assert not (big := _big_allocations(infer)), big
