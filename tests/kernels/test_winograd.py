"""The Winograd F(2x2, 3x3) path of fastnn.kernels.conv against the float64 reference and the
im2col path: forward, backward (dx, dw, db), ReLU epilogue and y= masked backward, buffers,
special values, thread counts.

Accuracy (measured, x ~ N(0,1), He-scaled w, batch 4, the bench shapes 32x32x32->32,
16x16x32->64, 16x16x64->64 same, 13x13x32->64 valid): max |err| / max |ref| of F(2,3) is
2.0-2.8e-7 for y, 2.2-4.0e-7 for dx, 3.2-6.4e-7 for dw, <5e-8 for db; the im2col path gives
4.2-5.7e-7, 1.5-2.1e-7, 3.4-4.6e-7, 3.1-5.2e-7. F(2,3) is as accurate as the GEMM; both stay
within tests/kernels/conftest.py's conv_close bound, 8 eps32 times the largest sum of |products|
(measured <= 2.0 on random shapes of every path).
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastnn.kernels import activation as A
from fastnn.kernels import conv as K
from fastnn.kernels import threads
from fastnn.reference import conv as R

def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def rand(rng, shape, scale=1.0):
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)


class path:
    """Force the Winograd path (any C, F: the transforms take every size) or the im2col path;
    optionally tiny chunks (one tile row each) and a forced task count."""

    def __init__(self, winograd=True, chunk=None, tasks=None):
        self.winograd, self.chunk, self.tasks = winograd, chunk, tasks

    def __enter__(self):
        self.saved = (K.WINOGRAD, K.WINO_MIN_C, K.WINO_MIN_F, K.WINO_MIN_TILES, K.WINO_MIN_PIXELS,
                      K.WINO_CHUNK_BYTES, K.SERIAL_FLOPS, K.get_num_threads)
        K.WINOGRAD = self.winograd
        K.WINO_MIN_C = K.WINO_MIN_F = 1
        K.WINO_MIN_TILES = K.WINO_MIN_PIXELS = 0   # small images too (else im2col: _wino_pays)
        if self.chunk is not None:
            K.WINO_CHUNK_BYTES = self.chunk
        if self.tasks is not None:
            K.SERIAL_FLOPS = 0.0
            K.get_num_threads = lambda: self.tasks
        return self

    def __exit__(self, *exc):
        (K.WINOGRAD, K.WINO_MIN_C, K.WINO_MIN_F, K.WINO_MIN_TILES, K.WINO_MIN_PIXELS,
         K.WINO_CHUNK_BYTES, K.SERIAL_FLOPS, K.get_num_threads) = self.saved


def pads_of(padding, h, w):
    """(pt, pb, pl, pr) of a stride-1 3x3 window."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return (1, 1, 1, 1)
    (pt, pb), (pl, pr) = padding
    return (pt, pb, pl, pr)


padding_st = st.one_of(
    st.sampled_from(["valid", "same"]),
    st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
              st.tuples(st.integers(0, 2), st.integers(0, 2))))


@settings(max_examples=150)
@given(n=st.integers(1, 3), h=st.integers(1, 9), w_=st.integers(1, 9),
       c=st.sampled_from([1, 3, 5, 16, 17, 23]), f=st.sampled_from([1, 2, 7, 16, 19]),
       padding=padding_st, with_bias=st.booleans(), relu=st.booleans(), need_dx=st.booleans(),
       chunk=st.sampled_from([1, None]), tasks=st.sampled_from([None, 1, 2, 3]),
       seed=st.integers(0, 2**32 - 1))
def test_matches_reference(conv_close, n, h, w_, c, f, padding, with_bias, relu, need_dx, chunk, tasks, seed):
    pt, pb, pl, pr = pads_of(padding, h, w_)
    assume(h + pt + pb >= 3 and w_ + pl + pr >= 3)
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (n, h, w_, c)), rand(rng, (3, 3, c, f), 0.3), rand(rng, (f,))
    b = b if with_bias else None
    with path(True, chunk, tasks):
        assert K._use_winograd(w, (1, 1), (1, 1), (pt, pb, pl, pr))
        y = K.conv2d(x, w, b, 1, padding, activation="relu" if relu else "linear")
        conv_close(y, R.conv2d, (x, w, b), 1, padding, post=(lambda r: np.maximum(r, 0.0)) if relu else None)
        dy = rand(rng, y.shape)
        got = K.conv2d_backward(x, w, dy, 1, padding, need_dx=need_dx, y=y if relu else None)
    dy_eff = A.grad("relu", y, y, dy) if relu else dy
    conv_close(got, R.conv2d_backward, (x, w, dy_eff), 1, padding, need_dx=need_dx)


