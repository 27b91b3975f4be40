"""fastnn.kernels.rnn against the step-by-step NumPy reference (float64), the reference against
numerical differentiation, thread-count independence, every ISA flavour, and the bad inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastnn._kernels import rnn as _k
from fastnn.kernels import rnn, threads
from fastnn.reference import rnn as ref

ISAS = [i for i in (0, 1, 2) if _k.isa_ok(i)]
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# float32 kernel vs float64 oracle, relative to the largest magnitude of each result; measured
# up to 6e-7 over the shapes below (sequences of <= 12 steps), so 2e-5 leaves room for longer
# hypothesis draws without hiding a wrong gate (errors then are O(1e-1))
RTOL = 2e-5


@pytest.fixture(params=ISAS, ids=lambda i: f"isa{i}")
def isa(request):
    old = rnn.ISA
    rnn.ISA = request.param
    yield request.param
    rnn.ISA = old


def _problem(rng, cell, n, t, d, u, reset_after=True, masked=False, dropout=False, states=True,
             gain=1.0):
    G = GATES[cell]
    p = dict(
        x=rng.standard_normal((n, t, d)).astype(np.float32),
        # scaled as the initializers do (spectral radius ~1): an exploding relu RNN would
        # amplify float32 rounding past any fixed tolerance
        kernel=(gain * rng.standard_normal((d, G * u)) / np.sqrt(d)).astype(np.float32),
        recurrent_kernel=(gain * rng.standard_normal((u, G * u)) / np.sqrt(u)).astype(np.float32),
        bias=(rng.standard_normal((2, G * u) if cell == "gru" and reset_after else (G * u,)) * 0.3
              ).astype(np.float32),
    )
    if states:
        p["h0"] = rng.standard_normal((n, u)).astype(np.float32)
        if cell == "lstm":
            p["c0"] = rng.standard_normal((n, u)).astype(np.float32)
    if masked:
        p["mask"] = rng.random((n, t)) > 0.35
    if dropout:
        p["input_mask"] = ((rng.random((G, n, d)) > 0.3) / 0.7).astype(np.float32)
        p["recurrent_mask"] = ((rng.random((n, G, u)) > 0.3) / 0.7).astype(np.float32)
    return p


def _f64(p):
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v)
            for k, v in p.items()}


def _grads(rng, cell, y, h):
    g = dict(dy=rng.standard_normal(y.shape).astype(np.float32),
             dy_last=rng.standard_normal(h.shape).astype(np.float32),
             dh=rng.standard_normal(h.shape).astype(np.float32))
    if cell == "lstm":
        g["dc"] = rng.standard_normal(h.shape).astype(np.float32)
    return g


def _close(a, b, name, rtol=None):
    # relative to the result's scale, floored at 1e-3 (the inputs and upstream gradients are
    # O(1)): a saturated tanh makes 1 - h^2 tiny, and float32's h then leaves it a few 1e-5
    # relative off the float64 oracle (measured 4.8e-5 at n = t = d = u = 1); wrong maths is
    # off by O(1e-1) of the O(1) scale
    scale = max(np.abs(b).max(), 1e-3)
    err = np.abs(a.astype(np.float64) - b).max() / scale
    assert err < (rtol or RTOL), f"{name}: relative error {err:.2e}"


def _check(p, cell, reset_after=True, rtol=None, **opts):
    rng = np.random.default_rng(7)
    y, h, c, cache = rnn.forward(cell, **p, reset_after=reset_after, training=True, **opts)
    yr, hr, cr, cref = ref.forward(cell, **_f64(p), reset_after=reset_after, training=True, **opts)
    _close(y, yr, "y", rtol)
    _close(h, hr, "h", rtol)
    if cell == "lstm":
        _close(c, cr, "c", rtol)
    g = _grads(rng, cell, y, h)
    got = rnn.backward(cache, **g)
    want = ref.backward(cref, **_f64(g))
    for name, a, b in zip(("dx", "dkernel", "drecurrent", "dbias", "dh0", "dc0"), got, want):
        if b is not None:
            _close(a, b, name, rtol)


@pytest.mark.parametrize("cell,reset_after", [("simple_rnn", True), ("lstm", True), ("gru", True),
                                              ("gru", False)])
@pytest.mark.parametrize("masked,go_backwards,zero", [(False, False, False), (True, False, False),
                                                      (True, True, False), (True, False, True)])
def test_matches_reference(isa, cell, reset_after, masked, go_backwards, zero):
    rng = np.random.default_rng(3)
    p = _problem(rng, cell, 13, 6, 5, 19, reset_after, masked=masked)
    _check(p, cell, reset_after, go_backwards=go_backwards, zero_output_for_mask=zero)


@pytest.mark.parametrize("cell,reset_after", [("simple_rnn", True), ("lstm", True), ("gru", True),
                                              ("gru", False)])
def test_dropout_masks_match_reference(isa, cell, reset_after):
    rng = np.random.default_rng(4)
    p = _problem(rng, cell, 9, 5, 4, 11, reset_after, masked=True, dropout=True)
    _check(p, cell, reset_after)


@given(cell=st.sampled_from(["simple_rnn", "lstm", "gru", "gru_before"]), n=st.integers(1, 30),
       t=st.integers(1, 12), d=st.integers(1, 9), u=st.integers(1, 40), masked=st.booleans(),
       go=st.booleans(), states=st.booleans(), seed=st.integers(0, 2**16),
       act=st.sampled_from(["tanh", "relu", "sigmoid"]),
       rec=st.sampled_from(["sigmoid", "hard_sigmoid"]))
def test_hypothesis_shapes(cell, n, t, d, u, masked, go, states, seed, act, rec):
    rng = np.random.default_rng(seed)
    reset_after = cell != "gru_before"
    cell = "gru" if cell == "gru_before" else cell
    # gain 0.5: pre-activations of moderate size (with one unit and a gain of 1 a tanh chain
    # saturates, and 1 - h^2 in float32 is then off by 1e-4 - 1e-3 relative: conditioning,
    # not the kernel; the fixed-shape tests above use gain 1)
    # and 1e-4: one-unit chains of 10+ steps compound float32 rounding (measured 2.5e-5 in 500
    # draws); a wrong gate is still off by O(1e-1)
    p = _problem(rng, cell, n, t, d, u, reset_after, masked=masked, states=states, gain=0.5)
    _check(p, cell, reset_after, rtol=1e-4, go_backwards=go, activation=act, recurrent_activation=rec)


@pytest.mark.parametrize("cell,reset_after", [("simple_rnn", True), ("lstm", True), ("gru", True),
                                              ("gru", False)])
def test_reference_gradient_is_numerical(cell, reset_after):
    """The oracle's backward against central differences of its forward (float64)."""
    rng = np.random.default_rng(5)
    p = _f64(_problem(rng, cell, 3, 4, 2, 3, reset_after, masked=True, dropout=True))
    p["mask"][:, 0] = True
    w = {k: rng.standard_normal(s) for k, s in (("y", (3, 4, 3)), ("h", (3, 3)))}

    def loss(q):
        y, h, c, _ = ref.forward(cell, **q, reset_after=reset_after)
        return float((y * w["y"]).sum() + (h * w["h"]).sum())

    _, _, _, cache = ref.forward(cell, **p, reset_after=reset_after, training=True)
    dx, dw, du, db, dh0, _ = ref.backward(cache, dy=w["y"], dh=w["h"])
    eps = 1e-6
    for name, grad in (("x", dx), ("kernel", dw), ("recurrent_kernel", du), ("bias", db), ("h0", dh0)):
        arr = p[name]
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(6)]:
            old = arr[idx]
            arr[idx] = old + eps
            lp = loss(p)
            arr[idx] = old - eps
            lm = loss(p)
            arr[idx] = old
            num = (lp - lm) / (2 * eps)
            assert abs(num - grad[idx]) < 1e-6 * max(1.0, abs(num)), (name, idx, num, grad[idx])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_results_do_not_depend_on_thread_count(isa, cell):
    rng = np.random.default_rng(8)
    p = _problem(rng, cell, 67, 9, 16, 48, masked=True)
    outs = []
    for n in (1, 2, 3):
        with _num_threads(n):
            y, h, c, cache = rnn.forward(cell, **p, training=True)
            g = rnn.backward(cache, dy=np.ones_like(y))
            outs.append([y.copy(), h.copy()] + [a.copy() for a in g if a is not None])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


