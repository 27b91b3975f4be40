"""Shared machinery of the kernel fuzzers (tests/kernels/test_fuzz_<topic>.py).

A fuzzer describes one valid call of a public kernel as a `Call`: the function, its arguments
(all passed by keyword), the reference twin (`fastnn.reference.<topic>`) evaluated on float64
copies, and which arguments are inputs, `out=` buffers or state updated in place. Then:

* `check_valid(call)`: the kernel's result equals the reference's (NaN/inf included) and no
  input was written to.
* `check_spoiled(data, call)`: one argument is spoiled (another layout, dtype, rank or size;
  misaligned, read-only, not an array, NaN/inf, an `out=` that aliases an input, a bad scalar
  argument, ...). The kernel must then either raise a ValueError/TypeError whose message names
  that argument, or return what the reference returns for the very same arguments. Spoilings
  that keep the call valid (a read-only input, an input that starts 4 bytes into its buffer,
  an in-place `out=` the kernel documents) must not raise; invalid `out=` buffers must.

Anything else fails the test: another exception, a wrong or partly written result, an input
changed behind the caller's back. A crash (segfault, abort) kills the pytest process; pytest's
faulthandler then prints the Python stack of the call that crashed.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

F32 = np.dtype(np.float32)

# Values of valid inputs: mostly moderate numbers, with exact zeros, signed zeros, denormals
# and (when `special`) NaN and +-inf sprinkled in.
_SPECIAL = np.array([np.nan, np.inf, -np.inf], np.float32)
_EDGE = np.array([0.0, -0.0, 1e-40, -1e-40, 1.0, -1.0], np.float32)


def values(rng: np.random.Generator, shape, *, special=False, low=-2.0, high=2.0) -> np.ndarray:
    """A float32 C-contiguous array of `shape`: uniform in [low, high) with edge values mixed
    in (zeros, denormals) and, if `special`, a few NaN / +-inf."""
    a = rng.uniform(low, high, shape).astype(np.float32)
    if a.size:
        flat = a.reshape(-1)
        k = rng.integers(0, max(1, a.size // 8) + 1)
        flat[rng.integers(0, a.size, k)] = rng.choice(_EDGE, k)
        if special:
            k = rng.integers(1, max(1, a.size // 16) + 2)
            flat[rng.integers(0, a.size, k)] = rng.choice(_SPECIAL, k)
    return a


def seeds():
    return st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------- layouts with the same values

def _buffer_for(a: np.ndarray, byte_offset: int, extra: int = 64) -> np.ndarray:
    """A uint8 buffer (64-byte aligned start) large enough for a's bytes at byte_offset."""
    raw = np.zeros(a.nbytes + byte_offset + extra + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:]


def at_byte_offset(a: np.ndarray, byte_offset: int) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts byte_offset bytes past a 64-byte boundary
    (1-3: misaligned for its dtype; 4: aligned to the element but not to a vector)."""
    buf = _buffer_for(a, byte_offset)
    out = buf[byte_offset:byte_offset + a.nbytes].view(a.dtype).reshape(a.shape) if a.size else \
        np.frombuffer(buf, a.dtype, count=0, offset=byte_offset).reshape(a.shape)
    out[...] = a
    return out


def strided(a: np.ndarray, step: int = 2) -> np.ndarray:
    """A non-contiguous view (every `step`-th element of a larger array along the last axis)."""
    if a.ndim == 0:
        return a.copy()
    big = np.zeros(a.shape[:-1] + (a.shape[-1] * step,), a.dtype)
    view = big[..., ::step]
    view[...] = a
    return view


def reversed_view(a: np.ndarray) -> np.ndarray:
    """A view with negative strides along the first axis that holds a's values."""
    if a.ndim == 0:
        return a.copy()
    big = np.ascontiguousarray(a[::-1])
    return big[::-1]


def fortran(a: np.ndarray) -> np.ndarray:
    return np.asfortranarray(a) if a.ndim else a.copy()   # (asfortranarray makes 0-d 1-d)


def read_only(a: np.ndarray) -> np.ndarray:
    r = a.copy()
    r.flags.writeable = False
    return r


