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


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("seq", [False, True])
def test_masked_embedding_matches_keras(cell, seq, rng):
    """Embedding(mask_zero=True): padded steps skipped, states carried, outputs as Keras."""
    def build(K):
        layers = [K.Input((8,), dtype="int32"), K.layers.Embedding(20, 4, mask_zero=True),
                  getattr(K.layers, cell)(5, return_sequences=seq)]
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
