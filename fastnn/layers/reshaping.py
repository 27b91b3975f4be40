"""Reshaping layers on channels_last data: ZeroPadding1D/2D, Cropping2D, UpSampling2D (nearest).

These move data without arithmetic: each is one strided copy into a reused buffer.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn.layers.base import Layer, shape_str


def _pairs(value, n, name, cls):
    """Keras's padding/cropping spec: int, tuple of n ints, or n (before, after) pairs."""
    if isinstance(value, numbers.Integral):
        out = [(int(value), int(value))] * n
    else:
        value = tuple(value)
        if len(value) != n:
            raise ValueError(f"{cls}: {name} must be an int, {n} ints or {n} (before, after) pairs; "
                             f"received {value!r}.")
        out = [(int(v), int(v)) if isinstance(v, numbers.Integral) else tuple(int(a) for a in v) for v in value]
    if any(len(p) != 2 or min(p) < 0 for p in out):
        raise ValueError(f"{cls}: {name} entries must be non-negative; received {value!r}.")
    return tuple(out)


class _Pad(Layer):
    rank = 2

    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{type(self).__name__}: fastnn is channels_last only.")
        if self.rank == 1 and isinstance(padding, (tuple, list)) and len(padding) == 2 \
                and all(isinstance(p, numbers.Integral) for p in padding):
            padding = (tuple(padding),)
        self.padding = _pairs(padding, self.rank, "padding", type(self).__name__)

    def compute_output_shape(self, s):
        if len(s) != self.rank + 2:
            raise ValueError(f"{type(self).__name__} '{self.name}' expects inputs of rank {self.rank + 2}; "
                             f"received shape {shape_str(s)}.")
        return (s[0], *[None if n is None else n + a + b for n, (a, b) in zip(s[1:-1], self.padding)], s[-1])

    def _inner(self, shape):
        return (slice(None), *[slice(a, a + n) for n, (a, _) in zip(shape[1:-1], self.padding)], slice(None))

    def forward(self, x, training=False):
        self._x_shape = x.shape
        y = self._buffer("y", self.compute_output_shape(x.shape))
        y.fill(0)
        y[self._inner(x.shape)] = x
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self._x_shape)
        np.copyto(dx, dy[self._inner(self._x_shape)])
        return dx

    def get_config(self):
        c = super().get_config()
        c.update(padding=[list(p) for p in self.padding], data_format="channels_last")
        return c


class ZeroPadding1D(_Pad):
    """Zeros before/after the length axis of (N, L, C)."""
    rank = 1

    def __init__(self, padding=1, **kwargs):
        super().__init__(padding, **kwargs)

    def get_config(self):
        c = super().get_config()
        c.pop("data_format")
        c["padding"] = list(self.padding[0])
        return c


class ZeroPadding2D(_Pad):
    """Zeros around H and W of NHWC: padding int, (h, w) or ((top, bottom), (left, right))."""
    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping2D(Layer):
    """Crop H and W of NHWC: cropping int, (h, w) or ((top, bottom), (left, right))."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("Cropping2D: fastnn is channels_last only.")
        self.cropping = _pairs(cropping, 2, "cropping", "Cropping2D")

    def compute_output_shape(self, s):
        if len(s) != 4:
            raise ValueError(f"Cropping2D '{self.name}' expects NHWC inputs; received shape {shape_str(s)}.")
        out = [None if n is None else n - a - b for n, (a, b) in zip(s[1:3], self.cropping)]
        if any(o is not None and o <= 0 for o in out):
            raise ValueError(f"Cropping2D '{self.name}': cropping {self.cropping} leaves nothing of input "
                             f"shape {shape_str(s)}.")
        return (s[0], *out, s[3])

    def _inner(self, shape):
        return (slice(None), *[slice(a, n - b) for n, (a, b) in zip(shape[1:3], self.cropping)], slice(None))

    def forward(self, x, training=False):
        self._x_shape = x.shape
        y = self._buffer("y", self.compute_output_shape(x.shape))
        np.copyto(y, x[self._inner(x.shape)])
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self._x_shape)
        dx.fill(0)
        dx[self._inner(self._x_shape)] = dy
        return dx

    def get_config(self):
        c = super().get_config()
        c.update(cropping=[list(p) for p in self.cropping], data_format="channels_last")
        return c


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling of NHWC by size (sh, sw): each pixel repeated sh x sw times."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        from fastnn.layers.convolutional import normalize_tuple
        self.size = normalize_tuple(size, 2, "size", "UpSampling2D")
        if interpolation != "nearest":
            raise ValueError(f"UpSampling2D: only interpolation='nearest' is supported; received {interpolation!r}.")
        if data_format not in (None, "channels_last"):
            raise ValueError("UpSampling2D: fastnn is channels_last only.")

    def compute_output_shape(self, s):
        if len(s) != 4:
            raise ValueError(f"UpSampling2D '{self.name}' expects NHWC inputs; received shape {shape_str(s)}.")
        return (s[0], None if s[1] is None else s[1] * self.size[0], None if s[2] is None else s[2] * self.size[1], s[3])

    def forward(self, x, training=False):
        n, h, w, c = x.shape
        sh, sw = self.size
        self._x_shape = x.shape
        y = self._buffer("y", (n, h * sh, w * sw, c))
        y.reshape(n, h, sh, w, sw, c)[...] = x[:, :, None, :, None, :]
        return y

    def backward(self, dy):
        n, h, w, c = self._x_shape
        sh, sw = self.size
        dx = self._buffer("dx", self._x_shape)
        return np.sum(dy.reshape(n, h, sh, w, sw, c), axis=(2, 4), out=dx)

    def get_config(self):
        c = super().get_config()
        c.update(size=list(self.size), data_format="channels_last", interpolation="nearest")
        return c
