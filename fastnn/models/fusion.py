"""The inference-fusion planner: which runs of a model's graph execute as one kernel call.

Two plans, both made once per graph from its node list `[(layer, input ids, output id)]` (in
execution order) and the ids of the model outputs:

- `bn_relu_pairs`: BatchNormalization -> plain ReLU, the norm's output read by that ReLU only.
  In training and inference the norm applies the ReLU in its own output pass and masks dy in
  its backward; the ReLU node stays in the graph (summary, profile) as a pass-through.
- `inference_chains`: Conv2D [-> BatchNormalization] [-> ReLU] [-> MaxPooling2D 2x2] runs,
  residual ends Conv2D [-> BatchNormalization] -> Add [-> ReLU], and DepthwiseConv2D
  [-> BatchNormalization] [-> ReLU] (MobileNet's blocks), that `run_inference` executes as one
  `fastnn.kernels.conv.conv2d(affine=, activation=, pool=)` or
  `fastnn.kernels.depthwise.depthwise_conv2d(affine=, activation=)` call (plus an in-place add
  and activation) when the model predicts or evaluates (training=False). Bit-identical to the
  layers one by one.

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
        r = readers.get(out, ())
        if (type(layer) is BatchNormalization and out not in output_ids and len(r) == 1
                and plain_relu(r[0])):
            pairs.append((layer, r[0]))
    return pairs


def relu_act(layer):
    """(name, params) of the activation a ReLU layer or Activation('relu' | 'relu6') applies,
    for the conv kernel's epilogue; None for any other layer."""
    if type(layer) is ReLU:
        return "relu", layer._params()
    if type(layer) is Activation and layer._act_name in ("relu", "relu6"):
        return layer._act_name, dict(layer._act_params)
    return None


def inference_chains(nodes, output_ids) -> dict:
    """Runs that inference executes as one conv kernel call (and in-place passes after it):

        Conv2D [-> BatchNormalization] [-> ReLU (any max_value / slope / threshold)] [-> MaxPool 2x2]
        Conv2D [-> BatchNormalization] -> Add(shortcut, .) [-> ReLU]     (a residual block's end)

    {index of the conv node: (index of the last node, bn, act, pool, shortcut, members)} with act
    None or (name, params), pool only after a plain ReLU, shortcut None or the tensor id added in,
    members the node indices the run replaces. The conv applies the norm's moving-statistics
    affine map, the activation and the pool to each chunk of its output while it is in cache
    (fastnn.kernels.conv.conv2d(affine=, activation=, pool=)); a residual Add then adds the
    shortcut into that output in place, and its ReLU runs in place: the same float operations
    in the same order as the layers one by one (a + b == b + a in IEEE arithmetic), so the
    predictions are bit-identical.
    """
    from fastnn.layers.convolutional import BaseConv, BaseDepthwiseConv
    from fastnn.layers.merging import Add

    readers, producer = {}, {}
    for k, (layer, ins, out) in enumerate(nodes):
        for i in ins:
            readers.setdefault(i, []).append(k)
        for o in (out if isinstance(out, tuple) else (out,)):
            producer[o] = k

    def only_reader(k):
        layer, _, out = nodes[k]
        if isinstance(out, tuple):
            return None
        r = readers.get(out, ())
        if out in output_ids or len(r) != 1 or nodes[r[0]][0].activity_regularizer is not None:
            return None
        return r[0]

    chains = {}
    for k, (layer, ins, out) in enumerate(nodes):
        depthwise = isinstance(layer, BaseDepthwiseConv)   # [-> BN] [-> ReLU]: no add, no pool
        if (not (isinstance(layer, BaseConv) or depthwise) or layer.rank != 2
                or layer.activity_regularizer is not None
                or layer._fused_output or layer._act_name not in ("linear", "relu", "relu6")):
            continue
        act = None if layer._act_name == "linear" else (layer._act_name, dict(layer._act_params))
        end, bn, pool, shortcut, members = k, None, False, None, [k]
        nxt = only_reader(end)
        if act is None and nxt is not None and type(nodes[nxt][0]) is BatchNormalization:
            bn, end = nodes[nxt][0], nxt
            members.append(end)
            nxt = only_reader(end)
        if (not depthwise and act is None and nxt is not None and type(nodes[nxt][0]) is Add
                and len(nodes[nxt][1]) == 2):
            a, b = nodes[nxt][1]
            other = b if a == nodes[end][2] else a
            # the shortcut must exist when the conv runs, and be a different tensor
            if other != nodes[end][2] and producer.get(other, -1) < k:
                shortcut, end = other, nxt
                members.append(end)
                nxt = only_reader(end)
        if act is None and nxt is not None and relu_act(nodes[nxt][0]) is not None:
            act, end = relu_act(nodes[nxt][0]), nxt
            members.append(end)
            nxt = only_reader(end)
        if (not depthwise and shortcut is None and act is not None and act == ("relu", {})
                and nxt is not None and pool_2x2(nodes[nxt][0])):
            pool, end = True, nxt
            members.append(end)
        if end > k:
            chains[k] = (end, bn, act, pool, shortcut, frozenset(members[1:]))
    return chains


def run_inference(nodes, chains, vals, hook=None):
    """Inference forward over `nodes` with the runs of `chains` as one kernel call each
    (`hook.forward_step` after each step: a memory plan's recording)."""
    skip = _skipped(chains)
    for k, (layer, ins, out) in enumerate(nodes):
        if k in skip:
            continue
        chain = chains.get(k)
        if chain is None:
            y = layer.forward(vals[ins[0]] if len(ins) == 1 else [vals[i] for i in ins], False)
            if type(out) is int:
                vals[out] = y
            else:
                for o, v in zip(out, y):
                    vals[o] = v
            if hook is not None:
                hook.forward_step(k, layer, out, y, False)
            continue
        end, bn, act, pool, shortcut, _ = chain
        out = nodes[end][2]
        vals[out] = y = layer.forward_inference(vals[ins[0]], bn, act, pool, shortcut=(
            None if shortcut is None else vals[shortcut]))
        if hook is not None:
            hook.forward_step(k, layer, out, y, False)


def _skipped(chains):
    """The node indices that chains replace (a few small frozensets joined per forward pass)."""
    if not chains:
        return ()
    return frozenset().union(*(chain[5] for chain in chains.values()))
