"""Model: the functional graph, the parameter arena and the Keras training loop.

A model is a list of nodes in topological order, each `(layer, input tensor ids, output id)`.
Forward runs the nodes in order; backward runs them in reverse, and a tensor read by several
layers (a branch point) sums the gradients they return. Every trainable weight is a view into
one flat arena (fastnn.models.arena), so the optimizer step is one call over the whole model.

compile/fit/evaluate/predict, train_on_batch/test_on_batch/predict_on_batch follow Keras 3
(keras:trainers/trainer.py and keras:backend/torch/trainer.py): the displayed loss is the
running mean weighted by batch size, validation_split takes the last fraction before
shuffling, train_on_batch resets the metrics first.
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
import time
import warnings

import numpy as np

from fastnn import _random
from fastnn import callbacks as callbacks_module
from fastnn.layers.base import FLOATX, KerasTensor, Layer, shape_str, snake_case, unique_name
from fastnn.layers.activation import ReLU
from fastnn.layers.core import Activation, InputLayer
from fastnn.layers.normalization import BatchNormalization
from fastnn.kernels.conv import blas_pinned
from fastnn.models.arena import Arena

_FUSABLE = ("softmax", "sigmoid")


def _plain_relu(layer) -> bool:
    """A ReLU layer or Activation('relu') without max_value/negative_slope/threshold."""
    if type(layer) is ReLU:
        return not layer._params()
    return type(layer) is Activation and layer._act_name == "relu" and not layer._act_params


def _bn_relu_pairs(nodes, output_ids) -> list:
    """(BatchNormalization, ReLU) node pairs whose norm output feeds nothing but that ReLU.

    The norm then applies the ReLU in its output pass and masks dy in its backward passes; the
    ReLU node stays in the graph (summary, profile) as a pass-through.
    """
    readers: dict = {}
    for layer, ins, _ in nodes:
        for i in ins:
            readers.setdefault(i, []).append(layer)
    pairs = []
    for layer, _, out in nodes:
        r = readers.get(out, ())
        if (type(layer) is BatchNormalization and out not in output_ids and len(r) == 1
                and _plain_relu(r[0])):
            pairs.append((layer, r[0]))
    return pairs


def _pool_2x2(layer) -> bool:
    """A MaxPooling2D with a 2x2 window, stride 2 and 'valid' padding."""
    from fastnn.layers.pooling import MaxPooling2D

    return (type(layer) is MaxPooling2D and tuple(layer.pool_size) == (2, 2)
            and tuple(layer.strides) == (2, 2) and layer.padding == "valid")


def _inference_chains(nodes, output_ids) -> dict:
    """Conv2D [-> BatchNormalization] [-> ReLU] [-> MaxPooling2D 2x2] runs that inference runs
    as one kernel call: {index of the conv node: (index of the last node, bn, relu, pool)}.

    The conv applies the norm's moving-statistics affine map, the ReLU and the pool to each
    chunk of its output while it is in cache (fastnn.kernels.conv.conv2d(affine=, pool=)) and
    writes only the last tensor; bit-identical to running the layers one by one. Every tensor
    inside a run has its one reader in the run, is no model output, and no layer of the run has
    an activity regularizer (evaluate reads the outputs of those).
    """
    from fastnn.layers.convolutional import BaseConv

    readers: dict = {}
    for layer, ins, _ in nodes:
        for i in ins:
            readers.setdefault(i, []).append(layer)
    index = {id(layer): k for k, (layer, _, _) in enumerate(nodes)}

    def only_reader(k):
        layer, _, out = nodes[k]
        r = readers.get(out, ())
        if out in output_ids or len(r) != 1 or r[0].activity_regularizer is not None:
            return None
        return index[id(r[0])]

    chains = {}
    for k, (layer, ins, _) in enumerate(nodes):
        if (not isinstance(layer, BaseConv) or layer.rank != 2 or layer.activity_regularizer is not None
                or layer._fused_output or layer._act_name not in ("linear", "relu")
                or (layer._act_name == "relu" and layer._act_params)):
            continue
        end, bn, relu, pool = k, None, layer._act_name == "relu", False
        nxt = only_reader(end)
        if not relu and nxt is not None and type(nodes[nxt][0]) is BatchNormalization:
            bn, end = nodes[nxt][0], nxt
            nxt = only_reader(end)
        if not relu and nxt is not None and _plain_relu(nodes[nxt][0]):
            relu, end = True, nxt
            nxt = only_reader(end)
        if relu and nxt is not None and _pool_2x2(nodes[nxt][0]):
            pool, end = True, nxt
        if end > k:
            chains[k] = (end, bn, relu, pool)
    return chains


def _mask_sources(nodes) -> bool:
    """True when a layer of the graph makes a Keras mask (Embedding(mask_zero=True), Masking):
    the forward pass then carries masks along (_forward_masked)."""
    from fastnn.layers.recurrent import Embedding, Masking
    return any((isinstance(l, Embedding) and l.mask_zero) or isinstance(l, Masking) for l, _, _ in nodes)


def _forward_masked(model, vals, training):
    """Forward pass that also propagates masks as Keras does: each layer gets its input's mask
    (`layer._mask`) and compute_mask gives its output's. Masks are (batch, timesteps) bool."""
    masks = model._masks
    for i in range(len(masks)):
        masks[i] = None
    for layer, ins, out in model._nodes:
        x = vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins]
        m = masks[ins[0]] if len(ins) == 1 else [masks[i] for i in ins]
        layer._mask = m
        vals[out] = layer.forward(x, training)
        masks[out] = layer.compute_mask(x, m)