SHAPES = [   # the bench shapes at a small batch, and edge cases of the tiling
    ((4, 32, 32, 32), 32, "same"),
    ((4, 16, 16, 32), 64, "same"),
    ((3, 16, 16, 64), 64, "same"),
    ((5, 13, 13, 32), 64, "valid"),
    ((2, 7, 9, 17), 19, "same"),         # odd H and W: the last tiles hang over the edge
    ((1, 1, 2, 16), 16, "same"),         # H of 1, batch 1
    ((3, 3, 3, 24), 16, "valid"),        # a single output pixel
    ((2, 5, 4, 16), 20, ((2, 1), (0, 2))),
]


@pytest.mark.parametrize("xs, f, padding", SHAPES)
def test_default_policy_takes_winograd_and_agrees_with_im2col(conv_close, rng, xs, f, padding):
    x, w, b = rand(rng, xs), rand(rng, (3, 3, xs[3], f), 0.1), rand(rng, (f,))
    assert K.WINOGRAD and K._use_winograd(w, (1, 1), (1, 1), pads_of(padding, *xs[1:3]))
    y = K.conv2d(x, w, b, 1, padding, activation="relu")
    dy = rand(rng, y.shape)
    got = (y,) + K.conv2d_backward(x, w, dy, 1, padding, y=y)
    with path(False):
        y2 = K.conv2d(x, w, b, 1, padding, activation="relu")
        im2col = (y2,) + K.conv2d_backward(x, w, dy, 1, padding, y=y2)
    relu = lambda r: np.maximum(r, 0.0)  # noqa: E731
    for result in (got, im2col):       # each within the bound of the truth (so of each other)
        conv_close(result[0], R.conv2d, (x, w, b), 1, padding, post=relu)
        conv_close(result[1:], R.conv2d_backward, (x, w, A.grad("relu", y, y, dy)), 1, padding)


def test_small_channels_stay_on_im2col(rng):
    assert K._use_winograd(np.zeros((3, 3, 8, 4), np.float32), (1, 1), (1, 1), (0, 0, 0, 0))
    for c, f in [(1, 32), (3, 32), (4, 64), (32, 3), (32, 1)]:
        assert not K._use_winograd(np.zeros((3, 3, c, f), np.float32), (1, 1), (1, 1), (1, 1, 1, 1))
    w = np.zeros((3, 3, 32, 32), np.float32)
    assert not K._use_winograd(w, (2, 2), (1, 1), (1, 1, 1, 1))
    assert not K._use_winograd(w, (1, 1), (2, 2), (2, 2, 2, 2))
    assert not K._use_winograd(w, (1, 1), (1, 1), (3, 3, 3, 3))
    assert not K._use_winograd(np.zeros((5, 5, 32, 32), np.float32), (1, 1), (1, 1), (2, 2, 2, 2))
    with path(False):
        assert not K._use_winograd(w, (1, 1), (1, 1), (1, 1, 1, 1))


@pytest.mark.parametrize("xs, f, padding", SHAPES[:4])
def test_thread_counts_agree(rng, xs, f, padding):
    x, w, b = rand(rng, xs), rand(rng, (3, 3, xs[3], f), 0.1), rand(rng, (f,))
    dy = rand(rng, (xs[0],) + K.conv2d(x[:1], w, None, 1, padding).shape[1:])
    n0 = threads.get_num_threads()
    res = {}
    try:
        for t in (1, 2):
            threads.set_num_threads(t)
            res[t] = (K.conv2d(x, w, b, 1, padding),) + K.conv2d_backward(x, w, dy, 1, padding)
    finally:
        threads.set_num_threads(n0)
    # the chunks are fixed by the shape and dw / db are summed in chunk order: the same bits
    for a, g in zip(res[1], res[2]):
        np.testing.assert_array_equal(a, g)


def test_buffers_used_and_overwritten(conv_close, rng):
    x, w, b = rand(rng, (3, 8, 7, 16)), rand(rng, (3, 3, 16, 24), 0.2), rand(rng, (24,))
    out = np.full((3, 8, 7, 24), 7.0, np.float32)
    y = K.conv2d(x, w, b, 1, "same", out=out)
    assert y is out and np.shares_memory(y, out)
    conv_close(y, R.conv2d, (x, w, b), 1, "same")
    dy = rand(rng, y.shape)
    dx, dw, db = np.full_like(x, 5), np.full_like(w, 5), np.full(24, 5, np.float32)
    got = K.conv2d_backward(x, w, dy, 1, "same", dx=dx, dw=dw, db=db)
    assert all(np.shares_memory(g, o) for g, o in zip(got, (dx, dw, db)))
    conv_close(got, R.conv2d_backward, (x, w, dy), 1, "same")       # written, not accumulated
    dw2, db2 = np.full_like(w, 5), np.full(24, 5, np.float32)
    got = K.conv2d_backward(x, w, dy, 1, "same", need_dx=False, dw=dw2, db=db2)
    assert got[0] is None and got[1] is dw2 and got[2] is db2
    np.testing.assert_array_equal(dw2, dw)


