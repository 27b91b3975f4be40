"""Argument checks shared by every public kernel (the boundary that the compiled loops trust).

Every message names the function, the argument, what was received and what was expected.
"""
from __future__ import annotations

import numbers

import numpy as np

FLOAT32 = np.dtype(np.float32)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"shape {x.shape}, dtype {x.dtype}"
    return f"type {type(x).__name__}"


def plain(x: np.ndarray, name: str, fn: str) -> np.ndarray:
    """An ndarray subclass as a plain ndarray of the same memory (np.matrix, np.memmap).

    A subclass may change reshape/indexing (np.matrix stays 2-D); a masked array carries a
    mask the kernels would ignore, so it is refused (TypeError).
    """
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{fn}: {name} must be a plain numpy.ndarray; received a masked array. "
                        f"Use {name}.filled() (the kernels have no notion of a mask).")
    return x.view(np.ndarray)


def check_array(x, name: str, fn: str, *, ndim=None, dtype=FLOAT32, shape=None,
                contiguous: bool = True, writeable: bool = False) -> np.ndarray:
    """Return `x` if it is a C-contiguous ndarray of `dtype` (and `ndim`/`shape`); an ndarray
    subclass (np.matrix, np.memmap) comes back as a plain ndarray view of the same memory.

    Raises TypeError for a non-array or wrong dtype, ValueError for a wrong rank, shape or
    layout. `shape` may hold None for "any size" in a dimension.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray of {np.dtype(dtype).name}; "
                        f"received {_describe(x)}. Use np.asarray({name}, dtype='{np.dtype(dtype).name}').")
    x = plain(x, name, fn)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{fn}: {name} must have dtype {np.dtype(dtype).name}; received {_describe(x)}. "
                        f"Use {name}.astype('{np.dtype(dtype).name}').")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{fn}: {name} must have {want} dimensions; received {_describe(x)}.")
    if shape is not None:
        if len(shape) != x.ndim or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{fn}: {name} must have shape {want}; received {_describe(x)}.")
    if contiguous and not x.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous; received a strided view with strides "
                         f"{x.strides}. Use np.ascontiguousarray({name}).")
    if not x.flags.aligned:   # the compiled loops load whole elements: a misaligned float* is undefined
        raise ValueError(f"{fn}: {name} must be aligned to its {x.dtype.itemsize}-byte elements; its data "
                         f"starts {x.ctypes.data % x.dtype.itemsize} byte(s) off (a view into a byte "
                         f"buffer). Pass an aligned array, e.g. {name}.copy().")
    if writeable and not x.flags.writeable:
        raise ValueError(f"{fn}: {name} is written to and must be writeable; received a read-only array.")
    return x


ALIGN = 64    # bytes: one cache line, one AVX-512 vector


def empty_aligned(shape, dtype=FLOAT32, align: int = ALIGN) -> np.ndarray:
    """np.empty(shape, dtype) whose data starts on an `align`-byte boundary. NumPy's own arrays
    start 16 bytes past one (malloc's header), so every 64-byte vector load of a kernel spans
    two cache lines: measured 1.3-1.5x slower depthwise convolutions on in-cache shapes."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(n * dtype.itemsize + align, np.uint8)
    off = -raw.ctypes.data % align
    return raw[off:off + n * dtype.itemsize].view(dtype).reshape(shape)


def prepare_out(out, shape, name: str, fn: str, dtype=FLOAT32, *, zero: bool = False) -> np.ndarray:
    """Return a C-contiguous writeable `dtype` buffer of `shape`: `out` itself, or a new
    (cache-line aligned) array."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        out = empty_aligned(shape, dtype)
        if zero:
            out.fill(0)
        return out
    out = check_array(out, name, fn, dtype=dtype, shape=shape, writeable=True)
    if zero:
        out.fill(0)
    return out


def check_no_overlap(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, fn: str) -> None:
    """Raise ValueError when an output buffer overlaps an input the kernel still reads."""
    if np.shares_memory(a, b):
        raise ValueError(f"{fn}: {name_a} must not share memory with {name_b}.")


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.dtype == b.dtype)


def check_aliases(fn: str, written, others, same_ok=()) -> None:
    """Raise ValueError if a written buffer overlaps another buffer.

    written, others: sequences of (name, array or None). same_ok: pairs of names that may be the
    very same buffer (elementwise in-place use), never a partial overlap.
    """
    written = [(n, a) for n, a in written if a is not None]
    others = [(n, a) for n, a in others if a is not None]
    for i, (na, a) in enumerate(written):
        for nb, b in written[i + 1:] + others:
            if np.shares_memory(a, b):
                if ((na, nb) in same_ok or (nb, na) in same_ok) and _same_buffer(a, b):
                    continue
                allowed = [p for p in same_ok if na in p and nb in p]
                hint = f" (it may be {nb} itself)" if allowed else ""
                raise ValueError(f"{fn}: {na} must not share memory with {nb}{hint}; "
                                 f"pass a separate buffer.")


def as_tuple(value, n: int, name: str, fn: str, *, minimum: int = 1) -> tuple:
    """An int or a length-n sequence of ints >= minimum, as a tuple of n Python ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        out = (int(value),) * n
    else:
        try:
            out = tuple(value)
        except TypeError:
            raise TypeError(f"{fn}: {name} must be an int or a tuple of {n} ints; received {value!r}.") from None
        if len(out) != n or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in out):
            raise ValueError(f"{fn}: {name} must be an int or a tuple of {n} ints; received {value!r}.")
        out = tuple(int(v) for v in out)
    if any(v < minimum for v in out):
        raise ValueError(f"{fn}: {name} must be >= {minimum} in every dimension; received {value!r}.")
    if any(v > _MAX_WINDOW for v in out):   # the compiled loops take C ssize_t / int sizes
        raise ValueError(f"{fn}: {name} must be below 2**31 in every dimension; received {value!r}.")
    return out


_MAX_WINDOW = (1 << 31) - 1


def check_float(value, name: str, fn: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real number within [low, high] (ends open when asked), as a Python float.

    Finite means finite in float32 too (|value| <= 3.4e38): the kernels compute in float32,
    where a larger value would be an infinity.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; received {value!r}.")
    try:
        v = float(value)
    except OverflowError:       # an int beyond the float range
        v = float("inf")
    bad = not np.isfinite(v) or abs(v) > _FLOAT32_MAX
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        if low is None and high is None:
            raise ValueError(f"{fn}: {name} must be a finite number; received {value!r}.")
        rng = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(f"{fn}: {name} must be a finite number in {rng}; received {value!r}.")
    return v
