"""Convolution layers over one base taking the rank: Conv1D (N, L, C) and Conv2D (N, H, W, C).

Kernels are in Keras layout: Conv1D (k, in, filters), Conv2D (kh, kw, in, filters). The layer
calls fastnn.kernels.conv (im2col + one GEMM per batch chunk), then the activation kernel.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn import kernels as K
from fastnn.kernels._geometry import resolve_padding
from fastnn.layers.base import Layer, serialize_obj, shape_str
from fastnn.layers.core import _ActivationMixin


def normalize_tuple(value, n, name, layer):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        value = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{layer}: {name} must be an int or a tuple of {n} ints; received {value!r}.") from None
    if len(value) != n or any(v <= 0 for v in value):
        raise ValueError(f"{layer}: {name} must be a positive int or a tuple of {n} positive ints; "
                         f"received {value!r}.")
    return value


def normalize_padding(padding, layer, allowed=("valid", "same")):
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise ValueError(f"{layer}: padding must be one of {allowed}; received padding={padding!r}.")
    return padding.lower()


class BaseConv(_ActivationMixin, Layer):
    """N-D convolution (rank 1 or 2), channels_last, optional bias and activation."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.rank = rank
        if isinstance(filters, bool) or not isinstance(filters, numbers.Integral) or filters <= 0:
            raise ValueError(f"{cls}: filters must be a positive int; received filters={filters!r}.")
        self.filters = int(filters)
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, rank, "strides", cls)
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", cls)
        self.padding = normalize_padding(padding, cls, ("valid", "same", "causal") if rank == 1 else ("valid", "same"))
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{cls}: fastnn is channels_last only; received data_format={data_format!r}.")
        if groups != 1:
            raise ValueError(f"{cls}: groups={groups!r} is not supported by fastnn yet (use groups=1).")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{cls}: strides > 1 together with dilation_rate > 1 is not supported (as in Keras).")
        self.groups = 1
        self._init_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def build(self, input_shape):
        cls = type(self).__name__
        if len(input_shape) != self.rank + 2 or input_shape[-1] is None:
            raise ValueError(f"{cls} '{self.name}' expects inputs of rank {self.rank + 2} "
                             f"(batch, {'length' if self.rank == 1 else 'height, width'}, channels) with known "
                             f"channels; received shape {shape_str(input_shape)}.")
        self.kernel = self.add_weight((*self.kernel_size, input_shape[-1], self.filters), self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        spatial = []
        for n, k, s, d in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate):
            if n is None:
                spatial.append(None)
                continue
            spatial.append(resolve_padding(n, k, s, d, self.padding, "padding", f"{type(self).__name__} '{self.name}'")[2])
        return (input_shape[0], *spatial, self.filters)

    def _conv_args(self):
        if self.rank == 1:
            return self.strides[0], self.padding, self.dilation_rate[0]
        return self.strides, self.padding, self.dilation_rate

    def forward(self, x, training=False):
        out_shape = self.compute_output_shape((x.shape[0], *x.shape[1:]))
        z = self._buffer("z", out_shape)
        fn = K.conv.conv1d if self.rank == 1 else K.conv.conv2d
        fuse = self._act_in_place()   # ReLU in the conv's output pass, chunk by chunk in cache
        fn(x, self.kernel.value, None if self.bias is None else self.bias.value, *self._conv_args(), out=z,
           activation="relu" if fuse else "linear")
        self._x, self._z = x, z
        self._relu_fused = fuse
        self._y = z if fuse else self._act_forward(z)
        return self._y

    def forward_inference(self, x, bn=None, act=None, pool=False, shortcut=None):
        """Inference output of this conv followed by `bn` (a BatchNormalization, in inference
        mode), an activation `act` ((name, params), e.g. ("relu", {"max_value": 6.0}); True
        means a plain ReLU) and a 2x2 max pool, each optional, in one kernel call; with a
        `shortcut` array, the conv (+ bn) output plus shortcut, then the activation, both in
        place (a residual block's Add -> ReLU). The model's fused runs: bit-identical to the
        layers one by one. Keeps nothing for a backward."""
        if act is True:
            act = ("relu", {})
        affine = None
        if bn is not None:
            c = self.filters
            scale, shift = K.norm.inference_fold(
                None if bn.gamma is None else bn.gamma.value, None if bn.beta is None else bn.beta.value,
                bn.moving_variance.value, bn.epsilon, scale=self._buffer("bn_scale", (c,)),
                shift=self._buffer("bn_shift", (c,)))
            affine = (bn.moving_mean.value, scale, shift)
        shape = self.compute_output_shape(x.shape)
        if pool:
            shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
        y = self._buffer("y_inference", shape)
        name, params = act if act and shortcut is None else ("linear", {})
        y = K.conv.conv2d(x, self.kernel.value, None if self.bias is None else self.bias.value,
                          *self._conv_args(), out=y, activation=name, affine=affine,
                          pool=(2, 2) if pool else None, **params)
        if shortcut is not None:
            np.add(y, shortcut, out=y)
            if act:
                K.activation.apply(act[0], y, out=y, **act[1])
        return y

    def backward(self, dy):
        if self._relu_fused:   # the ReLU gradient (y > 0) masks dy chunk by chunk inside the kernel
            dz, y = dy, self._y
        else:
            dz, y = self._act_backward(self._z, self._y, dy), None
        dx = self._buffer("dx", self._x.shape) if self._need_dx else None
        db = self.bias.grad if self.bias is not None else self._buffer("db_scratch", (self.filters,))
        fn = K.conv.conv1d_backward if self.rank == 1 else K.conv.conv2d_backward
        dx, _, _ = fn(self._x, self.kernel.value, dz, *self._conv_args(), need_dx=self._need_dx,
                      dx=dx, dw=self.kernel.grad, db=db, y=y)
        return dx

    @property
    def logits(self):
        return self._z

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                 padding=self.padding, data_format="channels_last", dilation_rate=list(self.dilation_rate),
                 groups=1, activation=self._act_name, use_bias=self.use_bias,
                 kernel_initializer=serialize_obj(self.kernel_initializer),
                 bias_initializer=serialize_obj(self.bias_initializer),
                 kernel_regularizer=serialize_obj(self.kernel_regularizer),
                 bias_regularizer=serialize_obj(self.bias_regularizer),
                 kernel_constraint=serialize_obj(self.kernel_constraint),
                 bias_constraint=serialize_obj(self.bias_constraint))
        return c


class Conv1D(BaseConv):
    """1-D convolution over (N, L, C) with kernel (k, C, filters); padding valid, same or causal."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(1, filters, kernel_size, **kwargs)


class Conv2D(BaseConv):
    """2-D convolution over NHWC with kernel (kh, kw, C, filters) -> (N, OH, OW, filters)."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(2, filters, kernel_size, **kwargs)


Convolution1D, Convolution2D = Conv1D, Conv2D
