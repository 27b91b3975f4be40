"""The Layer base class, its weights (Variable) and the symbolic tensors of the functional API.

A layer computes on float32 channels-last arrays. Subclasses implement, next to each other:

    build(input_shape)          create weights with add_weight (input_shape includes the batch
                                axis as None, as in Keras)
    compute_output_shape(s)     the output shape for an input shape (batch axis None)
    forward(x, training)        compute y; keep only what backward needs
    backward(dy)                return dx (None when not needed) and write parameter
                                gradients into `variable.grad` (views into the model's arena)

Layers keep their output and gradient buffers per batch shape (`self._buffer`) and pass them
as `out=` to fastnn.kernels, so a steady-state training step allocates nothing. In a model's
planned passes the buffers are views the model's memory plan hands out (fastnn.models.memplan):
a layer keeps in its attributes what its backward reads, and nothing else of a pass survives it.
"""
from __future__ import annotations

import copy
import itertools
import numbers
import re
from collections import OrderedDict

import numpy as np

FLOATX = np.float32

_UIDS: dict[str, itertools.count] = {}


def unique_name(base: str) -> str:
    """Keras-style unique names: dense, dense_1, dense_2, ..."""
    counter = _UIDS.setdefault(base, itertools.count())
    n = next(counter)
    return base if n == 0 else f"{base}_{n}"


def snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return s.replace("2_d", "2d").replace("1_d", "1d").replace("3_d", "3d")


def shape_str(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Variable:
    """One weight: a float32 array (`value`) and its gradient buffer (`grad`).

    Once a model is compiled, `value` and `grad` of trainable weights are views into the
    model's flat parameter and gradient arenas; layers always go through the Variable, so
    the arena can be (re)built without the layer noticing.
    """

    def __init__(self, value, name, trainable=True, regularizer=None, constraint=None, path=None, dtype=None):
        # float32, or (a non-trainable counter such as Normalization's `count`) int32 as in Keras
        # np.require keeps a 0-d value 0-d (np.ascontiguousarray would make it 1-d)
        self.value = np.require(value, dtype=FLOATX if dtype is None else np.dtype(dtype), requirements="C")
        self.grad = np.zeros_like(self.value) if trainable else None
        self.name = name
        self.path = path or name
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype.name

    def numpy(self):
        return self.value.copy()

    def assign(self, value):
        value = np.asarray(value, dtype=self.value.dtype)
        if value.shape != self.value.shape:
            raise ValueError(f"Variable {self.path}: cannot assign a value of shape {value.shape} "
                             f"to a variable of shape {self.value.shape}.")
        self.value[...] = value

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"


class SharedVariable(Variable):
    """The view of a weight that a second call of a shared layer works on: `value` is the
    primary's (whatever array that is now, e.g. after the arena was rebuilt), `grad` a buffer of
    its own, which the model adds into the primary's gradient after the backward pass."""

    def __init__(self, primary):
        self.primary = primary
        self.grad = np.zeros_like(primary.value) if primary.grad is not None else None
        self.name, self.path = primary.name, primary.path
        self.regularizer, self.constraint = None, None   # the model applies them once, to the primary

    @property
    def value(self):
        return self.primary.value

    @value.setter
    def value(self, v):
        self.primary.value = v

    @property
    def trainable(self):
        return self.primary.trainable


class Call:
    """One call of a layer on symbolic tensors (Keras's Node): the layer, the KerasTensors it was
    called on (flat, in argument order) and the KerasTensors it returned."""

    __slots__ = ("layer", "inputs", "outputs")

    def __init__(self, layer, inputs, outputs):
        self.layer, self.inputs, self.outputs = layer, list(inputs), list(outputs)


class KerasTensor:
    """A symbolic tensor of the functional API: a shape (batch axis None) and the call making it
    (`call`: the layer, its input tensors; `index`: which of the call's outputs this is)."""

    def __init__(self, shape, layer=None, inputs=(), name=None, call=None, index=0, dtype=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.layer = layer          # the layer whose call produced this tensor
        self.inputs = list(inputs)  # the KerasTensors that layer was called on
        self.name = name
        self.dtype = dtype or "float32"
        self.call = call
        self.index = index

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={shape_str(self.shape)}, name={self.name}>"


def _is_symbolic(x) -> bool:
    if isinstance(x, KerasTensor):
        return True
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, KerasTensor) for t in x):
        return True
    if isinstance(x, dict) and x and all(isinstance(t, KerasTensor) for t in x.values()):
        return True
    return False


