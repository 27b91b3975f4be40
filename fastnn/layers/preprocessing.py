"""Preprocessing layers: Rescaling, Normalization (with adapt()), Resizing, with Keras 3's numbers.

They sit at the front of a model (so their backward rarely runs, but it exists: each is a fixed
linear map of its input). Rescaling and Normalization are elementwise float32 NumPy with out=
buffers; Resizing calls fastnn.kernels.resize (Keras's half-pixel bilinear / nearest sampling).
"""
from __future__ import annotations

import itertools
import numbers

import numpy as np

from fastnn import kernels as K
from fastnn.layers.base import FLOATX, Layer, shape_str

EPSILON = np.float32(1e-7)     # keras.backend.epsilon(): Normalization's floor of sqrt(variance)


def _jsonable(v):
    return np.asarray(v).tolist() if isinstance(v, (np.ndarray, np.generic, list, tuple)) else v


class Rescaling(Layer):
    """y = x * scale + offset (float32; scale and offset scalars or arrays broadcast over x)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset
        try:
            self._scale = np.asarray(scale, dtype=FLOATX)
            self._offset = np.asarray(offset, dtype=FLOATX)
        except (TypeError, ValueError):
            raise TypeError(f"Rescaling: scale and offset must be numbers or arrays of numbers; received "
                            f"scale={scale!r}, offset={offset!r}.") from None

    def forward(self, x, training=False):
        y = self._buffer("y", x.shape)
        np.multiply(x, self._scale, out=y)      # two float32 roundings, as Keras's x * scale + offset
        np.add(y, self._offset, out=y)
        self._x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self._x_shape)
        return np.multiply(dy, self._scale, out=dx)

    def get_config(self):
        c = super().get_config()
        c.update(scale=_jsonable(self.scale), offset=_jsonable(self.offset))
        return c


class Normalization(Layer):
    """y = (x - mean) / max(sqrt(variance), 1e-7) per position of the kept `axis` (Keras's
    Normalization); `invert=True` maps back: mean + x * max(sqrt(variance), 1e-7).

    mean and variance come from the constructor, or from `adapt(data)` (NumPy mean and variance
    over the other axes; batches of an iterable merged as Keras merges them) into the layer's
    non-trainable weights `mean`, `variance` (and Keras's unused int32 `count`).
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axis = (int(axis),)
        else:
            try:
                axis = tuple(int(a) for a in axis)
            except TypeError:
                raise TypeError(f"Normalization: axis must be None, an int or a tuple of ints; received "
                                f"axis={axis!r}.") from None
        self.axis = axis
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization: set both mean and variance, or neither (then call adapt()); "
                             f"received mean={mean!r} and variance={variance!r}.")
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(f"Normalization: mean and variance must have the same shape; received "
                                 f"{np.shape(mean)} and {np.shape(variance)}.")
            if np.ndim(mean) > len(self.axis):
                raise ValueError(f"Normalization: the rank of mean ({np.ndim(mean)}) must be at most the number "
                                 f"of axes ({len(self.axis)}); received mean of shape {np.shape(mean)} for "
                                 f"axis={self.axis}.")

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"Normalization '{self.name}': every axis must be in [-{ndim}, {ndim}) for inputs of "
                             f"shape {shape_str(input_shape)}; received axis={self.axis}.")
        keep = tuple(sorted(a % ndim for a in self.axis))
        for d in keep:
            if input_shape[d] is None:
                raise ValueError(f"Normalization '{self.name}': the kept axis {d} of inputs "
                                 f"{shape_str(input_shape)} must have a known size.")
        self._keep_axis = keep
        self._reduce_axis = tuple(d for d in range(ndim) if d not in keep)
        self._broadcast_shape = tuple(input_shape[d] if d in keep else 1 for d in range(ndim))
        shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(shape, "zeros", "mean", trainable=False)
            self.adapt_variance = self.add_weight(shape, "ones", "variance", trainable=False)
            self.count = self.add_weight((), "zeros", "count", trainable=False, dtype="int32")
        else:   # constants: a scalar broadcasts, else the dims align with the kept axes from the right
            expanded = [1] * ndim
            for i in range(1, np.ndim(self.input_mean) + 1):
                expanded[keep[-i]] = np.shape(self.input_mean)[-i]
            self._mean_const = np.broadcast_to(np.reshape(np.asarray(self.input_mean, FLOATX), expanded),
                                               self._broadcast_shape).copy()
            self._var_const = np.broadcast_to(np.reshape(np.asarray(self.input_variance, FLOATX), expanded),
                                              self._broadcast_shape).copy()

    def adapt(self, data):
        """Set mean and variance from `data`: an array (N, ...) or an iterable of batches
        (arrays, or (x, y) tuples whose x is used), reduced over every axis but `axis`."""
        is_array = isinstance(data, np.ndarray)
        if not is_array:
            if not hasattr(data, "__iter__"):
                raise TypeError(f"Normalization.adapt: data must be a NumPy array or an iterable of batches; "
                                f"received {type(data).__name__}.")
            it = iter(data)
            first = next(it, None)
            if first is None:
                raise ValueError("Normalization.adapt: received an empty iterable; pass at least one batch.")
            batches = itertools.chain([first], it)
            first = np.asarray(first[0] if isinstance(first, tuple) else first)
            shape = first.shape
        else:
            shape = data.shape
        if self.input_mean is not None:
            raise ValueError(f"Normalization '{self.name}': adapt() sets mean and variance, but they were given to "
                             f"the constructor.")
        if not self.built:
            self._maybe_build((None, *shape[1:]))
        for d in self._keep_axis:
            if shape[d] != self.input_shape[d]:
                raise ValueError(f"Normalization '{self.name}': built for inputs {shape_str(self.input_shape)}; "
                                 f"adapt() received data of shape {shape}.")
        if is_array:
            mean, var = np.mean(data, axis=self._reduce_axis), np.var(data, axis=self._reduce_axis)
        else:
            mean = var = np.zeros(self.adapt_mean.shape, FLOATX)
            count = 0
            for batch in batches:
                batch = np.asarray(batch[0] if isinstance(batch, tuple) else batch, FLOATX)
                n = int(np.prod([batch.shape[d] for d in self._reduce_axis])) if self._reduce_axis else 1
                b_mean = np.mean(batch, axis=self._reduce_axis)
                b_var = np.var(batch, axis=self._reduce_axis)
                count += n
                w_new = float(n) / count
                w_old = 1.0 - w_new
                new_mean = mean * w_old + b_mean * w_new
                var = (var + (mean - new_mean) ** 2) * w_old + (b_var + (b_mean - new_mean) ** 2) * w_new
                mean = new_mean
        self.adapt_mean.assign(mean)
        self.adapt_variance.assign(var)

    def _stats(self):
        if self.input_mean is not None:
            return self._mean_const, self._var_const
        return (self.adapt_mean.value.reshape(self._broadcast_shape),
                self.adapt_variance.value.reshape(self._broadcast_shape))

    def forward(self, x, training=False):
        mean, var = self._stats()
        denom = self._buffer("denom", var.shape)
        np.maximum(np.sqrt(var, out=denom), EPSILON, out=denom)
        self._denom = denom
        y = self._buffer("y", x.shape)
        if self.invert:
            np.multiply(x, denom, out=y)
            np.add(mean, y, out=y)
        else:
            np.subtract(x, mean, out=y)
            np.divide(y, denom, out=y)
        return y

    def backward(self, dy):
        dx = self._buffer("dx", dy.shape)
        return (np.multiply if self.invert else np.divide)(dy, self._denom, out=dx)

    def get_config(self):
        c = super().get_config()
        c.update(axis=list(self.axis), invert=self.invert, mean=_jsonable(self.input_mean),
                 variance=_jsonable(self.input_variance))
        return c


