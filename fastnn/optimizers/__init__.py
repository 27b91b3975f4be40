"""fastnn.optimizers: Keras 3 optimizers over one flat float32 parameter arena.

    >>> opt = fastnn.optimizers.get("adam")                  # Adam(learning_rate=0.001, ...)
    >>> opt.build(n_params, segments)                        # the model does this once
    >>> opt.apply_flat(params, grads)                        # one fused kernel call per step

Names, arguments and defaults are Keras 3's (SGD, RMSprop, Adagrad, Adadelta, Adam, AdamW,
Adamax, Nadam with learning_rate, their own hyperparameters, weight_decay, clipnorm, clipvalue,
global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
gradient_accumulation_steps, name). A step is Keras's order: unscale by loss_scale_factor ->
clip -> decoupled weight decay -> update (all inside `fastnn.kernels.optim.step`) -> EMA ->
`iterations += 1`. A LearningRateSchedule is evaluated at `iterations` before each step.

Keras-style use on separate NumPy arrays also works (they are updated in place):

    >>> opt.apply_gradients(zip(grads, variables))           # or opt.apply(grads, variables)
"""
from __future__ import annotations

import importlib
import inspect
import numbers
import re

import numpy as np

from fastnn._naming import deserialize_object, identifier_error, serialize_object
from fastnn.optimizers import schedules
from fastnn.optimizers.schedules import LearningRateSchedule

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW", "Adamax", "Nadam",
           "schedules", "get", "serialize", "deserialize"]

_optim_cache: dict = {}


def _optim():
    """fastnn.kernels.optim (the fused step), else fastnn.reference.optim, else a clear error."""
    if "mod" in _optim_cache:
        return _optim_cache["mod"]
    for path in ("fastnn.kernels.optim", "fastnn.reference.optim"):
        try:
            mod = importlib.import_module(path)
        except ImportError:
            continue
        _optim_cache["mod"] = mod
        return mod
    raise NotImplementedError("fastnn.optimizers needs fastnn.kernels.optim (the fused optimizer step); "
                              "it is not built in this installation. Rebuild with "
                              "`pip install --no-build-isolation -e .`.")


