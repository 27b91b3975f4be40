"""Fuzzing fastnn.kernels.loss: the four fused crossentropies, valid and spoiled arguments."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import loss as K
from fastnn.reference import loss as R

# float32 kernel vs float64 reference (tests/kernels/test_loss.py: 2e-6 on values, 1e-5 /
# 2e-7 on gradients of order one); logits in [-8, 8] here and up to 2,500 classes
TOL = dict(rtol=1e-5, atol=2e-6)
# values with from_logits=False: kernel and reference both log clipped float32 probabilities,
# in other orders (log(1 - p) near p = 1 cancels); measured 1.15e-5 relative
VALUE_TOL = dict(rtol=4e-5, atol=2e-6)
# the categorical gradient with from_logits=False over 2,500 classes (p * (g - sum(p g)), g =
# -y/q large near the clip) cancels: measured 2.6e-6 absolute with label_smoothing=1
WIDE_GRAD_TOL = dict(rtol=1e-5, atol=1e-5)
FLAG_JUNK = [None, 0, 1, "yes", 1.0, np.bool_(False)]
SMOOTH_JUNK = F.JUNK + [0.0, 1.0, 1.5, -0.1, np.float32(0.2), "0.1"]


@st.composite
def logits(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    if draw(st.integers(0, 9)) == 0:
        lead, k = (14,), 2500                                   # over PARALLEL_MIN
    else:
        lead = tuple(draw(st.integers(0, 5)) for _ in range(draw(st.integers(1, 2))))
        k = draw(st.sampled_from([1, 2, 3, 10, 17]))
    z = F.values(rng, lead + (k,), special=draw(st.integers(0, 3)) == 0, low=-8, high=8)
    return rng, z


def _labels(draw, rng, shape, sparse):
    k = shape[-1]
    if sparse:
        y = rng.integers(0, k, shape[:-1])
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int16]))
        y = y.astype(dtype)
        if draw(st.booleans()):
            y = y[..., None]              # (N, 1) labels, as Keras accepts
        bad = [y.astype(np.int64) - k, y.astype(np.int64) + k, y.astype(np.float32),
               np.full(y.shape, -1, np.int64)]
        return y, bad
    kind = draw(st.sampled_from(["onehot", "probs", "bool", "int"]))
    if kind in ("onehot", "bool", "int"):
        y = (rng.integers(0, k, shape[:-1] + (1,)) == np.arange(k)).astype(np.float32)
        y = y.astype({"onehot": np.float32, "bool": np.bool_, "int": np.int32}[kind])
    else:   # probabilities summing to one (unnormalised rows of 40,000 would scale the
        #     gradient's rounding error by their sum)
        y = rng.random(shape)
        y = (y / np.maximum(y.sum(axis=-1, keepdims=True), 1e-30)).astype(
            draw(st.sampled_from([np.float32, np.float64])))
    return y, [y[..., :-1], y.astype(object), y.astype(np.complex64)]


def _z(kw):
    """The logits for the reference: Keras clips probabilities at float32(1 - 1e-7) and logs in
    float32 when from_logits=False, so the reference runs in float32 there (test_loss.py too)."""
    return kw["z"] if kw["from_logits"] else kw["z"].astype(np.float32)


def _at_the_clip(kw):
    """With from_logits=False the gradient is cut where q = p / sum(p) is clipped to
    [1e-7, 1 - 1e-7]; within a factor 2 of those bounds the float32 q of the kernel and the
    float64 q of the reference may fall on either side (seen with 2,500 classes and more)."""
    p = np.asarray(kw["probs"], np.float64)
    if kw["from_logits"] is not False and kw["from_logits"] is not np.False_ or p.ndim < 1:
        return np.zeros(p.shape, bool)
    with np.errstate(all="ignore"):
        q = p / p.sum(axis=-1, keepdims=True)
        return ((q > 0.5e-7) & (q < 2e-7)) | ((1 - q > 0.5e-7) & (1 - q < 2e-7))


def _minus_inf_rows(kw):
    """Samples with a -inf logit, from_logits=True: Keras's formula multiplies the labels into
    log_softmax, 0 * -inf = NaN, where the kernel returns the finite limit (-log p of the label
    class alone). Left out of the comparison: a known, documented difference."""
    z = np.asarray(kw["z"], np.float64)
    if kw["from_logits"] is not True or z.ndim < 1:
        return np.zeros(z.shape[:-1], bool)
    return np.isneginf(z).any(axis=-1)


def _softmax_rows(rng, shape):
    """Rows of softmax(z) for random logits: a resized probs that still keeps the backward's
    contract (probs = softmax(z): rows in [0, 1] that sum to one)."""
    z = rng.standard_normal(shape)
    e = np.exp(z - (z.max(axis=-1, keepdims=True) if z.size else 0))
    return e / np.maximum(e.sum(axis=-1, keepdims=True), 1e-300)


def _ref_scale(kw):
    """The kernel takes one scale per sample, flat (n,); the reference one of the lead shape."""
    s = kw["scale"]
    return s.reshape(kw["probs"].shape[:-1]) if isinstance(s, np.ndarray) and s.ndim == 1 else s


def _scale(draw, rng, n):
    kind = draw(st.sampled_from(["none", "number", "array", "array64"]))
    if kind == "none":
        return None
    if kind == "number":
        return draw(st.sampled_from([0.5, 1, np.float32(0.25), np.array(2.0)]))
    return rng.random(n).astype(np.float32 if kind == "array" else np.float64)


def _scale_junk(n):
    return F.JUNK + [np.ones(n + 1, np.float32), np.ones((n, 1), np.float32), np.ones(n, object),
                     np.ones(n, np.complex64), "1", [1.0] * n]


@st.composite
def softmax_call(draw):
    rng, z = draw(logits())
    sparse = draw(st.booleans())
    y, bad_y = _labels(draw, rng, z.shape, sparse)
    from_logits = draw(st.booleans())
    ls = draw(st.sampled_from([0.0, 0.1, 1.0]))
    return F.Call(K.softmax_crossentropy,
                  dict(z=z, y=y, sparse=sparse, from_logits=from_logits, label_smoothing=ls,
                       probs=None, out=None),
                  lambda kw: R.softmax_crossentropy(_z(kw), kw["y"], sparse=kw["sparse"],
                                                    from_logits=kw["from_logits"],
                                                    label_smoothing=kw["label_smoothing"]),
                  inputs=("z", "y"), outs={"out": 0, "probs": 1}, ignore=_minus_inf_rows,
                  params={"y": bad_y, "sparse": FLAG_JUNK, "from_logits": FLAG_JUNK,
                          "label_smoothing": SMOOTH_JUNK},
                  nonfinite="loose", label=f"softmax_crossentropy(sparse={sparse})", **VALUE_TOL)


@st.composite
def softmax_backward_call(draw):
    rng, z = draw(logits())
    sparse = draw(st.booleans())
    y, bad_y = _labels(draw, rng, z.shape, sparse)
    from_logits = draw(st.booleans())
    ls = draw(st.sampled_from([0.0, 0.1, 1.0]))
    _, probs = K.softmax_crossentropy(z, y, sparse=sparse, from_logits=from_logits, label_smoothing=ls)
    n = int(np.prod(z.shape[:-1]))
    scale = _scale(draw, rng, n)
    return F.Call(K.softmax_crossentropy_backward,
                  dict(probs=probs, y=y, sparse=sparse, from_logits=from_logits, label_smoothing=ls,
                       scale=scale, dz=None),
                  lambda kw: R.softmax_crossentropy_backward(
                      kw["probs"], kw["y"], sparse=kw["sparse"], from_logits=kw["from_logits"],
                      label_smoothing=kw["label_smoothing"], scale=_ref_scale(kw)),
                  inputs=("probs", "y", "scale"), outs={"dz": 0}, inplace=(("dz", "probs"),), scaled=True,
                  ignore=_at_the_clip,
                  # one number for all samples (a 0-d array too) must be finite (a named
                  # ValueError, tests/kernels/test_loss.py); a per-sample array may hold inf/NaN
                  no_special=("scale",) if np.ndim(scale) == 0 else (),
                  resize_values={"probs": _softmax_rows},   # probs = softmax(z), resized or not
                  params={"y": bad_y, "sparse": FLAG_JUNK, "from_logits": FLAG_JUNK,
                          "label_smoothing": SMOOTH_JUNK, "scale": _scale_junk(n)},
                  nonfinite="loose", label=f"softmax_crossentropy_backward(sparse={sparse})",
                  **(WIDE_GRAD_TOL if z.shape[-1] > 1000 else TOL))


@st.composite
def sigmoid_call(draw):
    rng, z = draw(logits())
    y, bad_y = _labels(draw, rng, z.shape, False)
    if z.shape[-1] == 1 and draw(st.booleans()):
        y = y[..., 0]                     # labels (N,) for outputs (N, 1), as Keras accepts
    from_logits = draw(st.booleans())
    ls = draw(st.sampled_from([0.0, 0.1, 1.0]))
    return F.Call(K.sigmoid_binary_crossentropy,
                  dict(z=z, y=y, from_logits=from_logits, label_smoothing=ls, probs=None, out=None),
                  lambda kw: R.sigmoid_binary_crossentropy(_z(kw), kw["y"], from_logits=kw["from_logits"],
                                                           label_smoothing=kw["label_smoothing"]),
                  inputs=("z", "y"), outs={"out": 0, "probs": 1},
                  params={"y": bad_y, "from_logits": FLAG_JUNK, "label_smoothing": SMOOTH_JUNK},
                  nonfinite="loose", label="sigmoid_binary_crossentropy", **VALUE_TOL)


@st.composite
def sigmoid_backward_call(draw):
    rng, z = draw(logits())
    y, bad_y = _labels(draw, rng, z.shape, False)
    from_logits = draw(st.booleans())
    ls = draw(st.sampled_from([0.0, 0.1, 1.0]))
    _, probs = K.sigmoid_binary_crossentropy(z, y, from_logits=from_logits, label_smoothing=ls)
    n = int(np.prod(z.shape[:-1]))
    scale = _scale(draw, rng, n)
    return F.Call(K.sigmoid_binary_crossentropy_backward,
                  dict(probs=probs, y=y, from_logits=from_logits, label_smoothing=ls,
                       scale=scale, dz=None),
                  lambda kw: R.sigmoid_binary_crossentropy_backward(
                      kw["probs"], kw["y"], from_logits=kw["from_logits"],
                      label_smoothing=kw["label_smoothing"], scale=_ref_scale(kw)),
                  inputs=("probs", "y", "scale"), outs={"dz": 0}, inplace=(("dz", "probs"),), scaled=True,
                  no_special=("scale",) if np.ndim(scale) == 0 else (),     # (as softmax's)
                  params={"y": bad_y, "from_logits": FLAG_JUNK, "label_smoothing": SMOOTH_JUNK,
                          "scale": _scale_junk(n)},
                  nonfinite="loose", label="sigmoid_binary_crossentropy_backward", **TOL)


CALLS = {"softmax_crossentropy": softmax_call(), "softmax_crossentropy_backward": softmax_backward_call(),
         "sigmoid_binary_crossentropy": sigmoid_call(),
         "sigmoid_binary_crossentropy_backward": sigmoid_backward_call()}


def test_every_public_function_is_fuzzed():
    assert sorted(CALLS) == sorted(n for n in K.__all__ if n != "PARALLEL_MIN")


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_valid(name, data):
    F.check_valid(data.draw(CALLS[name]))


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_spoiled(name, data):
    F.check_spoiled(data, data.draw(CALLS[name]))