class Resizing(Layer):
    """Resize NHWC images to (height, width): bilinear or nearest with Keras's sampling, after an
    optional centred crop (crop_to_aspect_ratio) or pad with fill_value (pad_to_aspect_ratio) to
    the target's aspect ratio, as Keras computes the box."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise ValueError(f"Resizing: {name} must be a positive int; received {name}={v!r}.")
        self.height, self.width = int(height), int(width)
        if interpolation not in K.resize.INTERPOLATIONS:
            raise ValueError(f"Resizing: interpolation must be one of {K.resize.INTERPOLATIONS} in fastnn; "
                             f"received interpolation={interpolation!r}.")
        if antialias:
            raise ValueError("Resizing: antialias=True is not supported by fastnn; use antialias=False.")
        if fill_mode != "constant":
            raise ValueError(f"Resizing: only fill_mode='constant' is supported (as Keras's torch backend); "
                             f"received fill_mode={fill_mode!r}.")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Resizing: only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True.")
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Resizing: fastnn is channels_last only; received data_format={data_format!r}.")
        self.interpolation = interpolation
        self.crop_to_aspect_ratio, self.pad_to_aspect_ratio = bool(crop_to_aspect_ratio), bool(pad_to_aspect_ratio)
        self.fill_mode, self.fill_value, self.antialias = fill_mode, float(fill_value), False

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Resizing '{self.name}' expects NHWC images (batch, height, width, channels); "
                             f"received shape {shape_str(input_shape)}.")
        return (input_shape[0], self.height, self.width, input_shape[3])

    def _box(self, h, w):
        """(top, left, height, width) of the crop in the input, or of the input in the padded image
        (pad: the padded size), with Keras's int(float(...)) arithmetic."""
        th, tw = self.height, self.width
        if self.crop_to_aspect_ratio:
            ch = max(min(h, int(float(w * th) / tw)), 1)
            cw = max(min(w, int(float(h * tw) / th)), 1)
            return int(float(h - ch) / 2), int(float(w - cw) / 2), ch, cw
        if self.pad_to_aspect_ratio:
            ph = max(h, int(float(w * th) / tw))
            pw = max(w, int(float(h * tw) / th))
            return int(float(ph - h) / 2), int(float(pw - w) / 2), h, w
        return 0, 0, h, w

    def forward(self, x, training=False):
        n, h, w, c = x.shape
        top, left, bh, bw = self._box(h, w)
        self._x_shape = x.shape
        if self.crop_to_aspect_ratio:
            src = np.ascontiguousarray(x[:, top:top + bh, left:left + bw])
        elif self.pad_to_aspect_ratio and (top or left):
            # Keras pads top and bottom (left and right) by the same amount
            src = self._buffer("padded", (n, h + 2 * top, w + 2 * left, c))
            src.fill(self.fill_value)
            src[:, top:top + h, left:left + w] = x
        else:
            src = x
        self._src_shape = src.shape
        y = self._buffer("y", (n, self.height, self.width, c))
        return K.resize.resize(src, (self.height, self.width), self.interpolation, out=y)

    def backward(self, dy):
        dsrc = K.resize.resize_backward(dy, self._src_shape, self.interpolation)
        if self._src_shape == self._x_shape and not self.crop_to_aspect_ratio:
            return dsrc
        n, h, w, c = self._x_shape
        top, left, bh, bw = self._box(h, w)
        dx = self._buffer("dx", self._x_shape)
        if self.crop_to_aspect_ratio:
            dx.fill(0.0)
            dx[:, top:top + bh, left:left + bw] = dsrc
        else:
            dx[...] = dsrc[:, top:top + h, left:left + w]
        return dx

    def get_config(self):
        c = super().get_config()
        c.update(data_format="channels_last", height=self.height, width=self.width,
                 interpolation=self.interpolation, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                 pad_to_aspect_ratio=self.pad_to_aspect_ratio, fill_mode=self.fill_mode,
                 fill_value=self.fill_value, antialias=False)
        return c
