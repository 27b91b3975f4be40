"""Recurrent layers: SimpleRNN, LSTM, GRU, their cells, RNN(cell), StackedRNNCells,
Bidirectional and TimeDistributed (Keras 3 names, arguments, defaults, weight layouts).

The built-in cells run the whole sequence in one compiled call (fastnn.kernels.rnn: one input
projection GEMM, then a compiled time loop; backward through time in one call). A cell of your
own runs on a Python time loop: it implements

    call(inputs, states, training) -> (output, new_states)     one step, arrays (N, ...)
    backward(d_output, d_states) -> (d_inputs, d_prev_states)  called once per step in reverse
                                                              order (keep a stack of what
                                                              each step needs)

with `state_size` (int or list) and `build(input_shape)`; see docs/layers.md.

Masks (Keras): a masked step keeps the states and repeats the previous output (zeros with
zero_output_for_mask); return_sequences passes the mask on. Dropout masks are drawn once per
batch and reused at every step; recurrent_dropout > 0 makes LSTM/GRU use one mask per gate
(Keras's implementation=1).
"""
from __future__ import annotations

import copy
import numbers

import numpy as np

from fastnn import _random
from fastnn import kernels as K
from fastnn.kernels.conv import blas_pinned
from fastnn.layers.base import FLOATX, KerasTensor, Layer, serialize_obj, shape_str


def _pos_int(v, name, cls):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{cls}: {name} must be a positive int; received {name}={v!r}.")
    return int(v)


def _rate(v, name, cls):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
        raise ValueError(f"{cls}: {name} must be a float in [0, 1]; received {name}={v!r}.")
    return float(v)


def _act_name(act, cls, arg):
    from fastnn import activations
    if act is None:
        return "linear"
    f = activations.get(act)
    name = getattr(f, "name", None)
    if name is None or name not in K.activation.NAMES or getattr(f, "params", None):
        raise ValueError(f"{cls}: {arg}={act!r} has no fastnn kernel; use a Keras activation name "
                         f"(tanh, sigmoid, relu, hard_sigmoid, ...).")
    return name


class _Nested:
    """Mixin of the layers made of layers (RNN and its cell, StackedRNNCells, Bidirectional,
    TimeDistributed; `_weight_children()` names them). A shared layer's second call runs on a
    call instance (docs/layers.md): here the inner layers get call instances too, so each call
    keeps its own gradients (summed into the layer's by the model) and its own forward state."""

    def _call_instance(self):
        inst = Layer._call_instance(self)
        variables = []
        for attr, child in inst._primary._weight_children():
            if isinstance(child, (list, tuple)):
                twin = [c._call_instance() for c in child]
                for c in twin:
                    variables += c._variables
            else:
                twin = child._call_instance()
                variables += twin._variables
            setattr(inst, attr, twin)
        inst._variables = variables
        return inst


