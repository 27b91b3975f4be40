"""Sequential/functional models: compile/fit/evaluate/predict, the arena, errors, memory."""
import gc
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import layers as L
from fastnn.models import Model, Sequential


# gradient_check's bound for every layer, as tests/layers/test_layers.py's GRAD_TOL (3x the
# float32 rounding noise of the worst correct layer there); the models here measure <= 2.2e-4
GRAD_TOL = 1e-3


def _data(rng, n=64, d=6, k=3):
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    return x, y


def _mlp(d=6, k=3):
    return Sequential([L.Input((d,)), L.Dense(8, activation="tanh"), L.Dense(k, activation="softmax")])


def test_founding_notes_snippet_runs_unchanged():
    model = fastnn.models.Sequential()
    model.add(fastnn.layers.Dense(1024, input_dim=3, activation='tanh'))
    model.add(fastnn.layers.Dense(1, activation='softplus'))
    model.compile("adamax", loss='kld', metrics=['accuracy'])
    x = np.random.default_rng(0).random((40, 3), dtype=np.float32)
    y = np.random.default_rng(1).random((40, 1), dtype=np.float32)
    hist = model.fit(x, y, epochs=2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy"}
    assert model.count_params() == 3 * 1024 + 1024 + 1024 + 1


def test_fit_evaluate_predict_and_history(rng):
    x, y = _data(rng)
    model = _mlp()
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0)
    assert list(hist.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in hist.history.values())
    assert hist.params == {"verbose": 0, "epochs": 3, "steps": 3}
    loss, acc = model.evaluate(x, y, verbose=0)
    d = model.evaluate(x, y, verbose=0, return_dict=True)
    assert d == {"accuracy": acc, "loss": loss}
    p = model.predict(x, batch_size=10, verbose=0)
    assert p.shape == (64, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(model.predict_on_batch(x), p, rtol=1e-6)
    np.testing.assert_allclose(model(x), p, rtol=1e-6)


def test_training_reduces_loss(rng):
    x, y = _data(rng, n=128)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 1)]
    model = _mlp()
    model.compile(fastnn.optimizers.Adam(learning_rate=0.02), "categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert h.history["loss"][-1] < 0.6 * h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.8


def test_displayed_loss_is_batch_size_weighted_mean(rng):
    x, y = _data(rng, n=40)
    model = _mlp()
    model.compile(fastnn.optimizers.SGD(learning_rate=1e-9), "mse")
    w = model.get_weights()
    h = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    model.set_weights(w)
    losses = [model.test_on_batch(x[i:i + 16], y[i:i + 16]) for i in (0, 16, 32)]
    expect = (16 * losses[0] + 16 * losses[1] + 8 * losses[2]) / 40
    np.testing.assert_allclose(h.history["loss"][0], expect, rtol=1e-5)


def test_validation_split_takes_last_fraction_before_shuffling(rng):
    x, y = _data(rng, n=50)
    model = _mlp()
    model.compile("sgd", "mse")
    h = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    # with a negligible step the val loss is that of the last 10 samples
    model2 = _mlp()
    model2.set_weights(model.get_weights())
    model2.compile("sgd", "mse")
    np.testing.assert_allclose(h.history["val_loss"][0], model2.evaluate(x[40:], y[40:], verbose=0), rtol=1e-5)


def test_arena_views_and_single_optimizer_call(rng):
    x, y = _data(rng)
    model = Sequential([L.Input((6,)), L.Dense(5, activation="relu"), L.BatchNormalization(), L.Dense(3)])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=1, verbose=0)
    arena = model._arena
    assert arena.size == sum(v.value.size for v in model.trainable_weights) == 6 * 5 + 5 + 5 + 5 + 5 * 3 + 3
    for v in model.trainable_weights:
        assert np.shares_memory(v.value, arena.params) and np.shares_memory(v.grad, arena.grads)
    for v in model.non_trainable_weights:
        assert not np.shares_memory(v.value, arena.params)
    calls = []
    real = model.optimizer.apply_flat
    model.optimizer.apply_flat = lambda p, g: (calls.append((p, g)), real(p, g))
    model.train_on_batch(x, y)
    assert len(calls) == 1 and calls[0][0] is arena.params and calls[0][1] is arena.grads


