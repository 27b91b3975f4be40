"""Fuzzing fastnn.kernels.activation: apply and grad for every name, valid and spoiled arguments."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import activation as K
from fastnn.reference import activation as R

# float32 kernel vs float64 reference on values of order one (tests/kernels/test_activation.py
# measures 8 ulp forward; derivatives from y lose one more rounding)
TOL = dict(rtol=2e-6, atol=1e-6)
# (atol is scaled by the largest |result|: a parameter such as alpha = 2**31 multiplies the
# rounding of exp(x) - 1 near 0; measured 1.2e-5 relative there)
# the softmax derivatives sum dy*y over the axis: over 70,000 elements the float32 sum's error
# reaches 1.3e-6 absolute (measured), so long axes get 5e-6
LONG_AXIS_TOL = dict(rtol=2e-6, atol=5e-6)

# valid parameter values of each name (beyond the defaults), spelled in several ways
VALID = {
    "relu": {"negative_slope": [0.0, 0.1, np.float32(0.3), 1], "max_value": [None, 2.5, 6, np.float64(0.0)],
             "threshold": [0.0, 0.5, -1.0, np.int64(1)]},
    "leaky_relu": {"negative_slope": [0.01, 0.2, 0, 2.0]},
    "elu": {"alpha": [1.0, 0.5, 0, 3]},
    "gelu": {"approximate": [False, True, np.bool_(True)]},
    "softmax": {"axis": [-1, 0, 1, -2, np.int64(0)]},
    "log_softmax": {"axis": [-1, 0, 1, -2]},
}
PARAM_JUNK = [None, "1", float("nan"), float("inf"), -float("inf"), True, [1.0], 2**1000,
              np.array([1.0]), 1 + 2j, -1.0, 1e300]
INVALID_NAMES = [None, "", "relu ", "nope", 3, b"relu", ("relu",)]
NAME_JUNK = INVALID_NAMES + ["RELU", "Softmax"]


@st.composite
def named_params(draw):
    name = draw(st.sampled_from(K.NAMES))
    params = {}
    for p, choices in VALID.get(name, {}).items():
        if draw(st.booleans()):
            params[p] = draw(st.sampled_from(choices))
    return name, params


@st.composite
def arrays(draw, softmax_axis=None):
    ndim = draw(st.integers(0 if softmax_axis is None else 1, 4))
    shape = tuple(draw(st.integers(0, 5)) for _ in range(ndim))
    if draw(st.integers(0, 9)) == 0:
        shape = (draw(st.integers(1, 3)), 70_000)     # over PARALLEL_MIN: the threaded loops
    return shape


def _fits(name, params, shape):
    axis = params.get("axis", -1)
    return name not in ("softmax", "log_softmax") or (len(shape) >= 1 and -len(shape) <= axis < len(shape))


@st.composite
def apply_call(draw):
    name, params = draw(named_params())
    shape = draw(arrays())
    if not _fits(name, params, shape):
        params.pop("axis", None)
        if not shape:
            shape = (3,)
    rng = np.random.default_rng(draw(F.seeds()))
    x = F.values(rng, shape, special=draw(st.booleans()), low=-8, high=8)
    return F.Call(K.apply, dict(name=name, x=x, out=None, **params),
                  lambda kw: R.apply(kw["name"], kw["x"], **_params(kw)),
                  inputs=("x",), outs={"out": 0}, inplace=(("out", "x"),),
                  params={"name": NAME_JUNK, **{p: PARAM_JUNK for p in params}},
                  label=f"apply({name!r}, {params})", scaled=True, **TOL)


@st.composite
def grad_call(draw):
    name, params = draw(named_params())
    shape = draw(arrays())
    if not _fits(name, params, shape):
        params.pop("axis", None)
        if not shape:
            shape = (3,)
    rng = np.random.default_rng(draw(F.seeds()))
    special = draw(st.booleans())
    x = F.values(rng, shape, special=special, low=-8, high=8)
    y = K.apply(name, x, **params)
    dy = F.values(rng, shape, special=special)
    return F.Call(K.grad, dict(name=name, x=x, y=y, dy=dy, out=None, **params),
                  lambda kw: R.grad(kw["name"], kw["x"], kw["y"], kw["dy"], **_params(kw)),
                  inputs=("x", "y", "dy"), outs={"out": 0}, no_special=("x", "y"),   # y = apply(x)
                  inplace=(("out", "x"), ("out", "y"), ("out", "dy")),
                  # y = apply(name, x): no other valid name (it would not match y)
                  params={"name": INVALID_NAMES + [name.upper()], **{p: PARAM_JUNK for p in params}},
                  label=f"grad({name!r}, {params})", scaled=True, **(LONG_AXIS_TOL if max(shape, default=0) > 1000 else TOL))


def _params(kw):
    return {k: v for k, v in kw.items() if k not in ("name", "x", "y", "dy")}


CALLS = {"apply": apply_call(), "grad": grad_call()}
# public functions that compute no array: resolve checks a name and its parameters (its errors
# are fuzzed through apply's and grad's "name" and parameter spoilings)
NOT_KERNELS = {"resolve"}


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
