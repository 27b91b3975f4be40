"""Single-threaded float32 GEMM for the dense layer's per-thread blocks (kernels/gemm.pyx).

matmul(a, b, out, accumulate=False): out = a @ b or out += a @ b, with a and b any 2-D float32
views (transposed, strided) and out rows contiguous. Pack buffers are per-thread workspaces.
The microkernel follows the instruction-set flavour (fastnn.kernels.isa): AVX-512 (6x64 tiles)
or AVX2+FMA (6x16); the portable flavour has none, so check available() first (callers then use
np.matmul). Every element of the result is one fma chain over k in order (K-blocks added in
order), whatever the tile it falls in: a split of the product over threads, by rows or
columns, gives the same bits as the whole.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._kernels import gemm as _gemm
from fastnn.kernels import conv as _conv

__all__ = ["available", "level", "matmul", "VARIANT", "KC", "MC"]

# microkernel per flavour: 0 = 14x32, 1 = 12x32, 2 = 6x64 (AVX-512), 3 = 6x16 (AVX2+FMA)
VARIANT = {2: 2, 1: 3}
KC = 256        # K-block (equalised: 784 -> 4 x 196); kc x n of packed B stays in L2
MC = 96         # M-block: A rows packed at once (16 microkernel panels of 6)


def available() -> bool:
    """True if the flavour in force has a microkernel (avx2 or avx512)."""
    return _gemm.get_isa() >= 1


def level() -> int:
    """The flavour in force as fastnn.kernels.isa numbers it: 0 portable, 1 avx2, 2 avx512."""
    return _gemm.get_isa()


def _check_blocking(variant, kc, mc, fn):
    """variant None or 0..2, kc and mc None or ints >= 1 (a negative or zero block size made
    the C loops run forever; variant -1 read outside the microkernel tables)."""
    if variant is not None and (isinstance(variant, bool) or not isinstance(variant, numbers.Integral)
                                or not 0 <= variant < len(_gemm.MR)):
        raise ValueError(f"{fn}: variant must be None or one of 0, 1, 2; received {variant!r}.")
    for name, v in (("kc", kc), ("mc", mc)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)
                              or not 1 <= v < 2**31):
            raise ValueError(f"{fn}: {name} must be None or an int in [1, 2**31) (a block size); "
                             f"received {v!r}.")


def _check_no_alias(a, b, out, fn):
    """out is written while a and b are still read: it must not share memory with them."""
    for name, arr in (("a", a), ("b", b)):
        if np.may_share_memory(out, arr) and np.shares_memory(out, arr):
            raise ValueError(f"{fn}: out must not share memory with {name}; pass a separate buffer.")


def matmul(a, b, out, accumulate=False, *, variant=None, kc=None, mc=None):
    fn = "gemm.matmul"
    _check_blocking(variant, kc, mc, fn)
    for name, arr in (("a", a), ("b", b), ("out", out)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 2:
            raise TypeError(f"{fn}: {name} must be a 2-D float32 ndarray; received "
                            f"{type(arr).__name__} {getattr(arr, 'dtype', '')} "
                            f"{getattr(arr, 'shape', '')}.")
    m, k = a.shape
    if b.shape[0] != k or out.shape != (m, b.shape[1]):
        raise ValueError(f"{fn}: shapes do not match: a {a.shape}, b {b.shape}, out {out.shape}.")
    if any(st % 4 for arr in (a, b, out) for st in arr.strides):
        raise ValueError(f"{fn}: strides must be whole floats; received a {a.strides}, "
                         f"b {b.strides}, out {out.strides}.")
    for name, arr in (("a", a), ("b", b), ("out", out)):   # UBSan: gemm.h loaded misaligned floats
        if arr.size and arr.ctypes.data % 4:
            raise ValueError(f"{fn}: {name} must be aligned to its 4-byte floats; its data starts "
                             f"{arr.ctypes.data % 4} byte(s) off. Pass an aligned array, e.g. {name}.copy().")
    lvl = _gemm.get_isa()
    if lvl < 1:
        raise RuntimeError(f"{fn}: the portable flavour has no sgemm kernel (fastnn.kernels.isa); "
                           f"use np.matmul.")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out must be writeable.")
    _check_no_alias(a, b, out, fn)
    n = out.shape[1]
    if m == 0 or n == 0:
        return out
    if n > 1 and out.strides[1] != 4:
        raise ValueError(f"{fn}: out must have contiguous rows (column stride 4 bytes); received "
                         f"strides {out.strides}.")
    if k == 0:
        if not accumulate:
            out.fill(0.0)
        return out
    v = VARIANT[lvl] if variant is None else variant
    if v not in VARIANT.values() and v not in _gemm.AVX512_VARIANTS:
        raise ValueError(f"{fn}: unknown variant {v}.")
    kcb = KC if kc is None else kc
    mcb = MC if mc is None else mc
    nk = -(-k // kcb)
    kcb = -(-k // nk)       # equal K-blocks (784 -> 2 x 392, not 392 + 392 + 0)
    mr, nr = _gemm.MR[v], _gemm.NR[v]
    kk = min(k, kcb)
    pa = _conv._workspace("gemm_pa", -(-min(m, mcb) // mr) * mr * kk)
    pb = _conv._workspace("gemm_pb", kk * (-(-n // nr)) * nr)
    _gemm.sgemm(a, b, out, bool(accumulate), pa, pb, v, kcb, mcb)
    return out
