"""The functional graph: nodes in topological order, the forward and backward passes over them.

`Graph` is the part of `Model` that knows the graph (Keras's `Function` / `Functional`). A
model built with `Model(inputs, outputs)` walks the KerasTensors back from its outputs and
keeps a list of nodes in execution order, each `(layer, input tensor ids, output id)`:

- forward runs the nodes in order, each `layer.forward(x or [x, ...], training)`;
- backward runs them in reverse, each `layer.backward(dy)`; a tensor read by several layers (a
  branch point) sums the gradients they return in a buffer owned by the model.

Tensor values live in `self._vals` (one slot per tensor id), gradients in `self._gvals`; both
are reused every step. The inference-fusion plans (fastnn.models.fusion) are made here, once
per graph. The training loop that drives these passes is fastnn.models.trainer.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.layers.base import FLOATX, KerasTensor
from fastnn.layers.core import InputLayer
from fastnn.kernels.conv import blas_pinned
from fastnn.models import fusion, masking


class Graph:
    """Nodes, tensors, layers and weights of a functional model, and its forward/backward passes."""

    _timer = None  # a fastnn.models.profile.StepTimer while model.profile runs
    _bn_relu = ()  # (BatchNormalization, ReLU) pairs fused in the forward pass (fusion.bn_relu_pairs)
    # data parallel (fastnn.distribution.replica): called with node k after its backward, so the
    # gradient all-reduce of finished arena slices starts while backward goes on
    _grad_ready = None
    # data parallel: the global batch size, which divides activity penalties (else the batch's)
    _activity_rows = None

    # ---------------------------------------------------------------------------------------
    # building
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
        for t in list(order):     # every output of a several-output layer gets a slot
            for sib in getattr(t, "siblings", None) or ():
                if id(sib) not in ids:
                    ids[id(sib)] = len(order)
                    order.append(sib)
        self._tensors = order
        self._input_ids = [ids[id(t)] for t in inputs]
        self._output_ids = [ids[id(t)] for t in outputs]
        self._nodes = []
        seen_layers = set()
        input_set = set(self._input_ids)
        for t in order:
            if isinstance(t.layer, InputLayer):
                continue
            if getattr(t, "siblings", None) is not None and _add_sibling(self._nodes, t, ids):
                continue      # another output of a node already made (return_state)
            if id(t.layer) in seen_layers:
                raise ValueError(f"Model: layer '{t.layer.name}' is called more than once; shared layers are "
                                 f"not supported by fastnn yet.")
            seen_layers.add(id(t.layer))
            in_ids = [ids[id(s)] for s in t.inputs]
            t.layer._need_dx = not all(i in input_set for i in in_ids)
            self._nodes.append((t.layer, in_ids, _node_out(t, ids)))
        self._masking = masking.has_sources(self._nodes)
        self._masks = [None] * len(order)
        self._bn_relu = fusion.bn_relu_pairs(self._nodes, set(self._output_ids))
        self._chains = fusion.inference_chains(self._nodes, set(self._output_ids))
        self._input_layers = [t.layer for t in inputs]
        self._graph_outputs = outputs
        self._graph_inputs = inputs
        self.input_shape = inputs[0].shape if self._single_input else [t.shape for t in inputs]
        self.output_shape = outputs[0].shape if self._single_output else [t.shape for t in outputs]
        self._vals = [None] * len(order)
        self._gvals = [None] * len(order)
        self._acc = {}
        self.built = True

    def _ensure_built(self, xs):
        if not self.built:
            raise ValueError(f"Model '{self.name}' is not built.")

    def build(self, input_shape=None):
        if not self.built:
            raise ValueError(f"Model '{self.name}' has no graph; create it with Model(inputs, outputs).")

    # ---------------------------------------------------------------------------------------
    # layers, inputs and outputs
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
            masking.forward(self, vals, training)
        elif timer is None and not training and self._chains:
            fusion.run_inference(self._nodes, self._chains, vals)
        elif timer is None:
            for layer, ins, out in self._nodes:
                y = layer.forward(vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins], training)
                if isinstance(out, list):
                    set_outputs(vals, out, y)
                else:
                    vals[out] = y
        else:  # model.profile: time every layer
            clock = time.perf_counter
            for k, (layer, ins, out) in enumerate(self._nodes):
                x = vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins]
                s = clock()
                y = layer.forward(x, training)
                timer.forward[k] += clock() - s
                if isinstance(out, list):
                    set_outputs(vals, out, y)
                    out = out[0]
                else:
                    vals[out] = y
                timer.shapes[k] = vals[out].shape
                timer.in_shapes[k] = x.shape if len(ins) == 1 else None

    def _backward(self, douts):
        g = self._gvals
        for i in range(len(g)):
            g[i] = None
        for i, d in zip(self._output_ids, douts):
            g[i] = d
        inputs = self._input_ids
        timer = self._timer
        ready = self._grad_ready
        clock = time.perf_counter
        for k in range(len(self._nodes) - 1, -1, -1):
            if ready is not None and k + 1 < len(self._nodes):
                ready(k + 1)
            layer, ins, out = self._nodes[k]
            if isinstance(out, list):     # several outputs: a list of gradients, zeros where unused
                dy = _output_grads(self, out, g)
                if dy is None:
                    continue
                dx = layer.backward(dy)
                self._pass_back(ins, dx, g, inputs)
                continue
            dy = g[out]
            if layer.activity_regularizer is not None:  # d penalty / d output joins the flow
                y = self._vals[out]
                reg = layer.activity_regularizer.gradient(y)
                reg *= np.float32(1.0 / max(1, self._activity_rows or y.shape[0]))
                dy = reg if dy is None else np.add(dy, reg, out=reg)
            if dy is None:
                continue
            if timer is None:
                dx = layer.backward(dy)
            else:
                s = clock()
                dx = layer.backward(dy)
                timer.backward[k] += clock() - s
            self._pass_back(ins, dx, g, inputs)

    def _pass_back(self, ins, dx, g, inputs):
        """Hand a node's input gradients to its input tensors (summed at branch points)."""
        if dx is not None:
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

    # ---------------------------------------------------------------------------------------
    # config (the graph as JSON: one entry per tensor, with the ids of its inbound tensors)
    def get_config(self):
        from fastnn.layers import serialize
        if not self.built:
            raise ValueError("get_config: the model is not built.")
        ids = {id(t): i for i, t in enumerate(self._tensors)}
        layers = []
        first = {}     # layer of several outputs -> the index of its first listed tensor
        for i, t in enumerate(self._tensors):
            if getattr(t, "siblings", None) is not None:
                if id(t.layer) in first:      # another output of a layer already listed
                    layers.append({"output_of": first[id(t.layer)], "index": t.output_index})
                    continue
                first[id(t.layer)] = i
            entry = {**serialize(t.layer), "name": t.layer.name, "inbound": [ids[id(s)] for s in t.inputs]}
            if getattr(t, "siblings", None) is not None:
                entry["output_index"] = t.output_index
            layers.append(entry)
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": self._input_ids, "output_layers": self._output_ids,
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from fastnn.layers import deserialize
        tensors = []
        for entry in config["layers"]:
            if "output_of" in entry:
                tensors.append(tensors[entry["output_of"]].siblings[entry["index"]])
                continue
            entry = dict(entry)
            k = entry.pop("output_index", 0)
            layer = deserialize(entry, custom_objects)
            if isinstance(layer, InputLayer):
                tensors.append(layer.output)
            else:
                ins = [tensors[i] for i in entry["inbound"]]
                out = layer(ins[0] if len(ins) == 1 else ins)
                tensors.append(out[k] if isinstance(out, list) else out)
        inputs = [tensors[i] for i in config["input_layers"]]
        outputs = [tensors[i] for i in config["output_layers"]]
        return cls(inputs=inputs[0] if config.get("single_input", True) else inputs,
                   outputs=outputs[0] if config.get("single_output", True) else outputs,
                   name=config.get("name"), trainable=config.get("trainable", True))


# ---- layers with several outputs (an RNN with return_state): one node, a list of tensor ids
def _node_out(t, ids):
    """The node's output: a tensor id, or the ids of all its outputs (several-output layers)."""
    sib = getattr(t, "siblings", None)
    if sib is None:
        return ids[id(t)]
    return [ids[id(s)] for s in sib]


def _add_sibling(nodes, t, ids) -> bool:
    """True when t's layer already has its node (made from another of its outputs)."""
    for layer, _, out in nodes:
        if layer is t.layer and isinstance(out, list):
            out[t.output_index] = ids[id(t)]
            return True
    return False


def set_outputs(vals, out, ys):
    for o, y in zip(out, ys):
        vals[o] = y


def _output_grads(model, out, g):
    """The gradients of a several-output node (zeros for outputs nothing read), or None."""
    if all(g[o] is None for o in out):
        return None
    res = []
    for o in out:
        d = g[o]
        if d is None:
            shape = model._vals[o].shape
            d = model._acc.get(("zero", o, shape))
            if d is None:
                d = model._acc[("zero", o, shape)] = np.zeros(shape, FLOATX)
        res.append(d)
    return res
