"""The tuners on the 8x8 digits with small budgets: results, resume from the database, errors."""
import os

import pytest

import fastnn as keras
import fastnn.tuner as kt


@pytest.fixture(autouse=True)
def _optuna(optuna):
    return optuna


def build_mlp(hp):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu"),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 3e-2, sampling="log")),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class CountFits(keras.callbacks.Callback):
    """Counts trainings across the deep copies the tuner makes per trial."""
    log = []

    def on_train_begin(self, logs=None):
        CountFits.log.append(1)


@pytest.fixture
def fits():
    CountFits.log = []
    return CountFits.log


def test_random_search_best_model_on_held_out_digits(digits, tmp_path):
    (x, y), (xt, yt) = digits
    tuner = kt.RandomSearch(build_mlp, objective="val_accuracy", max_trials=3, seed=3, directory=tmp_path,
                            project_name="random")
    tuner.search(x, y, epochs=12, batch_size=32, validation_split=0.2, verbose=0)
    trials = tuner.oracle.get_best_trials(3)
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials)
    scores = [t.score for t in trials]
    assert scores == sorted(scores, reverse=True)
    # the score is the best epoch's val_accuracy (KerasTuner: the best step of the history)
    best = trials[0]
    assert best.score == pytest.approx(max(best.metrics.get_history("val_accuracy")))
    assert best.metrics.get_best_value("val_accuracy") == pytest.approx(best.score)
    assert tuner.get_best_hyperparameters(1)[0].values == best.hyperparameters.values
    model = tuner.get_best_models(1)[0]
    # the restored weights are those of the best epoch: its validation accuracy comes back
    xv, yv = x[int(len(x) * 0.8):], y[int(len(x) * 0.8):]
    assert model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"] == pytest.approx(best.score, abs=1e-6)
    test_acc = model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    assert test_acc >= 0.93, test_acc


def test_grid_search_runs_every_combination_once(digits, tmp_path, fits):
    (x, y), _ = digits

    def build(hp):
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hp.Choice("units", [16, 32]), activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.Adam(hp.Choice("lr", [1e-2, 3e-2])), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    tuner = kt.GridSearch(build, objective="val_loss", directory=tmp_path, project_name="grid")
    assert tuner.remaining_trials == 4
    tuner.search(x[:400], y[:400], epochs=1, validation_split=0.25, verbose=0, callbacks=[CountFits()])
    combos = sorted((t.hyperparameters["units"], t.hyperparameters["lr"]) for t in tuner.oracle.trials.values())
    assert combos == [(16, 1e-2), (16, 3e-2), (32, 1e-2), (32, 3e-2)]
    assert len(fits) == 4 and tuner.remaining_trials == 0
    best = tuner.oracle.get_best_trials(4)
    assert [t.score for t in best] == sorted(t.score for t in best)  # val_loss: minimised


def test_bayesian_optimization_tpe_and_gp(digits, tmp_path, require):
    (x, y), _ = digits
    for sampler in ("tpe", "gp"):
        if sampler == "gp":
            require("torch")          # Optuna's GPSampler runs on them
            require("scipy")
        tuner = kt.BayesianOptimization(build_mlp, objective="val_accuracy", max_trials=4, num_initial_points=2,
                                        seed=1, sampler=sampler, directory=tmp_path, project_name=sampler)
        tuner.search(x[:500], y[:500], epochs=2, validation_split=0.2, verbose=0)
        name = {"tpe": "TPESampler", "gp": "GPSampler"}[sampler]
        assert type(tuner.oracle.study.sampler).__name__ == name
        trials = tuner.oracle.trials
        assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials.values())
        assert len({tuple(t.hyperparameters.values.items()) for t in trials.values()}) == 4
    with pytest.raises(ValueError, match="'tpe' or 'gp'"):
        kt.BayesianOptimization(build_mlp, objective="val_accuracy", sampler="cma", directory=tmp_path)


