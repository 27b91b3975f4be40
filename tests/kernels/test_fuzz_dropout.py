"""Fuzzing fastnn.kernels.dropout: forward and backward, valid and spoiled arguments (fuzzutil)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import dropout as K
from fastnn.reference import dropout as R

# the reference draws the same mask and multiplies by the same float32 scale: exact
TOL = dict(rtol=0, atol=0)
RATE_JUNK = F.JUNK + [0.0, 1.0, -0.1, 1 - 1e-12, np.float32(0.3), np.float64(0.5), 1e-300, "0.5"]
SEED_JUNK = F.JUNK + [-1, 2**64, 2**100, -2**100, np.uint64(2**63 + 5), np.int32(-7), 1.0, b"1"]


@st.composite
def shapes(draw):
    if draw(st.integers(0, 9)) == 0:
        return (draw(st.integers(1, 3)), 70_000)       # the threaded loop
    return tuple(draw(st.integers(0, 6)) for _ in range(draw(st.integers(0, 4))))


@st.composite
def dropout_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    x = F.values(rng, draw(shapes()), special=draw(st.booleans()))
    rate = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.999]))
    seed = draw(st.one_of(st.integers(-2**70, 2**70), st.integers(0, 100)))
    return F.Call(K.dropout, dict(x=x, rate=rate, seed=seed, out=None, mask=None),
                  lambda kw: R.dropout(kw["x"], kw["rate"], kw["seed"]),
                  inputs=("x",), outs={"out": 0, "mask": 1}, inplace=(("out", "x"),),
                  params={"rate": RATE_JUNK, "seed": SEED_JUNK}, label="dropout", **TOL)


@st.composite
def dropout_backward_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    dy = F.values(rng, draw(shapes()), special=draw(st.booleans()))
    mask = np.asarray((rng.random(dy.shape) < 0.5) * draw(st.sampled_from([1, 7, 255])), np.uint8)
    rate = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    return F.Call(K.dropout_backward, dict(dy=dy, mask=mask, rate=rate, dx=None),
                  lambda kw: R.dropout_backward(kw["dy"], kw["mask"], kw["rate"]),
                  inputs=("dy", "mask"), outs={"dx": 0}, inplace=(("dx", "dy"),),
                  params={"rate": RATE_JUNK}, label="dropout_backward", **TOL)


CALLS = {"dropout": dropout_call(), "dropout_backward": dropout_backward_call()}


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
