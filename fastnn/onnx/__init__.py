"""fastnn.onnx: write a fastnn model as an ONNX graph for ONNX Runtime and other runtimes.

    import fastnn
    model.export("model.onnx", format="onnx")               # as Keras 3 spells it
    fastnn.onnx.export(model, "model.onnx", opset=18)         # the same, with the options

The graph is built with the `onnx` package (`pip install "fastnn[onnx]"`), one small handler
per layer class (fastnn.onnx.layers, fastnn.onnx.recurrent); neither torch nor TensorFlow is
involved. The batch axis is dynamic, the graph's inputs and outputs carry the model's input and
output names, weights are initializers, and `onnx.checker` validates the result before it is
written. A layer that has no ONNX form raises ExportError (a ValueError) naming the layer and
the reason. Layouts: see fastnn.onnx._builder (channels-last graph, one Transpose each way
around runs of convolutions and pooling).
"""
from __future__ import annotations

import os

import numpy as np

from fastnn.onnx._builder import Builder, ExportError, Sym

__all__ = ["export", "to_onnx", "ExportError", "MIN_OPSET", "DEFAULT_OPSET"]

MIN_OPSET = 17
DEFAULT_OPSET = 18


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f'ONNX export needs the onnx package: pip install "fastnn[onnx]" ({e}).') from None
    return onnx


_UNSET = object()


class _Context:
    """What a handler sees: the builder and the Conv -> BatchNormalization folds chosen."""

    def __init__(self, builder, folds):
        self.b = builder
        self._folds = folds          # id(conv layer node) -> the BatchNormalization folded into it
        self.current = None          # the node being exported (its fold, if any)
        # Keras masks: the ONNX names of the (N, T) bool masks of the node's inputs (None: no
        # mask); a handler that makes or consumes a mask sets mask_out (else a layer with
        # supports_masking passes its input's mask on, and other layers drop it)
        self.mask_in = []
        self.mask_out = _UNSET

    def _bn(self, layer):
        return self._folds.get(self.current)

    def fold_tag(self, layer):
        bn = self._bn(layer)
        return "" if bn is None else f"fold:{id(bn)}"

    def folded(self, layer, kernel, bias, axis):
        """(kernel, bias) of `layer`, with the BatchNormalization after it folded in when chosen:
        kernel * s along the output-channel `axis`, (bias - mean) * s + beta (float64, then float32)."""
        bn = self._bn(layer)
        if bn is None:
            return kernel, bias
        var = bn.moving_variance.value.astype(np.float64)
        s = 1.0 / np.sqrt(var + bn.epsilon)
        if bn.gamma is not None:
            s = s * bn.gamma.value
        shape = [1] * kernel.ndim
        shape[axis] = -1
        k = (kernel.astype(np.float64) * s.reshape(shape)).astype(np.float32)
        b0 = np.zeros(s.shape) if bias is None else bias.astype(np.float64)
        b1 = (b0 - bn.moving_mean.value) * s + (0.0 if bn.beta is None else bn.beta.value)
        return k, b1.astype(np.float32)


def _fold_plan(nodes, output_ids):
    """{index of a conv/dense node: the BatchNormalization node index it absorbs} for each
    Conv/Dense/Depthwise/Separable/ConvTranspose whose output (no activation) is read only by
    a BatchNormalization and is not a model output."""
    from fastnn.layers.convolutional import BaseConv, BaseConvTranspose, BaseDepthwiseConv, BaseSeparableConv
    from fastnn.layers.core import Dense
    from fastnn.layers.normalization import BatchNormalization
    readers = {}
    for k, (_, ins, _) in enumerate(nodes):
        for i in ins:
            readers.setdefault(i, []).append(k)
    plan = {}
    for k, (layer, _, out) in enumerate(nodes):
        if not isinstance(layer, (BaseConv, BaseConvTranspose, BaseDepthwiseConv, BaseSeparableConv, Dense)):
            continue
        if type(out) is not int or out in output_ids or getattr(layer, "_act_name", "linear") != "linear":
            continue
        r = readers.get(out, [])
        if len(r) == 1 and isinstance(nodes[r[0]][0], BatchNormalization):
            plan[k] = r[0]
    return plan


def _check_opset(opset):
    onnx = _onnx()
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise ValueError(f"ONNX export: opset must be an int from {MIN_OPSET} to {top} (the newest this onnx "
                         f"package knows); received opset={opset!r}.")
    return int(opset)


def _dims(shape, name):
    """ONNX dims of a Keras shape: the batch axis (and any other unknown axis) symbolic."""
    dims = []
    for k, d in enumerate(shape):
        dims.append(d if d is not None else ("batch" if k == 0 else f"{name}_dim{k}"))
    return dims