def broadcast(a: np.ndarray) -> np.ndarray:
    """A zero-stride read-only view of a's first element, of a's shape (other values)."""
    return np.broadcast_to(a.reshape(-1)[:1].reshape((1,) * a.ndim), a.shape) if a.size else a


LAYOUTS = {  # name -> (make, expectation for an input: "either" or "succeed")
    "strided": (strided, "either"),
    "reversed": (reversed_view, "either"),
    "fortran": (fortran, "either"),
    "misaligned1": (lambda a: at_byte_offset(a, 1), "either"),
    "misaligned2": (lambda a: at_byte_offset(a, 2), "either"),
    "misaligned3": (lambda a: at_byte_offset(a, 3), "either"),
    "offset4": (lambda a: at_byte_offset(a, 4), "succeed"),
    "offset12": (lambda a: at_byte_offset(a, 12), "succeed"),
    "read_only": (read_only, "succeed"),
}

BAD_DTYPES = [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, object,
              np.complex64, np.dtype(">f4")]


# ---------------------------------------------------------------- the call description

def with_settings(module, fn, settings: dict, label: str):
    """fn run with module attributes set as `settings` says (a kernel module's path, flavour or
    threading switches), restored afterwards; named `label` in reports."""
    def call(**kw):
        saved = {k: getattr(module, k) for k in settings}
        try:
            for k, v in settings.items():
                setattr(module, k, v)
            return fn(**kw)
        finally:
            for k, v in saved.items():
                setattr(module, k, v)
    call.__name__ = label
    return call


@dataclasses.dataclass
class Call:
    """One valid call of a public kernel."""

    fn: Callable
    kw: dict
    ref: Callable[[dict], Any]           # reference on float64 copies -> tuple like `result`
    inputs: tuple = ()                   # array arguments only read
    outs: dict = dataclasses.field(default_factory=dict)      # out name -> result index
    inplace: tuple = ()                  # (out name, input name): out may be that input itself
    updated: tuple = ()                  # arrays updated in place by contract (compared after)
    params: dict = dataclasses.field(default_factory=dict)    # scalar argument -> odd values
    resize_values: dict = dataclasses.field(default_factory=dict)   # input -> (rng, shape) ->
    #                                      values for a resized copy that keep the contract (a
    #                                      softmax output's rows sum to one); default: any floats
    no_special: tuple = ()               # inputs that get no NaN/inf spoiling: values derived
    #                                      from the others (grad's y = apply(x), the forward's
    #                                      mean/invstd) or per-channel parameters of a
    #                                      regrouped formula (documented numerics)
    rtol: float = 1e-5
    atol: float = 1e-6
    scaled: bool = False                 # atol is relative to the largest finite |result|
    #                                      (sums that cancel: the error follows the terms)
    nonfinite: str = "exact"             # "exact": NaN/+inf/-inf as the reference; "loose":
    #                                      non-finite where the reference is (GEMM / Winograd
    #                                      sums may turn a +-inf into NaN); "spread": also NaN
    #                                      where the reference is finite, if an input holds a
    #                                      NaN/inf (Winograd's transforms mix a tile: inf - inf)
    result: Callable | None = None       # (kw, returned) -> tuple to compare (default: returned)
    ignore: Callable | None = None       # (kw) -> boolean mask of result 0's elements not to
    #                                      compare (a decision on a threshold that float32
    #                                      and float64 may take either way)
    ref_dtype: Any = np.float64          # float arrays reach the reference in this dtype
    label: str = ""

    def __repr__(self):   # what a failing example prints
        return f"Call({self.label}, {describe(self.kw)})"

    def _repr_pretty_(self, p, cycle):   # hypothesis prints draws with this
        p.text(repr(self))

    def outputs(self, kw, ret):
        if self.result is not None:
            return tuple(self.result(kw, ret))
        return ret if isinstance(ret, tuple) else (ret,)


