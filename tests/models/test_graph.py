"""Functional graphs against Keras 3 (torch backend): shared layers, nested models, several inputs
and outputs, merging layers, frozen parts, feature extraction. For each form the same graph is
built in both libraries (explicit layer names), then compared: model.layers order and names,
weight order (Keras's get_weights copied into fastnn), predictions, evaluate (values and key
names), fit history keys and the weights after several optimizer steps; and a .keras round trip.

Tolerances (measured on these forms): predictions differ by <= 1e-6 relative where the values
are not near 0; after 6 Adam steps (lr 1e-3) the weights differ by <= 8.5e-7 absolute (the
residual net over 6 initialisations: Adam turns float32 noise in near-zero gradients into
steps of ~lr; at lr 1e-2 it reached 8.5e-6) and <= 1e-7 elsewhere: atol 2e-6 with rtol 2e-5;
losses agree to <= 1.2e-7 relative.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn

keras = None   # the oracle, set for each test by _oracle


@pytest.fixture(autouse=True)
def _oracle(request):
    """Keras through conftest's keras fixture: a skip here, a failure under CI."""
    global keras
    keras = request.getfixturevalue("keras")
pytestmark = pytest.mark.keras

RTOL, ATOL = 2e-5, 2e-6


def _close(a, b, what="", rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def _flat(v):
    if isinstance(v, dict):
        return [v[k] for k in sorted(v)]
    return list(v) if isinstance(v, (list, tuple)) else [v]


# ---------------------------------------------------------------------------------------------
# graph forms: build(K) -> (model, x, y, compile kwargs); K is keras or fastnn
def _two_in_two_out(K, rng):
    L = K.layers
    a, b = K.Input((6,), name="a"), K.Input((6,), name="b")
    shared = L.Dense(5, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    merged = L.Concatenate(name="cat")([L.Add(name="add")([ha, hb]), L.Multiply(name="mul")([ha, hb]),
                                        L.Subtract(name="sub")([ha, hb]), L.Average(name="avg")([ha, hb]),
                                        L.Maximum(name="max")([ha, hb]), L.Minimum(name="min")([ha, hb]),
                                        L.Dot(1, normalize=True, name="cos")([ha, hb])])
    h = L.Dense(8, activation="relu", name="h")(merged)
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(2, name="reg")(L.Dense(4, activation="tanh", name="d1")(h))
    model = K.Model([a, b], [cls, reg], name="two")
    n = 24
    x = [rng.standard_normal((n, 6)).astype("float32") for _ in range(2)]
    y = [np.eye(3, dtype="float32")[rng.integers(0, 3, n)], rng.standard_normal((n, 2)).astype("float32")]
    kw = dict(loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
              metrics=[["accuracy"], ["mae"]])
    return model, x, y, kw


def _dict_io(K, rng):
    L = K.layers
    img, meta = K.Input((5, 5, 2), name="img"), K.Input((3,), name="meta")
    f = L.Flatten(name="flat")(L.Conv2D(3, 3, activation="relu", name="conv")(img))
    z = L.Concatenate(name="join")([f, L.Dense(4, name="meta_dense")(meta)])
    out = {"score": L.Dense(1, activation="sigmoid", name="score")(z), "value": L.Dense(2, name="value")(z)}
    model = K.Model({"img": img, "meta": meta}, out, name="dictio")
    n = 20
    x = {"img": rng.standard_normal((n, 5, 5, 2)).astype("float32"),
         "meta": rng.standard_normal((n, 3)).astype("float32")}
    y = {"score": rng.integers(0, 2, (n, 1)).astype("float32"), "value": rng.standard_normal((n, 2)).astype("float32")}
    kw = dict(loss={"score": "binary_crossentropy", "value": "mae"}, loss_weights={"score": 2.0, "value": 1.0},
              metrics={"score": ["accuracy"], "value": ["mse"]})
    return model, x, y, kw


def _nested(K, rng):
    L = K.layers
    # a Sequential inside a functional model inside the outer model (depth 2), the inner
    # functional model called twice (shared), and a shared layer at the outer level
    seq = K.Sequential([K.Input((4,)), L.Dense(6, activation="tanh", name="s1"),
                        L.Dense(4, activation="tanh", name="s2")], name="seq")
    i = K.Input((4,), name="inner_in")
    inner = K.Model(i, L.Dense(3, name="inner_out")(seq(i)), name="inner")
    x1, x2 = K.Input((4,), name="x1"), K.Input((4,), name="x2")
    post = L.Dense(3, activation="tanh", name="post")
    y = L.Add(name="sum")([post(inner(x1)), post(inner(x2))])
    model = K.Model([x1, x2], L.Dense(2, name="head")(y), name="outer")
    n = 16
    x = [rng.standard_normal((n, 4)).astype("float32") for _ in range(2)]
    return model, x, rng.standard_normal((n, 2)).astype("float32"), dict(loss="mse", metrics=["mae"])


def _residual(K, rng):
    L = K.layers
    inp = K.Input((6, 6, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    for k in range(2):
        h = L.Conv2D(8, 3, padding="same", use_bias=False, name=f"b{k}_conv1")(x)
        h = L.BatchNormalization(name=f"b{k}_bn1")(h)
        h = L.ReLU(name=f"b{k}_relu1")(h)
        h = L.Conv2D(8, 3, padding="same", use_bias=False, name=f"b{k}_conv2")(h)
        h = L.BatchNormalization(name=f"b{k}_bn2")(h)
        x = L.ReLU(name=f"b{k}_out")(L.Add(name=f"b{k}_add")([x, h]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = K.Model(inp, L.Dense(4, activation="softmax", name="probs")(x), name="resnet")
    n = 16
    xs = rng.standard_normal((n, 6, 6, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, n)]
    return model, xs, y, dict(loss="categorical_crossentropy", metrics=["accuracy"])


def _frozen(K, rng):
    L = K.layers
    base = K.Sequential([K.Input((5,)), L.Dense(6, name="fb_dense"), L.BatchNormalization(name="fb_bn"),
                         L.Activation("relu", name="fb_relu")], name="base")
    base.trainable = False
    inp = K.Input((5,), name="x")
    h = base(inp)
    own = L.Dense(6, name="own")
    own.trainable = False
    out = L.Dense(1, name="out")(L.Concatenate(name="c")([h, own(inp)]))
    model = K.Model(inp, out, name="frozen")
    n = 16
    return (model, rng.standard_normal((n, 5)).astype("float32"), rng.standard_normal((n, 1)).astype("float32"),
            dict(loss="mse"))


def _feature_extraction(K, rng):
    L = K.layers
    inp = K.Input((7,), name="x")
    h = L.Dense(6, activation="relu", name="fe1")(inp)
    h = L.Dense(5, activation="tanh", name="features")(h)
    out = L.Dense(2, name="logits")(h)
    base = K.Model(inp, out, name="base_model")
    model = K.Model(base.input, base.get_layer("features").output, name="extractor")
    n = 12
    return (model, rng.standard_normal((n, 7)).astype("float32"), rng.standard_normal((n, 5)).astype("float32"),
            dict(loss="mse"))


def _one_loss_two_outputs(K, rng):
    """One loss for both outputs, metrics for one output only (a dict)."""
    L = K.layers
    inp = K.Input((5,), name="x")
    h = L.Dense(6, activation="relu", name="trunk")(inp)
    model = K.Model(inp, [L.Dense(2, name="o1")(h), L.Dense(3, activation="sigmoid", name="o2")(h)], name="one_loss")
    n = 16
    y = [rng.standard_normal((n, 2)).astype("float32"), rng.random((n, 3)).astype("float32")]
    return (model, rng.standard_normal((n, 5)).astype("float32"), y,
            dict(loss="mse", metrics={"o2": ["mae", "mse"]}))


FORMS = {"two_in_two_out": _two_in_two_out, "one_loss_two_outputs": _one_loss_two_outputs, "dict_io": _dict_io, "nested": _nested, "residual": _residual,
         "frozen": _frozen, "feature_extraction": _feature_extraction}


def _pair(name, rng_seed=0):
    keras.utils.set_random_seed(rng_seed)    # Keras's initial weights (copied into fastnn) repeat
    fm, x, y, kw = FORMS[name](fastnn, np.random.default_rng(rng_seed))
    km, _, _, _ = FORMS[name](keras, np.random.default_rng(rng_seed))
    return fm, km, x, y, kw


@pytest.mark.parametrize("name", sorted(FORMS))
def test_layers_and_weights_follow_keras_order(name):
    fm, km, *_ = _pair(name)
    assert [l.name for l in fm.layers] == [l.name for l in km.layers]
    assert [type(l).__name__ for l in fm.layers] == [
        "Model" if type(l).__name__ == "Functional" else type(l).__name__ for l in km.layers]
    kw, fw = km.get_weights(), fm.get_weights()
    assert [w.shape for w in fw] == [w.shape for w in kw]
    assert [w.shape for w in fm.trainable_weights] == [tuple(w.shape) for w in km.trainable_weights]
    assert [w.shape for w in fm.non_trainable_weights] == [tuple(w.shape) for w in km.non_trainable_weights]
    assert fm.count_params() == km.count_params()
    assert fm.output_names == km.output_names


@pytest.mark.parametrize("name", sorted(FORMS))
def test_predict_evaluate_and_training_match_keras(name):
    fm, km, x, y, kw = _pair(name)
    fm.set_weights(km.get_weights())
    fp, kp = fm.predict(x, verbose=0), km.predict(x, verbose=0)
    assert type(fp) is type(kp) and len(_flat(fp)) == len(_flat(kp))
    for a, b in zip(_flat(fp), _flat(kp)):
        _close(a, b, "predict")
    fm.compile(optimizer=fastnn.optimizers.Adam(0.001), **kw)
    km.compile(optimizer=keras.optimizers.Adam(0.001), **kw)
    fe, ke = fm.evaluate(x, y, verbose=0, return_dict=True), km.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(fe) == sorted(ke)
    for k in ke:
        _close(fe[k], ke[k], f"evaluate {k}")
    fl, kl = fm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0)
    _close(fl, kl, "evaluate as a list (Keras's order)")
    fh = fm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x, y))
    kh = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x, y))
    assert sorted(fh.history) == sorted(kh.history)
    for k in kh.history:
        _close(fh.history[k], kh.history[k], f"history {k}", rtol=1e-4, atol=1e-5)
    for i, (a, b) in enumerate(zip(fm.get_weights(), km.get_weights())):
        _close(a, b, f"weight {i} {a.shape} after 6 Adam steps")
    fh = fm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, validation_split=0.25)
    kh = km.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, validation_split=0.25)
    for k in kh.history:
        _close(fh.history[k], kh.history[k], f"history {k} (validation_split)", rtol=1e-4, atol=1e-5)
    ft, kt = fm.train_on_batch(x, y), km.train_on_batch(x, y)
    _close(ft, kt, "train_on_batch", rtol=1e-4, atol=1e-5)
    for a, b in zip(_flat(fm.predict_on_batch(x)), _flat(km.predict_on_batch(x))):
        _close(a, b, "predict_on_batch after training")
    ft = fm.test_on_batch(x, y, return_dict=True)
    kt = km.test_on_batch(x, y, return_dict=True)
    assert sorted(ft) == sorted(kt)
    for k in kt:
        _close(ft[k], kt[k], f"test_on_batch {k}", rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_keras_round_trip(name, tmp_path):
    fm, x, y, kw = FORMS[name](fastnn, np.random.default_rng(1))
    fm.compile(optimizer="adam", **kw)
    fm.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    fm.save(path)
    back = fastnn.models.load_model(path)
    assert [l.name for l in back.layers] == [l.name for l in fm.layers]
    for a, b in zip(_flat(back.predict(x, verbose=0)), _flat(fm.predict(x, verbose=0))):
        np.testing.assert_array_equal(a, b)
    assert back.trainable_weights and len(back.trainable_weights) == len(fm.trainable_weights)
    # training goes on from the saved optimizer state: one more step gives the same weights
    fm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    back.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(fm.get_weights(), back.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_feature_extraction_model_shares_the_base_weights():
    fm, x, y, _ = _feature_extraction(fastnn, np.random.default_rng(2))
    base = fm.get_layer("features")
    assert fm.get_layer(index=-1) is base and fm.get_layer(2) is base
    w = base.kernel.value.copy()
    fm.compile("sgd", "mse")
    fm.fit(x, y, verbose=0)
    assert not np.array_equal(w, base.kernel.value)


def test_shared_layer_gradient_is_the_sum_of_its_calls(rng):
    """Sharing one Dense between two inputs gives the gradient of two copies of it, summed."""
    L = fastnn.layers
    a, b = fastnn.Input((3,)), fastnn.Input((3,))
    d = L.Dense(2)
    shared = fastnn.Model([a, b], L.Add()([d(a), d(b)]))
    a2, b2 = fastnn.Input((3,)), fastnn.Input((3,))
    d1, d2 = L.Dense(2), L.Dense(2)
    twins = fastnn.Model([a2, b2], L.Add()([d1(a2), d2(b2)]))
    w = [rng.standard_normal((3, 2)).astype("float32"), rng.standard_normal(2).astype("float32")]
    shared.set_weights(w)
    twins.set_weights(w + w)
    x = [rng.standard_normal((5, 3)).astype("float32") for _ in range(2)]
    y = rng.standard_normal((5, 2)).astype("float32")
    for m in (shared, twins):
        m.compile("sgd", "mse")
        m._prepare_training()
        m._compute_gradients(m._prepare_x(x, "t"), [y], [None])
    np.testing.assert_allclose(d.kernel.grad, d1.kernel.grad + d2.kernel.grad, rtol=1e-6)
    np.testing.assert_allclose(d.bias.grad, d1.bias.grad + d2.bias.grad, rtol=1e-6)


def test_graph_errors_name_the_problem():
    L = fastnn.layers
    a = fastnn.Input((3,))
    with pytest.raises(ValueError, match="not in `inputs`"):
        fastnn.Model(fastnn.Input((3,)), L.Dense(2)(a))
    with pytest.raises(ValueError, match="unique"):
        fastnn.Model(a, L.Dense(2, name="same")(L.Dense(2, name="same")(a)))
    m = fastnn.Model(a, [L.Dense(2, name="o1")(a), L.Dense(1, name="o2")(a)])
    with pytest.raises(ValueError, match="o1"):
        m.compile("sgd", loss={"o3": "mse"})
        m._prepare_training()
    with pytest.raises(ValueError, match="loss_weights must match"):   # Keras refuses it too
        m.compile("sgd", loss="mse", loss_weights=[1.0, 2.0])
        m._prepare_training()
    m.compile("sgd", loss="mse")
    with pytest.raises(ValueError, match="2 outputs"):
        m.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    with pytest.raises(ValueError, match="Subtract"):
        L.Subtract()([a, a, a])
    with pytest.raises(ValueError, match="same shape"):
        L.Add()([a, fastnn.Input((4,))])
    with pytest.raises(AttributeError, match="never been called"):
        L.Dense(2).output


def _summary_model(K):
    L = K.layers
    a, b = K.Input((6,), name="a"), K.Input((6,), name="b")
    shared = L.Dense(5, name="shared")
    ha, hb = shared(a), shared(b)
    bn = L.BatchNormalization(name="batch_normalization_with_a_long_name")(ha)
    c = L.Concatenate(name="cat")([bn, hb, ha])
    seq = K.Sequential([K.Input((15,)), L.Dense(3, name="s1"), L.Dense(2, name="s2")], name="seq")
    seq.trainable = False
    i = K.Input((15,), name="fi")
    func = K.Model(i, L.Dense(2, name="f1")(i), name="func")
    return K.Model([a, b], [seq(c), L.Dense(1, name="reg")(c), func(c)], name="summary_model")


@pytest.mark.parametrize("kwargs", [{}, {"expand_nested": True, "show_trainable": True}, {"line_length": 64}])
@pytest.mark.parametrize("which", ["graph", "sequential"])
def test_summary_text_equals_keras(which, kwargs, monkeypatch):
    """The whole printed table, character for character: columns, wrapping, connections, counts."""
    monkeypatch.setenv("COLUMNS", "84")    # the terminal width the default line length depends on
    if which == "graph":
        fm, km = _summary_model(fastnn), _summary_model(keras)
    else:
        build = (lambda K: K.Sequential([K.Input((4,)), K.layers.Dense(3, name="d"),
                                         K.layers.BatchNormalization(name="batch_normalization_long_name_here"),
                                         K.layers.ReLU(name="r")], name="seq_model"))
        fm, km = build(fastnn), build(keras)
    got, want = [], []
    fm.summary(print_fn=got.append, **kwargs)
    km.summary(print_fn=lambda s, line_break=None: want.append(s), **kwargs)
    assert "\n".join(got) == "".join(want).rstrip("\n")


@pytest.mark.parametrize("name", ["nested", "two_in_two_out", "residual"])
def test_keras_weights_file_loads_into_fastnn_and_back(name, tmp_path, request):
    """Keras 3's .weights.h5 (keys from class names, nested containers) is read and written as is."""
    request.getfixturevalue("require")("h5py")
    fm, km, x, _, _ = _pair(name)
    km.save_weights(tmp_path / "k.weights.h5")
    fm.load_weights(tmp_path / "k.weights.h5")
    for a, b in zip(_flat(fm.predict(x, verbose=0)), _flat(km.predict(x, verbose=0))):
        _close(a, b, "predict with Keras's weight file")
    fm2, km2, *_ = _pair(name, rng_seed=5)
    fm.save_weights(tmp_path / "f.weights.h5")
    km2.load_weights(tmp_path / "f.weights.h5")
    for a, b in zip(km2.get_weights(), fm.get_weights()):
        np.testing.assert_array_equal(a, b)


def _dot3d(K, rng):
    L = K.layers
    a, b = K.Input((3, 4), name="a"), K.Input((5, 4), name="b")
    att = L.Dot(axes=(2, 2), name="scores")([L.Dense(4, name="qa")(a), b])      # (N, 3, 5)
    plain = L.Dot(axes=1, name="plain")([L.Flatten(name="fa")(a), L.Dense(12, name="pb")(L.Flatten(name="fb")(b))])
    out = L.Concatenate(name="c")([L.Flatten(name="fs")(att), plain])
    model = K.Model([a, b], L.Dense(2, name="o")(out), name="dots")
    n = 12
    x = [rng.standard_normal((n, 3, 4)).astype("float32"), rng.standard_normal((n, 5, 4)).astype("float32")]
    return model, x, rng.standard_normal((n, 2)).astype("float32"), dict(loss="mse")


FORMS["dot3d"] = _dot3d


def test_layer_gradients_are_numerical_in_a_shared_merging_graph(rng):
    """gradient_check (central differences) through shared layers, merges, Dot(normalize) and a
    nested model; smooth activations so no kink sits inside +-eps."""
    from fastnn.models.gradient_check import gradient_check
    L = fastnn.layers
    a, b = fastnn.Input((5,)), fastnn.Input((5,))
    shared = L.Dense(4, activation="tanh")
    ha, hb = shared(a), shared(b)
    i = fastnn.Input((4,))
    inner = fastnn.Model(i, L.Dense(4, activation="tanh")(i))
    merged = L.Concatenate()([L.Add()([ha, hb]), L.Multiply()([ha, hb]), L.Subtract()([ha, hb]),
                              L.Average()([ha, hb]), L.Maximum()([ha, hb]), L.Minimum()([ha, hb]),
                              L.Dot(1, normalize=True)([ha, hb]), inner(ha), inner(hb)])
    m = fastnn.Model([a, b], [L.Dense(3)(merged), L.Dense(2, activation="sigmoid")(merged)])
    m.compile("sgd", loss=["mse", "binary_crossentropy"], loss_weights=[1.0, 0.3])
    x = [rng.standard_normal((6, 5)).astype("float32") for _ in range(2)]
    y = [rng.standard_normal((6, 3)).astype("float32"), rng.integers(0, 2, (6, 2)).astype("float32")]
    errors = gradient_check(m, x, y, eps=1e-2, max_per_weight=12)
    # four layers with weights (the nested model counts as one); measured worst error 2.3e-4
    assert len(errors) == 4 and max(errors.values()) < 2e-3, errors


def test_nested_model_trained_alone_and_inside_another_keeps_its_gradients(rng):
    """The GAN pattern: a model trained on its own and as part of a combined model. Each graph
    sets its layers' per-graph flags (the fused softmax + crossentropy output, dx needed) for
    every pass, so alternating the two trains both correctly (the same steps as two fresh copies)."""
    L = fastnn.layers

    def build():
        i = fastnn.Input((4,))
        disc = fastnn.Model(i, L.Dense(2, activation="softmax")(L.Dense(5, activation="tanh")(i)))
        j = fastnn.Input((3,))
        combined = fastnn.Model(j, disc(L.Dense(4, activation="tanh")(j)))
        return disc, combined

    x, z = rng.standard_normal((8, 4)).astype("float32"), rng.standard_normal((8, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 8)]
    disc, combined = build()
    disc.compile("sgd", "categorical_crossentropy")
    combined.compile("sgd", "categorical_crossentropy")
    w0 = disc.get_weights()
    combined.train_on_batch(z, y)        # moves the disc weights too
    w1 = disc.get_weights()
    disc.train_on_batch(x, y)
    got = disc.get_weights()
    ref, _ = build()                     # a fresh disc from w1, one step alone
    ref.set_weights(w1)
    ref.compile("sgd", "categorical_crossentropy")
    ref.train_on_batch(x, y)
    assert not np.allclose(w0[0], w1[0])
    for a, b in zip(got, ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
