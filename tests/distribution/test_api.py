"""fastnn.distribution in one process: Keras's names, the same script unchanged, the helpers."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn as keras
from fastnn import distribution
from fastnn.distribution import replica as rp


@pytest.fixture(autouse=True)
def no_distribution():
    yield
    distribution.set_distribution(None)


def test_one_process_api_with_keras_names():
    distribution.initialize()                       # alone: nothing to join
    assert distribution.process_count() == 1 and distribution.process_index() == 0
    assert distribution.list_devices() == ["cpu:0"] == distribution.list_devices("cpu")
    assert distribution.get_device_count() == 1
    with pytest.raises(ValueError, match="CPUs only"):
        distribution.list_devices("gpu")
    dp = distribution.DataParallel()
    assert dp.num_model_replicas == 1 and dp.batch_dim_name == "batch"
    assert distribution.distribution() is None
    with dp.scope():
        assert distribution.distribution() is dp
    assert distribution.distribution() is None
    distribution.set_distribution(dp)
    assert distribution.distribution() is dp
    with pytest.raises(TypeError, match="DataParallel or None"):
        distribution.set_distribution("data_parallel")
    mesh = distribution.DeviceMesh((1,), ["batch"])
    assert distribution.DataParallel(device_mesh=mesh).device_mesh is mesh
    with pytest.raises(ValueError, match="does not match"):
        distribution.DeviceMesh((2,), ["batch"])
    with pytest.raises(ValueError, match="one replica per process"):
        distribution.DataParallel(devices=["cpu:0", "cpu:1"])
    with pytest.raises(NotImplementedError, match="auto_shard_dataset=False"):
        distribution.DataParallel(auto_shard_dataset=False)
    with pytest.raises(ValueError, match="gave this process index 0"):
        distribution.initialize(num_processes=1, process_id=3)


def _fit(dp):
    keras.utils.set_random_seed(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(),
                              L.ReLU(), L.Flatten(), L.Dropout(0.2), L.Dense(3, activation="softmax")])
    model.compile("adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6, 6, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 50)]
    distribution.set_distribution(dp)
    h = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.2)
    return model.get_weights(), h.history, model.predict(x, verbose=0)


def test_same_script_runs_unchanged_in_one_process():
    w0, h0, p0 = _fit(None)
    w1, h1, p1 = _fit(distribution.DataParallel())
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)        # one process: exactly plain training
    assert h0 == h1
    np.testing.assert_array_equal(p0, p1)


def test_import_does_not_load_mpi_and_a_missing_mpi4py_names_the_extra(tmp_path):
    code = ("import sys; import fastnn; from fastnn import distribution; "
            "distribution.process_count(); assert 'mpi4py' not in sys.modules; "
            "sys.modules['mpi4py'] = None; import os; os.environ['PMI_SIZE'] = '2'; "
            "distribution._state['initialized'] = False\n"
            "try:\n    distribution.process_count()\nexcept ImportError as e:\n    print(e)")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)   # the installed package, not ./fastnn
    assert out.returncode == 0, out.stderr
    assert 'pip install "fastnn[mpi]"' in out.stdout


def test_split_counts_give_the_first_processes_the_extra_rows():
    assert rp.split_counts(10, 4) == [3, 3, 2, 2]
    assert rp.split_counts(1, 3) == [1, 0, 0]
    assert rp.split_counts(0, 2) == [0, 0]
    for n in range(40):
        for size in range(1, 6):
            c = rp.split_counts(n, size)
            assert sum(c) == n and max(c) - min(c) <= 1 and c == sorted(c, reverse=True)


def test_metric_states_are_found_and_summed_over_processes():
    # two "processes" update their halves; summing the detected states gives the whole
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 1, 0, 2]]
    p = np.random.default_rng(1).random((6, 3)).astype(np.float32)
    for make in (lambda: keras.metrics.CategoricalAccuracy(), lambda: keras.metrics.AUC(),
                 lambda: keras.metrics.Precision(), lambda: keras.metrics.F1Score(average="macro"),
                 lambda: keras.metrics.MeanSquaredError()):
        whole, a, b = make(), make(), make()
        whole.update_state(y, p)
        a.update_state(y[:4], p[:4])
        b.update_state(y[4:], p[4:])
        names = rp._state_names(a)
        assert names, type(a).__name__
        for k in names:
            setattr(a, k, rp._sum_states([getattr(a, k), getattr(b, k)]))
        np.testing.assert_allclose(a.result(), whole.result(), rtol=1e-6, err_msg=type(a).__name__)


class _Comm:
    rank, size = 0, 2


def test_gradient_buckets_close_at_layer_boundaries_once_final():
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((8,)), L.Dense(64), L.Dense(64), L.Dense(64), L.Dense(4)])
    model.compile("sgd", loss="mse")
    model.train_on_batch(np.zeros((2, 8), np.float32), np.zeros((2, 4), np.float32))
    seg = model._arena.segments
    replica = type("R", (), {"comm": _Comm(), "phantom": False})()
    b = rp.GradientBuckets(replica, model, bucket_bytes=4 * 64 * 65)
    # nodes 3, 2, 1 finish in turn; a bucket closes once it holds >= 64*65 values of whole
    # layers (the small last layer rides with node 2's), node 0 is left for after backward
    assert b.cuts == {2: (int(seg[4]), int(seg[8])), 1: (int(seg[2]), int(seg[4]))}
    assert b.last == (0, int(seg[2]))
    assert rp.GradientBuckets(replica, model, bucket_bytes=0).cuts == {}
