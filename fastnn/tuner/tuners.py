"""The four tuners of KerasTuner, each an Optuna sampler (and pruner) behind KerasTuner's arguments.

    RandomSearch          optuna.samplers.RandomSampler
    GridSearch            optuna.samplers.GridSampler over each hyperparameter's `values`
    BayesianOptimization  optuna.samplers.TPESampler (sampler="tpe") or GPSampler (sampler="gp")
    Hyperband             random configurations, optuna.pruners.HyperbandPruner on the epochs

Every tuner also takes `pruner`: None, "hyperband", "successive_halving", "median" or an
optuna.pruners.BasePruner; the pruner sees the objective after every epoch.
"""
from __future__ import annotations

import math
import warnings

from fastnn.tuner import oracle as oracle_module
from fastnn.tuner import tuner as tuner_module

PRUNERS = ("hyperband", "successive_halving", "median")


def _pruner(pruner, max_epochs=None):
    optuna = oracle_module.import_optuna()
    if pruner is None or isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs or "auto")
    if pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner()
    raise ValueError(f"pruner must be None, one of {PRUNERS} or an optuna.pruners.BasePruner; received {pruner!r}.")


class _OracleBase(oracle_module.Oracle):
    def __init__(self, *args, pruner=None, **kwargs):
        super().__init__(*args, **kwargs)
        _pruner(pruner)  # a bad name fails now, not when the study opens
        self.pruner = pruner

    def _make_pruner(self):
        return _pruner(self.pruner)

    @property
    def _prunes(self):
        return self.pruner is not None


class RandomSearchOracle(_OracleBase):
    """Random search: each value drawn independently (Optuna's RandomSampler)."""

    def __init__(self, objective=None, max_trials=10, seed=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, max_retries_per_trial=0, max_consecutive_failed_trials=3, pruner=None):
        super().__init__(objective=objective, max_trials=max_trials, hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner)

    def _make_sampler(self, seed):
        import optuna
        return optuna.samplers.RandomSampler(seed=seed)


class GridSearchOracle(_OracleBase):
    """Every combination of the hyperparameters' `values` (Optuna's GridSampler).

    A Float without `step` (or an Int with log sampling and no step) contributes KerasTuner's
    10 evenly spread values; set `step` for another granularity. Conditional hyperparameters
    are enumerated even while inactive, so their grid repeats configurations.
    """

    def __init__(self, objective=None, max_trials=None, seed=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, max_retries_per_trial=0, max_consecutive_failed_trials=3, pruner=None):
        super().__init__(objective=objective, max_trials=max_trials, hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner)

    def _grid(self):
        return {p.name: p._grid() for p in self.hyperparameters.space if not isinstance(p, _fixed())}

    def grid_size(self):
        return math.prod(len(v) for v in self._grid().values())

    def _budget(self):
        n = self.grid_size()
        return n if self.max_trials is None else min(n, self.max_trials)

    def _make_sampler(self, seed):
        import optuna
        # every worker walks the same shuffled grid: the user's seed, not the per-worker one
        return optuna.samplers.GridSampler(self._grid(), seed=self.seed)


def _fixed():
    from fastnn.tuner.hyperparameters import Fixed
    return Fixed


class BayesianOptimizationOracle(_OracleBase):
    """Bayesian optimisation: a model of the objective picks the next values.

    sampler="tpe" (default) is Optuna's multivariate Tree-structured Parzen Estimator;
    sampler="gp" is Optuna's Gaussian process with log expected improvement (closest to
    KerasTuner's GP; needs scipy and torch). `num_initial_points` random trials come first
    (default: 3 per hyperparameter, as KerasTuner). `alpha` and `beta` belong to KerasTuner's
    own GP-UCB; Optuna's samplers have no such knobs, so other values than the defaults warn.
    """

    def __init__(self, objective=None, max_trials=10, num_initial_points=None, alpha=1e-4, beta=2.6, seed=None,
                 hyperparameters=None, allow_new_entries=True, tune_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, sampler="tpe", pruner=None):
        super().__init__(objective=objective, max_trials=max_trials, hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner)
        if sampler not in ("tpe", "gp"):
            raise ValueError(f"BayesianOptimization: sampler must be 'tpe' or 'gp'; received {sampler!r}.")
        if num_initial_points is not None and (isinstance(num_initial_points, bool)
                                               or not isinstance(num_initial_points, int) or num_initial_points < 1):
            raise ValueError(f"num_initial_points must be a positive int or None; received {num_initial_points!r}.")
        if (alpha, beta) != (1e-4, 2.6):
            warnings.warn("BayesianOptimization: alpha and beta tune KerasTuner's GP-UCB; Optuna's TPE and GP "
                          "(log expected improvement) do not use them.", stacklevel=3)
        self.num_initial_points, self.alpha, self.beta = num_initial_points, alpha, beta
        self.sampler = sampler

    def _make_sampler(self, seed):
        import optuna
        dims = sum(not isinstance(p, _fixed()) for p in self.hyperparameters.space)
        n0 = self.num_initial_points or max(3 * dims, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if self.sampler == "gp":
                try:
                    import scipy  # noqa: F401
                    import torch  # noqa: F401
                except ImportError:
                    raise ImportError("BayesianOptimization(sampler='gp') uses Optuna's GPSampler, which needs scipy "
                                      "and torch: pip install scipy torch (or use sampler='tpe').") from None
                return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n0)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n0, multivariate=True)


