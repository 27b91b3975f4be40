"""`Tuner`: KerasTuner's search loop over fastnn models, with an Optuna oracle underneath.

A worker asks the oracle for a trial, draws the trial's hyperparameters from Optuna, builds
and fits the model (`executions_per_trial` times), reports the objective after every epoch
(the pruner may stop the trial), saves the weights of the best epoch under
`directory/project_name/trial_<id>/` and tells Optuna the score. `search(..., )` with
`workers=N` runs N such workers as processes sharing the database, each on 1/N of the cores.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time
import traceback

import numpy as np

from fastnn.callbacks import Callback
from fastnn.tuner import hypermodel as hm_module
from fastnn.tuner import objective as obj_module
from fastnn.tuner import oracle as oracle_module
from fastnn.tuner.oracle import TrialStatus


class FatalError(Exception):
    """Stops the search (a wrong setup, not a bad configuration)."""


class FatalValueError(FatalError, ValueError):
    pass


class FatalTypeError(FatalError, TypeError):
    pass


class FailedTrialError(Exception):
    """Raise in build/fit to fail a trial without retrying it."""


class _TunerCallback(Callback):
    """Feeds each epoch's objective to Optuna (pruning) and to the tuner's epoch hooks."""

    def __init__(self, tuner, trial, execution):
        super().__init__()
        self.tuner, self.trial, self.execution = tuner, trial, execution

    def on_epoch_begin(self, epoch, logs=None):
        self.tuner.on_epoch_begin(self.trial, self.model, epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.tuner.on_batch_begin(self.trial, self.model, batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.tuner.on_batch_end(self.trial, self.model, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.tuner.on_epoch_end(self.trial, self.model, epoch, logs=logs)
        objective = self.tuner.oracle.objective
        otrial = getattr(self.trial, "_optuna", None)
        if otrial is None or self.execution or not self.tuner.oracle._prunes or not objective.has_value(logs):
            return
        value = float(objective.get_value(logs))
        if not math.isfinite(value):
            return
        otrial.report(value, epoch + 1)  # the resource: epochs trained
        if otrial.should_prune():
            self.trial._pruned = True
            self.model.stop_training = True


class _SaveBestEpoch(Callback):
    """Saves the model's weights after each epoch that improves the objective."""

    def __init__(self, objective, filepath):
        super().__init__()
        self.objective, self.filepath = objective, filepath
        self.best_value = -math.inf if objective.direction == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        if not self.objective.has_value(logs):
            save_checkpoint(self.model, self.filepath)  # the objective comes after fit: keep the last
            return
        value = float(self.objective.get_value(logs))
        if self.objective.better_than(value, self.best_value):
            self.best_value = value
            save_checkpoint(self.model, self.filepath)


def save_checkpoint(model, path):
    """model.get_weights() in order, written atomically (a rebuilt model's layer names differ, so
    the checkpoint is positional, for set_weights)."""
    tmp = path + ".tmp.npz"
    np.savez(tmp, *model.get_weights())
    os.replace(tmp, path)


def load_checkpoint(model, path):
    with np.load(path, allow_pickle=False) as z:
        model.set_weights([z[f"arr_{i}"] for i in range(len(z.files))])


def _history_dict(result):
    h = getattr(result, "history", None)
    return h if isinstance(h, dict) else None


def _best_epoch(history, objective):
    values = history.get(objective.name)
    if not values:
        return 0
    finite = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not finite:
        return 0
    pick = max if objective.direction == "max" else min
    return pick(finite, key=lambda iv: iv[1])[0]


def _metrics_dict(result, objective):
    """KerasTuner's convert_to_metrics_dict: History -> the best epoch's logs; float; dict; list -> mean."""
    if isinstance(result, list):
        dicts = [_metrics_dict(r, objective) for r in result]
        keys = set().union(*dicts) if dicts else set()
        return {k: float(np.mean([d[k] for d in dicts if k in d])) for k in keys}
    if isinstance(result, (int, float, np.floating, np.integer)) and not isinstance(result, bool):
        return {objective.name: float(result)}
    if isinstance(result, dict):
        return {k: float(v) for k, v in result.items()}
    history = _history_dict(result)
    if history is not None:
        best = _best_epoch(history, objective)
        return {k: float(v[best]) for k, v in history.items() if len(v) > best}
    raise FatalTypeError("the model's fit (HyperModel.fit or Tuner.run_trial) must return a History, a dict of "
                         f"metrics or the objective as a float; received {result!r}.")


