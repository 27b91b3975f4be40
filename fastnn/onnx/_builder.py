"""The ONNX graph under construction: nodes, weights as initializers, and where each tensor's
channels are.

fastnn computes channels-last (NHWC / NLC), ONNX's Conv, pooling and Resize ops channels-first
(NCHW / NCL). Each tensor of the exported graph carries a layout: "last" (Keras's axis order) or
"first" (the channel axis moved to position 1). A convolution or pooling takes "first" and
returns "first"; elementwise layers, batch norm, padding, cropping, upsampling, concatenation
and softmax work in whichever layout their input has (their axes are mapped); only layers that
need Keras's axis order (Flatten, Dense on rank > 2, Reshape, Permute, ...) ask for "last".
`Builder.get(t, layout)` inserts one Transpose per tensor and layout, on demand, and reuses it,
so a conv net has one Transpose after its input and one before its Flatten, however deep it is.
"""
from __future__ import annotations

import numpy as np


class ExportError(ValueError):
    """A model or layer that cannot be written as ONNX; the message names the layer and why."""


class Sym:
    """One tensor of the exported graph: its ONNX name, its shape in Keras's axis order (batch
    None) and the layout its values are stored in ("last" or "first")."""

    __slots__ = ("name", "shape", "layout", "dtype")

    def __init__(self, name, shape, layout="last", dtype="float32"):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype
        self.layout = "last" if len(self.shape) <= 2 else layout

    @property
    def rank(self):
        return len(self.shape)

    def __repr__(self):
        return f"Sym({self.name!r}, {self.shape}, {self.layout})"


def to_first(rank):
    """Axis permutation from channels-last to channels-first for a tensor of this rank."""
    return (0, rank - 1, *range(1, rank - 1))


def to_last(rank):
    return (0, *range(2, rank), 1)


def axis_in(layout, rank, axis):
    """The stored position of Keras axis `axis` (negative allowed) in a tensor of this layout."""
    axis %= rank
    if layout == "last" or rank <= 2:
        return axis
    return to_first(rank).index(axis)


def per_channel(values, layout, rank):
    """A (C,) array shaped to broadcast over the channel axis of a tensor in `layout`."""
    values = np.asarray(values, np.float32)
    if layout == "first" and rank > 2:
        return values.reshape(values.shape[0], *([1] * (rank - 2)))
    return values


class Builder:
    """Collects nodes and initializers with unique names; helpers for the ops handlers use."""

    def __init__(self, opset):
        from onnx import helper
        self.helper = helper
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._names = set()
        self._consts = {}      # key -> initializer name (weights shared by several calls)
        self._layouts = {}     # (name, layout) -> name of the transposed copy

    # ---- names ----------------------------------------------------------------------------
    def unique(self, base):
        base = base.replace(":", "_")
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def reserve(self, name):
        self._names.add(name)

    # ---- nodes and constants ----------------------------------------------------------------
    def node(self, op, inputs, name, n_out=1, domain=None, **attrs):
        """Add node `op` on input names (None or "" = an omitted optional input); returns its
        output name (or list of names for n_out > 1)."""
        outs = [self.unique(f"{name}/{op}" if n_out == 1 else f"{name}/{op}:{k}") for k in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op, [i or "" for i in inputs], outs,
                                                name=self.unique(f"{name}/{op}#node"), domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, name, key=None, dtype=np.float32):
        """An initializer holding `value`; the same `key` returns the same initializer."""
        from onnx import numpy_helper
        if key is not None and key in self._consts:
            return self._consts[key]
        arr = np.ascontiguousarray(value, dtype=dtype)
        init_name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(arr, init_name))
        if key is not None:
            self._consts[key] = init_name
        return init_name

    def ints(self, values, name):
        """An int64 initializer (shapes, axes, pads), shared between equal values."""
        values = tuple(int(v) for v in values)
        return self.const(np.array(values, np.int64), f"{name}", key=("i64", values), dtype=np.int64)

    def scalar(self, value, name):
        return self.const(np.array(value, np.float32), name, key=("f32", float(np.float32(value))))

    def weight(self, array, name, transform=None, tag=""):
        """A layer weight as an initializer, after `transform` (a layout change); a weight that
        several calls of a shared layer read is written once (keyed by the array and the tag)."""
        key = ("w", id(array), tag)
        if key in self._consts:
            return self._consts[key]
        value = np.asarray(array)
        if transform is not None:
            value = transform(value)
        out = self.const(value, name, dtype=np.float32)
        self._consts[key] = out
        self._keep = getattr(self, "_keep", [])
        self._keep.append(array)      # ids stay unique while the export runs
        return out

    # ---- layouts -----------------------------------------------------------------------------
    def get(self, t: Sym, layout):
        """The name of tensor t stored in `layout` (a Transpose, once per tensor and layout)."""
        if t.layout == layout or t.rank <= 2:
            return t.name
        key = (t.name, layout)
        if key not in self._layouts:
            perm = to_first(t.rank) if layout == "first" else to_last(t.rank)
            self._layouts[key] = self.node("Transpose", [t.name], t.name.split("/")[0] + f"/to_{layout}",
                                           perm=list(perm))
        return self._layouts[key]

    def last(self, t: Sym):
        return self.get(t, "last")

    def first(self, t: Sym):
        return self.get(t, "first")

    # ---- op helpers whose spelling depends on the opset ----------------------------------
    def reduce(self, op, x, axes, name, keepdims=1):
        """ReduceMean/ReduceMax/ReduceSum/... over `axes` (attribute before opset 18, input after;
        ReduceSum takes an input since 13)."""
        if self.opset >= 18 or op == "ReduceSum":
            return self.node(op, [x, self.ints(axes, "axes")], name, keepdims=keepdims)
        return self.node(op, [x], name, axes=list(axes), keepdims=keepdims)
