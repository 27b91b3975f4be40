"""fastnn.losses against Keras 3 (values, reductions, sample weights), numerical gradients, errors."""
import os

import numpy as np
import pytest

import fastnn.losses as L

os.environ.setdefault("KERAS_BACKEND", "torch")


def _data(kind, shape=(6, 5), seed=0, saturate=True):
    """(y_true, y_pred) float32 of `kind`; saturate puts entries on Keras's clip bounds/kinks."""
    rng = np.random.default_rng(seed)
    k = shape[-1]
    if kind == "prob":        # rows of probabilities (a few saturated entries to hit the clipping)
        p = rng.dirichlet(np.ones(k), size=shape[:-1]).astype(np.float32)
        if saturate:
            p[0, 0], p[0, 1:] = 1.0, 0.0
        yt = np.eye(k, dtype=np.float32)[rng.integers(0, k, shape[:-1])]
        return yt, p
    if kind == "binary":
        p = rng.uniform(0.01, 0.99, shape).astype(np.float32)
        if saturate:
            p[0, 0], p[1, 0] = 0.0, 1.0
        return rng.integers(0, 2, shape).astype(np.float32), p
    if kind == "logits":
        yt = np.eye(k, dtype=np.float32)[rng.integers(0, k, shape[:-1])]
        return yt, rng.normal(0, 3, shape).astype(np.float32)
    if kind == "positive":
        return rng.uniform(0, 3, shape).astype(np.float32), rng.uniform(0.1, 3, shape).astype(np.float32)
    if kind == "signed":
        return rng.choice([-1.0, 1.0], shape).astype(np.float32), rng.normal(0, 1.5, shape).astype(np.float32)
    yt, yp = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    if saturate:
        yt[0, 0] = 0.0  # mape's max(|y|, eps)
    return yt, yp


# (class name, kwargs, data kind)
CASES = [
    ("MeanSquaredError", {}, "real"), ("MeanAbsoluteError", {}, "real"),
    ("MeanAbsolutePercentageError", {}, "real"), ("MeanSquaredLogarithmicError", {}, "real"),
    ("Hinge", {}, "binary"), ("Hinge", {}, "signed"), ("SquaredHinge", {}, "binary"),
    ("SquaredHinge", {}, "signed"), ("CategoricalHinge", {}, "logits"), ("KLDivergence", {}, "prob"),
    ("Poisson", {}, "positive"), ("CosineSimilarity", {}, "real"), ("CosineSimilarity", {"axis": 0}, "real"),
    ("Huber", {}, "real"), ("Huber", {"delta": 0.5}, "real"), ("LogCosh", {}, "real"),
    ("BinaryCrossentropy", {}, "binary"), ("BinaryCrossentropy", {"from_logits": True}, "real"),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1, "axis": 0}, "binary"),
    ("CategoricalCrossentropy", {}, "prob"), ("CategoricalCrossentropy", {"from_logits": True}, "logits"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "prob"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.3, "axis": 0}, "logits"),
    ("BinaryFocalCrossentropy", {}, "binary"),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "from_logits": True, "label_smoothing": 0.1,
                                 "gamma": 1.5}, "binary"),
    ("CategoricalFocalCrossentropy", {}, "prob"),
    ("CategoricalFocalCrossentropy", {"from_logits": True, "gamma": 1.5, "alpha": 0.5, "label_smoothing": 0.1},
     "logits"),
    ("Dice", {}, "binary"), ("Dice", {"axis": -1}, "binary"), ("Tversky", {}, "binary"),
    ("Tversky", {"alpha": 0.3, "beta": 0.7, "axis": -1}, "binary"),
]
IDS = [f"{c}{kw}-{k}" for c, kw, k in CASES]
REDUCTIONS = ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]


def _keras_value(keras, cls, kw, yt, yp, sw=None, reduction="sum_over_batch_size"):
    loss = getattr(keras.losses, cls)(reduction=reduction, **kw)
    return keras.ops.convert_to_numpy(loss(yt, yp, sample_weight=sw))


