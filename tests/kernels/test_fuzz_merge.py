"""Fuzzing fastnn.kernels.merge: element-wise ops, concatenate, batch_dot and l2_normalize with
their backward, valid and spoiled arguments (fuzzutil). The list arguments (xs, dxs) are passed
to the fuzzer entry by entry as "xs[0]", "xs[1]", ..., so each entry is spoiled on its own and
an error must name it (xs[1]). The session fixture of tests/kernels/conftest.py runs it under
every instruction-set flavour."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzutil as F
from fastnn.kernels import merge as K
from fastnn.reference import merge as R

# float32 kernel vs float64 reference on values <= 2: products of <= 4 inputs and sums of
# <= 4 terms (measured <= 4.8e-7 relative); batch_dot sums <= 6 products, l2_normalize's norm
# <= 7 squares (measured <= 6e-7 relative)
TOL = dict(rtol=1e-5, atol=1e-6)
EPS32 = float(np.finfo(np.float32).eps)
OP_JUNK = [None, "", "Add", "sum", "concat", 0, ("add",)]
AXIS_JUNK = F.JUNK + [-5, 5, 1.0, "1", (1,), np.int64(-1)]
AXES_JUNK = F.JUNK + [(1,), (1, 2, 3), (0, 0), (0, 1), (1.0, 1), ("1", 1), (5, 1), (-4, 1), [2, 2], 3]
SIZES_JUNK = [None, 3, "3", [], [-1], [1.5], [2**40], [True], [0, -1], object()]


def _shape(draw, ndim_min=1, ndim_max=3, side=4):
    return tuple(draw(st.integers(0 if draw(st.integers(0, 5)) == 0 else 1, side))
                 for _ in range(draw(st.integers(ndim_min, ndim_max))))


def _broadcastable(draw, shape, k):
    """k shapes: `shape` itself, or (sometimes) with some axes cut to 1 (Keras's broadcast)."""
    if not draw(st.integers(0, 2)) == 0:
        return [shape] * k
    return [tuple(1 if draw(st.integers(0, 2)) == 0 else d for d in shape) for _ in range(k)]


def _listed(fn, names, k, outs=None, m=None):
    """fn(..., xs=[kw['xs[0]'], ...], dxs=[...]) from the entries of kw, returning a tuple."""
    def call(**kw):
        args = {n: v for n, v in kw.items() if "[" not in n}
        if names is not None:
            args[names] = [kw[f"{names}[{i}]"] for i in range(k)]
        if outs is not None:
            given = [kw.get(f"{outs}[{i}]") for i in range(m)]
            if any(g is not None for g in given):
                args[outs] = given
        ret = fn(**args)
        return tuple(ret) if isinstance(ret, list) else ret
    call.__name__ = fn.__name__
    return call


@st.composite
def elementwise_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    op = draw(st.sampled_from(K.OPS))
    k = 2 if op == "subtract" else draw(st.integers(1, 4))
    shapes = _broadcastable(draw, _shape(draw), k)
    # maximum/minimum: no NaN (the reference's Python max/min is not NaN-propagating; the kernel's
    # np.maximum is, as Keras's ops.maximum)
    special = op not in ("maximum", "minimum") and draw(st.integers(0, 3)) == 0
    xs = {f"xs[{i}]": F.values(rng, s, special=special) for i, s in enumerate(shapes)}
    names = tuple(xs)
    return F.Call(_listed(K.elementwise, "xs", k), dict(op=op, **xs, out=None),
                  lambda r: R.elementwise(r["op"], [r[n] for n in names]),
                  inputs=names, outs={"out": 0}, inplace=(("out", "xs[0]"),),
                  no_special=names if op in ("maximum", "minimum") else (),
                  params={"op": OP_JUNK}, label=f"elementwise({op}, k={k})", **TOL)


@st.composite
def elementwise_backward_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    op = draw(st.sampled_from(K.OPS))
    k = 2 if op == "subtract" else draw(st.integers(1, 4))
    shapes = _broadcastable(draw, _shape(draw), k)
    special = op not in ("maximum", "minimum") and draw(st.integers(0, 3)) == 0
    xl = [F.values(rng, s, special=special) for s in shapes]
    if op in ("maximum", "minimum") and draw(st.booleans()) and k > 1 and shapes[1] == shapes[0]:
        xl[1][...] = xl[0]                              # ties: the first input takes the gradient
    shape = K.broadcast_shape(shapes)
    same = all(s == shape for s in shapes)
    xs = {f"xs[{i}]": x for i, x in enumerate(xl)}
    names = tuple(xs)
    y = K.elementwise(op, xl)
    dy = F.values(rng, shape, special=special)
    outs = {} if op == "add" and same else {f"dxs[{i}]": i for i in range(k)}   # add: dy itself
    return F.Call(_listed(K.elementwise_backward, "xs", k, "dxs", k),
                  dict(op=op, **xs, y=y, dy=dy, **{n: None for n in outs}),
                  lambda r: tuple(R.elementwise_backward(r["op"], [r[n] for n in names], r["y"], r["dy"])),
                  # (y is not read by add/subtract/average: a buffer over it is no conflict)
                  inputs=names + (("y", "dy") if op in ("maximum", "minimum", "multiply") else ("dy",)),
                  outs=outs, no_special=names + ("y",) if op in ("maximum", "minimum") else ("y",), params={"op": OP_JUNK}, label=f"elementwise_backward({op}, k={k})", **TOL)


@st.composite
def concatenate_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    base = list(_shape(draw))
    k = draw(st.integers(1, 4))
    axis = draw(st.integers(-len(base), len(base) - 1))
    xs = {}
    for i in range(k):
        s = list(base)
        s[axis] = draw(st.integers(0, 4))
        xs[f"xs[{i}]"] = F.values(rng, tuple(s), special=draw(st.booleans()))
    names = tuple(xs)
    return F.Call(_listed(K.concatenate, "xs", k), dict(**xs, axis=axis, out=None),
                  lambda r: R.concatenate([r[n] for n in names], r["axis"]),
                  inputs=names, outs={"out": 0}, params={"axis": AXIS_JUNK},
                  label=f"concatenate(k={k})", rtol=0, atol=0)


@st.composite
def concatenate_backward_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    base = list(_shape(draw))
    axis = draw(st.integers(-len(base), len(base) - 1))
    sizes = draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))
    base[axis] = sum(sizes)
    dy = F.values(rng, tuple(base), special=draw(st.booleans()))
    sizes = draw(st.sampled_from([list, tuple, np.array]))(sizes)
    outs = {f"dxs[{i}]": i for i in range(len(sizes))}
    return F.Call(_listed(K.concatenate_backward, None, 0, "dxs", len(sizes)),
                  dict(dy=dy, sizes=sizes, axis=axis, **{n: None for n in outs}),
                  lambda r: tuple(R.concatenate_backward(r["dy"], [int(s) for s in r["sizes"]], r["axis"])),
                  inputs=("dy",), outs=outs, params={"sizes": SIZES_JUNK, "axis": AXIS_JUNK},
                  label="concatenate_backward", rtol=0, atol=0)


