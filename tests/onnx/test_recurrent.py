"""ONNX export of the recurrent layers (fastnn.onnx.recurrent) checked by ONNX Runtime at two batch
sizes (tolerance: tests/onnxutil.py): SimpleRNN, LSTM, GRU on ONNX's RNN/LSTM/GRU ops (Keras's gate
order, GRU reset_after -> linear_before_reset), stacked cells, Bidirectional in every merge mode,
return_state and initial_state, masks from Embedding(mask_zero=True) and Masking as
sequence_lens (padding anywhere in the sequence), TimeDistributed, and the errors for what ONNX
cannot hold (stateful layers, cells written in Python).

The recurrent layers come with their own branch; where fastnn has none, this module skips.
"""
import numpy as np
import pytest

from oracles import require

onnx = require("onnx")
require("onnxruntime")

import fastnn  # noqa: E402
import fastnn.onnx  # noqa: E402
from fastnn import layers as L  # noqa: E402

if not hasattr(L, "LSTM"):
    pytest.skip("fastnn has no recurrent layers in this build (fastnn.layers.recurrent is absent), so there "
                "is nothing recurrent to export", allow_module_level=True)

from onnxutil import check, ops, randomize  # noqa: E402

T, F = 6, 3


def model_of(shape, *layers, dtype="float32", seed=0):
    m = fastnn.Sequential([fastnn.Input(shape, dtype=dtype), *layers])
    randomize(m, seed)
    return m


def padded_ids(model, batch, rng):
    """Token ids with 0 (padding) left, right, in the middle and random; no row all padding."""
    ids = rng.integers(0, 5, (batch, T))
    ids[:, 0] = np.where(ids[:, 0] == 0, 1, ids[:, 0]) if batch == 1 else ids[:, 0]
    if batch > 1:
        ids[0, :2] = 0          # left padding
        ids[1, -3:] = 0         # right padding
        ids[2, 2:4] = 0         # a hole
        ids[3] = [0, 1, 0, 2, 0, 3]
    ids[ids.sum(axis=1) == 0, -1] = 4
    return [ids.astype(np.int32)]


CELLS = [
    (L.SimpleRNN, dict()), (L.SimpleRNN, dict(activation="relu", return_sequences=True)),
    (L.SimpleRNN, dict(use_bias=False, go_backwards=True, return_sequences=True)),
    (L.LSTM, dict()), (L.LSTM, dict(return_sequences=True)),
    (L.LSTM, dict(recurrent_activation="hard_sigmoid", go_backwards=True)),
    (L.LSTM, dict(use_bias=False, activation="relu", return_sequences=True)),
    (L.GRU, dict()), (L.GRU, dict(reset_after=False, return_sequences=True)),
    (L.GRU, dict(go_backwards=True, return_sequences=True)),
    (L.GRU, dict(recurrent_activation="hard_sigmoid", activation="softsign")),
    (L.GRU, dict(reset_after=False, use_bias=False, go_backwards=True)),
]


@pytest.mark.parametrize("cls,kwargs", CELLS, ids=[f"{c.__name__}-{k}" for c, k in CELLS])
def test_recurrent_layers(cls, kwargs):
    proto = check(model_of((T, F), cls(4, **kwargs)))
    assert {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}[cls.__name__] in ops(proto)


def test_gru_reset_after_is_linear_before_reset():
    for reset_after in (True, False):
        proto = check(model_of((T, F), L.GRU(4, reset_after=reset_after)))
        node = next(n for n in proto.graph.node if n.op_type == "GRU")
        lbr = {a.name: a.i for a in node.attribute}.get("linear_before_reset", 0)
        assert lbr == int(reset_after)


def test_unknown_timesteps_and_stacked_layers():
    check(model_of((None, F), L.LSTM(4, return_sequences=True), L.GRU(3, return_sequences=True), L.SimpleRNN(2)))


def test_rnn_over_stacked_cells():
    check(model_of((T, F), L.RNN([L.LSTMCell(3), L.GRUCell(4), L.SimpleRNNCell(2)], return_sequences=True)))
    check(model_of((T, F), L.RNN(L.GRUCell(3, reset_after=False), go_backwards=True)))


@pytest.mark.parametrize("cls", [L.LSTM, L.GRU, L.SimpleRNN])
def test_return_state_and_initial_state(cls):
    n_states = 2 if cls is L.LSTM else 1
    x = fastnn.Input((T, F), name="x")
    states = [fastnn.Input((4,), name=f"s{k}") for k in range(n_states)]
    y, *finals = cls(4, return_sequences=True, return_state=True)(x, initial_state=states)
    m = fastnn.Model([x, *states], [y, *finals])
    randomize(m)
    check(m)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional(merge_mode, return_sequences):
    x = fastnn.Input((T, F))
    out = L.Bidirectional(L.LSTM(3, return_sequences=return_sequences), merge_mode=merge_mode)(x)
    m = fastnn.Model(x, out)
    randomize(m)
    check(m)


