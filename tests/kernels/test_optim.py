"""fastnn.kernels.optim against the per-parameter NumPy reference and against Keras 3."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastnn.kernels import optim
from fastnn.reference import optim as ref

# every kind with each of its options
CONFIGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.5}), ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "rho": 0.8}),
    ("adagrad", {}), ("adagrad", {"initial_accumulator_value": 0.5, "epsilon": 1e-5}),
    ("adadelta", {}), ("adadelta", {"rho": 0.5}),
    ("adam", {}), ("adam", {"amsgrad": True}), ("adam", {"beta_1": 0.5, "beta_2": 0.9}),
    ("adamw", {}), ("adamw", {"amsgrad": True}),
    ("adamax", {}), ("adamax", {"beta_2": 0.5}),
    ("nadam", {}), ("nadam", {"beta_1": 0.8}),
]
CLIPS = [{}, {"clipvalue": 0.3}, {"clipnorm": 0.5}, {"global_clipnorm": 1.0}]
RTOL = 1e-6  # float32, same operation order as Keras: the two agree to about an ulp


def _ids(cfg):
    kind, h = cfg
    return kind + "".join(f"-{k}={v}" for k, v in h.items())


def _run_both(kind, hyper, sizes, steps, rng, lr=0.01, grad_scale=1.0, nan_at=None, poison=np.nan,
              **kw):
    """Run `steps` steps of kernel and reference from the same state; return both states."""
    segments = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(segments[-1])
    w0 = rng.standard_normal(n).astype(np.float32)
    wk, wr = w0.copy(), w0.copy()
    sk, sr = optim.init_slots(kind, n, **hyper), ref.init_slots(kind, n, **hyper)
    for it in range(steps):
        g = (rng.standard_normal(n) * grad_scale).astype(np.float32)
        if nan_at is not None:
            g[nan_at] = poison
        g_copy = g.copy()
        optim.step(kind, wk, g, sk, lr=lr, iteration=it, segments=segments, **kw, **hyper)
        ref.step(kind, wr, g_copy, sr, lr=lr, iteration=it, segments=segments, **kw, **hyper)
        np.testing.assert_array_equal(g, g_copy)  # grads are only read
    return (wk, sk), (wr, sr)


def _assert_close(a, b, rtol=RTOL):
    (wk, sk), (wr, sr) = a, b
    # atol: a few float32 ulps of the largest weight (w - lr*update cancels: a weight that ends
    # near 0 keeps the rounding of the O(1) values it was computed from)
    wscale = max(1.0, float(np.abs(wr[np.isfinite(wr)]).max(initial=0.0)))
    np.testing.assert_allclose(wk, wr, rtol=rtol, atol=rtol * 1e-1 * wscale)
    assert sk.keys() == sr.keys()
    for name in sk:
        finite = np.abs(sr[name][np.isfinite(sr[name])])
        scale = max(float(finite.max(initial=0.0)), 1e-30)  # inf/NaN are compared exactly
        np.testing.assert_allclose(sk[name], sr[name], rtol=rtol, atol=rtol * scale,
                                   err_msg=f"slot {name}")


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: next(iter(c), "noclip"))
@pytest.mark.parametrize("weight_decay", [None, 0.05])
def test_matches_reference(cfg, clip, weight_decay):
    kind, hyper = cfg
    rng = np.random.default_rng(7)
    a, b = _run_both(kind, hyper, [3, 1, 40, 7, 200], 6, rng, weight_decay=weight_decay, **clip)
    _assert_close(a, b)


@given(data=st.data())
def test_random_layouts(data):
    """Random variable layouts (empty ones, ones crossing the parallel chunks) and settings."""
    kind, hyper = data.draw(st.sampled_from(CONFIGS), label="config")
    clip = data.draw(st.sampled_from(CLIPS), label="clip")
    big = data.draw(st.booleans(), label="big")
    hi = 30000 if big else 40
    sizes = data.draw(st.lists(st.integers(0, hi), min_size=1, max_size=6), label="sizes")
    wd = data.draw(st.sampled_from([None, 0.0, 0.01]), label="weight_decay")
    lr = data.draw(st.sampled_from([0.0, 1e-3, 0.1]), label="lr")
    scale = data.draw(st.sampled_from([1e-3, 1.0, 10.0]), label="grad_scale")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    a, b = _run_both(kind, hyper, sizes, 3, rng, lr=lr, grad_scale=scale, weight_decay=wd, **clip)
    _assert_close(a, b)


def test_many_steps_late_iterations():
    """Bias corrections at large t and the nadam u_product over many steps."""
    for kind in ("adam", "adamax", "nadam"):
        rng = np.random.default_rng(3)
        a, b = _run_both(kind, {}, [50, 50], 40, rng)
        _assert_close(a, b)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: next(iter(c), "noclip"))
def test_nan_gradient_propagates(cfg, clip):
    """A NaN gradient makes its parameter NaN (its whole variable under clipnorm, everything
    under global_clipnorm), as in Keras; the reference agrees element by element."""
    kind, hyper = cfg
    rng = np.random.default_rng(11)
    (wk, sk), b = _run_both(kind, hyper, [10, 20, 30], 2, rng, nan_at=15, **clip)
    _assert_close((wk, sk), b)
    assert np.isnan(wk[15])
    if "clipnorm" in clip:
        assert np.isnan(wk[10:30]).all() and not np.isnan(wk[:10]).any()
    elif "global_clipnorm" in clip:
        assert np.isnan(wk).all()
    else:
        assert np.isnan(wk).sum() == 1


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: next(iter(c), "noclip"))
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamax"])
def test_inf_gradient_follows_keras(kind, clip):
    """An inf gradient: clipvalue tames it, norm clipping turns it into NaN (inf/inf) as Keras."""
    rng = np.random.default_rng(5)
    a, b = _run_both(kind, {}, [8, 8], 2, rng, nan_at=3, poison=np.inf, **clip)
    _assert_close(a, b)
    if "clipvalue" in clip:
        assert np.isfinite(a[0]).all()
    elif clip:
        assert np.isnan(a[0][3])


def test_known_values_adam_first_step():
    """Keras Adam's first step moves every weight by about lr (epsilon-hat form)."""
    w = np.zeros(3, np.float32)
    g = np.array([1.0, -2.0, 1e-3], np.float32)
    optim.step("adam", w, g, optim.init_slots("adam", 3), lr=0.01, iteration=0)
    # m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001)/0.1; epsilon is added to sqrt(v)
    g64 = g.astype(np.float64)
    expected = -0.01 * np.sqrt(0.001) / 0.1 * 0.1 * g64 / (np.sqrt(0.001) * np.abs(g64) + 1e-7)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    assert abs(w[2]) < 0.00997  # epsilon-hat shrinks the step of a tiny gradient


