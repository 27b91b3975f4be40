"""fastnn.kernels.depthwise against the NumPy reference (every thread count and chunk grid; the
whole file runs under each instruction-set flavour the CPU has, tests/kernels/conftest.py),
numerical gradients, thread-count independence, buffers and checks."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fastnn._kernels import depthwise as DK
from fastnn.kernels import activation as A
from fastnn.kernels import conv as C
from fastnn.kernels import depthwise as K
from fastnn.kernels import threads as _threads
from fastnn.kernels._geometry import resolve_padding
from fastnn.reference import depthwise as R


# float32 kernel vs float64 reference, error relative to the largest |value| of the result: sums
# of <= 25 (taps) or <= N*OH*OW (dw; float partials over 16 rows, then float64) products of O(1)
# numbers; measured worst 6.3e-7 (db) over 300 hypothesis examples per flavour and the MobileNet
# shapes below; the bound is ~5x that.
REL = 3e-6


def close(got, want, rel=REL, what=""):
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    err = float(np.abs(np.asarray(got, np.float64) - want).max(initial=0.0))
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:.1g} x {scale:.3g}"


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def rand(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def fits(n, k, s, d, p):
    try:
        resolve_padding(n, k, s, d, p, "padding", "test")
    except ValueError:
        return False
    return True


class setting:
    """Force a flavour (isa: at most the one in force), a thread count (threads: every call
    parallel, even tiny ones) and a fine chunk grid (chunks: up to that many weight-gradient
    chunks of one output pixel)."""

    def __init__(self, isa=None, threads=None, chunks=None):
        self.isa, self.threads, self.chunks = isa, threads, chunks

    def __enter__(self):
        self.saved = K.ISA, K.SERIAL_MACS, _threads.get_num_threads, K.MAX_CHUNKS, K.CHUNK_PIXELS
        K.ISA = self.isa
        if self.threads is not None:
            K.SERIAL_MACS = 0
            # the policy's count (omp_threads still gives 1 in a forked child)
            _threads.get_num_threads = lambda: self.threads
        if self.chunks is not None:
            K.MAX_CHUNKS, K.CHUNK_PIXELS = self.chunks, 1

    def __exit__(self, *exc):
        K.ISA, K.SERIAL_MACS, _threads.get_num_threads, K.MAX_CHUNKS, K.CHUNK_PIXELS = self.saved


pad_1d = st.one_of(st.sampled_from(["valid", "same"]), st.tuples(st.integers(0, 2), st.integers(0, 2)))


@st.composite
def depthwise_case(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 12))
    # channels around the vector widths (4, 8, 16) and the 2-vector blocks (32): tails and blocks
    c = draw(st.one_of(st.integers(1, 9), st.sampled_from([15, 16, 17, 24, 32, 33, 40, 48])))
    m = draw(st.sampled_from([1, 1, 2, 3]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):
        padding = draw(st.sampled_from(["valid", "same"]))
        ph = pw = padding
    else:
        ph, pw = draw(pad_1d), draw(pad_1d)
        ph = (0, 0) if ph == "valid" else (1, 1) if ph == "same" else ph
        pw = (0, 0) if pw == "valid" else (1, 1) if pw == "same" else pw
        padding = (ph, pw)
    assume(fits(h, kh, s[0], d[0], ph) and fits(w, kw, s[1], d[1], pw))
    threads = draw(st.sampled_from([None, 1, 2, 3]))
    chunks = draw(st.sampled_from([None, 1, 5]))
    return (n, h, w, c), (kh, kw, c, m), s, padding, d, (None, threads, chunks)


@given(depthwise_case(), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_depthwise2d_matches_reference(case, with_bias, need_dx, seed):
    xs, ws, s, p, d, forced = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, xs), rand(rng, ws)
    b = rand(rng, ws[2] * ws[3]) if with_bias else None
    with setting(*forced):
        y = K.depthwise_conv2d(x, w, b, s, p, d)
        dy = rand(rng, y.shape)
        dx, dw, db = K.depthwise_conv2d_backward(x, w, dy, s, p, d, need_dx=need_dx)
    ref = R.depthwise_conv2d(*f64(x, w, b), s, p, d)
    rdx, rdw, rdb = R.depthwise_conv2d_backward(*f64(x, w, dy), s, p, d)
    assert y.dtype == np.float32 and y.shape == ref.shape
    close(y, ref, what="y")
    close(dw, rdw, what="dw")
    close(db, rdb, what="db")
    if need_dx:
        close(dx, rdx, what="dx")
    else:
        assert dx is None


@given(st.integers(1, 3), st.integers(1, 14), st.sampled_from([1, 3, 8, 17, 32]), st.sampled_from([1, 2]),
       st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
       st.one_of(st.sampled_from(["valid", "same", "causal"]), st.tuples(st.integers(0, 3), st.integers(0, 3))),
       st.sampled_from([None, 2]), st.integers(0, 2**32 - 1))
def test_depthwise1d_matches_reference(n, length, c, m, k, s, d, p, threads, seed):
    assume(fits(length, k, s, d, p))
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (n, length, c)), rand(rng, (k, c, m)), rand(rng, c * m)
    with setting(None, threads):
        y = K.depthwise_conv1d(x, w, b, s, p, d)
        dy = rand(rng, y.shape)
        dx, dw, db = K.depthwise_conv1d_backward(x, w, dy, s, p, d)
    close(y, R.depthwise_conv1d(*f64(x, w, b), s, p, d), what="y")
    for got, want, what in zip((dx, dw, db), R.depthwise_conv1d_backward(*f64(x, w, dy), s, p, d),
                               ("dx", "dw", "db")):
        close(got, want, what=what)


@pytest.mark.parametrize("shape,k,s,p", [((4, 28, 28, 96), 3, 1, "same"), ((2, 29, 27, 48), 3, 2, "same"),
                                         ((3, 14, 14, 40), 5, 2, "same"), ((2, 9, 9, 1152), 3, 1, "same"),
                                         ((2, 11, 10, 24), 7, 1, "valid")])
def test_mobilenet_shapes(rng, isa, shape, k, s, p):
    """The layer shapes of MobileNet / EfficientNet (channel counts with and without tails)."""
    x, w, b = rand(rng, shape), rand(rng, (k, k, shape[3], 1)), rand(rng, shape[3])
    with setting(isa):
        y = K.depthwise_conv2d(x, w, b, s, p)
        dy = rand(rng, y.shape)
        got = K.depthwise_conv2d_backward(x, w, dy, s, p)
    close(y, R.depthwise_conv2d(*f64(x, w, b), s, p), what="y")
    for g, want, what in zip(got, R.depthwise_conv2d_backward(*f64(x, w, dy), s, p), ("dx", "dw", "db")):
        close(g, want, what=what)


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("m", [1, 2])
def test_results_do_not_depend_on_the_thread_count(rng, isa, m):
    """Bit for bit: forward and dx rows are each written by one thread, dw sums a chunk grid
    fixed by the shape in chunk order."""
    x, w, b = rand(rng, (3, 17, 15, 40)), rand(rng, (3, 3, 40, m)), rand(rng, 40 * m)
    dy = rand(rng, (3, 9, 8, 40 * m))
    results = []
    for threads in (1, 2, 3, 4):
        with setting(isa, threads):
            y = K.depthwise_conv2d(x, w, b, 2, "same")
            results.append((y, *K.depthwise_conv2d_backward(x, w, dy, 2, "same")))
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


def test_weight_gradient_sums_a_fixed_chunk_grid_in_order():
    """Row sums 1, 2**60, -2**60 of one weight: summed left to right they give 0, but 1 if the
    last two were summed first (a partial per thread, or a grid that follows the thread count
    would do that): the result must be the same for every thread count."""
    x = np.ones((3, 1, 256, 1), np.float32)                 # 3 rows of 256 pixels: 3 chunks
    dy = np.empty((3, 1, 256, 1), np.float32)
    dy[0], dy[1], dy[2] = 1 / 256, 2.0 ** 52, -2.0 ** 52    # exact row sums 1, 2**60, -2**60
    assert K.chunks(3, 256) == 3
    w = np.ones((1, 1, 1, 1), np.float32)
    got = set()
    for threads in (1, 2, 3):
        with setting(threads=threads):
            _, dw, db = K.depthwise_conv2d_backward(x, w, dy, need_dx=False)
        got.add((float(dw[0, 0, 0, 0]), float(db[0])))
    assert len(got) == 1, got


def test_a_forked_child_runs_without_hanging(rng):
    """GNU OpenMP hangs a forked child's first team once the parent used one: the kernels run
    on one thread after a fork, with the same bits."""
    x, w = rand(rng, (4, 9, 9, 16)), rand(rng, (3, 3, 16, 1))
    with setting(threads=2):
        want = K.depthwise_conv2d(x, w, None, 1, "same")     # the parent's OpenMP team exists now
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(K.depthwise_conv2d(x, w, None, 1, "same"), want)
            os._exit(0 if ok else 1)
    import signal
    import time

    deadline = time.monotonic() + 60
    while True:                           # a hung child must fail the test, not hang it
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("depthwise_conv2d hung in a forked child")
        time.sleep(0.05)
    assert os.WEXITSTATUS(status) == 0


def test_flavours_agree(rng, isa):
    """The flavour in force and the ones below it (selected per call) agree to rounding."""
    x, w = rand(rng, (2, 12, 13, 37)), rand(rng, (3, 3, 37, 2))
    dy = rand(rng, (2, 12, 13, 74))
    outs = []
    for isa in range(isa + 1):
        with setting(isa):
            outs.append((K.depthwise_conv2d(x, w, None, 1, "same"),
                         *K.depthwise_conv2d_backward(x, w, dy, 1, "same")))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            close(a, b.astype(np.float64))


def test_fastnn_isa_switch_forces_the_flavour():
    """fastnn.kernels.isa (FASTNN_ISA, set_isa) moves the depthwise kernels with the others."""
    from fastnn.kernels import isa

    for name in isa.supported():
        with isa.forced(name):
            assert K._isa() == isa.FLAVOURS.index(name)
    code = "from fastnn.kernels import depthwise as K; print(K._isa())"
    for name in isa.supported():
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTNN_ISA": name},
                             capture_output=True, text=True, check=True, cwd="/")
        assert out.stdout.strip() == str(isa.FLAVOURS.index(name))
    bad = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTNN_ISA": "sse9"},
                         capture_output=True, text=True, cwd="/")
    assert bad.returncode != 0 and "unknown instruction-set flavour" in bad.stderr


def test_a_flavour_above_the_module_flavour_is_refused(rng):
    from fastnn.kernels import isa

    if len(isa.supported()) < 2:
        pytest.skip("one flavour only on this CPU")
    x, w = rand(rng, (1, 4, 4, 8)), rand(rng, (3, 3, 8, 1))
    with isa.forced(isa.supported()[-1]), setting(isa=isa.FLAVOURS.index(isa.supported()[0])):
        with pytest.raises(ValueError, match="above this module's flavour"):
            K.depthwise_conv2d(x, w)


# ---------------------------------------------------------------- numerical gradients

GRAD_CASES = [
    ("2d", (2, 5, 6, 3), (3, 3, 3, 1), (1, 1), "same", (1, 1)),
    ("2d", (1, 7, 6, 2), (3, 2, 2, 2), (2, 2), "same", (1, 1)),
    ("2d", (2, 6, 6, 2), (2, 2, 2, 1), (1, 1), "valid", (2, 2)),
    ("2d", (1, 5, 5, 3), (3, 3, 3, 2), (3, 2), ((2, 1), (0, 2)), (1, 1)),
    ("1d", (2, 7, 3), (3, 3, 2), 1, "causal", 2),
    ("1d", (2, 8, 2), (4, 2, 1), 2, "same", 1),
]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_numerically(rng, numgrad, case):
    kind, xs, ws, s, p, d = case
    fwd, bwd = (R.depthwise_conv2d, R.depthwise_conv2d_backward) if kind == "2d" else \
        (R.depthwise_conv1d, R.depthwise_conv1d_backward)
    kbwd = K.depthwise_conv2d_backward if kind == "2d" else K.depthwise_conv1d_backward
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[-2] * ws[-1])
    g = rng.standard_normal(fwd(x, w, b, s, p, d).shape)        # L = sum(y * g)

    def loss():
        return float(np.sum(fwd(x, w, b, s, p, d) * g))

    num = [numgrad(loss, a) for a in (x, w, b)]
    for n_, a_ in zip(num, bwd(x, w, g, s, p, d)):    # the float64 reference, up to the FD error
        np.testing.assert_allclose(a_, n_, rtol=1e-6, atol=1e-7)
    got = kbwd(*(a.astype(np.float32) for a in (x, w, g)), s, p, d)
    for n_, k_ in zip(num, got):                      # the float32 kernel, to float32 accuracy
        np.testing.assert_allclose(k_, n_, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- epilogue, groups, buffers

def test_fused_relu_is_bit_identical_and_other_activations_apply(rng, isa):
    x, w, b = rand(rng, (2, 9, 9, 21)), rand(rng, (3, 3, 21, 1)), rand(rng, 21)
    x[0, 0, 0, :3] = [np.nan, -np.inf, np.inf]
    with setting(isa), np.errstate(invalid="ignore"):
        z = K.depthwise_conv2d(x, w, b, 1, "same")
        np.testing.assert_array_equal(K.depthwise_conv2d(x, w, b, 1, "same", activation="relu"),
                                      A.apply("relu", z))
        np.testing.assert_array_equal(K.depthwise_conv2d(x, w, b, 1, "same", activation="relu6"),
                                      A.apply("relu6", z))


def test_grouped_conv_with_groups_equal_channels_is_depthwise(rng):
    """Conv2D(groups=C) with kernel (KH, KW, 1, C*M) runs the depthwise kernel on the same memory."""
    x, w, b = rand(rng, (2, 8, 8, 6)), rand(rng, (3, 3, 1, 12)), rand(rng, 12)
    y = C.conv2d(x, w, b, 1, "same", groups=6)
    np.testing.assert_array_equal(y, K.depthwise_conv2d(x, w.reshape(3, 3, 6, 2), b, 1, "same"))
    dy = rand(rng, y.shape)
    dx, dw, db = C.conv2d_backward(x, w, dy, 1, "same", groups=6)
    kx, kw, kb = K.depthwise_conv2d_backward(x, w.reshape(3, 3, 6, 2), dy, 1, "same")
    np.testing.assert_array_equal(dx, kx)
    np.testing.assert_array_equal(dw.reshape(kw.shape), kw)
    np.testing.assert_array_equal(db, kb)


def test_out_buffers_used_overwritten_and_read_only_inputs(rng):
    x, w, b = rand(rng, (2, 6, 6, 5)), rand(rng, (3, 3, 5, 2)), rand(rng, 10)
    dy = rand(rng, (2, 6, 6, 10))
    for a in (x, w, b, dy):
        a.setflags(write=False)
    out = np.full((2, 6, 6, 10), 7.0, np.float32)
    y = K.depthwise_conv2d(x, w, b, 1, "same", out=out)
    assert y is out
    close(y, R.depthwise_conv2d(*f64(x, w, b), 1, "same"))
    dx, dw, db = np.full_like(x, 5), np.full_like(w, 5), np.full(10, 5, np.float32)
    got = K.depthwise_conv2d_backward(x, w, dy, 1, "same", dx=dx, dw=dw, db=db)
    assert got[0] is dx and got[1] is dw and got[2] is db
    for g, want in zip(got, R.depthwise_conv2d_backward(*f64(x, w, dy), 1, "same")):
        close(g, want)                         # written, not accumulated


def test_workspace_reused_between_calls(rng):
    x, w = rand(rng, (2, 8, 8, 6)), rand(rng, (3, 3, 6, 2))
    dy = rand(rng, (2, 8, 8, 12))
    K.depthwise_conv2d_backward(x, w, dy, 1, "same")
    before = K._workspace("dw_parts", 1, np.float64).base
    K.depthwise_conv2d(x, w, None, 1, "same")
    K.depthwise_conv2d_backward(x, w, dy, 1, "same")
    assert K._workspace("dw_parts", 1, np.float64).base is before


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_propagate(rng, bad):
    x, w = rand(rng, (1, 7, 7, 3)), rand(rng, (3, 3, 3, 1))
    x[0, 3, 3, 1] = bad
    y = K.depthwise_conv2d(x, w, None, 1, "valid")
    assert not np.isfinite(y[0, 1:4, 1:4, 1]).any()            # the windows that read the pixel
    assert np.isfinite(y[..., [0, 2]]).all() and np.isfinite(y[0, 0, 0]).all()   # no others
    dy = rand(rng, y.shape)
    _, dw, db = K.depthwise_conv2d_backward(x, w, dy, 1, "valid")
    assert not np.isfinite(dw[..., 1, 0]).all() and np.isfinite(dw[..., [0, 2], 0]).all()
    dy[0, 2, 2, 0] = bad
    dx, _, db = K.depthwise_conv2d_backward(x, w, dy, 1, "valid")
    assert not np.isfinite(dx[0, 2:5, 2:5, 0]).all() and np.isfinite(dx[..., 1:]).all()
    assert not np.isfinite(db[0]) and np.isfinite(db[1:]).all()


def test_nan_weight_poisons_padded_border_as_zero_padding_does(rng):
    """Padded taps are multiplied as zeros (0 * NaN = NaN), as the zero-padded reference."""
    x, w = rand(rng, (1, 5, 5, 2)), rand(rng, (3, 3, 2, 1))
    w[0, 0, 0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        y = K.depthwise_conv2d(x, w, None, 1, "same")
        ref = R.depthwise_conv2d(*f64(x, w), None, 1, "same")
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y[..., 0]).all() and not np.isnan(y[..., 1]).any()


def test_empty_batch_and_zero_sized_output():
    x, w = np.zeros((0, 5, 5, 2), np.float32), np.ones((3, 3, 2, 2), np.float32)
    assert K.depthwise_conv2d(x, w, None, 1, "same").shape == (0, 5, 5, 4)
    dx, dw, db = K.depthwise_conv2d_backward(x, w, np.zeros((0, 5, 5, 4), np.float32), 1, "same")
    assert dx.shape == x.shape and not dw.any() and not db.any()


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("call,err,match", [
    (lambda x, w: K.depthwise_conv2d(x.astype(np.float64), w), TypeError, "x must have dtype float32"),
    (lambda x, w: K.depthwise_conv2d(x[0], w), ValueError, "x must have 4 dimensions"),
    (lambda x, w: K.depthwise_conv2d(x, np.ascontiguousarray(w[:, :, :2])), ValueError, "w has 2 input channels"),
    (lambda x, w: K.depthwise_conv2d(x, w, np.zeros(5, np.float32)), ValueError, "b must have shape"),
    (lambda x, w: K.depthwise_conv2d(x, w, strides=0), ValueError, "strides must be >= 1"),
    (lambda x, w: K.depthwise_conv2d(x, w, padding="causal"), ValueError, "only defined for depthwise_conv1d"),
    (lambda x, w: K.depthwise_conv2d(x, w, padding="full"), ValueError, "padding"),
    (lambda x, w: K.depthwise_conv2d(np.ascontiguousarray(x[:, :2, :2]), w), ValueError, "larger than the padded input"),
    (lambda x, w: K.depthwise_conv2d(x, w, out=np.zeros((2, 3, 3, 5), np.float32)), ValueError, "out must have"),
    (lambda x, w: K.depthwise_conv2d(x, np.zeros((17, 17, 3, 1), np.float32), padding="same"), ValueError,
     "at most 256"),
    (lambda x, w: K.depthwise_conv2d(x, w, activation="nope"), ValueError, "unknown activation"),
    (lambda x, w: K.depthwise_conv2d_backward(x, w, np.zeros((2, 4, 4, 6), np.float32)), ValueError,
     "dy must have the forward output's shape"),
    (lambda x, w: K.depthwise_conv2d_backward(x, w, np.zeros((2, 3, 3, 6), np.float32), need_dx=1), TypeError,
     "need_dx must be True or False"),
    (lambda x, w: K.depthwise_conv2d_backward(x, w, np.zeros((2, 3, 3, 6), np.float32), dx=x), ValueError,
     "dx must not share memory with x"),
    (lambda x, w: K.depthwise_conv1d(np.ascontiguousarray(x[:, 0]), w[0], padding="bad"), ValueError, "padding"),
])
def test_validation(call, err, match):
    x, w = np.zeros((2, 5, 5, 3), np.float32), np.zeros((3, 3, 3, 2), np.float32)
    with pytest.raises(err, match=match):
        call(x, w)
