"""KerasTuner's hyperparameters: `Int`, `Float`, `Choice`, `Boolean`, `Fixed` and the
`HyperParameters` container that a model-building function receives as `hp`.

The classes keep KerasTuner's arguments, defaults, checks and value sets (`values`, used by the
grid search). Each one also says how Optuna samples it (`_suggest`): the sampling is Optuna's,
the ranges and the mapping back to a value are KerasTuner's. Where Optuna has no matching
distribution (a `step` with log sampling, `reverse_log`), Optuna samples an index or the
mirrored log value and `_value` maps it back, so the samplers still see an ordered space.
"""
from __future__ import annotations

import contextlib
import copy
import math
import numbers

SAMPLINGS = ("linear", "log", "reverse_log")


class Parent:
    """Condition: active when hyperparameter `name` takes one of `values`."""

    def __init__(self, name, values):
        values = list(values) if isinstance(values, (list, tuple, set)) else [values]
        if not values:
            raise ValueError(f"conditional_scope: parent_values for {name!r} must not be empty.")
        self.name = name
        self.values = values

    def is_active(self, values):
        return self.name in values and values[self.name] in self.values

    def __eq__(self, other):
        return isinstance(other, Parent) and other.name == self.name and other.values == self.values

    def __repr__(self):
        return f"Parent(name={self.name!r}, values={self.values!r})"

    def get_config(self):
        return {"name": self.name, "values": list(self.values)}


