"""Fuzzing fastnn.kernels.norm: every public function, valid and spoiled arguments (fuzzutil).
The session fixture of tests/kernels/conftest.py runs it under every instruction-set flavour."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import norm as K
from fastnn.reference import activation as RA
from fastnn.reference import norm as R

# float32 kernel vs float64 reference, values of order one over <= 64 rows (test_norm.py's
# per-element bounds come to ~2e-5 there; the backward's dx sums 3 terms of that size)
TOL = dict(rtol=1e-5, atol=2e-5)
BACKWARD_TOL = dict(rtol=1e-4, atol=1e-4)
# NaN/inf go into the data (x, dy) only: with an infinite gamma, beta or statistic the kernel's
# regrouped fold (x - mean32)*scale + shift gives NaN for the whole channel where the textbook
# xhat*gamma + beta keeps +-inf in some rows (Keras's own fold differs from both there)
PER_CHANNEL = ("gamma", "beta", "moving_mean", "moving_var", "mean", "invstd")
FLOAT_JUNK = F.JUNK + [0.0, -0.5, 1.0, 1.5, 1e-45, 1e300, np.float32(0.9), "0.9"]
FLAG_JUNK = [None, 0, 1, "True", np.bool_(True), 1.0, [True]]


@st.composite
def data(draw, min_rows=0):
    """rng, x (..., C) and the per-channel vectors (gamma/beta possibly None)."""
    rng = np.random.default_rng(draw(F.seeds()))
    lead = tuple(draw(st.integers(min_rows, 5)) for _ in range(draw(st.integers(0, 3))))
    if min_rows and not lead:
        lead = (draw(st.integers(min_rows, 5)),)
    c = draw(st.sampled_from([0, 1, 3, 8, 17, 64, 70]))
    special = draw(st.integers(0, 3)) == 0
    x = F.values(rng, lead + (c,), special=special)
    vec = lambda low=-2.0, high=2.0: F.values(rng, (c,), low=low, high=high)
    gamma = vec() if draw(st.booleans()) else None
    beta = vec() if draw(st.booleans()) else None
    return rng, x, gamma, beta, vec(), np.abs(vec(0.1, 3.0)), special


def _relu(y, on):
    return RA.apply("relu", y) if on else y


def _stats_junk(count, shift, sums):
    """Spoiled stats= / sums= tuples (count, shift, sums): each part wrong in one way."""
    r, c = sums.shape
    junk = [(), (count, shift), "stats", [count, shift, sums, 0], (0, shift, sums), (-1.0, shift, sums),
            (float("nan"), shift, sums), ("3", shift, sums), (count, shift, sums.astype(np.float32)),
            (count, shift, sums[:1]), (count, shift, np.zeros((r, c + 1))), (count, shift, sums.tolist()),
            (count, shift, np.zeros((c, r)).T)]
    if shift is not None:
        junk += [(count, np.zeros(c + 1, np.float32), sums), (count, np.zeros(c, np.float64), sums),
                 (count, "s", sums), (count, None, sums)]
    return junk


@st.composite
def _more_rows(draw, rng, x, special):
    """The rows of the other processes of a data-parallel step (none, or some), (m, C)."""
    extra = draw(st.integers(0, 6))
    return F.values(rng, (extra, x.shape[-1]), special=special)


@st.composite
def train_call(draw):
    rng, x, gamma, beta, mm, mv, special = draw(data(min_rows=1))
    momentum = draw(st.sampled_from([0.0, 0.5, 0.99, 1.0, 1]))
    epsilon = draw(st.sampled_from([1e-3, 1e-5, 1.0, np.float32(1e-3)]))
    relu = draw(st.booleans())
    stats = None
    params = {"momentum": FLOAT_JUNK, "epsilon": FLOAT_JUNK, "relu": FLAG_JUNK}
    if draw(st.integers(0, 2)) == 0:     # synchronised: x and other rows' shifted moment sums
        more = draw(_more_rows(rng, x, special))
        shift = F.values(rng, (x.shape[-1],))
        sums = K.batch_norm_moments(x, shift) + K.batch_norm_moments(more, shift)
        count = int(np.prod(x.shape[:-1])) + more.shape[0]
        count = draw(st.sampled_from([count, float(count), np.int64(count)]))
        if draw(st.booleans()) and more.shape[0]:      # this process may hold no rows
            x = np.zeros((0, x.shape[-1]), np.float32)
            sums = K.batch_norm_moments(more, shift)
            count = more.shape[0]
        stats = (count, shift, sums)
        params["stats"] = _stats_junk(count, shift, sums)

    def ref(kw):
        y, mean, invstd = R.batch_norm_train(kw["x"], kw["gamma"], kw["beta"], kw["moving_mean"],
                                             kw["moving_var"], kw["momentum"], kw["epsilon"],
                                             stats=kw["stats"])
        return _relu(y, bool(kw["relu"])), mean, invstd, kw["moving_mean"], kw["moving_var"]

    return F.Call(K.batch_norm_train,
                  dict(x=x, gamma=gamma, beta=beta, moving_mean=mm, moving_var=mv, momentum=momentum,
                       epsilon=epsilon, out=None, mean=None, invstd=None, relu=relu, stats=stats),
                  ref, inputs=("x", "gamma", "beta"), updated=("moving_mean", "moving_var"),
                  no_special=PER_CHANNEL,
                  outs={"out": 0, "mean": 1, "invstd": 2}, inplace=(("out", "x"),),
                  result=lambda kw, ret: (*ret, kw["moving_mean"], kw["moving_var"]),
                  params=params, nonfinite="loose",
                  label=f"batch_norm_train[stats={stats is not None}]", **TOL)


@st.composite
def inference_call(draw):
    rng, x, gamma, beta, mm, mv, special = draw(data())
    epsilon = draw(st.sampled_from([1e-3, 1e-5, 1.0]))
    relu = draw(st.booleans())
    return F.Call(K.batch_norm_inference,
                  dict(x=x, gamma=gamma, beta=beta, moving_mean=mm, moving_var=mv, epsilon=epsilon,
                       out=None, relu=relu),
                  lambda kw: _relu(R.batch_norm_inference(kw["x"], kw["gamma"], kw["beta"], kw["moving_mean"],
                                                          kw["moving_var"], kw["epsilon"]), bool(kw["relu"])),
                  inputs=("x", "gamma", "beta", "moving_mean", "moving_var"), outs={"out": 0},
                  no_special=PER_CHANNEL,
                  inplace=(("out", "x"),),
                  params={"epsilon": FLOAT_JUNK, "relu": FLAG_JUNK}, nonfinite="loose",
                  label="batch_norm_inference", **TOL)


@st.composite
def fold_call(draw):
    rng, x, gamma, beta, mm, mv, special = draw(data())
    epsilon = draw(st.sampled_from([1e-3, 1e-5, 1.0]))
    return F.Call(K.inference_fold,
                  dict(gamma=gamma, beta=beta, moving_var=mv, epsilon=epsilon, scale=None, shift=None),
                  lambda kw: R.inference_fold(kw["gamma"], kw["beta"], kw["moving_var"], kw["epsilon"]),
                  inputs=("gamma", "beta", "moving_var"), outs={"scale": 0, "shift": 1},
                  params={"epsilon": FLOAT_JUNK}, label="inference_fold", **TOL)


@st.composite
def backward_call(draw):
    rng, x, gamma, beta, mm, mv, special = draw(data(min_rows=1))
    _, mean, invstd = K.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy())
    dy = F.values(rng, x.shape, special=special)
    y = None
    if draw(st.booleans()):      # the ReLU-fused forward's output masks dy
        y = K.batch_norm_train(x, gamma, beta, mm.copy(), mv.copy(), relu=True)[0]

    sums, params = None, {}
    if draw(st.integers(0, 2)) == 0:     # synchronised: x's and other rows' gradient sums
        more = draw(_more_rows(rng, x, special))
        dmore = F.values(rng, more.shape, special=special)
        s3 = K.batch_norm_grad_sums(dy, x, mean, y=y) + K.batch_norm_grad_sums(dmore, more, mean)
        count = int(np.prod(x.shape[:-1])) + more.shape[0]
        sums = (draw(st.sampled_from([count, float(count)])), None, s3)
        params["sums"] = _stats_junk(count, None, s3)

    def ref(kw):
        # documented: as activation.grad("relu", ...) first (y > 0 iff x > 0; dy * 0 keeps NaN)
        dyr = kw["dy"] if kw["y"] is None else RA.grad("relu", kw["y"], kw["y"], kw["dy"])
        return R.batch_norm_backward(dyr, kw["x"], kw["gamma"], kw["mean"], kw["invstd"], sums=kw["sums"])

    return F.Call(K.batch_norm_backward,
                  dict(dy=dy, x=x, gamma=gamma, mean=mean, invstd=invstd, dx=None, dgamma=None,
                       dbeta=None, y=y, sums=sums),
                  ref, inputs=("dy", "x", "gamma", "mean", "invstd", "y"),
                  no_special=PER_CHANNEL + ("y",),
                  outs={"dx": 0, "dgamma": 1, "dbeta": 2},
                  inplace=(("dx", "dy"), ("dx", "x"), ("dx", "y")), nonfinite="loose", params=params,
                  label=f"batch_norm_backward[sums={sums is not None}]", **BACKWARD_TOL)


@st.composite
def moments_call(draw):
    rng, x, gamma, beta, mm, mv, special = draw(data())
    shift = F.values(rng, (x.shape[-1],))
    return F.Call(K.batch_norm_moments, dict(x=x, shift=shift, out=None),
                  lambda kw: R.batch_norm_moments(kw["x"], kw["shift"]),
                  inputs=("x", "shift"), outs={"out": 0}, no_special=("shift",), nonfinite="loose",
                  label="batch_norm_moments", scaled=True, rtol=1e-7, atol=1e-9)


@st.composite
def grad_sums_call(draw):
    rng, x, gamma, beta, mm, mv, special = draw(data())
    mean = F.values(rng, (x.shape[-1],))
    dy = F.values(rng, x.shape, special=special)
    y = F.values(rng, x.shape) if draw(st.booleans()) else None
    return F.Call(K.batch_norm_grad_sums, dict(dy=dy, x=x, mean=mean, y=y, out=None),
                  lambda kw: R.batch_norm_grad_sums(kw["dy"], kw["x"], kw["mean"], kw["y"]),
                  inputs=("dy", "x", "mean", "y"), outs={"out": 0}, no_special=("mean", "y"),
                  nonfinite="loose", label="batch_norm_grad_sums", scaled=True, rtol=1e-7, atol=1e-9)


CALLS = {"batch_norm_train": train_call(), "batch_norm_inference": inference_call(),
         "inference_fold": fold_call(), "batch_norm_backward": backward_call(),
         "batch_norm_moments": moments_call(), "batch_norm_grad_sums": grad_sums_call()}


def test_every_public_function_is_fuzzed():
    assert sorted(CALLS) == sorted(K.__all__)


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_valid(name, data):
    F.check_valid(data.draw(CALLS[name]))


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_spoiled(name, data):
    F.check_spoiled(data, data.draw(CALLS[name]))