def test_sgd_plain_and_weight_decay_values():
    w = np.array([1.0, 2.0], np.float32)
    optim.step("sgd", w, np.array([1.0, 1.0], np.float32), {}, lr=0.1, iteration=0,
               weight_decay=0.5)
    # w - w*wd*lr, then - lr*g
    np.testing.assert_allclose(w, [1.0 - 0.05 - 0.1, 2.0 - 0.1 - 0.1], rtol=1e-6)


def test_adamw_default_weight_decay():
    w1, w2 = np.ones(5, np.float32), np.ones(5, np.float32)
    g = np.full(5, 0.1, np.float32)
    optim.step("adamw", w1, g, optim.init_slots("adamw", 5), lr=0.1, iteration=0)
    optim.step("adam", w2, g, optim.init_slots("adam", 5), lr=0.1, iteration=0, weight_decay=0.004)
    np.testing.assert_array_equal(w1, w2)
    w3 = np.ones(5, np.float32)
    optim.step("adamw", w3, g, optim.init_slots("adamw", 5), lr=0.1, iteration=0, weight_decay=0.0)
    assert not np.array_equal(w1, w3)


def test_init_slots():
    s = optim.init_slots("adagrad", 4)
    np.testing.assert_array_equal(s["accumulator"], np.full(4, 0.1, np.float32))
    assert set(optim.init_slots("adam", 3, amsgrad=True)) == {"m", "v", "vhat"}
    assert set(optim.init_slots("rmsprop", 3, momentum=0.1, centered=True)) == {
        "velocity", "momentum", "average_gradient"}
    assert optim.init_slots("sgd", 3) == {}
    nadam = optim.init_slots("nadam", 3)
    assert nadam["u_product"].shape == (1,) and nadam["u_product"][0] == 1
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in nadam.values())
    for kind, hyper in CONFIGS:
        k, r = optim.init_slots(kind, 6, **hyper), ref.init_slots(kind, 6, **hyper)
        assert k.keys() == r.keys()
        for name in k:
            np.testing.assert_array_equal(k[name], r[name])


