"""The trainer's input checks: x, y and sample weights as arrays the step can use.

Everything here runs before any work (at the start of fit, evaluate, predict and the
`*_on_batch` methods) and raises a ValueError/TypeError that names the argument, what was
received and what was expected. `_batch_bufs` gathers one batch into reused buffers, so the
steady-state step allocates nothing.
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict

import numpy as np

from fastnn.layers.base import FLOATX, shape_str, snake_case
from fastnn.models import masking


def _loss_name(loss) -> str:
    name = getattr(loss, "name", None)
    if not isinstance(name, str) or not name:
        name = snake_case(type(loss).__name__)
    return name


class DataChecks:
    """Input checks and batch gathering of the trainer (a mixin of Model)."""

    def _prepare_x(self, x, fn):
        if x is None:
            raise ValueError(f"{fn}: x is required.")
        if isinstance(x, dict):
            if self.built:
                names = self.input_names
                missing = [k for k in names if k not in x]
                if missing:
                    raise ValueError(f"{fn}: x is a dict without the key(s) {missing}; the model's inputs are "
                                     f"{names}.")
                x = [x[k] for k in names]
            else:
                x = list(x.values())
        xs = list(x) if isinstance(x, (list, tuple)) and self._n_inputs() > 1 else [x]
        out = []
        for i, a in enumerate(xs):
            try:
                a = np.asarray(a)
            except Exception as e:
                raise TypeError(f"{fn}: x could not be converted to a float32 array: {e}") from None
            if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
                raise TypeError(f"{fn}: x must be numeric; received dtype {a.dtype}.")
            a = np.ascontiguousarray(a, dtype=masking.input_dtype(self, i, a, fn))
            if a.ndim == 0:
                raise ValueError(f"{fn}: x must have a batch axis; received a scalar.")
            out.append(a)
        return out

    def _n_inputs(self):
        return len(self._graph_inputs) if self.built else 1

    def _check_x_shapes(self, xs, fn):
        if len(xs) != len(self._graph_inputs):
            raise ValueError(f"{fn}: the model has {len(self._graph_inputs)} inputs; received {len(xs)} arrays.")
        n = xs[0].shape[0]
        for a, t in zip(xs, self._graph_inputs):
            want = t.shape
            first = self._nodes[0][0].name if self._nodes else t.layer.name
            if a.shape[0] != n:
                raise ValueError(f"{fn}: all inputs must have the same number of samples; received "
                                 f"{[b.shape[0] for b in xs]}.")
            if len(want) != a.ndim or any(w is not None and w != g for w, g in zip(want[1:], a.shape[1:])):
                hint = ""
                if len(want) == a.ndim + 1 and tuple(want[2:]) == tuple(a.shape[1:]) and want[1] is not None:
                    hint = (f" It looks like the batch size was put into input_shape: input_shape="
                            f"{tuple(want[1:])} declares samples of shape {tuple(want[1:])}, but your samples "
                            f"have shape {tuple(a.shape[1:])}. Use input_shape={tuple(a.shape[1:])} (and pass "
                            f"batch_size={want[1]} to fit).")
                raise ValueError(f"{fn}: input of layer '{first}' is incompatible: expected shape "
                                 f"{shape_str(want)} (batch axis first), received x of shape {a.shape}.{hint}")
            if a.size and not math.isfinite(float(a.sum(dtype=np.float64))):
                bad = np.argwhere(~np.isfinite(a))[0]
                raise ValueError(f"{fn}: x contains NaN or inf (first at index {tuple(int(i) for i in bad)}); "
                                 f"clean the data before training.")
        return n

    def _prepare_y(self, y, n, fn):
        """y as a list with one array per model output (None for an output without a loss and
        without labels): from one array, a list in output order, or a dict keyed by output name."""
        if y is None:
            raise ValueError(f"{fn}: y is required for training and evaluation.")
        heads = self._ensure_heads()
        names = self.output_names
        k = len(names)
        if isinstance(y, dict):
            unknown = set(y) - set(names)
            if unknown:
                raise ValueError(f"{fn}: y has keys {sorted(unknown)} that are not output names; the model's "
                                 f"outputs are {names}.")
            ys = [y.get(nm) for nm in names]
        elif isinstance(y, (list, tuple)) and k > 1:
            if len(y) != k:
                raise ValueError(f"{fn}: the model has {k} outputs {names}; received a list of {len(y)} label "
                                 f"arrays.")
            ys = list(y)
        elif k > 1:
            raise ValueError(f"{fn}: the model has {k} outputs {names}; give y as a list of {k} arrays or a dict "
                             f"keyed by output name.")
        else:
            ys = [y]
        out = []
        for j, (yj, t) in enumerate(zip(ys, self._graph_outputs)):
            loss = heads[j].loss if heads else self.loss
            if yj is None:
                if loss is not None:
                    raise ValueError(f"{fn}: no labels for output '{names[j]}', which has a loss.")
                out.append(None)
                continue
            what = fn if k == 1 else f"{fn} (output '{names[j]}')"
            out.append(self._prepare_one_y(yj, n, what, t.shape, loss))
        return out

    def _prepare_one_y(self, y, n, fn, out, loss):
        y = np.asarray(y)
        if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise TypeError(f"{fn}: y must be numeric; received dtype {y.dtype}.")
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{fn}: x and y must have the same number of samples; received x with {n} and y "
                             f"with shape {y.shape}.")
        if np.issubdtype(y.dtype, np.floating) and y.size and not math.isfinite(float(y.sum(dtype=np.float64))):
            raise ValueError(f"{fn}: y contains NaN or inf; clean the labels before training.")
        name = _loss_name(loss) if loss is not None else ""
        k = out[-1]
        if "sparse_categorical" in name:
            if not (y.ndim == len(out) - 1 or (y.ndim == len(out) and y.shape[-1] == 1)):
                raise ValueError(f"{fn}: loss '{name}' expects integer class labels of shape (N,); received y of "
                                 f"shape {y.shape} for outputs of shape {shape_str(out)}. With one-hot labels "
                                 f"use loss='categorical_crossentropy'.")
            yi = y.reshape(y.shape[:len(out) - 1])
            if y.size and k is not None and (yi.min() < 0 or yi.max() >= k or not np.all(yi == np.floor(yi))):
                raise ValueError(f"{fn}: loss '{name}' expects integer labels in [0, {k}); received labels in "
                                 f"[{yi.min()}, {yi.max()}].")
            return np.ascontiguousarray(yi, dtype=np.int64 if not np.issubdtype(y.dtype, np.integer) else y.dtype)
        if "categorical" in name and y.ndim == len(out) - 1 and k != 1:
            raise ValueError(f"{fn}: loss '{name}' expects one-hot labels of shape (N, {k}); received y of shape "
                             f"{y.shape}. Use loss='sparse_categorical_crossentropy' for integer labels, or "
                             f"fastnn.utils.to_categorical(y, {k}).")
        if y.ndim == len(out) - 1 and k == 1:
            y = y.reshape(*y.shape, 1)
        if y.ndim != len(out) or any(o is not None and o != g for o, g in zip(out[1:], y.shape[1:])):
            raise ValueError(f"{fn}: labels of shape {y.shape} do not fit the model output {shape_str(out)} "
                             f"for loss '{name}'; y must have shape (N, {', '.join(str(d) for d in out[1:])}).")
        return np.ascontiguousarray(y, dtype=FLOATX)

    @staticmethod
    def _check_batch_size(batch_size, fn, default=32):
        if batch_size is None:
            return default
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"{fn}: batch_size must be a positive int; received batch_size={batch_size!r}.")
        return int(batch_size)

    def _sample_weights(self, ys, sample_weight, class_weight, n, fn):
        """Per-output sample weights (a list with None where there are none): one array for
        every output, a list, or a dict keyed by output name; or class weights (one output)."""
        if sample_weight is not None and class_weight is not None:
            raise ValueError(f"{fn}: give sample_weight or class_weight, not both.")
        k = len(ys)
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"{fn}: class_weight must be a dict {{class: weight}}; received {type(class_weight).__name__}.")
            if k > 1:
                raise ValueError(f"{fn}: class_weight is only supported for models with one output; use "
                                 f"sample_weight (one array per output) instead.")
            cls = ys[0].reshape(n, -1)
            cls = np.argmax(cls, axis=1) if cls.shape[1] > 1 else cls[:, 0].round().astype(np.int64)
            table = np.ones(int(max(max(class_weight), cls.max(initial=0))) + 1, FLOATX)
            for c, w in class_weight.items():
                table[int(c)] = w
            return [np.ascontiguousarray(table[cls], dtype=FLOATX)]
        if sample_weight is None:
            return [None] * k
        names = self.output_names
        if isinstance(sample_weight, dict):
            sws = [sample_weight.get(nm) for nm in names]
        elif isinstance(sample_weight, (list, tuple)) and k > 1:
            if len(sample_weight) != k:
                raise ValueError(f"{fn}: sample_weight must have one entry per output ({k}); received {len(sample_weight)}.")
            sws = list(sample_weight)
        else:
            sws = [sample_weight] * k
        out = []
        for sw in sws:
            if sw is None:
                out.append(None)
                continue
            sw = np.ascontiguousarray(sw, dtype=FLOATX)
            if sw.ndim != 1 or sw.shape[0] != n:
                raise ValueError(f"{fn}: sample_weight must have shape ({n},); received {sw.shape}.")
            out.append(sw)
        return out

    def _batch_bufs(self, key, arrays, idx):
        """Gather rows `idx` of each array into reused buffers (no allocation when shapes repeat)."""
        bufs = self.__dict__.setdefault("_gather_bufs", {})
        out = []
        for j, a in enumerate(arrays):
            if a is None:
                out.append(None)
                continue
            shape = (len(idx), *a.shape[1:])
            slot = bufs.setdefault((key, j), OrderedDict())
            b = slot.get((shape, a.dtype.str))
            if b is None:   # keep the full-batch and the last partial-batch buffers only
                b = slot[(shape, a.dtype.str)] = np.empty(shape, a.dtype)
                if len(slot) > 2:
                    slot.popitem(last=False)
            # idx is always in range; the default mode='raise' gathers into a temporary copy of
            # out first (one batch-sized allocation per step)
            np.take(a, idx, axis=0, out=b, mode="clip")
            out.append(b)
        return out
