"""Fuzzing fastnn.kernels.rnn: the recurrent cells forward and backward through time (one and
both directions) and the embedding gather / scatter-add, valid and spoiled arguments (fuzzutil).
backward takes forward's cache, so its fuzzer runs forward(training=True) and then backward
on the same arrays: a spoiled forward argument is judged by forward's checks, a spoiled dy by
backward's."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import rnn as K
from fastnn.reference import rnn as R

# float32 recurrences against the float64 reference, weights in [-0.5, 0.5), <= 6 steps of
# <= 9 units: test_rnn.py's hypothesis draws measure 2.5e-5 relative at 10+ steps
TOL = dict(rtol=1e-4, atol=2e-5, scaled=True)
CELL_JUNK = [None, "LSTM", "rnn", 3, "gru2", ""]
ACT_JUNK = [None, "", "nope", 3, "softmax", "log_softmax"]
FLAG_JUNK = [None, 0, 1, "yes", np.bool_(True)]
# (not fuzzutil's 2**31 / 2**63: a vocabulary that large is valid and its zeroed gradient
# table would take tens of GB)
VOCAB_JUNK = [None, "2", 1.5, -1, True, (), [], object(), np.int64(40), np.float32(2.0), -2**63]
# a NaN or inf input reaches every later step through the recurrent GEMM, where inf * 0 gives
# NaN in one and +-inf in the other order of summation: non-finite where the reference is
NONFINITE = "loose"


def _weights(rng, shape):
    return F.values(rng, shape, low=-0.5, high=0.5)


@st.composite
def _problem(draw, gates_of=None):
    """x, weights and the options of one recurrent call (cell, sizes, mask, activations)."""
    rng = np.random.default_rng(draw(F.seeds()))
    cell = draw(st.sampled_from(K.CELLS))
    G = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    n, t, d, u = (draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(0, 5)),
                  draw(st.integers(1, 9)))
    if draw(st.integers(0, 5)) == 0:
        n = draw(st.integers(20, 40))               # several row blocks, both threads busy
    reset_after = draw(st.booleans())
    masked = draw(st.booleans())
    # (no NaN/inf in x under a mask: a masked step's gradient is 0 in the kernel and 0 * NaN in
    # the textbook chain rule of the reference; documented in docs/internals.md)
    special = draw(st.integers(0, 4)) == 0 and not masked
    kw = dict(cell=cell, x=F.values(rng, (n, t, d), special=special),
              kernel=_weights(rng, (d, G * u)), recurrent_kernel=_weights(rng, (u, G * u)))
    if draw(st.booleans()):
        kw["bias"] = _weights(rng, (2, G * u) if cell == "gru" and reset_after else (G * u,))
    if masked:
        kw["mask"] = rng.random((n, t)) < 0.7
    if draw(st.booleans()):
        kw["h0"] = _weights(rng, (n, u))
        if cell == "lstm":
            kw["c0"] = _weights(rng, (n, u))
    act, rec = draw(st.sampled_from([("tanh", "sigmoid"), ("relu", "hard_sigmoid"),
                                     ("tanh", "tanh"), ("linear", "sigmoid")]))
    kw.update(activation=act, recurrent_activation=rec, go_backwards=draw(st.booleans()),
              zero_output_for_mask=draw(st.booleans()), reset_after=reset_after)
    return kw, rng, (n, t, d, u)


def _no_special(kw):
    return ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0") if "mask" in kw else ()


_ARRAYS = ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0", "mask")
_PARAMS = {"cell": CELL_JUNK, "activation": ACT_JUNK, "recurrent_activation": ACT_JUNK,
           "go_backwards": FLAG_JUNK, "zero_output_for_mask": FLAG_JUNK, "reset_after": FLAG_JUNK}


def _label(kw, what):
    return f"{what}[{kw['cell']}, {kw['activation']}/{kw['recurrent_activation']}]"


@st.composite
def forward_call(draw):
    kw, _, _ = draw(_problem())
    kw["out"] = None
    return F.Call(K.forward, kw, lambda r: R.forward(**r)[:3],
                  inputs=tuple(a for a in _ARRAYS if a in kw), outs={"out": 0},
                  result=lambda kw, ret: ret[:3], params=_PARAMS, nonfinite=NONFINITE, no_special=_no_special(kw),
                  label=_label(kw, "forward"), **TOL)


def _fb(fwd, bwd):
    """forward(training=True) then backward(cache, dy=dy): dx, dkernel, drecurrent, dbias, dh0,
    dc0."""
    def call(dy, need_dx=True, **kw):
        y, h, c, cache = fwd(**kw, training=True)
        return tuple(bwd(cache, dy=dy, need_dx=need_dx))
    call.__name__ = "forward_backward"
    return call


@st.composite
def backward_call(draw):
    kw, rng, (n, t, d, u) = draw(_problem())
    kw["dy"] = F.values(rng, (n, t, u))
    kw["need_dx"] = draw(st.booleans())
    return F.Call(_fb(K.forward, K.backward), kw, lambda r: _fb(R.forward, R.backward)(**r),
                  inputs=tuple(a for a in _ARRAYS + ("dy",) if a in kw),
                  params={**_PARAMS, "need_dx": FLAG_JUNK}, nonfinite=NONFINITE, no_special=_no_special(kw),
                  label=_label(kw, "backward"), **TOL)


def _both(kw):
    fwd = {k: v for k, v in kw.items() if k not in ("dy", "need_dx")}
    return [dict(fwd, go_backwards=False), dict(fwd, go_backwards=True)]


def _bi_forward(**kw):
    kw.pop("go_backwards", None)
    return tuple(a for r in K.bidirectional_forward(*_both(kw)) for a in r[:3])


def _bi_forward_ref(kw):
    kw = dict(kw)
    kw.pop("go_backwards", None)
    return tuple(a for k in _both(kw) for a in R.forward(**k)[:3])


@st.composite
def bidirectional_forward_call(draw):
    kw, _, _ = draw(_problem())
    return F.Call(_bi_forward, kw, _bi_forward_ref,
                  inputs=tuple(a for a in _ARRAYS if a in kw),
                  params={k: v for k, v in _PARAMS.items() if k != "go_backwards"},
                  nonfinite=NONFINITE, no_special=_no_special(kw), label=_label(kw, "bidirectional_forward"), **TOL)


def _bi_backward(**kw):
    dy, need_dx = kw.pop("dy"), kw.pop("need_dx")
    kw.pop("go_backwards", None)
    (_, _, _, cf), (_, _, _, cb) = K.bidirectional_forward(*[dict(k, training=True) for k in _both(kw)])
    g = {"dy": dy, "need_dx": need_dx}
    return tuple(a for r in K.bidirectional_backward(cf, cb, g, dict(g)) for a in r)


def _bi_backward_ref(kw):
    kw = dict(kw)
    dy, need_dx = kw.pop("dy"), kw.pop("need_dx")
    kw.pop("go_backwards", None)
    out = ()
    for k in _both(kw):
        cache = R.forward(**k, training=True)[3]
        out += tuple(R.backward(cache, dy=dy, need_dx=need_dx))
    return out


@st.composite
def bidirectional_backward_call(draw):
    kw, rng, (n, t, d, u) = draw(_problem())
    kw["dy"] = F.values(rng, (n, t, u))
    kw["need_dx"] = draw(st.booleans())
    return F.Call(_bi_backward, kw, _bi_backward_ref,
                  inputs=tuple(a for a in _ARRAYS + ("dy",) if a in kw),
                  params={**{k: v for k, v in _PARAMS.items() if k != "go_backwards"},
                          "need_dx": FLAG_JUNK},
                  nonfinite=NONFINITE, no_special=_no_special(kw), label=_label(kw, "bidirectional_backward"), **TOL)


@st.composite
def _ids(draw, rng, vocab):
    shape = tuple(draw(st.integers(0, 5)) for _ in range(draw(st.integers(1, 3))))
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    return rng.integers(0, vocab, shape).astype(dtype)


@st.composite
def embedding_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    vocab, dim = draw(st.integers(1, 30)), draw(st.integers(0, 9))
    table = F.values(rng, (vocab, dim), special=draw(st.integers(0, 3)) == 0)
    return F.Call(K.embedding, dict(ids=draw(_ids(rng, vocab)), table=table, out=None),
                  lambda r: R.embedding(r["ids"], r["table"]), inputs=("ids", "table"),
                  outs={"out": 0}, label="embedding", rtol=0, atol=0)


@st.composite
def embedding_backward_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    vocab, dim = draw(st.integers(1, 30)), draw(st.integers(0, 9))
    ids = draw(_ids(rng, vocab))
    dout = F.values(rng, ids.shape + (dim,), special=draw(st.integers(0, 3)) == 0)
    # rows added in order in float32 (the reference: np.add.at in float64)
    return F.Call(K.embedding_backward, dict(ids=ids, dout=dout, vocab=vocab, dtable=None),
                  lambda r: R.embedding_backward(r["ids"], r["dout"], r["vocab"]),
                  inputs=("ids", "dout"), outs={"dtable": 0},
                  params={"vocab": VOCAB_JUNK + [0, vocab - 1, vocab + 1]}, nonfinite=NONFINITE,
                  label="embedding_backward", rtol=1e-5, atol=1e-5, scaled=True)


CALLS = {"forward": forward_call(), "backward": backward_call(),
         "bidirectional_forward": bidirectional_forward_call(),
         "bidirectional_backward": bidirectional_backward_call(),
         "embedding": embedding_call(), "embedding_backward": embedding_backward_call()}


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
