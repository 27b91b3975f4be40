"""fastnn.optimizers and schedules against Keras 3: several steps on several variables, every option."""
import json
import os

import numpy as np
import pytest

import fastnn.optimizers as O
from fastnn.optimizers import schedules as S

os.environ.setdefault("KERAS_BACKEND", "torch")


SHAPES = [(3, 4), (5,), (2, 2, 3)]


def _problem(seed=0, steps=5):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[rng.normal(0, 2, s).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    return w0, grads


def _run_keras(keras, cls, kwargs, w0, grads, none_index=None):
    opt = getattr(keras.optimizers, cls)(**kwargs)
    vs = [keras.Variable(w.copy()) for w in w0]
    for gs in grads:
        gs = [None if i == none_index else keras.ops.convert_to_tensor(g) for i, g in enumerate(gs)]
        opt.apply(gs, vs)
    return [keras.ops.convert_to_numpy(v) for v in vs], opt


def _run_ours(cls, kwargs, w0, grads, none_index=None):
    opt = getattr(O, cls)(**kwargs)
    vs = [w.copy() for w in w0]
    for gs in grads:
        gs = [None if i == none_index else g.copy() for i, g in enumerate(gs)]
        opt.apply(gs, vs)
    return vs, opt


CASES = [
    ("SGD", {}), ("SGD", {"momentum": 0.9}), ("SGD", {"momentum": 0.8, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "clipnorm": 1.0}), ("SGD", {"momentum": 0.5, "global_clipnorm": 2.0}),
    ("SGD", {"clipvalue": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {}), ("RMSprop", {"centered": True}), ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "rho": 0.8, "clipnorm": 0.7}),
    ("Adagrad", {}), ("Adagrad", {"initial_accumulator_value": 0.5, "learning_rate": 0.1, "global_clipnorm": 1.0}),
    ("Adadelta", {}), ("Adadelta", {"learning_rate": 1.0, "rho": 0.9, "clipvalue": 1.0}),
    ("Adam", {}), ("Adam", {"amsgrad": True}), ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99,
                                                         "epsilon": 1e-4, "weight_decay": 0.05}),
    ("Adam", {"clipnorm": 1.5, "amsgrad": True}), ("Adam", {"global_clipnorm": 1.0}),
    ("AdamW", {}), ("AdamW", {"weight_decay": 0.1, "amsgrad": True, "learning_rate": 0.01}),
    ("Adamax", {}), ("Adamax", {"learning_rate": 0.01, "clipvalue": 0.3}),
    ("Nadam", {}), ("Nadam", {"learning_rate": 0.01, "beta_1": 0.7, "global_clipnorm": 3.0}),
    ("Adam", {"use_ema": True}), ("SGD", {"use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 2}),
    ("Adam", {"loss_scale_factor": 128.0}), ("SGD", {"gradient_accumulation_steps": 2, "momentum": 0.5}),
    ("Adam", {"gradient_accumulation_steps": 3}),
]


@pytest.mark.keras
@pytest.mark.parametrize("cls,kwargs", CASES, ids=[f"{c}{k}" for c, k in CASES])
def test_matches_keras(keras, cls, kwargs):
    w0, grads = _problem(steps=6)
    want, kopt = _run_keras(keras, cls, kwargs, w0, grads)
    got, opt = _run_ours(cls, kwargs, w0, grads)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert opt.iterations == int(keras.ops.convert_to_numpy(kopt.iterations))


@pytest.mark.keras
def test_none_gradient_skips_the_variable_as_keras(keras):
    w0, grads = _problem(1, steps=4)
    for cls in ("Adam", "SGD"):
        kw = {"momentum": 0.9} if cls == "SGD" else {}
        want, _ = _run_keras(keras, cls, kw, w0, grads, none_index=1)
        got, _ = _run_ours(cls, kw, w0, grads, none_index=1)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5, "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [1, 3], "values": [0.1, 0.05, 0.01]}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 4}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 4, "alpha": 0.1, "warmup_target": 0.2,
                     "warmup_steps": 2}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5, "staircase": True}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 4, "end_learning_rate": 0.01, "power": 2.0}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "cycle": True}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 2, "t_mul": 2.0, "m_mul": 0.5}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 2, "t_mul": 1.0}),
]