def test_frozen_layer_is_not_updated(rng):
    x, y = _data(rng)
    model = _mlp()
    model.layers[0].trainable = False
    model.compile("adam", "categorical_crossentropy")
    before = model.layers[0].get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(before, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2


def test_regularizer_adds_penalty_and_constraint_applies(rng):
    x, y = _data(rng)
    model = Sequential([L.Input((6,)), L.Dense(3, kernel_regularizer=fastnn.regularizers.L2(0.1),
                                                  kernel_constraint="non_neg")])
    model.compile("sgd", "mse")
    base = float(fastnn.losses.get("mse")(y, model.predict(x, verbose=0)))
    w = model.layers[0].get_weights()[0]
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), base + 0.1 * float((w.astype(np.float64) ** 2).sum()),
                               rtol=1e-4)
    model.fit(x, y, epochs=1, verbose=0)
    assert (model.layers[0].get_weights()[0] >= 0).all()


def test_sample_and_class_weight(rng):
    """Keras 3 (reduction sum_over_batch_size): loss = sum_i w_i l_i / N, divided by the batch
    size, not by the sum of the weights; class_weight[k] is the weight of every sample of class k."""
    from fastnn.models.gradient_check import gradient_check
    x, y = _data(rng, n=32)
    model = _mlp()
    model.compile("sgd", "categorical_crossentropy")
    p = model.predict(x, verbose=0).astype(np.float64)
    per_sample = -np.sum(y * np.log(np.clip(p / p.sum(1, keepdims=True), 1e-7, 1 - 1e-7)), axis=1)
    sw = rng.uniform(0, 2, 32).astype(np.float32)
    np.testing.assert_allclose(model.test_on_batch(x, y, sample_weight=sw), np.sum(sw * per_sample) / 32, rtol=1e-6)
    assert model.test_on_batch(x, y, sample_weight=np.zeros(32, np.float32)) == 0.0
    cw = {0: 0.5, 1: 2.0, 2: 0.0}
    as_sw = np.array([cw[k] for k in y.argmax(1)], np.float32)
    assert len(set(as_sw)) == 3
    w0 = model.get_weights()
    loss = model.train_on_batch(x, y, class_weight=cw)     # the loss before the step
    np.testing.assert_allclose(loss, np.sum(as_sw * per_sample) / 32, rtol=1e-6)
    stepped = model.get_weights()
    model.set_weights(w0)
    assert model.train_on_batch(x, y, sample_weight=as_sw) == loss
    for a, b in zip(stepped, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and the gradient is the weighted loss's
    model.set_weights(w0)
    rep = gradient_check(model, x, y, sample_weight=sw)
    assert max(rep.values()) < GRAD_TOL, rep


class Add(L.Layer):
    """Tiny merge layer for the tests: y = the sum of its inputs (fastnn has no merging layers yet)."""
    _num_inputs = None

    def compute_output_shape(self, shapes):
        return tuple(shapes[0])

    def forward(self, xs, training=False):
        y = self._buffer("y", xs[0].shape)
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            np.add(y, x, out=y)
        self._n_inputs = len(xs)
        return y

    def backward(self, dy):
        return [dy] * self._n_inputs


def _gradients(model, x, y):
    """d loss / d weight for every trainable weight, in layer order, from one step (SGD with
    learning rate 0 leaves the weights as they are)."""
    model.compile(fastnn.optimizers.SGD(learning_rate=0.0), "mse")
    model.train_on_batch(x, y)
    return [v.grad.astype(np.float64) for layer in model.layers for v in layer.trainable_weights]


def test_functional_model_with_branch_sums_gradients(rng):
    """h feeds three readers whose paths (one through a Reshape/Permute chain, one a Dense, one
    the skip itself) meet again in a merge: s = (h Wa + ba) + (h Wb + bb) + h. The same network
    without a branch is h (Wa + Wb + I) + (ba + bb), so every gradient of the branched model, the
    ones before the branch point above all, must equal the unbranched model's (and the numerical
    gradient): a branch point that kept one reader's gradient instead of the sum fails both."""
    from fastnn.models.gradient_check import gradient_check
    inp = fastnn.Input((5,))
    h = L.Dense(6, activation="tanh")(inp)
    a = L.Flatten()(L.Permute((2, 1))(L.Permute((2, 1))(L.Reshape((3, 2))(L.Dense(6)(h)))))
    b = L.Dense(6)(h)
    out = L.Dense(2, activation="tanh")(Add()([a, b, h]))
    model = Model(inp, out)
    assert [l.name for l in model.layers][0] == inp.layer.name
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.get_weights()])
    wh, bh, wa, ba, wb, bb, wo, bo = model.get_weights()
    plain = Sequential([L.Input((5,)), L.Dense(6, activation="tanh"), L.Dense(6), L.Dense(2, activation="tanh")])
    plain.set_weights([wh, bh, wa + wb + np.eye(6, dtype=np.float32), ba + bb, wo, bo])
    x = rng.standard_normal((7, 5)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    gh_w, gh_b, ga_w, ga_b, gb_w, gb_b, go_w, go_b = _gradients(model, x, y)
    ph_w, ph_b, pc_w, pc_b, po_w, po_b = _gradients(plain, x, y)
    for got, want in [(gh_w, ph_w), (gh_b, ph_b), (ga_w, pc_w), (gb_w, pc_w), (ga_b, pc_b), (gb_b, pc_b),
                      (go_w, po_w), (go_b, po_b)]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    model.compile("sgd", "mse")
    rep = gradient_check(model, x, y)
    assert max(rep.values()) < GRAD_TOL, rep   # measured <= 1.2e-4


def test_functional_diamond_branch_point(rng):
    from fastnn.models.gradient_check import gradient_check
    inp = fastnn.Input((5,))
    h = L.Dense(6, activation="tanh")(inp)
    a = L.Dense(4, activation="tanh")(h)
    b = L.Dense(4, activation="sigmoid")(h)
    out = L.Dense(2)(Add()([a, b]))
    model = Model(inputs=inp, outputs=out)
    model.compile("sgd", "mse")
    x = rng.standard_normal((7, 5)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    rep = gradient_check(model, x, y)
    assert max(rep.values()) < GRAD_TOL, rep   # measured <= 2.2e-4
    assert model.get_layer(index=1) is h.layer
    assert model.get_layer(a.layer.name) is a.layer
    model.fit(x, y, epochs=2, verbose=0)


# ------------------------------------------------------------------------ errors
def test_errors_name_argument_and_value(rng):
    x, y = _data(rng)
    model = _mlp()
    with pytest.raises(ValueError, match="optimizer='adamm'"):
        model.compile("adamm", "mse")
    with pytest.raises(ValueError, match="loss='msee'"):
        model.compile("adam", "msee")
    with pytest.raises(ValueError, match="metric"):
        model.compile("adam", "mse", metrics=["no_such_metric"])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match=r"batch_size.*0"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match=r"dense.*expected shape \(None, 6\).*\(64, 7\)"):
        model.fit(np.zeros((64, 7), np.float32), y, verbose=0)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"one-hot.*\(N, 3\).*sparse_categorical_crossentropy"):
        model.fit(x, np.argmax(y, 1), verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:10], verbose=0)
    with pytest.raises(ValueError, match=r"labels of shape \(64, 4\)"):
        model.compile("adam", "mse")
        model.fit(x, np.zeros((64, 4), np.float32), verbose=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(x, np.full(64, 5), verbose=0)


def test_error_when_batch_size_is_in_input_shape(rng):
    model = Sequential([L.Dense(10, input_shape=(32, 784), activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    x = np.zeros((64, 784), np.float32)
    y = np.zeros((64, 10), np.float32)
    with pytest.raises(ValueError, match=r"batch size was put into input_shape.*input_shape=\(784,\)"):
        model.fit(x, y, verbose=0)


def test_optimizer_argument_out_of_range():
    with pytest.raises(ValueError, match="learning_rate"):
        fastnn.optimizers.SGD(learning_rate=-1.0)


# ------------------------------------------------------------------------ memory
# (a steady-state step allocates nothing large, peak included: test_steady_state.py)
def test_repeated_predict_and_fit_keep_memory_flat(rng):
    x, y = _data(rng, n=256)
    model = _mlp()
    model.compile("adam", "categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.predict(x, verbose=0)
    tracemalloc.start()
    try:
        model.fit(x, y, epochs=1, verbose=0)
        model.predict(x, verbose=0)
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            model.fit(x, y, epochs=1, verbose=0)
            model.predict(x, verbose=0)
        gc.collect()
        last = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert last - first < 64 * 1024, (first, last)


def test_summary_and_config_round_trip(capsys):
    model = Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                        L.Flatten(), L.Dense(10, activation="softmax")], name="convnet")
    model.summary()
    out = capsys.readouterr().out
    assert 'Model: "convnet"' in out and "(None, 26, 26, 32)" in out and "Total params: 54,410" in out
    clone = Sequential.from_config(model.get_config())
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert clone.count_params() == model.count_params() == 54410
    inp = fastnn.Input((4,))
    fmodel = Model(inp, L.Dense(2)(L.Dense(3, activation="relu")(inp)))
    fclone = Model.from_config(fmodel.get_config())
    assert [type(l).__name__ for l in fclone.layers] == ["InputLayer", "Dense", "Dense"]


def test_sequential_built_on_first_fit_call_or_build(rng):
    x, y = _data(rng)
    m = Sequential([L.Dense(4, activation="relu"), L.Dense(3, activation="softmax")])
    assert not m.built
    with pytest.raises(ValueError, match="not built"):
        m.count_params()
    m.compile("sgd", "categorical_crossentropy")
    m.fit(x, y, epochs=1, verbose=0)
    assert m.built and m.count_params() == 6 * 4 + 4 + 4 * 3 + 3
    m2 = Sequential([L.Dense(4)])
    p = m2.predict(x, verbose=0)
    assert p.shape == (64, 4)
    m3 = Sequential()
    m3.add(L.Dense(2))
    m3.build((None, 5))
    assert m3.layers[0].get_weights()[0].shape == (5, 2)
    m4 = Sequential([L.Dense(2, input_shape=(3,), batch_size=8)])
    assert m4.input_shape == (8, 3)


def test_evaluate_and_predict_progress_lines(rng, capsys):
    x, y = _data(rng)
    m = _mlp()
    m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    m.evaluate(x, y, batch_size=16)
    m.predict(x, batch_size=16)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("4/4 ") and " - accuracy: " in lines[0] and " - loss: " in lines[0]
    assert lines[1].startswith("4/4 ") and lines[1].endswith("/step")


def test_multi_output_model_predicts_and_checks_labels(rng):
    inp = fastnn.Input((4,))
    h = L.Dense(3, activation="tanh")(inp)
    m = Model(inp, [L.Dense(2)(h), L.Dense(1)(h)])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    a, b = m.predict(x, verbose=0)
    assert a.shape == (5, 2) and b.shape == (5, 1)
    m.compile("sgd", "mse")
    with pytest.raises(ValueError, match="2 outputs"):
        m.fit(x, np.zeros((5, 2)), verbose=0)


def test_evaluate_inside_fit_callback_prints_its_own_bar(rng, capsys):
    x, y = _data(rng)
    m = _mlp()
    m.compile("sgd", "categorical_crossentropy")

    class Eval(fastnn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.evaluate(x, y, verbose=1)

    m.fit(x, y, epochs=1, verbose=0, callbacks=[Eval()])
    assert capsys.readouterr().out.startswith("2/2 ")