@pytest.mark.keras
@pytest.mark.parametrize("cls,kw,kind", CASES, ids=IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_value_matches_keras(keras, cls, kw, kind, reduction):
    yt, yp = _data(kind)
    sw = np.random.default_rng(5).uniform(0, 2, yt.shape[0]).astype(np.float32)
    if kw.get("axis") == 0 or (cls == "CosineSimilarity" and kw):
        sw = np.random.default_rng(5).uniform(0, 2, yt.shape[1]).astype(np.float32)
    ours = getattr(L, cls)(reduction=reduction, **kw)
    for weight in (None, sw):
        want = _keras_value(keras, cls, kw, yt, yp, weight, reduction)
        got = ours(yt, yp, sample_weight=weight)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
        value, _ = ours.value_and_grad(yt, yp, weight)
        np.testing.assert_allclose(value, want, rtol=2e-5, atol=1e-6)


@pytest.mark.keras
# labels (N, 1) with the class axis first are not a Keras layout: rank 1 only for axis=0
@pytest.mark.parametrize("kw,label_rank", [(kw, r) for kw in [{}, {"from_logits": True}, {"ignore_class": 2}]
                                          for r in (1, 2)] + [({"from_logits": True, "axis": 0}, 1)], ids=str)
def test_sparse_matches_keras(keras, kw, label_rank):
    rng = np.random.default_rng(3)
    yp = rng.uniform(0.01, 1, (6, 4)).astype(np.float32) if not kw.get("from_logits") else \
        rng.normal(0, 2, (6, 4)).astype(np.float32)
    n = 4 if kw.get("axis") == 0 else 6
    labels = rng.integers(0, 6 if kw.get("axis") == 0 else 4, n)
    yt = labels if label_rank == 1 else labels[:, None]
    sw = rng.uniform(0, 2, n).astype(np.float32)
    for red in ("sum_over_batch_size", "sum", "none"):
        k = keras.losses.SparseCategoricalCrossentropy(reduction=red, **kw)
        o = L.SparseCategoricalCrossentropy(reduction=red, **kw)
        for w in (None, sw):
            want = keras.ops.convert_to_numpy(k(yt, yp, sample_weight=w))
            np.testing.assert_allclose(o(yt, yp, sample_weight=w), want, rtol=2e-5, atol=1e-6)


@pytest.mark.keras
@pytest.mark.parametrize("name", ["mse", "mae", "mape", "msle", "kld", "kullback_leibler_divergence", "logcosh",
                                  "log_cosh", "huber", "hinge", "squared_hinge", "categorical_hinge", "poisson",
                                  "cosine_similarity", "binary_crossentropy", "categorical_crossentropy",
                                  "sparse_categorical_crossentropy", "kl_divergence", "MSE", "bce",
                                  "binary_focal_crossentropy", "categorical_focal_crossentropy", "dice", "tversky"])
def test_string_names_give_keras_numbers(keras, name):
    kind = {"kld": "prob", "kullback_leibler_divergence": "prob", "kl_divergence": "prob", "hinge": "binary",
            "squared_hinge": "binary", "poisson": "positive", "binary_crossentropy": "binary", "bce": "binary",
            "categorical_crossentropy": "prob", "binary_focal_crossentropy": "binary",
            "categorical_focal_crossentropy": "prob", "dice": "binary", "tversky": "binary"}.get(name, "real")
    yt, yp = _data(kind)
    if name == "sparse_categorical_crossentropy":
        yt, yp = np.arange(6) % 5, _data("prob")[1]
    # tf.keras's legacy names, gone from Keras 3: compare with the Keras 3 function
    kfn = keras.losses.get({"kullback_leibler_divergence": "kl_divergence", "logcosh": "log_cosh"}.get(name, name))
    want = np.mean(keras.ops.convert_to_numpy(kfn(yt, yp)))
    assert L.get(name)(yt, yp) == pytest.approx(float(want), rel=2e-5, abs=1e-6)
    # and the per-sample function of that name (fastnn.losses.mse, ...), as Keras's
    np.testing.assert_allclose(getattr(L, name.lower())(yt, yp), keras.ops.convert_to_numpy(kfn(yt, yp)),
                               rtol=2e-5, atol=1e-6)


@pytest.mark.keras
def test_rank_fix_and_timestep_weights_match_keras(keras):
    rng = np.random.default_rng(0)
    yt, yp = rng.normal(size=(8,)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    assert L.MeanSquaredError()(yt, yp) == pytest.approx(float(_keras_value(keras, "MeanSquaredError", {}, yt, yp)), rel=1e-6)
    yt3, yp3 = rng.normal(size=(4, 3, 2)).astype(np.float32), rng.normal(size=(4, 3, 2)).astype(np.float32)
    sw = rng.uniform(size=(4, 3)).astype(np.float32)
    assert L.MeanAbsoluteError()(yt3, yp3, sw) == pytest.approx(
        float(_keras_value(keras, "MeanAbsoluteError", {}, yt3, yp3, sw)), rel=1e-6)


def _numeric_grad(loss, yt, yp, sw, h=1e-6):
    yp = yp.astype(np.float64)
    num = np.zeros_like(yp)
    for i in np.ndindex(yp.shape):
        e = np.zeros_like(yp)
        e[i] = h
        num[i] = (float(np.sum(loss(yt, yp + e, sw))) - float(np.sum(loss(yt, yp - e, sw)))) / (2 * h)
    return num


@pytest.mark.parametrize("cls,kw,kind", CASES, ids=IDS)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
def test_grad_matches_central_differences(cls, kw, kind, reduction):
    yt, yp = _data(kind, seed=1, saturate=False)
    yp = yp.astype(np.float64)
    # keep off the kinks/clip edges, where only a one-sided derivative exists
    if kind in ("real", "signed"):
        yp[np.abs(yp - yt) < 1e-2] += 3e-2
        if cls == "Huber":
            d = kw.get("delta", 1.0)
            yp[np.abs(np.abs(yp - yt) - d) < 1e-2] += 3e-2
        if cls in ("Hinge", "SquaredHinge"):
            yp[np.abs(np.abs(yp) - 1) < 1e-2] += 3e-2
    if cls == "MeanSquaredLogarithmicError":
        yp = np.abs(yp) + 0.05  # away from the max(y_pred, eps) kink
    sw = np.random.default_rng(2).uniform(0.5, 2, yp.shape[1] if kw.get("axis") == 0 else yp.shape[0])
    loss = getattr(L, cls)(reduction=reduction, **kw)
    value, grad = loss.value_and_grad(yt, yp, sw)
    assert grad.dtype == np.float32 and grad.shape == yp.shape
    # reduction "none": the gradient is that of the per-sample values' sum (float64 via "sum")
    ref = getattr(L, cls)(reduction="sum", **kw) if reduction == "none" else loss
    np.testing.assert_allclose(grad, _numeric_grad(ref, yt, yp, sw), rtol=1e-4, atol=1e-5)


def test_clipped_regions_have_zero_gradient():
    # the labelled class 0 is below eps: -log(clip(0)) = -log(1e-7) whatever y_pred, no gradient
    yt = np.array([[1.0, 0.0, 0.0]], np.float32)
    yp = np.array([[0.0, 0.2, 0.8]], np.float32)
    v, g = L.CategoricalCrossentropy().value_and_grad(yt, yp)
    assert v == pytest.approx(-np.log(1e-7), rel=1e-6)
    np.testing.assert_array_equal(g, 0.0)
    _, g = L.BinaryCrossentropy().value_and_grad(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]], np.float32))
    np.testing.assert_array_equal(g, 0.0)
    _, g = L.KLDivergence().value_and_grad(np.array([[0.5, 0.5]]), np.array([[2.0, -1.0]], np.float32))
    np.testing.assert_array_equal(g, 0.0)


