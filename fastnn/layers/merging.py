"""Merging layers (Keras 3's keras.layers.merging): several inputs, one output.

Add, Subtract, Multiply, Average, Maximum, Minimum (element-wise; axes of size 1 broadcast, as
in Keras: a (N, 1, 1, C) excitation times an (N, H, W, C) feature map),
Concatenate(axis) and Dot(axes, normalize), over fastnn.kernels.merge. They follow the
multi-input protocol of docs/layers.md: `forward` receives a list of arrays, `backward`
returns a list with one gradient per input.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn import kernels as K
from fastnn.layers.base import Layer, _is_list_of_shapes, shape_str


class _Merge(Layer):
    """Base of the element-wise merging layers: `op` names the fastnn.kernels.merge op."""

    op = "add"
    _num_inputs = None
    _min_inputs, _max_inputs = 1, None
    supports_masking = True

    def _check_shapes(self, input_shape):
        cls = type(self).__name__
        if not _is_list_of_shapes(input_shape):
            raise ValueError(f"{cls} '{self.name}' must be called on a list of tensors; received one input of "
                             f"shape {shape_str(tuple(input_shape))}.")
        n = len(input_shape)
        if n < self._min_inputs or (self._max_inputs is not None and n > self._max_inputs):
            want = self._min_inputs if self._max_inputs == self._min_inputs else f"at least {self._min_inputs}"
            raise ValueError(f"{cls} '{self.name}' should be called on {want} inputs; received {n}.")
        return [tuple(s) for s in input_shape]

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        out = [None]
        for j in range(1, len(shapes[0])):
            if any(len(s) != len(shapes[0]) for s in shapes):
                break
            col = [s[j] for s in shapes]
            sizes = {d for d in col if d not in (None, 1)}
            if len(sizes) > 1:
                break
            out.append(sizes.pop() if sizes else (None if None in col else 1))
        else:
            return tuple(out)
        raise ValueError(f"{type(self).__name__} '{self.name}': inputs must have the same shape, or size 1 on the "
                         f"axes where they differ (broadcast); received {', '.join(shape_str(t) for t in shapes)}.")

    def compute_mask(self, inputs, mask):
        """Keras: the OR of the inputs' masks, None unless every input has one."""
        if not isinstance(mask, list) or any(m is None for m in mask):
            return None
        out = np.asarray(mask[0], bool)
        for m in mask[1:]:
            out = np.logical_or(out, m)
        return out

    def forward(self, xs, training=False):
        same = all(x.shape == xs[0].shape for x in xs)
        shape = xs[0].shape if same else K.merge.broadcast_shape([x.shape for x in xs])
        y = self._buffer("y", shape)
        y = K.merge.elementwise(self.op, xs, out=y)
        # a same-shape sum's backward hands dy on and reads nothing else: keeping no reference
        # to the inputs and the output lets the model's memory plan reuse their memory once
        # the next layers have read them (fastnn.models.memplan)
        self._n_inputs = len(xs)
        self._xs, self._y = (None, None) if self.op == "add" and same else (xs, y)
        return y

    def backward(self, dy):
        if self._xs is None:    # a same-shape sum
            return [dy] * self._n_inputs
        same = all(x.shape == dy.shape for x in self._xs)
        dxs = [self._buffer(f"dx{i}", x.shape) for i, x in enumerate(self._xs)]
        work = None if same else self._buffer("work", dy.shape)
        return K.merge.elementwise_backward(self.op, self._xs, self._y, dy, dxs=dxs, work=work)


class Add(_Merge):
    """Element-wise sum of several inputs (same shape, or 1 where they differ)."""
    op = "add"


class Subtract(_Merge):
    """inputs[0] - inputs[1]."""
    op = "subtract"
    _min_inputs = _max_inputs = 2


class Multiply(_Merge):
    """Element-wise product of several inputs (same shape, or 1 where they differ)."""
    op = "multiply"


class Average(_Merge):
    """Element-wise mean of several same-shape inputs."""
    op = "average"


class Maximum(_Merge):
    """Element-wise maximum (the gradient goes to the earliest input holding it)."""
    op = "maximum"


class Minimum(_Merge):
    """Element-wise minimum (the gradient goes to the earliest input holding it)."""
    op = "minimum"