def _output_mask(model):
    """The mask of the (single) model output after a forward pass, or None."""
    if not getattr(model, "_masking", False):
        return None
    m = model._masks[model._output_ids[0]]
    return None if isinstance(m, list) else m


def _masked_weights(model, sw, y_pred):
    """Keras's apply_mask: an output mask (N, T) becomes sample weights, valid entries weighted
    total/valid so that sum_over_batch_size averages over the valid steps only."""
    m = _output_mask(model)
    if m is None or m.shape != y_pred.shape[:m.ndim] or y_pred.ndim < 2:
        return sw, None
    red = getattr(model.loss, "reduction", "sum_over_batch_size")
    mf = m.astype(FLOATX)
    if red in ("mean", "sum_over_batch_size"):
        valid = float(mf.sum())
        mf *= np.float32(m.size / valid if valid else 0.0)
    if sw is not None:
        mf = mf * sw.reshape(sw.shape + (1,) * (mf.ndim - sw.ndim))
    return mf, m.astype(FLOATX)


def _input_dtype(model, i, a, fn):
    """float32, or the integer dtype of an Input(dtype="int32"/"int64") / an input read only by
    integer-input layers (Embedding) when the data are integers."""
    if not model.built:
        return FLOATX
    t = model._graph_inputs[i] if i < len(model._graph_inputs) else None
    want = getattr(t, "dtype", "float32") if t is not None else "float32"
    if want in ("int32", "int64"):
        if np.issubdtype(a.dtype, np.floating) and a.size and not np.all(a == np.floor(a)):
            raise TypeError(f"{fn}: input '{t.layer.name}' holds integer ids (dtype {want}); received "
                            f"non-integer values of dtype {a.dtype}.")
        return np.dtype(want)
    if np.issubdtype(a.dtype, np.integer) and t is not None:
        tid = id(t)
        readers = [l for l, ins, _ in model._nodes if any(model._tensors[j] is t for j in ins)]
        if readers and all(getattr(l, "_int_input", False) for l in readers):
            return a.dtype if a.dtype in (np.int32, np.int64) else np.int64
    return FLOATX


def _loss_name(loss) -> str:
    name = getattr(loss, "name", None)
    if not isinstance(name, str) or not name:
        name = snake_case(type(loss).__name__)
    return name


