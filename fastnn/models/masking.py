"""Keras masks in a model: where they start, how they travel, where they weigh the loss.

A mask is a (batch, timesteps) bool array. `Embedding(mask_zero=True)` and `Masking` make one;
every layer gets its input's mask as `layer._mask` before its forward and `compute_mask` gives
its output's (passed on by layers that support masking, dropped by the others, consumed by the
recurrent layers and GlobalAveragePooling1D). A mask on the model output weights the loss and
the metrics as Keras's `apply_mask` does. Graphs without a mask source take none of this path.
Also here: which inputs keep integer dtypes (token ids for an Embedding).
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.layers.base import FLOATX


def has_sources(nodes) -> bool:
    """True when a layer of the graph makes a mask (Embedding(mask_zero=True), Masking)."""
    from fastnn.layers.recurrent import Embedding, Masking
    return any((isinstance(l, Embedding) and l.mask_zero) or isinstance(l, Masking) for l, _, _ in nodes)


def forward(model, vals, training, timer=None):
    """The forward pass, carrying each tensor's mask along in model._masks (one slot per tensor
    id, like the values: a shared layer's calls and an inlined nested model's layers each see
    the mask of the tensor they read). With a timer (model.profile) every layer is timed."""
    masks = model._masks
    for i in range(len(masks)):
        masks[i] = None
    clock = time.perf_counter
    for k, (layer, ins, out) in enumerate(model._nodes):
        x = vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins]
        m = masks[ins[0]] if len(ins) == 1 else [masks[i] for i in ins]
        layer._mask = m
        if timer is None:
            y = layer.forward(x, training)
        else:
            s = clock()
            y = layer.forward(x, training)
            timer.forward[k] += clock() - s
        mo = layer.compute_mask(x, m)
        if type(out) is int:
            vals[out] = y
            masks[out] = mo
        else:        # several outputs (return_state): a list of values, a mask each
            for j, o in enumerate(out):
                vals[o] = y[j]
                masks[o] = mo[j] if isinstance(mo, list) else mo
        if timer is not None:
            timer.shapes[k] = (y if type(out) is int else y[0]).shape
            timer.in_shapes[k] = x.shape if len(ins) == 1 else None


def output_mask(model, out_id):
    """The mask of model tensor `out_id` after a forward pass, or None."""
    if not getattr(model, "_masking", False):
        return None
    m = model._masks[out_id]
    return None if isinstance(m, list) else m


def loss_weights(model, head, sw, y_pred):
    """(loss sample weights, metric mask) of one output (a trainer Head): Keras's apply_mask
    for an output mask (N, T). Valid entries weigh total/valid, so sum_over_batch_size averages
    over the valid steps only; the metrics are weighted by the mask itself. (sw, None) without
    an output mask.

    Data parallel (model._replica): total and valid count the global batch (valid summed over
    the processes), so each process's share, scaled by the trainer's grad_scale, adds up to
    the one-process loss and gradient."""
    m = output_mask(model, head.out_id)
    if m is None or y_pred.ndim < 2 or m.shape != y_pred.shape[:m.ndim]:
        return sw, None
    red = getattr(head.loss, "reduction", "sum_over_batch_size")
    mf = m.astype(FLOATX)
    if red in ("mean", "sum_over_batch_size"):
        total, valid = m.size, float(mf.sum())
        rep = model._replica
        if rep is not None:
            total = rep.rows * (m.size // max(1, m.shape[0]))
            valid = rep.global_sum(0.0 if rep.phantom else valid, "the count of unmasked steps")
        mf *= np.float32(total / valid if valid else 0.0)
    if sw is not None:
        mf = mf * sw.reshape(sw.shape + (1,) * (mf.ndim - sw.ndim))
    return mf, m.astype(FLOATX)


def metric_weights(sw, mask):
    """The sample weights of a metric: its own (or None) times the output mask."""
    if mask is None:
        return sw
    return mask if sw is None else mask * sw.reshape(sw.shape + (1,) * (mask.ndim - sw.ndim))


def input_dtype(model, i, a, fn):
    """float32, or the integer dtype of an Input(dtype="int32"/"int64") / an input read only by
    integer-input layers (Embedding) when the data are integers."""
    if not model.built or i >= len(model._graph_inputs):
        return FLOATX
    t = model._graph_inputs[i]
    want = getattr(t, "dtype", "float32")
    if want in ("int32", "int64"):
        if np.issubdtype(a.dtype, np.floating) and a.size and not np.all(a == np.floor(a)):
            raise TypeError(f"{fn}: input '{t.layer.name}' holds integer ids (dtype {want}); received "
                            f"non-integer values of dtype {a.dtype}.")
        return np.dtype(want)
    if np.issubdtype(a.dtype, np.integer):
        readers = [l for l, ins, _ in model._nodes if model._input_ids[i] in ins]
        if readers and all(getattr(l, "_int_input", False) for l in readers):
            return a.dtype if a.dtype in (np.int32, np.int64) else np.dtype(np.int64)
    return FLOATX
