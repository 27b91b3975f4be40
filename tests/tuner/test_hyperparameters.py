"""HyperParameters: KerasTuner's value sets, defaults, conditions and errors; how Optuna samples them."""
import math

import numpy as np
import pytest

import fastnn.tuner as kt
from fastnn.tuner.hyperparameters import Float, Int


def test_int_values_and_defaults():
    hp = kt.HyperParameters()
    assert hp.Int("n", 6, 13, step=3) == 6                    # default: min_value
    assert tuple(hp.space[0].values) == (6, 9, 12)            # max not reached by the step is left out
    assert tuple(Int("b", 2, 32, step=2, sampling="log").values) == (2, 4, 8, 16, 32)
    assert hp.Int("m", 1, 5, default=3) == 3
    assert hp.values == {"n": 6, "m": 3}
    assert tuple(Float("f", 0, 1, step=0.25).values) == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(Float("g", 1e-4, 1e-1, sampling="log").values) == 10   # KerasTuner: 10 evenly spread


def test_choice_boolean_fixed():
    hp = kt.HyperParameters()
    assert hp.Choice("act", ["relu", "tanh"]) == "relu"
    assert hp.Choice("w", [8, 16], default=16) == 16
    assert hp.Boolean("bn") is False
    assert hp.Fixed("epochs", 3) == 3
    assert hp["act"] == "relu" and "bn" in hp and "nope" not in hp
    with pytest.raises(KeyError):
        hp.get("nope")


@pytest.mark.parametrize("make, message", [
    (lambda hp: hp.Int("units", 10, 5), "min_value 10 is greater than max_value 5"),
    (lambda hp: hp.Float("lr", 1e-2, 1e-4), "greater than max_value"),
    (lambda hp: hp.Choice("act", []), "non-empty"),
    (lambda hp: hp.Choice("act", ["relu", 3]), "one type"),
    (lambda hp: hp.Float("lr", 0.0, 1.0, sampling="log"), "min_value > 0"),
    (lambda hp: hp.Float("lr", 1e-3, 1.0, sampling="log", step=1.0), "step > 1"),
    (lambda hp: hp.Int("u", 1, 8, sampling="cubic"), "sampling must be one of"),
    (lambda hp: hp.Int("u", 1.5, 8), "must be an int"),
    (lambda hp: hp.Choice("act", ["a", "b"], default="c"), "default must be one of the choices"),
    (lambda hp: hp.Float("lr", 0, math.inf), "finite"),
])
def test_search_space_errors_are_named_value_errors(make, message):
    with pytest.raises(ValueError, match=message) as e:
        make(kt.HyperParameters())
    assert "HyperParameters." in str(e.value)  # names the hyperparameter and its kind


def test_conditional_scope_and_parent_arguments():
    hp = kt.HyperParameters()
    kind = hp.Choice("kind", ["mlp", "cnn"])
    with hp.conditional_scope("kind", ["mlp"]):
        units = hp.Int("units", 8, 64)
    with hp.conditional_scope("kind", "cnn"):
        filters = hp.Int("filters", 4, 16)
    dropout = hp.Float("dropout", 0.0, 0.5, parent_name="kind", parent_values=["cnn"])
    assert (kind, units, filters, dropout) == ("mlp", 8, None, None)
    assert hp.values == {"kind": "mlp", "units": 8}
    assert [p.name for p in hp.space] == ["kind", "units", "filters", "dropout"]
    with pytest.raises(ValueError, match="inactive"):
        hp.get("filters")
    hp.values["kind"] = "cnn"
    hp.ensure_active_values()
    assert hp.values == {"kind": "cnn", "filters": 4, "dropout": 0.0}
    with pytest.raises(ValueError, match="parent hyperparameter 'missing' is not defined"):
        with hp.conditional_scope("missing", ["x"]):
            pass


def test_config_round_trip():
    hp = kt.HyperParameters()
    hp.Choice("kind", ["a", "b"])
    hp.Float("lr", 1e-4, 1e-1, sampling="reverse_log", default=1e-2, parent_name="kind", parent_values=["a"])
    hp.Int("n", 2, 32, step=2, sampling="log")
    clone = kt.HyperParameters.from_config(hp.get_config())
    assert clone.values == hp.values
    assert [repr(p) for p in clone.space] == [repr(p) for p in hp.space]
    assert clone.space[1].conditions == hp.space[1].conditions


@pytest.mark.parametrize("hp, param, value", [
    (Int("b", 2, 32, step=2, sampling="log"), 3, 16),          # Optuna samples the index
    (Float("f", 0.0, 1.0, step=0.25), 2, 0.5),
    (Int("u", 1, 100, sampling="reverse_log"), 1, 100),         # mirrored: y=1 -> max
    (Float("d", 0.1, 0.9, sampling="reverse_log"), 0.1, 0.9),
    (kt.Choice("a", ["x", "y"]), "y", "y"),
])
def test_optuna_parameter_maps_back_to_the_value(optuna, hp, param, value):
    got = hp._suggest(optuna.trial.FixedTrial({hp.name: param}))
    assert got == pytest.approx(value) and type(got) is type(value)
    assert param in hp._grid() or isinstance(param, float)


def _draws(optuna, hp, n=400):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        t = study.ask()
        out.append(hp._suggest(t))
        study.tell(t, 0.0)
    return np.array(out)


def test_sampling_follows_kerastuner(optuna):
    # log: half the draws below the geometric middle sqrt(1 * 1000); reverse_log mirrors it, so
    # half lie above max + min - sqrt(min * max); linear: half below the arithmetic middle.
    # 400 draws: the fraction's standard error is 0.025, the bounds are 4 of them.
    lo, hi = 1.0, 1000.0
    mid = math.sqrt(lo * hi)
    log = _draws(optuna, Float("x", lo, hi, sampling="log"))
    rev = _draws(optuna, Float("x", lo, hi, sampling="reverse_log"))
    lin = _draws(optuna, Float("x", lo, hi))
    assert abs(np.mean(log < mid) - 0.5) < 0.1
    assert abs(np.mean(rev > hi + lo - mid) - 0.5) < 0.1
    assert abs(np.mean(lin < (lo + hi) / 2) - 0.5) < 0.1
    assert lo <= log.min() and log.max() <= hi and lo <= rev.min() and rev.max() <= hi
    ints = _draws(optuna, Int("n", 6, 13, step=3), n=60)
    assert set(ints.tolist()) == {6, 9, 12}
