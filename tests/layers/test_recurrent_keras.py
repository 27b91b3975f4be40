"""Recurrent layers against Keras 3 (torch backend), weights copied across: predictions, losses
and the weights after several optimizer steps; masked batches, stacked and bidirectional models."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn

keras = None     # Keras 3 (torch backend), set from conftest's `keras` fixture for every test
pytestmark = pytest.mark.keras


@pytest.fixture(autouse=True)
def _oracle(request):
    global keras
    keras = request.getfixturevalue("keras")

# measured: predictions agree to 3e-7 relative, weights after 3 Adam steps to 2e-6 (the GEMM
# summation orders differ); 1e-5 / 2e-5 leave a margin, a wrong gate is off by 1e-2 or more
RTOL, ATOL = 1e-5, 1e-6


def _close(a, b, rtol=RTOL, atol=ATOL, what=""):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def _seq(build):
    fm = fastnn.models.Sequential(build(fastnn))
    km = keras.Sequential(build(keras))
    km.set_weights(fm.get_weights())
    return fm, km


def _perturb_biases(fm, km, rng):
    """Random biases (the zero/one initial ones would hide a bias mix-up)."""
    ws = fm.get_weights()
    ws = [w + (0.3 * rng.standard_normal(w.shape)).astype(np.float32) if w.ndim <= 2 and w.shape[0] <= 2 or w.ndim == 1
          else w for w in ws]
    fm.set_weights(ws)
    km.set_weights(ws)


def _train_both(fm, km, x, y, loss="mse", steps=3, opt="adam"):
    fm.compile(opt, loss)
    km.compile(opt, loss)
    for _ in range(steps):
        lf, lk = fm.train_on_batch(x, y), km.train_on_batch(x, y)
        _close(lf, lk, rtol=2e-5, what="train_on_batch loss")
    for i, (a, b) in enumerate(zip(fm.get_weights(), km.get_weights())):
        _close(a, b, rtol=2e-5, atol=2e-6, what=f"weight {i} {a.shape}")


RNN_CASES = {
    "simple_rnn": lambda K: K.layers.SimpleRNN(6),
    "simple_rnn_relu_seq": lambda K: K.layers.SimpleRNN(5, activation="relu", return_sequences=True),
    "lstm": lambda K: K.layers.LSTM(7),
    "lstm_seq_back": lambda K: K.layers.LSTM(6, return_sequences=True, go_backwards=True),
    "lstm_hard_sigmoid": lambda K: K.layers.LSTM(5, recurrent_activation="hard_sigmoid", use_bias=False),
    "lstm_no_forget_bias": lambda K: K.layers.LSTM(4, unit_forget_bias=False),
    "gru": lambda K: K.layers.GRU(6),
    "gru_reset_before_seq": lambda K: K.layers.GRU(5, reset_after=False, return_sequences=True),
    "gru_back": lambda K: K.layers.GRU(4, go_backwards=True),
    "rnn_lstmcell": lambda K: K.layers.RNN(K.layers.LSTMCell(5)),
    "rnn_stacked": lambda K: K.layers.RNN(K.layers.StackedRNNCells([K.layers.GRUCell(4), K.layers.LSTMCell(3)]),
                                          return_sequences=True),
}


@pytest.mark.parametrize("case", sorted(RNN_CASES))
def test_rnn_layers_match_keras(case, rng):
    def build(K):
        return [K.Input((7, 3)), RNN_CASES[case](K), K.layers.Flatten(), K.layers.Dense(2)]

    fm, km = _seq(build)
    _perturb_biases(fm, km, rng)
    x = rng.standard_normal((9, 7, 3)).astype(np.float32)
    y = rng.standard_normal((9, 2)).astype(np.float32)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")
    _train_both(fm, km, x, y)


@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("seq", [False, True])
def test_bidirectional_matches_keras(merge, seq, rng):
    def build(K):
        return [K.Input((6, 4)), K.layers.Bidirectional(K.layers.LSTM(5, return_sequences=seq), merge_mode=merge),
                K.layers.Flatten(), K.layers.Dense(2)]

    fm, km = _seq(build)
    _perturb_biases(fm, km, rng)
    x = rng.standard_normal((8, 6, 4)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")
    _train_both(fm, km, x, y)


def test_bidirectional_gru_backward_layer(rng):
    def build(K):
        return [K.Input((5, 3)), K.layers.Bidirectional(K.layers.GRU(4), backward_layer=K.layers.GRU(
            4, go_backwards=True, reset_after=True)), K.layers.Dense(2)]

    fm, km = _seq(build)
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN", "Bidirectional"])
@pytest.mark.parametrize("seq", [False, True])
def test_masked_embedding_matches_keras(cell, seq, rng):
    """Embedding(mask_zero=True): padded steps skipped, states carried, outputs as Keras
    (Bidirectional: its sub-layers' zero_output_for_mask is return_sequences, as Keras 3 sets)."""
    def build(K):
        rnn = (K.layers.Bidirectional(K.layers.LSTM(5, return_sequences=seq)) if cell == "Bidirectional"
               else getattr(K.layers, cell)(5, return_sequences=seq))
        layers = [K.Input((8,), dtype="int32"), K.layers.Embedding(20, 4, mask_zero=True), rnn]
        if seq:
            layers.append(K.layers.GlobalAveragePooling1D())
        return layers + [K.layers.Dense(1, activation="sigmoid")]

    fm, km = _seq(build)
    _perturb_biases(fm, km, rng)
    ids = rng.integers(1, 20, (10, 8)).astype(np.int32)
    # pre-padding as pad_sequences does; one row all padding (its mean over no steps is NaN in
    # Keras too, so not with the pooling)
    for i, n in enumerate([0, 1, 3, 5, 7 if seq else 8, 2, 0, 7, 4, 6]):
        ids[i, :n] = 0
    ids[3, 6] = 0                           # and a hole in the middle
    y = rng.integers(0, 2, (10, 1)).astype(np.float32)
    _close(fm.predict(ids, verbose=0), km.predict(ids, verbose=0), what="predict")
    _train_both(fm, km, ids, y, loss="binary_crossentropy")


def test_masking_layer_and_sequence_loss_match_keras(rng):
    """Masking -> LSTM(return_sequences) -> TimeDistributed(Dense): the loss over valid steps."""
    def build(K):
        return [K.Input((6, 3)), K.layers.Masking(0.0), K.layers.LSTM(4, return_sequences=True),
                K.layers.TimeDistributed(K.layers.Dense(2))]

    fm, km = _seq(build)
    x = rng.standard_normal((7, 6, 3)).astype(np.float32)
    x[:, -2:] = 0.0
    x[2, :3] = 0.0
    y = rng.standard_normal((7, 6, 2)).astype(np.float32)
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")
    _train_both(fm, km, x, y)


def test_stacked_and_conv1d_lstm_match_keras(rng):
    def build(K):
        return [K.Input((12, 3)), K.layers.Conv1D(4, 3, activation="relu"), K.layers.MaxPooling1D(),
                K.layers.LSTM(6, return_sequences=True), K.layers.GRU(5), K.layers.Dense(3, activation="softmax")]

    fm, km = _seq(build)
    x = rng.standard_normal((10, 12, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    _close(fm.predict(x, verbose=0), km.predict(x, verbose=0), what="predict")
    _train_both(fm, km, x, y, loss="categorical_crossentropy")
    fm.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    km.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    hf = fm.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    hk = km.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for k in hk.history:
        _close(hf.history[k], hk.history[k], rtol=2e-5, what=k)


def test_stateful_carries_states_like_keras(rng):
    def build(K):
        return [K.Input(batch_shape=(4, 5, 3)), K.layers.LSTM(3, stateful=True), K.layers.Dense(1)]

    fm, km = _seq(build)
    a = rng.standard_normal((4, 5, 3)).astype(np.float32)
    b = rng.standard_normal((4, 5, 3)).astype(np.float32)
    for x in (a, b):
        _close(fm.predict(x, batch_size=4, verbose=0), km.predict(x, batch_size=4, verbose=0), what="stateful")
    fm.layers[0].reset_states()
    km.layers[0].reset_states()
    _close(fm.predict(a, batch_size=4, verbose=0), km.predict(a, batch_size=4, verbose=0), what="after reset")
    with pytest.raises(ValueError, match="stateful with batch size 4"):
        fm.predict(a[:3], batch_size=3, verbose=0)


def test_weights_layout_names_and_config(rng):
    lstm = fastnn.layers.LSTM(4)
    m = fastnn.Sequential([fastnn.Input((3, 2)), lstm])
    assert [w.shape for w in lstm.get_weights()] == [(2, 16), (4, 16), (16,)]
    np.testing.assert_array_equal(lstm.get_weights()[2], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    k = keras.layers.LSTM(4)
    k.build((None, 3, 2))
    assert [tuple(w.shape) for w in k.get_weights()] == [(2, 16), (4, 16), (16,)]
    u = lstm.get_weights()[1]
    np.testing.assert_allclose(u @ u.T, np.eye(4), atol=1e-5)      # orthogonal recurrent kernel
    gru = fastnn.layers.GRU(3)
    gru.build((None, 2, 5))
    assert [w.shape for w in gru.get_weights()] == [(5, 9), (3, 9), (2, 9)]
    cfg = fastnn.layers.serialize(fastnn.layers.Bidirectional(fastnn.layers.GRU(3, reset_after=False),
                                                              merge_mode="sum"))
    again = fastnn.layers.deserialize(cfg)
    assert again.merge_mode == "sum" and again.forward_layer.reset_after is False
    assert again.backward_layer.go_backwards is True
    m2 = fastnn.models.Sequential.from_config(m.get_config())
    assert m2.layers[-1].units == 4


def test_return_state_in_functional_model_matches_keras(rng):
    """Encoder-decoder: the encoder's return_state feeds the decoder's initial_state."""
    def build(K):
        enc_in, dec_in = K.Input((5, 3)), K.Input((4, 2))
        _, h, c = K.layers.LSTM(6, return_state=True)(enc_in)
        seq = K.layers.LSTM(6, return_sequences=True)(dec_in, initial_state=[h, c])
        out = K.layers.GRU(3)(seq)
        return K.Model([enc_in, dec_in], K.layers.Dense(2)(out))

    fm, km = build(fastnn), build(keras)
    km.set_weights(fm.get_weights())
    xa = rng.standard_normal((7, 5, 3)).astype(np.float32)
    xb = rng.standard_normal((7, 4, 2)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    _close(fm.predict([xa, xb], verbose=0), km.predict([xa, xb], verbose=0), what="predict")
    _train_both(fm, km, [xa, xb], y)
    again = fastnn.models.Model.from_config(fm.get_config())
    again.set_weights(fm.get_weights())
    _close(again.predict([xa, xb], verbose=0), fm.predict([xa, xb], verbose=0), what="from_config")
    # the states as model outputs
    inp = fastnn.Input((5, 3))
    seq, h, c = fastnn.layers.LSTM(4, return_sequences=True, return_state=True)(inp)
    m = fastnn.models.Model(inp, [seq, h, c])
    ys, yh, yc = m.predict(xa, verbose=0)
    np.testing.assert_array_equal(ys[:, -1], yh)


# ---- graphs (shared layers, nesting, several outputs) with masks and several-output layers
def _graph_pair(build, rng):
    fm, km = build(fastnn), build(keras)
    km.set_weights(fm.get_weights())
    _perturb_biases(fm, km, rng)
    return fm, km


def _flat(a):
    return a if isinstance(a, (list, tuple)) else [a]


def _padded_ids(rng, n, t, vocab, lengths):
    ids = rng.integers(1, vocab, (n, t)).astype(np.int32)
    for i, k in enumerate(lengths):
        ids[i, :k] = 0
    return ids


def test_shared_layers_carry_each_tensors_mask(rng):
    """One Embedding(mask_zero) and one LSTM called on two inputs padded differently: each call
    sees its own tensor's mask (masks follow tensors, not layers)."""
    def build(K):
        a, b = K.Input((7,), dtype="int32"), K.Input((7,), dtype="int32")
        emb = K.layers.Embedding(20, 4, mask_zero=True)
        lstm = K.layers.LSTM(5, return_sequences=True)
        pool = K.layers.GlobalAveragePooling1D()
        z = K.layers.Concatenate()([pool(lstm(emb(a))), pool(lstm(emb(b)))])
        return K.Model([a, b], K.layers.Dense(1)(z))

    fm, km = _graph_pair(build, rng)
    xa = _padded_ids(rng, 8, 7, 20, [0, 1, 2, 3, 4, 5, 6, 2])
    xb = _padded_ids(rng, 8, 7, 20, [6, 5, 0, 0, 1, 3, 2, 4])
    y = rng.standard_normal((8, 1)).astype(np.float32)
    _close(fm.predict([xa, xb], verbose=0), km.predict([xa, xb], verbose=0), what="predict")
    _train_both(fm, km, [xa, xb], y)


def test_nested_masked_model_and_per_output_masks(rng):
    """A nested model (Embedding(mask_zero) -> GRU) inside a two-output model: the sequence
    output keeps the mask (its loss and accuracy average over valid steps), the other output
    has none; loss weights, per-output metrics and the weights after training as Keras."""
    def build(K):
        inner_in = K.Input((6,), dtype="int32")
        inner = K.Model(inner_in, K.layers.GRU(4, return_sequences=True)(
            K.layers.Embedding(15, 3, mask_zero=True)(inner_in)), name="encoder")
        i = K.Input((6,), dtype="int32")
        seq = inner(i)
        tags = K.layers.TimeDistributed(K.layers.Dense(3, activation="softmax"), name="tags")(seq)
        total = K.layers.Dense(1, name="total")(K.layers.LSTM(2)(seq))
        return K.Model(i, [tags, total])

    fm, km = _graph_pair(build, rng)
    x = _padded_ids(rng, 9, 6, 15, [0, 1, 2, 3, 4, 5, 2, 1, 3])
    y = [np.eye(3, dtype=np.float32)[rng.integers(0, 3, (9, 6))], rng.standard_normal((9, 1)).astype(np.float32)]
    for a, b in zip(fm.predict(x, verbose=0), km.predict(x, verbose=0)):
        _close(a, b, what="predict")
    kw = dict(loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
              metrics=[["accuracy"], ["mae"]])
    fm.compile("adam", **kw)
    km.compile("adam", **kw)
    hf = fm.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    hk = km.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert sorted(hf.history) == sorted(hk.history)
    for k in hk.history:
        _close(hf.history[k], hk.history[k], rtol=2e-5, what=k)
    for i, (a, b) in enumerate(zip(fm.get_weights(), km.get_weights())):
        _close(a, b, rtol=2e-5, atol=2e-6, what=f"weight {i} {a.shape}")
    ef = fm.evaluate(x, y, verbose=0, return_dict=True)
    ek = km.evaluate(x, y, verbose=0, return_dict=True)
    for k in ek:
        _close(ef[k], ek[k], rtol=2e-5, what=f"evaluate {k}")


def test_bidirectional_several_outputs_in_a_functional_model(rng):
    """Bidirectional(merge_mode=None) gives two tensors and Bidirectional(return_state=True)
    five, through the several-output protocol; masked, trained, saved and reloaded as Keras."""
    def build(K):
        i = K.Input((6,), dtype="int32")
        e = K.layers.Embedding(12, 4, mask_zero=True)(i)
        f, b = K.layers.Bidirectional(K.layers.LSTM(3, return_sequences=True), merge_mode=None)(e)
        s = K.layers.Add()([f, b])                           # the OR of the two (equal) masks
        out, hf, cf, hb, cb = K.layers.Bidirectional(K.layers.LSTM(2, return_state=True))(s)
        z = K.layers.Concatenate()([out, hf, cb])            # cf and hb: nothing reads them
        return K.Model(i, [K.layers.Dense(2)(z), K.layers.GlobalAveragePooling1D()(f)])

    fm, km = _graph_pair(build, rng)
    x = _padded_ids(rng, 7, 6, 12, [0, 1, 2, 3, 4, 5, 1])
    y = [rng.standard_normal((7, 2)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)]
    for a, b in zip(fm.predict(x, verbose=0), km.predict(x, verbose=0)):
        _close(a, b, what="predict")
    fm.compile("adam", ["mse", "mse"])
    km.compile("adam", ["mse", "mse"])
    for _ in range(3):
        _close(fm.train_on_batch(x, y), km.train_on_batch(x, y), rtol=2e-5, what="train_on_batch")
    for i, (a, b) in enumerate(zip(fm.get_weights(), km.get_weights())):
        _close(a, b, rtol=2e-5, atol=2e-6, what=f"weight {i} {a.shape}")
    again = fastnn.models.Model.from_config(fm.get_config())
    again.set_weights(fm.get_weights())
    for a, b in zip(again.predict(x, verbose=0), fm.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


def _h5_model(K):
    """Every recurrent layer that nests layers: cells, stacked cells, both directions, a
    TimeDistributed layer (Keras keys them by attribute: lstm/cell, bidirectional/forward_layer)."""
    L = K.layers
    i = K.Input((7,), dtype="int32")
    e = L.Embedding(30, 6, mask_zero=True)(i)
    a = L.LSTM(5, return_sequences=True)(e)
    b = L.Bidirectional(L.GRU(4, return_sequences=True, reset_after=False))(a)
    c = L.RNN(L.StackedRNNCells([L.SimpleRNNCell(3), L.LSTMCell(3), L.LSTMCell(2)]), return_sequences=True)(b)
    d = L.TimeDistributed(L.Dense(3))(c)
    f = L.RNN(L.GRUCell(3))(d)
    g = L.Bidirectional(L.LSTM(3), backward_layer=L.LSTM(3, go_backwards=True), merge_mode="sum")(d)
    return K.Model(i, [L.Dense(1)(L.Concatenate()([f, g])), L.SimpleRNN(2)(d)])


def test_weights_h5_uses_keras_keys_for_nested_layers(tmp_path, rng, require):
    """A .weights.h5 written by Keras loads into fastnn and fastnn's loads back into Keras, key
    for key (layers/lstm/cell/vars/0, layers/bidirectional/forward_layer/cell/vars/0,
    layers/rnn/cell/cells/lstm_cell_1/vars/0, layers/time_distributed/layer/vars/0)."""
    h5py = require("h5py")

    def listing(path):
        names = []
        with h5py.File(path, "r") as h:
            h.visititems(lambda n, o: names.append((n, o.shape if isinstance(o, h5py.Dataset) else None)))
        return sorted(names)

    km = _h5_model(keras)
    ws = [w + (0.1 * rng.standard_normal(w.shape)).astype(np.float32) for w in km.get_weights()]
    km.set_weights(ws)
    km.save_weights(tmp_path / "k.weights.h5")
    fm = _h5_model(fastnn)
    fm.load_weights(tmp_path / "k.weights.h5")
    x = _padded_ids(rng, 5, 7, 30, [0, 2, 4, 1, 6])
    for a, b in zip(fm.predict(x, verbose=0), km.predict(x, verbose=0)):
        _close(a, b, what="predict with Keras's weight file")
    fm.save_weights(tmp_path / "f.weights.h5")
    assert listing(tmp_path / "f.weights.h5") == listing(tmp_path / "k.weights.h5")
    km2 = _h5_model(keras)
    km2.load_weights(tmp_path / "f.weights.h5")
    for a, b in zip(km2.get_weights(), fm.get_weights()):
        np.testing.assert_array_equal(a, b)