def test_bidirectional_return_state():
    x = fastnn.Input((T, F))
    outs = L.Bidirectional(L.GRU(3, return_state=True))(x)
    m = fastnn.Model(x, outs)
    randomize(m)
    check(m)


MASKED = [
    (L.LSTM, dict()), (L.LSTM, dict(return_sequences=True)),
    (L.LSTM, dict(return_sequences=True, zero_output_for_mask=True)),
    (L.LSTM, dict(zero_output_for_mask=True)),
    (L.GRU, dict(go_backwards=True, return_sequences=True)), (L.GRU, dict(reset_after=False)),
    (L.SimpleRNN, dict(return_sequences=True, go_backwards=True, zero_output_for_mask=True)),
]


@pytest.mark.parametrize("cls,kwargs", MASKED, ids=[f"{c.__name__}-{k}" for c, k in MASKED])
def test_embedding_mask_as_sequence_lens(cls, kwargs):
    proto = check(model_of((T,), L.Embedding(5, F, mask_zero=True), cls(4, **kwargs), dtype="int32"),
                  make_inputs=padded_ids)
    node = next(n for n in proto.graph.node if n.op_type in ("RNN", "LSTM", "GRU"))
    assert node.input[4], "the mask must reach the op as sequence_lens"


@pytest.mark.parametrize("return_sequences", [False, True])
def test_masked_bidirectional_and_stack(return_sequences):
    check(model_of((T,), L.Embedding(5, F, mask_zero=True), L.Bidirectional(L.GRU(3, return_sequences=True)),
                   L.Dropout(0.5), L.Bidirectional(L.LSTM(2, return_sequences=return_sequences), merge_mode="sum"),
                   dtype="int32"), make_inputs=padded_ids)


def test_masking_layer_and_masked_average():
    def with_masked_steps(model, batch, rng):
        x = rng.normal(0, 1, (batch, T, F)).astype(np.float32)
        x[:, 1] = 0.0
        if batch > 1:
            x[1, 3:] = 0.0
        return [x]
    check(model_of((T, F), L.Masking(), L.GRU(4, return_sequences=True), L.GlobalAveragePooling1D()),
          make_inputs=with_masked_steps)
    check(model_of((T,), L.Embedding(5, F, mask_zero=True), L.Dense(4, activation="tanh"),
                   L.GlobalAveragePooling1D(), dtype="int32"), make_inputs=padded_ids)


def test_merged_masks():
    a, b = fastnn.Input((T,), dtype="int32"), fastnn.Input((T,), dtype="int32")
    ea, eb = L.Embedding(5, F, mask_zero=True)(a), L.Embedding(5, F, mask_zero=True)(b)
    s = L.LSTM(3, return_sequences=True)(L.Add()([ea, eb]))
    c = L.GRU(2)(L.Concatenate()([ea, eb]))
    m = fastnn.Model([a, b], [s, c])
    randomize(m)
    check(m, make_inputs=lambda model, batch, rng: padded_ids(model, batch, rng) + padded_ids(model, batch, rng))


def test_embedding_int64_and_time_distributed():
    check(model_of((T,), L.Embedding(7, 4), L.TimeDistributed(L.Dense(3, activation="relu")), L.LSTM(2),
                   dtype="int64"))
    check(model_of((3, 6, 6, 2), L.TimeDistributed(L.Conv2D(3, 3)), L.TimeDistributed(L.Flatten()),
                   L.SimpleRNN(2)))


def test_stateful_is_an_error_naming_the_layer():
    m = fastnn.Sequential([fastnn.Input(batch_shape=(2, T, F)), L.LSTM(3, stateful=True, name="memory")])
    with pytest.raises(fastnn.onnx.ExportError, match=r"layer 'memory' \(LSTM\).*stateful=True"):
        fastnn.onnx.to_onnx(m)


def test_python_cell_is_an_error_naming_the_layer():
    class Doubler(L.Layer):
        state_size = 2
        output_size = 2

        def build(self, input_shape):
            pass

        def call(self, inputs, states, training=False):
            return inputs[:, :2] * 2, [inputs[:, :2]]
    m = fastnn.Sequential([fastnn.Input((T, F)), L.RNN(Doubler(), name="mine")])
    with pytest.raises(fastnn.onnx.ExportError, match=r"layer 'mine' \(RNN\).*Doubler.*Python"):
        fastnn.onnx.to_onnx(m)


@pytest.mark.parametrize("layer", [lambda: L.LSTM(3), lambda: L.GRU(3, return_sequences=True),
                                   lambda: L.SimpleRNN(3, zero_output_for_mask=True),
                                   lambda: L.Bidirectional(L.LSTM(3, return_sequences=True))])
def test_a_row_all_padding(layer):
    """sequence_lens = 0 for a row with no valid step: ONNX Runtime gives Keras's zeros."""
    def ids(model, batch, rng):
        x = padded_ids(model, batch, rng)[0]
        x[0] = 0
        return [x]
    check(model_of((T,), L.Embedding(5, F, mask_zero=True), layer(), dtype="int32"), make_inputs=ids)