def _snake(name):
    """Keras's to_snake_case: SGD -> sgd, RMSprop -> rm_sprop, AdamW -> adam_w."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _nonneg_float(value, name, cls, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{cls}: argument {name} must be a non-negative float{' or None' if allow_none else ''}; "
                         f"received {name}={value!r}.")
    return float(value)


class Optimizer:
    """Base class of the fused Keras optimizers (see the module docstring).

    Subclasses set `_kind` (the fastnn.kernels.optim rule) and `_hyper` (their own Keras
    argument names, stored as attributes).
    """

    _kind = None
    _hyper: tuple = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise ValueError(f"{cls}: argument(s) not recognized: {kwargs}. Keras 3 spells the learning rate "
                             "`learning_rate` (not `lr`) and has no `decay`: use a schedule from "
                             "fastnn.optimizers.schedules.")
        self.name = name or _snake(cls)
        self._learning_rate = None
        self.learning_rate = learning_rate
        self.weight_decay = _nonneg_float(weight_decay, "weight_decay", cls)
        self.clipnorm = _nonneg_float(clipnorm, "clipnorm", cls)
        self.clipvalue = _nonneg_float(clipvalue, "clipvalue", cls)
        self.global_clipnorm = _nonneg_float(global_clipnorm, "global_clipnorm", cls)
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be set; received "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}.")
        self.use_ema = bool(use_ema)
        if self.use_ema and not (isinstance(ema_momentum, numbers.Real) and 0 <= ema_momentum <= 1):
            raise ValueError(f"{cls}: ema_momentum must be a float between 0 and 1; received {ema_momentum!r}.")
        self.ema_momentum = ema_momentum
        if ema_overwrite_frequency is not None and (isinstance(ema_overwrite_frequency, bool) or not isinstance(
                ema_overwrite_frequency, numbers.Integral) or ema_overwrite_frequency < 1):
            raise ValueError(f"{cls}: ema_overwrite_frequency must be an integer >= 1 or None; received "
                             f"{ema_overwrite_frequency!r}.")
        self.ema_overwrite_frequency = ema_overwrite_frequency
        if loss_scale_factor is not None and not (isinstance(loss_scale_factor, numbers.Real) and loss_scale_factor > 0):
            raise ValueError(f"{cls}: loss_scale_factor must be a positive float or None; received {loss_scale_factor!r}.")
        self.loss_scale_factor = loss_scale_factor
        if gradient_accumulation_steps is not None and (isinstance(gradient_accumulation_steps, bool) or not isinstance(
                gradient_accumulation_steps, numbers.Integral) or gradient_accumulation_steps < 2):
            raise ValueError(f"{cls}: gradient_accumulation_steps must be an integer >= 2 or None; received "
                             f"{gradient_accumulation_steps!r}.")
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._iterations = 0   # every apply call (Keras's raw counter; schedules read it)
        self.built = False
        self._vars_key = None

    # ----------------------------------------------------------------------- hyperparameters
    def _hyper_values(self) -> dict:
        return {h: getattr(self, h) for h in self._hyper}

    # (low, high, high inclusive) of every real hyperparameter, as the Keras docs state them
    _RANGES = {"momentum": (0.0, 1.0, True), "rho": (0.0, 1.0, True), "beta_1": (0.0, 1.0, False),
               "beta_2": (0.0, 1.0, False), "epsilon": (0.0, np.inf, True),
               "initial_accumulator_value": (0.0, np.inf, True)}

    def _validate_hyper(self):
        cls = type(self).__name__
        for name in self._hyper:
            value = getattr(self, name)
            if name in self._RANGES:
                low, high, closed = self._RANGES[name]
                ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and np.isfinite(value)
                      and low <= value and (value <= high if closed else value < high))
                if not ok:
                    bound = f"[{low}, {high}]" if closed else f"[{low}, {high})"
                    raise ValueError(f"{cls}: {name} must be a float in {bound}; received {name}={value!r}.")
                setattr(self, name, float(value))

    @property
    def iterations(self) -> int:
        """Steps taken (with gradient accumulation: real updates, calls // steps, as Keras)."""
        if self.gradient_accumulation_steps:
            return self._iterations // self.gradient_accumulation_steps
        return self._iterations

    @iterations.setter
    def iterations(self, value):
        self._iterations = int(value) * (self.gradient_accumulation_steps or 1)

    # ----------------------------------------------------------------------- learning rate
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (a schedule is evaluated at `iterations`)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return float(lr(self._iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule) or (callable(value) and not isinstance(value, numbers.Real)):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError("This optimizer was created with a LearningRateSchedule as its learning_rate, hence "
                            "its learning rate is not settable. Create the optimizer with a float "
                            "learning_rate to set it (e.g. from a callback).")
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        self._learning_rate = _nonneg_float(value, "learning_rate", type(self).__name__, allow_none=False)

    # ----------------------------------------------------------------------- state
    def build(self, n_params, segments=None):
        """Create the state for a flat arena of n_params float32 values cut at `segments`.

        n_params: int; segments: int64 offsets (k+1,) of the k variables (None: one variable).
        Keras-style `build(list_of_arrays)` also works.
        """
        if isinstance(n_params, (list, tuple)):
            self._build_for_arrays(list(n_params))
            return
        if isinstance(n_params, bool) or not isinstance(n_params, numbers.Integral) or n_params < 0:
            raise ValueError(f"{type(self).__name__}.build: n_params must be a non-negative int; received {n_params!r}.")
        n = int(n_params)
        if segments is None:
            segments = np.array([0, n], np.int64)
        segments = np.ascontiguousarray(segments, dtype=np.int64)
        if segments.ndim != 1 or segments.size < 1 or segments[0] != 0 or segments[-1] != n or np.any(np.diff(segments) < 0):
            raise ValueError(f"{type(self).__name__}.build: segments must be non-decreasing int64 offsets from 0 to "
                             f"n_params={n}; received {segments!r}.")
        self._validate_hyper()
        self._n, self.segments = n, segments
        self._slots = _optim().init_slots(self._kind, n, **self._hyper_values())
        self._ema = None
        self._acc = np.zeros(n, np.float32) if self.gradient_accumulation_steps else None
        self.built = True

    def variables(self) -> list:
        """The optimizer state as arrays: [iterations, learning_rate, *slots, (ema), (accumulator)].

        learning_rate is NaN when it comes from a schedule (the schedule lives in get_config).
        """
        if not self.built:
            return [np.array(self._iterations, np.int64)]
        lr = self._learning_rate
        lr = np.float32(np.nan) if not isinstance(lr, float) else np.float32(lr)
        out = [np.array(self._iterations, np.int64), np.array(lr, np.float32)]
        out += [self._slots[k] for k in self._slots]
        if self.use_ema:
            out.append(self._ema if self._ema is not None else np.zeros(self._n, np.float32))
        if self._acc is not None:
            out.append(self._acc)
        return out

    def set_variables(self, values) -> None:
        """Restore the state saved by variables() (same optimizer configuration, built)."""
        values = list(values)
        if not self.built:
            raise ValueError(f"{type(self).__name__}.set_variables: build the optimizer first (the model does on "
                             "compile/fit) so the state buffers exist.")
        mine = self.variables()
        if len(values) != len(mine):
            raise ValueError(f"{type(self).__name__}.set_variables: expected {len(mine)} arrays (iterations, "
                             f"learning_rate, {', '.join(self._slots)}...); received {len(values)}.")
        for i, (dst, src) in enumerate(zip(mine, values)):
            src = np.asarray(src)
            if src.shape != dst.shape:
                raise ValueError(f"{type(self).__name__}.set_variables: variable {i} has shape {dst.shape}; "
                                 f"received shape {src.shape}.")
        self._iterations = int(np.asarray(values[0]))
        lr = float(np.asarray(values[1]))
        if isinstance(self._learning_rate, float) and np.isfinite(lr):
            self._learning_rate = lr
        k = 2
        for name in self._slots:
            self._slots[name][...] = values[k]
            k += 1
        if self.use_ema:
            self._ema = np.array(values[k], np.float32)
            k += 1
        if self._acc is not None:
            self._acc[...] = values[k]

    # ----------------------------------------------------------------------- the step
    def apply_flat(self, params, grads) -> None:
        """One Keras step in place over the flat float32 params (n,) given grads (n,).

        grads may be modified (loss-scale unscaling, gradient accumulation).
        """
        if not self.built:
            raise ValueError(f"{type(self).__name__}.apply_flat: call build(n_params, segments) first.")
        if self.loss_scale_factor is not None:
            np.divide(grads, np.float32(self.loss_scale_factor), out=grads)
        if self._acc is not None:
            steps = self.gradient_accumulation_steps
            if (self._iterations + 1) % steps != 0:
                self._acc += grads
                self._finish_step(params, updated=False)
                return
            grads += self._acc
            grads /= np.float32(steps)
            self._acc.fill(0.0)
        lr = self.learning_rate
        _optim().step(self._kind, params, grads, self._slots, lr=lr, iteration=self.iterations,
                      weight_decay=self.weight_decay or 0.0, clipvalue=self.clipvalue, clipnorm=self.clipnorm,
                      global_clipnorm=self.global_clipnorm, segments=self.segments, **self._hyper_values())
        self._finish_step(params, updated=True)

    def _finish_step(self, params, updated):
        if self.use_ema:
            if self._ema is None:
                self._ema = np.zeros(self._n, np.float32)
            mu = np.float32(self.ema_momentum if self.iterations != 0 else 0.0)
            self._ema *= mu
            self._ema += (np.float32(1) - mu) * params
            if self.ema_overwrite_frequency and (self.iterations + 1) % self.ema_overwrite_frequency == 0:
                params[...] = self._ema
        self._iterations += 1

    def finalize_variable_values(self, params) -> None:
        """With use_ema, copy the moving averages into the flat params (Keras does this after fit)."""
        if self.use_ema and self._ema is not None:
            params[...] = self._ema

    # ----------------------------------------------------------------------- Keras-style arrays
    def _build_for_arrays(self, variables):
        for i, v in enumerate(variables):
            if not isinstance(v, np.ndarray) or v.dtype != np.float32 or not v.flags.writeable:
                raise TypeError(f"{type(self).__name__}: variable {i} must be a writeable float32 numpy array "
                                f"(updated in place); received {type(v).__name__}"
                                f"{'' if not isinstance(v, np.ndarray) else f' of dtype {v.dtype}'}.")
        sizes = [v.size for v in variables]
        segments = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=segments[1:])
        self.build(int(segments[-1]), segments)
        self._vars_key = [(id(v), v.shape) for v in variables]
        self._flat_params = np.empty(self._n, np.float32)
        self._flat_grads = np.empty(self._n, np.float32)

    def apply(self, grads, trainable_variables=None):
        """Keras's apply(grads, variables): update the float32 arrays in place; None grads skip a variable."""
        if trainable_variables is None:
            raise ValueError(f"{type(self).__name__}.apply: pass the variables (float32 numpy arrays) to update.")
        grads, variables = list(grads), list(trainable_variables)
        if len(grads) != len(variables):
            raise ValueError(f"{type(self).__name__}.apply: got {len(grads)} gradients for {len(variables)} variables.")
        if self._vars_key is None:
            self._build_for_arrays(variables)
        elif self._vars_key != [(id(v), v.shape) for v in variables]:
            raise ValueError(f"{type(self).__name__}.apply: this optimizer was built for other variables; "
                             "create one optimizer per set of variables.")
        seg = self.segments
        skipped = []
        for i, (g, v) in enumerate(zip(grads, variables)):
            a, b = seg[i], seg[i + 1]
            self._flat_params[a:b] = v.reshape(-1)
            if g is None:
                skipped.append(i)
                self._flat_grads[a:b] = 0.0
                continue
            g = np.asarray(g, dtype=np.float32)
            if g.shape != v.shape:
                raise ValueError(f"{type(self).__name__}.apply: gradient {i} has shape {g.shape} but its variable "
                                 f"has shape {v.shape}.")
            self._flat_grads[a:b] = g.reshape(-1)
        saved = [(i, {k: s[seg[i]:seg[i + 1]].copy() for k, s in self._slots.items() if s.size == self._n})
                 for i in skipped]
        self.apply_flat(self._flat_params, self._flat_grads)
        for i, state in saved:  # Keras filters variables without gradient out of the step
            for k, s in state.items():
                self._slots[k][seg[i]:seg[i + 1]] = s
        for i, v in enumerate(variables):
            if i not in skipped:
                v[...] = self._flat_params[seg[i]:seg[i + 1]].reshape(v.shape)

    def apply_gradients(self, grads_and_vars):
        """Keras's apply_gradients([(grad, variable), ...]) on float32 numpy arrays (in place)."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self.iterations

    # ----------------------------------------------------------------------- config
    def get_config(self) -> dict:
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = schedules.serialize(lr)
        config = {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                  "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                  "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                  "ema_overwrite_frequency": self.ema_overwrite_frequency,
                  "loss_scale_factor": self.loss_scale_factor,
                  "gradient_accumulation_steps": self.gradient_accumulation_steps}
        config.update(self._hyper_values())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = schedules.deserialize(lr, custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<fastnn.optimizers.{type(self).__name__} name={self.name!r} learning_rate={self._learning_rate!r}>"


def _range(value, name, cls, low=0.0, high=1.0, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            low <= value < high if high_open else low <= value <= high):
        raise ValueError(f"{cls}: {name} must be a float between {low} and {high}; received {name}={value!r}.")
    return float(value)


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum: m = mu*m - lr*g; w += m."""

    _kind, _hyper = "sgd", ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.momentum = _range(momentum, "momentum", "SGD")
        self.nesterov = bool(nesterov)


class RMSprop(Optimizer):
    """v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + eps) (centered, momentum as Keras)."""

    _kind, _hyper = "rmsprop", ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.rho, self.momentum = rho, momentum
        self.epsilon, self.centered = epsilon, bool(centered)
        self._validate_hyper()


class Adagrad(Optimizer):
    """acc += g^2; w -= lr*g/sqrt(acc + eps), acc starting at initial_accumulator_value (0.1)."""

    _kind, _hyper = "adagrad", ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon
        self._validate_hyper()


class Adadelta(Optimizer):
    """Adadelta with Keras's lr (default 0.001) in front of the paper's update."""

    _kind, _hyper = "adadelta", ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.rho, self.epsilon = rho, epsilon
        self._validate_hyper()


class Adam(Optimizer):
    """Adam with Keras's epsilon-hat form (and AMSGrad)."""

    _kind, _hyper = "adam", ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, bool(amsgrad)
        self._validate_hyper()


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004)."""

    _kind = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: argument weight_decay must be a float; received None.")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)


class Adamax(Optimizer):
    """Adam with the infinity norm: u = max(beta_2*u, |g|)."""

    _kind, _hyper = "adamax", ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self._validate_hyper()


class Nadam(Optimizer):
    """Adam with Nesterov momentum and Keras 3's momentum schedule (0.96 ** t)."""

    _kind, _hyper = "nadam", ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self._validate_hyper()