# ============================================================================ cells
class _BuiltinCell(Layer):
    """Common arguments and weights of SimpleRNNCell, LSTMCell and GRUCell."""

    _cell = None          # "simple_rnn", "lstm", "gru"
    _gates = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        cls = type(self).__name__
        super().__init__(**kwargs)
        self.units = _pos_int(units, "units", cls)
        self.activation = _act_name(activation, cls, "activation")
        self.recurrent_activation = _act_name(recurrent_activation, cls, "recurrent_activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer, self.recurrent_regularizer = kernel_regularizer, recurrent_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel_constraint, self.recurrent_constraint = kernel_constraint, recurrent_constraint
        self.bias_constraint = bias_constraint
        self.dropout = _rate(dropout, "dropout", cls)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", cls)
        self.seed = seed
        self._seedseq = np.random.SeedSequence(seed) if seed is not None else None

    @property
    def state_size(self):
        return [self.units, self.units] if self._cell == "lstm" else self.units

    @property
    def output_size(self):
        return self.units

    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def build(self, input_shape):
        d = input_shape[-1]
        if d is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': the last axis of the input must be "
                             f"known; received {shape_str(input_shape)}.")
        gu = self._gates * self.units
        # the orthogonal initializer's QR on multi-threaded BLAS took 5 s on a loaded 2-core
        # machine (0.6 s of CPU): build with BLAS on one thread
        with blas_pinned():
            self._build_weights(d, gu)

    def _build_weights(self, d, gu):
        self.kernel = self.add_weight((d, gu), self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight((self.units, gu), self.recurrent_initializer, "recurrent_kernel",
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = (self.add_weight(self._bias_shape(), self._bias_init(), "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    # ---- dropout masks (one per batch, reused at every step)
    def _next_seed(self):
        if self._seedseq is None:
            return _random.next_seed()
        return int(self._seedseq.spawn(1)[0].generate_state(1, np.uint64)[0])

    def _mask_count(self):
        return self._gates if (self._cell != "simple_rnn" and self.recurrent_dropout > 0) else 1

    def _draw(self, owner, key, rate, rows, per_row):
        """A scaled dropout mask (rows, *per_row): 0 or float32(1/(1-rate)), drawn by
        fastnn.kernels.dropout's counter-based generator at the batch's global rows
        (fastnn._random.batch_row_offset()), so a data-parallel process's rows get the masks
        they have in the whole batch."""
        shape = (rows, *per_row)
        buf = owner._buffer(key, shape)
        buf.fill(1.0)
        bits = owner._buffer(key + "_bits", shape, np.uint8)
        K.dropout.dropout(buf, rate, self._next_seed(), out=buf, mask=bits,
                          offset=_random.batch_row_offset() * int(np.prod(per_row)))
        return buf

    def dropout_masks(self, owner, n, d, training):
        """(input_mask, recurrent_mask) for fastnn.kernels.rnn, None when off: input (c, n, d),
        recurrent (n, c, units) or (n, units), c = one mask per gate or one for all."""
        im = rm = None
        c = self._mask_count()
        if training and 0 < self.dropout < 1:
            rows = self._draw(owner, "dp_draw", self.dropout, n, (c, d))     # drawn row-major
            im = owner._buffer("dp_mask", (c, n, d))
            np.copyto(im, rows.transpose(1, 0, 2))
        if training and 0 < self.recurrent_dropout < 1:
            rm = self._draw(owner, "rdp_mask", self.recurrent_dropout, n, (c, self.units) if c > 1 else (self.units,))
        return im, rm

    def kernel_args(self):
        """Keyword arguments of fastnn.kernels.rnn.forward for this cell's weights."""
        return dict(cell=self._cell, kernel=self.kernel.value, recurrent_kernel=self.recurrent_kernel.value,
                    bias=None if self.bias is None else self.bias.value, activation=self.activation,
                    recurrent_activation=self.recurrent_activation,
                    reset_after=getattr(self, "reset_after", True))

    # ---- one step (Keras's cell(inputs, states)), through the same kernel with T = 1
    def call(self, inputs, states, training=False):
        x = np.ascontiguousarray(inputs, FLOATX)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        h0 = np.ascontiguousarray(states[0], FLOATX)
        c0 = np.ascontiguousarray(states[1], FLOATX) if self._cell == "lstm" else None
        y, h, c, _ = K.rnn.forward(**self.kernel_args(), x=x[:, None, :], h0=h0, c0=c0)
        h = h.copy()
        return h, ([h, c.copy()] if self._cell == "lstm" else [h])

    def __call__(self, x, states=None, training=False, **kwargs):
        if states is None:
            return super().__call__(x, training=training)
        x = np.asarray(x, FLOATX)
        self._check_and_build((None, *x.shape[1:]))
        return self.call(x, states, training)

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size if isinstance(self.state_size, list) else [self.state_size]
        return [np.zeros((batch_size, s), FLOATX) for s in sizes]

    def get_config(self):
        c = super().get_config()
        c.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                 kernel_initializer=serialize_obj(self.kernel_initializer),
                 recurrent_initializer=serialize_obj(self.recurrent_initializer),
                 bias_initializer=serialize_obj(self.bias_initializer),
                 kernel_regularizer=serialize_obj(self.kernel_regularizer),
                 recurrent_regularizer=serialize_obj(self.recurrent_regularizer),
                 bias_regularizer=serialize_obj(self.bias_regularizer),
                 kernel_constraint=serialize_obj(self.kernel_constraint),
                 recurrent_constraint=serialize_obj(self.recurrent_constraint),
                 bias_constraint=serialize_obj(self.bias_constraint),
                 dropout=self.dropout, recurrent_dropout=self.recurrent_dropout, seed=self.seed)
        if self._cell != "simple_rnn":
            c["recurrent_activation"] = self.recurrent_activation
        return c


class SimpleRNNCell(_BuiltinCell):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    _cell = "simple_rnn"
    _gates = 1

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)


class LSTMCell(_BuiltinCell):
    """Keras's LSTM cell: gates i, f, c, o along the 4*units axis; unit_forget_bias sets the
    forget slice of the bias to 1."""

    _cell = "lstm"
    _gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, implementation=2, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.implementation = 1 if self.recurrent_dropout > 0 else int(implementation)

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        from fastnn import initializers
        base = initializers.get(self.bias_initializer)
        u = self.units

        def init(shape, dtype="float32"):
            return np.concatenate([np.asarray(base((u,), dtype=dtype)), np.ones(u, np.float32),
                                   np.asarray(base((2 * u,), dtype=dtype))]).astype(np.float32)
        return init

    def get_config(self):
        c = super().get_config()
        c.update(unit_forget_bias=self.unit_forget_bias, implementation=self.implementation)
        return c


class GRUCell(_BuiltinCell):
    """Keras's GRU cell: gates z, r, h; reset_after=True (default) keeps two biases (2, 3*units)."""

    _cell = "gru"
    _gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, reset_after=True, seed=None,
                 implementation=2, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)
        self.reset_after = bool(reset_after)
        self.implementation = 1 if self.recurrent_dropout > 0 else int(implementation)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def get_config(self):
        c = super().get_config()
        c.update(reset_after=self.reset_after, implementation=self.implementation)
        return c


class StackedRNNCells(_Nested, Layer):
    """Several cells run one after the other at every step (the output of one is the input of
    the next); the states are all cells' states in order."""

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        from fastnn import layers as L
        self.cells = [c if isinstance(c, Layer) else L.deserialize(c) for c in cells]
        if not self.cells:
            raise ValueError("StackedRNNCells: give at least one cell.")

    @property
    def state_size(self):
        out = []
        for c in self.cells:
            s = c.state_size
            out.extend(s if isinstance(s, (list, tuple)) else [s])
        return out

    @property
    def output_size(self):
        return self.cells[-1].output_size

    def build(self, input_shape):
        shape = tuple(input_shape)
        for c in self.cells:
            c._maybe_build(shape)
            shape = (*shape[:-1], c.output_size)
        self._variables = [v for c in self.cells for v in c._variables]

    def _weight_children(self):     # .weights.h5 keys: .../cells/lstm_cell/vars/0 (Keras)
        return [("cells", self.cells)]

    def get_config(self):
        from fastnn.layers import serialize
        return {**super().get_config(), "cells": [serialize(c) for c in self.cells]}


# ============================================================================ RNN
def _state_sizes(cell):
    s = cell.state_size
    return list(s) if isinstance(s, (list, tuple)) else [s]


class RNN(_Nested, Layer):
    """Runs a cell over the time axis of (batch, timesteps, features) inputs.

    Built-in cells (and StackedRNNCells of them) run on the compiled whole-sequence kernels;
    other cells on a Python time loop (see the module docstring for their protocol).
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        super().__init__(**kwargs)
        if not isinstance(cell, Layer) or not hasattr(cell, "state_size"):
            raise ValueError(f"RNN: cell must be a Layer with a `state_size` and a call(inputs, states) "
                             f"method; received {cell!r}.")
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)     # accepted: the compiled loop is already unrolled-fast
        self.zero_output_for_mask = bool(zero_output_for_mask)   # Keras 3: False (Keras 2: return_sequences)
        self.supports_masking = True
        self._states = None            # stateful: the states carried to the next batch
        self._mask = None              # set by the model before forward (the input's mask)

    # ---- structure
    def _weight_children(self):     # .weights.h5 keys: layers/lstm/cell/vars/0 (Keras)
        return [("cell", self.cell)]

    def _cells(self):
        return self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]

    def _compiled(self):
        return all(isinstance(c, _BuiltinCell) for c in self._cells())

    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        if len(shape) != 3:
            raise ValueError(f"{type(self).__name__} '{self.name}' expects inputs of rank 3 (batch, timesteps, "
                             f"features); received shape {shape_str(shape)}. Reshape 2-D data to "
                             f"(batch, timesteps, 1), or feed an Embedding's output.")
        if self.stateful and shape[0] is None and self._input_shape_arg is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': stateful=True needs a fixed batch size; "
                             f"give Input(batch_shape=(batch, timesteps, features)) or batch_input_shape.")
        self.cell._maybe_build((shape[0], shape[2]))
        self._variables = list(self.cell._variables)
        self._batch = shape[0]

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        u = self.cell.output_size
        out = (shape[0], shape[1], u) if self.return_sequences else (shape[0], u)
        if self.return_state:
            return [out] + [(shape[0], s) for s in _state_sizes(self.cell)]
        return out

    def compute_mask(self, inputs, mask):
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * len(_state_sizes(self.cell))
        return out

    @property
    def states(self):
        return self._states

    def reset_states(self, states=None):
        if not self.stateful:
            raise AttributeError(f"{type(self).__name__} '{self.name}': reset_states needs stateful=True.")
        if self._states is None:
            return
        for i, s in enumerate(self._states):
            s[...] = 0.0 if states is None else np.asarray(states[i], FLOATX)

    reset_state = reset_states

    def _initial_states(self, n, given):
        sizes = _state_sizes(self.cell)
        if given:
            return [np.ascontiguousarray(g, FLOATX) for g in given]
        if self.stateful:
            if self._batch is not None and n != self._batch:
                raise ValueError(f"{type(self).__name__} '{self.name}' is stateful with batch size {self._batch}; "
                                 f"received a batch of {n}. Feed batches of exactly {self._batch} samples "
                                 f"(batch_size={self._batch}, and a sample count divisible by it).")
            if self._states is None or self._states[0].shape[0] != n:
                self._states = [np.zeros((n, s), FLOATX) for s in sizes]
            return self._states
        return [None] * len(sizes)

    # ---- compute
    def forward(self, x, training=False):
        given = []
        if isinstance(x, list):
            x, given = x[0], list(x[1:])
        n, t = x.shape[0], x.shape[1]
        mask = self._mask[0] if isinstance(self._mask, list) else self._mask
        if mask is not None:
            mask = np.asarray(mask, bool)
        self._given = len(given)
        states = self._initial_states(n, given)
        self._training = bool(training)
        if self._compiled():
            y, last, finals = self._forward_compiled(x, mask, states, training)
        else:
            y, last, finals = self._forward_python(x, mask, states, training)
        if self.stateful:
            for s, f in zip(self._states, finals):
                s[...] = f
        out = y if self.return_sequences else last
        if self.return_state:
            return [out] + list(finals)
        return out

    def _forward_compiled(self, x, mask, states, training):
        self._caches = []
        inp, m, go, si = x, mask, self.go_backwards, 0
        finals = []
        for k, cell in enumerate(self._cells()):
            ns = len(_state_sizes(cell))
            st = states[si:si + ns]
            si += ns
            im, rm = cell.dropout_masks(self, x.shape[0], inp.shape[2], training)
            y, h, c, cache = K.rnn.forward(
                **cell.kernel_args(), x=inp, h0=st[0], c0=st[1] if ns > 1 else None, mask=m,
                go_backwards=go, zero_output_for_mask=self.zero_output_for_mask, input_mask=im,
                recurrent_mask=rm, training=training, alloc=self._key_alloc(k))
            self._caches.append(cache)
            finals += [h] if ns == 1 else [h, c]
            if go and m is not None and k + 1 < len(self._cells()):   # outputs are in step order
                mr = self._buffer("mask_rev", m.shape, np.bool_)
                np.copyto(mr, m[:, ::-1])
                m = mr
            go = False
            inp = y
        last = self._buffer("last", (x.shape[0], inp.shape[2]))
        np.copyto(last, inp[:, -1])
        return inp, last, finals

    def _key_alloc(self, k):
        def alloc(key, shape, dtype=FLOATX):
            return self._buffer(f"c{k}:{key}", shape, dtype)
        return alloc

    def _forward_python(self, x, mask, states, training):
        cell = self.cell
        n, t = x.shape[0], x.shape[1]
        sizes = _state_sizes(cell)
        st = [np.zeros((n, s), FLOATX) if g is None else np.array(g, FLOATX) for g, s in zip(states, sizes)]
        outs = []
        prev = None
        self._valid = []
        order = range(t - 1, -1, -1) if self.go_backwards else range(t)
        for ti in order:
            o, new = cell.call(np.ascontiguousarray(x[:, ti]), st, training=training)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            o = np.asarray(o, FLOATX)
            if prev is None:
                prev = np.zeros_like(o)
            if mask is not None:
                v = mask[:, ti][:, None]
                st = [np.where(v, a, b) for a, b in zip(new, st)]
                o = np.where(v, o, 0.0 if self.zero_output_for_mask else prev).astype(FLOATX)
                self._valid.append(mask[:, ti].copy())
            else:
                st = [np.asarray(a, FLOATX) for a in new]
                self._valid.append(None)
            prev = o
            outs.append(o)
        y = np.ascontiguousarray(np.stack(outs, axis=1), FLOATX)
        self._py_shape = x.shape
        return y, np.ascontiguousarray(y[:, -1]), st

    def backward(self, dy):
        dstates = []
        if self.return_state:
            dy, dstates = dy[0], list(dy[1:])
        if self._compiled():
            dx, d0 = self._backward_compiled(dy, dstates)
        else:
            dx, d0 = self._backward_python(dy, dstates)
        if self._given:
            return [dx] + d0[:self._given]
        return dx

    def _backward_compiled(self, dy, dstates):
        cells = self._cells()
        sizes = [len(_state_sizes(c)) for c in cells]
        offs = np.cumsum([0] + sizes)
        d0 = []
        dseq = dy if self.return_sequences else None
        dlast = None if self.return_sequences else dy
        dx = None
        for k in range(len(cells) - 1, -1, -1):
            ds = dstates[offs[k]:offs[k + 1]] if dstates else [None] * sizes[k]
            ds = [None if d is None else np.ascontiguousarray(d, FLOATX) for d in ds]
            need_dx = k > 0 or self._need_dx or self._given > 0
            dx, dw, du, db, dh0, dc0 = K.rnn.backward(
                self._caches[k], dy=dseq, dy_last=dlast, dh=ds[0], dc=ds[1] if sizes[k] > 1 else None,
                need_dx=need_dx, dkernel=cells[k].kernel.grad, drecurrent=cells[k].recurrent_kernel.grad,
                dbias=cells[k].bias.grad if cells[k].bias is not None else None)
            d0 = ([dh0] if sizes[k] == 1 else [dh0, dc0]) + d0
            dseq, dlast = dx, None
        return dx, d0

    def _backward_python(self, dy, dstates):
        cell = self.cell
        n, t, d = self._py_shape
        sizes = _state_sizes(cell)
        ds = [np.zeros((n, s), FLOATX) if g is None else np.array(g, FLOATX)
              for g, s in zip(dstates or [None] * len(sizes), sizes)]
        dx = np.zeros((n, t, d), FLOATX)
        carry = None
        order = list(range(t - 1, -1, -1) if self.go_backwards else range(t))
        for s in range(t - 1, -1, -1):
            g = np.zeros((n, cell.output_size), FLOATX) if carry is None else carry
            if dy is None:        # return_state: nothing read the output, only the states
                pass
            elif self.return_sequences:
                g = g + dy[:, s]
            elif s == t - 1:
                g = g + dy
            valid = self._valid[s]
            dxi, dprev = cell.backward(g if valid is None else g * valid[:, None],
                                       ds if valid is None else [a * valid[:, None] for a in ds])
            dprev = list(dprev) if isinstance(dprev, (list, tuple)) else [dprev]
            if valid is None:
                ds, carry = dprev, None
            else:
                v = valid[:, None]
                ds = [np.where(v, a, b) for a, b in zip(dprev, ds)]
                carry = None if self.zero_output_for_mask else np.where(v, 0.0, g).astype(FLOATX)
                dxi = dxi * v
            dx[:, order[s]] = dxi
        return dx, ds

    # ---- Keras API
    def __call__(self, x, training=False, initial_state=None, mask=None, **kwargs):
        if initial_state is not None:
            init = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            x = [x] + init
        return super().__call__(x, training=training, **kwargs)

    def get_config(self):
        from fastnn.layers import serialize
        c = super().get_config()
        c.update(return_sequences=self.return_sequences, return_state=self.return_state,
                 go_backwards=self.go_backwards, stateful=self.stateful, unroll=self.unroll,
                 zero_output_for_mask=self.zero_output_for_mask)
        if type(self) is RNN:
            c["cell"] = serialize(self.cell)
        return c

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None)
        if cls is RNN:
            from fastnn.layers import deserialize
            config["cell"] = deserialize(config["cell"])
        return cls(**config)


_LAYER_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
               "zero_output_for_mask", "name", "trainable", "dtype", "input_shape", "input_dim",
               "batch_size", "batch_input_shape", "input_length", "activity_regularizer")


class _CellLayer(RNN):
    """SimpleRNN / LSTM / GRU: an RNN over a built-in cell made from the layer's arguments."""

    _cell_class = None

    def __init__(self, units, **kwargs):
        layer_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _LAYER_ARGS}
        kwargs.pop("use_cudnn", None)
        cell = self._cell_class(units, name="cell", **kwargs)
        super().__init__(cell, **layer_kw)

    def __getattr__(self, name):     # units, activation, ... read through to the cell (Keras)
        cell = self.__dict__.get("cell")
        if name.startswith("_") or cell is None:
            raise AttributeError(name)
        return getattr(cell, name)

    def get_config(self):
        c = super().get_config()
        cc = self.cell.get_config()
        for k in ("name", "trainable", "dtype"):
            cc.pop(k, None)
        c.update(cc)
        return c


