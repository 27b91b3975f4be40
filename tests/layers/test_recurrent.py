"""Recurrent layers without an oracle: gradient checks of every layer, a custom cell on the Python
time loop, saving and loading, summary, errors."""
import numpy as np
import pytest

import fastnn
from fastnn import layers
from fastnn.models.gradient_check import gradient_check


@layers.register
class MinimalRNNCell(layers.Layer):
    """h_t = tanh(x_t @ w + h_{t-1} @ u): the custom-cell example of docs/layers.md."""

    def __init__(self, units, **kw):
        super().__init__(**kw)
        self.units = self.state_size = self.output_size = units

    def build(self, input_shape):
        self.w = self.add_weight((input_shape[-1], self.units), name="w")
        self.u = self.add_weight((self.units, self.units), "orthogonal", name="u")
        self._steps = []

    def call(self, x, states, training=False):
        h = np.tanh(x @ self.w.value + states[0] @ self.u.value)
        if training:
            if not self._steps:
                self.w.grad[...] = 0
                self.u.grad[...] = 0
            self._steps.append((x, states[0], h))
        return h, [h]

    def backward(self, d_out, d_states):
        x, h_prev, h = self._steps.pop()
        dz = (d_out + d_states[0]) * (1 - h * h)
        self.w.grad += x.T @ dz
        self.u.grad += h_prev.T @ dz
        return dz @ self.w.value.T, [dz @ self.u.value.T]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


L = layers
# every recurrent layer and option, smooth activations (the check perturbs weights by +-eps)
GRAD_CASES = {
    "simple_rnn": lambda: [L.SimpleRNN(4, return_sequences=True), L.Flatten()],
    "lstm": lambda: [L.LSTM(4)],
    "lstm_back_seq": lambda: [L.LSTM(3, go_backwards=True, return_sequences=True), L.GlobalAveragePooling1D()],
    "gru": lambda: [L.GRU(4)],
    "gru_before": lambda: [L.GRU(4, reset_after=False, return_sequences=True), L.Flatten()],
    "stacked": lambda: [L.RNN(L.StackedRNNCells([L.LSTMCell(3), L.GRUCell(3)]))],
    "bidirectional": lambda: [L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="mul"), L.Flatten()],
    "time_distributed": lambda: [L.TimeDistributed(L.Dense(3, activation="tanh")), L.LSTM(3)],
    "custom_cell": lambda: [L.RNN(MinimalRNNCell(4))],
    "conv1d_lstm": lambda: [L.Conv1D(4, 2, activation="tanh"), L.LSTM(3)],
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradient_check(case, rng):
    fastnn.utils.set_random_seed(3)
    model = fastnn.Sequential([fastnn.Input((5, 3)), *GRAD_CASES[case](), L.Dense(2)])
    model.compile("sgd", "mse")
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    y = rng.standard_normal((6, 2)).astype(np.float32)
    errors = gradient_check(model, x, y)
    # float32 central differences: a correct layer measures 1e-4 - 3e-3 here, a wrong one ~1
    assert max(errors.values()) < 2e-2, errors


def test_gradient_check_masked_embedding(rng):
    fastnn.utils.set_random_seed(4)
    model = fastnn.Sequential([fastnn.Input((6,), dtype="int32"), L.Embedding(12, 3, mask_zero=True),
                               L.LSTM(4, return_sequences=True), L.GlobalAveragePooling1D(), L.Dense(2)])
    model.compile("sgd", "mse")
    ids = rng.integers(1, 12, (5, 6)).astype(np.int32)
    ids[:, :2] = 0
    errors = gradient_check(model, ids, rng.standard_normal((5, 2)).astype(np.float32))
    assert max(errors.values()) < 2e-2, errors


def test_custom_cell_trains_and_masks(rng):
    model = fastnn.Sequential([fastnn.Input((7, 2)), L.Masking(0.0), L.RNN(MinimalRNNCell(5)), L.Dense(1)])
    model.compile(fastnn.optimizers.Adam(0.02), "mse")
    x = rng.standard_normal((16, 7, 2)).astype(np.float32)
    x[:, :3] = 0.0
    y = x[:, -1, :1]
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * first
    # masked leading steps change nothing: the same output without them
    short = fastnn.Sequential([fastnn.Input((4, 2)), L.RNN(model.layers[1].cell), model.layers[2]])
    np.testing.assert_allclose(model.predict(x, verbose=0), short.predict(x[:, 3:], verbose=0), atol=1e-6)


def test_save_and_load(tmp_path, rng):
    inp = fastnn.Input((9,), dtype="int32")
    e = L.Embedding(30, 4, mask_zero=True)(inp)
    h = L.Bidirectional(L.LSTM(5, return_sequences=True))(e)
    h = L.GRU(3, reset_after=False)(h)
    model = fastnn.models.Model(inp, L.Dense(2, activation="softmax")(h))
    model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    ids = rng.integers(0, 30, (12, 9))
    y = rng.integers(0, 2, 12)
    model.fit(ids, y, epochs=1, verbose=0)
    want = model.predict(ids, verbose=0)
    model.save(tmp_path / "m.keras")
    again = fastnn.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(ids, verbose=0), want)
    model.save_weights(tmp_path / "w.weights.h5")
    model.set_weights([w * 0 for w in model.get_weights()])
    model.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(model.predict(ids, verbose=0), want)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Bidirectional" in text and "(None, 9, 10)" in text and "Embedding" in text


def test_errors_name_what_to_fix(rng):
    with pytest.raises(ValueError, match="expects inputs of rank 3"):
        fastnn.Sequential([fastnn.Input((5,)), L.LSTM(3)])
    m = fastnn.Sequential([fastnn.Input((4,), dtype="int32"), L.Embedding(10, 2, name="emb"), L.LSTM(2)])
    with pytest.raises(ValueError, match=r"token id 10 .* layer 'emb'"):
        m.predict(np.array([[1, 2, 3, 10]]), verbose=0)
    with pytest.raises(ValueError, match="units must be a positive int"):
        L.GRU(0)
    with pytest.raises(ValueError, match="merge_mode must be"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="dtype must be 'float32'"):
        fastnn.Input((3,), dtype="float64")
    with pytest.raises(TypeError, match="holds integer ids"):
        m.predict(np.array([[1.5, 2, 3, 4]]), verbose=0)


def test_cell_call_one_step_matches_layer(rng):
    cell = L.LSTMCell(4)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    layer = L.RNN(cell, return_sequences=True)
    y = layer(x)
    h, c = cell.get_initial_state(3)
    for t in range(5):
        out, (h, c) = cell(x[:, t], [h, c])
        np.testing.assert_allclose(out, y[:, t], atol=1e-6)