class Model(Layer):
    """A graph of layers from Input tensors to outputs: Model(inputs, outputs)."""

    _timer = None  # class default, so subclasses that skip __init__ still run untimed
    _bn_relu = ()  # (BatchNormalization, ReLU) pairs fused in the forward pass (_bn_relu_pairs)

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        super().__init__(name=name or unique_name(snake_case(type(self).__name__)), trainable=trainable)
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._arena = None
        self._nodes = []
        self._in_fit = False
        self._timer = None   # a fastnn.models.profile.StepTimer while model.profile runs
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model: give both `inputs` and `outputs` (KerasTensors from fastnn.Input "
                                 "and layer calls).")
            self._init_graph(inputs, outputs)

    # ---------------------------------------------------------------------------------------
    # graph
    def _init_graph(self, inputs, outputs):
        self._single_input = not isinstance(inputs, (list, tuple, dict))
        self._single_output = not isinstance(outputs, (list, tuple, dict))
        inputs = list(inputs.values()) if isinstance(inputs, dict) else (
            list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
        outputs = list(outputs.values()) if isinstance(outputs, dict) else (
            list(outputs) if isinstance(outputs, (list, tuple)) else [outputs])
        for t in inputs + outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model: inputs and outputs must be KerasTensors (from fastnn.Input and layer "
                                f"calls); received {type(t).__name__}.")
        for t in inputs:
            if not isinstance(t.layer, InputLayer):
                raise ValueError(f"Model: every input must come from fastnn.Input(); {t} does not.")
        ids = {}
        order = []

        def visit(t, stack):
            if id(t) in ids:
                return
            if id(t) in stack:
                raise ValueError("Model: the graph has a cycle.")
            stack.add(id(t))
            if isinstance(t.layer, InputLayer):
                if not any(t is i for i in inputs):
                    raise ValueError(f"Model: output depends on input '{t.layer.name}' which is not in `inputs`.")
            else:
                for s in t.inputs:
                    visit(s, stack)
            stack.discard(id(t))
            ids[id(t)] = len(order)
            order.append(t)

        for t in inputs:
            visit(t, set())
        for t in outputs:
            visit(t, set())
        self._tensors = order
        self._input_ids = [ids[id(t)] for t in inputs]
        self._output_ids = [ids[id(t)] for t in outputs]
        self._nodes = []
        seen_layers = set()
        input_set = set(self._input_ids)
        for t in order:
            if isinstance(t.layer, InputLayer):
                continue
            if id(t.layer) in seen_layers:
                raise ValueError(f"Model: layer '{t.layer.name}' is called more than once; shared layers are "
                                 f"not supported by fastnn yet.")
            seen_layers.add(id(t.layer))
            in_ids = [ids[id(s)] for s in t.inputs]
            t.layer._need_dx = not all(i in input_set for i in in_ids)
            self._nodes.append((t.layer, in_ids, ids[id(t)]))
        self._masking = _mask_sources(self._nodes)
        self._masks = [None] * len(order)
        self._bn_relu = _bn_relu_pairs(self._nodes, set(self._output_ids))
        self._chains = _inference_chains(self._nodes, set(self._output_ids))
        self._input_layers = [t.layer for t in inputs]
        self._graph_outputs = outputs
        self._graph_inputs = inputs
        self.input_shape = inputs[0].shape if self._single_input else [t.shape for t in inputs]
        self.output_shape = outputs[0].shape if self._single_output else [t.shape for t in outputs]
        self._vals = [None] * len(order)
        self._gvals = [None] * len(order)
        self._acc = {}
        self.built = True

    @property
    def layers(self):
        out = list(self._input_layers) if self.built else []
        return out + [node[0] for node in self._nodes]

    @property
    def inputs(self):
        return list(self._graph_inputs) if self.built else None

    @property
    def outputs(self):
        return list(self._graph_outputs) if self.built else None

    @property
    def input(self):
        return self._graph_inputs[0] if self._single_input else self._graph_inputs

    @property
    def output(self):
        return self._graph_outputs[0] if self._single_output else self._graph_outputs

    def get_layer(self, name=None, index=None):
        """The layer called `name`, or at position `index` of model.layers."""
        if index is not None:
            layers = self.layers
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index {index} is out of range; the model has {len(layers)} layers.")
            return layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")

    # ---------------------------------------------------------------------------------------
    # weights
    def _unique_vars(self, attr):
        out, seen = [], set()
        for layer in self.layers:
            for v in getattr(layer, attr):
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def weights(self):
        return self._unique_vars("weights")

    @property
    def variables(self):
        return self.weights

    @property
    def trainable_weights(self):
        return self._unique_vars("trainable_weights") if self.trainable else []

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return self._unique_vars("non_trainable_weights")

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    def get_weights(self):
        """Copies of every weight, layer by layer, in Keras order and layout."""
        return [v.value.copy() for v in self.weights]

    def set_weights(self, weights):
        vars_ = self.weights
        weights = list(weights)
        if len(weights) != len(vars_):
            raise ValueError(f"set_weights: the model has {len(vars_)} weights; received a list of {len(weights)}.")
        for v, w in zip(vars_, weights):
            if np.shape(w) != v.shape:
                raise ValueError(f"set_weights: weight {v.path} has shape {v.shape}; received {np.shape(w)}.")
        for v, w in zip(vars_, weights):
            v.value[...] = np.asarray(w, dtype=FLOATX)

    def count_params(self):
        if not self.built:
            raise ValueError(f"count_params: model '{self.name}' is not built yet; call build() or fit it first.")
        return int(sum(v.value.size for v in self.weights))

    @property
    def losses(self):
        return [l for layer in self.layers for l in layer.losses]

    # ---------------------------------------------------------------------------------------
    # forward / backward
    def _forward(self, xs, training):
        vals = self._vals
        for i, x in zip(self._input_ids, xs):
            vals[i] = x
        timer = self._timer
        # BatchNormalization -> ReLU pairs of this graph run fused; the flags live only for this
        # pass (a layer may be reused elsewhere), each layer records what it did for backward
        fused = self._bn_relu
        for bn, act in fused:
            bn._relu_epilogue = act._fused_into_bn = True
        try:
            self._run_forward(vals, training, timer)
        finally:
            for bn, act in fused:
                bn._relu_epilogue = act._fused_into_bn = False
        outs = [vals[i] for i in self._output_ids]
        return outs

    def _run_forward(self, vals, training, timer):
        if self._masking:
            _forward_masked(self, vals, training)
        elif timer is None and not training and self._chains:
            self._run_inference(vals)
        elif timer is None:
            for layer, ins, out in self._nodes:
                vals[out] = layer.forward(vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins], training)
        else:  # model.profile: time every layer
            clock = time.perf_counter
            for k, (layer, ins, out) in enumerate(self._nodes):
                x = vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins]
                s = clock()
                vals[out] = layer.forward(x, training)
                timer.forward[k] += clock() - s
                timer.shapes[k] = vals[out].shape
                timer.in_shapes[k] = x.shape if len(ins) == 1 else None

    def _run_inference(self, vals):
        """Inference forward with the conv runs of _inference_chains as one kernel call each."""
        nodes, chains, k = self._nodes, self._chains, 0
        while k < len(nodes):
            layer, ins, out = nodes[k]
            chain = chains.get(k)
            if chain is None:
                vals[out] = layer.forward(vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins], False)
                k += 1
                continue
            end, bn, relu, pool = chain
            vals[nodes[end][2]] = layer.forward_inference(vals[ins[0]], bn, relu, pool)
            k = end + 1

    def _backward(self, douts):
        g = self._gvals
        for i in range(len(g)):
            g[i] = None
        for i, d in zip(self._output_ids, douts):
            g[i] = d
        inputs = self._input_ids
        timer = self._timer
        clock = time.perf_counter
        for k in range(len(self._nodes) - 1, -1, -1):
            layer, ins, out = self._nodes[k]
            dy = g[out]
            if layer.activity_regularizer is not None:  # d penalty / d output joins the flow
                y = self._vals[out]
                reg = layer.activity_regularizer.gradient(y)
                reg *= np.float32(1.0 / max(1, y.shape[0]))
                dy = reg if dy is None else np.add(dy, reg, out=reg)
            if dy is None:
                continue
            if timer is None:
                dx = layer.backward(dy)
            else:
                s = clock()
                dx = layer.backward(dy)
                timer.backward[k] += clock() - s
            if dx is None:
                continue
            dxs = dx if len(ins) > 1 else [dx]
            for i, d in zip(ins, dxs):
                if d is None or i in inputs:
                    continue
                if g[i] is None:
                    g[i] = d
                else:  # branch point: sum the gradients in a buffer owned by the model
                    acc = self._acc.get((i, d.shape))
                    if acc is None:
                        acc = self._acc[(i, d.shape)] = np.empty(d.shape, FLOATX)
                    if g[i] is acc:
                        np.add(acc, d, out=acc)
                    else:
                        np.add(g[i], d, out=acc)
                    g[i] = acc

    def forward(self, x, training=False):
        xs = x if isinstance(x, (list, tuple)) else [x]
        outs = self._forward(xs, training)
        return outs[0] if len(outs) == 1 else outs

    def backward(self, dy):
        self._backward(dy if isinstance(dy, (list, tuple)) else [dy])
        return None

    def __call__(self, x, training=False, **kwargs):
        if isinstance(x, KerasTensor) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], KerasTensor)):
            raise NotImplementedError("Calling a model on symbolic tensors (nesting models) is not supported by "
                                      "fastnn yet; add its layers instead.")
        xs = self._prepare_x(x, "call")
        self._ensure_built(xs)
        with blas_pinned():
            outs = self._forward(xs, bool(training))
        outs = [np.array(o, copy=True) for o in outs]
        return outs[0] if len(outs) == 1 else outs

    def _ensure_built(self, xs):
        if not self.built:
            raise ValueError(f"Model '{self.name}' is not built.")

    def build(self, input_shape=None):
        if not self.built:
            raise ValueError(f"Model '{self.name}' has no graph; create it with Model(inputs, outputs).")

    # ---------------------------------------------------------------------------------------
    # compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Configure training: optimizer, loss and metrics (names, classes or objects, as Keras)."""
        from fastnn import losses, optimizers
        try:
            self.optimizer = optimizers.get(optimizer)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compile: could not interpret optimizer={optimizer!r}: {e}") from None
        if loss is None:
            raise ValueError("compile: a loss is required for training, e.g. loss='mse' or "
                             "loss='categorical_crossentropy'.")
        if isinstance(loss, (list, tuple, dict)):
            raise ValueError("compile: one loss per model output; fastnn trains single-output models "
                             f"(received loss={loss!r}).")
        try:
            self.loss = losses.get(loss)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compile: could not interpret loss={loss!r}: {e}") from None
        if self.loss is None:
            raise ValueError(f"compile: could not interpret loss={loss!r}.")
        self._loss_id = loss
        if metrics is None:
            metrics = []
        elif isinstance(metrics, dict):
            metrics = [m for v in metrics.values() for m in (v if isinstance(v, (list, tuple)) else [v])]
        elif not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        self._metric_ids = list(metrics) + list(weighted_metrics or [])
        # Keras applies sample weights only to `weighted_metrics`; `metrics` are unweighted
        self._metric_weighted = [False] * len(metrics) + [True] * len(weighted_metrics or [])
        self._check_metric_ids()
        self._metrics = None   # resolved on the first batch, when y shapes are known (as Keras)
        self.compiled = True
        self._arena = None
        self._opt_built = False
        if self.built:
            self._prepare_training()

    def _check_metric_ids(self):
        from fastnn import metrics as metrics_module
        for m in self._metric_ids:
            if isinstance(m, str) and m not in ("accuracy", "acc", "crossentropy", "ce"):
                try:
                    metrics_module.get(m)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"compile: unknown metric {m!r}: {e}") from None

    def _resolve_metrics(self, y, y_pred):
        from fastnn import metrics as metrics_module
        self._metrics = [metrics_module.resolve(m, y, y_pred, self.loss) for m in self._metric_ids]

    @property
    def metrics_names(self):
        return ["loss"] + [m.name for m in (self._metrics or [])]

    def reset_metrics(self):
        self._loss_sum = 0.0
        self._loss_count = 0
        for m in self._metrics or []:
            m.reset_state()

    def _prepare_training(self):
        """Build the arena over the trainable weights and the optimizer slots; set up loss fusion."""
        tvars = self.trainable_weights
        key = [id(v) for v in tvars]
        if self._arena is not None and self._arena_key == key:
            return
        if self._arena is not None:
            self._arena.release()
        # weights that are no longer trainable keep (or get) storage of their own
        for v in self.weights:
            if v.grad is None or (self._arena is not None and np.shares_memory(v.grad, self._arena.grads)):
                v.grad = np.zeros_like(v.value)
        self._arena = Arena(tvars)
        self._arena_key = key
        self.optimizer.build(self._arena.size, self._arena.segments)
        self._reg_vars = [v for v in tvars if v.regularizer is not None]
        self._constrained = [v for v in tvars if v.constraint is not None]
        # softmax/sigmoid output + crossentropy: the loss gives d/d(logits) directly
        for layer, _, _ in self._nodes:
            layer._fused_output = False
        self._fused = False
        last = self._nodes[-1][0] if self._nodes else None
        kind = getattr(self.loss, "fused_kind", None)
        if (last is not None and self._single_output and kind in _FUSABLE and isinstance(getattr(type(last), "logits", None), property)
                and getattr(last, "_act_name", None) == kind and not getattr(self.loss, "from_logits", False)
                and not getattr(last, "_act_params", {}) and getattr(last, "axis", -1) == -1
                and hasattr(self.loss, "value_and_grad_logits")
                # an activity penalty on the probabilities needs the activation's own backward
                and last.activity_regularizer is None):
            last._fused_output = True
            self._fused = True

    # ---------------------------------------------------------------------------------------
    # data checks (before any work)
    def _prepare_x(self, x, fn):
        if x is None:
            raise ValueError(f"{fn}: x is required.")
        if isinstance(x, dict):
            x = [x[t.layer.name] for t in self._graph_inputs] if self.built else list(x.values())
        xs = list(x) if isinstance(x, (list, tuple)) and self._n_inputs() > 1 else [x]
        out = []
        for i, a in enumerate(xs):
            try:
                a = np.asarray(a)
            except Exception as e:
                raise TypeError(f"{fn}: x could not be converted to a float32 array: {e}") from None
            if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
                raise TypeError(f"{fn}: x must be numeric; received dtype {a.dtype}.")
            a = np.ascontiguousarray(a, dtype=_input_dtype(self, i, a, fn))
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
        if y is None:
            raise ValueError(f"{fn}: y is required for training and evaluation.")
        if not self._single_output:
            raise ValueError(f"{fn}: training and evaluating multi-output models is not supported by fastnn yet "
                             f"(model '{self.name}' has {len(self._graph_outputs)} outputs); predict works.")
        y = np.asarray(y)
        if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise TypeError(f"{fn}: y must be numeric; received dtype {y.dtype}.")
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{fn}: x and y must have the same number of samples; received x with {n} and y "
                             f"with shape {y.shape}.")
        if np.issubdtype(y.dtype, np.floating) and y.size and not math.isfinite(float(y.sum(dtype=np.float64))):
            raise ValueError(f"{fn}: y contains NaN or inf; clean the labels before training.")
        out = self.output_shape
        name = _loss_name(self.loss) if self.loss is not None else ""
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

    def _sample_weights(self, y, sample_weight, class_weight, n, fn):
        if sample_weight is not None and class_weight is not None:
            raise ValueError(f"{fn}: give sample_weight or class_weight, not both.")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"{fn}: class_weight must be a dict {{class: weight}}; received {type(class_weight).__name__}.")
            cls = y.reshape(n, -1)
            cls = np.argmax(cls, axis=1) if cls.shape[1] > 1 else cls[:, 0].round().astype(np.int64)
            table = np.ones(int(max(max(class_weight), cls.max(initial=0))) + 1, FLOATX)
            for c, w in class_weight.items():
                table[int(c)] = w
            return np.ascontiguousarray(table[cls], dtype=FLOATX)
        if sample_weight is None:
            return None
        sw = np.ascontiguousarray(sample_weight, dtype=FLOATX)
        if sw.shape[0] != n or sw.ndim != 1:
            raise ValueError(f"{fn}: sample_weight must have shape ({n},); received {sw.shape}.")
        return sw

    def _ready(self, xs, fn):
        if not self.compiled:
            raise RuntimeError(f"{fn}: you must compile the model before training/testing; use "
                               f"model.compile(optimizer, loss).")
        self._ensure_built(xs)
        if not self._single_output or len(self._graph_outputs) != 1:
            raise ValueError(f"{fn}: training and evaluating multi-output models is not supported by fastnn yet "
                             f"(model '{self.name}' has {len(self._graph_outputs)} outputs); predict works.")
        self._prepare_training()

    # ---------------------------------------------------------------------------------------
    # one step
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
            np.take(a, idx, axis=0, out=b)
            out.append(b)
        return out

    def _loss_and_grad(self, y, y_pred, sw):
        if self._fused:
            loss, d = self.loss.value_and_grad_logits(y, self._nodes[-1][0].logits, sw)
        else:
            loss, d = self.loss.value_and_grad(y, y_pred, sw)
        return float(loss), d

    def _train_step(self, xs, y, sw):
        # BLAS single-threaded for the whole step: the kernels split their GEMMs over their own
        # threads (see fastnn.kernels.conv.blas_pinned for the measurements)
        with blas_pinned():
            return self._train_step_pinned(xs, y, sw)

    def _train_step_pinned(self, xs, y, sw):
        timer = self._timer
        (y_pred,) = self._forward(xs, True)
        if timer is not None:
            t0 = time.perf_counter()
        lsw, omask = _masked_weights(self, sw, y_pred)
        loss, d = self._loss_and_grad(y, y_pred, lsw)
        if d.dtype != FLOATX or not d.flags.c_contiguous:
            d = np.ascontiguousarray(d, dtype=FLOATX)
        if d.shape != y_pred.shape and not self._fused:
            d = d.reshape(y_pred.shape)
        if timer is not None:
            timer.loss += time.perf_counter() - t0
        loss += self._activity_penalty()
        self._backward([d])
        if timer is not None:
            t0 = time.perf_counter()
        for v in self._reg_vars:
            loss += float(v.regularizer(v.value))
            v.grad += v.regularizer.gradient(v.value)
        self.optimizer.apply_flat(self._arena.params, self._arena.grads)
        for v in self._constrained:
            v.value[...] = v.constraint(v.value)
        if timer is not None:
            timer.optimizer += time.perf_counter() - t0
        self._update_metrics(loss, y, y_pred, sw, omask)
        return loss

    def profile(self, x, y, steps=5, batch_size=None, print_fn=print):
        """Per-layer time of a training step: prints a table and returns it as a list of dicts.

        Runs one warm-up step, then `steps` timed training steps on batches of (x, y)
        (batch_size default min(32, len(x))), and restores the weights and optimizer state.
        Rows: every layer (name, type, output_shape, forward_ms, backward_ms, share, flops,
        gflops for Dense/Conv), then loss, optimizer, other (metrics and glue) and total
        (step_ms); shares of all rows but total add up to 1. See docs/performance.md.
        """
        from fastnn.models.profile import run_profile
        return run_profile(self, x, y, steps=steps, batch_size=batch_size, print_fn=print_fn)

    def _test_step(self, xs, y, sw):
        with blas_pinned():
            (y_pred,) = self._forward(xs, False)
        lsw, omask = _masked_weights(self, sw, y_pred)
        if self._fused:
            loss, _ = self._loss_and_grad(y, y_pred, lsw)
        else:
            loss = float(self.loss(y, y_pred, sample_weight=lsw))
        loss += self._activity_penalty()
        for v in self._reg_vars:
            loss += float(v.regularizer(v.value))
        self._update_metrics(loss, y, y_pred, sw, omask)
        return loss

    def _activity_penalty(self):
        """Sum of the layers' activity_regularizer(output) / batch size of the last forward pass
        (as Keras 3.15 computes it, measured: in training and evaluation)."""
        total = 0.0
        for layer, _, out in self._nodes:
            if layer.activity_regularizer is not None:
                y = self._vals[out]
                total += float(layer.activity_regularizer(y)) / max(1, y.shape[0])
        return total

    def _update_metrics(self, loss, y, y_pred, sw, mask=None):
        n = y_pred.shape[0]
        self._loss_sum += loss * n
        self._loss_count += n
        if self._metrics is None:
            self._resolve_metrics(y, y_pred)
        for m, weighted in zip(self._metrics, self._metric_weighted):
            w = sw if weighted else None
            if mask is not None:   # Keras weights the metrics of a masked output by the mask
                w = mask if w is None else mask * w.reshape(w.shape + (1,) * (mask.ndim - w.ndim))
            m.update_state(y, y_pred, sample_weight=w)

    def _logs(self, prefix=""):
        logs = {"loss": self._loss_sum / max(self._loss_count, 1)}
        for m in self._metrics or []:
            r = m.result()
            logs[m.name] = float(r) if np.ndim(r) == 0 else np.asarray(r)
        return {prefix + k: logs[k] for k in sorted(logs)}

    # ---------------------------------------------------------------------------------------
    # public training API
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train for `epochs` over (x, y) in batches; returns a History (Keras's log keys)."""
        fn = "fit"
        batch_size = self._check_batch_size(batch_size, fn)
        if not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int; received epochs={epochs!r}.")
        if verbose not in ("auto", 0, 1, 2):
            raise ValueError(f"fit: verbose must be 'auto', 0, 1 or 2; received verbose={verbose!r}.")
        if not 0 <= validation_split < 1:
            raise ValueError(f"fit: validation_split must be in [0, 1); received {validation_split!r}.")
        if not self.compiled:
            raise RuntimeError("fit: you must compile the model before training; use model.compile(optimizer, loss).")
        xs = self._prepare_x(x, fn)
        self._ensure_built(xs)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, class_weight, n, fn)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight).")
            vxs = self._prepare_x(validation_data[0], "fit (validation_data)")
            vn = self._check_x_shapes(vxs, "fit (validation_data)")
            vy = self._prepare_y(validation_data[1], vn, "fit (validation_data)")
            vsw = self._sample_weights(vy, validation_data[2] if len(validation_data) == 3 else None, None, vn,
                                       "fit (validation_data)")
            val = (vxs, vy, vsw)
        elif validation_split:
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty training or validation "
                                 f"set with {n} samples.")
            val = ([a[split:] for a in xs], y[split:], None if sw is None else sw[split:])
            xs, y, sw = [a[:split] for a in xs], y[:split], None if sw is None else sw[:split]
            n = split
        if n == 0:
            raise ValueError("fit: x is empty (0 samples).")
        self._ready(xs, fn)
        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, int(steps_per_epoch))
        verbose_v = 1 if verbose == "auto" else verbose
        history = callbacks_module.History()
        cbs = list(callbacks or [])
        if verbose_v and not any(isinstance(c, callbacks_module.ProgbarLogger) for c in cbs):
            cbs.append(callbacks_module.ProgbarLogger())
        cbs.append(history)
        params = {"verbose": verbose_v, "epochs": epochs, "steps": steps}
        cb = callbacks_module.CallbackList(cbs, self, params)
        history.params = params
        self.stop_training = False
        rng = _random.generator()
        order = np.arange(n)
        self._in_fit = True
        try:
            cb.on_train_begin()
            logs = {}
            for epoch in range(initial_epoch, epochs):
                self.reset_metrics()
                cb.on_epoch_begin(epoch)
                if shuffle:
                    rng.shuffle(order)
                for step in range(steps):
                    cb.on_train_batch_begin(step)
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    bx = self._batch_bufs("train", [*xs, y, sw], idx)
                    self._train_step(bx[:-2], bx[-2], bx[-1])
                    logs = self._logs()
                    cb.on_train_batch_end(step, logs)
                    if self.stop_training:
                        break
                logs = self._logs()
                if val is not None and (epoch + 1) % validation_freq == 0:
                    vb = self._check_batch_size(validation_batch_size, fn, batch_size)
                    vlogs = self._evaluate_arrays(*val, vb, None, validation_steps)
                    logs.update({"val_" + k: v for k, v in vlogs.items()})
                cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            cb.on_train_end(logs)
        finally:
            self._in_fit = False
        history.model = self
        self.history = history
        return history

    def _evaluate_arrays(self, xs, y, sw, batch_size, cb, steps=None):
        n = xs[0].shape[0]
        self.reset_metrics()
        total = math.ceil(n / batch_size)
        if steps is not None:
            total = min(total, int(steps))
        for step in range(total):
            if cb is not None:
                cb.on_test_batch_begin(step)
            sl = slice(step * batch_size, (step + 1) * batch_size)
            self._test_step([a[sl] for a in xs], y[sl], None if sw is None else sw[sl])
            if cb is not None:
                cb.on_test_batch_end(step, self._logs())
        return self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Loss and metrics over (x, y): a float, [loss, *metrics], or a dict with return_dict."""
        fn = "evaluate"
        batch_size = self._check_batch_size(batch_size, fn)
        xs = self._prepare_x(x, fn)
        self._ready(xs, fn)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, None, n, fn)
        verbose_v = 1 if verbose == "auto" else verbose
        total = math.ceil(n / batch_size) if steps is None else min(math.ceil(n / batch_size), int(steps))
        cbs = list(callbacks or [])
        if verbose_v:
            cbs.append(callbacks_module.ProgbarLogger())
        cb = callbacks_module.CallbackList(cbs, self, {"verbose": verbose_v, "epochs": 1, "steps": total})
        cb.on_test_begin()
        logs = self._evaluate_arrays(xs, y, sw, batch_size, cb, steps)
        cb.on_test_end(logs)
        if return_dict:
            return logs
        return self._flat_logs(logs)

    def _flat_logs(self, logs):
        names = self.metrics_names
        out = [logs[k] for k in names if k in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return out[0] if len(out) == 1 else out

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for x computed in batches (inference mode); a float32 array (list if several outputs)."""
        fn = "predict"
        batch_size = self._check_batch_size(batch_size, fn)
        xs = self._prepare_x(x, fn)
        self._ensure_built(xs)
        n = self._check_x_shapes(xs, fn)
        total = math.ceil(n / batch_size)
        verbose_v = 1 if verbose == "auto" else verbose
        cbs = list(callbacks or [])
        if verbose_v:
            cbs.append(callbacks_module.ProgbarLogger())
        cb = callbacks_module.CallbackList(cbs, self, {"verbose": verbose_v, "epochs": 1, "steps": total})
        outs = None
        cb.on_predict_begin()
        for step in range(total):
            cb.on_predict_batch_begin(step)
            sl = slice(step * batch_size, (step + 1) * batch_size)
            with blas_pinned():
                ys = self._forward([a[sl] for a in xs], False)
            if outs is None:
                outs = [np.empty((n, *o.shape[1:]), FLOATX) for o in ys]
            for o, yb in zip(outs, ys):
                o[sl] = yb
            cb.on_predict_batch_end(step)
        cb.on_predict_end()
        if outs is None:
            outs = [np.empty((0, *t.shape[1:]), FLOATX) for t in self._graph_outputs]
        return outs[0] if len(outs) == 1 else outs

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns the loss (and metrics) of that batch."""
        fn = "train_on_batch"
        xs = self._prepare_x(x, fn)
        self._ready(xs, fn)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, class_weight, n, fn)
        self.reset_metrics()
        self._train_step(xs, y, sw)
        logs = self._logs()
        return logs if return_dict else self._flat_logs(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        fn = "test_on_batch"
        xs = self._prepare_x(x, fn)
        self._ready(xs, fn)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, None, n, fn)
        self.reset_metrics()
        self._test_step(xs, y, sw)
        logs = self._logs()
        return logs if return_dict else self._flat_logs(logs)

    def predict_on_batch(self, x):
        xs = self._prepare_x(x, "predict_on_batch")
        self._ensure_built(xs)
        self._check_x_shapes(xs, "predict_on_batch")
        with blas_pinned():
            outs = [np.array(o, copy=True) for o in self._forward(xs, False)]
        return outs[0] if len(outs) == 1 else outs

    # ---------------------------------------------------------------------------------------
    # description, config, saving
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        from fastnn.models.summary import summary_lines
        lines = summary_lines(self)
        if print_fn is None:
            print("\n".join(lines))
        else:
            for line in lines:
                print_fn(line)

    def get_config(self):
        from fastnn.layers import serialize
        if not self.built:
            raise ValueError("get_config: the model is not built.")
        ids = {id(t): i for i, t in enumerate(self._tensors)}
        layers = []
        for t in self._tensors:
            layers.append({**serialize(t.layer), "name": t.layer.name,
                           "inbound": [ids[id(s)] for s in t.inputs]})
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": self._input_ids, "output_layers": self._output_ids,
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from fastnn.layers import deserialize
        tensors = []
        for entry in config["layers"]:
            layer = deserialize(entry, custom_objects)
            if isinstance(layer, InputLayer):
                tensors.append(layer.output)
            else:
                ins = [tensors[i] for i in entry["inbound"]]
                tensors.append(layer(ins[0] if len(ins) == 1 else ins))
        inputs = [tensors[i] for i in config["input_layers"]]
        outputs = [tensors[i] for i in config["output_layers"]]
        return cls(inputs=inputs[0] if config.get("single_input", True) else inputs,
                   outputs=outputs[0] if config.get("single_output", True) else outputs,
                   name=config.get("name"), trainable=config.get("trainable", True))

    def save(self, filepath, overwrite=True, **kwargs):
        """Save architecture, weights and optimizer state to a `.keras` zip (see saving.py)."""
        from fastnn.models.saving import save_model
        save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        from fastnn.models.saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        from fastnn.models.saving import load_weights
        load_weights(self, filepath)

    def to_json(self, **kwargs):
        import json
        from fastnn.models.saving import model_config
        return json.dumps(model_config(self), **kwargs)
