"""Fuzzing fastnn.kernels.depthwise: depthwise_conv2d / depthwise_conv1d and their backward
(serial and threaded, small and many weight-gradient chunks), valid and spoiled arguments
(fuzzutil). The session fixture of tests/kernels/conftest.py runs it under every
instruction-set flavour (the module's ISA=None follows the flavour in force)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import depthwise as K
from fastnn.reference import depthwise as R
from test_fuzz_conv import ACT_JUNK, FLAG_JUNK, PADDING1D_JUNK, PADDING_JUNK, WINDOW_JUNK

# float32 kernel vs float64 reference: each output sums <= 5*5 products of numbers <= 2 (dw
# sums up to N*OH*OW <= 3*13*13 of them); measured max error 2.4e-6 (dw 1.5e-5 on the largest)
TOL = dict(rtol=1e-4, atol=2e-4)
# a +-inf times 0 in one tap is NaN in the reference too; the register ReLU and the separate
# pass agree on NaN (max(NaN, 0) is NaN in both), so non-finite values must match exactly
TAPS_JUNK = [np.ones((17, 16, 1, 1), np.float32)]      # 272 taps > the kernels' 256: refused


def _knobs(fn, knobs, label):
    """fn run with the path / flavour / threading module settings of `knobs`."""
    return F.with_settings(K, fn, knobs, label)


@st.composite
def knobs(draw):
    k = {}
    if draw(st.booleans()):       # threads and several weight-gradient chunks for tiny shapes
        k.update(SERIAL_MACS=0, CHUNK_PIXELS=draw(st.sampled_from([1, 3])),
                 MAX_CHUNKS=draw(st.sampled_from([2, 5, 32])))
    return k


def _spell(draw, v):
    if v[0] == v[1] and draw(st.booleans()):
        return v[0]
    return draw(st.sampled_from([tuple, list]))(v)


@st.composite
def geometry2d(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    n = draw(st.integers(0, 3))
    h, wd = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    c = draw(st.sampled_from([1, 2, 3, 8, 17]))
    m = draw(st.sampled_from([1, 1, 2, 3]))
    kh, kw = (3, 3) if draw(st.booleans()) else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    strides = (1, 1) if draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if draw(st.booleans()) else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "SAME"]),
                             st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                       st.tuples(st.integers(0, 3), st.integers(0, 3)))))
    pads = [(0, 0)] * 2 if isinstance(padding, str) and padding.lower() == "valid" else \
        (padding if not isinstance(padding, str) else [(kh, kh), (kw, kw)])
    assume(h + sum(pads[0]) >= (kh - 1) * dilation[0] + 1)
    assume(wd + sum(pads[1]) >= (kw - 1) * dilation[1] + 1)
    special = draw(st.integers(0, 3)) == 0
    x = F.values(rng, (n, h, wd, c), special=special)
    w = F.values(rng, (kh, kw, c, m))
    return rng, x, w, _spell(draw, strides), padding, _spell(draw, dilation), special


@st.composite
def geometry1d(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    n = draw(st.integers(0, 3))
    length = draw(st.integers(1, 14))
    c, m, k = draw(st.sampled_from([1, 3, 8, 17])), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "causal", "Causal"]),
                             st.tuples(st.integers(0, 3), st.integers(0, 3))))
    eff = (k - 1) * dilation + 1
    extra = 0 if isinstance(padding, str) and padding.lower() == "valid" else \
        (sum(padding) if not isinstance(padding, str) else eff)
    assume(length + extra >= eff)
    special = draw(st.integers(0, 3)) == 0
    x = F.values(rng, (n, length, c), special=special)
    w = F.values(rng, (k, c, m))
    spell = lambda v: draw(st.sampled_from([v, (v,), [v], np.int64(v)]))
    return rng, x, w, spell(stride), padding, spell(dilation), special


ACTS = [("linear", {}), ("relu", {}), ("relu", {"max_value": 1.0}), ("sigmoid", {}), ("tanh", {}),
        ("softmax", {})]


@st.composite
def forward_call(draw, rank):
    rng, x, w, strides, padding, dilation, special = draw(geometry2d() if rank == 2 else geometry1d())
    ce = w.shape[-2] * w.shape[-1]
    b = F.values(rng, (ce,)) if draw(st.booleans()) else None
    act, params = draw(st.sampled_from(ACTS))
    kn = draw(knobs())
    name = f"depthwise_conv{rank}d"
    s, d = ("strides", "dilation") if rank == 2 else ("stride", "dilation")
    kw = {"x": x, "w": w, "b": b, s: strides, "padding": padding, d: dilation, "out": None,
          "activation": act, **params}
    return F.Call(_knobs(getattr(K, name), kn, name), kw,
                  lambda r: getattr(R, name)(r["x"], r["w"], r["b"], r[s], r["padding"], r[d],
                                             activation=r["activation"], **{p: r[p] for p in params}),
                  inputs=("x", "w", "b"), outs={"out": 0},
                  params={s: WINDOW_JUNK, "padding": PADDING_JUNK if rank == 2 else PADDING1D_JUNK,
                          d: WINDOW_JUNK, "activation": ACT_JUNK, "w": TAPS_JUNK},
                  label=f"{name}[{kn}, {act}]", **TOL)


@st.composite
def backward_call(draw, rank):
    rng, x, w, strides, padding, dilation, special = draw(geometry2d() if rank == 2 else geometry1d())
    kn = draw(knobs())
    name = f"depthwise_conv{rank}d"
    s, d = ("strides", "dilation") if rank == 2 else ("stride", "dilation")
    shape = getattr(K, name)(x, w, None, strides, padding, dilation).shape
    dy = F.values(rng, shape, special=special)
    need_dx = draw(st.booleans())
    return F.Call(_knobs(getattr(K, name + "_backward"), kn, name + "_backward"),
                  {"x": x, "w": w, "dy": dy, s: strides, "padding": padding, d: dilation,
                   "need_dx": need_dx, "dx": None, "dw": None, "db": None},
                  lambda r: getattr(R, name + "_backward")(r["x"], r["w"], r["dy"], r[s], r["padding"], r[d],
                                                          need_dx=bool(r["need_dx"])),
                  inputs=("x", "w", "dy"), outs={"dx": 0, "dw": 1, "db": 2},
                  params={s: WINDOW_JUNK, "padding": PADDING_JUNK if rank == 2 else PADDING1D_JUNK,
                          d: WINDOW_JUNK, "need_dx": FLAG_JUNK},
                  label=f"{name}_backward[{kn}]", **TOL)


CALLS = {"depthwise_conv2d": forward_call(2), "depthwise_conv2d_backward": backward_call(2),
         "depthwise_conv1d": forward_call(1), "depthwise_conv1d_backward": backward_call(1)}


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
