"""Fuzzing fastnn.kernels.optim: step and init_slots for every kind, valid and spoiled arguments
(fuzzutil). The slot buffers are spoiled one by one like top-level arguments."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import optim as K
from fastnn.reference import optim as R

# the reference runs Keras's float32 formulas in the same order (test_optim.py: rtol 1e-6 and
# a few ulps of the largest weight); several variables, clipping and NaN/inf included here
TOL = dict(rtol=1e-5, atol=1e-6)
HYPER = {
    "momentum": [0.0, 0.5, 0.9], "nesterov": [False, True], "rho": [0.9, 0.5, 0.0, 1.0],
    "centered": [False, True], "epsilon": [1e-7, 1e-3, 0.0], "amsgrad": [False, True],
    "beta_1": [0.9, 0.5, 0.0], "beta_2": [0.999, 0.5], "initial_accumulator_value": [0.1, 0.0, 2.0],
}
HYPER_JUNK = F.JUNK + [-0.5, 1.0, 1.5, "0.9", np.float32(0.5), np.bool_(True)]
KIND_JUNK = [None, "", "SGD", "Adam", "adamw ", "lamb", 3, b"adam"]


def _lower(kind):
    return kind.lower() if isinstance(kind, str) else kind     # the kernel takes "Adam" too


def _slot_key(name):
    return f"slots[{name!r}]"


def _step(**kw):
    """optim.step with each slot passed as its own keyword "slots['m']" (so the fuzzer spoils
    them one by one); they are gathered back into the slots dict."""
    slots = {k[7:-2]: kw.pop(k) for k in list(kw) if k.startswith("slots[")}
    return K.step(slots=slots, **kw)


def _ref_step(r, names):
    params = r["params"]
    slots = {n: r[_slot_key(n)] for n in names}
    rest = {k: v for k, v in r.items() if k not in ("params", "kind") and not k.startswith("slots[")}
    R.step(_lower(r["kind"]), params, rest.pop("grads"), slots, **rest)
    return (params, *(slots[n] for n in names))


@st.composite
def step_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    kind = draw(st.sampled_from(K.KINDS))
    hyper = {h: draw(st.sampled_from(HYPER[h])) for h in K.HYPER_DEFAULTS[kind] if draw(st.booleans())}
    sizes = draw(st.lists(st.integers(0, 20), min_size=1, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        sizes.append(40_000)                      # the threaded chunks
    segments = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(segments[-1])
    params = F.values(rng, (n,))
    grads = F.values(rng, (n,), special=draw(st.integers(0, 3)) == 0)
    slots = K.init_slots(kind, n, **hyper)
    for name, s in slots.items():                 # a state some steps into training
        if name != "u_product":
            s[...] = np.abs(F.values(rng, s.shape)) if name in ("v", "vhat", "velocity", "u",
                                                              "accumulator", "accumulated_grad",
                                                              "accumulated_delta_var") else F.values(rng, s.shape)
    names = tuple(slots)
    clip = draw(st.sampled_from([{}, {"clipvalue": 0.3}, {"clipnorm": 0.5}, {"global_clipnorm": 1.0},
                                 {"clipnorm": 0}]))
    kw = dict(kind=kind, params=params, grads=grads, lr=draw(st.sampled_from([0.01, 0.001, 0, 1])),
              iteration=draw(st.sampled_from([0, 1, 7, np.int64(3)])),
              weight_decay=draw(st.sampled_from([None, 0.0, 0.01])),
              segments=segments if draw(st.booleans()) else None, **clip, **hyper,
              **{_slot_key(s): a for s, a in slots.items()})
    bad_segments = [segments[::-1].copy(), segments.astype(np.int32), segments[:-1].copy(),
                    segments.reshape(1, -1), np.array([0, n + 1], np.int64), np.array([], np.int64),
                    np.array([1, n], np.int64), segments.astype(np.float64)]
    return F.Call(_step, kw, lambda r: _ref_step(r, names), inputs=("grads",),
                  updated=("params",) + tuple(_slot_key(s) for s in names),
                  result=lambda kw, ret: (kw["params"], *(kw[_slot_key(s)] for s in names)),
                  params={"kind": KIND_JUNK, "lr": F.JUNK + [-0.1], "iteration": F.JUNK + [-1, 2**70],
                          "weight_decay": F.JUNK + [-1.0], "clipvalue": F.JUNK, "clipnorm": F.JUNK,
                          "global_clipnorm": F.JUNK, "segments": F.JUNK + bad_segments,
                          **{h: HYPER_JUNK for h in hyper}},
                  ref_dtype=np.float32, nonfinite="loose", label=f"step({kind}, {hyper}, {clip})", **TOL)


@st.composite
def init_slots_call(draw):
    kind = draw(st.sampled_from(K.KINDS))
    hyper = {h: draw(st.sampled_from(HYPER[h])) for h in K.HYPER_DEFAULTS[kind] if draw(st.booleans())}
    n = draw(st.sampled_from([0, 1, 5, 100, np.int64(3)]))

    def ref(r):
        slots = R.init_slots(_lower(r["kind"]), int(r["n"]), **{h: r[h] for h in hyper})
        return tuple(slots[s] for s in sorted(slots))

    # (no huge n among the odd values: 2**31 parameters is a legitimate request for 8 GB)
    return F.Call(K.init_slots, dict(kind=kind, n=n, **hyper), ref,
                  result=lambda kw, ret: tuple(ret[s] for s in sorted(ret)),
                  params={"kind": KIND_JUNK, "n": [v for v in F.JUNK if not (isinstance(v, int) and v > 2**20)]
                          + [-1, 2.0, "3"], **{h: HYPER_JUNK for h in hyper}},
                  label=f"init_slots({kind}, {hyper})", rtol=0, atol=0)


CALLS = {"step": step_call(), "init_slots": init_slots_call()}
# public functions that compute no array: slot_names lists the state buffers of a kind (its
# checks are those of init_slots, whose kind and hyperparameters are spoiled above)
NOT_KERNELS = {"slot_names"}


def test_every_public_function_is_fuzzed():
    public = {n for n in K.__all__ if callable(getattr(K, n))}
    assert sorted(CALLS) == sorted(public - NOT_KERNELS)
    assert NOT_KERNELS <= public


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_valid(name, data):
    F.check_valid(data.draw(CALLS[name]))


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_spoiled(name, data):
    F.check_spoiled(data, data.draw(CALLS[name]))