class HyperbandOracle(_OracleBase):
    """Hyperband: random configurations; Optuna's HyperbandPruner stops the weak ones at the
    rungs of successive halving (epochs 1, factor, factor**2, ... up to max_epochs).

    The number of configurations is KerasTuner's: the sum of the first-round sizes of its
    brackets, times `hyperband_iterations`.
    """

    def __init__(self, objective=None, max_epochs=100, factor=3, hyperband_iterations=1, seed=None,
                 hyperparameters=None, allow_new_entries=True, tune_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3):
        super().__init__(objective=objective, hyperparameters=hyperparameters, allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries, seed=seed, max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"Hyperband: factor must be an int >= 2; received {factor!r}.")
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"Hyperband: max_epochs must be a positive int; received {max_epochs!r}.")
        if isinstance(hyperband_iterations, bool) or not isinstance(hyperband_iterations, int) \
                or hyperband_iterations < 1:
            raise ValueError(f"Hyperband: hyperband_iterations must be a positive int; received "
                             f"{hyperband_iterations!r}.")
        self.max_epochs, self.factor, self.hyperband_iterations = max_epochs, factor, hyperband_iterations
        self.pruner = "hyperband"

    def _n_brackets(self):
        epochs, n = self.max_epochs, 0
        while epochs >= 1:
            epochs /= self.factor
            n += 1
        return n

    def _budget(self):
        # KerasTuner's HyperbandOracle._get_size(bracket, round 0), summed over its brackets
        end0 = math.ceil(1 + math.log(self.max_epochs, self.factor))
        per_iteration = sum(math.ceil(end0 / (b + 1) * self.factor ** b) for b in range(self._n_brackets()))
        return per_iteration * self.hyperband_iterations

    def _make_sampler(self, seed):
        import optuna
        return optuna.samplers.RandomSampler(seed=seed)

    def _make_pruner(self):
        import optuna
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=self.max_epochs,
                                              reduction_factor=self.factor)


_ORACLE_ARGS = ("objective", "max_trials", "seed", "hyperparameters", "tune_new_entries", "allow_new_entries",
                "max_retries_per_trial", "max_consecutive_failed_trials")


class RandomSearch(tuner_module.Tuner):
    """Random search (KerasTuner's arguments; see Tuner for the rest)."""

    def __init__(self, hypermodel=None, objective=None, max_trials=10, seed=None, hyperparameters=None,
                 tune_new_entries=True, allow_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, pruner=None, **kwargs):
        self.seed = seed
        oracle = RandomSearchOracle(objective=objective, max_trials=max_trials, seed=seed,
                                    hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
                                    allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
                                    max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner)
        super().__init__(oracle, hypermodel, **kwargs)


class GridSearch(tuner_module.Tuner):
    """Grid search over every combination (max_trials=None: the whole grid)."""

    def __init__(self, hypermodel=None, objective=None, max_trials=None, seed=None, hyperparameters=None,
                 tune_new_entries=True, allow_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, pruner=None, **kwargs):
        self.seed = seed
        oracle = GridSearchOracle(objective=objective, max_trials=max_trials, seed=seed,
                                  hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
                                  allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
                                  max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner)
        super().__init__(oracle, hypermodel, **kwargs)


class BayesianOptimization(tuner_module.Tuner):
    """Bayesian optimisation (Optuna's TPE, or its GP with sampler="gp")."""

    def __init__(self, hypermodel=None, objective=None, max_trials=10, num_initial_points=None, alpha=1e-4,
                 beta=2.6, seed=None, hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, sampler="tpe", pruner=None, **kwargs):
        self.seed = seed
        oracle = BayesianOptimizationOracle(
            objective=objective, max_trials=max_trials, num_initial_points=num_initial_points, alpha=alpha,
            beta=beta, seed=seed, hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials, sampler=sampler, pruner=pruner)
        super().__init__(oracle, hypermodel, **kwargs)


class Hyperband(tuner_module._FixedEpochs, tuner_module.Tuner):
    """Hyperband: every trial may train `max_epochs`; the pruner stops the weak ones early."""

    def __init__(self, hypermodel=None, objective=None, max_epochs=100, factor=3, hyperband_iterations=1, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, **kwargs):
        self.seed = seed
        oracle = HyperbandOracle(objective=objective, max_epochs=max_epochs, factor=factor,
                                 hyperband_iterations=hyperband_iterations, seed=seed, hyperparameters=hyperparameters,
                                 tune_new_entries=tune_new_entries, allow_new_entries=allow_new_entries,
                                 max_retries_per_trial=max_retries_per_trial,
                                 max_consecutive_failed_trials=max_consecutive_failed_trials)
        super().__init__(oracle, hypermodel, **kwargs)

    def _trial_epochs(self):
        return self.oracle.max_epochs


__all__ = ["RandomSearch", "GridSearch", "BayesianOptimization", "Hyperband", "RandomSearchOracle",
           "GridSearchOracle", "BayesianOptimizationOracle", "HyperbandOracle"]