def test_categorical_crossentropy_gradient_closed_form():
    """Keras divides y_pred by its row sum S before the clip: L = (sum_j -y_j log(p_j / S)) / N,
    so dL/dp_j = (-y_j / p_j + sum(y) / S) / N for every j (a clipped class without the label
    included) as long as no labelled class is clipped. Rows: unclipped and normalised, a
    clipped class 0 without the label, unnormalised (S = 2), soft labels."""
    yt = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0.2, 0.5, 0.3]], np.float32)
    yp = np.array([[0.3, 0.2, 0.5], [0.0, 0.2, 0.8], [0.0, 0.4, 1.6], [0.1, 0.6, 0.3]], np.float32)
    p64, y64 = yp.astype(np.float64), yt.astype(np.float64)
    s = p64.sum(1, keepdims=True)
    want = (-np.divide(y64, p64, out=np.zeros_like(p64), where=y64 > 0) + y64.sum(1, keepdims=True) / s) / len(yp)
    np.testing.assert_allclose(want[:3], [[-7 / 12, 1 / 4, 1 / 4], [1 / 4, -1, 1 / 4], [1 / 8, -1 / 2, 1 / 8]])
    v, g = L.CategoricalCrossentropy().value_and_grad(yt, yp)
    assert v == pytest.approx(float(np.mean(-(y64 * np.log(np.clip(p64 / s, 1e-7, 1 - 1e-7))).sum(1))), rel=1e-6)
    np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls,kw", [("SparseCategoricalCrossentropy", {}),
                                    ("SparseCategoricalCrossentropy", {"from_logits": True}),
                                    ("SparseCategoricalCrossentropy", {"ignore_class": 1})], ids=str)