class Concatenate(_Merge):
    """Joins the inputs along `axis` (default -1, the channels)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"Concatenate: axis must be an int; received {axis!r}.")
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        nd = len(shapes[0])
        if not -nd <= self.axis < nd or self.axis % nd == 0:
            raise ValueError(f"Concatenate '{self.name}': axis={self.axis} is out of range or the batch axis for "
                             f"inputs of rank {nd}.")
        ax = self.axis % nd
        for s in shapes:
            if len(s) != nd or any(a is not None and b is not None and a != b
                                   for j, (a, b) in enumerate(zip(s, shapes[0])) if j not in (0, ax)):
                raise ValueError(f"Concatenate '{self.name}' requires inputs with matching shapes except for the "
                                 f"concatenation axis {self.axis}; received "
                                 f"{', '.join(shape_str(t) for t in shapes)}.")
        out = list(shapes[0])
        out[ax] = None if any(s[ax] is None for s in shapes) else sum(s[ax] for s in shapes)
        return tuple(out)

    def compute_mask(self, inputs, mask):
        """Keras: each input's mask (all True where it has none, broadcast over its last axis),
        concatenated along `axis`, then any() over the last axis."""
        if not isinstance(mask, list) or all(m is None for m in mask):
            return None
        parts = []
        for x, m in zip(inputs, mask):
            if m is None:
                parts.append(np.ones(x.shape, bool))
            elif np.ndim(m) < x.ndim:
                parts.append(np.broadcast_to(np.asarray(m, bool)[..., None], x.shape))
            else:
                parts.append(np.asarray(m, bool))
        return np.concatenate(parts, axis=self.axis).any(axis=-1)

    def forward(self, xs, training=False):
        shape = list(xs[0].shape)
        ax = self.axis % len(shape)
        self._sizes = [x.shape[ax] for x in xs]
        shape[ax] = sum(self._sizes)
        return K.merge.concatenate(xs, ax, out=self._buffer("y", shape))

    def backward(self, dy):
        ax = self.axis % dy.ndim
        dxs = []
        for i, s in enumerate(self._sizes):
            shape = list(dy.shape)
            shape[ax] = s
            dxs.append(self._buffer(f"dx{i}", shape))
        return K.merge.concatenate_backward(dy, self._sizes, ax, dxs=dxs)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Per-sample dot product of two inputs along `axes` (an int or a pair); with
    normalize=True the inputs are L2-normalised first (the cosine similarity)."""

    _min_inputs = _max_inputs = 2

    def compute_mask(self, inputs, mask):
        return None          # Keras: the dot product drops the mask

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
            self.axes = int(axes)
        elif isinstance(axes, (list, tuple)) and len(axes) == 2 and all(isinstance(a, numbers.Integral) for a in axes):
            self.axes = tuple(int(a) for a in axes)
        else:
            raise TypeError(f"Dot: axes must be an int or a pair of ints; received {axes!r}.")
        self.normalize = bool(normalize)

    def _pair(self, ndim):
        a = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        return tuple(x % ndim for x in a)

    def compute_output_shape(self, input_shape):
        s1, s2 = (list(s) for s in self._check_shapes(input_shape))
        if len(s1) != len(s2) or len(s1) not in (2, 3):
            raise ValueError(f"Dot '{self.name}': fastnn supports two inputs of rank 2 or 3 (batch first); "
                             f"received {shape_str(tuple(s1))} and {shape_str(tuple(s2))}.")
        p, q = self._pair(len(s1))
        if s1[p] is not None and s2[q] is not None and s1[p] != s2[q]:
            raise ValueError(f"Dot '{self.name}': incompatible input shapes {shape_str(tuple(s1))} and "
                             f"{shape_str(tuple(s2))} for axes={self.axes}: dimension {s1[p]} != {s2[q]}.")
        s1.pop(p)
        s2.pop(q)
        s2.pop(0)
        out = s1 + s2
        return tuple(out + [1] if len(out) == 1 else out)

    def forward(self, xs, training=False):
        a, b = xs
        p, q = self._pair(a.ndim)
        if self.normalize:
            a, self._ia = K.merge.l2_normalize(a, p, out=self._buffer("na", a.shape),
                                               inv_norm=self._buffer("ia", _keep(a.shape, p)))
            b, self._ib = K.merge.l2_normalize(b, q, out=self._buffer("nb", b.shape),
                                               inv_norm=self._buffer("ib", _keep(b.shape, q)))
        self._a, self._b = a, b
        shape = self.compute_output_shape([a.shape, b.shape])
        return K.merge.batch_dot(a, b, (p, q), out=self._buffer("y", shape))

    def backward(self, dy):
        a, b = self._a, self._b
        p, q = self._pair(a.ndim)
        da, db = K.merge.batch_dot_backward(a, b, dy, (p, q), da=self._buffer("da", a.shape),
                                            db=self._buffer("db", b.shape))
        if self.normalize:
            da = K.merge.l2_normalize_backward(a, self._ia, da, p, dx=self._buffer("dxa", a.shape))
            db = K.merge.l2_normalize_backward(b, self._ib, db, q, dx=self._buffer("dxb", b.shape))
        return [da, db]

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _keep(shape, axis):
    return tuple(1 if j == axis else d for j, d in enumerate(shape))


# Keras's functional forms: keras.layers.add([a, b]) is Add()([a, b]), and so on
def add(inputs, **kwargs):
    """Add()(inputs)."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Subtract()(inputs)."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Multiply()(inputs)."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Average()(inputs)."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Maximum()(inputs)."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Minimum()(inputs)."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Concatenate(axis)(inputs)."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    """Dot(axes, normalize)(inputs)."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
