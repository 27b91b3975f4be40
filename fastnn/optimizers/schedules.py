"""fastnn.optimizers.schedules: Keras 3 learning-rate schedules, `schedule(step)` -> float.

The optimizer evaluates its schedule at `iterations` (the number of steps already taken)
before every step. Arithmetic is float32, as Keras computes in the dtype of
initial_learning_rate, so the learning rates are bit-for-bit Keras's.

    >>> sched = ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96, staircase=True)
    >>> opt = fastnn.optimizers.SGD(learning_rate=sched)
"""
from __future__ import annotations

import math

import numpy as np

from fastnn._naming import deserialize_object, serialize_object

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
           "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts", "serialize", "deserialize"]

F = np.float32


def _check_steps(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or value <= 0:
        raise ValueError(f"{cls}: argument {name} must be > 0; received {name}={value!r}.")
    return value


class LearningRateSchedule:
    """Base class: `schedule(step)` -> the learning rate (float) at optimizer step `step`."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "__call__(self, step).")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "get_config() in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps) (floor'd with staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_steps(decay_steps, "decay_steps", "ExponentialDecay")
        self.decay_rate, self.staircase, self.name = decay_rate, staircase, name

    def __call__(self, step):
        p = F(step) / F(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return float(F(self.initial_learning_rate) * np.power(F(self.decay_rate), p))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] on (boundaries[i-1], boundaries[i]], ..."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError("PiecewiseConstantDecay: the length of boundaries should be 1 less than the "
                             f"length of values; received boundaries={boundaries!r} of length {len(boundaries)}, "
                             f"and values={values!r} of length {len(values)}.")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must be strictly increasing; received {boundaries!r}.")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return float(F(v))
        return float(F(self.values[-1]))

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end (cycle: restart)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_steps(decay_steps, "decay_steps", "PolynomialDecay")
        self.end_learning_rate, self.power, self.cycle, self.name = end_learning_rate, power, cycle, name

    def __call__(self, step):
        s, d = F(step), F(self.decay_steps)
        if self.cycle:
            d = d * (F(1.0) if s == 0 else F(np.ceil(s / F(self.decay_steps))))
        else:
            s = min(s, d)
        p = s / d
        lr0, end = F(self.initial_learning_rate), F(self.end_learning_rate)
        return float((lr0 - end) * np.power(F(1) - p, F(self.power)) + end)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps) (floor'd with staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_steps(decay_steps, "decay_steps", "InverseTimeDecay")
        self.decay_rate, self.staircase, self.name = decay_rate, staircase, name

    def __call__(self, step):
        p = F(step) / F(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return float(F(self.initial_learning_rate) / (F(1) + F(self.decay_rate) * p))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup to warmup_target over warmup_steps, then cosine decay to alpha * lr."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_steps(decay_steps, "decay_steps", "CosineDecay")
        self.alpha, self.name, self.warmup_target, self.warmup_steps = alpha, name, warmup_target, warmup_steps

    def _decay(self, step, decay_steps, lr):
        cosine = F(0.5) * (F(1) + np.cos(F(math.pi) * (step / decay_steps)))
        return lr * (F(1 - self.alpha) * cosine + F(self.alpha))

    def __call__(self, step):
        lr0, d, s = F(self.initial_learning_rate), F(self.decay_steps), F(step)
        if self.warmup_target is None:
            return float(self._decay(min(s, d), d, lr0))
        target, w = F(self.warmup_target), F(self.warmup_steps)
        s = min(s, d + w)
        if s < w:
            return float((target - lr0) * (s / w) + lr0)
        return float(self._decay(s - w, d, target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): periods grow by t_mul, peaks shrink by m_mul."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0, name="SGDRDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = _check_steps(first_decay_steps, "first_decay_steps", "CosineDecayRestarts")
        self._t_mul, self._m_mul, self.alpha, self.name = t_mul, m_mul, alpha, name

    def __call__(self, step):
        frac = F(step) / F(self.first_decay_steps)
        t_mul = F(self._t_mul)
        if t_mul == 1.0:
            i = np.floor(frac)
            frac = frac - i
        else:
            i = np.floor(np.log(F(1) - frac * (F(1) - t_mul)) / np.log(t_mul))
            sum_r = (F(1) - np.power(t_mul, i)) / (F(1) - t_mul)
            frac = (frac - sum_r) / np.power(t_mul, i)
        cosine = F(0.5) * np.power(F(self._m_mul), i) * (F(1) + np.cos(F(math.pi) * frac))
        return float(F(self.initial_learning_rate) * (F(1 - self.alpha) * cosine + F(self.alpha)))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self._t_mul, "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


_OBJECTS = {c.__name__: c for c in (LearningRateSchedule, ExponentialDecay, PiecewiseConstantDecay,
                                    PolynomialDecay, InverseTimeDecay, CosineDecay, CosineDecayRestarts)}


def serialize(schedule) -> dict:
    """Keras-style dict {"module", "class_name", "config", "registered_name"}."""
    return serialize_object(schedule, "fastnn.optimizers.schedules")


def deserialize(config, custom_objects=None) -> LearningRateSchedule:
    """A schedule from a dict produced by serialize() (Keras's own dicts work too)."""
    return deserialize_object("learning rate schedule", config, _OBJECTS, custom_objects)
