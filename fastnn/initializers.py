"""fastnn.initializers: Keras 3 weight initializers returning float32 NumPy arrays.

    >>> init = fastnn.initializers.get("glorot_uniform")
    >>> w = init((784, 128))           # float32 (784, 128), U(+-sqrt(6 / (784 + 128)))

Fans, limits and the truncated-normal stddev correction (0.87962566103423978) are Keras's
(keras/src/initializers/random_initializers.py). With `seed=None` every call draws from
`fastnn._random.generator()`, so `fastnn.utils.set_random_seed(s)` makes a run reproducible;
with an int seed every call returns the same values (as Keras's int-seeded initializers do).
The generator is NumPy's, so draws differ from Keras's backend RNG: distributions match.
"""
from __future__ import annotations

import inspect
import math
import re

import numpy as np

from fastnn import _random
from fastnn._naming import deserialize_object, serialize_object

__all__ = [
    "Initializer", "Constant", "Zeros", "Ones", "Identity", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform",
    "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal", "compute_fans", "get",
    "serialize", "deserialize",
]

TRUNCATED_STDDEV_CORRECTION = 0.87962566103423978  # stddev of N(0,1) truncated to (-2, 2)


def _shape(shape, fn):
    try:
        shape = tuple(int(s) for s in (shape if np.iterable(shape) else (shape,)))
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: shape must be a tuple of ints; received {shape!r}.") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{fn}: shape must have non-negative sizes; received {shape!r}.")
    return shape


def _dtype(dtype):
    return np.dtype("float32" if dtype is None else dtype)


def compute_fans(shape, input_axes=None, output_axes=None):
    """(fan_in, fan_out) as Keras: 2-D (in, out); conv kernels receptive field x (in, out)."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return (int(np.prod([shape[a] for a in input_axes])),
                int(np.prod([shape[a] for a in output_axes])))
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    receptive = int(np.prod(shape[:-2]))
    return int(shape[-2] * receptive), int(shape[-1] * receptive)


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Initializer:
    """Base class: `init(shape, dtype="float32")` -> a new array of that shape and dtype."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(shape, dtype).")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def clone(self):
        return self.__class__.from_config(self.get_config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class RandomInitializer(Initializer):
    """An initializer that draws: seed None -> the global fastnn stream, int -> fixed draws."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{type(self).__name__}: seed must be an int or None; received {seed!r}.")
        self.seed = None if seed is None else int(seed)

    def _rng(self) -> np.random.Generator:
        if self.seed is None:
            return _random.generator()
        return np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


def _truncated_normal(rng, shape, mean, stddev):
    """N(mean, stddev) truncated to mean +- 2 stddev (Keras/TF truncated_normal), float64."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) >= 2.0
    while bad.any():  # redraw the rejected ~4.6 % until every value lies inside (-2, 2)
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) >= 2.0
    return out * stddev + mean


