"""The oracle: KerasTuner's `Oracle` and `Trial` over an Optuna study kept in a database.

Optuna does the engine's work: its sampler proposes each value (`hp._suggest`), its pruner
decides from the objective reported after every epoch, and its RDB storage holds the state of
the search, by default a SQLite file `directory/project_name/oracle.db`.

How the search survives a crash and shares one database between worker processes:

- Every running trial records a heartbeat. A trial whose worker died (a `kill -9`, a lost
  machine) is marked failed, and a copy of it with the same hyperparameters is queued
  (Optuna's `RetryHeartbeatStaleTrialCallback`): the interrupted trial runs again, finished
  trials stay finished. A dead worker on this machine is seen at once (its process is gone); a
  remote one after `grace_period` seconds without a heartbeat.
- The trial budget counts *fresh* trials (not the retried copies) in trial-number order, and
  the storage numbers trials atomically: a worker runs a fresh trial only when fewer than
  `max_trials` fresh trials have smaller numbers. So concurrent workers never overshoot the
  budget; a worker that loses that race drops its empty trial (no hyperparameters sampled).
- SQLite serialises writers with a lock that two read-then-write transactions can deadlock
  on; every transaction here starts with BEGIN IMMEDIATE (the write lock up front, waiting up
  to 60 s for it), so queued trials are popped by exactly one worker.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import threading
import time
import warnings

from fastnn.tuner import hyperparameters as hp_module
from fastnn.tuner import objective as obj_module

DB_NAME = "oracle.db"


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("fastnn.tuner needs Optuna: pip install 'fastnn[tune]' (or pip install optuna).") from None
    return optuna


class TrialStatus:
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PRUNED = "PRUNED"        # stopped early by the pruner (Hyperband, successive halving)
    FAILED = "FAILED"
    IDLE = "IDLE"
    STOPPED = "STOPPED"


class MetricsTracker:
    """Per-epoch values of every logged metric of a trial (averaged over its executions)."""

    def __init__(self, history=None, directions=None):
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self._directions = dict(directions or {})

    @property
    def metrics(self):
        return dict(self.history)

    def exists(self, name):
        return name in self.history

    def get_history(self, name):
        return list(self.history.get(name, []))

    def get_last_value(self, name):
        h = self.history.get(name)
        return h[-1] if h else None

    def get_best_value(self, name):
        h = [v for v in self.history.get(name, []) if v is not None and not math.isnan(v)]
        if not h:
            return None
        direction = self._directions.get(name) or obj_module.infer_direction(name) or "min"
        return max(h) if direction == "max" else min(h)


class Trial:
    """One configuration of the search: `trial_id`, `hyperparameters`, `score`, `status`, `metrics`."""

    def __init__(self, hyperparameters, trial_id=None, status=TrialStatus.RUNNING, message=None):
        self.hyperparameters = hyperparameters
        self.trial_id = trial_id
        self.status = status
        self.message = message
        self.score = None
        self.best_step = 0
        self.metrics = MetricsTracker()
        self.number = None  # the Optuna trial number of this attempt

    def summary(self):
        print(f"Trial {self.trial_id} summary")
        print("Hyperparameters:")
        self.display_hyperparameters()
        if self.score is not None:
            print(f"Score: {self.score}")
        if self.message is not None:
            print(self.message)

    def display_hyperparameters(self):
        if self.hyperparameters.values:
            for name, value in self.hyperparameters.values.items():
                print(f"{name}:", value)
        else:
            print("default configuration")

    def __repr__(self):
        return (f"Trial(trial_id={self.trial_id!r}, status={self.status!r}, score={self.score!r}, "
                f"values={self.hyperparameters.values!r})")


# --- processes: is the worker that holds a trial still alive? -------------------------------
def _process_token(pid):
    """Start time of process `pid` (Linux), '' when unknown, None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]  # zombie or dead; field 22: starttime
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def worker_identity():
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": _process_token(os.getpid())}


def _worker_is_dead(w):
    if not isinstance(w, dict) or w.get("host") != socket.gethostname():
        return False  # another machine: the heartbeat decides
    token = _process_token(int(w["pid"]))
    return token is None or (bool(token) and bool(w.get("token")) and token != w["token"])


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive advisory lock on `path` (creating the database must not race)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking has to do
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sqlite_serialized(storage):
    """BEGIN IMMEDIATE in every transaction of a SQLite RDBStorage (see the module docstring)."""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN; pysqlite must not
        # write-ahead log, synced at checkpoints: a commit costs a write, not an fsync (20-45 ms
        # each on a busy disk, several per trial). A killed process loses nothing committed; a
        # power cut may lose the last commits, never the file. WAL needs a local disk.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while the storage initialised lack the listeners