def describe(kw: dict) -> str:
    def one(v):
        if isinstance(v, np.ndarray):
            return (f"array(shape={v.shape}, dtype={v.dtype}, strides={v.strides}, "
                    f"addr%64={v.ctypes.data % 64}, writeable={v.flags.writeable}, "
                    f"values={np.array2string(v.reshape(-1)[:8], precision=3)})")
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k!r}: {one(a)}" for k, a in v.items()) + "}"
        return repr(v)
    return ", ".join(f"{k}={one(v)}" for k, v in kw.items())


def _ref_copy(v, dtype):
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f" and v.dtype.itemsize >= 2:
            return np.array(v, dtype=dtype)
        return np.array(v)
    return v


def _snapshot(v):
    return v.copy() if isinstance(v, np.ndarray) else v


def named(name: str, message: str) -> bool:
    """Whether the error message names the argument (as a word: `x` in "x must", "x's", ...)."""
    base = name.split("[")[0]
    return re.search(rf"(?<![\w.]){re.escape(base)}(?![\w])", message) is not None


def _same_bits(a, b) -> bool:
    if not isinstance(a, np.ndarray):
        return True
    return a.shape == b.shape and a.dtype == b.dtype and (
        a.tobytes() == np.ascontiguousarray(b).tobytes() or
        (a.dtype.kind == "f" and np.array_equal(a, b, equal_nan=True)))


def assert_matches(got, want, rtol, atol, nonfinite="exact", what="result"):
    if want is None:
        assert got is None, f"{what}: expected None, got {type(got).__name__}"
        return
    assert isinstance(got, np.ndarray), f"{what}: expected an ndarray, got {type(got).__name__}"
    got = got.view(np.ndarray)            # (an out= np.matrix comes back as itself)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    # the exact answer is the reference rounded to the kernel's output type (float32)
    with np.errstate(over="ignore"):
        w = want.astype(got.dtype).astype(np.float64) if got.dtype.kind == "f" else want.astype(np.float64)
    g = got.astype(np.float64)
    fin = np.isfinite(w)
    if nonfinite == "exact":
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{what}: NaN positions")
        inf = np.isinf(w)
        np.testing.assert_array_equal(g[inf], w[inf], err_msg=f"{what}: +-inf values")
    elif nonfinite == "spread":
        np.testing.assert_array_equal(np.isfinite(g[~fin]), False, err_msg=f"{what}: non-finite positions")
        fin = fin & ~np.isnan(g)
    else:
        np.testing.assert_array_equal(~np.isfinite(g), ~fin, err_msg=f"{what}: non-finite positions")
    np.testing.assert_allclose(g[fin], w[fin], rtol=rtol, atol=atol, err_msg=what)


# ---------------------------------------------------------------- running one call