class _num_threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = threads.get_num_threads()
        threads.set_num_threads(self.n)

    def __exit__(self, *exc):
        threads.set_num_threads(self.old)


def test_flavours_agree():
    """Every flavour against the portable one: the same maths, FMA rounding apart."""
    rng = np.random.default_rng(9)
    p = _problem(rng, "lstm", 20, 7, 6, 37)
    res = {}
    for isa in ISAS:
        old, rnn.ISA = rnn.ISA, isa
        try:
            res[isa] = rnn.forward("lstm", **p)[0].copy()
        finally:
            rnn.ISA = old
    for isa in ISAS[1:]:
        np.testing.assert_allclose(res[isa], res[0], rtol=0, atol=2e-6)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (13, 7, 33), (12, 64, 256), (25, 128, 40)])
def test_packed_gemm(isa, m, k, n):
    rng = np.random.default_rng(m * 100 + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    want = c.astype(np.float64) + a.astype(np.float64) @ b
    bp = np.empty(_k.packed_size(isa, k, n), np.float32)
    _k.gemm(isa, a, b, c, True, bp)
    np.testing.assert_allclose(c, want, rtol=0, atol=2e-5 * np.sqrt(k))
    _k.gemm(isa, a, b.T.copy().T, c, False, bp)     # strided B, overwrite
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=0, atol=2e-5 * np.sqrt(k))
    # a row gives the same bits alone as inside a block (thread-count independence)
    c1 = np.empty((1, n), np.float32)
    _k.gemm(isa, a[-1:].copy(), b, c1, False, bp)
    np.testing.assert_array_equal(c1[0], c[-1])


