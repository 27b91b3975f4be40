"""fastnn.regularizers: Keras 3 weight penalties with their gradients, on float32 arrays.

    >>> reg = fastnn.regularizers.get("l2")            # L2(l2=0.01): 0.01 * sum(w**2), no 1/2
    >>> reg(w), reg.gradient(w)                        # float penalty, dpenalty/dw (float32)

The model adds `reg(w)` to the loss and `reg.gradient(w)` to w's gradient in the arena.
Names are Keras 3's: "l1", "l2", "l1l2" (L1L2's own defaults l1=0, l2=0, as Keras 3 resolves
it), "orthogonal_regularizer"; plus tf.keras's "l1_l2", the function l1_l2(l1=0.01, l2=0.01).
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from fastnn._naming import ConfigMixin, deserialize_object, serialize_object

__all__ = ["Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "l1_l2", "get", "serialize",
           "deserialize"]


def _factor(value, name, cls):
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer))
            or math.isinf(value) or math.isnan(value) or value < 0):
        raise ValueError(f"{cls}: invalid value for argument {name}: expected a non-negative float; "
                         f"received {name}={value!r}.")
    return float(value)


class Regularizer(ConfigMixin):
    """Base class: `reg(w)` -> float penalty; `reg.gradient(w)` -> float32 d penalty / dw."""

    def __call__(self, w) -> float:
        return 0.0

    def gradient(self, w) -> np.ndarray:
        return np.zeros(np.shape(w), np.float32)


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w**2) (defaults l1=0.0, l2=0.0, as Keras)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1", type(self).__name__)
        self.l2 = _factor(0.0 if l2 is None else l2, "l2", type(self).__name__)

    def __call__(self, w) -> float:
        w = np.asarray(w)  # summed in float64 (as precise as the float32 inputs allow)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(w), dtype=np.float64))
        if self.l2:
            penalty += self.l2 * float(np.sum(np.square(w.astype(np.float64))))
        return penalty

    def gradient(self, w) -> np.ndarray:
        """l1 * sign(w) + 2 * l2 * w (float32; sign(0) = 0, the subgradient autodiff picks)."""
        w = np.asarray(w, np.float32)
        g = np.zeros(w.shape, np.float32)
        if self.l1:
            g += np.float32(self.l1) * np.sign(w)
        if self.l2:
            g += np.float32(2.0 * self.l2) * w
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|w|) (default l1=0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(w**2) (default l2=0.01; no 1/2 factor)."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean |<u_i, u_j>| over pairs i<j of the L2-normalised rows (or columns) of 2-D w."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _factor(factor, "factor", "OrthogonalRegularizer")
        if mode not in ("rows", "columns"):
            raise ValueError("OrthogonalRegularizer: invalid value for argument mode: expected "
                             f"'rows' or 'columns'; received mode={mode!r}.")
        self.mode = mode

    def _prepare(self, w):
        w = np.asarray(w, np.float64)
        if w.ndim != 2:
            raise ValueError(f"OrthogonalRegularizer: inputs must have rank 2; received shape {w.shape}.")
        return w if self.mode == "rows" else w.T

    @staticmethod
    def _normalize(a):
        # Keras: x * min(rsqrt(sum x^2), 1/epsilon)
        inv = np.minimum(1.0 / np.sqrt(np.sum(a * a, axis=1, keepdims=True)), 1e7)
        return a * inv, inv

    def __call__(self, w) -> float:
        a = self._prepare(w)
        u, _ = self._normalize(a)
        n = a.shape[0]
        p = u @ u.T
        np.fill_diagonal(p, 0.0)
        return float(self.factor * 0.5 * np.sum(np.abs(p)) / (n * (n - 1) / 2.0))

    def gradient(self, w) -> np.ndarray:
        a = self._prepare(w)
        u, inv = self._normalize(a)
        n = a.shape[0]
        p = u @ u.T
        s = np.sign(p)
        np.fill_diagonal(s, 0.0)
        du = (self.factor * 0.5 / (n * (n - 1) / 2.0)) * 2.0 * (s @ u)
        # through u = a * inv (inv = 1/||a|| where not capped): du -> da
        capped = inv >= 1e7
        da = np.where(capped, du * inv, inv * (du - u * np.sum(du * u, axis=1, keepdims=True)))
        da = da if self.mode == "rows" else da.T
        return da.astype(np.float32)

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


def l1_l2(l1=0.01, l2=0.01) -> L1L2:
    """tf.keras's helper: an L1L2 with both factors 0.01 by default (the string "l1_l2")."""
    return L1L2(l1=l1, l2=l2)


_OBJECTS = {"Regularizer": Regularizer, "L1": L1, "L2": L2, "L1L2": L1L2,
            "OrthogonalRegularizer": OrthogonalRegularizer,
            "regularizer": Regularizer, "l1": L1, "l2": L2, "l1l2": L1L2,
            "orthogonal_regularizer": OrthogonalRegularizer}


def serialize(regularizer) -> dict:
    """Keras-style dict {"module", "class_name", "config", "registered_name"}."""
    return serialize_object(regularizer, "fastnn.regularizers")


def deserialize(config, custom_objects=None) -> Regularizer:
    """A regularizer from a name or a dict from serialize()."""
    return deserialize_object("regularizer", config, _OBJECTS, custom_objects)


def get(identifier):
    """Resolve a regularizer: a name ("l2"), dict, instance, class or callable; None stays None."""
    if identifier is None:
        return None
    if identifier == "l1_l2":
        return l1_l2()
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}. Pass a name such "
                     "as 'l2', a dict from serialize() or a Regularizer.")