class _Heartbeat:
    """Record the trial's heartbeat every `interval` seconds from a thread while it runs."""

    def __init__(self, storage, trial_id, interval):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fastnn-tuner-heartbeat")

    def _run(self):
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a busy database now and then must not kill the trial
                pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Oracle:
    """KerasTuner's Oracle on an Optuna study: proposes trials, records results, ranks them.

    Subclasses choose Optuna's sampler (`_make_sampler`), pruner (`_make_pruner`) and the trial
    budget (`_budget`). The arguments are KerasTuner's.
    """

    # seconds; the heartbeat of a trial and how long a worker on another machine may stay
    # silent before its trial is declared dead and run again
    heartbeat_interval = 2
    grace_period = 30
    poll_interval = 0.5

    def __init__(self, objective=None, max_trials=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, seed=None, max_retries_per_trial=0, max_consecutive_failed_trials=3):
        self.objective = obj_module.create_objective(objective)
        if max_trials is not None and (isinstance(max_trials, bool) or not isinstance(max_trials, int)
                                       or max_trials < 1):
            raise ValueError(f"max_trials must be a positive int or None; received {max_trials!r}.")
        self.max_trials = max_trials
        if hyperparameters is None and not (tune_new_entries and allow_new_entries):
            raise ValueError("with tune_new_entries=False or allow_new_entries=False, declare the search space in "
                             "`hyperparameters`.")
        self.hyperparameters = hyperparameters.copy() if hyperparameters is not None else hp_module.HyperParameters()
        self.allow_new_entries = allow_new_entries
        self.tune_new_entries = tune_new_entries
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None; received {seed!r}.")
        self.seed = seed
        self.max_retries_per_trial = max_retries_per_trial
        self.max_consecutive_failed_trials = max_consecutive_failed_trials
        self.storage_url = None
        self.study_name = None
        self.tuner_id = "tuner0"
        self._study = None
        self._storage = None
        self._retry_callback = None

    # --- what subclasses choose ----------------------------------------------------------------
    def _make_sampler(self, seed):
        raise NotImplementedError

    def _make_pruner(self):
        return None

    _prunes = False  # True when a pruner watches the epochs

    def _budget(self):
        """Fresh trials to run in total (None: until the sampler runs out)."""
        return self.max_trials

    def _sampler_seed(self, n_existing):
        """Each worker and each resumed run draws a different stream from the same seed."""
        if self.seed is None:
            return None
        import zlib
        return (self.seed + 7919 * n_existing + zlib.crc32(self.tuner_id.encode())) % (2 ** 31)

    # --- the database ---------------------------------------------------------------------------
    def _set_project_dir(self, directory, project_name, storage=None, overwrite=False):
        self._directory, self._project_name = str(directory), project_name
        self.study_name = project_name
        if storage is None:
            os.makedirs(self._project_dir, exist_ok=True)
            self.storage_url = "sqlite:///" + os.path.abspath(os.path.join(self._project_dir, DB_NAME))
        else:
            self.storage_url = storage if isinstance(storage, str) else storage.url
        if overwrite:
            self._delete_study()

    @property
    def _project_dir(self):
        return os.path.join(self._directory, self._project_name)

    def _delete_study(self):
        optuna = import_optuna()
        if self.storage_url.startswith("sqlite:///") and self.storage_url.endswith(DB_NAME):
            return  # the tuner removed the project folder, database included
        storage = self._open_storage()
        try:
            optuna.delete_study(study_name=self.study_name, storage=storage)
        except KeyError:
            pass
        self._storage = None

    def _open_storage(self):
        optuna = import_optuna()
        sqlite = self.storage_url.startswith("sqlite:")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Optuna 4.9 renamed RetryFailedTrialCallback and failed_trial_callback
            retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            self._retry_callback = (retry or optuna.storages.RetryFailedTrialCallback)()
            key = ("heartbeat_stale_trial_callback" if retry is not None else "failed_trial_callback")
            storage = optuna.storages.RDBStorage(
                self.storage_url, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,
                heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period,
                **{key: self._retry_callback})
        if sqlite:
            _sqlite_serialized(storage)
        return storage

    @property
    def study(self):
        if self._study is None:
            self._open_study()
        return self._study

    def _open_study(self):
        optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the tuner prints its own trial lines
        lock = None
        if self.storage_url.startswith("sqlite:///"):
            lock = os.path.join(os.path.dirname(self.storage_url[len("sqlite:///"):]) or ".", ".oracle.lock")
        with _file_lock(lock) if lock else contextlib.nullcontext():
            self._storage = self._open_storage()
            direction = "maximize" if self.objective.direction == "max" else "minimize"
            study = optuna.create_study(storage=self._storage, study_name=self.study_name, direction=direction,
                                        load_if_exists=True)
            config = {"objective": self.objective.name, "direction": self.objective.direction,
                      "oracle": type(self).__name__}
            saved = study.user_attrs.get("fastnn_search")
            if saved is None:
                study.set_user_attr("fastnn_search", config)
            elif (saved["objective"], saved["direction"]) != (config["objective"], config["direction"]):
                raise ValueError(f"project {self.study_name!r} holds a search for {saved['objective']!r} "
                                 f"({saved['direction']}) in {self.storage_url}; this tuner optimises "
                                 f"{config['objective']!r} ({config['direction']}). Pass overwrite=True to start "
                                 f"afresh, or use another project_name.")
        n_existing = len(study.get_trials(deepcopy=False))
        self._study = optuna.load_study(study_name=self.study_name, storage=self._storage,
                                        sampler=self._make_sampler(self._sampler_seed(n_existing)),
                                        pruner=self._make_pruner())
        self._study_id = self._storage.get_study_id_from_name(self.study_name)

    def __getstate__(self):  # worker processes reopen the database themselves
        state = dict(self.__dict__)
        state.update(_study=None, _storage=None, _retry_callback=None)
        return state

    # --- trials ---------------------------------------------------------------------------------
    def _frozen(self, number):
        tid = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        return self._storage.get_trial(tid)

    @staticmethod
    def _is_fresh(ft):
        return "failed_trial" not in ft.system_attrs and not ft.user_attrs.get("fastnn_discarded")

    def _fail_dead_trials(self):
        """Fail the trials of dead workers and queue each again with the same hyperparameters."""
        optuna = import_optuna()
        study = self.study
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        for ft in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if not _worker_is_dead(ft.user_attrs.get("fastnn_trial", {}).get("worker")):
                continue
            tid = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, ft.number)
            try:
                if not self._storage.set_trial_state_values(tid, optuna.trial.TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            self._retry_callback(study, self._storage.get_trial(tid))

    def _next_trial(self, should_stop=None):
        """Ask Optuna for the next trial this worker runs -> optuna.Trial, or None when the search is done.

        Queued retries come first. When the budget is spent, waits for the other workers'
        running trials (a dead worker's trial comes back as a queued retry).
        """
        optuna = import_optuna()
        state = optuna.trial.TrialState
        study = self.study
        while True:
            self._fail_dead_trials()
            trials = study.get_trials(deepcopy=False)
            budget = self._budget()
            waiting = any(t.state == state.WAITING for t in trials)
            fresh = sum(self._is_fresh(t) for t in trials)
            if waiting or budget is None or fresh < budget:
                with warnings.catch_warnings():  # our own loop records the heartbeats
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                if self._may_run(trial.number):
                    return trial
                trial.set_user_attr("fastnn_discarded", True)  # lost the race for the last slot
                self._tell(trial, state=state.FAIL)
                continue
            if not any(t.state == state.RUNNING for t in trials) or (should_stop and should_stop()):
                return None
            time.sleep(self.poll_interval)

    def _may_run(self, number):
        """Whether trial `number` is within the budget: a retry always is; a fresh trial when
        fewer than `budget` fresh trials have smaller numbers. Numbers never change and a trial
        is fresh or not from its creation, so every worker reaches the same verdict."""
        ft = self._frozen(number)
        budget = self._budget()
        if not self._is_fresh(ft) or budget is None:
            return True
        earlier = sum(self._is_fresh(t) for t in self.study.get_trials(deepcopy=False) if t.number < number)
        return earlier < budget

    def _heartbeat(self, trial):
        tid = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
        return _Heartbeat(self._storage, tid, self.heartbeat_interval)

    def _tell(self, trial, value=None, state=None):
        """Record a trial's end; False when another worker had already declared it dead."""
        optuna = import_optuna()
        ts = optuna.trial.TrialState
        if state is None and (value is None or not math.isfinite(value)):
            state, value = ts.FAIL, None
        try:
            self.study.tell(trial, value if state in (None, ts.COMPLETE) else None,
                            state=state, skip_if_finished=False)
        except RuntimeError:
            pass  # GridSampler calls study.stop() after the last grid point; the result is stored
        except ValueError:
            if self._frozen(trial.number).state.is_finished():
                warnings.warn(f"trial {trial.number} was declared dead by another worker (no heartbeat for "
                              f"{self.grace_period} s) and queued again; this result is dropped.", stacklevel=2)
                return False
            raise
        return True

    def _retry_failed(self, trial):
        """Queue a trial that raised again (max_retries_per_trial), as a stale trial is queued."""
        ft = self._frozen(trial.number)
        history = list(ft.system_attrs.get("retry_history", []))
        if len(history) >= self.max_retries_per_trial:
            return False
        optuna = import_optuna()
        self.study.add_trial(optuna.create_trial(
            state=optuna.trial.TrialState.WAITING, params=ft.params, distributions=ft.distributions,
            user_attrs={k: v for k, v in ft.user_attrs.items() if k != "message"},
            system_attrs={"failed_trial": ft.system_attrs.get("failed_trial", ft.number),
                          "retry_history": history + [ft.number]}))
        return True

    # --- KerasTuner's read API --------------------------------------------------------------------
    def _to_trial(self, ft):
        optuna = import_optuna()
        ts = optuna.trial.TrialState
        start = ft.user_attrs.get("fastnn_trial", {})
        result = ft.user_attrs.get("fastnn_result", {})
        hps = self.hyperparameters.copy()
        hps.values = dict(result.get("values", start.get("values", {})))
        status = {ts.COMPLETE: TrialStatus.COMPLETED, ts.PRUNED: TrialStatus.PRUNED, ts.RUNNING: TrialStatus.RUNNING,
                  ts.WAITING: TrialStatus.IDLE}.get(ft.state, TrialStatus.FAILED)
        t = Trial(hps, trial_id=start.get("trial_id", str(ft.number)), status=status,
                  message=ft.user_attrs.get("message"))
        t.number = ft.number
        score = result.get("score", ft.value if ft.state in (ts.COMPLETE, ts.PRUNED) else None)
        t.score = None if score is None else float(score)
        t.best_step = result.get("best_step", 0)
        t.metrics = MetricsTracker(result.get("metrics", {}), {self.objective.name: self.objective.direction})
        return t

    @property
    def trials(self):
        """trial_id -> Trial, the latest attempt of each (an interrupted attempt that was queued
        again is replaced by its retry)."""
        out = {}
        for ft in self.study.get_trials(deepcopy=False):
            if ft.user_attrs.get("fastnn_discarded") or ft.state.name == "WAITING":
                continue
            t = self._to_trial(ft)
            if t.trial_id in out and out[t.trial_id].number > ft.number:
                continue
            out[t.trial_id] = t
        return out

    def get_trial(self, trial_id):
        return self.trials[trial_id]

    def get_space(self):
        return self.hyperparameters.copy()

    def get_best_trials(self, num_trials=1):
        """The `num_trials` best trials by score (completed and pruned ones), best first."""
        trials = list(self.trials.values())
        scored = [t for t in trials if t.status in (TrialStatus.COMPLETED, TrialStatus.PRUNED)
                  and t.score is not None and not math.isnan(t.score)]
        # a completed trial beats a pruned one with the same score (it trained longer)
        scored.sort(key=lambda t: ((-t.score if self.objective.direction == "max" else t.score),
                                   t.status != TrialStatus.COMPLETED))
        if len(scored) < num_trials:
            scored += [t for t in trials if t not in scored]
        return scored[:num_trials]

    def remaining_trials(self):
        budget = self._budget()
        if budget is None:
            return None
        return max(0, budget - sum(self._is_fresh(t) for t in self.study.get_trials(deepcopy=False)))

    def update_space(self, hyperparameters):
        """Add hyperparameters first seen in a trial to the search space."""
        new = [p for p in hyperparameters.space if not self.hyperparameters._exists(p.name, p.conditions)]
        if new and not self.allow_new_entries:
            raise RuntimeError(f"allow_new_entries is False, but found new entries {new}.")
        self.hyperparameters.merge(new, overwrite=False)


def remove_project(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