def to_onnx(model, opset=DEFAULT_OPSET, fold_batchnorm=False, input_signature=None):
    """The ModelProto of `model` (a built fastnn Model or Sequential); see `export`."""
    onnx = _onnx()
    from onnx import TensorProto, helper
    from fastnn.onnx import layers as handlers
    opset = _check_opset(opset)
    if not getattr(model, "built", False) or not getattr(model, "_nodes", None):
        raise ValueError(f"ONNX export: model '{getattr(model, 'name', model)}' is not built; build it (give it an "
                         f"Input, or call it on data) before exporting.")
    if not handlers.HANDLERS:
        handlers.register_all()
    b = Builder(opset)
    in_names, out_names = list(model.input_names), _unique_names(model.output_names)
    in_shapes = [tuple(t.shape) for t in model._graph_inputs]
    if input_signature is not None:
        in_shapes = _signature(input_signature, in_shapes)
    syms = [None] * model._n_tensors
    masks = [None] * model._n_tensors
    graph_inputs = []
    for i, t, name, shape in zip(model._input_ids, model._graph_inputs, in_names, in_shapes):
        b.reserve(name)
        dtype = getattr(t, "dtype", "float32")   # int32 / int64: token ids for an Embedding
        syms[i] = Sym(name, shape, dtype=dtype)
        elem = {"int32": TensorProto.INT32, "int64": TensorProto.INT64}.get(dtype, TensorProto.FLOAT)
        graph_inputs.append(helper.make_tensor_value_info(name, elem, _dims(shape, name)))
    for k, (i, name) in enumerate(zip(model._output_ids, out_names)):
        if name in in_names and syms[i] is None or (name in in_names and syms[i].name != name):
            out_names[k] = name = b.unique(f"{name}_output")   # an output named as a different input
        b.reserve(name)

    nodes = model._nodes
    plan = _fold_plan(nodes, set(model._output_ids)) if fold_batchnorm else {}
    folds = {k: nodes[j][0] for k, j in plan.items()}
    absorbed = set(plan.values())
    cx = _Context(b, folds)
    for k, (layer, ins, out) in enumerate(nodes):
        x = [syms[i] for i in ins]
        if k in absorbed:   # folded into the conv before it: its output is the conv's
            syms[out] = x[0]
            continue
        handler = handlers.lookup(layer)
        if handler is None:
            raise ExportError(f"Cannot export {handlers.describe(layer)} to ONNX: fastnn has no ONNX exporter for "
                              f"{type(layer).__name__}. Register one with fastnn.onnx.layers.handles, or rebuild "
                              f"the model without this layer.")
        cx.current = k
        cx.mask_in = [masks[i] for i in ins]
        cx.mask_out = _UNSET
        in_shape = x[0].shape if len(x) == 1 else [t.shape for t in x]
        out_shape = layer.compute_output_shape(in_shape)
        res = handler(cx, layer, x)
        outs = out if isinstance(out, tuple) else (out,)
        res_list = res if isinstance(res, list) else [res]
        shapes = out_shape if isinstance(out, tuple) else [out_shape]
        mask_out = cx.mask_out
        if mask_out is _UNSET:
            mask_out = cx.mask_in[0] if len(cx.mask_in) == 1 and getattr(layer, "supports_masking", False) else None
        for j, (o, r, shape) in enumerate(zip(outs, res_list, shapes)):
            if isinstance(r, Sym):
                syms[o] = r
            else:
                syms[o] = Sym(r[0], shape, r[1])
            masks[o] = mask_out[j] if isinstance(mask_out, list) else mask_out

    # outputs: Keras's layout, named after the model's outputs
    graph_outputs = []
    renames = {}
    produced = {o for node in b.nodes for o in node.output}
    for i, name in zip(model._output_ids, out_names):
        t = syms[i]
        v = b.last(t)
        if v == name:   # a model input returned as an output: the graph output is the input
            pass
        elif v in produced and v not in renames and v not in renames.values():
            renames[v] = name
        else:
            b.nodes.append(helper.make_node("Identity", [renames.get(v, v)], [name], name=b.unique(f"{name}/Identity")))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, _dims(t.shape, name)))
    if renames:
        for node in b.nodes:
            node.input[:] = [renames.get(v, v) for v in node.input]
            node.output[:] = [renames.get(v, v) for v in node.output]

    graph = helper.make_graph(b.nodes, model.name, graph_inputs, graph_outputs, b.initializers)
    # the oldest IR version that carries this opset, so older runtimes read the file too
    proto = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)],
                                          producer_name="fastnn", producer_version=_version())
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, filepath, opset=DEFAULT_OPSET, fold_batchnorm=False, input_signature=None, verbose=False):
    """Write `model` as an ONNX file at `filepath`; returns the onnx.ModelProto.

    opset: the ONNX opset (>= 17; default 18). fold_batchnorm: fold each BatchNormalization
    that follows a convolution or Dense (with no activation between) into its weights.
    input_signature: optional shapes (one per input, batch axis first) that fix axes the model
    leaves free; by default the batch axis is dynamic and the rest is the model's input shape.
    The graph passes `onnx.checker.check_model(full_check=True)` before it is written.
    """
    onnx = _onnx()
    proto = to_onnx(model, opset=opset, fold_batchnorm=fold_batchnorm, input_signature=input_signature)
    filepath = os.fspath(filepath)
    tmp = filepath + ".tmp"
    onnx.save(proto, tmp)
    os.replace(tmp, filepath)
    if verbose:
        print(f"Saved artifact at '{filepath}'.")
    return proto


def _unique_names(names):
    out, seen = [], {}
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        seen.setdefault(n, 0)
        out.append(n)
    return out


def _signature(sig, shapes):
    sig = list(sig) if isinstance(sig, (list, tuple)) and sig and not isinstance(sig[0], (int, type(None))) \
        else [sig]
    if len(sig) != len(shapes):
        raise ValueError(f"ONNX export: input_signature has {len(sig)} entries; the model has {len(shapes)} inputs.")
    out = []
    for s, model_shape in zip(sig, shapes):
        s = tuple(getattr(s, "shape", s))
        if len(s) != len(model_shape) or any(m is not None and d is not None and d != m
                                              for d, m in zip(s[1:], model_shape[1:])):
            raise ValueError(f"ONNX export: input_signature shape {s} does not fit the model input shape "
                             f"{model_shape}.")
        out.append(tuple(m if d is None else int(d) for d, m in zip(s, model_shape)))
    return out


def _version():
    from fastnn import __version__
    return __version__
