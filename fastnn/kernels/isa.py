"""Instruction-set flavours of the compiled kernels: one switch for every kernel module.

The default build targets baseline x86-64, so one package runs on any x86-64 CPU; the hot loops
are also compiled for AVX2+FMA and for AVX-512 and every kernel module picks a body at run time
(kernels/isa.h). The flavours:

    "avx512"    x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Skylake-X, Ice Lake, Sapphire Rapids, Zen 4/5)
    "avx2"      x86-64-v3: AVX2 + FMA (Haswell and later, Zen 1-3, Intel client chips since
                Alder Lake)
    "portable"  the baseline build (SSE2 on x86-64)

fastnn runs the best flavour the CPU has. The environment variable FASTNN_ISA (read when
fastnn.kernels is imported) or `set_isa(name)` pick another one, so every flavour can be run
and tested on a machine that has it; asking for one the CPU lacks is a ValueError. A module
without a body of the chosen flavour runs its next lower one (e.g. the activation loops have no
AVX-512 body, so "avx512" runs their AVX2 body); `info()` says which body each kernel runs.

Results within one flavour do not depend on the thread count; two flavours differ in the last
bits (FMA contraction, other GEMM kernels), never by more than float32 rounding.
BLAS (NumPy's GEMMs, used by the convolutions) picks its own kernels by CPU: FASTNN_ISA does
not change them (OpenBLAS's OPENBLAS_CORETYPE does).
"""
from __future__ import annotations

import contextlib
import os

from fastnn.kernels import threads as _threads  # noqa: F401  (sets OMP_WAIT_POLICY before libgomp loads)
from fastnn._kernels import activation as _activation  # isort: skip
from fastnn._kernels import conv_direct as _conv_direct
from fastnn._kernels import depthwise as _depthwise
from fastnn._kernels import gemm as _gemm
from fastnn._kernels import loss as _loss
from fastnn._kernels import norm as _norm
from fastnn._kernels import pool as _pool
from fastnn._kernels import rnn as _rnn
from fastnn._kernels import winograd as _winograd

__all__ = ["FLAVOURS", "supported", "best", "get_isa", "set_isa", "forced", "level", "info"]

FLAVOURS = ("portable", "avx2", "avx512")      # index = the level the compiled modules take
_MODULES = {"activation": _activation, "loss": _loss, "norm": _norm, "conv_direct": _conv_direct,
            "winograd": _winograd, "gemm": _gemm, "pool": _pool, "depthwise": _depthwise, "rnn": _rnn}
_state = {"level": None}


def supported() -> tuple[str, ...]:
    """The flavours this CPU runs, best first."""
    return tuple(FLAVOURS[i] for i in (2, 1, 0) if _norm.isa_supported(i))


def best() -> str:
    return supported()[0]


def _level(name) -> int:
    if not isinstance(name, str) or name.lower() not in FLAVOURS:
        raise ValueError(f"FASTNN_ISA / set_isa: unknown instruction-set flavour {name!r}; use one "
                         f"of {', '.join(FLAVOURS)} (this CPU runs: {', '.join(supported())}).")
    lvl = FLAVOURS.index(name.lower())
    if not _norm.isa_supported(lvl):
        need = {"avx2": "AVX2 and FMA (x86-64-v3)",
                "avx512": "AVX-512 F, BW, CD, DQ and VL (x86-64-v4)"}[FLAVOURS[lvl]]
        raise ValueError(f"FASTNN_ISA / set_isa: the {FLAVOURS[lvl]!r} flavour needs {need}, which "
                         f"this CPU lacks; it runs: {', '.join(supported())}. Unset FASTNN_ISA "
                         f"or pick one of those.")
    return lvl


def set_isa(name: str) -> str:
    """Run every kernel in flavour `name` ("avx512", "avx2" or "portable") from now on; returns
    the previous flavour. Not while kernels run in other threads."""
    lvl = _level(name)
    old = None if _state["level"] is None else FLAVOURS[_state["level"]]
    for mod in _MODULES.values():
        mod.set_isa(lvl)
    _state["level"] = lvl
    return old


def get_isa() -> str:
    """The flavour in force."""
    if _state["level"] is None:
        _apply_env()
    return FLAVOURS[_state["level"]]


def level() -> int:
    """The flavour in force as the compiled modules take it (0 portable, 1 avx2, 2 avx512)."""
    if _state["level"] is None:
        _apply_env()
    return _state["level"]


@contextlib.contextmanager
def forced(name: str):
    """Context in which every kernel runs flavour `name` (tests, benchmarks)."""
    old = set_isa(name)
    try:
        yield name
    finally:
        set_isa(old)


def _apply_env() -> None:
    env = os.environ.get("FASTNN_ISA", "").strip()
    set_isa(env if env else best())


def info() -> dict:
    """The body each kernel runs under the flavour in force (for `fastnn info`)."""
    lvl = level()
    wide = {2: "avx512", 1: "avx2", 0: "portable"}
    return {
        "flavour": FLAVOURS[lvl],
        "supported": list(supported()),
        "kernels": {
            "conv direct (few input channels)": wide[lvl] + (" (avx2 where it pads F less)" if lvl == 2 else ""),
            "conv winograd transforms": wide[lvl],
            "depthwise conv": wide[lvl],
            "conv im2col / 1x1 / winograd GEMMs": "BLAS (np.matmul)",
            "dense GEMM": {2: "fastnn sgemm avx512 (6x64)",
                           1: "BLAS (np.matmul, 4 fixed blocks; fastnn sgemm avx2 (6x16) with "
                              "dense.GEMM = 'own')",
                           0: "BLAS (np.matmul)"}[lvl],
            "batch norm": wide[lvl],
            "recurrent GEMM (rnn time loops)": wide[lvl],
            "activations, losses": "avx2" if lvl >= 1 else "portable",
            "pooling (global average)": "avx" if lvl >= 1 else "portable",
            "pooling (others), im2col, dropout, optimizer step": "portable (auto-vectorised)",
        },
    }


_apply_env()