@pytest.mark.keras
@pytest.mark.parametrize("name,kw", SCHEDULES, ids=[f"{n}{k}" for n, k in SCHEDULES])
def test_schedules_match_keras(keras, name, kw):
    ours, theirs = getattr(S, name)(**kw), getattr(keras.optimizers.schedules, name)(**kw)
    for step in range(12):
        assert ours(step) == pytest.approx(float(keras.ops.convert_to_numpy(theirs(step))), rel=1e-6, abs=1e-9)
    assert ours.get_config() == theirs.get_config()
    # the optimizer evaluates the schedule at `iterations`
    w0, grads = _problem(2, steps=6)
    want, _ = _run_keras(keras, "SGD", {"learning_rate": theirs, "momentum": 0.5}, w0, grads)
    got, opt = _run_ours("SGD", {"learning_rate": ours, "momentum": 0.5}, w0, grads)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert opt.learning_rate == pytest.approx(ours(6))


@pytest.mark.keras
@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "adamax", "nadam"])
def test_string_names_and_defaults_match_keras(keras, name):
    ours, theirs = O.get(name).get_config(), keras.optimizers.get(name).get_config()
    theirs.pop("name"), ours.pop("name")
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k] == (pytest.approx(theirs[k]) if isinstance(theirs[k], float) else theirs[k]), k


def test_flat_contract_and_state_round_trip():
    w0, grads = _problem(3, steps=4)
    sizes = [w.size for w in w0]
    seg = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.concatenate([w.ravel() for w in w0])
    a = O.Adam(learning_rate=0.01, clipnorm=1.0)
    a.build(flat.size, seg)
    p1 = flat.copy()
    for gs in grads[:2]:
        a.apply_flat(p1, np.concatenate([g.ravel() for g in gs]))
    b = O.get(json.loads(json.dumps(O.serialize(a))))
    b.build(flat.size, seg)
    b.set_variables([v.copy() for v in a.variables()])
    p2 = p1.copy()
    for gs in grads[2:]:
        a.apply_flat(p1, np.concatenate([g.ravel() for g in gs]))
        b.apply_flat(p2, np.concatenate([g.ravel() for g in gs]))
    np.testing.assert_array_equal(p1, p2)
    assert a.iterations == b.iterations == 4
    # the flat path equals the per-array path
    got, _ = _run_ours("Adam", {"learning_rate": 0.01, "clipnorm": 1.0}, w0, grads)
    np.testing.assert_allclose(p1, np.concatenate([g.ravel() for g in got]), rtol=1e-6)


def test_learning_rate_is_settable_unless_scheduled():
    opt = O.get("sgd")
    assert opt.learning_rate == 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    sched = O.SGD(learning_rate=S.ExponentialDecay(0.1, 10, 0.5))
    assert sched.learning_rate == pytest.approx(0.1)
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        sched.learning_rate = 0.2
    cfg = json.loads(json.dumps(sched.get_config()))
    back = O.SGD.from_config(cfg)
    assert isinstance(back._learning_rate, S.ExponentialDecay)
    assert S.deserialize(S.serialize(S.CosineDecay(0.1, 5, warmup_target=0.2, warmup_steps=3))).get_config() == \
        S.CosineDecay(0.1, 5, warmup_target=0.2, warmup_steps=3).get_config()


def test_errors():
    with pytest.raises(ValueError, match="'adam'"):
        O.get("adm")
    with pytest.raises(ValueError, match="only one of"):
        O.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="not recognized"):
        O.Adam(lr=0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        O.SGD(learning_rate=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        O.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="beta_1"):
        O.Adam(beta_1=1.5)
    with pytest.raises(ValueError, match="ema_momentum"):
        O.Adam(use_ema=True, ema_momentum=2.0)
    with pytest.raises(ValueError, match="decay_steps"):
        S.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="length"):
        S.PiecewiseConstantDecay([1, 2], [0.1])
    with pytest.raises(ValueError, match="build"):
        O.Adam().apply_flat(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="float32"):
        O.Adam().apply([np.zeros(3)], [np.zeros(3)])
    opt = O.Adam()
    opt.build(4)
    with pytest.raises(ValueError, match="expected"):
        opt.set_variables([np.zeros(1)])


def test_steps_run_in_the_fused_kernel():
    """The optimizers call fastnn.kernels.optim.step (the reference is only a fallback)."""
    assert O._optim().__name__ == "fastnn.kernels.optim"