def _mean_history(results):
    """Per-epoch metric values averaged over the executions that reached each epoch."""
    histories = [h for h in (_history_dict(r) for r in (results if isinstance(results, list) else [results]))
                 if h is not None]
    out = {}
    for key in sorted(set().union(*histories) if histories else ()):
        runs = [h[key] for h in histories if key in h]
        n = max(len(r) for r in runs)
        out[key] = [float(np.mean([r[i] for r in runs if len(r) > i])) for i in range(n)]
    return out


def _format_duration(seconds):
    s = int(round(seconds))
    return f"{s // 3600:02d}h {s % 3600 // 60:02d}m {s % 60:02d}s"


def _format_value(v, width=18):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.5g}"
    s = str(v)
    return s if len(s) <= width else s[:width - 3] + "..."


def _worker_main(tuner, index, threads, fit_args, fit_kwargs):
    """Entry point of a worker process (workers=N): its share of the cores, then the search loop."""
    import fastnn
    fastnn.set_num_threads(threads)
    tuner.workers = 1
    tuner._threads = threads
    tuner.oracle.tuner_id = f"{tuner.tuner_id}-worker{index}"
    tuner._worker_tag = f"[worker {index}] "
    fit_kwargs = dict(fit_kwargs, verbose=0)
    tuner._search_loop(fit_args, fit_kwargs, verbose=1 if tuner._verbose else 0)