class RandomNormal(RandomInitializer):
    """N(mean, stddev) draws (default mean 0, stddev 0.05)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev = mean, stddev
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, type(self).__name__)
        return self._rng().normal(self.mean, self.stddev, shape).astype(_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomInitializer):
    """N(mean, stddev) draws truncated at two stddev (default mean 0, stddev 0.05)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev = mean, stddev
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, type(self).__name__)
        return _truncated_normal(self._rng(), shape, self.mean, self.stddev).astype(_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """U(minval, maxval) draws (default -0.05, 0.05)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval = minval, maxval
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, type(self).__name__)
        return self._rng().uniform(self.minval, self.maxval, shape).astype(_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(RandomInitializer):
    """Draws scaled to the fans: stddev (or limit) from scale / fan_in, fan_out or fan_avg."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        if scale <= 0.0:
            raise ValueError(f"VarianceScaling: scale must be a positive float; received scale={scale!r}.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be one of 'fan_in', 'fan_out', 'fan_avg'; "
                             f"received mode={mode!r}.")
        distribution = str(distribution).lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError("VarianceScaling: distribution must be one of 'uniform', 'truncated_normal', "
                             f"'untruncated_normal' (or 'normal'); received distribution={distribution!r}.")
        self.scale, self.mode, self.distribution = scale, mode, distribution
        self.input_axes, self.output_axes = input_axes, output_axes
        super().__init__(seed)

    def scaled_variance(self, shape) -> float:
        """scale / max(1, fan) for `shape` (what the stddev or limit derives from)."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale / max(1.0, fan)

    def limit(self, shape) -> float:
        """The uniform bound sqrt(3 * scale / fan)."""
        return math.sqrt(3.0 * self.scaled_variance(shape))

    def stddev(self, shape) -> float:
        """The normal stddev, including Keras's truncation correction for truncated_normal."""
        s = math.sqrt(self.scaled_variance(shape))
        return s / TRUNCATED_STDDEV_CORRECTION if self.distribution == "truncated_normal" else s

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, type(self).__name__)
        rng = self._rng()
        if self.distribution == "uniform":
            lim = self.limit(shape)
            out = rng.uniform(-lim, lim, shape)
        elif self.distribution == "truncated_normal":
            out = _truncated_normal(rng, shape, 0.0, self.stddev(shape))
        else:
            out = rng.normal(0.0, self.stddev(shape), shape)
        return out.astype(_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class _FixedVarianceScaling(VarianceScaling):
    _SCALE, _MODE, _DIST = 1.0, "fan_in", "truncated_normal"

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(self._SCALE, self._MODE, self._DIST, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """U(+-sqrt(6 / (fan_in + fan_out)))."""
    _SCALE, _MODE, _DIST = 1.0, "fan_avg", "uniform"


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal, stddev sqrt(2 / (fan_in + fan_out)) / 0.8796."""
    _SCALE, _MODE, _DIST = 1.0, "fan_avg", "truncated_normal"


class HeUniform(_FixedVarianceScaling):
    """U(+-sqrt(6 / fan_in))."""
    _SCALE, _MODE, _DIST = 2.0, "fan_in", "uniform"


class HeNormal(_FixedVarianceScaling):
    """Truncated normal, stddev sqrt(2 / fan_in) / 0.8796."""
    _SCALE, _MODE, _DIST = 2.0, "fan_in", "truncated_normal"


class LecunUniform(_FixedVarianceScaling):
    """U(+-sqrt(3 / fan_in))."""
    _SCALE, _MODE, _DIST = 1.0, "fan_in", "uniform"


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal, stddev sqrt(1 / fan_in) / 0.8796."""
    _SCALE, _MODE, _DIST = 1.0, "fan_in", "truncated_normal"


class Orthogonal(RandomInitializer):
    """A (semi-)orthogonal matrix times gain, over shape (prod(shape[:-1]), shape[-1])."""

    def __init__(self, gain=1.0, seed=None):
        self.gain = gain
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, "Orthogonal")
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: the tensor to initialize must be at least two-dimensional; "
                             f"received shape={shape} of rank {len(shape)}.")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))  # Keras: make Q unique (uniform over the orthogonal group)
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "gain": self.gain}


class Constant(Initializer):
    """Every element equal to `value`."""

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        return np.full(_shape(shape, "Constant"), self.value, dtype=_dtype(dtype))

    def get_config(self):
        v = self.value
        return {"value": v.tolist() if isinstance(v, np.ndarray) else v}


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None):
        return np.zeros(_shape(shape, "Zeros"), dtype=_dtype(dtype))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None):
        return np.ones(_shape(shape, "Ones"), dtype=_dtype(dtype))


class Identity(Initializer):
    """gain times the identity (2-D shapes only, rectangular allowed)."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, "Identity")
        if len(shape) != 2:
            raise ValueError("Identity: the identity initializer can only be used for 2D matrices; "
                             f"received shape={shape} of rank {len(shape)}.")
        return (self.gain * np.eye(*shape)).astype(_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


_CLASSES = [Initializer, Constant, Identity, Ones, Zeros, GlorotNormal, GlorotUniform, HeNormal,
            HeUniform, LecunNormal, LecunUniform, Orthogonal, RandomNormal, RandomUniform,
            TruncatedNormal, VarianceScaling]
_OBJECTS = {c.__name__: c for c in _CLASSES}
_OBJECTS.update({_snake(c.__name__): c for c in _CLASSES})
_OBJECTS.update({"IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal,
                 "normal": RandomNormal, "uniform": RandomUniform, "one": Ones, "zero": Zeros})


def serialize(initializer) -> dict:
    """Keras-style dict {"module", "class_name", "config", "registered_name"}."""
    return serialize_object(initializer, "fastnn.initializers")


def deserialize(config, custom_objects=None) -> Initializer:
    """An initializer from a name or a dict from serialize()."""
    return deserialize_object("initializer", config, _OBJECTS, custom_objects)


def get(identifier):
    """Resolve an initializer: name ("glorot_uniform"), dict, instance, class, callable or array.

    Returns a callable `init(shape, dtype="float32")` -> ndarray; None stays None.
    """
    if identifier is None:
        return None
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if isinstance(identifier, (np.ndarray, np.generic)):
        value = np.asarray(identifier)

        def initialize_fn(shape, dtype=None):
            if tuple(shape) != value.shape:
                raise ValueError(f"initializer: expected shape {value.shape} for an array used as "
                                 f"initializer; received shape={tuple(shape)}.")
            return value.astype(_dtype(dtype))
        return initialize_fn
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier: {identifier!r}. Pass a name such "
                     "as 'glorot_uniform', a dict from serialize(), an Initializer or a callable.")