def test_in_place_and_readonly_grads():
    w = np.ones(100, np.float32)
    g = np.full(100, 0.5, np.float32)
    g.flags.writeable = False
    slots = optim.init_slots("adam", 100)
    m = slots["m"]
    optim.step("adam", w, g, slots, lr=0.1, iteration=0, clipnorm=1.0)
    assert slots["m"] is m and np.all(m != 0) and np.all(w < 1)
    np.testing.assert_array_equal(g, 0.5)


def test_empty_buffer_updates_nadam_state():
    slots = optim.init_slots("nadam", 0)
    optim.step("nadam", np.zeros(0, np.float32), np.zeros(0, np.float32), slots, lr=0.1,
               iteration=0, segments=np.array([0], np.int64), global_clipnorm=1.0)
    assert slots["u_product"][0] == np.float32(0.9) * (np.float32(1) - np.float32(0.5) * np.float32(0.96))


def test_nadam_u_product_once_per_step():
    """u_product advances once per call however many variables the buffer holds."""
    s1, s2 = optim.init_slots("nadam", 6), optim.init_slots("nadam", 6)
    g = np.ones(6, np.float32)
    optim.step("nadam", np.ones(6, np.float32), g, s1, lr=0.1, iteration=0)
    optim.step("nadam", np.ones(6, np.float32), g, s2, lr=0.1, iteration=0,
               segments=np.array([0, 1, 2, 3, 6], np.int64))
    assert s1["u_product"][0] == s2["u_product"][0] < 1


# ---------------------------------------------------------------- validation
def _args(kind="adam", n=8, **hyper):
    return dict(kind=kind, params=np.ones(n, np.float32), grads=np.ones(n, np.float32),
                slots=optim.init_slots(kind, n, **hyper))


def _call(a, **kw):
    kw.setdefault("lr", 0.01)
    kw.setdefault("iteration", 0)
    optim.step(a.pop("kind"), a.pop("params"), a.pop("grads"), a.pop("slots"), **kw)


@pytest.mark.parametrize("change, exc, match", [
    (dict(kind="adamx"), ValueError, "kind must be one of sgd, rmsprop"),
    (dict(kind=3), ValueError, "kind must be one of"),
    (dict(params=np.ones(8)), TypeError, "params must have dtype float32"),
    (dict(params=[1.0] * 8), TypeError, "params must be a numpy.ndarray"),
    (dict(params=np.ones((2, 4), np.float32)), ValueError, "params must have 1 dimensions"),
    (dict(params=np.ones(16, np.float32)[::2]), ValueError, "params must be C-contiguous"),
    (dict(grads=np.ones(7, np.float32)), ValueError, "grads must have shape"),
    (dict(grads=np.ones(8, np.float64)), TypeError, "grads must have dtype float32"),
    (dict(slots={"m": np.zeros(8, np.float32)}), ValueError, "slots lacks v"),
    (dict(slots=[np.zeros(8, np.float32)]), TypeError, "slots must be the dict"),
    (dict(slots={"m": np.zeros(8, np.float32), "v": np.zeros(9, np.float32)}), ValueError,
     r"slots\['v'\] must have shape"),
])
def test_validation_buffers(change, exc, match):
    a = _args()
    a.update(change)
    with pytest.raises(exc, match=match):
        _call(a)


