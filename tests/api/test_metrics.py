"""fastnn.metrics against Keras 3: several update_state calls on random data, then result()."""
import os
import re

import numpy as np
import pytest

import fastnn.metrics as M

os.environ.setdefault("KERAS_BACKEND", "torch")


def _batches(kind, n_batches=3, n=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "onehot6":
        kind, k = "onehot", 6
    out = []
    for _ in range(n_batches):
        sw = rng.uniform(0, 2, n).astype(np.float32)
        if kind == "binary":
            yt = rng.integers(0, 2, (n, 1)).astype(np.float32)
            yp = np.clip(yt * 0.3 + rng.uniform(0, 0.7, (n, 1)), 0, 1).astype(np.float32)
            yp[0, 0] = 0.5  # the strict threshold
        elif kind == "multilabel":
            yt = rng.integers(0, 2, (n, k)).astype(np.float32)
            yp = rng.uniform(0, 1, (n, k)).astype(np.float32)
        elif kind == "onehot":
            yt = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
            yp = rng.dirichlet(np.ones(k), n).astype(np.float32)
        elif kind == "sparse":
            yt = rng.integers(0, k, n)
            yp = rng.dirichlet(np.ones(k), n).astype(np.float32)
        elif kind == "sparse2":
            yt = rng.integers(0, k, (n, 1))
            yp = rng.dirichlet(np.ones(k), n).astype(np.float32)
        elif kind == "positive":
            yt, yp = rng.uniform(0, 2, (n, k)).astype(np.float32), rng.uniform(0.1, 2, (n, k)).astype(np.float32)
        elif kind == "labels":
            yt, yp = rng.integers(0, 3, (n, 1)).astype(np.float32), rng.integers(0, 3, (n, 1)).astype(np.float32)
        else:
            yt, yp = rng.normal(size=(n, k)).astype(np.float32), rng.normal(size=(n, k)).astype(np.float32)
        out.append((yt, yp, sw))
    return out


CASES = [  # (class, kwargs, data)
    ("Accuracy", {}, "labels"), ("BinaryAccuracy", {}, "binary"), ("BinaryAccuracy", {"threshold": 0.7}, "binary"),
    ("CategoricalAccuracy", {}, "onehot"), ("SparseCategoricalAccuracy", {}, "sparse"),
    ("SparseCategoricalAccuracy", {}, "sparse2"), ("TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"), ("TopKCategoricalAccuracy", {}, "onehot6"),
    ("Precision", {}, "binary"), ("Recall", {}, "binary"), ("Precision", {"thresholds": [0.3, 0.6]}, "multilabel"),
    ("Recall", {"thresholds": 0.4}, "multilabel"), ("Precision", {"top_k": 2}, "multilabel"),
    ("Recall", {"class_id": 1}, "multilabel"), ("Precision", {"top_k": 2, "class_id": 2}, "multilabel"),
    ("TruePositives", {}, "binary"), ("FalsePositives", {"thresholds": [0.2, 0.8]}, "binary"),
    ("TrueNegatives", {}, "multilabel"), ("FalseNegatives", {}, "binary"),
    ("AUC", {}, "binary"), ("AUC", {"curve": "PR"}, "binary"), ("AUC", {"num_thresholds": 7}, "multilabel"),
    ("AUC", {"curve": "PR", "summation_method": "minoring"}, "multilabel"),
    ("AUC", {"summation_method": "majoring"}, "binary"), ("AUC", {"thresholds": [0.1, 0.5, 0.8]}, "binary"),
    ("AUC", {"multi_label": True}, "multilabel"), ("AUC", {"multi_label": True, "curve": "PR"}, "multilabel"),
    ("AUC", {"from_logits": True}, "real_binary"), ("AUC", {"label_weights": [0.1, 0.2, 0.3, 0.4]}, "multilabel"),
    ("AUC", {"curve": "PRGAIN"}, "binary"),
    ("F1Score", {}, "onehot"), ("F1Score", {"average": "macro"}, "onehot"),
    ("F1Score", {"average": "micro", "threshold": 0.3}, "multilabel"),
    ("FBetaScore", {"beta": 2.0, "average": "weighted"}, "multilabel"),
    ("MeanSquaredError", {}, "real"), ("MeanAbsoluteError", {}, "real"), ("MeanAbsolutePercentageError", {}, "real"),
    ("MeanSquaredLogarithmicError", {}, "positive"), ("RootMeanSquaredError", {}, "real"), ("Hinge", {}, "binary"),
    ("SquaredHinge", {}, "real"), ("CategoricalHinge", {}, "onehot"), ("KLDivergence", {}, "onehot"),
    ("Poisson", {}, "positive"), ("CosineSimilarity", {}, "real"), ("LogCoshError", {}, "real"),
    ("BinaryCrossentropy", {}, "binary"), ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "real"),
    ("CategoricalCrossentropy", {}, "onehot"), ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "onehot"),
    ("SparseCategoricalCrossentropy", {}, "sparse"), ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse"),
]


@pytest.mark.keras
@pytest.mark.parametrize("cls,kw,kind", CASES, ids=[f"{c}{k}-{d}" for c, k, d in CASES])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_keras(keras, cls, kw, kind, weighted):
    batches = _batches("binary" if kind == "real_binary" else kind)
    if kind == "real_binary":
        batches = [(yt, (yp - 0.5) * 6, sw) for yt, yp, sw in batches]
    ours, theirs = getattr(M, cls)(**kw), getattr(keras.metrics, cls)(**kw)
    for yt, yp, sw in batches:
        w = sw if weighted else None
        ours.update_state(yt, yp, sample_weight=w)
        theirs.update_state(yt, yp, sample_weight=w)
    want = keras.ops.convert_to_numpy(theirs.result())
    np.testing.assert_allclose(ours.result(), want, rtol=2e-5, atol=2e-6)
    assert ours.name == re.sub(r"_\d+$", "", theirs.name)  # Keras numbers repeated auto-names
    ours.reset_state()
    ours.update_state(*batches[0][:2])
    theirs.reset_state()
    theirs.update_state(*batches[0][:2])
    np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=2e-5, atol=2e-6)


