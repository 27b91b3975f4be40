"""Core layers: Input/InputLayer, Dense, Activation, Dropout, Flatten, Reshape, Permute, RepeatVector.

All compute on float32 C-contiguous arrays; Dense applies to the last axis of any rank.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from fastnn import _random
from fastnn import kernels as K
from fastnn.layers.base import FLOATX, Layer, serialize_obj, shape_str, unique_name


# ---------------------------------------------------------------------------------------------
class InputLayer(Layer):
    """The entry point of a model: holds the input shape (batch axis first, None if free)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, name=None, input_shape=None, batch_input_shape=None, **kwargs):
        idtype = None if dtype is None else np.dtype(dtype).name
        if idtype not in (None, "float32", "int32", "int64"):
            raise ValueError(f"InputLayer: dtype must be 'float32' (features) or 'int32'/'int64' (token ids "
                             f"for an Embedding); received dtype={dtype!r}.")
        super().__init__(name=name or unique_name("input_layer"))
        self.dtype = idtype or "float32"
        if batch_shape is None:
            batch_shape = batch_input_shape
        if batch_shape is None:
            shape = shape if shape is not None else input_shape
            if shape is None:
                raise ValueError("InputLayer: give `shape` (without the batch axis), e.g. shape=(784,).")
            if isinstance(shape, numbers.Integral):
                shape = (shape,)
            batch_shape = (batch_size, *tuple(shape))
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        for d in self.batch_shape[1:]:
            if d is not None and d <= 0:
                raise ValueError(f"InputLayer '{self.name}': every dimension of shape must be a positive "
                                 f"int or None; received {shape_str(self.batch_shape[1:])}.")
        self.input_shape = self.output_shape = self.batch_shape
        self.built = True
        self._symbolic_call([], self.batch_shape)   # self.output: the model input tensor
        self.output.dtype = self.dtype

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return None

    def get_config(self):
        return {"name": self.name, "batch_shape": list(self.batch_shape), "dtype": self.dtype,
                "sparse": False}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("sparse", None)
        return cls(**config)


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          **kwargs):
    """A symbolic input tensor (Keras's `keras.Input`): shape excludes the batch axis."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name, **kwargs).output


# ---------------------------------------------------------------------------------------------
class _ActivationMixin:
    """y = activation(z) through fastnn.kernels.activation, and its backward."""

    def _init_activation(self, activation):
        from fastnn import activations
        self.activation = activations.get(activation)
        name = getattr(self.activation, "name", None)
        if name is None or (hasattr(K.activation, "NAMES") and name not in K.activation.NAMES):
            raise ValueError(f"{type(self).__name__}: activation {activation!r} has no fastnn kernel; "
                             f"use one of the Keras activation names.")
        self._act_name = name
        self._act_params = dict(getattr(self.activation, "params", None) or {})

    def _act_in_place(self):
        """True when the kernel can apply the activation to z in place (fused epilogue): plain
        ReLU, whose gradient (y > 0) needs only the output, so z need not be kept."""
        return self._act_name == "relu" and not self._act_params and not self._fused_output

    def _act_forward(self, z):
        if self._act_name == "linear":
            return z
        y = self._buffer("act_y", z.shape)
        return K.activation.apply(self._act_name, z, out=y, **self._act_params)

    def _act_backward(self, z, y, dy):
        if self._act_name == "linear" or self._fused_output:
            return dy
        dz = self._buffer("act_dz", dy.shape)
        return K.activation.grad(self._act_name, z, y, dy, out=dz, **self._act_params)


def _grad_from_y(name, params) -> bool:
    """True when the activation's gradient computed from y = act(x) in place of x gives the
    same bits: relu without negative_slope or threshold (y > 0 iff x > 0; inside (0,
    max_value) iff x is; NaN stays NaN), relu6."""
    if name == "relu6":
        return True
    return name == "relu" and not params.get("negative_slope") and not params.get("threshold")


# ---------------------------------------------------------------------------------------------
class Dense(_ActivationMixin, Layer):
    """y = activation(x @ kernel + bias) on the last axis; kernel (in, units), bias (units,)."""

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int; received units={units!r}.")
        self.units = int(units)
        self._init_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"Dense '{self.name}': the last axis of the input must be known; "
                             f"received input shape {shape_str(input_shape)}.")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.units,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False):
        self._x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])
        z = self._buffer("z", (x2.shape[0], self.units))
        fuse = self._act_in_place()
        K.dense.dense(x2, self.kernel.value, None if self.bias is None else self.bias.value,
                      activation="relu" if fuse else "linear", out=z)
        self._x2, self._z = x2, z
        self._y = z if fuse else self._act_forward(z)   # fused: z holds relu(z); grad uses y > 0
        return self._y.reshape(*x.shape[:-1], self.units)

    def backward(self, dy):
        dz = self._act_backward(self._z, self._y, dy.reshape(self._z.shape))
        dx = self._buffer("dx", self._x2.shape) if self._need_dx else None
        db = self.bias.grad if self.bias is not None else self._buffer("db_scratch", (self.units,))
        dx, _, _ = K.dense.dense_backward(self._x2, self.kernel.value, dz, need_dx=self._need_dx,
                                          dx=dx, dw=self.kernel.grad, db=db)
        return None if dx is None else dx.reshape(self._x_shape)

    @property
    def logits(self):
        return self._z

    def get_config(self):
        c = super().get_config()
        c.update(units=self.units, activation=self._act_name, use_bias=self.use_bias,
                 kernel_initializer=serialize_obj(self.kernel_initializer),
                 bias_initializer=serialize_obj(self.bias_initializer),
                 kernel_regularizer=serialize_obj(self.kernel_regularizer),
                 bias_regularizer=serialize_obj(self.bias_regularizer),
                 kernel_constraint=serialize_obj(self.kernel_constraint),
                 bias_constraint=serialize_obj(self.bias_constraint))
        return c


class Activation(_ActivationMixin, Layer):
    """Applies an activation function elementwise (any rank)."""

    supports_masking = True

    _fused_into_bn = False   # set by Model._forward: the BatchNormalization before already applied it
    _passthrough = False

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._init_activation(activation)

    def forward(self, x, training=False):
        self._passthrough = self._fused_into_bn
        self._y = x if self._passthrough else self._act_forward(x)
        # a ReLU's gradient reads y as well as x: keeping only y lets the model's memory plan
        # reuse the input's memory once it is read (fastnn.models.memplan)
        self._z = self._y if _grad_from_y(self._act_name, self._act_params) else x
        return self._y

    def backward(self, dy):
        if self._passthrough:   # the norm's backward masks dy by y > 0 itself
            return dy
        return self._act_backward(self._z, self._y, dy)

    @property
    def logits(self):
        return self._z

    def get_config(self):
        c = super().get_config()
        c["activation"] = self._act_name
        return c


class Dropout(Layer):
    """Inverted dropout: in training keep with probability 1-rate and scale by 1/(1-rate).

    noise_shape (Keras's): the shape of the mask, broadcast over the axes where it is 1; None
    entries take the input's size (EfficientNet's stochastic depth drops whole samples with
    noise_shape=(None, 1, 1, 1))."""

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise ValueError(f"Dropout: rate must be a float in [0, 1]; received rate={rate!r}.")
        if noise_shape is not None:
            if not isinstance(noise_shape, (list, tuple)) or not all(
                    d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1)
                    for d in noise_shape):
                raise ValueError(f"Dropout: noise_shape must be a tuple of positive ints or None; received "
                                 f"noise_shape={noise_shape!r}.")
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        self.noise_shape = noise_shape
        self.rate = float(rate)
        self.seed = seed
        self._seedseq = np.random.SeedSequence(seed) if seed is not None else None

    def _next_seed(self):
        if self._seedseq is None:
            return _random.next_seed()
        return int(self._seedseq.spawn(1)[0].generate_state(1, np.uint64)[0])

    def forward(self, x, training=False):
        self._active = bool(training) and self.rate > 0
        if not self._active:
            return x
        if self.rate >= 1:
            self._zero = True
            y = self._buffer("y", x.shape)
            y.fill(0)
            return y
        self._zero = False
        y = self._buffer("y", x.shape)
        self._noise = None
        if self.noise_shape is not None:
            return self._forward_noise_shape(x, y)
        mask = self._buffer("mask", x.shape, np.uint8)
        # drawn by global sample index: a data-parallel process's rows get the mask they have in
        # the whole batch (offset 0 in one process)
        offset = _random.batch_row_offset() * (x.size // x.shape[0]) if x.ndim and x.shape[0] else 0
        y, self._mask = K.dropout.dropout(x, self.rate, self._next_seed(), out=y, mask=mask, offset=offset)
        return y

    def _forward_noise_shape(self, x, y):
        """The mask is drawn over noise_shape (a scaled 0/1 array, `_noise`) and multiplied in
        broadcast."""
        if len(self.noise_shape) != x.ndim:
            raise ValueError(f"Dropout '{self.name}': noise_shape {self.noise_shape} does not have the rank of the "
                             f"input {x.shape}.")
        shape = tuple(x.shape[j] if d is None else d for j, d in enumerate(self.noise_shape))
        if any(d not in (1, n) for d, n in zip(shape, x.shape)):
            raise ValueError(f"Dropout '{self.name}': noise_shape {self.noise_shape} must be 1 or the input's size "
                             f"on every axis; the input is {x.shape}.")
        ones = self._buffer("ones", shape)
        ones.fill(1)
        noise = self._buffer("noise", shape)
        offset = _random.batch_row_offset() * (ones.size // shape[0]) if shape[0] else 0
        self._noise, _ = K.dropout.dropout(ones, self.rate, self._next_seed(), out=noise,
                                           mask=self._buffer("mask", shape, np.uint8), offset=offset)
        return np.multiply(x, self._noise, out=y)

    def backward(self, dy):
        if not self._active:
            return dy
        dx = self._buffer("dx", dy.shape)
        if self._zero:
            dx.fill(0)
            return dx
        if self._noise is not None:
            return np.multiply(dy, self._noise, out=dx)
        return K.dropout.dropout_backward(dy, self._mask, self.rate, dx=dx)

    def get_config(self):
        c = super().get_config()
        c.update(rate=self.rate, noise_shape=None if self.noise_shape is None else list(self.noise_shape),
                 seed=self.seed)
        return c


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...) in C (channels-last) order."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten: fastnn is channels_last only; received data_format={data_format!r}.")

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        n = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], n)

    def forward(self, x, training=False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._x_shape)

    def get_config(self):
        c = super().get_config()
        c["data_format"] = "channels_last"
        return c


class Reshape(Layer):
    """Reshape the non-batch axes to target_shape (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"Reshape: target_shape must hold positive ints and at most one -1; "
                             f"received {target_shape!r}.")

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return (input_shape[0], *[None if d == -1 else d for d in self.target_shape])
        total = int(np.prod(rest, dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if (-1 in self.target_shape and total % known) or (-1 not in self.target_shape and total != known):
            raise ValueError(f"Reshape '{self.name}': cannot reshape input of shape {shape_str(input_shape)} "
                             f"({total} values per sample) to target_shape {self.target_shape}.")
        return (input_shape[0], *[total // known if d == -1 else d for d in self.target_shape])

    def forward(self, x, training=False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], *self.target_shape)

    def backward(self, dy):
        return dy.reshape(self._x_shape)

    def get_config(self):
        c = super().get_config()
        c["target_shape"] = list(self.target_shape)
        return c


class Permute(Layer):
    """Permute the non-batch axes: dims is 1-indexed, as in Keras (e.g. (2, 1))."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(self.dims)}; received {dims!r}.")
        self._inverse = tuple(int(i) for i in np.argsort((0, *self.dims)))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Permute '{self.name}': dims {self.dims} needs inputs of rank "
                             f"{len(self.dims) + 1}; received shape {shape_str(input_shape)}.")
        return (input_shape[0], *[input_shape[d] for d in self.dims])

    def forward(self, x, training=False):
        xt = x.transpose(0, *self.dims)
        y = self._buffer("y", xt.shape)
        np.copyto(y, xt)
        return y

    def backward(self, dy):
        dt = dy.transpose(self._inverse)
        dx = self._buffer("dx", dt.shape)
        np.copyto(dx, dt)
        return dx

    def get_config(self):
        c = super().get_config()
        c["dims"] = list(self.dims)
        return c


class RepeatVector(Layer):
    """(N, F) -> (N, n, F): repeat the input n times."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"RepeatVector '{self.name}' expects inputs of rank 2 (batch, features); "
                             f"received shape {shape_str(input_shape)}.")
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0], self.n, x.shape[1]))
        np.copyto(y, x[:, None, :])
        return y

    def backward(self, dy):
        dx = self._buffer("dx", (dy.shape[0], dy.shape[2]))
        return np.sum(dy, axis=1, out=dx)

    def get_config(self):
        c = super().get_config()
        c["n"] = self.n
        return c