def run(call: Call, kw: dict, spoiled: str | None = None, expect: str = "succeed", also=()):
    """Call the kernel with kw and judge the outcome (see the module docstring).

    expect: "succeed" (must equal the reference), "raise" (must raise a ValueError/TypeError
    naming `spoiled`) or "either". also: other names the message may give instead (a shape
    that no longer matches another argument's may be reported under either name).
    """
    before = {k: _snapshot(v) for k, v in kw.items()}
    slots_before = {k: v.copy() for k, v in kw["slots"].items()} if isinstance(kw.get("slots"), dict) else None
    where = f"{call.label}({describe(kw)})"
    try:
        ret = call.fn(**kw)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert expect != "succeed", f"{call.label}: unexpected {type(e).__name__} ({spoiled=}): {msg}"
        assert spoiled is not None and any(named(n, msg) for n in (spoiled, *also)), \
            f"{call.label}: the {type(e).__name__} does not name the spoiled argument {spoiled!r}: {msg}"
        return "raised"
    except Exception as e:  # noqa: BLE001 - any other exception is a bug
        raise AssertionError(f"{call.label}: {type(e).__name__} instead of a ValueError/TypeError "
                             f"naming {spoiled!r}: {e}") from e
    assert expect != "raise", f"{call.label}: accepted a spoiled {spoiled!r} (should raise)"
    # the reference on the very arguments the kernel accepted (copies taken before the call)
    ref_kw = {k: _ref_copy(v, call.ref_dtype) for k, v in before.items() if k not in call.outs}
    if slots_before is not None:
        ref_kw["slots"] = {k: _ref_copy(v, call.ref_dtype) for k, v in slots_before.items()}
    try:
        with np.errstate(all="ignore"):
            want = call.ref(ref_kw)
    except (ValueError, TypeError, IndexError, KeyError) as e:
        raise AssertionError(f"{call.label}: the kernel accepted {spoiled!r} that the reference "
                             f"rejects ({type(e).__name__}: {e})") from e
    got = call.outputs(kw, ret)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want), f"{call.label}: {len(got)} results, reference {len(want)}"
    if call.ignore is not None and isinstance(got[0], np.ndarray):
        skip = call.ignore(ref_kw)
        got = (np.where(skip, 0.0, got[0]).astype(got[0].dtype),) + tuple(got[1:])
        want = (np.where(skip, 0.0, want[0]),) + tuple(want[1:])
    nonfinite = call.nonfinite
    if nonfinite == "spread" and all(np.isfinite(v).all() for v in before.values()
                                     if isinstance(v, np.ndarray) and v.dtype.kind == "f"):
        nonfinite = "loose"         # finite inputs: no NaN anywhere the reference has none
    for i, (g, w) in enumerate(zip(got, want)):
        atol = call.atol
        if call.scaled and w is not None:
            fin = np.abs(np.asarray(w, np.float64)[np.isfinite(w)])
            atol *= max(1.0, float(fin.max(initial=0.0)))
        assert_matches(g, w, call.rtol, atol, nonfinite, f"{call.label} result {i} ({spoiled=})")
    # out= buffers given are the ones returned
    if not isinstance(ret, tuple):
        ret = (ret,)
    for name, idx in call.outs.items():
        if isinstance(kw.get(name), np.ndarray) and idx is not None and want[idx] is not None:
            assert ret[idx] is kw[name], f"{call.label}: {name}= was not returned as result {idx}"
    # inputs are only read (unless they are the out= buffer of an in-place call)
    written = {id(kw[n]) for n in call.outs if isinstance(kw.get(n), np.ndarray)}
    for name in call.inputs:
        v = kw.get(name)
        if isinstance(v, np.ndarray) and id(v) not in written and not any(
                isinstance(kw.get(o), np.ndarray) and np.shares_memory(v, kw[o]) for o in call.outs):
            assert _same_bits(before[name], v), f"{call.label}: input {name} was written to"
    return "ok"


def check_valid(call: Call):
    run(call, dict(call.kw), None, "succeed")


# ---------------------------------------------------------------- spoiling one argument

def _arrays(call, names):
    return [n for n in names if isinstance(call.kw.get(n), np.ndarray)]


def _resized(a: np.ndarray, axis: int, size: int, rng) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] = size
    if a.dtype.kind == "f":
        return values(rng, shape).astype(a.dtype)
    return np.zeros(shape, a.dtype)