class SimpleRNN(_CellLayer):
    """Fully-connected RNN: h_t = activation(x_t W + h_{t-1} U + b)."""
    _cell_class = SimpleRNNCell


class LSTM(_CellLayer):
    """Long Short-Term Memory (Hochreiter 1997), Keras 3 numerics and weight layout."""
    _cell_class = LSTMCell


class GRU(_CellLayer):
    """Gated Recurrent Unit (Cho et al. 2014); reset_after=True (default) is the CuDNN variant."""
    _cell_class = GRUCell


# ============================================================================ wrappers
class Bidirectional(_Nested, Layer):
    """Runs a recurrent layer forwards and a copy backwards, and merges their outputs
    (merge_mode "concat" (default), "sum", "mul", "ave" or None for a list)."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, RNN):
            raise ValueError(f"Bidirectional: layer must be a recurrent layer (LSTM, GRU, SimpleRNN, RNN); "
                             f"received {layer!r}.")
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise ValueError(f"Bidirectional: merge_mode must be 'concat', 'sum', 'mul', 'ave' or None; "
                             f"received {merge_mode!r}.")
        from fastnn.layers import deserialize, serialize
        self.forward_layer = layer
        if backward_layer is None:
            cfg = serialize(layer)
            cfg["config"] = dict(cfg["config"], go_backwards=not layer.go_backwards,
                                 name="backward_" + layer.name)
            backward_layer = deserialize(cfg)
        elif not isinstance(backward_layer, RNN):
            raise ValueError("Bidirectional: backward_layer must be a recurrent layer.")
        if backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Bidirectional: backward_layer must have go_backwards opposite to layer's.")
        if backward_layer.return_sequences != layer.return_sequences or \
                backward_layer.return_state != layer.return_state:
            raise ValueError("Bidirectional: layer and backward_layer must agree on return_sequences and "
                             "return_state.")
        self.backward_layer = backward_layer
        layer.name = "forward_" + layer.name if not layer.name.startswith("forward_") else layer.name
        for l in (self.forward_layer, self.backward_layer):
            # Keras 3 forces zero_output_for_mask = return_sequences on both sub-layers (the
            # last output of a masked step is then the carried one, as a plain RNN's)
            l.zero_output_for_mask = l.return_sequences
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.supports_masking = True
        self._mask = None

    def _weight_children(self):     # .weights.h5 keys: .../forward_layer/cell/vars/0 (Keras)
        return [("forward_layer", self.forward_layer), ("backward_layer", self.backward_layer)]

    def build(self, input_shape):
        for l in (self.forward_layer, self.backward_layer):
            l._maybe_build(input_shape)
        self._variables = list(self.forward_layer._variables) + list(self.backward_layer._variables)

    def compute_output_shape(self, input_shape):
        o = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            o, states = o[0], o[1:]
            states = states + states
        if self.merge_mode == "concat":
            o = (*o[:-1], 2 * o[-1])
        elif self.merge_mode is None:
            return [o, o] + states
        return [o] + states if self.return_state else o

    def compute_mask(self, inputs, mask):
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        if self.merge_mode is None:
            out = [out, out]
        else:
            out = [out]
        if self.return_state:
            return out + [None] * (2 * len(_state_sizes(self.forward_layer.cell)))
        return out[0] if len(out) == 1 else out

    def _compiled(self):
        return self.forward_layer._compiled() and self.backward_layer._compiled() and \
            not isinstance(self.forward_layer.cell, StackedRNNCells) and \
            not isinstance(self.backward_layer.cell, StackedRNNCells) and \
            not self.forward_layer.stateful

    def forward(self, x, training=False):
        if isinstance(x, list):
            raise ValueError(f"Bidirectional '{self.name}': initial_state is not supported by fastnn yet.")
        fl, bl = self.forward_layer, self.backward_layer
        for l in (fl, bl):
            l._mask = self._mask
            l._given = 0
        if self._compiled():
            mask = None if self._mask is None else np.asarray(self._mask, bool)
            specs = []
            for l, tag in ((fl, "f"), (bl, "b")):
                cell = l.cell
                im, rm = cell.dropout_masks(l, x.shape[0], x.shape[2], training)
                specs.append(dict(**cell.kernel_args(), x=x, mask=mask, go_backwards=l.go_backwards,
                                  zero_output_for_mask=l.zero_output_for_mask, input_mask=im, recurrent_mask=rm,
                                  training=training, alloc=l._key_alloc(0)))
            (yf, hf, cf, kf), (yb, hb, cb, kb) = K.rnn.bidirectional_forward(*specs)
            fl._caches, bl._caches = [kf], [kb]
            outs = []
            for l, y, h, c in ((fl, yf, hf, cf), (bl, yb, hb, cb)):
                if l.return_sequences:
                    o = y
                else:
                    o = l._buffer("last", (y.shape[0], y.shape[2]))
                    np.copyto(o, y[:, -1])
                outs.append([o] + ([h] if c is None else [h, c]) if l.return_state else o)
            of, ob = outs
        else:
            of = fl.forward(x, training)
            ob = bl.forward(x, training)
        sf = sb = []
        if self.return_state:
            (of, *sf), (ob, *sb) = of, ob
        if self.return_sequences:    # the backward layer's outputs back in time order
            r = self._buffer("rev", ob.shape)
            np.copyto(r, ob[:, ::-1])
            ob = r
        self._of, self._ob = of, ob
        m = self.merge_mode
        if m is None:
            out = [of, ob]
        else:
            if m == "concat":
                y = self._buffer("y", (*of.shape[:-1], 2 * of.shape[-1]))
                u = of.shape[-1]
                y[..., :u] = of
                y[..., u:] = ob
            else:
                y = self._buffer("y", of.shape)
                if m == "sum":
                    np.add(of, ob, out=y)
                elif m == "mul":
                    np.multiply(of, ob, out=y)
                else:
                    np.add(of, ob, out=y)
                    y *= np.float32(0.5)
            out = [y]
        out = out + list(sf) + list(sb)
        return out[0] if len(out) == 1 else out

    def backward(self, dy):
        dys = dy if isinstance(dy, list) else [dy]
        m = self.merge_mode
        fl, bl = self.forward_layer, self.backward_layer
        if m is None:
            dof, dob, rest = dys[0], dys[1], dys[2:]
        else:
            d, rest = dys[0], dys[1:]
            if d is None:       # return_state: only the states were read
                dof = dob = None
            elif m == "concat":
                u = self._of.shape[-1]
                dof = self._buffer("dof", self._of.shape)
                dob = self._buffer("dob", self._of.shape)
                np.copyto(dof, d[..., :u])
                np.copyto(dob, d[..., u:])
            elif m == "sum":
                dof = dob = d
            elif m == "ave":
                dof = self._buffer("dof", d.shape)
                np.multiply(d, np.float32(0.5), out=dof)
                dob = dof
            else:
                dof = self._buffer("dof", d.shape)
                dob = self._buffer("dob", d.shape)
                np.multiply(d, self._ob, out=dof)
                np.multiply(d, self._of, out=dob)
        if self.return_sequences and dob is not None:
            r = self._buffer("drev", dob.shape)
            np.copyto(r, dob[:, ::-1])
            dob = r
        ns = len(rest) // 2
        dsf, dsb = rest[:ns], rest[ns:]
        if self._compiled():
            grads = []
            for l, do, ds in ((fl, dof, dsf), (bl, dob, dsb)):
                cell = l.cell
                g = dict(dy=do if l.return_sequences else None, dy_last=None if l.return_sequences else do,
                         need_dx=self._need_dx, dkernel=cell.kernel.grad,
                         drecurrent=cell.recurrent_kernel.grad,
                         dbias=cell.bias.grad if cell.bias is not None else None)
                if ds:
                    g["dh"] = None if ds[0] is None else np.ascontiguousarray(ds[0], FLOATX)
                    if len(ds) > 1:
                        g["dc"] = None if ds[1] is None else np.ascontiguousarray(ds[1], FLOATX)
                grads.append(g)
            (dxf, *_), (dxb, *_) = K.rnn.bidirectional_backward(fl._caches[0], bl._caches[0], *grads)
        else:
            for l in (fl, bl):
                l._need_dx = self._need_dx
            dxf = fl.backward([dof] + list(dsf) if self.return_state else dof)
            dxb = bl.backward([dob] + list(dsb) if self.return_state else dob)
        if not self._need_dx:
            return None
        dx = self._buffer("dx", dxf.shape)
        np.add(dxf, dxb, out=dx)
        return dx

    def get_config(self):
        from fastnn.layers import serialize
        c = super().get_config()
        c.update(layer=serialize(self.forward_layer), merge_mode=self.merge_mode,
                 backward_layer=serialize(self.backward_layer))
        return c

    @classmethod
    def from_config(cls, config):
        from fastnn.layers import deserialize
        config = dict(config)
        config.pop("dtype", None)
        config["layer"] = deserialize(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize(config["backward_layer"])
        return cls(**config)


class TimeDistributed(_Nested, Layer):
    """Applies a layer to every time step: (N, T, ...) -> layer over (N*T, ...) -> (N, T, ...)."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise ValueError(f"TimeDistributed: layer must be a fastnn Layer; received {layer!r}.")
        self.layer = layer
        self.supports_masking = True
        self._mask = None

    def _weight_children(self):     # .weights.h5 keys: layers/time_distributed/layer/vars/0
        return [("layer", self.layer)]

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed '{self.name}' expects inputs of rank >= 3 (batch, time, ...); "
                             f"received {shape_str(input_shape)}.")
        self.layer._maybe_build((None, *input_shape[2:]))
        self._variables = list(self.layer._variables)

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def compute_mask(self, inputs, mask):
        return mask

    def forward(self, x, training=False):
        n, t = x.shape[:2]
        self._nt = (n, t)
        self.layer._need_dx = self._need_dx
        y = self.layer.forward(x.reshape(n * t, *x.shape[2:]), training)
        return y.reshape(n, t, *y.shape[1:])

    def backward(self, dy):
        n, t = self._nt
        dx = self.layer.backward(np.ascontiguousarray(dy).reshape(n * t, *dy.shape[2:]))
        return None if dx is None else dx.reshape(n, t, *dx.shape[1:])

    def get_config(self):
        from fastnn.layers import serialize
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config):
        from fastnn.layers import deserialize
        config = dict(config)
        config.pop("dtype", None)
        config["layer"] = deserialize(config["layer"])
        return cls(**config)