@st.composite
def dot_operands(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    n, kk = draw(st.integers(0, 3)), draw(st.integers(0, 6))
    special = draw(st.integers(0, 3)) == 0
    if draw(st.booleans()):                 # (N, k) . (N, k) -> (N, 1)
        a, b = F.values(rng, (n, kk), special=special), F.values(rng, (n, kk), special=special)
        axes = draw(st.sampled_from([1, -1, (1, 1), [1, -1], (-1, -1)]))
    else:                                   # 3-D: contract a's axis p with b's axis q
        p, q = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        m, j = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        a = F.values(rng, (n, kk, m) if p == 1 else (n, m, kk), special=special)
        b = F.values(rng, (n, kk, j) if q == 1 else (n, j, kk), special=special)
        axes = draw(st.sampled_from([(p, q), [p - 3, q], (p, q - 3)])) if p != q or draw(st.booleans()) else p
    return rng, a, b, axes, special


@st.composite
def batch_dot_call(draw):
    rng, a, b, axes, special = draw(dot_operands())
    return F.Call(K.batch_dot, dict(a=a, b=b, axes=axes, out=None),
                  lambda r: R.batch_dot(r["a"], r["b"], r["axes"]),
                  inputs=("a", "b"), outs={"out": 0}, params={"axes": AXES_JUNK},
                  nonfinite="loose", label="batch_dot", **TOL)


@st.composite
def batch_dot_backward_call(draw):
    rng, a, b, axes, special = draw(dot_operands())
    dy = F.values(rng, K.batch_dot(a, b, axes).shape, special=special)
    return F.Call(K.batch_dot_backward, dict(a=a, b=b, dy=dy, axes=axes, da=None, db=None),
                  lambda r: R.batch_dot_backward(r["a"], r["b"], r["dy"], r["axes"]),
                  inputs=("a", "b", "dy"), outs={"da": 0, "db": 1}, params={"axes": AXES_JUNK},
                  nonfinite="loose", label="batch_dot_backward", **TOL)


@st.composite
def l2_normalize_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    shape = _shape(draw, side=7)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = F.values(rng, shape, special=draw(st.integers(0, 3)) == 0)
    if x.size and draw(st.booleans()):
        x[(slice(None),) * (axis % x.ndim) + (0,)] = 0.0        # an all-zero slice: the 1e7 floor
    return F.Call(K.l2_normalize, dict(x=x, axis=axis, out=None, inv_norm=None),
                  lambda r: R.l2_normalize(r["x"], r["axis"]),
                  inputs=("x",), outs={"out": 0, "inv_norm": 1}, params={"axis": AXIS_JUNK},
                  label="l2_normalize", **TOL)


@st.composite
def l2_normalize_backward_call(draw):
    rng = np.random.default_rng(draw(F.seeds()))
    shape = _shape(draw, side=7)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = F.values(rng, shape)
    if x.size and draw(st.booleans()):
        x[(slice(None),) * (axis % x.ndim) + (0,)] = 0.0
    u, inv_norm = K.l2_normalize(x, axis)
    du = F.values(rng, shape, special=draw(st.integers(0, 3)) == 0)
    # du - u*sum(du*u) cancels (to 0 when the axis has one element): the error follows the terms,
    # a few eps32 of inv_norm*|du| per summed element: the bound is 8 eps32 * that * n
    fin = np.abs(du[np.isfinite(du)])
    terms = float(inv_norm.max(initial=0.0)) * float(fin.max(initial=0.0)) * (shape[axis] if shape else 1)
    return F.Call(K.l2_normalize_backward, dict(u=u, inv_norm=inv_norm, du=du, axis=axis, dx=None),
                  lambda r: R.l2_normalize_backward(r["u"], r["inv_norm"], r["du"], r["axis"]),
                  inputs=("u", "inv_norm", "du"), outs={"dx": 0}, no_special=("u", "inv_norm"),
                  params={"axis": AXIS_JUNK}, label="l2_normalize_backward", rtol=TOL["rtol"],
                  atol=max(TOL["atol"], 8 * EPS32 * terms))


CALLS = {"elementwise": elementwise_call(), "elementwise_backward": elementwise_backward_call(),
         "concatenate": concatenate_call(), "concatenate_backward": concatenate_backward_call(),
         "batch_dot": batch_dot_call(), "batch_dot_backward": batch_dot_backward_call(),
         "l2_normalize": l2_normalize_call(), "l2_normalize_backward": l2_normalize_backward_call()}


# public functions that compute no array: broadcast_shape (a shape rule, exercised by the
# broadcasting elementwise calls above)
NOT_KERNELS = {"broadcast_shape"}


def test_every_public_function_is_fuzzed():
    public = {n for n in K.__all__ if callable(getattr(K, n))}
    assert sorted(CALLS) == sorted(public - NOT_KERNELS)
    assert NOT_KERNELS <= public


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_valid(name, data):
    F.check_valid(data.draw(CALLS[name]))


@pytest.mark.parametrize("name", sorted(CALLS))
@given(data=st.data())
def test_spoiled(name, data):
    F.check_spoiled(data, data.draw(CALLS[name]))