def test_sparse_grad_matches_central_differences(cls, kw):
    rng = np.random.default_rng(4)
    yp = rng.uniform(0.05, 1, (5, 4)) if not kw.get("from_logits") else rng.normal(0, 2, (5, 4))
    yt = np.array([0, 1, 3, 2, 1])
    sw = rng.uniform(0.5, 2, 5)
    loss = getattr(L, cls)(**kw)
    _, grad = loss.value_and_grad(yt, yp, sw)
    np.testing.assert_allclose(grad, _numeric_grad(loss, yt, yp, sw), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make,labels", [
    (lambda **k: L.CategoricalCrossentropy(**k), "onehot"),
    (lambda **k: L.SparseCategoricalCrossentropy(**k), "sparse"),
    (lambda **k: L.BinaryCrossentropy(**k), "binary")], ids=["cce", "scce", "bce"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_value_and_grad_logits_equals_chain_rule(make, labels, from_logits):
    rng = np.random.default_rng(6)
    z = rng.normal(0, 3, (7, 4)).astype(np.float32)
    z[0] = [40.0, -40.0, 0.0, 1.0]  # saturated softmax: the clipping is active
    k = 1 if labels == "binary" else 4
    z = z[:, :k] if k == 1 else z
    yt = {"onehot": np.eye(4, dtype=np.float32)[rng.integers(0, 4, 7)], "sparse": rng.integers(0, 4, 7),
          "binary": rng.integers(0, 2, (7, 1)).astype(np.float32)}[labels]
    sw = rng.uniform(0.5, 2, 7)
    kwargs = {"from_logits": from_logits}
    if labels != "sparse":
        kwargs["label_smoothing"] = 0.1
    loss = make(**kwargs)
    value, dz = loss.value_and_grad_logits(yt, z, sw)
    z64 = z.astype(np.float64)
    f = (lambda zz: loss(yt, zz, sw)) if from_logits else \
        ((lambda zz: loss(yt, 1 / (1 + np.exp(-zz)), sw)) if labels == "binary" else
         (lambda zz: loss(yt, np.exp(zz - zz.max(-1, keepdims=True)) / np.exp(zz - zz.max(-1, keepdims=True)).sum(-1, keepdims=True), sw)))
    assert value == pytest.approx(f(z64), rel=1e-5)
    num = np.zeros_like(z64)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z64)
        e[i] = 1e-5
        num[i] = (f(z64 + e) - f(z64 - e)) / 2e-5
    np.testing.assert_allclose(dz, num, rtol=1e-3, atol=1e-5)
    assert loss.fused_kind == ("sigmoid" if labels == "binary" else "softmax")


def test_custom_function_loss_and_round_trip():
    def my_loss(y_true, y_pred):
        return np.mean((y_true - y_pred) ** 4, axis=-1)
    loss = L.get(my_loss)
    yt, yp = _data("real", seed=3)
    v, g = loss.value_and_grad(yt, yp.astype(np.float64))
    assert v == pytest.approx(float(np.mean((yt - yp.astype(np.float64)) ** 4)), rel=1e-6)
    np.testing.assert_allclose(g, 4 * (yp - yt) ** 3 / yp.size, rtol=1e-4, atol=1e-6)
    for obj in [L.Huber(0.3, "sum", "h"), L.CategoricalCrossentropy(True, 0.1), L.SparseCategoricalCrossentropy(ignore_class=0),
                L.CosineSimilarity(axis=0), L.MeanSquaredError(reduction="none")]:
        back = L.deserialize(L.serialize(obj))
        assert type(back) is type(obj) and back.get_config() == obj.get_config()
        assert L.get(obj) is obj
    assert isinstance(L.get(L.mse), L.MeanSquaredError) and L.serialize(L.mae) == "mean_absolute_error"
    assert isinstance(L.get(L.Poisson), L.Poisson) and L.get(None) is None
    assert L.get("huber").name == "huber_loss" and L.get("bce").get_config()["from_logits"] is False