class Layer:
    """Base class of every fastnn layer (Keras's `keras.layers.Layer`)."""

    # how many inputs call() takes: 1, or None for a list of tensors (merge layers)
    _num_inputs = 1
    # Keras masking: a layer that supports masking passes its input's mask on (compute_mask);
    # the model sets `_mask` (the input's mask, or None) before each forward
    supports_masking = False
    _mask = None
    # True for layers that read integer inputs (Embedding): eager calls keep the ids' dtype
    _int_input = False
    # the model's shared-buffer plan for the pass running now (fastnn.models.memplan), or None
    _plan = None

    def __init__(self, trainable=True, name=None, dtype=None, input_shape=None, input_dim=None,
                 batch_size=None, batch_input_shape=None, input_length=None,
                 activity_regularizer=None, **kwargs):
        unknown = set(kwargs) - {"autocast", "dynamic"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword argument(s) {sorted(unknown)}.")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"{type(self).__name__}: fastnn computes in float32; received dtype={dtype!r}.")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._primary = None          # for a call instance (a shared layer's second call): the layer
        self.trainable = bool(trainable)
        self.built = False
        self._variables: list[Variable] = []
        self._bufs: dict = {}
        self._need_dx = True          # False for the first layer of a model (nobody needs dx)
        self._fused_output = False    # the loss passes d/d(logits): skip the activation grad
        self._input_shape_arg = None  # full shape (None, ...) given through kwargs
        self._calls: list[Call] = []  # symbolic calls of this layer, in order (Keras's inbound nodes)
        if batch_input_shape is not None:
            self._input_shape_arg = tuple(batch_input_shape)
        elif input_shape is not None:
            if isinstance(input_shape, numbers.Integral):
                input_shape = (input_shape,)
            self._input_shape_arg = (batch_size, *tuple(input_shape))
        elif input_dim is not None:
            shape = (input_dim,) if input_length is None else (input_length, input_dim)
            self._input_shape_arg = (batch_size, *shape)
        self.input_shape = None       # full input shape once built
        self.output_shape = None
        # Keras 3 adds activity_regularizer(output) / batch size to the loss; the model adds the
        # penalty and its gradient around this layer's output
        if activity_regularizer is not None:
            from fastnn import regularizers
            activity_regularizer = regularizers.get(activity_regularizer)
        self.activity_regularizer = activity_regularizer

    @property
    def trainable(self):
        """False freezes the layer: its weights leave the trainable set (and a
        BatchNormalization runs in inference mode, as Keras). Call instances share the flag."""
        return (self._primary or self).__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value):
        (self._primary or self).__dict__["_trainable"] = bool(value)

    # ---- weights -----------------------------------------------------------------------
    def add_weight(self, shape, initializer="glorot_uniform", name=None, trainable=True,
                   regularizer=None, constraint=None, dtype=None):
        """Create a float32 weight from a Keras initializer (name, class, dict or callable)."""
        from fastnn import constraints, initializers, regularizers
        init = initializers.get(initializer)
        shape = tuple(int(d) for d in shape)
        dtype = None if dtype in (None, "float32", np.float32) else {"int": "int32"}.get(dtype, dtype)
        value = np.asarray(init(shape, dtype="float32"), dtype=dtype or FLOATX).reshape(shape)
        var = Variable(value, name or f"variable_{len(self._variables)}", trainable=trainable, dtype=dtype,
                       regularizer=regularizers.get(regularizer) if regularizer is not None else None,
                       constraint=constraints.get(constraint) if constraint is not None else None,
                       path=f"{self.name}/{name}")
        self._variables.append(var)
        return var

    @property
    def weights(self):
        return list(self._variables)

    @property
    def variables(self):
        return list(self._variables)

    @property
    def trainable_weights(self):
        return [v for v in self._variables if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return list(self._variables)
        return [v for v in self._variables if not v.trainable]

    def get_weights(self):
        """Copies of the weights as float32 arrays, in Keras order and layout."""
        return [v.value.copy() for v in self._variables]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self._variables):
            raise ValueError(f"Layer '{self.name}' expects {len(self._variables)} weight arrays "
                             f"{[v.shape for v in self._variables]}; received {len(weights)}.")
        for v, w in zip(self._variables, weights):
            w = np.asarray(w)
            if w.shape != v.shape:
                raise ValueError(f"Layer '{self.name}': weight '{v.name}' has shape {v.shape}; "
                                 f"received an array of shape {w.shape}.")
        for v, w in zip(self._variables, weights):
            v.value[...] = np.asarray(w, dtype=v.value.dtype)

    def count_params(self):
        return int(sum(v.value.size for v in self._variables))

    @property
    def losses(self):
        """Regularization penalties of this layer's weights (floats)."""
        return [float(v.regularizer(v.value)) for v in self._variables if v.regularizer is not None]

    # ---- building ----------------------------------------------------------------------
    def build(self, input_shape):
        pass

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _maybe_build(self, input_shape):
        if not self.built:
            input_shape = tuple(input_shape) if not _is_list_of_shapes(input_shape) else [tuple(s) for s in input_shape]
            self.input_shape = input_shape
            self.build(input_shape)
            self.built = True
            out = self.compute_output_shape(input_shape)
            self.output_shape = list(out) if _is_list_of_shapes(out) else tuple(out)
        return self.output_shape

    def compute_mask(self, inputs, previous_mask):
        """The mask of this layer's output (Keras): the input's mask if the layer supports
        masking, else None (the mask stops here)."""
        return previous_mask if self.supports_masking else None

    # ---- compute -----------------------------------------------------------------------
    def forward(self, x, training=False):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward().")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward().")

    def call(self, x, training=False):
        """Keras's name for the forward computation."""
        return self.forward(x, training)

    def __call__(self, x, training=False, **kwargs):
        if _is_symbolic(x):
            shapes = [t.shape for t in x] if isinstance(x, (list, tuple)) else x.shape
            out_shape = self._check_and_build(shapes)
            return self._symbolic_call(list(x) if isinstance(x, (list, tuple)) else [x], out_shape)
        # eager call on arrays: build from the data, compute, return a copy (buffers are reused)
        if isinstance(x, (list, tuple)):
            arrays = [np.ascontiguousarray(a, dtype=FLOATX) for a in x]
            shapes = [(None, *a.shape[1:]) for a in arrays]
        else:
            arrays = np.ascontiguousarray(x, dtype=FLOATX)
            shapes = (None, *arrays.shape[1:])
        self._check_and_build(shapes)
        y = self.forward(arrays, training=bool(training))
        return np.array(y, copy=True)

    def _symbolic_call(self, inputs, out_shape):
        """Record a call on KerasTensors; return its output tensor (a list of them when
        compute_output_shape gives a list of shapes: a layer with several outputs)."""
        call = Call(self, inputs, [])
        multi = _is_list_of_shapes(out_shape)
        shapes = out_shape if multi else [out_shape]
        call.outputs = [KerasTensor(sh, layer=self, inputs=inputs, name=self.name, call=call, index=k)
                        for k, sh in enumerate(shapes)]
        self._calls.append(call)
        return list(call.outputs) if multi else call.outputs[0]

    # ---- the functional API's view of the calls (Keras: the first call's tensors) ----
    def _first_call(self, what):
        if not self._calls:
            raise AttributeError(f"Layer '{self.name}' has never been called on a symbolic tensor, so it has no "
                                 f"{what}; call it on fastnn.Input(...) or a layer's output first.")
        return self._calls[0]

    @property
    def output(self):
        outs = self._first_call("output").outputs
        return outs[0] if len(outs) == 1 else list(outs)

    @property
    def input(self):
        ins = self._first_call("input").inputs
        return ins[0] if len(ins) == 1 else list(ins)

    # ---- shared layers ----------------------------------------------------------------
    def _call_instance(self):
        """A twin that runs another call of this layer in a model: the same weights (through
        SharedVariable: same values, gradient buffers of its own), its own activation buffers and
        backward state. The model sums the twins' gradients into this layer's."""
        primary = self._primary or self
        inst = copy.copy(primary)
        inst._primary = primary
        inst._bufs = {}
        inst._plan = None
        shared = {id(v): SharedVariable(v) for v in primary._variables}
        inst._variables = [shared[id(v)] for v in primary._variables]
        for k, v in list(vars(inst).items()):
            if isinstance(v, Variable) and id(v) in shared:
                setattr(inst, k, shared[id(v)])
        return inst

    def _check_and_build(self, input_shape):
        """Build on first use; afterwards check that the input fits what the layer was built for."""
        if self.built and not _is_list_of_shapes(input_shape):
            expected = self.input_shape
            if expected is not None and not _is_list_of_shapes(expected):
                if len(expected) != len(input_shape) or any(
                        e is not None and g is not None and e != g for e, g in zip(expected[1:], input_shape[1:])):
                    raise ValueError(
                        f"Input 0 of layer '{self.name}' is incompatible with the layer: expected shape="
                        f"{shape_str(expected)}, found shape={shape_str(input_shape)}.")
            return self.compute_output_shape(input_shape)
        return self._maybe_build(input_shape)

    # ---- buffers -----------------------------------------------------------------------
    def _buffer(self, key, shape, dtype=FLOATX):
        """A reusable array for `key` and this exact shape (the last two shapes are kept:
        the full batch and the last partial batch of an epoch). During a model's planned pass
        the model's memory plan supplies it (a view that other layers' tensors share when their
        lifetimes do not overlap: fastnn.models.memplan)."""
        plan = self._plan
        if plan is not None:
            buf = plan.take(key, shape, dtype)
            if buf is not None:
                return buf
        slot = self._bufs.get(key)
        if slot is None:
            slot = self._bufs[key] = OrderedDict()
        shape = tuple(shape)
        buf = slot.get(shape)
        if buf is None or buf.dtype != dtype:
            from fastnn.kernels._checks import empty_aligned
            buf = empty_aligned(shape, dtype)     # cache-line aligned: whole-vector loads
            slot[shape] = buf
            if len(slot) > 2:
                slot.popitem(last=False)
        else:
            slot.move_to_end(shape)
        return buf

    def _release_buffers(self):
        self._bufs.clear()

    # ---- config ------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = serialize_obj(self.activity_regularizer)
        if self._input_shape_arg is not None and self.input_shape is None:
            config["batch_input_shape"] = list(self._input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def class_name(layer) -> str:
    """The class name Keras shows for a layer: "Functional" for a plain Model(inputs, outputs)."""
    cls = type(layer)
    if cls.__name__ == "Model" and cls.__module__.startswith("fastnn."):
        return "Functional"
    return cls.__name__


def _is_list_of_shapes(s) -> bool:
    return isinstance(s, list) and bool(s) and all(isinstance(e, (tuple, list)) for e in s)


def serialize_obj(obj):
    """JSON-able form of a Keras object given as string or object with get_config."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "get_config"):
        return {"class_name": type(obj).__name__, "config": obj.get_config()}
    name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
    if name:
        return name
    raise TypeError(f"cannot serialize {obj!r}")
