"""ONNX handlers of the recurrent layers: SimpleRNN, LSTM, GRU (and RNN over their cells or a
StackedRNNCells of them) on ONNX's RNN / LSTM / GRU ops, Bidirectional, TimeDistributed,
Embedding (Gather) and Masking.

Weights, Keras -> ONNX (one direction, D = 1):
  kernel (I, G*H) -> W (1, G*H, I); recurrent_kernel (H, G*H) -> R (1, G*H, H); B (1, 2*G*H) = [Wb, Rb]
  LSTM gates: Keras i, f, c, o -> ONNX i, o, f, c; bias -> Wb, Rb = 0
  GRU gates:  Keras z, r, h  = ONNX z, r, h; reset_after=True: bias (2, 3H) = [Wb; Rb] with
              linear_before_reset=1 (r multiplies the recurrent projection including its bias);
              reset_after=False: bias -> Wb, Rb = 0, linear_before_reset=0
  activations: LSTM [recurrent_activation, activation, activation], GRU [recurrent_activation,
  activation], SimpleRNN [activation].

Masks (Embedding(mask_zero=True), Masking) become ONNX's `sequence_lens`. ONNX runs a sequence's
first sequence_lens steps, so the graph first moves each sample's valid steps to the front (a
stable TopK on the mask), runs the op with sequence_lens = the count of valid steps, and, for
return_sequences, spreads the outputs back to Keras's places (a masked step repeats the previous
output, or is zero with zero_output_for_mask). Any mask, not only right padding, exports exactly.
go_backwards reverses the input (and mask) along time first and runs forwards, as Keras does.
"""
from __future__ import annotations

import numpy as np

from fastnn.onnx._builder import ExportError, Sym