def test_hyperband_prunes_on_the_epochs(digits, tmp_path):
    (x, y), _ = digits

    def build(hp):
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        # a wide range: some trials learn, some barely move, so the pruner has something to stop
        model.compile(keras.optimizers.SGD(hp.Float("lr", 1e-4, 1.0, sampling="log")),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    tuner = kt.Hyperband(build, objective="val_accuracy", max_epochs=4, factor=2, seed=0, directory=tmp_path,
                         project_name="hb")
    # KerasTuner's bracket sizes for max_epochs=4, factor=2: 3 brackets of 3 + 3 + 4 configurations
    assert tuner.remaining_trials == 10
    tuner.search(x[:400], y[:400], epochs=99, batch_size=64, validation_split=0.25, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 10
    pruned = [t for t in trials if t.status == "PRUNED"]
    done = [t for t in trials if t.status == "COMPLETED"]
    assert pruned and done
    assert any(len(t.metrics.get_history("val_accuracy")) < 4 for t in pruned)
    assert all(len(t.metrics.get_history("val_accuracy")) == 4 for t in done)  # epochs=99 became max_epochs
    assert tuner.oracle.get_best_trials(1)[0].status == "COMPLETED"


def test_early_stopping_inside_a_search(digits, tmp_path):
    (x, y), _ = digits
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    tuner = kt.RandomSearch(build_mlp, objective="val_loss", max_trials=2, seed=0, directory=tmp_path,
                            project_name="es")
    tuner.search(x, y, epochs=200, validation_split=0.2, verbose=0, callbacks=[stop])
    lengths = [len(t.metrics.get_history("val_loss")) for t in tuner.oracle.trials.values()]
    assert len(lengths) == 2 and all(2 <= n < 200 for n in lengths), lengths
    assert stop.model is None  # the tuner trained deep copies; the user's instance is untouched


def test_search_space_errors_come_before_any_training(digits, tmp_path, fits):
    (x, y), _ = digits

    def bad_range(hp):
        hp.Int("units", 64, 8)
        return build_mlp(hp)

    def empty_choice(hp):
        hp.Choice("act", [])
        return build_mlp(hp)
    with pytest.raises(ValueError, match="min_value 64 is greater than max_value 8"):
        kt.RandomSearch(bad_range, objective="val_accuracy", directory=tmp_path, project_name="a")
    with pytest.raises(ValueError, match="non-empty"):
        kt.GridSearch(empty_choice, objective="val_accuracy", directory=tmp_path, project_name="b")
    with pytest.raises(ValueError, match="unknown objective name 'val_acuracy'"):
        kt.RandomSearch(build_mlp, objective="val_acuracy", directory=tmp_path, project_name="c")
    # a known metric the model does not log, and a validation metric without validation data
    tuner = kt.RandomSearch(build_mlp, objective="val_auc", max_trials=2, directory=tmp_path, project_name="d")
    with pytest.raises(ValueError, match="'val_auc' is not among the metrics the model logs"):
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0, callbacks=[CountFits()])
    tuner = kt.RandomSearch(build_mlp, objective="val_accuracy", max_trials=2, directory=tmp_path, project_name="e")
    with pytest.raises(ValueError, match="validation_split=0.2 or validation_data"):
        tuner.search(x, y, epochs=1, verbose=0, callbacks=[CountFits()])
    assert fits == [] and tuner.oracle.trials == {}


def test_resume_keeps_finished_trials_and_overwrite_starts_afresh(digits, tmp_path, fits):
    (x, y), _ = digits
    args = dict(objective="val_accuracy", seed=5, directory=tmp_path, project_name="p")
    fit_args = dict(epochs=1, validation_split=0.2, verbose=0, callbacks=[CountFits()])
    first = kt.RandomSearch(build_mlp, max_trials=2, **args)
    first.search(x[:300], y[:300], **fit_args)
    before = {k: t.hyperparameters.values for k, t in first.oracle.trials.items()}
    assert len(fits) == 2 and os.path.exists(os.path.join(tmp_path, "p", "oracle.db"))
    again = kt.RandomSearch(build_mlp, max_trials=2, **args)   # same project: nothing left to do
    again.search(x[:300], y[:300], **fit_args)
    assert len(fits) == 2 and again.remaining_trials == 0
    more = kt.RandomSearch(build_mlp, max_trials=3, **args)    # a bigger budget: one more trial
    more.search(x[:300], y[:300], **fit_args)
    after = {k: t.hyperparameters.values for k, t in more.oracle.trials.items()}
    assert len(fits) == 3 and len(after) == 3 and all(after[k] == v for k, v in before.items())
    fresh = kt.RandomSearch(build_mlp, max_trials=1, overwrite=True, **args)
    assert fresh.oracle.trials == {} and not os.path.exists(os.path.join(tmp_path, "p", "trial_00"))
    with pytest.raises(ValueError, match="Pass overwrite=True"):
        kt.RandomSearch(build_mlp, max_trials=1, **dict(args, objective="val_loss"))


def test_conditional_space_is_discovered_and_respected(digits, tmp_path):
    (x, y), _ = digits
    seen = []

    def build(hp):
        kind = hp.Choice("kind", ["one", "two"])
        stack = [keras.Input((64,))]
        with hp.conditional_scope("kind", ["one"]):
            if kind == "one":
                stack.append(keras.layers.Dense(hp.Int("width", 8, 32, step=8), activation="relu"))
        with hp.conditional_scope("kind", ["two"]):
            if kind == "two":
                stack += [keras.layers.Dense(hp.Int("width2", 8, 32, step=8), activation="relu"),
                          keras.layers.Dense(16, activation="relu")]
        stack.append(keras.layers.Dense(10, activation="softmax"))
        model = keras.Sequential(stack)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        seen.append(dict(hp.values))
        return model
    tuner = kt.RandomSearch(build, objective="val_accuracy", max_trials=6, seed=2, directory=tmp_path,
                            project_name="cond")
    assert [p.name for p in tuner.oracle.get_space().space] == ["kind", "width", "width2"]
    tuner.search(x[:300], y[:300], epochs=1, validation_split=0.2, verbose=0)
    for t in tuner.oracle.trials.values():
        v = t.hyperparameters.values
        assert set(v) == ({"kind", "width"} if v["kind"] == "one" else {"kind", "width2"})
    assert {t.hyperparameters["kind"] for t in tuner.oracle.trials.values()} == {"one", "two"}


def test_summaries(digits, tmp_path, capsys):
    (x, y), _ = digits
    tuner = kt.RandomSearch(build_mlp, objective="val_accuracy", max_trials=2, seed=0, directory=tmp_path,
                            project_name="s")
    tuner.search_space_summary()
    out = capsys.readouterr().out
    assert "Default search space size: 2" in out and "units (Int)" in out and "lr (Float)" in out
    tuner.search(x[:300], y[:300], epochs=1, validation_split=0.2)
    out = capsys.readouterr().out
    assert "Search: Running Trial #1" in out and "Best val_accuracy So Far" in out
    tuner.results_summary(1)
    out = capsys.readouterr().out
    best = tuner.oracle.get_best_trials(1)[0]
    assert f"Trial {best.trial_id} summary" in out and f"Score: {best.score}" in out
    assert out.count("summary") == 2  # "Results summary" and one trial


def test_fastnn_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="workers must be a positive int"):
        kt.RandomSearch(build_mlp, objective="val_accuracy", workers=0, directory=tmp_path)
    with pytest.raises(ValueError, match="pruner must be None"):
        kt.RandomSearch(build_mlp, objective="val_accuracy", pruner="sometimes", directory=tmp_path)
    with pytest.raises(ValueError, match="factor must be an int >= 2"):
        kt.Hyperband(build_mlp, objective="val_accuracy", factor=1, directory=tmp_path)
    with pytest.raises(TypeError, match="unexpected arguments"):
        kt.RandomSearch(build_mlp, objective="val_accuracy", directory=tmp_path, max_epochs=3)


