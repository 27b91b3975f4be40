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

from fastnn.layers.base import FLOATX, KerasTensor, _is_symbolic as _symbolic, shape_str
from fastnn.layers.core import InputLayer
from fastnn.kernels.conv import blas_pinned
from fastnn.models import fusion, masking, memplan


class Graph:
    """Nodes, tensors, layers and weights of a functional model, and its forward/backward passes."""

    _timer = None  # a fastnn.models.profile.StepTimer while model.profile runs
    _fused_layers = ()  # output layers whose loss gives d/d(logits) (set by the trainer)
    _bn_relu = ()  # (BatchNormalization, ReLU) pairs fused in the forward pass (fusion.bn_relu_pairs)
    # data parallel (fastnn.distribution.replica): called with node k after its backward, so the
    # gradient all-reduce of finished arena slices starts while backward goes on
    _grad_ready = None
    # data parallel: the global batch size, which divides activity penalties (else the batch's)
    _activity_rows = None
    # a memory plan's recording (fastnn.models.memplan) during its first pass: told after each step
    _step_hook = None
    # the memory plan's view for the gradient sums at branch points (self._acc otherwise)
    _acc_plan = None

    # ---------------------------------------------------------------------------------------
    # building
    def _init_graph(self, inputs, outputs):
        self._input_struct, inputs = _flatten_struct(inputs, "inputs")
        self._output_struct, outputs = _flatten_struct(outputs, "outputs")
        self._single_input = self._input_struct is None
        self._single_output = self._output_struct is None
        for t in inputs + outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model: inputs and outputs must be KerasTensors (from fastnn.Input and layer "
                                f"calls); received {type(t).__name__}.")
        calls, first_seen = _build_map(inputs, outputs)
        self._graph_calls = calls
        self._layer_order, self._call_depth = _layers_by_depth(inputs, calls, first_seen)
        names = [layer.name for layer in self._layer_order]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"Model: the name '{name}' is used {names.count(name)} times in the model; "
                                 f"all layer names must be unique.")

        # the execution graph: nested models inlined, one node per call, tensors numbered
        tid = {id(t): k for k, t in enumerate(inputs)}
        n = len(inputs)
        nodes = []
        used = set()

        def instance(layer):   # the layer for its first call in this graph, a call instance after
            primary = layer._primary or layer
            if id(primary) in used:
                return primary._call_instance()
            used.add(id(primary))
            return primary

        for call in calls:
            if isinstance(call.layer, InputLayer):
                if id(call.outputs[0]) not in tid:
                    raise ValueError(f"Model: an output depends on input '{call.layer.name}', which is not in "
                                     f"`inputs`.")
                continue
            ins = [tid[id(t)] for t in call.inputs]
            if isinstance(call.layer, Graph):   # a nested model: its nodes join this graph
                inner = call.layer
                m = dict(zip(inner._input_ids, ins))
                for layer, i_ins, i_out in inner._nodes:
                    outs = i_out if isinstance(i_out, tuple) else (i_out,)
                    for o in outs:
                        m[o], n = n, n + 1
                    nodes.append((instance(layer), [m[i] for i in i_ins],
                                  tuple(m[o] for o in outs) if isinstance(i_out, tuple) else m[i_out]))
                for t, o in zip(call.outputs, inner._output_ids):
                    tid[id(t)] = m[o]
                continue
            outs = []
            for t in call.outputs:
                tid[id(t)], n = n, n + 1
                outs.append(tid[id(t)])
            nodes.append((instance(call.layer), ins, outs[0] if len(outs) == 1 else tuple(outs)))
        for t in outputs:
            if id(t) not in tid:
                raise ValueError(f"Model: output {t} cannot be computed from `inputs`.")
        self._n_tensors = n
        self._input_ids = list(range(len(inputs)))
        self._output_ids = [tid[id(t)] for t in outputs]
        self._nodes = nodes
        input_set = set(self._input_ids)
        self._need_dx = [(layer, not all(i in input_set for i in ins)) for layer, ins, _ in nodes]
        self._shared_grads = []   # (call instance's variable, the primary's) of trainable weights
        for layer, _, _ in nodes:
            if layer._primary is not None:
                self._shared_grads += [(v, v.primary) for v in layer._variables if v.grad is not None]
        self._plan_fusion()
        # Keras masks (Embedding(mask_zero=True), Masking): carried per tensor id, so a mask
        # follows its tensor through shared layers and inlined nested models
        self._masking = masking.has_sources(nodes)
        self._masks = [None] * n
        self._input_layers = [t.layer for t in inputs if isinstance(t.layer, InputLayer)]
        self._graph_outputs = outputs
        self._graph_inputs = inputs
        self.input_shape = inputs[0].shape if self._single_input else [t.shape for t in inputs]
        self.output_shape = outputs[0].shape if self._single_output else [t.shape for t in outputs]
        self._vals = [None] * n
        self._gvals = [None] * n
        self._acc = {}
        self.built = True

    def _plan_fusion(self):
        plans = self.__dict__.get("_memory_plans")
        if plans is not None:   # the fused runs change what each pass requests
            plans.clear()
        outs = set(self._output_ids)
        self._bn_relu = fusion.bn_relu_pairs(self._nodes, outs)
        self._chains = fusion.inference_chains(self._nodes, outs)

    def _is_chain(self):
        """Keras's "sequential-like" graph: one call per depth, each on at most one tensor, no
        layer called twice (summary then leaves out the "Connected to" column)."""
        depths = [self._call_depth.get(id(c), 0) for c in self._graph_calls]
        layers = [id(c.layer) for c in self._graph_calls]
        return (len(set(depths)) == len(depths) and len(set(layers)) == len(layers)
                and all(len(c.inputs) <= 1 for c in self._graph_calls))

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
        """The model's layers in Keras's order: by depth from the inputs, ties in the order a
        depth-first walk from the outputs first meets them (nested models are one layer)."""
        return list(self._layer_order) if self.built else []

    @property
    def input_names(self):
        """Names of the inputs: the dict keys for dict inputs, else the Input layers' names."""
        if isinstance(self._input_struct, tuple):
            return list(self._input_struct)
        return [t.layer.name for t in self._graph_inputs]

    @property
    def output_names(self):
        """Names of the outputs: the dict keys for dict outputs, else the output layers' names."""
        if isinstance(self._output_struct, tuple):
            return list(self._output_struct)
        return [t.layer.name for t in self._graph_outputs]

    @property
    def inputs(self):
        return list(self._graph_inputs) if self.built else None

    @property
    def outputs(self):
        return list(self._graph_outputs) if self.built else None

    @property
    def input(self):
        return _pack(self._input_struct, self._graph_inputs)

    @property
    def output(self):
        return _pack(self._output_struct, self._graph_outputs)

    def get_layer(self, name=None, index=None):
        """The layer called `name`, or at position `index` of model.layers."""
        if isinstance(name, int) and index is None:
            name, index = None, name
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
        # a layer may sit in several graphs (a nested model trained on its own too): its
        # per-graph flags are set for every pass
        for layer, need in self._need_dx:
            layer._need_dx = need
            layer._fused_output = False
        for layer in self._fused_layers:
            layer._fused_output = True
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
            masking.forward(self, vals, training, timer)
        elif timer is None and not training and self._chains:
            fusion.run_inference(self._nodes, self._chains, vals, self._step_hook)
        elif timer is None:
            hook = self._step_hook
            for k, (layer, ins, out) in enumerate(self._nodes):
                y = layer.forward(vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins], training)
                if type(out) is int:
                    vals[out] = y
                else:   # a layer with several outputs returns a list
                    for o, v in zip(out, y):
                        vals[o] = v
                if hook is not None:
                    hook.forward_step(k, layer, out, y, training)
        else:  # model.profile: time every layer
            clock = time.perf_counter
            for k, (layer, ins, out) in enumerate(self._nodes):
                x = vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins]
                s = clock()
                y = layer.forward(x, training)
                timer.forward[k] += clock() - s
                if type(out) is int:
                    vals[out] = y
                else:
                    for o, v in zip(out, y):
                        vals[o] = v
                    y = y[0]
                timer.shapes[k] = y.shape
                timer.in_shapes[k] = x.shape if len(ins) == 1 else None

    def _backward(self, douts):
        g = self._gvals
        for i in range(len(g)):
            g[i] = None
        for i, d in zip(self._output_ids, douts):
            if d is None:
                continue
            if g[i] is None:
                g[i] = d
            else:   # one tensor returned as two outputs
                g[i] = self._accumulate(i, g[i], d)
        inputs = self._input_ids
        timer = self._timer
        ready = self._grad_ready
        hook = self._step_hook
        clock = time.perf_counter
        for k in range(len(self._nodes) - 1, -1, -1):
            if ready is not None and k + 1 < len(self._nodes):
                ready(k + 1)
            layer, ins, out = self._nodes[k]
            if type(out) is int:
                dy = g[out]
                if layer.activity_regularizer is not None:  # d penalty / d output joins the flow
                    y = self._vals[out]
                    reg = layer.activity_regularizer.gradient(y)
                    reg *= np.float32(1.0 / max(1, self._activity_rows or y.shape[0]))
                    dy = reg if dy is None else np.add(dy, reg, out=reg)
                missing = dy is None
            else:   # several outputs: a list of gradients, None where nothing flowed back
                dy = [g[o] for o in out]
                missing = all(d is None for d in dy)
            if missing:
                # gradients are written, never accumulated: a skipped layer writes zeros
                for v in layer._variables:
                    if v.grad is not None:
                        v.grad.fill(0.0)
                if hook is not None:
                    hook.backward_step(k, layer, ())
                continue
            if timer is None:
                dx = layer.backward(dy)
            else:
                s = clock()
                dx = layer.backward(dy)
                timer.backward[k] += clock() - s
            if dx is None:
                if hook is not None:
                    hook.backward_step(k, layer, ())
                continue
            dxs = dx if len(ins) > 1 else [dx]
            for i, d in zip(ins, dxs):
                if d is None or (i in inputs and not self._input_grads):
                    continue
                g[i] = d if g[i] is None else self._accumulate(i, g[i], d)
            if hook is not None:   # what the graph keeps, and what was read into a sum here
                hook.backward_step(k, layer, [(i, g[i]) for i in ins if g[i] is not None] +
                                   [(None, d) for d in dxs if d is not None])
        # the calls of a shared layer after its first computed gradients of their own: sum them
        # (in node order, so the result does not depend on anything else)
        for v, primary in self._shared_grads:
            np.add(primary.grad, v.grad, out=primary.grad)

    _input_grads = False   # keep the gradients w.r.t. the model inputs (gradient of a nested call)

    def _accumulate(self, i, current, d):
        """current + d in a buffer owned by the model (a branch point: several readers)."""
        acc = None if self._acc_plan is None else self._acc_plan.take(("acc", i), d.shape, FLOATX)
        if acc is None:
            acc = self._acc.get((i, d.shape))
        if acc is None:
            acc = self._acc[(i, d.shape)] = np.empty(d.shape, FLOATX)
        if current is acc:
            np.add(acc, d, out=acc)
        else:
            np.add(current, d, out=acc)
        return acc

    def forward(self, x, training=False):
        xs = x if isinstance(x, (list, tuple)) else [x]
        outs = self._forward(xs, training)
        return outs[0] if len(outs) == 1 else outs

    def backward(self, dy):
        """Gradients w.r.t. the model's inputs (a list if several) for dy w.r.t. its outputs."""
        self._input_grads = True
        try:
            self._backward(dy if isinstance(dy, (list, tuple)) else [dy])
        finally:
            self._input_grads = False
        dxs = [self._gvals[i] for i in self._input_ids]
        return dxs[0] if len(dxs) == 1 else dxs

    def __call__(self, x, training=False, **kwargs):
        if _symbolic(x):   # nesting: this model becomes one layer of the model being built
            if not self.built:
                self._build_from_symbolic(x)
            flat = list(x.values()) if isinstance(x, dict) else (list(x) if isinstance(x, (list, tuple)) else [x])
            if isinstance(x, dict) and isinstance(self._input_struct, tuple):
                flat = [x[k] for k in self._input_struct]
            if len(flat) != len(self._graph_inputs):
                raise ValueError(f"Model '{self.name}' takes {len(self._graph_inputs)} inputs; it was called on "
                                 f"{len(flat)} tensors.")
            for t, want in zip(flat, self._graph_inputs):
                if len(t.shape) != len(want.shape) or any(
                        a is not None and b is not None and a != b for a, b in zip(t.shape[1:], want.shape[1:])):
                    raise ValueError(f"Model '{self.name}': input {want.layer.name} expects shape "
                                     f"{shape_str(want.shape)}; received a tensor of shape {shape_str(t.shape)}.")
            outs = self._symbolic_call(flat, [t.shape for t in self._graph_outputs])
            return _pack(self._output_struct, outs)
        xs = self._prepare_x(x, "call")
        self._ensure_built(xs)
        with blas_pinned(), memplan.planned(self, "infer", xs, not training):
            outs = self._forward(xs, bool(training))
        outs = [np.array(o, copy=True) for o in outs]
        return _pack(self._output_struct, outs) if len(outs) > 1 else outs[0]

    def _build_from_symbolic(self, x):
        raise ValueError(f"Model '{self.name}' is not built; build it before calling it on tensors.")

    # ---------------------------------------------------------------------------------------
    # config: Keras's functional layout. Each layer once (model.layers order) with its calls;
    # each call lists its input tensors as [layer name, call index, output index], where the
    # call index counts that layer's calls in this graph (in execution order).
    def _tensor_refs(self):
        refs, count = {}, {}
        for call in self._graph_calls:
            k = count.get(id(call.layer), 0)
            count[id(call.layer)] = k + 1
            for j, t in enumerate(call.outputs):
                refs[id(t)] = [call.layer.name, k, j]
        return refs

    def get_config(self):
        from fastnn.layers import serialize
        if not self.built:
            raise ValueError("get_config: the model is not built.")
        refs = self._tensor_refs()
        inbound = {}
        for call in self._graph_calls:
            if not isinstance(call.layer, InputLayer):
                inbound.setdefault(id(call.layer), []).append([refs[id(t)] for t in call.inputs])
        layers = [{**serialize(layer), "name": layer.name, "inbound_nodes": inbound.get(id(layer), [])}
                  for layer in self._layer_order]
        for t in self._graph_inputs:
            if id(t) not in refs:
                raise ValueError(f"get_config: model '{self.name}' takes an intermediate tensor as input; it "
                                 f"cannot be saved as a graph of its own.")
        struct = (lambda st: list(st) if isinstance(st, tuple) else st)
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": [refs[id(t)] for t in self._graph_inputs],
                "output_layers": [refs[id(t)] for t in self._graph_outputs],
                "input_struct": struct(self._input_struct), "output_struct": struct(self._output_struct)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from fastnn.layers import deserialize
        if "inbound" in config["layers"][0]:
            return cls._from_config_v1(config, custom_objects)
        made = {}      # (layer name, call index, output index) -> KerasTensor
        pending = []
        for entry in config["layers"]:
            layer = deserialize(entry, custom_objects)
            if isinstance(layer, InputLayer):
                made[(layer.name, 0, 0)] = layer.output
            for k, ins in enumerate(entry.get("inbound_nodes", [])):
                pending.append((layer, k, [tuple(r) for r in ins]))
        while pending:   # call each layer once its inputs exist (the saved order need not allow it)
            progress = []
            for item in pending:
                layer, k, ins = item
                if all(r in made for r in ins):
                    ts = [made[r] for r in ins]
                    out = layer(ts[0] if len(ts) == 1 else ts)
                    outs = list(out.values()) if isinstance(out, dict) else (
                        out if isinstance(out, list) else [out])
                    for j, t in enumerate(outs):
                        made[(layer.name, k, j)] = t
                    progress.append(item)
            if not progress:
                raise ValueError(f"from_config: the saved graph of '{config.get('name')}' is disconnected.")
            pending = [p for p in pending if p not in progress]

        def pack(struct, refs):
            flat = [made[tuple(r)] for r in refs]
            if isinstance(struct, list):
                return dict(zip(struct, flat))
            return flat if struct == "list" else flat[0]
        return cls(inputs=pack(config["input_struct"], config["input_layers"]),
                   outputs=pack(config["output_struct"], config["output_layers"]),
                   name=config.get("name"), trainable=config.get("trainable", True))

    @classmethod
    def _from_config_v1(cls, config, custom_objects=None):
        """Configs written before shared layers: one entry per tensor with inbound tensor ids."""
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

