"""Each study-notes experiment in its tiny setting: PNG and JSON written, numbers sane."""
import json
import math
import os

import numpy as np
import pytest

from fastnn.experiments import NAMES


@pytest.fixture(autouse=True)
def _data(mnist_dir, monkeypatch, require):
    require("matplotlib")
    monkeypatch.setenv("FASTNN_DATA", mnist_dir)


def finite(xs):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in np.ravel(xs))


def run(name, tmp_path):
    import importlib
    result = importlib.import_module(f"fastnn.experiments.{name}").run(size="tiny", out=str(tmp_path))
    assert os.path.getsize(result["png"]) > 10_000  # a real figure, not an empty canvas
    with open(result["json"]) as f:
        data = json.load(f)
    assert data["experiment"] == name and data["size"] == "tiny"
    assert data["dataset"] == "MNIST"
    assert data["seconds"] > 0
    return data


def test_optimizers(tmp_path):
    d = run("optimizers", tmp_path)
    assert len(d["losses"]) == 9
    for label, ls in d["losses"].items():
        assert len(ls) == d["iterations"] and finite(ls), label
        assert 0 <= d["test_accuracy_1000"][label] <= 1
    # the first loss of a 10-class softmax net is about ln(10)
    assert all(1.0 < ls[0] < 5.0 for ls in d["losses"].values())


def test_init(tmp_path):
    d = run("init", tmp_path)
    assert len(d["histogram_stats"]) == 12
    for key, s in d["histogram_stats"].items():
        assert len(s["mean"]) == d["layers"] and finite(s["std"]), key
    # the textbook facts: std 0.01 sigmoid collapses to 0.5; std 1 sigmoid saturates
    sig = d["histogram_stats"]["sigmoid/std=0.01"]
    assert abs(sig["mean"][-1] - 0.5) < 0.01 and sig["std"][-1] < 0.01
    assert d["histogram_stats"]["sigmoid/std=1"]["std"][0] > 0.3
    assert all(len(ls) == d["iterations"] and finite(ls) for ls in d["losses"].values())


def test_vanishing(tmp_path):
    d = run("vanishing", tmp_path)
    for label, g in d["gradient_norms"].items():
        assert len(g) == d["depth"] + 1 and finite(g) and min(g) >= 0, label
    # with std 0.01 sigmoid, the gradient at the first layer is far below the last
    g = d["gradient_norms"]["sigmoid, std=0.01"]
    assert g[0] < 1e-3 * g[-1]
    assert all(finite(ls) for ls in d["losses"].values())


def test_batchnorm(tmp_path):
    d = run("batchnorm", tmp_path)
    assert len(d["results"]) == d["scales"]
    for r in d["results"]:
        for k in ("batchnorm", "plain"):
            assert len(r[k]) == d["epochs"] and all(0 <= a <= 1 for a in r[k])


def test_overfitting(tmp_path):
    d = run("overfitting", tmp_path)
    assert len(d["results"]) == 3
    for label, r in d["results"].items():
        assert len(r["train"]) == len(r["test"]) == d["epochs"], label
        assert all(0 <= a <= 1 for a in r["train"] + r["test"])


def test_search(tmp_path, require):
    require("optuna")
    d = run("search", tmp_path)
    assert d["methods"] == ["grid", "random", "bayesian"] and d["budget"] == 4  # tiny: a 2 x 2 grid
    for method in d["methods"]:
        (r,) = d["results"][method]                                                # tiny: one seed
        assert len(r["trials"]) == d["budget"]                                     # an equal budget
        for t in r["trials"]:
            assert 1e-6 <= t["lr"] <= 1e-2 and 1e-8 <= t["weight_decay"] <= 1e-4
            assert 0 <= t["val"] <= 1
        assert r["best_so_far"] == list(np.maximum.accumulate([t["val"] for t in r["trials"]]))
        assert d["summary"][method]["final_best_mean"] == r["best_so_far"][-1]
    corners = {(t["lr"], t["weight_decay"]) for t in d["results"]["grid"][0]["trials"]}
    assert corners == {(1e-6, 1e-8), (1e-6, 1e-4), (1e-2, 1e-8), (1e-2, 1e-4)}  # the grid walks every point
    assert d["n_train"] + d["n_val"] == d["n_samples"]


def test_deepcnn(tmp_path):
    import fastnn.experiments.deepcnn as deepcnn
    result = deepcnn.run(size="tiny", out=str(tmp_path))
    assert os.path.getsize(result["png"]) > 10_000
    with open(result["json"]) as f:
        d = json.load(f)
    assert d["experiment"] == "deepcnn" and d["dataset"].split()[0] in ("Fashion-MNIST", "MNIST")
    assert set(d["results"]) == {"AlexNet-style", "small ResNet"}
    for label, r in d["results"].items():
        assert len(r["seconds"]) == len(r["test_accuracy"]) == d["epochs"], label
        assert r["seconds"] == sorted(r["seconds"]) and r["seconds"][0] > 0
        assert all(0 <= a <= 1 for a in r["test_accuracy"]) and finite(r["train_loss"])
    # the notes' shapes: 5 conv + 3 pooling + 3 dense with dropout; residual adds in the ResNet
    kinds = [type(layer).__name__ for layer in deepcnn.alexnet_style().layers]
    assert (kinds.count("Conv2D"), kinds.count("MaxPooling2D"), kinds.count("Dense"), kinds.count("Dropout")) == \
        (5, 3, 3, 2)
    assert sum(type(layer).__name__ == "Add" for layer in deepcnn.small_resnet().layers) == 6


def test_memory(tmp_path):
    import importlib
    result = importlib.import_module("fastnn.experiments.memory").run(size="tiny", out=str(tmp_path))
    assert os.path.getsize(result["png"]) > 10_000
    with open(result["json"]) as f:
        d = json.load(f)
    assert d["experiment"] == "memory" and d["size"] == "tiny" and d["chance"] == 1 / d["k"]
    for cell in ("SimpleRNN", "LSTM", "GRU"):
        assert len(d["cells"][cell]) == len(d["lengths"]) and all(0 <= a <= 1 for a in d["cells"][cell])
    for o in ("rmsprop", "adam"):
        r = d["optimizers"][o]
        assert len(r["accuracy"]) == len(d["lengths"]) and len(r["loss"]) == d["epochs"] and finite(r["loss"])
    # the data: the label is the first token
    from fastnn.experiments.memory import make_data
    x, y = make_data(50, 7, 5, np.random.default_rng(0))
    assert x.shape == (50, 7, 5) and np.array_equal(y.argmax(1), x[:, 0].argmax(1))


def test_every_experiment_is_tested():
    assert set(NAMES) == {"optimizers", "init", "vanishing", "batchnorm", "overfitting", "search", "deepcnn", "memory"}


def test_bad_size(tmp_path):
    from fastnn.experiments import optimizers
    with pytest.raises(ValueError, match="'full' or 'tiny'"):
        optimizers.run(size="huge", out=str(tmp_path))