def test_bidirectional_matches_two_calls():
    rng = np.random.default_rng(10)
    p = _problem(rng, "lstm", 11, 8, 5, 16, masked=True)
    q = _problem(rng, "lstm", 11, 8, 5, 16)
    q["x"], q["mask"] = p["x"], p["mask"]
    (yf, hf, cf, kf), (yb, hb, cb, kb) = rnn.bidirectional_forward(
        dict(cell="lstm", **p, training=True), dict(cell="lstm", **q, go_backwards=True, training=True))
    y1, h1, c1, k1 = rnn.forward("lstm", **p, training=True)
    y2, h2, c2, k2 = rnn.forward("lstm", **q, go_backwards=True, training=True)
    np.testing.assert_array_equal(yf, y1)
    np.testing.assert_array_equal(yb, y2)
    dy = rng.standard_normal(yf.shape).astype(np.float32)
    g = rnn.bidirectional_backward(kf, kb, {"dy": dy}, {"dy": dy})
    g1 = rnn.backward(k1, dy=dy)
    g2 = rnn.backward(k2, dy=dy)
    for a, b in zip(g[0] + g[1], g1 + g2):
        if b is not None:
            np.testing.assert_array_equal(a, b)


def test_embedding_matches_reference(rng):
    table = rng.standard_normal((50, 7)).astype(np.float32)
    ids = rng.integers(0, 50, size=(6, 9)).astype(np.int32)
    np.testing.assert_array_equal(rnn.embedding(ids, table), ref.embedding(ids, table))
    dout = rng.standard_normal((6, 9, 7)).astype(np.float32)
    np.testing.assert_allclose(rnn.embedding_backward(ids, dout, 50),
                               ref.embedding_backward(ids, dout, 50), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------- bad inputs

def test_bad_id_names_id_and_layer(rng):
    table = rng.standard_normal((10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"token id 10 at index \(1, 2\).*layer 'emb'.*input_dim=10"):
        rnn.embedding(np.array([[1, 2, 3], [4, 5, 10]]), table, layer="emb")
    with pytest.raises(ValueError, match="token id -1"):
        rnn.embedding(np.array([-1, 2]), table)
    with pytest.raises(TypeError, match="integer token ids"):
        rnn.embedding(np.array([0.5, 2.0]), table)


def test_bad_shapes_are_named_errors(rng):
    p = _problem(rng, "lstm", 4, 5, 3, 6, masked=True)
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        rnn.forward("lstm", **{**p, "x": p["x"][0]})
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(4, 5\)"):
        rnn.forward("lstm", **{**p, "mask": p["mask"][:, :4]})
    with pytest.raises(TypeError, match="mask must be a bool or uint8"):
        rnn.forward("lstm", **{**p, "mask": p["mask"].astype(np.float32)})
    with pytest.raises(ValueError, match="recurrent_kernel must have shape"):
        rnn.forward("lstm", **{**p, "recurrent_kernel": p["recurrent_kernel"][:, :-1].copy()})
    with pytest.raises(ValueError, match="kernel must have shape"):
        rnn.forward("lstm", **{**p, "kernel": p["kernel"][:-1].copy()})
    with pytest.raises(TypeError, match="x must have dtype float32"):
        rnn.forward("lstm", **{**p, "x": p["x"].astype(np.float64)})
    with pytest.raises(ValueError, match="cell must be one of"):
        rnn.forward("rnn", **p)
    with pytest.raises(ValueError, match="cache must be"):
        rnn.backward(None)
    _, _, _, cache = rnn.forward("lstm", **p, training=True)
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 5, 6\)"):
        rnn.backward(cache, dy=np.zeros((4, 5, 5), np.float32))
