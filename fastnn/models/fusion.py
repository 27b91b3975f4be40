"""The inference-fusion planner: which runs of a model's graph execute as one kernel call.

Two plans, both made once per graph from its node list `[(layer, input ids, output id)]` (in
execution order) and the ids of the model outputs:

- `bn_relu_pairs`: BatchNormalization -> plain ReLU, the norm's output read by that ReLU only.
  In training and inference the norm applies the ReLU in its own output pass and masks dy in
  its backward; the ReLU node stays in the graph (summary, profile) as a pass-through.
- `inference_chains`: Conv2D [-> BatchNormalization] [-> ReLU] [-> MaxPooling2D 2x2] runs that
  `run_inference` executes as one `fastnn.kernels.conv.conv2d(affine=, activation=, pool=)` call
  when the model predicts or evaluates (training=False). Bit-identical to the layers one by one.

A fused run never crosses a tensor that something else reads: every tensor inside it has its
one reader in the run, is no model output, and no layer of the run has an activity regularizer
(evaluate reads the outputs of those).
"""
from __future__ import annotations

from fastnn.layers.activation import ReLU
from fastnn.layers.core import Activation
from fastnn.layers.normalization import BatchNormalization


def plain_relu(layer) -> bool:
    """A ReLU layer or Activation('relu') without max_value/negative_slope/threshold."""
    if type(layer) is ReLU:
        return not layer._params()
    return type(layer) is Activation and layer._act_name == "relu" and not layer._act_params


def pool_2x2(layer) -> bool:
    """A MaxPooling2D with a 2x2 window, stride 2 and 'valid' padding."""
    from fastnn.layers.pooling import MaxPooling2D

    return (type(layer) is MaxPooling2D and tuple(layer.pool_size) == (2, 2)
            and tuple(layer.strides) == (2, 2) and layer.padding == "valid")


def _readers(nodes) -> dict:
    readers: dict = {}
    for layer, ins, _ in nodes:
        for i in ins:
            readers.setdefault(i, []).append(layer)
    return readers


def bn_relu_pairs(nodes, output_ids) -> list:
    """(BatchNormalization, ReLU) node pairs whose norm output feeds nothing but that ReLU."""
    readers = _readers(nodes)
    pairs = []
    for layer, _, out in nodes:
        if isinstance(out, list):        # a layer of several outputs (return_state)
            continue
        r = readers.get(out, ())
        if (type(layer) is BatchNormalization and out not in output_ids and len(r) == 1
                and plain_relu(r[0])):
            pairs.append((layer, r[0]))
    return pairs


def inference_chains(nodes, output_ids) -> dict:
    """Conv2D [-> BatchNormalization] [-> ReLU] [-> MaxPooling2D 2x2] runs that inference runs
    as one kernel call: {index of the conv node: (index of the last node, bn, relu, pool)}.

    The conv applies the norm's moving-statistics affine map, the ReLU and the pool to each
    chunk of its output while it is in cache (fastnn.kernels.conv.conv2d(affine=, pool=)) and
    writes only the last tensor.
    """
    from fastnn.layers.convolutional import BaseConv

    readers = _readers(nodes)
    index = {id(layer): k for k, (layer, _, _) in enumerate(nodes)}

    def only_reader(k):
        layer, _, out = nodes[k]
        if isinstance(out, list):
            return None
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
        if not relu and nxt is not None and plain_relu(nodes[nxt][0]):
            relu, end = True, nxt
            nxt = only_reader(end)
        if relu and nxt is not None and pool_2x2(nodes[nxt][0]):
            pool, end = True, nxt
        if end > k:
            chains[k] = (end, bn, relu, pool)
    return chains


def run_inference(nodes, chains, vals):
    """Inference forward over `nodes` with the runs of `chains` as one kernel call each."""
    k = 0
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
