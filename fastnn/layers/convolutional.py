"""Convolution layers, each family over one base taking the rank (1: (N, L, C), 2: (N, H, W, C)).

Kernels are in Keras layout:
  Conv1D / Conv2D                      (k, in / groups, filters) / (kh, kw, in / groups, filters)
  DepthwiseConv1D / DepthwiseConv2D    (k, in, depth_multiplier) / (kh, kw, in, depth_multiplier)
  SeparableConv1D / SeparableConv2D    depthwise_kernel as above, pointwise_kernel (1, [1,] in*M,
                                       filters), bias (filters,)
  Conv1DTranspose / Conv2DTranspose    (k, filters, in) / (kh, kw, filters, in)
Conv calls fastnn.kernels.conv, the depthwise layers fastnn.kernels.depthwise (a direct kernel,
not im2col), separable ones the depthwise kernel then a 1x1 conv, transposed ones
conv.conv{1,2}d_transpose; a plain ReLU rides in the kernel's output pass where it can.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn import kernels as K
from fastnn.kernels._geometry import conv_transpose_padding, resolve_padding
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


def _positive_int(value, name, layer):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive int; received {name}={value!r}.")
    return int(value)


def _window_args(layer, rank, kernel_size, strides, padding, data_format, dilation_rate, causal=False):
    """Set layer.rank, kernel_size, strides, dilation_rate, padding (Keras's checks, channels_last)."""
    cls = type(layer).__name__
    layer.rank = rank
    layer.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size", cls)
    layer.strides = normalize_tuple(strides, rank, "strides", cls)
    layer.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", cls)
    layer.padding = normalize_padding(padding, cls, ("valid", "same", "causal") if causal else ("valid", "same"))
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{cls}: fastnn is channels_last only; received data_format={data_format!r}.")


def _check_input(layer, input_shape):
    if len(input_shape) != layer.rank + 2 or input_shape[-1] is None:
        raise ValueError(f"{type(layer).__name__} '{layer.name}' expects inputs of rank {layer.rank + 2} "
                         f"(batch, {'length' if layer.rank == 1 else 'height, width'}, channels) with known "
                         f"channels; received shape {shape_str(input_shape)}.")


def _weight_args(layer, *weights):
    """{w_initializer, w_regularizer, w_constraint} of each named weight, serialized for get_config."""
    return {f"{w}_{kind}": serialize_obj(getattr(layer, f"{w}_{kind}"))
            for kind in ("initializer", "regularizer", "constraint") for w in weights}


def _conv_spatial(layer, input_shape):
    """The output's spatial sizes of a convolution window over input_shape (None stays None)."""
    fn = f"{type(layer).__name__} '{layer.name}'"
    return [None if n is None else resolve_padding(n, k, s, d, layer.padding, "padding", fn)[2]
            for n, k, s, d in zip(input_shape[1:-1], layer.kernel_size, layer.strides, layer.dilation_rate)]


def _conv_args(layer):
    """(strides, padding, dilation) as the rank's kernel functions take them."""
    if layer.rank == 1:
        return layer.strides[0], layer.padding, layer.dilation_rate[0]
    return layer.strides, layer.padding, layer.dilation_rate


class BaseConv(_ActivationMixin, Layer):
    """N-D convolution (rank 1 or 2), channels_last, optional bias and activation."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.filters = _positive_int(filters, "filters", cls)
        _window_args(self, rank, kernel_size, strides, padding, data_format, dilation_rate, causal=rank == 1)
        if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups <= 0:
            raise ValueError(f"{cls}: groups must be a positive int; received groups={groups!r}.")
        if self.filters % groups:
            raise ValueError(f"{cls}: filters must be divisible by groups (each group computes filters / groups "
                             f"of them); received filters={self.filters}, groups={groups}.")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{cls}: strides > 1 together with dilation_rate > 1 is not supported (as in Keras).")
        self.groups = int(groups)
        self._init_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def build(self, input_shape):
        _check_input(self, input_shape)
        if input_shape[-1] % self.groups:
            raise ValueError(f"{type(self).__name__} '{self.name}': the input channels ({input_shape[-1]}) must be divisible by "
                             f"groups={self.groups}.")
        self.kernel = self.add_weight((*self.kernel_size, input_shape[-1] // self.groups, self.filters),
                                      self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *_conv_spatial(self, input_shape), self.filters)

    def _conv_args(self):
        return _conv_args(self)

    def forward(self, x, training=False):
        out_shape = self.compute_output_shape((x.shape[0], *x.shape[1:]))
        z = self._buffer("z", out_shape)
        fn = K.conv.conv1d if self.rank == 1 else K.conv.conv2d
        fuse = self._act_in_place()   # ReLU in the conv's output pass, chunk by chunk in cache
        fn(x, self.kernel.value, None if self.bias is None else self.bias.value, *self._conv_args(), out=z,
           activation="relu" if fuse else "linear", groups=self.groups)
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
        affine = _bn_affine(self, bn, self.filters)
        shape = self.compute_output_shape(x.shape)
        if pool:
            shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
        y = self._buffer("y_inference", shape)
        name, params = act if act and shortcut is None else ("linear", {})
        y = K.conv.conv2d(x, self.kernel.value, None if self.bias is None else self.bias.value,
                          *self._conv_args(), out=y, activation=name, affine=affine,
                          pool=(2, 2) if pool else None, groups=self.groups, **params)
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
                      dx=dx, dw=self.kernel.grad, db=db, y=y, groups=self.groups)
        return dx

    @property
    def logits(self):
        return self._z

    def get_config(self):
        c = super().get_config()
        c.setdefault("activity_regularizer", None)    # Keras's conv configs always hold the key
        c.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                 padding=self.padding, data_format="channels_last", dilation_rate=list(self.dilation_rate),
                 groups=self.groups, activation=self._act_name, use_bias=self.use_bias,
                 **_weight_args(self, "kernel", "bias"))
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


# ---------------------------------------------------------------------------------------------
class _ReluFusedMixin:
    """Forward through a kernel that applies a plain ReLU in its output pass (activation="relu"),
    or any other activation after it; backward gives d/d(pre-activation)."""

    def _activate(self, run, out_shape):
        z = self._buffer("z", out_shape)
        fuse = self._act_in_place()
        run(z, "relu" if fuse else "linear")
        self._z, self._relu_fused = z, fuse
        self._y = z if fuse else self._act_forward(z)
        return self._y

    def _pre_activation_grad(self, dy):
        if self._relu_fused:     # relu'(z) from y = relu(z): y > 0
            return K.activation.grad("relu", self._y, self._y, dy, out=self._buffer("act_dz", dy.shape))
        return self._act_backward(self._z, self._y, dy)

    @property
    def logits(self):
        return self._z


def _bn_affine(layer, bn, c):
    """The (center, scale, shift) of an inference BatchNormalization `bn` over c channels that
    a fused conv run applies to its output (scale and shift in `layer`'s buffers), or None."""
    if bn is None:
        return None
    scale, shift = K.norm.inference_fold(
        None if bn.gamma is None else bn.gamma.value, None if bn.beta is None else bn.beta.value,
        bn.moving_variance.value, bn.epsilon, scale=layer._buffer("bn_scale", (c,)),
        shift=layer._buffer("bn_shift", (c,)))
    return bn.moving_mean.value, scale, shift


def _depthwise_fns(rank):
    D = K.depthwise
    return (D.depthwise_conv1d, D.depthwise_conv1d_backward) if rank == 1 else \
        (D.depthwise_conv2d, D.depthwise_conv2d_backward)


class BaseDepthwiseConv(_ReluFusedMixin, _ActivationMixin, Layer):
    """N-D depthwise convolution (rank 1 or 2), channels_last: each input channel convolved with
    its own depth_multiplier kernels; kernel (*kernel_size, C, depth_multiplier), bias (C*M,)."""

    def __init__(self, rank, depth_multiplier, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", cls)
        _window_args(self, rank, kernel_size, strides, padding, data_format, dilation_rate)
        self._init_activation(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer, self.bias_initializer = depthwise_initializer, bias_initializer
        self.depthwise_regularizer, self.bias_regularizer = depthwise_regularizer, bias_regularizer
        self.depthwise_constraint, self.bias_constraint = depthwise_constraint, bias_constraint

    def build(self, input_shape):
        _check_input(self, input_shape)
        c = input_shape[-1]
        self.kernel = self.add_weight((*self.kernel_size, c, self.depth_multiplier), self.depthwise_initializer,
                                      "kernel", regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self.bias = (self.add_weight((c * self.depth_multiplier,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (input_shape[0], *_conv_spatial(self, input_shape), None if c is None else c * self.depth_multiplier)

    def forward(self, x, training=False):
        fwd, _ = _depthwise_fns(self.rank)
        self._x = x
        b = None if self.bias is None else self.bias.value
        return self._activate(lambda z, act: fwd(x, self.kernel.value, b, *_conv_args(self), out=z, activation=act),
                              self.compute_output_shape(x.shape))

    def forward_inference(self, x, bn=None, act=None, pool=False, shortcut=None):
        """Inference output of this (2-D) depthwise conv followed by `bn` (a BatchNormalization,
        in inference mode) and an activation `act` ((name, params), True for a plain ReLU) in
        one kernel call (the model's fused runs, fastnn.models.fusion): bit-identical to the
        layers one by one. No pool or residual add here. Keeps nothing for a backward."""
        if self.rank != 2 or pool or shortcut is not None:
            raise ValueError(f"{type(self).__name__}.forward_inference: a 2-D depthwise conv fuses a "
                             f"batch norm and an activation only (no pool, no shortcut).")
        if act is True:
            act = ("relu", {})
        affine = _bn_affine(self, bn, self.kernel.shape[-2] * self.depth_multiplier)
        name, params = act if act else ("linear", {})
        y = self._buffer("y_inference", self.compute_output_shape(x.shape))
        return K.depthwise.depthwise_conv2d(x, self.kernel.value, None if self.bias is None else self.bias.value,
                                            *_conv_args(self), out=y, activation=name, affine=affine, **params)

    def backward(self, dy):
        _, bwd = _depthwise_fns(self.rank)
        dz = self._pre_activation_grad(dy)
        dx = self._buffer("dx", self._x.shape) if self._need_dx else None
        ce = self.kernel.shape[-2] * self.depth_multiplier
        db = self.bias.grad if self.bias is not None else self._buffer("db_scratch", (ce,))
        dx, _, _ = bwd(self._x, self.kernel.value, dz, *_conv_args(self), need_dx=self._need_dx, dx=dx,
                       dw=self.kernel.grad, db=db)
        return dx

    def get_config(self):
        c = super().get_config()
        c.setdefault("activity_regularizer", None)    # Keras's conv configs always hold the key
        c.update(depth_multiplier=self.depth_multiplier, kernel_size=list(self.kernel_size),
                 strides=list(self.strides), padding=self.padding, data_format="channels_last",
                 dilation_rate=list(self.dilation_rate), activation=self._act_name, use_bias=self.use_bias,
                 **_weight_args(self, "depthwise", "bias"))
        return c


class DepthwiseConv1D(BaseDepthwiseConv):
    """Depthwise 1-D convolution over (N, L, C), kernel (k, C, depth_multiplier) -> (N, OL, C*M)."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, **kwargs):
        super().__init__(1, depth_multiplier, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)


class DepthwiseConv2D(BaseDepthwiseConv):
    """Depthwise 2-D convolution over NHWC, kernel (kh, kw, C, depth_multiplier) -> (N, OH, OW, C*M)."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), **kwargs):
        super().__init__(2, depth_multiplier, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)


class BaseSeparableConv(_ReluFusedMixin, _ActivationMixin, Layer):
    """N-D depthwise separable convolution: a depthwise convolution (depth_multiplier) then a 1x1
    convolution to `filters`, bias and activation; weights depthwise_kernel, pointwise_kernel,
    bias, in Keras's order."""

    def __init__(self, rank, depth_multiplier, filters, kernel_size, strides=1, padding="valid",
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", cls)
        self.filters = _positive_int(filters, "filters", cls)
        _window_args(self, rank, kernel_size, strides, padding, data_format, dilation_rate)
        self._init_activation(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer, self.pointwise_initializer = depthwise_initializer, pointwise_initializer
        self.bias_initializer = bias_initializer
        self.depthwise_regularizer, self.pointwise_regularizer = depthwise_regularizer, pointwise_regularizer
        self.bias_regularizer = bias_regularizer
        self.depthwise_constraint, self.pointwise_constraint = depthwise_constraint, pointwise_constraint
        self.bias_constraint = bias_constraint

    def build(self, input_shape):
        _check_input(self, input_shape)
        c = input_shape[-1]
        m = self.depth_multiplier
        self.depthwise_kernel = self.add_weight(
            (*self.kernel_size, c, m), self.depthwise_initializer, "depthwise_kernel",
            regularizer=self.depthwise_regularizer, constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(
            ((1,) * self.rank + (c * m, self.filters)), self.pointwise_initializer, "pointwise_kernel",
            regularizer=self.pointwise_regularizer, constraint=self.pointwise_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *_conv_spatial(self, input_shape), self.filters)

    def _pointwise_fns(self):
        C = K.conv
        return (C.conv1d, C.conv1d_backward) if self.rank == 1 else (C.conv2d, C.conv2d_backward)

    def forward(self, x, training=False):
        dfwd, _ = _depthwise_fns(self.rank)
        pfwd, _ = self._pointwise_fns()
        shape = self.compute_output_shape(x.shape)
        t = self._buffer("t", (*shape[:-1], self.pointwise_kernel.shape[-2]))
        dfwd(x, self.depthwise_kernel.value, None, *_conv_args(self), out=t)
        self._x, self._t = x, t
        b = None if self.bias is None else self.bias.value
        return self._activate(lambda z, act: pfwd(t, self.pointwise_kernel.value, b, 1, "valid", 1, out=z,
                                                  activation=act), shape)

    def backward(self, dy):
        _, dbwd = _depthwise_fns(self.rank)
        _, pbwd = self._pointwise_fns()
        dz = self._pre_activation_grad(dy)
        dt = self._buffer("dt", self._t.shape)
        db = self.bias.grad if self.bias is not None else self._buffer("db_scratch", (self.filters,))
        pbwd(self._t, self.pointwise_kernel.value, dz, 1, "valid", 1, dx=dt, dw=self.pointwise_kernel.grad, db=db)
        dx = self._buffer("dx", self._x.shape) if self._need_dx else None
        dx, _, _ = dbwd(self._x, self.depthwise_kernel.value, dt, *_conv_args(self), need_dx=self._need_dx,
                        dx=dx, dw=self.depthwise_kernel.grad, db=self._buffer("dbt_scratch", (dt.shape[-1],)))
        return dx

    def get_config(self):
        c = super().get_config()
        c.setdefault("activity_regularizer", None)    # Keras's conv configs always hold the key
        c.update(depth_multiplier=self.depth_multiplier, filters=self.filters, kernel_size=list(self.kernel_size),
                 strides=list(self.strides), padding=self.padding, data_format="channels_last",
                 dilation_rate=list(self.dilation_rate), activation=self._act_name, use_bias=self.use_bias,
                 **_weight_args(self, "depthwise", "pointwise", "bias"))
        return c


class SeparableConv1D(BaseSeparableConv):
    """Depthwise separable 1-D convolution over (N, L, C) -> (N, OL, filters)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, **kwargs):
        super().__init__(1, depth_multiplier, filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)


class SeparableConv2D(BaseSeparableConv):
    """Depthwise separable 2-D convolution over NHWC -> (N, OH, OW, filters)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, **kwargs):
        super().__init__(2, depth_multiplier, filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)


SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D


class BaseConvTranspose(_ActivationMixin, Layer):
    """N-D transposed convolution (rank 1 or 2), channels_last: kernel (*kernel_size, filters, C),
    bias (filters,); output sizes by Keras's rule (padding valid/same, output_padding < strides)."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.filters = _positive_int(filters, "filters", cls)
        _window_args(self, rank, kernel_size, strides, padding, data_format, dilation_rate)
        if output_padding is None:
            self.output_padding = None
        else:
            op = (output_padding,) * rank if isinstance(output_padding, numbers.Integral) else output_padding
            try:
                op = tuple(int(v) for v in op)
            except TypeError:
                raise TypeError(f"{cls}: output_padding must be None, an int or a tuple of {rank} ints; received "
                                f"{output_padding!r}.") from None
            if len(op) != rank or any(v < 0 for v in op):
                raise ValueError(f"{cls}: output_padding must be None, an int or a tuple of {rank} non-negative "
                                 f"ints; received {output_padding!r}.")
            for i, (v, st) in enumerate(zip(op, self.strides)):
                if v >= st:
                    raise ValueError(f"{cls}: output_padding must be strictly less than strides in every "
                                     f"dimension; at dimension {i} output_padding is {v} and strides is {st}.")
            self.output_padding = op
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{cls}: strides > 1 together with dilation_rate > 1 is not supported (as in Keras).")
        self._init_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def build(self, input_shape):
        _check_input(self, input_shape)
        self.kernel = self.add_weight((*self.kernel_size, self.filters, input_shape[-1]), self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        fn = f"{type(self).__name__} '{self.name}'"
        ops = self.output_padding or (None,) * self.rank
        spatial = [None if n is None else conv_transpose_padding(n, k, s, d, self.padding, op, "padding", fn)[2]
                   for n, k, s, d, op in zip(input_shape[1:-1], self.kernel_size, self.strides,
                                             self.dilation_rate, ops)]
        return (input_shape[0], *spatial, self.filters)

    def _args(self):
        if self.rank == 1:
            op = None if self.output_padding is None else self.output_padding[0]
            return self.strides[0], self.padding, op, self.dilation_rate[0]
        return self.strides, self.padding, self.output_padding, self.dilation_rate

    def forward(self, x, training=False):
        fn = K.conv.conv1d_transpose if self.rank == 1 else K.conv.conv2d_transpose
        z = self._buffer("z", self.compute_output_shape(x.shape))
        fn(x, self.kernel.value, None if self.bias is None else self.bias.value, *self._args(), out=z)
        self._x, self._z = x, z
        self._y = self._act_forward(z)
        return self._y

    def backward(self, dy):
        fn = K.conv.conv1d_transpose_backward if self.rank == 1 else K.conv.conv2d_transpose_backward
        dz = self._act_backward(self._z, self._y, dy)
        dx = self._buffer("dx", self._x.shape) if self._need_dx else None
        db = self.bias.grad if self.bias is not None else self._buffer("db_scratch", (self.filters,))
        dx, _, _ = fn(self._x, self.kernel.value, dz, *self._args(), need_dx=self._need_dx, dx=dx,
                      dw=self.kernel.grad, db=db)
        return dx

    @property
    def logits(self):
        return self._z

    def get_config(self):
        c = super().get_config()
        c.setdefault("activity_regularizer", None)    # Keras's conv configs always hold the key
        c.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                 padding=self.padding,
                 output_padding=None if self.output_padding is None else list(self.output_padding),
                 data_format="channels_last", dilation_rate=list(self.dilation_rate), activation=self._act_name,
                 use_bias=self.use_bias, **_weight_args(self, "kernel", "bias"))
        return c


class Conv1DTranspose(BaseConvTranspose):
    """Transposed 1-D convolution over (N, L, C), kernel (k, filters, C) -> (N, OL, filters)."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(1, filters, kernel_size, **kwargs)


class Conv2DTranspose(BaseConvTranspose):
    """Transposed 2-D convolution over NHWC, kernel (kh, kw, filters, C) -> (N, OH, OW, filters)."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(2, filters, kernel_size, **kwargs)


Convolution1DTranspose, Convolution2DTranspose = Conv1DTranspose, Conv2DTranspose