def test_validation_writeable_and_overlap():
    a = _args()
    a["params"].flags.writeable = False
    with pytest.raises(ValueError, match="params is written to and must be writeable"):
        _call(a)
    a = _args()
    a["slots"]["v"].flags.writeable = False
    with pytest.raises(ValueError, match=r"slots\['v'\] is written to"):
        _call(a)
    a = _args()
    a["grads"] = a["params"]
    with pytest.raises(ValueError, match="params must not share memory with grads"):
        _call(a)
    a = _args()
    a["slots"]["v"] = a["slots"]["m"]
    with pytest.raises(ValueError, match=r"slots\['m'\] must not share memory with slots\['v'\]"):
        _call(a)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(lr=-0.1), ValueError, "lr must be a finite number in"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number"),
    (dict(lr="0.1"), TypeError, "lr must be a real number"),
    (dict(iteration=-1), ValueError, "iteration must be a non-negative int"),
    (dict(iteration=1.0), ValueError, "iteration must be a non-negative int"),
    (dict(iteration=True), ValueError, "iteration must be a non-negative int"),
    (dict(weight_decay=-1.0), ValueError, "weight_decay must be a finite number"),
    (dict(clipnorm=1.0, clipvalue=1.0), ValueError, "only one of clipnorm, clipvalue and global_clipnorm"),
    (dict(clipnorm=1.0, global_clipnorm=1.0), ValueError, "only one of"),
    (dict(clipnorm=-1.0), ValueError, "clipnorm must be a finite number"),
    (dict(global_clipnorm=float("inf")), ValueError, "global_clipnorm must be a finite number"),
    (dict(segments=np.array([0, 4, 8], np.int32)), TypeError, "segments must have dtype int64"),
    (dict(segments=np.array([1, 4, 8], np.int64)), ValueError, "segments must be int64 offsets rising from 0 to n=8"),
    (dict(segments=np.array([0, 4, 7], np.int64)), ValueError, "segments must be int64 offsets"),
    (dict(segments=np.array([0, 5, 4, 8], np.int64)), ValueError, "segments must be int64 offsets"),
    (dict(segments=np.zeros(0, np.int64)), ValueError, "segments must be int64 offsets"),
    (dict(segments=np.array([[0, 8]], np.int64)), ValueError, "segments must have 1 dimensions"),
    (dict(beta_1=1.0), ValueError, r"beta_1 must be a finite number in \[0.0, 1.0\)"),
    (dict(beta_2=-0.1), ValueError, "beta_2 must be a finite number"),
    (dict(epsilon=-1e-7), ValueError, "epsilon must be a finite number"),
    (dict(amsgrad="yes"), TypeError, "amsgrad must be a bool"),
    (dict(rho=0.9), ValueError, "unknown hyperparameter.*rho.*valid ones are beta_1, beta_2, epsilon, amsgrad"),
])
def test_validation_scalars(kw, exc, match):
    with pytest.raises(exc, match=match):
        _call(_args(), **kw)


@pytest.mark.parametrize("kind, hyper, match", [
    ("sgd", {"momentum": 1.5}, "momentum must be a finite number in"),
    ("sgd", {"nesterov": 1}, "nesterov must be a bool"),
    ("rmsprop", {"rho": 1.1}, "rho must be a finite number"),
    ("rmsprop", {"momentum": -0.5}, "momentum must be a finite number"),
    ("adadelta", {"rho": float("nan")}, "rho must be a finite number"),
    ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value must be"),
    ("nadam", {"amsgrad": True}, "unknown hyperparameter"),
])
def test_validation_hyper(kind, hyper, match):
    with pytest.raises((ValueError, TypeError), match=match):
        optim.init_slots(kind, 4, **hyper)
    with pytest.raises((ValueError, TypeError), match=match):
        optim.step(kind, np.ones(4, np.float32), np.ones(4, np.float32), {}, lr=0.1, iteration=0, **hyper)