def _flatten_struct(x, what):
    """(structure, flat list) of a model's inputs or outputs: structure None for one tensor,
    "list" for a list or tuple, or the dict's keys sorted (the order Keras flattens a dict in)."""
    if isinstance(x, dict):
        keys = tuple(sorted(x))
        return keys, [x[k] for k in keys]
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"Model: `{what}` is empty.")
        return "list", list(x)
    return None, [x]


def _pack(struct, flat):
    """Inverse of _flatten_struct."""
    if struct is None:
        return flat[0]
    if isinstance(struct, tuple):
        return dict(zip(struct, flat))
    return list(flat)


def _build_map(inputs, outputs):
    """Calls reachable from `outputs` without passing `inputs`, in depth-first post-order (an
    execution order), and {layer id: index of the walk's first visit} (Keras's _build_map: each
    output in order; from a tensor, the call's input tensors in order, then the call)."""
    finished, in_progress, order, first_seen = set(), set(), [], {}
    input_ids = {id(t) for t in inputs}

    def visit(t):
        call = t.call
        if call is None or id(call) in finished:
            return
        if id(t) in input_ids and not isinstance(call.layer, InputLayer):
            finished.add(id(call))       # an intermediate tensor used as a model input
            return
        if id(call) in in_progress:
            raise ValueError(f"Model: tensor {t} from layer '{call.layer.name}' is part of a cycle.")
        first_seen.setdefault(id(call.layer), len(first_seen))
        in_progress.add(id(call))
        for s in call.inputs:
            visit(s)
        in_progress.discard(id(call))
        finished.add(id(call))
        order.append(call)

    for t in outputs:
        visit(t)
    for t in inputs:      # an Input that no output depends on is still a model input
        if t.call is not None and id(t.call) not in finished and isinstance(t.layer, InputLayer):
            first_seen.setdefault(id(t.layer), -1)
            finished.add(id(t.call))
            order.insert(0, t.call)
    return order, first_seen


def _layers_by_depth(inputs, calls, first_seen):
    """model.layers as Keras orders them (keras:ops/function.py map_graph): a call's depth is the
    largest number of calls between it and an output; a layer takes the largest depth of its
    calls; layers sorted by depth, deepest (the inputs) first, ties by first visit."""
    depth, layer_depth, parents, layers = {}, {}, {}, {}
    made_by = {id(o): c for c in calls for o in c.outputs}
    for c in calls:
        parents[id(c)] = [made_by[id(t)] for t in c.inputs if id(t) in made_by]
        layers[id(c.layer)] = c.layer
    for c in reversed(calls):
        d = max(depth.setdefault(id(c), 0), layer_depth.get(id(c.layer), 0))
        layer_depth[id(c.layer)] = depth[id(c)] = d
        for p in parents[id(c)]:
            depth[id(p)] = max(d + 1, depth.get(id(p), 0))
    for t in inputs:   # an unused Input sits at depth 0, as Keras puts it
        if t.call is not None and id(t.call) not in depth:
            depth[id(t.call)] = layer_depth[id(t.layer)] = 0
    order = sorted(layers.values(), key=lambda l: (-layer_depth[id(l)], first_seen[id(l)]))
    return order, depth