def _warn_alpha(cls, kwargs, new):
    if "alpha" in kwargs:
        warnings.warn(f"{cls}: argument `alpha` is deprecated; use `{new}` instead.", UserWarning, stacklevel=3)
        return kwargs.pop("alpha")
    return None


# ---------------------------------------------------------------------------------------------
class Identity(Layer):
    """Returns its input unchanged (Keras's keras.layers.Identity)."""

    supports_masking = True

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


_SAFE_MODE = [True]   # set by load_model(safe_mode=...) while it rebuilds a model


class safe_mode_scope:
    """`with safe_mode_scope(False):` allows Lambda layers holding Python bytecode to load."""

    def __init__(self, safe_mode=True):
        self.safe_mode = bool(safe_mode)

    def __enter__(self):
        _SAFE_MODE.append(self.safe_mode)

    def __exit__(self, *exc):
        _SAFE_MODE.pop()


class Lambda(Layer):
    """Wraps a Python function of NumPy arrays as a layer (Keras's keras.layers.Lambda).

    fastnn has no autodiff tape, so a Lambda runs forward only (predict, evaluate, feature
    extraction); training through it raises. A saved Lambda holds Python bytecode, so loading
    it is refused unless `load_model(..., safe_mode=False)` (or the function is passed by name
    in `custom_objects`), as Keras does.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda: function must be callable; received {function!r}.")
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape = output_shape
        if mask is not None:
            raise ValueError("Lambda: mask is not supported by fastnn.")

    def compute_output_shape(self, input_shape):
        if self._output_shape is not None:
            shape = self._output_shape(input_shape) if callable(self._output_shape) else self._output_shape
            batch = input_shape[0][0] if _is_shapes(input_shape) else input_shape[0]
            return (batch, *tuple(shape))   # Keras: output_shape excludes the batch axis
        # infer by calling the function on a small batch of zeros, as Keras traces it
        multi = _is_shapes(input_shape)
        shapes = input_shape if multi else [input_shape]
        probe = [np.zeros((2, *[1 if d is None else d for d in s[1:]]), FLOATX) for s in shapes]
        y = np.asarray(self.function(probe if multi else probe[0], **self.arguments))
        return (input_shape[0] if not multi else input_shape[0][0], *y.shape[1:])

    def forward(self, x, training=False):
        return np.ascontiguousarray(self.function(x, **self.arguments), dtype=FLOATX)

    def backward(self, dy):
        raise NotImplementedError(f"Lambda '{self.name}': fastnn cannot differentiate Python code (no autodiff "
                                  f"tape). Use a built-in layer, or write a Layer with forward() and backward() "
                                  f"(docs/layers.md); Lambda works for inference.")

    def get_config(self):
        import base64
        import marshal
        fn = self.function
        code = base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")
        config = {**super().get_config(), "function": {"class_name": "__lambda__", "config": {
            "code": code, "name": getattr(fn, "__name__", "lambda"),
            "defaults": list(fn.__defaults__) if getattr(fn, "__defaults__", None) else None}},
            "arguments": self.arguments}
        if self._output_shape is not None and not callable(self._output_shape):
            config["output_shape"] = list(self._output_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config.pop("dtype", None)
        fn = config.pop("function")
        name = fn["config"].get("name")
        if custom_objects and name in custom_objects:
            function = custom_objects[name]
        elif _SAFE_MODE[-1]:
            raise ValueError(
                f"Lambda '{config.get('name')}': the saved model holds a Python function ({name}) as bytecode. "
                f"Loading it would run code from the file, so it is refused by default. If you trust the "
                f"file, pass safe_mode=False to load_model (or the function by name in custom_objects).")
        else:
            import base64
            import marshal
            import types
            code = marshal.loads(base64.b64decode(fn["config"]["code"]))
            defaults = fn["config"].get("defaults")
            function = types.FunctionType(code, globals(), name, tuple(defaults) if defaults else None)
        return cls(function, **config)


def _is_shapes(s):
    return isinstance(s, list) and bool(s) and all(isinstance(e, (tuple, list)) for e in s)