def test_errors():
    with pytest.raises(ValueError, match="Did you mean") as e:
        L.get("categorical_crossentopy")
    assert "'categorical_crossentropy'" in str(e.value)
    with pytest.raises(ValueError, match="reduction"):
        L.MeanSquaredError(reduction="average")
    with pytest.raises(ValueError, match="label_smoothing"):
        L.CategoricalCrossentropy(label_smoothing=2.0)
    with pytest.raises(ValueError, match="axis"):
        L.BinaryCrossentropy(axis=True)
    with pytest.raises(ValueError, match="same shape"):
        L.CategoricalCrossentropy()(np.zeros((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="labels"):
        L.SparseCategoricalCrossentropy()(np.array([0, 7]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="y_true"):
        L.SparseCategoricalCrossentropy()(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="sample_weight"):
        L.MeanSquaredError()(np.zeros((4, 3)), np.ones((4, 3)), np.ones(5))
    with pytest.raises(ValueError, match="loss"):
        L.get(42)


@pytest.mark.parametrize("make,labels", [
    (lambda: L.CategoricalCrossentropy(label_smoothing=0.1), "onehot"),
    (lambda: L.SparseCategoricalCrossentropy(), "sparse"),
    (lambda: L.SparseCategoricalCrossentropy(ignore_class=2, reduction="sum"), "sparse"),
    (lambda: L.BinaryCrossentropy(label_smoothing=0.2), "binary"),
    (lambda: L.CategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"), "onehot")],
    ids=["cce", "scce", "scce-ignore", "bce", "cce-logits"])
def test_fused_kernel_path_equals_numpy_path(make, labels, monkeypatch):
    """value_and_grad_logits through fastnn.kernels.loss equals the NumPy chain rule."""
    from fastnn.kernels import loss as kernel
    rng = np.random.default_rng(8)
    z = rng.normal(0, 3, (9, 4)).astype(np.float32)
    z[0] = [40.0, -40.0, 0.0, 1.0]
    if labels == "binary":
        z, y = z[:, :1].copy(), rng.integers(0, 2, (9, 1)).astype(np.float32)
    else:
        y = rng.integers(0, 4, 9) if labels == "sparse" else np.eye(4, dtype=np.float32)[rng.integers(0, 4, 9)]
    loss = make()
    for sw in (None, rng.uniform(0.5, 2, 9)):
        monkeypatch.setattr(L, "_loss_kernel", lambda: None)
        v0, g0 = loss.value_and_grad_logits(y, z, sw)
        monkeypatch.setattr(L, "_loss_kernel", lambda: kernel)
        v1, g1 = loss.value_and_grad_logits(y, z, sw)
        assert v1 == pytest.approx(v0, rel=1e-5)
        np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-6)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=15)
@given(case=st.sampled_from(CASES), n=st.integers(1, 4), k=st.integers(2, 5), seed=st.integers(0, 2**16),
       reduction=st.sampled_from(["sum_over_batch_size", "sum", "mean_with_sample_weight"]))
def test_grad_over_random_shapes(case, n, k, seed, reduction):
    cls, kw, kind = case
    if kw.get("axis") == 0:
        return
    yt, yp = _data(kind, shape=(n, k), seed=seed, saturate=False)
    yp = yp.astype(np.float64)
    if kind in ("real", "signed"):
        yp[np.abs(yp - yt) < 2e-2] += 5e-2
        yp[np.abs(np.abs(yp - yt) - kw.get("delta", 1.0)) < 2e-2] += 5e-2
        yp[np.abs(np.abs(yp) - 1) < 2e-2] += 5e-2
    if cls == "MeanSquaredLogarithmicError":
        yp = np.abs(yp) + 0.05
    if cls == "CategoricalHinge":  # off the max's ties and the hinge's kink
        yp += np.arange(k) * 1e-2
    sw = np.random.default_rng(seed).uniform(0.5, 2, n)
    loss = getattr(L, cls)(reduction=reduction, **kw)
    _, grad = loss.value_and_grad(yt, yp, sw)
    np.testing.assert_allclose(grad, _numeric_grad(loss, yt, yp, sw), rtol=2e-4, atol=2e-5)
