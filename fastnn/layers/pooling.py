"""Pooling layers (channels_last): Max/AveragePooling1D/2D and GlobalMax/AveragePooling1D/2D.

Defaults as Keras: pool_size 2 (2x2), strides None -> pool_size, padding "valid"; average
pooling with "same" excludes padded cells from the divisor (done by the kernel).
"""
from __future__ import annotations

from fastnn import kernels as K
from fastnn.kernels._geometry import resolve_padding
from fastnn.layers.base import FLOATX, Layer, shape_str
from fastnn.layers.convolutional import normalize_padding, normalize_tuple

import numpy as np


class BasePooling(Layer):
    def __init__(self, rank, mode, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.rank, self.mode = rank, mode
        self.pool_size = normalize_tuple(pool_size, rank, "pool_size", cls)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, rank, "strides", cls)
        self.padding = normalize_padding(padding, cls)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{cls}: fastnn is channels_last only; received data_format={data_format!r}.")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{type(self).__name__} '{self.name}' expects inputs of rank {self.rank + 2}; "
                             f"received shape {shape_str(input_shape)}.")
        spatial = [None if n is None else
                   resolve_padding(n, k, s, 1, self.padding, "padding", f"{type(self).__name__} '{self.name}'")[2]
                   for n, k, s in zip(input_shape[1:-1], self.pool_size, self.strides)]
        return (input_shape[0], *spatial, input_shape[-1])

    def _args(self):
        if self.rank == 1:
            return self.pool_size[0], self.strides[0], self.padding
        return self.pool_size, self.strides, self.padding

    def forward(self, x, training=False):
        shape = self.compute_output_shape(x.shape)
        y = self._buffer("y", shape)
        self._x_shape = x.shape
        if self.mode == "max":
            fn = K.pool.max_pool1d if self.rank == 1 else K.pool.max_pool2d
            argmax = self._buffer("argmax", shape, np.int32)
            y, self._argmax = fn(x, *self._args(), out=y, argmax=argmax)
        else:
            fn = K.pool.avg_pool1d if self.rank == 1 else K.pool.avg_pool2d
            y = fn(x, *self._args(), out=y)
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self._x_shape)
        if self.mode == "max":
            fn = K.pool.max_pool1d_backward if self.rank == 1 else K.pool.max_pool2d_backward
            return fn(dy, self._argmax, self._x_shape, dx=dx)
        fn = K.pool.avg_pool1d_backward if self.rank == 1 else K.pool.avg_pool2d_backward
        return fn(dy, self._x_shape, *self._args(), dx=dx)

    def get_config(self):
        c = super().get_config()
        c.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding,
                 data_format="channels_last")
        return c


class MaxPooling1D(BasePooling):
    """Max over windows of (N, L, C) -> (N, OL, C)."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(1, "max", pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(BasePooling):
    """Max over windows of NHWC -> (N, OH, OW, C)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(2, "max", pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(BasePooling):
    """Mean over windows of (N, L, C) -> (N, OL, C)."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(1, "avg", pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(BasePooling):
    """Mean over windows of NHWC -> (N, OH, OW, C)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(2, "avg", pool_size, strides, padding, data_format, **kwargs)


class BaseGlobalPooling(Layer):
    def __init__(self, rank, mode, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.rank, self.mode = rank, mode
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{type(self).__name__}: fastnn is channels_last only; received "
                             f"data_format={data_format!r}.")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{type(self).__name__} '{self.name}' expects inputs of rank {self.rank + 2}; "
                             f"received shape {shape_str(input_shape)}.")
        if self.keepdims:
            return (input_shape[0], *([1] * self.rank), input_shape[-1])
        return (input_shape[0], input_shape[-1])

    def forward(self, x, training=False):
        self._x_shape = x.shape
        n, c = x.shape[0], x.shape[-1]
        y = self._buffer("y", (n, c))
        if self.mode == "max":
            fn = K.pool.global_max_pool1d if self.rank == 1 else K.pool.global_max_pool2d
            y, self._argmax = fn(x, out=y, argmax=self._buffer("argmax", (n, c), np.int32))
        else:
            fn = K.pool.global_avg_pool1d if self.rank == 1 else K.pool.global_avg_pool2d
            y = fn(x, out=y)
        return y.reshape(self.compute_output_shape(x.shape)) if self.keepdims else y

    def backward(self, dy):
        dy = dy.reshape(dy.shape[0], dy.shape[-1])
        dx = self._buffer("dx", self._x_shape)
        if self.mode == "max":
            fn = K.pool.global_max_pool1d_backward if self.rank == 1 else K.pool.global_max_pool2d_backward
            return fn(dy, self._argmax, self._x_shape, dx=dx)
        fn = K.pool.global_avg_pool1d_backward if self.rank == 1 else K.pool.global_avg_pool2d_backward
        return fn(dy, self._x_shape, dx=dx)

    def get_config(self):
        c = super().get_config()
        c.update(data_format="channels_last", keepdims=self.keepdims)
        return c


class GlobalMaxPooling1D(BaseGlobalPooling):
    """Max over the length axis: (N, L, C) -> (N, C)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, "max", data_format, keepdims, **kwargs)


class GlobalMaxPooling2D(BaseGlobalPooling):
    """Max over H and W: NHWC -> (N, C)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, "max", data_format, keepdims, **kwargs)


class GlobalAveragePooling1D(BaseGlobalPooling):
    """Mean over the length axis: (N, L, C) -> (N, C); with a mask (Embedding(mask_zero=True),
    Masking) the mean of the unmasked steps only, as Keras."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, "avg", data_format, keepdims, **kwargs)

    def compute_mask(self, inputs, previous_mask):
        return None

    def forward(self, x, training=False):
        if self._mask is None:
            self._w = None
            return super().forward(x, training)
        # Keras: sum(x * mask) / sum(mask) over the steps
        m = np.asarray(self._mask, FLOATX)
        w = self._buffer("mask_w", m.shape)
        with np.errstate(divide="ignore", invalid="ignore"):   # all steps masked: NaN, as Keras
            np.einsum("nl,n->nl", m, 1.0 / m.sum(axis=1), out=w)
        self._w = w
        self._x_shape = x.shape
        y = self._buffer("y", (x.shape[0], x.shape[-1]))
        np.einsum("nlc,nl->nc", x, w, out=y)
        return y.reshape(self.compute_output_shape(x.shape)) if self.keepdims else y

    def backward(self, dy):
        if self._w is None:
            return super().backward(dy)
        dy = dy.reshape(dy.shape[0], dy.shape[-1])
        dx = self._buffer("dx", self._x_shape)
        np.einsum("nl,nc->nlc", self._w, dy, out=dx)     # (a broadcasting multiply buffers 32 KB)
        return dx


class GlobalAveragePooling2D(BaseGlobalPooling):
    """Mean over H and W: NHWC -> (N, C)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, "avg", data_format, keepdims, **kwargs)


MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D = MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