_CLASSES = (SGD, RMSprop, Adagrad, Adadelta, Adam, AdamW, Adamax, Nadam)
_OBJECTS = {**{c.__name__: c for c in _CLASSES}, **{c.__name__.lower(): c for c in _CLASSES}}


def serialize(optimizer) -> dict:
    """Keras-style dict {"module", "class_name", "config", "registered_name"}."""
    return serialize_object(optimizer, "fastnn.optimizers")


def deserialize(config, custom_objects=None) -> Optimizer:
    """An optimizer from a name ("adam") or a dict from serialize()/get_config()."""
    if isinstance(config, str) and config not in _OBJECTS and config.lower() in _OBJECTS:
        config = config.lower()
    return deserialize_object("optimizer", config, _OBJECTS, custom_objects)


def get(identifier) -> Optimizer:
    """Resolve an optimizer: a name ("adam", "sgd", ...), dict, Optimizer instance or class."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if inspect.isclass(identifier) and issubclass(identifier, Optimizer):
        return identifier()
    if identifier is None:
        raise ValueError("Could not interpret optimizer identifier: None. Pass a name such as 'adam'.")
    raise identifier_error("optimizer", identifier, _OBJECTS) if isinstance(identifier, str) else ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Pass a name such as 'adam', a dict from "
        "serialize() or a fastnn.optimizers.Optimizer.")