def _inject_special(a: np.ndarray, rng) -> np.ndarray:
    b = a.copy()
    if b.size:
        k = rng.integers(1, max(1, b.size // 4) + 2)
        b.reshape(-1)[rng.integers(0, b.size, k)] = rng.choice(_SPECIAL, k)
    return b


class _Subclass(np.ndarray):
    """An ndarray subclass that changes nothing."""


def _spoil_input(data, call, kw, name, rng, written=False):
    """Spoil input `name` in kw; returns the expectation (None: does not apply). written: the
    kernel updates this argument in place (a read-only or zero-stride view must be refused)."""
    a = kw[name]
    how = data.draw(st.sampled_from(
        ["layout", "dtype", "rank+", "rank-", "resize", "not_array", "broadcast", "special",
         "subclass"]), label=f"spoil {name}")
    if how == "layout":
        layout = data.draw(st.sampled_from(sorted(LAYOUTS)), label="layout")
        make, expect = LAYOUTS[layout]
        kw[name] = make(a)
        if kw[name].ctypes.data % max(a.dtype.itemsize, 1) and a.size:
            expect = "either"      # offset4 / offset12 of a float64 or int64 array: misaligned
        return "raise" if written and layout == "read_only" else expect
    if how == "dtype":
        dt = data.draw(st.sampled_from(BAD_DTYPES), label="dtype")
        if np.dtype(dt) == a.dtype:
            dt = np.float64
        with np.errstate(invalid="ignore", over="ignore"):
            kw[name] = a.astype(dt)
        return "either"
    if how == "rank+":
        kw[name] = a[None] if data.draw(st.booleans(), label="front") else a[..., None]
        return "either-shape"
    if how == "rank-":
        kw[name] = a.reshape(-1) if a.ndim != 1 else np.asarray(a[0] if a.size else 0.0, a.dtype)
        return "either-shape"
    if how == "resize":
        if a.ndim == 0:
            return None
        axis = data.draw(st.integers(0, a.ndim - 1), label="axis")
        size = data.draw(st.sampled_from([0, 1, a.shape[axis] + 1, max(0, a.shape[axis] - 1)]), label="size")
        make = call.resize_values.get(name)
        if make is None:
            kw[name] = _resized(a, axis, size, rng)
        else:
            shape = list(a.shape)
            shape[axis] = size
            kw[name] = make(rng, tuple(shape)).astype(a.dtype)
        return "either-shape"
    if how == "not_array":
        kw[name] = data.draw(st.sampled_from(["list", "scalar", "None", "str"]), label="kind")
        kw[name] = {"list": a.tolist(), "scalar": 1.0, "None": None, "str": "x"}[kw[name]]
        return "either"
    if how == "broadcast":
        kw[name] = broadcast(a)
        return "raise" if written and a.size > 1 else "either"
    if how == "special":
        if a.dtype.kind != "f" or name in call.no_special:
            return None
        kw[name] = _inject_special(a, rng)
        return "succeed"
    if how == "subclass":    # np.matrix (2-D only: its reshape stays 2-D), a masked array
        kind = data.draw(st.sampled_from(["matrix", "masked", "plain"]), label="subclass")
        if kind == "matrix" and a.ndim != 2:
            kind = "plain"
        kw[name] = {"matrix": np.asmatrix, "masked": np.ma.masked_array,
                    "plain": lambda v: v.view(_Subclass)}[kind](a)
        return "either"
    return None


def _spoil_out(data, call, kw, name, rng, shape, dtype):
    how = data.draw(st.sampled_from(
        ["shape", "dtype", "strided", "read_only", "fortran", "misaligned", "offset4", "list",
         "alias", "partial", "out_out"]), label=f"spoil {name}")
    good = np.zeros(shape, dtype)
    if how == "shape":
        if not shape:
            kw[name] = np.zeros((1,), dtype)
        else:
            axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
            bad = list(shape)
            bad[axis] += 1
            kw[name] = np.zeros(bad, dtype) if data.draw(st.booleans()) else good[None]
        return "raise"
    if how == "dtype":
        dt = data.draw(st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.uint8, object]))
        if np.dtype(dt) == np.dtype(dtype):
            dt = np.float32 if np.dtype(dtype) == np.float64 else np.float64
        kw[name] = np.zeros(shape, dt)
        return "raise"
    if how == "strided":
        if good.size <= 1 and good.ndim <= 1:
            return None
        kw[name] = strided(good)
        return "raise" if not kw[name].flags.c_contiguous else "succeed"
    if how == "fortran":
        f = fortran(good)
        kw[name] = f
        return "succeed" if f.flags.c_contiguous else "raise"
    if how == "read_only":
        kw[name] = read_only(good)
        return "raise"
    if how == "misaligned":
        kw[name] = at_byte_offset(good, data.draw(st.integers(1, 3)))
        return "either"
    if how == "offset4":
        kw[name] = at_byte_offset(good, 4)
        return "succeed" if 4 % good.dtype.itemsize == 0 or not good.size else "raise"   # float64: misaligned
    if how == "list":
        kw[name] = good.tolist()
        return "raise"
    if how in ("alias", "partial"):
        cands = [n for n in _arrays(call, call.inputs + call.updated)
                 if kw[n].dtype == np.dtype(dtype) and kw[n].size]
        if not cands:
            return None
        src = data.draw(st.sampled_from(cands), label="aliased input")
        a = kw[src]
        if how == "alias":
            if a.shape != tuple(shape) or not a.flags.c_contiguous:
                return None
            kw[name] = a
            # documented in-place use must work; any other exact alias is either refused or
            # computed right (an elementwise kernel may well manage it)
            return "succeed" if (name, src) in call.inplace else "either"
        # a buffer in which the input and out= overlap partly (shifted by k elements)
        size = int(np.prod(shape))
        k = data.draw(st.integers(1, max(1, min(size, a.size) - 1)), label="shift")
        if k >= a.size and k >= size:
            return None
        buf = np.zeros(a.size + size + k, dtype)
        inp_first = data.draw(st.booleans(), label="input first")
        if inp_first:
            inp, out = buf[:a.size], buf[k:k + size]
        else:
            out, inp = buf[:size], buf[k:k + a.size]
        if not np.shares_memory(inp, out):
            return None
        inp[...] = a.reshape(-1)
        kw[src] = inp.reshape(a.shape)
        kw[name] = out.reshape(shape)
        return "raise"
    if how == "out_out":
        others = [o for o in call.outs if o != name and isinstance(kw.get(o), np.ndarray)
                  and kw[o].dtype == np.dtype(dtype) and kw[o].shape == tuple(shape) and kw[o].size]
        if not others:
            return None
        kw[name] = kw[data.draw(st.sampled_from(others))]
        return "raise"
    return None