class HyperParameter:
    """Base class: a name, a default and the conditions under which it is active."""

    def __init__(self, name, default=None, conditions=None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string; received {name!r}.")
        self.name = name
        self._default = default
        self.conditions = list(conditions or [])

    @property
    def default(self):
        return self._default

    @property
    def values(self):
        """The finite set of values a grid search walks through."""
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "default": self._default,
                "conditions": [c.get_config() for c in self.conditions]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["conditions"] = [Parent(**c) for c in config.get("conditions", [])]
        return cls(**config)

    def _err(self, message):
        return ValueError(f"HyperParameters.{type(self).__name__}(name={self.name!r}): {message}")

    # --- Optuna: how a trial samples this hyperparameter -------------------------------------
    def _suggest(self, trial):
        """Ask an optuna.trial.Trial for this hyperparameter -> the value (KerasTuner's type)."""
        raise NotImplementedError

    def _grid(self):
        """Optuna parameter values of the grid (what GridSampler walks)."""
        return list(self.values)

    def _value(self, param):
        """Optuna parameter -> value (identity unless an index or a mirrored sample)."""
        return param


class Numerical(HyperParameter):
    """Int and Float: a range, an optional step and linear / log / reverse_log sampling."""

    def __init__(self, name, min_value, max_value, step=None, sampling="linear", default=None, **kwargs):
        super().__init__(name=name, default=default, **kwargs)
        self.min_value, self.max_value, self.step = min_value, max_value, step
        self.sampling = "linear" if sampling is None else str(sampling).lower()
        if self.min_value > self.max_value:
            raise self._err(f"min_value {self.min_value} is greater than max_value {self.max_value}. "
                            f"Swap them, or use Fixed for a single value.")
        if self.sampling not in SAMPLINGS:
            raise self._err(f"sampling must be one of {SAMPLINGS}; received {sampling!r}.")
        if self.sampling != "linear" and self.min_value <= 0:
            raise self._err(f"sampling={self.sampling!r} needs min_value > 0; received min_value "
                            f"{self.min_value}.")
        if self.step is not None:
            if self.sampling == "linear" and self.step <= 0:
                raise self._err(f"step must be > 0; received step={self.step}.")
            if self.sampling != "linear" and self.step <= 1:
                raise self._err(f"with sampling={self.sampling!r} the step multiplies: expected step > 1; "
                                f"received step={self.step}.")
        if default is not None and not self.min_value <= default <= self.max_value:
            raise self._err(f"default {default} is outside [{self.min_value}, {self.max_value}].")

    @property
    def default(self):
        return self._default if self._default is not None else self.min_value

    # KerasTuner's projection of a cumulative probability onto the range
    def _sample_numerical_value(self, prob, max_value=None):
        lo, hi = self.min_value, self.max_value if max_value is None else max_value
        if self.sampling == "linear":
            return prob * (hi - lo) + lo
        if self.sampling == "log":
            return lo * math.pow(hi / lo, prob)
        return hi + lo - lo * math.pow(hi / lo, 1 - prob)

    def _n_values(self):
        if self.sampling == "linear":
            return int((self.max_value - self.min_value) // self.step + 1)
        return int(math.log(self.max_value / self.min_value, self.step) + 1e-8) + 1

    def _value_by_index(self, index):
        if self.sampling == "linear":
            return self.min_value + index * self.step
        if self.sampling == "log":
            return self.min_value * math.pow(self.step, index)
        return self.max_value + self.min_value - self.min_value * math.pow(self.step, index)

    def prob_to_value(self, prob):
        raise NotImplementedError

    @property
    def values(self):
        if self.step is None:  # KerasTuner: 10 evenly spread samples
            return tuple(sorted({self.prob_to_value(i * 0.1 + 0.05) for i in range(10)}))
        return tuple(self._cast(self._value_by_index(i)) for i in range(self._n_values()))

    def _cast(self, v):
        return v

    def get_config(self):
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value,
                "step": self.step, "sampling": self.sampling}

    # With a step the value set is finite: Optuna samples the index (ordered, so TPE and GP
    # still model it as a number). Without one, Optuna's own int/float distributions.
    def _suggest(self, trial):
        if self.step is not None and not (isinstance(self, Int) and self.sampling == "linear"):
            return self._value(trial.suggest_int(self.name, 0, self._n_values() - 1))
        return self._value(self._suggest_native(trial))

    def _grid(self):
        if self.step is not None and not (isinstance(self, Int) and self.sampling == "linear"):
            return list(range(self._n_values()))
        if self.sampling == "reverse_log":  # the mirrored values Optuna samples
            return [self._cast(self.max_value + self.min_value - v) for v in self.values]
        return list(self.values)

    def _value(self, param):
        if self.step is not None and not (isinstance(self, Int) and self.sampling == "linear"):
            return self._cast(self._value_by_index(int(param)))
        if self.sampling == "reverse_log":  # Optuna drew y log-uniformly; KerasTuner's value mirrors it
            return self._cast(self.max_value + self.min_value - param)
        return self._cast(param)


def _check_int(value, what, hp_name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise ValueError(f"HyperParameters.Int(name={hp_name!r}): {what} must be an int; received {value!r}.")
    return int(value)


class Int(Numerical):
    """Integer hyperparameter in [min_value, max_value] (max included), as KerasTuner's."""

    def __init__(self, name, min_value, max_value, step=None, sampling="linear", default=None, **kwargs):
        if step is not None:
            step = _check_int(step, "step", name)
        elif sampling in (None, "linear"):
            step = 1
        super().__init__(name=name, min_value=_check_int(min_value, "min_value", name),
                         max_value=_check_int(max_value, "max_value", name), step=step, sampling=sampling,
                         default=default, **kwargs)

    def __repr__(self):
        return (f"Int(name: {self.name!r}, min_value: {self.min_value}, max_value: {self.max_value}, "
                f"step: {self.step}, sampling: {self.sampling}, default: {self.default})")

    def _cast(self, v):
        return int(round(v))

    def prob_to_value(self, prob):
        if self.step is None:
            return int(self._sample_numerical_value(prob, self.max_value + 1))
        n = self._n_values()
        return self._cast(self._value_by_index(min(int(prob * n), n - 1)))

    def _suggest_native(self, trial):
        if self.sampling == "linear":  # step >= 1; the top of the range is the last step reached
            hi = self.min_value + (self._n_values() - 1) * self.step
            return trial.suggest_int(self.name, self.min_value, hi, step=self.step)
        return trial.suggest_int(self.name, self.min_value, self.max_value, log=True)

    def get_config(self):
        return {**super().get_config(), "default": self._default}


class Float(Numerical):
    """Floating-point hyperparameter in [min_value, max_value], as KerasTuner's."""

    def __init__(self, name, min_value, max_value, step=None, sampling="linear", default=None, **kwargs):
        for what, v in (("min_value", min_value), ("max_value", max_value)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"HyperParameters.Float(name={name!r}): {what} must be a finite number; "
                                 f"received {v!r}.")
        super().__init__(name=name, min_value=float(min_value), max_value=float(max_value),
                         step=None if step is None else float(step), sampling=sampling, default=default,
                         **kwargs)

    def __repr__(self):
        return (f"Float(name: {self.name!r}, min_value: {self.min_value}, max_value: {self.max_value}, "
                f"step: {self.step}, sampling: {self.sampling}, default: {self.default})")

    def _cast(self, v):
        return float(v)

    def prob_to_value(self, prob):
        if self.step is None:
            return self._sample_numerical_value(prob)
        n = self._n_values()
        return self._value_by_index(min(int(prob * n), n - 1))

    def _suggest_native(self, trial):
        return trial.suggest_float(self.name, self.min_value, self.max_value, log=self.sampling != "linear")


class Choice(HyperParameter):
    """One of a list of int, float, str or bool values (all of one type)."""

    def __init__(self, name, values, ordered=None, default=None, **kwargs):
        super().__init__(name=name, default=default, **kwargs)
        if values is None or isinstance(values, (str, bytes)) or len(list(values)) == 0:
            raise self._err(f"values must be a non-empty list of choices; received {values!r}.")
        values = list(values)
        types = {type(v) for v in values}
        if len(types) > 1:
            raise self._err(f"a Choice holds values of one type; received {values!r} with types "
                            f"{sorted(t.__name__ for t in types)}.")
        if not isinstance(values[0], (int, float, str, bool)):
            raise self._err(f"a Choice holds int, float, str or bool values; received {values!r}.")
        if len(set(values)) != len(values):
            raise self._err(f"values must be distinct; received {values!r}.")
        self._values = values
        if default is not None and default not in values:
            raise self._err(f"the default must be one of the choices; received default={default!r}, "
                            f"values={values!r}.")
        numeric = isinstance(values[0], (int, float)) and not isinstance(values[0], bool)
        if ordered and not numeric:
            raise self._err("ordered=True needs numeric values.")
        self.ordered = numeric if ordered is None else bool(ordered)

    def __repr__(self):
        return f"Choice(name: {self.name!r}, values: {self._values}, ordered: {self.ordered}, default: {self.default})"

    @property
    def values(self):
        return list(self._values)

    @property
    def default(self):
        return self._values[0] if self._default is None else self._default

    def prob_to_value(self, prob):
        return self._values[min(int(prob * len(self._values)), len(self._values) - 1)]

    def get_config(self):
        return {**super().get_config(), "values": list(self._values), "ordered": self.ordered}

    def _suggest(self, trial):
        return trial.suggest_categorical(self.name, self._values)


class Boolean(HyperParameter):
    """True or False."""

    def __init__(self, name, default=False, **kwargs):
        super().__init__(name=name, default=default, **kwargs)
        if default not in (True, False) or not isinstance(default, (bool, int)):
            raise self._err(f"default must be a Python bool; received {default!r}.")
        self._default = bool(default)

    def __repr__(self):
        return f"Boolean(name: {self.name!r}, default: {self.default})"

    @property
    def values(self):
        return (True, False)

    def prob_to_value(self, prob):
        return bool(prob >= 0.5)

    def _suggest(self, trial):
        return trial.suggest_categorical(self.name, [False, True])

    def _grid(self):
        return [False, True]


class Fixed(HyperParameter):
    """A value that is not tuned (recorded with the trial all the same)."""

    def __init__(self, name, value, **kwargs):
        kwargs.pop("default", None)
        super().__init__(name=name, default=value, **kwargs)
        if not isinstance(value, (bool, int, float, str)):
            raise self._err(f"value must be an int, float, str or bool; received {value!r}.")
        self.value = value

    def __repr__(self):
        return f"Fixed(name: {self.name!r}, value: {self.value!r})"

    @property
    def values(self):
        return (self.value,)

    @property
    def default(self):
        return self.value

    def prob_to_value(self, prob):
        return self.value

    def get_config(self):
        config = super().get_config()
        config.pop("default")
        return {**config, "value": self.value}

    def _suggest(self, trial):
        return self.value


CLASSES = {c.__name__: c for c in (Int, Float, Choice, Boolean, Fixed)}


class HyperParameters:
    """The search space and the values of one trial: what `build(hp)` receives.

    `hp.Int(...)`, `hp.Float(...)`, `hp.Choice(...)`, `hp.Boolean(...)` and `hp.Fixed(...)`
    register a hyperparameter the first time they are called and return its value in the
    current trial (None while its `conditional_scope` is inactive). `hp.values` maps the
    active names to their values; `hp.space` lists every hyperparameter seen.
    """

    def __init__(self):
        self._name_scopes = []
        self._conditions = []
        self._hps = {}          # name -> [HyperParameter, ...] (one per set of conditions)
        self._space = []        # in registration order: parents before their children
        self.values = {}
        self.active_scopes = []
        self.inactive_scopes = []
        # set by the tuner while a trial is built: hp -> value (Optuna samples it) and what
        # to do with entries that were not declared in advance
        self._sampler = None
        self._tune_new_entries = True
        self._allow_new_entries = True

    # --- scopes --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def name_scope(self, name):
        self._name_scopes.append(name)
        try:
            yield
        finally:
            self._name_scopes.pop()

    @contextlib.contextmanager
    def conditional_scope(self, parent_name, parent_values):
        """Hyperparameters created inside are active only when `parent_name` is in `parent_values`."""
        parent_name = self._get_name(parent_name)
        if not self._exists(parent_name):
            raise ValueError(f"conditional_scope: the parent hyperparameter {parent_name!r} is not defined; "
                             f"create it (e.g. hp.Choice({parent_name!r}, [...])) before the scope.")
        condition = Parent(parent_name, parent_values)
        self._conditions.append(condition)
        (self.active_scopes if condition.is_active(self.values) else self.inactive_scopes).append(
            copy.deepcopy(self._conditions))
        try:
            yield
        finally:
            self._conditions.pop()

    @contextlib.contextmanager
    def _maybe_conditional_scope(self, parent_name, parent_values):
        if parent_name:
            with self.conditional_scope(parent_name, parent_values):
                yield
        else:
            yield

    def _get_name(self, name):
        return "/".join([*self._name_scopes, str(name)]) if self._name_scopes else str(name)

    def _conditions_are_active(self, conditions):
        return all(c.is_active(self.values) for c in conditions)

    def is_active(self, hyperparameter):
        if isinstance(hyperparameter, HyperParameter):
            return self._conditions_are_active(hyperparameter.conditions)
        return any(self._conditions_are_active(h.conditions) for h in self._hps.get(str(hyperparameter), []))

    def _find(self, name, conditions):
        for h in self._hps.get(name, []):
            if h.conditions == conditions:
                return h
        return None

    def _exists(self, name, conditions=None):
        return self._find(name, self._conditions if conditions is None else conditions) is not None

    # --- registration and values ---------------------------------------------------------------
    def _retrieve(self, hp):
        known = self._find(hp.name, hp.conditions)
        new = known is None
        if new:
            for c in hp.conditions:
                if c.name == hp.name:
                    raise ValueError(f"a conditional hyperparameter cannot have the name of its parent: "
                                     f"{hp.name!r}.")
            if not self._allow_new_entries:
                raise RuntimeError(f"allow_new_entries is False, but the model asked for a new hyperparameter "
                                   f"{hp!r}; declare it in `hyperparameters`.")
            self._hps.setdefault(hp.name, []).append(hp)
            self._space.append(hp)
            known = hp
        if not self.is_active(known):
            return None
        if known.name not in self.values:
            tuned = self._sampler is not None and (self._tune_new_entries or not new)
            self.values[known.name] = self._sampler(known) if tuned else known.default
        return self.values[known.name]

    def get(self, name):
        """The value of an active hyperparameter (ValueError if inactive, KeyError if unknown)."""
        name = self._get_name(name)
        if name in self.values:
            return self.values[name]
        if name in self._hps:
            raise ValueError(f"{name} is currently inactive.")
        raise KeyError(f"{name} does not exist.")

    def __getitem__(self, name):
        return self.get(name)

    def __contains__(self, name):
        try:
            self.get(name)
            return True
        except (KeyError, ValueError):
            return False

    def Choice(self, name, values, ordered=None, default=None, parent_name=None, parent_values=None):
        """One of `values` (int, float, str or bool, all of one type); default: the first."""
        with self._maybe_conditional_scope(parent_name, parent_values):
            return self._retrieve(Choice(self._get_name(name), values, ordered=ordered, default=default,
                                         conditions=copy.deepcopy(self._conditions)))

    def Int(self, name, min_value, max_value, step=None, sampling="linear", default=None, parent_name=None,
            parent_values=None):
        """An int in [min_value, max_value] (max included); step and sampling as KerasTuner."""
        with self._maybe_conditional_scope(parent_name, parent_values):
            return self._retrieve(Int(self._get_name(name), min_value, max_value, step=step, sampling=sampling,
                                      default=default, conditions=copy.deepcopy(self._conditions)))

    def Float(self, name, min_value, max_value, step=None, sampling="linear", default=None, parent_name=None,
              parent_values=None):
        """A float in [min_value, max_value]; sampling 'linear', 'log' or 'reverse_log'."""
        with self._maybe_conditional_scope(parent_name, parent_values):
            return self._retrieve(Float(self._get_name(name), min_value, max_value, step=step, sampling=sampling,
                                        default=default, conditions=copy.deepcopy(self._conditions)))

    def Boolean(self, name, default=False, parent_name=None, parent_values=None):
        """True or False."""
        with self._maybe_conditional_scope(parent_name, parent_values):
            return self._retrieve(Boolean(self._get_name(name), default=default,
                                          conditions=copy.deepcopy(self._conditions)))

    def Fixed(self, name, value, parent_name=None, parent_values=None):
        """A value that is not tuned."""
        with self._maybe_conditional_scope(parent_name, parent_values):
            return self._retrieve(Fixed(self._get_name(name), value, conditions=copy.deepcopy(self._conditions)))

    @property
    def space(self):
        return list(self._space)

    def get_config(self):
        return {"space": [{"class_name": type(p).__name__, "config": p.get_config()} for p in self._space],
                "values": dict(self.values)}

    @classmethod
    def from_config(cls, config):
        hps = cls()
        for entry in config["space"]:
            p = CLASSES[entry["class_name"]].from_config(entry["config"])
            hps._hps.setdefault(p.name, []).append(p)
            hps._space.append(p)
        hps.values = dict(config["values"])
        return hps

    def copy(self):
        return HyperParameters.from_config(self.get_config())

    def merge(self, hps, overwrite=True):
        """Add the hyperparameters of `hps` (a HyperParameters or a list) to this space."""
        hps = hps.space if isinstance(hps, HyperParameters) else list(hps)
        for p in hps:
            known = self._find(p.name, p.conditions)
            if known is not None and not overwrite:
                continue
            if known is not None:
                self._space[self._space.index(known)] = p
                self._hps[p.name][self._hps[p.name].index(known)] = p
            else:
                self._hps.setdefault(p.name, []).append(p)
                self._space.append(p)
            if self.is_active(p) and (overwrite or p.name not in self.values):
                self.values[p.name] = p.default

    def ensure_active_values(self):
        """Give every active hyperparameter a value (its default) and drop inactive values."""
        for p in self._space:
            if self.is_active(p):
                self.values.setdefault(p.name, p.default)
            else:
                self.values.pop(p.name, None)

    def __repr__(self):
        return f"HyperParameters(values={self.values!r})"
