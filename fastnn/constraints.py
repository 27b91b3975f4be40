"""fastnn.constraints: Keras 3 weight constraints, `c(w)` -> the projected float32 array.

The model applies them after every optimizer step: `w[...] = c(w)`. Norms are taken over
`axis` with keepdims and Keras's epsilon 1e-7 in the divisor, as keras/src/constraints.
Names: "max_norm", "non_neg", "unit_norm", "min_max_norm" (and the class names).
"""
from __future__ import annotations

import inspect

import numpy as np

from fastnn._naming import ConfigMixin, deserialize_object, serialize_object

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "get", "serialize",
           "deserialize"]

EPSILON = 1e-7


def _norms(w, axis):
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


class Constraint(ConfigMixin):
    """Base class: identity. `c(w)` returns a new float32 array of w's shape."""

    def __call__(self, w):
        return np.asarray(w, np.float32)


class MaxNorm(Constraint):
    """Rescale slices along `axis` whose L2 norm exceeds max_value (defaults 2, axis 0)."""

    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        w = np.asarray(w, np.float32)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return (w * (desired / (np.float32(EPSILON) + norms))).astype(np.float32)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """max(w, 0)."""

    def __call__(self, w):
        return np.maximum(np.asarray(w, np.float32), np.float32(0))


class UnitNorm(Constraint):
    """w / (eps + ||w||) along `axis` (default 0)."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w, np.float32)
        return (w / (np.float32(EPSILON) + _norms(w, self.axis))).astype(np.float32)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Move slice norms toward [min_value, max_value] at `rate` (defaults 0, 1, 1, axis 0)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        w = np.asarray(w, np.float32)
        norms = _norms(w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return (w * (desired / (np.float32(EPSILON) + norms))).astype(np.float32)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


_CLASSES = {"Constraint": Constraint, "MaxNorm": MaxNorm, "NonNeg": NonNeg,
            "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm}
_OBJECTS = {**_CLASSES, "constraint": Constraint, "max_norm": MaxNorm, "non_neg": NonNeg,
            "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm}


def serialize(constraint) -> dict:
    """Keras-style dict {"module", "class_name", "config", "registered_name"}."""
    return serialize_object(constraint, "fastnn.constraints")


def deserialize(config, custom_objects=None) -> Constraint:
    """A constraint from a name or a dict from serialize()."""
    return deserialize_object("constraint", config, _OBJECTS, custom_objects)


def get(identifier):
    """Resolve a constraint: a name ("max_norm"), dict, instance, class or callable; None stays None."""
    if identifier is None:
        return None
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret constraint identifier: {identifier!r}. Pass a name such "
                     "as 'max_norm', a dict from serialize() or a Constraint.")