def test_relu_mask_bit_identical_to_separate_grad(rng):
    x, w = rand(rng, (4, 13, 13, 32)), rand(rng, (3, 3, 32, 64), 0.1)
    y = K.conv2d(x, w, rand(rng, (64,)), 1, "valid", activation="relu")
    dy = rand(rng, y.shape)
    expect = K.conv2d_backward(x, w, A.grad("relu", y, y, dy), 1, "valid")
    got = K.conv2d_backward(x, w, dy, 1, "valid", y=y)
    for a, g in zip(expect, got):
        np.testing.assert_array_equal(a, g)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_propagate(rng, bad):
    x, w = rand(rng, (2, 9, 9, 16)), rand(rng, (3, 3, 16, 16))
    x[1, 4, 5, 3] = bad
    y = K.conv2d(x, w, padding="same")
    assert np.isfinite(y[0]).all()
    bad_px = ~np.isfinite(y[1]).all(axis=-1)
    expect = np.zeros((9, 9), bool)
    expect[3:6, 4:7] = True              # exactly the outputs whose 3x3 window reads the pixel
    np.testing.assert_array_equal(bad_px, expect)
    dy = rand(rng, y.shape)
    dx, dw, db = K.conv2d_backward(x, w, dy, padding="same")
    assert not np.isfinite(dw[:, :, 3]).all() and np.isfinite(dw[:, :, :3]).all()
    assert np.isfinite(db).all() and np.isfinite(dx).all()
    x[1, 4, 5, 3] = 0.0
    dy[0, 2, 2, 5] = bad
    dx, dw, db = K.conv2d_backward(x, w, dy, padding="same")
    bad_px = ~np.isfinite(dx[0]).all(axis=-1)
    expect = np.zeros((9, 9), bool)
    expect[1:4, 1:4] = True              # the inputs that output pixel reads
    np.testing.assert_array_equal(bad_px, expect)
    assert np.isfinite(dx[1]).all()
    assert not np.isfinite(db[5]) and np.isfinite(np.delete(db, 5)).all()


def test_workspaces_reused(rng):
    x, w = rand(rng, (4, 10, 10, 16)), rand(rng, (3, 3, 16, 16))
    K.conv2d(x, w)
    before = K._workspace("wino_v", 1).base
    K.conv2d(x, w)
    K.conv2d_backward(x, w, rand(rng, (4, 8, 8, 16)))
    assert K._workspace("wino_v", 1).base is before


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("activation", ["relu", "elu", "relu6"])
def test_fused_activation_equals_separate(rng, activation):
    # plain relu is fused into the output transform, others run bias_act per chunk: both must
    # give the bits of the linear conv followed by activation.apply (inf and NaN included)
    x, w, b = rand(rng, (3, 9, 8, 16)), rand(rng, (3, 3, 16, 18), 0.3), rand(rng, (18,))
    x[0, 2, 3, 1], x[1, 5, 5, 4] = np.inf, np.nan
    with path(True, chunk=1, tasks=2):
        got = K.conv2d(x, w, b, 1, "same", activation=activation)
        want = A.apply(activation, K.conv2d(x, w, b, 1, "same"))
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any() and (activation == "elu" or (got == 0).any())


def test_read_only_inputs_and_channel_limit(conv_close, rng):
    x, w, b = rand(rng, (2, 6, 6, 16)), rand(rng, (3, 3, 16, 8), 0.3), rand(rng, (8,))
    dy = rand(rng, (2, 6, 6, 8))
    for a in (x, w, b, dy):
        a.setflags(write=False)
    assert K._use_winograd(w, (1, 1), (1, 1), (1, 1, 1, 1))
    conv_close(K.conv2d(x, w, b, padding="same"), R.conv2d, (x, w, b), padding="same")
    conv_close(K.conv2d_backward(x, w, dy, padding="same"), R.conv2d_backward, (x, w, dy), padding="same")
    big = np.zeros((3, 3, 8, K._wg.CMAX + 1), np.float32)     # beyond the transforms' zero rows
    assert not K._use_winograd(big, (1, 1), (1, 1), (1, 1, 1, 1))


def test_env_switch_forces_im2col(tmp_path):
    import os
    import subprocess
    import sys

    code = "from fastnn.kernels import conv as K; print(K.WINOGRAD)"
    env = dict(os.environ, FASTNN_CONV_WINOGRAD="0")
    # outside the source tree: the installed package has the compiled kernels, ./fastnn has not
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "False"