@pytest.mark.keras
@pytest.mark.parametrize("name", ["accuracy", "acc", "mse", "mae", "auc", "precision", "recall", "binary_accuracy",
                                  "categorical_accuracy", "top_k_categorical_accuracy", "kld", "logcosh",
                                  "sparse_categorical_accuracy", "f1_score", "root_mean_squared_error"])
def test_string_names_resolve_like_keras(keras, name):
    from keras.src.trainers.compile_utils import get_metric
    kind = {"auc": "binary", "precision": "binary", "recall": "binary", "binary_accuracy": "binary",
            "categorical_accuracy": "onehot", "top_k_categorical_accuracy": "onehot6", "kld": "onehot",
            "f1_score": "onehot", "sparse_categorical_accuracy": "sparse", "accuracy": "sparse", "acc": "onehot"}
    batches = _batches(kind.get(name, "real"))
    yt, yp, _ = batches[0]
    theirs = get_metric({"logcosh": "log_cosh_error", "kld": "kl_divergence"}.get(name, name), keras.ops.convert_to_tensor(yt),
                        keras.ops.convert_to_tensor(yp))
    ours = M.resolve(name, yt, yp, None)
    for yt, yp, sw in batches:
        ours.update_state(yt, yp, sw)
        theirs.update_state(yt, yp, sw)
    np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=2e-5, atol=2e-6)
    assert ours.name == name


def test_resolve_picks_by_shape():
    p3, p1 = np.zeros((4, 3)), np.zeros((4, 1))
    assert isinstance(M.resolve("accuracy", np.zeros(4), p3), M.SparseCategoricalAccuracy)
    assert isinstance(M.resolve("acc", np.zeros((4, 1)), p3), M.SparseCategoricalAccuracy)
    assert isinstance(M.resolve("accuracy", np.zeros((4, 3)), p3), M.CategoricalAccuracy)
    assert isinstance(M.resolve("accuracy", np.zeros((4, 1)), p1), M.BinaryAccuracy)
    assert isinstance(M.resolve("crossentropy", np.zeros((4, 1)), p1), M.BinaryCrossentropy)
    assert isinstance(M.resolve("ce", np.zeros(4), p3), M.SparseCategoricalCrossentropy)
    assert isinstance(M.resolve("ce", p3, p3), M.CategoricalCrossentropy)
    assert M.resolve("acc", np.zeros(4), p3).name == "acc"


def test_mean_sum_and_round_trip():
    m, s = M.Mean(), M.Sum()
    m.update_state([1.0, 2.0, 3.0], sample_weight=[1.0, 0.0, 1.0])
    m.update_state(np.array([[4.0, 6.0]]))
    s.update_state([1.0, 2.0], sample_weight=[2.0, 0.5])
    assert float(m.result()) == pytest.approx((1 + 3 + 5) / 3) and float(s.result()) == pytest.approx(3.0)
    m.reset_state()
    assert float(m.result()) == 0.0
    for obj in [M.AUC(num_thresholds=50, curve="PR"), M.Precision(thresholds=[0.2, 0.4], class_id=1),
                M.BinaryAccuracy(threshold=0.3), M.FBetaScore(beta=0.5, average="macro"),
                M.SparseTopKCategoricalAccuracy(k=3), M.CategoricalCrossentropy(label_smoothing=0.1)]:
        back = M.deserialize(M.serialize(obj))
        assert type(back) is type(obj) and back.get_config() == obj.get_config()
        assert M.get(obj) is obj
    custom = M.get(lambda yt, yp: np.abs(yt - yp))
    custom.update_state(np.zeros(3), np.ones(3))
    assert float(custom.result()) == 1.0


def test_errors():
    with pytest.raises(ValueError, match="Did you mean") as e:
        M.get("presicion")
    assert "'precision'" in str(e.value)
    with pytest.raises(ValueError, match="curve"):
        M.AUC(curve="DET")
    with pytest.raises(ValueError, match="num_thresholds"):
        M.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="average"):
        M.F1Score(average="mean")
    with pytest.raises(ValueError, match="beta"):
        M.FBetaScore(beta=2)
    with pytest.raises(ValueError, match="2D"):
        M.F1Score().update_state(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="metric"):
        M.get(3)


def test_confusion_counts_equal_brute_force_and_nan_is_negative():
    rng = np.random.default_rng(9)
    yt, yp, w = rng.integers(0, 2, 200), rng.uniform(0, 1, 200), rng.uniform(0, 2, 200)
    yp[:5] = np.nan
    yp[5:10] = 0.5  # exactly on a threshold: strict >, so negative there
    thr = [0.0, 0.25, 0.5, 0.75]
    tp, fp, tn, fn = M._confusion(yt, yp, thr, w)
    for i, t in enumerate(thr):
        pos = np.nan_to_num(yp, nan=-1) > t
        assert tp[i] == pytest.approx(np.sum(w * (pos & (yt == 1))))
        assert fp[i] == pytest.approx(np.sum(w * (pos & (yt == 0))))
        assert tn[i] == pytest.approx(np.sum(w * (~pos & (yt == 0))))
        assert fn[i] == pytest.approx(np.sum(w * (~pos & (yt == 1))))
