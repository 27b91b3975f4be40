"""Fuzzing fastnn.kernels.resize: resize and resize_backward, bilinear and nearest, up and
down, valid and spoiled arguments (fuzzutil). The session fixture of
tests/kernels/conftest.py runs it under every instruction-set flavour."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import resize as K
from fastnn.reference import resize as R

# float32 kernel (two float32 weighted sums, rows then columns) vs float64 reference on values
# <= 2: measured max error 4.8e-7; the backward adds up to ceil(m/n) + 1 <= 14 terms per axis
TOL = dict(rtol=1e-5, atol=1e-5)
SIZE_JUNK = F.JUNK + [(0, 1), (1, 0), (-1, 2), (2,), (1, 2, 3), (1.5, 2), ("a", 2), (2**40, 1),
                      (np.int64(3), 3)]
SHAPE_JUNK = F.JUNK + [(1, 0, 2, 1), (1, 2, 0, 1), (-1, 2, 2, 1), (1, 2, 2), (1, 2, 2, 1, 1),
                       (1, 2.5, 2, 1), (1, 2**40, 2, 1), "abcd"]
INTERP_JUNK = [None, "", "bicubic", "NEAREST", "area", 0]


@st.composite
def images(draw, special_ok=True):
    rng = np.random.default_rng(draw(F.seeds()))
    n, c = draw(st.integers(0, 3)), draw(st.sampled_from([0, 1, 3, 16]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    oh, ow = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    interp = draw(st.sampled_from(K.INTERPOLATIONS))
    special = special_ok and draw(st.integers(0, 3)) == 0
    return rng, (n, h, w, c), (oh, ow), interp, special


@st.composite
def resize_call(draw):
    rng, shape, size, interp, special = draw(images())
    size = draw(st.sampled_from([tuple, list, np.array]))(size)
    x = F.values(rng, shape, special=special)
    return F.Call(K.resize, dict(x=x, size=size, interpolation=interp, out=None),
                  lambda r: R.resize(r["x"], tuple(int(v) for v in r["size"]), r["interpolation"]),
                  inputs=("x",), outs={"out": 0},
                  params={"size": SIZE_JUNK, "interpolation": INTERP_JUNK},
                  label=f"resize[{interp}]", **TOL)


@st.composite
def resize_backward_call(draw):
    rng, shape, size, interp, special = draw(images())
    dy = F.values(rng, (shape[0], *size, shape[3]), special=special)
    x_shape = draw(st.sampled_from([tuple, list, np.array]))(shape)
    return F.Call(K.resize_backward, dict(dy=dy, x_shape=x_shape, interpolation=interp, dx=None),
                  lambda r: R.resize_backward(r["dy"], tuple(int(v) for v in r["x_shape"]), r["interpolation"]),
                  inputs=("dy",), outs={"dx": 0},
                  params={"x_shape": SHAPE_JUNK, "interpolation": INTERP_JUNK},
                  label=f"resize_backward[{interp}]", **TOL)


CALLS = {"resize": resize_call(), "resize_backward": resize_backward_call()}


def test_every_public_function_is_fuzzed():
    assert sorted(CALLS) == sorted(n for n in K.__all__ if callable(getattr(K, n)))


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_valid(name, data):
    F.check_valid(data.draw(CALLS[name]))


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_spoiled(name, data):
    F.check_spoiled(data, data.draw(CALLS[name]))