# Keras activation -> (ONNX RNN activation, alpha, beta)
_ACTS = {"sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None), "relu": ("Relu", None, None),
         "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5), "linear": ("Affine", 1.0, 0.0),
         "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None), "elu": ("Elu", 1.0, None)}
_OP = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _describe(layer):
    return f"layer '{layer.name}' ({type(layer).__name__})"


def _cells(cx, layer):
    from fastnn.layers.recurrent import StackedRNNCells, _BuiltinCell
    if layer.stateful:
        raise ExportError(f"Cannot export {_describe(layer)}: stateful=True carries states from one batch to the "
                          f"next, and an ONNX graph keeps no state between runs. Export a copy built with "
                          f"stateful=False (copy the weights with set_weights); pass states as initial_state "
                          f"inputs if you need them.")
    cells = layer.cell.cells if isinstance(layer.cell, StackedRNNCells) else [layer.cell]
    for c in cells:
        if not isinstance(c, _BuiltinCell):
            raise ExportError(f"Cannot export {_describe(layer)}: its cell {type(c).__name__} is Python code with no "
                              f"ONNX op; only SimpleRNNCell, LSTMCell and GRUCell (and StackedRNNCells of them) "
                              f"map onto ONNX's RNN, LSTM and GRU.")
    return cells


def _activations(layer, cell):
    names = {"simple_rnn": [cell.activation], "lstm": [cell.recurrent_activation, cell.activation, cell.activation],
             "gru": [cell.recurrent_activation, cell.activation]}[cell._cell]
    acts, alphas, betas = [], [], []
    for n in names:
        if n not in _ACTS:
            raise ExportError(f"Cannot export {_describe(layer)}: activation {n!r} has no form among ONNX's "
                              f"recurrent activations (use one of {sorted(_ACTS)}).")
        op, a, b = _ACTS[n]
        acts.append(op)
        if a is not None:
            alphas.append(a)
        if b is not None:
            betas.append(b)
    return acts, alphas, betas


def onnx_weights(cell):
    """(W, R, B) float32 of one direction, in ONNX's layout and gate order (see the module docstring)."""
    h = cell.units
    order = [0, 3, 1, 2] if cell._cell == "lstm" else list(range(cell._gates))

    def gates(a):
        return np.concatenate([a[..., g * h:(g + 1) * h] for g in order], axis=-1)

    w = gates(cell.kernel.value).T[None]
    r = gates(cell.recurrent_kernel.value).T[None]
    gh = cell._gates * h
    if cell.bias is None:
        b = np.zeros(2 * gh, np.float32)
    elif cell._cell == "gru" and cell.reset_after:
        b = cell.bias.value.reshape(-1)             # [input bias; recurrent bias], both z, r, h
    else:
        b = np.concatenate([gates(cell.bias.value), np.zeros(gh, np.float32)])
    return (np.ascontiguousarray(w, np.float32), np.ascontiguousarray(r, np.float32),
            np.ascontiguousarray(b[None], np.float32))


def _reverse_time(b, v, base):
    """v (N, T, ...) with the time axis reversed."""
    big = np.iinfo(np.int64)
    return b.node("Slice", [v, b.ints((-1,), "starts"), b.ints((big.min,), "ends"), b.ints((1,), "axes"),
                            b.ints((-1,), "steps")], base)


class _MaskPlan:
    """The graph pieces a mask needs: the permutation moving valid steps first, sequence_lens, and
    the per-step gather index and weights that put outputs back in Keras's places."""

    def __init__(self, b, mask, base):
        self.b, self.base = b, base
        mi = b.node("Cast", [mask], base, to=7)                                # int64 (N, T)
        self.count = b.reduce("ReduceSum", mi, [1], base, keepdims=0)          # (N,)
        self.seq_lens = b.node("Cast", [self.count], base, to=6)               # int32
        # score: valid step t -> T - t, masked -> -1 - t (all distinct): TopK's order is valid
        # steps by time, then masked ones, i.e. a stable partition
        t_len = b.node("Gather", [b.node("Shape", [mask], base), b.ints((1,), "one")], base, axis=0)
        steps = b.node("Range", [_i64(b, 0), b.node("Squeeze", [t_len], base), _i64(b, 1)], base)
        steps = b.node("Cast", [steps], base, to=1)
        t_f = b.node("Cast", [t_len], base, to=1)
        valid_score = b.node("Sub", [t_f, steps], base)
        masked_score = b.node("Sub", [b.scalar(-1.0, "minus_one"), steps], base)
        score = b.node("Where", [mask, valid_score, masked_score], base)
        _, self.perm = b.node("TopK", [score, t_len], base, n_out=2, axis=1, largest=1, sorted=1)
        self.mask = mask
        self.cum = b.node("CumSum", [mi, _i64(b, 1)], base)                    # valid steps up to t

    def compact(self, x):
        """x (N, T, I) with each sample's valid steps first."""
        b = self.b
        idx = b.node("Expand", [b.node("Unsqueeze", [self.perm, b.ints((2,), "axes")], self.base),
                                b.node("Shape", [x], self.base)], self.base)
        return b.node("GatherElements", [x, idx], self.base, axis=1)

    def spread(self, y, zero_output):
        """Outputs of the compacted run back at Keras's steps: step t gets the output of the last
        valid step <= t; masked steps get zeros with zero_output, and so do steps before any
        valid one."""
        b = self.b
        idx = b.node("Max", [b.node("Sub", [self.cum, _i64(b, 1)], self.base), _i64(b, 0)], self.base)
        idx = b.node("Expand", [b.node("Unsqueeze", [idx, b.ints((2,), "axes")], self.base),
                                b.node("Shape", [y], self.base)], self.base)
        out = b.node("GatherElements", [y, idx], self.base, axis=1)
        keep = self.mask if zero_output else b.node("GreaterOrEqual", [self.cum, _i64(b, 1)], self.base)
        w = b.node("Unsqueeze", [b.node("Cast", [keep], self.base, to=1), b.ints((2,), "axes")], self.base)
        return b.node("Mul", [out, w], self.base)

    def last_weight(self, zero_output):
        """(N, 1) float: 1 where Keras's last output is the last valid step's, else 0."""
        b = self.b
        if zero_output:   # the last step's own output: zero if it is masked
            last = b.node("Gather", [self.mask, b.ints((-1,), "minus_one_i")], self.base, axis=1)
        else:
            last = b.node("GreaterOrEqual", [b.node("Unsqueeze", [self.count, b.ints((1,), "axes")], self.base),
                                             _i64(b, 1)], self.base)
        return b.node("Cast", [last], self.base, to=1)


def _i64(b, v):
    return b.const(np.array(v, np.int64), f"i{v}", key=("i64s", int(v)), dtype=np.int64)


def _run_cell(cx, layer, cell, x, seq_lens, h0, c0, k):
    """One ONNX RNN/LSTM/GRU op over x (N, T, I), forwards; returns (y (N, T, H), h (N, H), c or None)."""
    b = cx.b
    base = layer.name if k == 0 else f"{layer.name}/cell{k}"
    key = ("rnn", id(cell.kernel.value), id(cell.recurrent_kernel.value))
    if key not in b._consts:
        w, r, bias = onnx_weights(cell)
        b._consts[key] = (b.const(w, f"{base}/W"), b.const(r, f"{base}/R"), b.const(bias, f"{base}/B"))
        b._keep = getattr(b, "_keep", []) + [cell.kernel.value, cell.recurrent_kernel.value]
    w, r, bias = b._consts[key]
    acts, alphas, betas = _activations(layer, cell)
    xt = b.node("Transpose", [x], base, perm=[1, 0, 2])                           # (T, N, I)
    ins = [xt, w, r, bias, seq_lens,
           None if h0 is None else b.node("Unsqueeze", [h0, b.ints((0,), "axes")], base)]
    if cell._cell == "lstm":
        ins.append(None if c0 is None else b.node("Unsqueeze", [c0, b.ints((0,), "axes")], base))
    attrs = dict(hidden_size=cell.units, activations=acts, activation_alpha=alphas or None,
                 activation_beta=betas or None)
    if cell._cell == "gru":
        attrs["linear_before_reset"] = int(cell.reset_after)
    n_out = 3 if cell._cell == "lstm" else 2
    outs = b.node(_OP[cell._cell], ins, base, n_out=n_out, **attrs)
    y = b.node("Squeeze", [b.node("Transpose", [outs[0]], base, perm=[2, 0, 1, 3]), b.ints((2,), "axes")], base)
    h = b.node("Squeeze", [outs[1], b.ints((0,), "axes")], base)
    c = b.node("Squeeze", [outs[2], b.ints((0,), "axes")], base) if n_out == 3 else None
    return y, h, c


def run_layer(cx, layer, x, mask, states):
    """Keras's outputs of a recurrent layer on x (N, T, I) (ONNX names): (sequence or last output,
    final states). The sequence is in Keras's order (processing order for go_backwards)."""
    b = cx.b
    cells = _cells(cx, layer)
    if layer.go_backwards:
        x = _reverse_time(b, x, layer.name)
        if mask is not None:
            mask = _reverse_time(b, mask, layer.name)
    plan = _MaskPlan(b, mask, layer.name) if mask is not None else None
    seq = plan.compact(x) if plan else x
    seq_lens = plan.seq_lens if plan else None
    finals = []
    si = 0
    for k, cell in enumerate(cells):
        n_states = 2 if cell._cell == "lstm" else 1
        given = states[si:si + n_states] if states else [None] * n_states
        si += n_states
        seq, h, c = _run_cell(cx, layer, cell, seq, seq_lens, given[0], given[1] if n_states > 1 else None, k)
        finals += [h] if c is None else [h, c]
    zero = layer.zero_output_for_mask
    if layer.return_sequences:
        out = plan.spread(seq, zero) if plan else seq
    else:
        out = finals[-2] if cells[-1]._cell == "lstm" else finals[-1]   # the last cell's h
        if plan:
            out = b.node("Mul", [out, plan.last_weight(zero)], layer.name)
    return out, finals


def _rnn(cx, layer, ins):
    x, states = ins[0], [t.name for t in ins[1:]]
    mask = cx.mask_in[0] if cx.mask_in else None
    out, finals = run_layer(cx, layer, cx.b.last(x), mask, states)
    cx.mask_out = mask if layer.return_sequences else None
    if layer.return_state:
        cx.mask_out = [cx.mask_out] + [None] * len(finals)
        return [(out, "last")] + [(f, "last") for f in finals]
    return out, "last"


def _bidirectional(cx, layer, ins):
    b = cx.b
    if len(ins) > 1:
        raise ExportError(f"Cannot export {_describe(layer)}: initial_state on a Bidirectional layer is not "
                          f"supported by fastnn.")
    x = b.last(ins[0])
    mask = cx.mask_in[0] if cx.mask_in else None
    of, sf = run_layer(cx, layer.forward_layer, x, mask, [])
    ob, sb = run_layer(cx, layer.backward_layer, x, mask, [])
    if layer.return_sequences:   # the backward layer's outputs back in time order
        ob = _reverse_time(b, ob, layer.name)
    m = layer.merge_mode
    if m is None:
        outs = [of, ob]
    elif m == "concat":
        outs = [b.node("Concat", [of, ob], layer.name, axis=-1)]
    elif m == "sum":
        outs = [b.node("Add", [of, ob], layer.name)]
    elif m == "mul":
        outs = [b.node("Mul", [of, ob], layer.name)]
    else:
        outs = [b.node("Mul", [b.node("Add", [of, ob], layer.name), b.scalar(0.5, "half")], layer.name)]
    seq_mask = mask if layer.return_sequences else None
    cx.mask_out = [seq_mask] * len(outs)
    if layer.return_state:
        outs += sf + sb
        cx.mask_out += [None] * (len(sf) + len(sb))
    if len(outs) == 1:
        cx.mask_out = cx.mask_out[0]
        return outs[0], "last"
    return [(o, "last") for o in outs]


def _time_distributed(cx, layer, ins):
    from fastnn.onnx.layers import describe, lookup
    b, x = cx.b, ins[0]
    inner = layer.layer
    handler = lookup(inner)
    if handler is None:
        raise ExportError(f"Cannot export {_describe(layer)}: fastnn has no ONNX exporter for the layer it wraps, "
                          f"{describe(inner)}.")
    rest = x.shape[2:]
    flat = b.node("Reshape", [b.last(x), b.ints((-1, *[0 if d is None else d for d in rest]), "shape")],
                  layer.name)
    if any(d is None for d in rest):
        raise ExportError(f"Cannot export {_describe(layer)}: the per-step shape {rest} must be known.")
    saved = cx.mask_in, cx.mask_out
    cx.mask_in = [None]
    res = handler(cx, inner, [Sym(flat, (None, *rest))])
    cx.mask_in, cx.mask_out = saved
    inner_shape = inner.compute_output_shape((None, *rest))
    y = res if isinstance(res, Sym) else Sym(res[0], inner_shape, res[1])
    nt = b.node("Slice", [b.node("Shape", [b.last(x)], layer.name), b.ints((0,), "starts"), b.ints((2,), "ends")],
                layer.name)
    shape = b.node("Concat", [nt, b.ints(inner_shape[1:], "shape")], layer.name, axis=0)
    return b.node("Reshape", [b.last(y), shape], layer.name), "last"


def _embedding(cx, layer, ins):
    b, x = cx.b, ins[0]
    ids = x.name if x.dtype == "int64" else b.node("Cast", [x.name], layer.name, to=7)
    table = b.weight(layer.embeddings.value, f"{layer.name}/embeddings")
    if layer.mask_zero:
        cx.mask_out = b.node("Not", [b.node("Equal", [ids, _i64(b, 0)], layer.name)], layer.name)
    return b.node("Gather", [table, ids], layer.name, axis=0), "last"


def _masking(cx, layer, ins):
    b = cx.b
    x = b.last(ins[0])
    differs = b.node("Not", [b.node("Equal", [x, b.scalar(layer.mask_value, "mask_value")], layer.name)], layer.name)
    any_ = b.reduce("ReduceMax", b.node("Cast", [differs], layer.name, to=1), [-1], layer.name, keepdims=1)
    cx.mask_out = b.node("Cast", [b.node("Squeeze", [any_, b.ints((-1,), "axes")], layer.name)], layer.name, to=9)
    return b.node("Mul", [x, any_], layer.name), "last"


def masked_global_average(cx, layer, x, mask):
    """Keras's masked GlobalAveragePooling1D: sum(x * mask) / sum(mask) over the steps."""
    b = cx.b
    m = b.node("Unsqueeze", [b.node("Cast", [mask], layer.name, to=1), b.ints((2,), "axes")], layer.name)
    total = b.reduce("ReduceSum", b.node("Mul", [b.last(x), m], layer.name), [1], layer.name,
                     keepdims=int(layer.keepdims))
    count = b.reduce("ReduceSum", m, [1], layer.name, keepdims=int(layer.keepdims))
    return b.node("Div", [total, count], layer.name)


def register(handles):
    from fastnn.layers import recurrent as R
    handles(R.RNN)(_rnn)
    handles(R.Bidirectional)(_bidirectional)
    handles(R.TimeDistributed)(_time_distributed)
    handles(R.Embedding)(_embedding)
    handles(R.Masking)(_masking)
