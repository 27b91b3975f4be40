"""Activation layers: ReLU, LeakyReLU (default 0.3), ELU, PReLU, Softmax.

All but PReLU are thin settings of fastnn.kernels.activation; PReLU learns its slope.
"""
from __future__ import annotations

import warnings

import numpy as np

from fastnn import kernels as K
from fastnn.layers.base import Layer, serialize_obj
from fastnn.layers.core import _grad_from_y


class _KernelActivation(Layer):
    """y = kernels.activation.apply(name, x, **params); backward via kernels.activation.grad."""

    _act_name = "linear"
    supports_masking = True   # Keras: activation layers pass a mask on
    _fused_into_bn = False   # set by Model._forward: the BatchNormalization before already applied it
    _passthrough = False

    def _params(self):
        return {}

    def forward(self, x, training=False):
        self._passthrough = self._fused_into_bn
        if self._passthrough:   # x is already relu'd by the norm's output pass
            self._x = self._y = x
            return x
        y = self._buffer("y", x.shape)
        params = self._params()
        self._y = K.activation.apply(self._act_name, x, out=y, **params)
        # keep only y when the gradient reads the same from it (a ReLU): the model's memory
        # plan can then reuse the input's memory once it is read (fastnn.models.memplan)
        self._x = self._y if _grad_from_y(self._act_name, params) else x
        return self._y

    def backward(self, dy):
        if self._fused_output or self._passthrough:   # the norm's backward masks dy itself
            return dy
        dx = self._buffer("dx", dy.shape)
        return K.activation.grad(self._act_name, self._x, self._y, dy, out=dx, **self._params())

    @property
    def logits(self):
        return self._x


class ReLU(_KernelActivation):
    """max(x, 0) with Keras's max_value, negative_slope and threshold."""

    _act_name = "relu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(f"ReLU: max_value must be >= 0; received max_value={max_value!r}.")
        if negative_slope is None or negative_slope < 0:
            raise ValueError(f"ReLU: negative_slope must be >= 0; received negative_slope={negative_slope!r}.")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)

    def _params(self):
        p = {}
        if self.negative_slope:
            p["negative_slope"] = self.negative_slope
        if self.max_value is not None:
            p["max_value"] = self.max_value
        if self.threshold:
            p["threshold"] = self.threshold
        return p

    def get_config(self):
        c = super().get_config()
        c.update(max_value=self.max_value, negative_slope=self.negative_slope, threshold=self.threshold)
        return c


class LeakyReLU(_KernelActivation):
    """x if x >= 0 else negative_slope * x; the layer default is 0.3 (the function's is 0.2)."""

    _act_name = "leaky_relu"

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            warnings.warn("LeakyReLU: argument `alpha` is deprecated; use `negative_slope` instead.",
                          UserWarning, stacklevel=2)
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(f"LeakyReLU: negative_slope must be >= 0; received negative_slope={negative_slope!r}.")
        self.negative_slope = float(negative_slope)

    def _params(self):
        return {"negative_slope": self.negative_slope}

    def get_config(self):
        c = super().get_config()
        c["negative_slope"] = self.negative_slope
        return c


class ELU(_KernelActivation):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    _act_name = "elu"

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def _params(self):
        return {"alpha": self.alpha}

    def get_config(self):
        c = super().get_config()
        c["alpha"] = self.alpha
        return c


class Softmax(_KernelActivation):
    """exp(x) / sum(exp(x)) along axis (default the last)."""

    _act_name = "softmax"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def _params(self):
        return {} if self.axis == -1 else {"axis": self.axis}

    def forward(self, x, training=False, mask=None):
        return super().forward(x, training)

    def get_config(self):
        c = super().get_config()
        c["axis"] = self.axis
        return c


class PReLU(Layer):
    """max(x, 0) + alpha * min(x, 0) with a learned alpha of the input's shape (minus shared axes)."""

    supports_masking = True

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer, self.alpha_regularizer = alpha_initializer, alpha_regularizer
        self.alpha_constraint = alpha_constraint
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = tuple(int(a) for a in (shared_axes if isinstance(shared_axes, (list, tuple))
                                                      else (shared_axes,)))

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            shape[a - 1] = 1
        self.alpha = self.add_weight(tuple(shape), self.alpha_initializer, "alpha",
                                     regularizer=self.alpha_regularizer, constraint=self.alpha_constraint)
        self._reduce_axes = (0, *(self.shared_axes or ()))

    def forward(self, x, training=False):
        self._x = x
        neg = self._buffer("neg", x.shape)
        y = self._buffer("y", x.shape)
        np.minimum(x, 0, out=neg)
        np.maximum(x, 0, out=y)
        tmp = self._buffer("tmp", x.shape)
        np.multiply(neg, self.alpha.value, out=tmp)
        np.add(y, tmp, out=y)
        self._neg = neg
        return y

    def backward(self, dy):
        tmp = self._buffer("tmp", dy.shape)
        np.multiply(dy, self._neg, out=tmp)
        self.alpha.grad[...] = tmp.sum(axis=self._reduce_axes).reshape(self.alpha.shape)
        dx = self._buffer("dx", dy.shape)
        # slope alpha where x <= 0, 1 where x > 0
        pos = self._buffer("pos", dy.shape, np.bool_)
        np.greater(self._x, 0, out=pos)
        np.multiply(dy, self.alpha.value, out=dx)
        np.copyto(dx, dy, where=pos)
        return dx

    def get_config(self):
        c = super().get_config()
        c.update(alpha_initializer=serialize_obj(self.alpha_initializer),
                 alpha_regularizer=serialize_obj(self.alpha_regularizer),
                 alpha_constraint=serialize_obj(self.alpha_constraint),
                 shared_axes=None if self.shared_axes is None else list(self.shared_axes))
        return c