def test_validation_slots_follow_options():
    """State built without an option cannot be stepped with it (Keras builds the slot)."""
    a = _args("sgd")
    with pytest.raises(ValueError, match="slots lacks momentum"):
        _call(a, momentum=0.9)
    a = _args("adam")
    with pytest.raises(ValueError, match="slots lacks vhat"):
        _call(a, amsgrad=True)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        optim.init_slots("adam", -1)


def test_failed_validation_leaves_state_untouched():
    a = _args("nadam")
    slots = a["slots"]
    with pytest.raises(ValueError):
        _call(a, segments=np.array([0, 3], np.int64))
    assert slots["u_product"][0] == 1 and not slots["m"].any()


# ---------------------------------------------------------------- Keras 3 as the oracle


_KERAS_CLASS = {"sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta",
                "adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "Nadam"}


@pytest.mark.keras
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # keras/torch
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
@pytest.mark.parametrize("clip", CLIPS + [{"weight_decay": 0.05}],
                         ids=lambda c: next(iter(c), "noclip"))
def test_matches_keras(keras, cfg, clip):
    kind, hyper = cfg
    shapes = [(3, 4), (4,), (2, 3, 5), (7,)]
    sizes = [int(np.prod(s)) for s in shapes]
    segments = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(segments[-1])
    rng = np.random.default_rng(21)
    w = rng.standard_normal(n).astype(np.float32)
    variables = [keras.Variable(w[a:b].reshape(s).copy()) for a, b, s in
                 zip(segments[:-1], segments[1:], shapes)]
    lr = 0.05
    opt = getattr(keras.optimizers, _KERAS_CLASS[kind])(learning_rate=lr, **hyper, **clip)
    slots = optim.init_slots(kind, n, **hyper)
    for it in range(5):
        g = (rng.standard_normal(n) * 0.7).astype(np.float32)
        grads = [g[a:b].reshape(s) for a, b, s in zip(segments[:-1], segments[1:], shapes)]
        opt.apply_gradients(zip([keras.ops.convert_to_tensor(x) for x in grads], variables))
        optim.step(kind, w, g, slots, lr=lr, iteration=it, segments=segments, **hyper, **clip)
    wk = np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in variables])
    np.testing.assert_allclose(w, wk, rtol=1e-6, atol=1e-6)
    assert int(keras.ops.convert_to_numpy(opt.iterations)) == 5


@pytest.mark.keras
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: next(iter(c), "noclip"))
@pytest.mark.parametrize("kind", ["sgd", "adam", "nadam", "adamax"])
def test_nan_matches_keras(keras, kind, clip):
    """Where Keras produces NaN (one variable under clipnorm, all under global_clipnorm), so do we."""
    segments = np.array([0, 6, 10, 16], np.int64)
    rng = np.random.default_rng(2)
    w = rng.standard_normal(16).astype(np.float32)
    g = rng.standard_normal(16).astype(np.float32)
    g[7] = np.nan
    variables = [keras.Variable(w[a:b].copy()) for a, b in zip(segments[:-1], segments[1:])]
    opt = getattr(keras.optimizers, _KERAS_CLASS[kind])(learning_rate=0.1, **clip)
    opt.apply_gradients(zip([keras.ops.convert_to_tensor(g[a:b]) for a, b in
                             zip(segments[:-1], segments[1:])], variables))
    optim.step(kind, w, g, optim.init_slots(kind, 16), lr=0.1, iteration=0, segments=segments, **clip)
    wk = np.concatenate([keras.ops.convert_to_numpy(v) for v in variables])
    np.testing.assert_array_equal(np.isnan(w), np.isnan(wk))
    np.testing.assert_allclose(w, wk, rtol=1e-6, atol=1e-6)