def test_importing_the_tuner_does_not_import_optuna(tmp_path):
    import subprocess
    import sys
    code = ("import fastnn, fastnn.tuner, fastnn.wrappers, sys; "
            "assert 'optuna' not in sys.modules, 'optuna imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)   # not ./fastnn


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks Optuna directly
def test_budget_is_decided_by_trial_number(tmp_path):
    """Workers that pass the budget check at the same moment: the storage numbers their trials,
    and only those within the budget by number may run (the rest are dropped, never trained)."""
    tuner = kt.RandomSearch(build_mlp, objective="val_accuracy", max_trials=2, directory=tmp_path,
                            project_name="race")
    oracle = tuner.oracle
    first = oracle._next_trial()
    # two more workers asked concurrently, before either saw the other's trial
    racing = [oracle.study.ask(), oracle.study.ask()]
    assert [first.number, *(t.number for t in racing)] == [0, 1, 2]
    assert [oracle._may_run(n) for n in (0, 1, 2)] == [True, True, False]
    racing[1].set_user_attr("fastnn_discarded", True)  # as _next_trial does, after its verdict
    oracle._tell(racing[1], state=__import__("optuna").trial.TrialState.FAIL)
    assert oracle.remaining_trials() == 0
    # a retry (a queued copy of a dead trial) always runs, whatever the count
    oracle._retry_callback(oracle.study, oracle._frozen(0))
    retry = oracle.study.ask()
    assert retry.number == 3 and oracle._may_run(3)


def test_executions_validation_data_and_storage_url(digits, tmp_path, fits):
    (x, y), _ = digits
    db = tmp_path / "elsewhere.db"
    tuner = kt.RandomSearch(build_mlp, objective=kt.Objective("val_loss", "min"), max_trials=1,
                            executions_per_trial=2, seed=4, directory=tmp_path, project_name="ex",
                            storage=f"sqlite:///{db}")
    tuner.search(x[:300], y[:300], epochs=1, validation_data=(x[300:400], y[300:400]), verbose=0,
                 callbacks=[CountFits()])
    assert len(fits) == 2                                       # two executions of the one trial
    (trial,) = tuner.oracle.trials.values()
    # one epoch each: the score is the mean of the two executions' val_loss, as the history is
    assert trial.score == pytest.approx(trial.metrics.get_history("val_loss")[0])
    assert db.exists() and not (tmp_path / "ex" / "oracle.db").exists()


def test_successive_halving_pruner_sees_every_epoch(digits, tmp_path, optuna):
    (x, y), _ = digits

    def build(hp):
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.SGD(hp.Float("lr", 1e-4, 1.0, sampling="log")),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    tuner = kt.RandomSearch(build, objective="val_accuracy", max_trials=8, seed=0, pruner=pruner,
                            directory=tmp_path, project_name="sh")
    tuner.search(x[:400], y[:400], epochs=4, batch_size=64, validation_split=0.25, verbose=0)
    trials = list(tuner.oracle.trials.values())
    pruned = [t for t in trials if t.status == "PRUNED"]
    assert len(trials) == 8 and pruned
    for t in trials:  # the pruner got the objective after each epoch the trial trained
        ft = tuner.oracle._frozen(t.number)
        assert sorted(ft.intermediate_values) == list(range(1, len(t.metrics.get_history("val_accuracy")) + 1))
    assert type(tuner.oracle.study.pruner).__name__ == "SuccessiveHalvingPruner"