def check_spoiled(data, call: Call, rng: np.random.Generator | None = None):
    """Spoil one argument of a valid call and judge the outcome (see the module docstring)."""
    rng = rng or np.random.default_rng(data.draw(seeds(), label="seed"))
    kw = dict(call.kw)
    # fill every out= buffer first (a valid one) so the spoiled one has company to alias
    shapes = _out_shapes(call)
    for name, (shape, dtype) in shapes.items():
        if data.draw(st.booleans(), label=f"give {name}"):
            kw[name] = np.full(shape, np.nan, dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype)
    choices = ([("input", n) for n in _arrays(call, call.inputs)] +
               [("updated", n) for n in _arrays(call, call.updated)] +
               [("out", n) for n in shapes] +
               [("param", n) for n in call.params])
    if not choices:
        return
    kind, name = data.draw(st.sampled_from(choices), label="spoiled argument")
    also = ()
    if kind in ("input", "updated"):
        expect = _spoil_input(data, call, kw, name, rng, written=kind == "updated")
        if expect == "either-shape":   # the mismatch may be reported under the other name
            expect, also = "either", tuple(n for n, v in kw.items() if isinstance(v, np.ndarray)
                                           or n.endswith("shape") or (isinstance(v, (tuple, list)) and any(
                                               isinstance(e, np.ndarray) for e in v)))   # stats=(n, shift, sums)
    elif kind == "out":
        expect = _spoil_out(data, call, kw, name, rng, *shapes[name])
    else:
        kw[name] = data.draw(st.sampled_from(call.params[name]), label=name)
        expect = "either"
        # another window, shape or kind may no longer fit the arrays (an input too small for the
        # window, a given out= of the old output shape): the message may name those instead
        also = tuple(n for n, v in kw.items() if isinstance(v, np.ndarray)) + tuple(call.params)
    if expect is None:          # this spoiling does not apply to that argument
        return
    run(call, kw, name, expect, also)


def _out_shapes(call: Call) -> dict:
    """name -> (shape, dtype) of every out= buffer, from one run of the valid call."""
    if not call.outs:
        return {}
    kw = {k: _snapshot(v) for k, v in call.kw.items()}
    if isinstance(kw.get("slots"), dict):
        kw["slots"] = {k: v.copy() for k, v in kw["slots"].items()}
    ret = call.fn(**kw)
    ret = ret if isinstance(ret, tuple) else (ret,)
    return {name: (ret[idx].shape, ret[idx].dtype) for name, idx in call.outs.items()
            if idx is not None and isinstance(ret[idx], np.ndarray)}


# junk for scalar arguments, to be mixed with each argument's own odd values
JUNK = [None, "2", 1.5, -1, 0, True, 2**31, 2**63, -2**63, float("nan"), float("inf"), (), [],
        object(), np.int64(2), np.float32(2.0)]