# ============================================================================ embedding, masking
class Embedding(Layer):
    """Turns token ids (batch, ...) into vectors (batch, ..., output_dim); weight "embeddings"
    (input_dim, output_dim). mask_zero=True makes id 0 padding: the mask (ids != 0) goes on to
    the following layers."""

    _int_input = True

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None,
                 input_length=None, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        self.input_dim = _pos_int(input_dim, "input_dim", "Embedding")
        self.output_dim = _pos_int(output_dim, "output_dim", "Embedding")
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = embeddings_regularizer
        self.embeddings_constraint = embeddings_constraint
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self._initial_weights = weights

    def build(self, input_shape):
        self.embeddings = self.add_weight((self.input_dim, self.output_dim), self.embeddings_initializer,
                                          "embeddings", regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.not_equal(inputs, 0)

    def forward(self, x, training=False):
        self._ids = x
        y = self._buffer("y", (*x.shape, self.output_dim))
        return K.rnn.embedding(x, self.embeddings.value, out=y, layer=self.name)

    def backward(self, dy):
        K.rnn.embedding_backward(self._ids, np.ascontiguousarray(dy), self.input_dim, dtable=self.embeddings.grad)
        return None

    def __call__(self, x, training=False, **kwargs):
        if isinstance(x, KerasTensor) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], KerasTensor)):
            return super().__call__(x, training=training, **kwargs)
        ids = np.asarray(x)
        self._check_and_build((None, *ids.shape[1:]))
        return np.array(self.forward(ids, bool(training)), copy=True)

    def get_config(self):
        c = super().get_config()
        c.update(input_dim=self.input_dim, output_dim=self.output_dim,
                 embeddings_initializer=serialize_obj(self.embeddings_initializer),
                 embeddings_regularizer=serialize_obj(self.embeddings_regularizer),
                 embeddings_constraint=serialize_obj(self.embeddings_constraint), mask_zero=self.mask_zero)
        return c


class Masking(Layer):
    """Masks time steps whose features all equal mask_value: their outputs are zeros and the mask
    (any feature != mask_value) goes on to the following layers."""

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return np.any(np.not_equal(inputs, np.float32(self.mask_value)), axis=-1)

    def forward(self, x, training=False):
        keep = self._buffer("keep", x.shape[:-1])
        np.copyto(keep, self.compute_mask(x))
        self._keep = keep
        y = self._buffer("y", x.shape)
        return np.einsum("...d,...->...d", x, keep, out=y)

    def backward(self, dy):
        dx = self._buffer("dx", dy.shape)
        return np.einsum("...d,...->...d", dy, self._keep, out=dx)

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