class Tuner:
    """KerasTuner's Tuner for fastnn models (the base of RandomSearch, GridSearch, ...).

    Args (KerasTuner's): oracle, hypermodel (a HyperModel or a function build_model(hp)
    returning a compiled model), max_model_size, optimizer, loss, metrics (override the
    compile arguments), directory, project_name, tuner_id, overwrite, executions_per_trial.
    fastnn adds, keyword-only: `storage` (an Optuna RDB URL such as
    "postgresql://user@host/db" shared by workers on several machines; default: SQLite in
    directory/project_name/oracle.db) and `workers` (processes running trials at once on
    this machine, each with its share of the cores).
    """

    def __init__(self, oracle, hypermodel=None, max_model_size=None, optimizer=None, loss=None, metrics=None,
                 distribution_strategy=None, directory=None, project_name=None, logger=None, tuner_id=None,
                 overwrite=False, executions_per_trial=1, *, storage=None, workers=1, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}.")
        if not isinstance(oracle, oracle_module.Oracle):
            raise ValueError(f"oracle must be a fastnn.tuner Oracle; received {oracle!r}.")
        if distribution_strategy is not None:
            raise ValueError("distribution_strategy is not supported by fastnn's tuners; run parallel trials with "
                             "workers=N instead.")
        self.hypermodel = hm_module.get_hypermodel(hypermodel)
        if self.hypermodel is None and type(self).run_trial is Tuner.run_trial:
            raise ValueError("hypermodel=None: pass a HyperModel or a build_model(hp) function, or subclass the "
                             "tuner and override run_trial.")
        if isinstance(executions_per_trial, bool) or not isinstance(executions_per_trial, int) \
                or executions_per_trial < 1:
            raise ValueError(f"executions_per_trial must be a positive int; received {executions_per_trial!r}.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int; received {workers!r}.")
        self.oracle = oracle
        self.max_model_size = max_model_size
        self.optimizer, self.loss, self.metrics = optimizer, loss, metrics
        self.executions_per_trial = executions_per_trial
        self.workers = workers
        self.directory = str(directory) if directory is not None else "."
        self.project_name = project_name or "untitled_project"
        self.tuner_id = tuner_id or os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        self.logger = logger
        self._threads = None
        self._worker_tag = ""
        self._verbose = 1
        oracle_module.import_optuna()
        if overwrite and storage is None:
            oracle_module.remove_project(self.project_dir)
        self.oracle.tuner_id = self.tuner_id
        self.oracle._set_project_dir(self.directory, self.project_name, storage=storage, overwrite=overwrite)
        self._populate_initial_space()
        n_done = len(self.oracle.trials)  # opens (or creates) the database
        if n_done:
            print(f"Reloading Tuner from {self.oracle.storage_url}: {n_done} trials recorded, "
                  f"{self.remaining_trials if self.remaining_trials is not None else 'no limit on'} to go.")

    # --- the search space ----------------------------------------------------------------------
    def _populate_initial_space(self):
        """Build the model with default values until every conditional scope was active once
        (KerasTuner does the same), so the space is known before the first trial; a search-space
        error (min_value > max_value, an empty Choice, ...) is raised here, before any training."""
        if self.hypermodel is None:
            return
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self._update_space(hp)
        never_active, once_active = [], []
        hp = self.oracle.get_space()
        hp.ensure_active_values()
        while True:
            hp._allow_new_entries = self.oracle.allow_new_entries
            self.hypermodel.build(hp)
            self._update_space(hp)
            for conditions in hp.active_scopes:
                if conditions not in once_active:
                    once_active.append(copy.deepcopy(conditions))
                if conditions in never_active:
                    never_active.remove(conditions)
            for conditions in hp.inactive_scopes:
                if conditions not in once_active and conditions not in never_active:
                    never_active.append(copy.deepcopy(conditions))
            if not never_active:
                break
            hp = self.oracle.get_space()
            for condition in never_active.pop(0):
                hp.values[condition.name] = condition.values[0]
            hp.ensure_active_values()

    def _update_space(self, hp):
        if self.oracle.tune_new_entries:
            self.oracle.update_space(hp)

    # --- paths ----------------------------------------------------------------------------------
    @property
    def project_dir(self):
        return os.path.join(self.directory, self.project_name)

    def get_trial_dir(self, trial_id):
        path = os.path.join(self.project_dir, f"trial_{trial_id}")
        os.makedirs(path, exist_ok=True)
        return path

    def _get_checkpoint_fname(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), "checkpoint.weights.npz")

    # --- search ---------------------------------------------------------------------------------
    def search(self, *fit_args, **fit_kwargs):
        """Run trials until the budget is spent; arguments go to `model.fit` (x, y, epochs,
        validation_split or validation_data, callbacks, ...)."""
        verbose = fit_kwargs.get("verbose", 1)
        self._verbose = 1 if verbose == "auto" else verbose
        self._preflight(fit_args, fit_kwargs)
        if self.workers > 1:
            return self._search_workers(fit_args, fit_kwargs)
        return self._search_loop(fit_args, fit_kwargs, verbose=self._verbose)

    def _preflight(self, fit_args, fit_kwargs):
        """Check that the objective is something the trials will log, before any training."""
        objective = self.oracle.objective
        if isinstance(objective, obj_module.DefaultObjective) or self.hypermodel is None:
            return
        if type(self).run_trial is not Tuner.run_trial or type(self.hypermodel).fit is not hm_module.HyperModel.fit:
            return  # a custom fit may return any metric
        x = fit_args[0] if fit_args else fit_kwargs.get("x")
        y = fit_args[1] if len(fit_args) > 1 else fit_kwargs.get("y")
        val_data = fit_kwargs.get("validation_data", fit_args[7] if len(fit_args) > 7 else None)
        val_split = fit_kwargs.get("validation_split", fit_args[6] if len(fit_args) > 6 else 0.0)
        if objective.name.startswith("val_") and val_data is None and not val_split:
            raise ValueError(f"search: the objective {objective.name!r} is measured on validation data; pass "
                             f"validation_split=0.2 or validation_data=(x_val, y_val) to search.")
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray) or len(x) < 1:
            return
        hp = self.oracle.get_space()
        hp.ensure_active_values()
        model = self._try_build(hp)
        logs = model.evaluate(x[:2], y[:2], verbose=0, return_dict=True)
        names = set(logs) | ({"val_" + k for k in logs} if (val_data is not None or val_split) else set())
        if objective.name not in names:
            raise ValueError(f"search: the objective {objective.name!r} is not among the metrics the model logs: "
                             f"{sorted(names)}. Add the metric to compile(metrics=[...]) or pick one of these.")

    def _search_loop(self, fit_args, fit_kwargs, verbose=1):
        self._verbose = verbose
        self._search_start = time.time()
        self.on_search_begin()
        consecutive_failures = 0
        while True:
            self.pre_create_trial()
            otrial = self.oracle._next_trial()
            if otrial is None:
                break
            trial = self._start_trial(otrial)
            self.on_trial_begin(trial)
            ok = self._run_and_update_trial(trial, *fit_args, **fit_kwargs)
            self.on_trial_end(trial)
            consecutive_failures = 0 if ok else consecutive_failures + 1
            if consecutive_failures >= self.oracle.max_consecutive_failed_trials:
                raise RuntimeError(f"Number of consecutive failures exceeded the limit of "
                                   f"{self.oracle.max_consecutive_failed_trials}.\n{trial.message or ''}")
        self.on_search_end()

    def _start_trial(self, otrial):
        """Draw the hyperparameters of an Optuna trial -> a KerasTuner Trial (a queued retry keeps its values)."""
        oracle = self.oracle
        prior = otrial.user_attrs.get("fastnn_trial", {})  # a queued retry keeps its trial_id
        budget = oracle._budget()
        width = max(2, len(str(budget - 1))) if budget else 2
        trial_id = prior.get("trial_id", f"{otrial.number:0{width}d}")
        hp = oracle.get_space()
        hp.values = {}
        hp._tune_new_entries = oracle.tune_new_entries
        hp._allow_new_entries = oracle.allow_new_entries
        hp._sampler = lambda p: p._suggest(otrial)
        for p in hp.space:
            if hp.is_active(p) and p.name not in hp.values:
                hp.values[p.name] = hp._sampler(p)
        trial = oracle_module.Trial(hp, trial_id=trial_id)
        trial.number = otrial.number
        trial._optuna = otrial
        trial._pruned = False
        trial._start = time.time()
        from fastnn.kernels import threads
        # one attribute, one database commit: who runs the trial, with which values and threads
        otrial.set_user_attr("fastnn_trial", {"trial_id": trial_id, "values": dict(hp.values),
                                              "worker": oracle_module.worker_identity(),
                                              "threads": threads.get_num_threads()})
        trial._input_shape = None
        return trial

    def _run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        """Run one trial and tell Optuna its result -> True unless it failed."""
        import optuna
        otrial = trial._optuna
        state = None
        try:
            with self.oracle._heartbeat(otrial):
                results = self.run_trial(trial, *fit_args, **fit_kwargs)
            metrics = _metrics_dict(results, self.oracle.objective)
            if self.oracle.objective.name not in metrics:
                raise FatalValueError(f"the trial's results have no {self.oracle.objective.name!r}: got "
                                      f"{sorted(metrics)}. Pick an objective among these.")
            trial.score = metrics[self.oracle.objective.name]
            history = _mean_history(results)
            trial.metrics = oracle_module.MetricsTracker(history, {self.oracle.objective.name:
                                                                   self.oracle.objective.direction})
            trial.best_step = _best_epoch(history, self.oracle.objective) if history else 0
            trial.status = TrialStatus.PRUNED if trial._pruned else TrialStatus.COMPLETED
            otrial.set_user_attr("fastnn_result", {
                "values": dict(trial.hyperparameters.values), "metrics": history, "score": trial.score,
                "best_step": trial.best_step, "input_shape": trial._input_shape,
                "seconds": round(time.time() - trial._start, 3)})
            state = optuna.trial.TrialState.PRUNED if trial._pruned else None
        except KeyboardInterrupt:
            # an interrupted trial runs again when the search resumes
            self.oracle._tell(otrial, state=optuna.trial.TrialState.FAIL)
            self.oracle._retry_callback(self.oracle.study, self.oracle._frozen(otrial.number))
            raise
        except Exception as e:
            trial.status = TrialStatus.FAILED
            trial.message = traceback.format_exc()
            otrial.set_user_attr("message", trial.message[-4000:])
            self.oracle._tell(otrial, state=optuna.trial.TrialState.FAIL)
            if isinstance(e, FatalError):
                raise
            print(f"{self._worker_tag}Trial {trial.trial_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
            if not isinstance(e, FailedTrialError) and self.oracle._retry_failed(otrial):
                print(f"{self._worker_tag}Trial {trial.trial_id} queued again.", file=sys.stderr)
            return False
        finally:
            trial.hyperparameters._sampler = None
        self.oracle._tell(otrial, trial.score if state is None else None, state=state)
        return True

    def run_trial(self, trial, *args, **kwargs):
        """Build and fit the trial's model `executions_per_trial` times -> the list of results."""
        checkpoint = _SaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id))
        original_callbacks = list(kwargs.pop("callbacks", None) or [])
        if isinstance(self, _FixedEpochs):
            kwargs["epochs"] = self._trial_epochs()
        histories = []
        for execution in range(self.executions_per_trial):
            copied = copy.copy(kwargs)
            callbacks = self._deepcopy_callbacks(original_callbacks)
            callbacks.append(_TunerCallback(self, trial, execution))
            callbacks.append(checkpoint)
            copied["callbacks"] = callbacks
            if self.oracle.seed is not None:
                from fastnn import utils
                utils.set_random_seed((self.oracle.seed * 1000003 + int(trial.trial_id) * 101 + execution)
                                      % (2 ** 31))
            histories.append(self._build_and_fit_model(trial, *args, **copied))
            if getattr(trial, "_pruned", False):
                break
        return histories

    def _build_and_fit_model(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        model = self._try_build(hp)
        self._update_space(hp)
        if model.built:
            trial._input_shape = [None if d is None else int(d) for d in model.input_shape]
        return self.hypermodel.fit(hp, model, *args, **kwargs)

    def _try_build(self, hp):
        from fastnn.models import Model
        model = self.hypermodel.build(hp)
        if not isinstance(model, Model):
            raise FatalTypeError(f"the model-building function (or HyperModel.build) must return a fastnn model; "
                                 f"received {model!r} of type {type(model).__name__}.")
        self._override_compile_args(model)
        if not getattr(model, "compiled", False):
            raise FatalValueError("the model-building function must compile the model (model.compile(optimizer, "
                                  "loss, metrics)), or pass optimizer= and loss= to the tuner.")
        if self.max_model_size and model.built and model.count_params() > self.max_model_size:
            raise FailedTrialError(f"Oversized model: {model.count_params()} parameters. Skip model.")
        return model

    def _override_compile_args(self, model):
        """Recompile with the tuner's optimizer / loss / metrics where given (KerasTuner's override)."""
        if not (self.optimizer or self.loss or self.metrics):
            return
        from fastnn.tuner import _models
        if getattr(model, "compiled", False):
            kwargs = _models.compile_kwargs(_models.compile_config(model))
        elif self.optimizer and self.loss:
            kwargs = {}
        else:
            raise FatalValueError("the model is not compiled: pass both optimizer= and loss= to the tuner, or "
                                  "compile it in build(hp).")
        if self.optimizer is not None:
            from fastnn import optimizers
            opt = self.optimizer
            # a fresh copy per model: optimizer state must not leak between trials
            kwargs["optimizer"] = opt if isinstance(opt, str) else optimizers.get(
                {"class_name": type(opt).__name__, "config": opt.get_config()})
        if self.loss is not None:
            kwargs["loss"] = self.loss
        if self.metrics is not None:
            kwargs["metrics"] = self.metrics
        model.compile(**kwargs)

    def _deepcopy_callbacks(self, callbacks):
        try:
            return copy.deepcopy(callbacks)
        except Exception as e:
            raise FatalValueError(f"All callbacks used during a search should be deep-copyable (they are reused "
                                  f"across trials); copy.deepcopy failed: {e}") from None

    # --- parallel workers -----------------------------------------------------------------------
    def _search_workers(self, fit_args, fit_kwargs):
        import multiprocessing

        from fastnn.kernels import threads
        per = max(1, threads.get_num_threads() // self.workers)
        print(f"Search: {self.workers} worker processes, {per} thread{'s' * (per > 1)} each "
              f"({self.oracle.storage_url})")
        ctx = multiprocessing.get_context("spawn")  # fork after OpenMP has run is unsafe
        procs = [ctx.Process(target=_worker_main, args=(self, i, per, fit_args, fit_kwargs),
                             name=f"fastnn-tuner-worker-{i}") for i in range(self.workers)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            raise
        bad = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
        remaining = self.remaining_trials
        if bad and (remaining is None or remaining > 0 or self._has_open_trials()):
            raise RuntimeError(f"search: worker processes failed ({bad}); rerun search() to resume.")
        if self._verbose:
            best = self.oracle.get_best_trials(1)
            if best and best[0].score is not None:
                print(f"Best {self.oracle.objective.name} So Far: {best[0].score}")

    def _has_open_trials(self):
        return any(t.status in (TrialStatus.RUNNING, TrialStatus.IDLE) for t in self.oracle.trials.values())

    # --- hooks (KerasTuner's) -------------------------------------------------------------------
    def pre_create_trial(self):
        pass

    def on_search_begin(self):
        pass

    def on_search_end(self):
        pass

    def on_trial_begin(self, trial):
        if not self._verbose:
            return
        n = len(self.oracle.trials)
        if self._worker_tag:
            print(f"{self._worker_tag}Running Trial #{n} ({trial.trial_id}): {trial.hyperparameters.values}")
            return
        print(f"\nSearch: Running Trial #{n}\n")
        best = self.oracle.get_best_trials(1)
        best = best[0] if best and best[0].score is not None else None
        row = "{0:18}|{1:18}|{2}"
        if trial.hyperparameters.values:
            print(row.format("Value", "Best Value So Far", "Hyperparameter"))
            for name, value in trial.hyperparameters.values.items():
                bv = best.hyperparameters.values.get(name, "?") if best else "?"
                print(row.format(_format_value(value), _format_value(bv), name))
        else:
            print("default configuration")
        print()

    def on_trial_end(self, trial):
        if not self._verbose:
            return
        took = _format_duration(time.time() - trial._start)
        name = self.oracle.objective.name
        what = {TrialStatus.PRUNED: "Pruned", TrialStatus.FAILED: "Failed"}.get(trial.status, "Complete")
        if self._worker_tag:
            print(f"{self._worker_tag}Trial {trial.trial_id} {what} [{took}] {name}: {trial.score}")
            return
        print(f"Trial {trial.trial_id} {what} [{took}]")
        if trial.score is not None:
            print(f"{name}: {trial.score}")
        best = self.oracle.get_best_trials(1)
        print(f"\nBest {name} So Far: {best[0].score if best else None}")
        print(f"Total elapsed time: {_format_duration(time.time() - self._search_start)}")

    def on_epoch_begin(self, trial, model, epoch, logs=None):
        pass

    def on_batch_begin(self, trial, model, batch, logs):
        pass

    def on_batch_end(self, trial, model, batch, logs=None):
        pass

    def on_epoch_end(self, trial, model, epoch, logs=None):
        pass

    # --- results --------------------------------------------------------------------------------
    @property
    def remaining_trials(self):
        return self.oracle.remaining_trials()

    def get_best_hyperparameters(self, num_trials=1):
        """The hyperparameters of the best trials, best first (build a fresh model with them)."""
        return [t.hyperparameters for t in self.oracle.get_best_trials(num_trials)]

    def get_best_models(self, num_models=1):
        """The best trials' models with the weights of their best epoch, best first."""
        return [self.load_model(t) for t in self.oracle.get_best_trials(num_models)]

    def load_model(self, trial):
        hp = trial.hyperparameters.copy()
        model = self._try_build(hp)
        path = self._get_checkpoint_fname(trial.trial_id)
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_model: trial {trial.trial_id} has no saved weights at {path} (was it "
                                    f"trained on this machine?).")
        if not model.built:
            result = self.oracle._frozen(trial.number).user_attrs.get("fastnn_result", {}) \
                if trial.number is not None else {}
            shape = result.get("input_shape")
            if shape is None:
                raise ValueError(f"load_model: the model of trial {trial.trial_id} is not built and its input shape "
                                 f"is unknown; give build(hp) an Input layer.")
            model.build(tuple(shape))
        load_checkpoint(model, path)
        return model

    def search_space_summary(self, extended=False):
        """Print the search space: each hyperparameter and its configuration."""
        hp = self.oracle.get_space()
        print("Search space summary")
        print(f"Default search space size: {len(hp.space)}")
        for p in hp.space:
            config = p.get_config()
            name = config.pop("name")
            if not extended:
                config.pop("conditions", None) if not config.get("conditions") else None
            print(f"{name} ({type(p).__name__})")
            print(config)

    def results_summary(self, num_trials=10):
        """Print the best `num_trials` trials: hyperparameters and score."""
        print("Results summary")
        print(f"Results in {self.project_dir}")
        print(f"Showing {num_trials} best trials")
        print(f"{self.oracle.objective}")
        for trial in self.oracle.get_best_trials(num_trials):
            print()
            trial.summary()


class _FixedEpochs:
    """Mixin: the tuner decides how many epochs a trial trains (Hyperband's max_epochs)."""

    def _trial_epochs(self):
        raise NotImplementedError

