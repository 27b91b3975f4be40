"""Fuzzing fastnn.kernels.pool: every public function, valid and spoiled arguments (fuzzutil)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import pool as K
from fastnn.reference import pool as R

TOL = dict(rtol=2e-5, atol=2e-6)      # as tests/kernels/test_pool.py

WINDOW_JUNK = F.JUNK + [(2,), (2, 2, 2), (0, 2), (-1, 1), 2**30, (2**31, 1), "2", (1.0, 2)]
PADDING_JUNK = F.JUNK + ["full", "causal", "SAME", "Valid", "", ((1, 1), (1, 1)), (0, 0), b"same"]


def _shape_param(shape):
    """x_shape: the right one spelled otherwise (list, NumPy ints) and wrong ones."""
    n, *sp, c = shape
    return F.JUNK + [list(shape), tuple(np.array(shape)), (n + 1, *sp, c), (n, *sp, c + 1),
                     (n, *sp), (n, *sp, c, 1), (n, *(s + 1 for s in sp), c),
                     (n, *(0 for _ in sp), c), (-1, *sp, c), (n, *sp, 2**40), (1.0, *sp, c)]


@st.composite
def geometry(draw, rank):
    """x of a valid (N, *spatial, C) shape with a pool_size / strides / padding that fit it."""
    n = draw(st.integers(0, 3))
    spatial = [draw(st.integers(1, 7)) for _ in range(rank)]
    c = draw(st.sampled_from([0, 1, 2, 3, 5, 17]))
    pool = [draw(st.integers(1, 4)) for _ in range(rank)]
    strides = draw(st.one_of(st.none(), st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    padding = draw(st.sampled_from(["valid", "same", "SAME", "Valid"]))
    if padding.lower() == "valid":
        assume(all(k <= s for k, s in zip(pool, spatial)))
    # spell them as users do: an int when all equal, else a tuple (or list)
    spell = lambda v: v if v is None else (v[0] if len(set(v)) == 1 and draw(st.booleans()) else
                                          draw(st.sampled_from([tuple, list]))(v))
    rng = np.random.default_rng(draw(F.seeds()))
    x = F.values(rng, (n, *spatial, c), special=draw(st.booleans()))
    if draw(st.booleans()):      # small integers: many ties, the first in window order wins
        x = np.round(x).astype(np.float32)
    return rng, x, spell(pool), spell(strides), padding


def _window_params():
    return {"pool_size": WINDOW_JUNK, "strides": WINDOW_JUNK, "padding": PADDING_JUNK}


@st.composite
def max_pool(draw, rank):
    rng, x, pool, strides, padding = draw(geometry(rank))
    fwd = K.max_pool2d if rank == 2 else K.max_pool1d
    ref = R.max_pool2d if rank == 2 else R.max_pool1d
    return F.Call(fwd, dict(x=x, pool_size=pool, strides=strides, padding=padding, out=None, argmax=None),
                  lambda kw: ref(kw["x"], kw["pool_size"], kw["strides"], kw["padding"]),
                  inputs=("x",), outs={"out": 0, "argmax": 1}, params=_window_params(),
                  label=fwd.__name__, **TOL)


@st.composite
def max_pool_backward(draw, rank):
    rng, x, pool, strides, padding = draw(geometry(rank))
    fwd = K.max_pool2d if rank == 2 else K.max_pool1d
    bwd = K.max_pool2d_backward if rank == 2 else K.max_pool1d_backward
    _, argmax = fwd(x, pool, strides, padding)
    dy = F.values(rng, argmax.shape, special=draw(st.booleans()))
    return _max_backward_call(bwd, dy, argmax, x.shape)


def _max_backward_call(bwd, dy, argmax, x_shape):
    cells = int(np.prod(x_shape[1:]))
    bad_argmax = [argmax - 1 - argmax.max(initial=0), argmax + cells, argmax.astype(np.int64)]
    return F.Call(bwd, dict(dy=dy, argmax=argmax, x_shape=x_shape, dx=None),
                  lambda kw: R.max_pool2d_backward(kw["dy"], kw["argmax"], kw["x_shape"]),
                  inputs=("dy", "argmax"), outs={"dx": 0},
                  params={"x_shape": _shape_param(x_shape), "argmax": bad_argmax},
                  label=bwd.__name__, **TOL)


@st.composite
def avg_pool(draw, rank):
    rng, x, pool, strides, padding = draw(geometry(rank))
    fwd = K.avg_pool2d if rank == 2 else K.avg_pool1d
    ref = R.avg_pool2d if rank == 2 else R.avg_pool1d
    return F.Call(fwd, dict(x=x, pool_size=pool, strides=strides, padding=padding, out=None),
                  lambda kw: ref(kw["x"], kw["pool_size"], kw["strides"], kw["padding"]),
                  inputs=("x",), outs={"out": 0}, params=_window_params(), label=fwd.__name__, **TOL)


@st.composite
def avg_pool_backward(draw, rank):
    rng, x, pool, strides, padding = draw(geometry(rank))
    fwd = K.avg_pool2d if rank == 2 else K.avg_pool1d
    bwd = K.avg_pool2d_backward if rank == 2 else K.avg_pool1d_backward
    ref = R.avg_pool2d_backward if rank == 2 else R.avg_pool1d_backward
    dy = F.values(rng, fwd(x, pool, strides, padding).shape, special=draw(st.booleans()))
    return F.Call(bwd, dict(dy=dy, x_shape=x.shape, pool_size=pool, strides=strides, padding=padding, dx=None),
                  lambda kw: ref(kw["dy"], kw["x_shape"], kw["pool_size"], kw["strides"], kw["padding"]),
                  inputs=("dy",), outs={"dx": 0},
                  params={**_window_params(), "x_shape": _shape_param(x.shape)},
                  label=bwd.__name__, **TOL)


@st.composite
def global_pool(draw, rank, kind):
    rng, x, *_ = draw(geometry(rank))
    name = f"global_{kind}_pool{rank}d"
    fwd, ref = getattr(K, name), getattr(R, name)
    if kind == "max":
        return F.Call(fwd, dict(x=x, out=None, argmax=None), lambda kw: ref(kw["x"]),
                      inputs=("x",), outs={"out": 0, "argmax": 1}, label=name, **TOL)
    return F.Call(fwd, dict(x=x, out=None), lambda kw: ref(kw["x"]), inputs=("x",),
                  outs={"out": 0}, label=name, **TOL)


@st.composite
def global_pool_backward(draw, rank, kind):
    rng, x, *_ = draw(geometry(rank))
    name = f"global_{kind}_pool{rank}d"
    bwd, ref = getattr(K, name + "_backward"), getattr(R, name + "_backward")
    dy = F.values(rng, (x.shape[0], x.shape[-1]), special=draw(st.booleans()))
    if kind == "max":
        _, argmax = getattr(K, name)(x)
        return _max_backward_call(bwd, dy, argmax, x.shape)
    return F.Call(bwd, dict(dy=dy, x_shape=x.shape, dx=None), lambda kw: ref(kw["dy"], kw["x_shape"]),
                  inputs=("dy",), outs={"dx": 0}, params={"x_shape": _shape_param(x.shape)},
                  label=bwd.__name__, **TOL)


CALLS = {}
for _rank in (1, 2):
    CALLS[f"max_pool{_rank}d"] = max_pool(_rank)
    CALLS[f"max_pool{_rank}d_backward"] = max_pool_backward(_rank)
    CALLS[f"avg_pool{_rank}d"] = avg_pool(_rank)
    CALLS[f"avg_pool{_rank}d_backward"] = avg_pool_backward(_rank)
    for _kind in ("max", "avg"):
        CALLS[f"global_{_kind}_pool{_rank}d"] = global_pool(_rank, _kind)
        CALLS[f"global_{_kind}_pool{_rank}d_backward"] = global_pool_backward(_rank, _kind)


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
