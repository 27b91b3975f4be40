"""Fuzzing fastnn.kernels.conv: conv2d / conv1d and their backward on every path (direct,
Winograd, im2col; serial and threaded shares; grouped, with groups == C on the depthwise
kernels), the transposed convolutions and their backward, valid and spoiled arguments
(fuzzutil). The session fixture of tests/kernels/conftest.py runs it under every
instruction-set flavour."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import conv as K
from fastnn.reference import activation as RA
from fastnn.reference import conv as R

# float32 kernel vs float64 reference, sums of <= 4*4*16 products of numbers <= 2 (the tests of
# test_conv.py use 1e-4 on sums of ~100 products of O(1) numbers)
TOL = dict(rtol=1e-4, atol=2e-4)
# NaN/inf inputs: Winograd's transforms mix the 4x4 tile, so a +-inf in x or dy may turn into
# NaN in other outputs / dw taps of that tile whose direct sum is finite (inf - inf); the
# comparison allows that ("spread") only when an input holds a NaN or inf

WINDOW_JUNK = F.JUNK + [(0, 1), (1,), (1, 2, 3), (-1, 1), (2**31, 1), 2**40, (1.0, 1), "1"]
PADDING_JUNK = F.JUNK + ["full", "causal", "SAME", "Valid", ((1, 1), (1, 1)), ((-1, 0), (0, 0)),
                         ((1, 2),), (1, 1), ((1, 1), (1, 1), (1, 1)), ((0, 2**40), (0, 0)),
                         ((1.0, 1), (0, 0)), (("a", 1), (0, 0))]
PADDING1D_JUNK = F.JUNK + ["full", "causal", "SAME", (1, 1), (-1, 0), (1,), ((1, 1),), (2**40, 0),
                           (1.0, 0)]
ACT_JUNK = [None, "", "nope", "softmax", "RELU", 3]
AFFINE_JUNK = [None, (), [], "affine", (np.ones(2, np.float32),) * 2, np.ones((3, 4), np.float32)]
POOL_JUNK = [None, (2, 2), [2, 2], (3, 3), 2, (2,), (1, 1), "2x2", (2, 2, 2)]
FLAG_JUNK = [None, 0, 1, "yes", np.bool_(False)]
GROUPS_JUNK = [None, 0, -1, 2.0, "2", True, 3, 7, 2**40, np.int64(2), (2,)]
OUTPUT_PADDING_JUNK = F.JUNK + [(0,), (0, 0, 0), (-1, 0), (5, 0), (0.0, 0), ("0", 0), 5]
TRANSPOSE_PADDING_JUNK = F.JUNK + ["full", "causal", "SAME", ((1, 1), (1, 1)), (1, 1)]


def _groups(draw):
    """groups G (mostly 1) and how many channels / filters per group to scale c and f by."""
    return draw(st.sampled_from([1, 1, 1, 2, 3]))


def _knobs(fn, knobs, label):
    """fn run with the path / flavour / threading module settings of `knobs`."""
    return F.with_settings(K, fn, knobs, label)


@st.composite
def knobs(draw):
    k = {"DIRECT": draw(st.sampled_from([None, True, False])), "WINOGRAD": draw(st.booleans())}
    if k["WINOGRAD"] and draw(st.booleans()):   # Winograd for small images and batches too
        k["WINO_MIN_TILES"] = k["WINO_MIN_PIXELS"] = 0
    if draw(st.booleans()):   # split even tiny problems into per-thread shares
        k["SERIAL_FLOPS"] = 1.0
    return k


def _spell(draw, v):
    """A pair as users spell it: an int when both are equal, a tuple or a list."""
    if v[0] == v[1] and draw(st.booleans()):
        return v[0]
    return draw(st.sampled_from([tuple, list]))(v)


@st.composite
def geometry2d(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    n = draw(st.integers(0, 3))
    big = draw(st.integers(0, 4)) == 0           # Winograd-sized channels, several tiles
    h, wd = (draw(st.integers(1, 13)), draw(st.integers(1, 13))) if big else \
        (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    c = draw(st.integers(8, 16)) if big else draw(st.integers(1, 5))
    f = draw(st.integers(4, 16)) if big else draw(st.integers(1, 6))
    groups = _groups(draw)
    if groups > 1 and draw(st.booleans()):    # groups == C: the depthwise path
        c, f = groups, groups * draw(st.integers(1, 2))
    else:
        c, f = c * groups, f * groups
    kh, kw = (3, 3) if big and draw(st.booleans()) else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (1, 1) if big and draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if draw(st.booleans()) else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "SAME"]),
                             st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                       st.tuples(st.integers(0, 2), st.integers(0, 2)))))
    pads = [(0, 0)] * 2 if isinstance(padding, str) and padding.lower() == "valid" else \
        (padding if not isinstance(padding, str) else [(kh, kh), (kw, kw)])
    assume(h + sum(pads[0]) >= (kh - 1) * dilation[0] + 1)
    assume(wd + sum(pads[1]) >= (kw - 1) * dilation[1] + 1)
    special = draw(st.integers(0, 3)) == 0
    x = F.values(rng, (n, h, wd, c), special=special)
    w = F.values(rng, (kh, kw, c // groups, f))
    return rng, x, w, _spell(draw, strides), padding, _spell(draw, dilation), special, groups


def _epilogue(draw, rng, f):
    act, params = draw(st.sampled_from([("linear", {}), ("relu", {}), ("relu", {"max_value": 1.0}),
                                        ("sigmoid", {}), ("softmax", {}), ("tanh", {})]))
    affine = None
    if draw(st.booleans()):
        affine = (F.values(rng, (f,)), F.values(rng, (f,)), F.values(rng, (f,)))
    return act, params, affine


@st.composite
def conv2d_call(draw):
    rng, x, w, strides, padding, dilation, special, groups = draw(geometry2d())
    f = w.shape[-1]
    b = F.values(rng, (f,)) if draw(st.booleans()) else None
    act, params, affine = _epilogue(draw, rng, f)
    oh, ow = K.conv2d(x[:0], w, None, strides, padding, dilation, groups=groups).shape[1:3]
    pool = (2, 2) if oh >= 2 and ow >= 2 and draw(st.booleans()) else None
    kn = draw(knobs())
    kw = dict(x=x, w=w, b=b, strides=strides, padding=padding, dilation=dilation, out=None,
              activation=act, affine=affine, pool=pool, groups=groups, **params)
    return F.Call(_knobs(K.conv2d, kn, "conv2d"), kw,
                  lambda r: R.conv2d(r["x"], r["w"], r["b"], r["strides"], r["padding"], r["dilation"],
                                     activation=r["activation"], affine=r["affine"], pool=r["pool"],
                                     groups=r["groups"], **{p: r[p] for p in params}),
                  inputs=("x", "w", "b"), outs={"out": 0},
                  params={"strides": WINDOW_JUNK, "padding": PADDING_JUNK, "dilation": WINDOW_JUNK,
                          "activation": ACT_JUNK, "affine": AFFINE_JUNK, "pool": POOL_JUNK,
                          "groups": GROUPS_JUNK},
                  nonfinite="spread", label=f"conv2d[{kn}, {act}, groups={groups}]", **TOL)


def _masked(dy, y):
    return dy if y is None else RA.grad("relu", y, y, dy)


@st.composite
def conv2d_backward_call(draw):
    rng, x, w, strides, padding, dilation, special, groups = draw(geometry2d())
    kn = draw(knobs())
    y = None
    if draw(st.booleans()):
        y = K.conv2d(x, w, None, strides, padding, dilation, activation="relu", groups=groups)
        shape = y.shape
    else:
        shape = K.conv2d(x, w, None, strides, padding, dilation, groups=groups).shape
    dy = F.values(rng, shape, special=special)
    need_dx = draw(st.booleans())

    def ref(r):
        dx, dw, db = R.conv2d_backward(r["x"], r["w"], _masked(r["dy"], r["y"]), r["strides"],
                                       r["padding"], r["dilation"], need_dx=bool(r["need_dx"]),
                                       groups=r["groups"])
        return dx, dw, db

    return F.Call(_knobs(K.conv2d_backward, kn, "conv2d_backward"),
                  dict(x=x, w=w, dy=dy, strides=strides, padding=padding, dilation=dilation,
                       need_dx=need_dx, dx=None, dw=None, db=None, y=y, groups=groups),
                  ref, inputs=("x", "w", "dy", "y"), outs={"dx": 0, "dw": 1, "db": 2},
                  no_special=("y",),
                  params={"strides": WINDOW_JUNK, "padding": PADDING_JUNK, "dilation": WINDOW_JUNK,
                          "need_dx": FLAG_JUNK, "groups": GROUPS_JUNK},
                  nonfinite="spread", label=f"conv2d_backward[{kn}, groups={groups}]", **TOL)


@st.composite
def geometry1d(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    n = draw(st.integers(0, 3))
    length = draw(st.integers(1, 12))
    c, f, k = draw(st.integers(1, 10)), draw(st.integers(1, 10)), draw(st.integers(1, 5))
    groups = _groups(draw)
    c, f = c * groups, f * groups
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 3))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "causal", "Causal"]),
                             st.tuples(st.integers(0, 3), st.integers(0, 3))))
    eff = (k - 1) * dilation + 1
    extra = 0 if isinstance(padding, str) and padding.lower() == "valid" else \
        (sum(padding) if not isinstance(padding, str) else eff)
    assume(length + extra >= eff)
    special = draw(st.integers(0, 3)) == 0
    x = F.values(rng, (n, length, c), special=special)
    w = F.values(rng, (k, c // groups, f))
    spell = lambda v: draw(st.sampled_from([v, (v,), [v], np.int64(v)]))
    return rng, x, w, spell(stride), padding, spell(dilation), special, groups


@st.composite
def conv1d_call(draw):
    rng, x, w, stride, padding, dilation, special, groups = draw(geometry1d())
    b = F.values(rng, (w.shape[-1],)) if draw(st.booleans()) else None
    act = draw(st.sampled_from(["linear", "relu", "sigmoid"]))
    kn = draw(knobs())
    return F.Call(_knobs(K.conv1d, kn, "conv1d"),
                  dict(x=x, w=w, b=b, stride=stride, padding=padding, dilation=dilation, out=None,
                       activation=act, groups=groups),
                  lambda r: RA.apply(r["activation"], R.conv1d(r["x"], r["w"], r["b"], r["stride"],
                                                               r["padding"], r["dilation"], groups=r["groups"])),
                  inputs=("x", "w", "b"), outs={"out": 0},
                  params={"stride": WINDOW_JUNK, "padding": PADDING1D_JUNK, "dilation": WINDOW_JUNK,
                          "activation": ACT_JUNK, "groups": GROUPS_JUNK},
                  nonfinite="spread", label=f"conv1d[{kn}, groups={groups}]", **TOL)


@st.composite
def conv1d_backward_call(draw):
    rng, x, w, stride, padding, dilation, special, groups = draw(geometry1d())
    kn = draw(knobs())
    y = K.conv1d(x, w, None, stride, padding, dilation, activation="relu", groups=groups) \
        if draw(st.booleans()) else None
    shape = K.conv1d(x, w, None, stride, padding, dilation, groups=groups).shape
    dy = F.values(rng, shape, special=special)
    need_dx = draw(st.booleans())

    def ref(r):
        return R.conv1d_backward(r["x"], r["w"], _masked(r["dy"], r["y"]), r["stride"], r["padding"],
                                 r["dilation"], need_dx=bool(r["need_dx"]), groups=r["groups"])

    return F.Call(_knobs(K.conv1d_backward, kn, "conv1d_backward"),
                  dict(x=x, w=w, dy=dy, stride=stride, padding=padding, dilation=dilation,
                       need_dx=need_dx, dx=None, dw=None, db=None, y=y, groups=groups),
                  ref, inputs=("x", "w", "dy", "y"), outs={"dx": 0, "dw": 1, "db": 2},
                  no_special=("y",),
                  params={"stride": WINDOW_JUNK, "padding": PADDING1D_JUNK, "dilation": WINDOW_JUNK,
                          "need_dx": FLAG_JUNK, "groups": GROUPS_JUNK},
                  nonfinite="spread", label=f"conv1d_backward[{kn}, groups={groups}]", **TOL)


@st.composite
def transpose_geometry(draw, rank):
    """x, w (Keras's (*kernel, F, C) layout) and valid strides / padding / output_padding /
    dilation of a transposed convolution (2-D, or 1-D as ints)."""
    rng = np.random.default_rng(draw(F.seeds()))
    n = draw(st.integers(0, 3))
    spatial = tuple(draw(st.integers(1, 7)) for _ in range(rank))
    c, f = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = (1,) * rank if draw(st.booleans()) else tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same", "Same"]))
    output_padding = None
    if draw(st.booleans()):
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
    special = draw(st.integers(0, 3)) == 0
    x = F.values(rng, (n, *spatial, c), special=special)
    w = F.values(rng, (*kernel, f, c))
    if rank == 1:
        one = lambda v: v[0] if draw(st.booleans()) else v
        strides, dilation = one(strides), one(dilation)
        output_padding = None if output_padding is None else one(output_padding)
    fwd = K.conv2d_transpose if rank == 2 else K.conv1d_transpose
    try:
        shape = fwd(x[:0], w, None, strides, padding, output_padding, dilation).shape
    except ValueError:           # Keras's rules leave some combinations out
        assume(False)
    return rng, x, w, strides, padding, output_padding, dilation, special, (x.shape[0], *shape[1:])


@st.composite
def transpose_call(draw, rank):
    rng, x, w, strides, padding, op, dilation, special, shape = draw(transpose_geometry(rank))
    b = F.values(rng, (w.shape[-2],)) if draw(st.booleans()) else None
    act, params = draw(st.sampled_from([("linear", {}), ("relu", {}), ("relu", {"negative_slope": 0.1}),
                                        ("sigmoid", {}), ("softmax", {})]))
    kn = draw(knobs())
    name = f"conv{rank}d_transpose"
    return F.Call(_knobs(getattr(K, name), kn, name),
                  dict(x=x, w=w, b=b, strides=strides, padding=padding, output_padding=op, dilation=dilation,
                       out=None, activation=act, **params),
                  lambda r: getattr(R, name)(r["x"], r["w"], r["b"], r["strides"], r["padding"],
                                             r["output_padding"], r["dilation"], activation=r["activation"],
                                             **{p: r[p] for p in params}),
                  inputs=("x", "w", "b"), outs={"out": 0},
                  params={"strides": WINDOW_JUNK, "padding": TRANSPOSE_PADDING_JUNK,
                          "output_padding": OUTPUT_PADDING_JUNK, "dilation": WINDOW_JUNK,
                          "activation": ACT_JUNK},
                  nonfinite="spread", label=f"{name}[{kn}, {act}]", **TOL)


@st.composite
def transpose_backward_call(draw, rank):
    rng, x, w, strides, padding, op, dilation, special, shape = draw(transpose_geometry(rank))
    dy = F.values(rng, shape, special=special)
    need_dx = draw(st.booleans())
    kn = draw(knobs())
    name = f"conv{rank}d_transpose_backward"
    return F.Call(_knobs(getattr(K, name), kn, name),
                  dict(x=x, w=w, dy=dy, strides=strides, padding=padding, output_padding=op, dilation=dilation,
                       need_dx=need_dx, dx=None, dw=None, db=None),
                  lambda r: getattr(R, name)(r["x"], r["w"], r["dy"], r["strides"], r["padding"],
                                             r["output_padding"], r["dilation"], need_dx=bool(r["need_dx"])),
                  inputs=("x", "w", "dy"), outs={"dx": 0, "dw": 1, "db": 2},
                  params={"strides": WINDOW_JUNK, "padding": TRANSPOSE_PADDING_JUNK,
                          "output_padding": OUTPUT_PADDING_JUNK, "dilation": WINDOW_JUNK,
                          "need_dx": FLAG_JUNK},
                  nonfinite="spread", label=f"{name}[{kn}]", **TOL)


CALLS = {"conv2d": conv2d_call(), "conv2d_backward": conv2d_backward_call(),
         "conv1d": conv1d_call(), "conv1d_backward": conv1d_backward_call(),
         "conv2d_transpose": transpose_call(2), "conv2d_transpose_backward": transpose_backward_call(2),
         "conv1d_transpose": transpose_call(1), "conv1d_transpose_backward": transpose_backward_call(1)}


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
