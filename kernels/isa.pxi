# The instruction-set flavour of one kernel module (kernels/isa.h), `include`d by every module
# that has per-flavour bodies, after it defines `cdef void _apply_isa(int isa) noexcept nogil`
# (what switching flavour means for its C code). fastnn.kernels.isa sets every module at once
# (env FASTNN_ISA); a module imported on its own starts on the best flavour this CPU runs.
# Flavours: 0 portable (baseline build), 1 avx2 (x86-64-v3), 2 avx512 (x86-64-v4).

cdef extern from "isa.h" nogil:
    int fnn_isa_supported(int isa)
    int fnn_isa_best()

def _flavour_from_env():
    """FASTNN_ISA (portable, avx2 or avx512) if set, else the best flavour this CPU runs."""
    import os
    name = os.environ.get("FASTNN_ISA", "").strip().lower()
    if not name:
        return fnn_isa_best()
    levels = {"portable": 0, "avx2": 1, "avx512": 2}
    if name not in levels:
        raise ValueError(f"FASTNN_ISA={name!r}: unknown instruction-set flavour; use portable, "
                         f"avx2 or avx512 (or unset it for the best this CPU runs).")
    if not fnn_isa_supported(levels[name]):
        raise ValueError(f"FASTNN_ISA={name!r}: this CPU lacks the instructions of that flavour "
                         f"(avx2 needs x86-64-v3: AVX2 + FMA; avx512 needs x86-64-v4: AVX-512 "
                         f"F/BW/CD/DQ/VL). Unset FASTNN_ISA or pick a lower flavour.")
    return levels[name]


cdef int _isa = _flavour_from_env()
_apply_isa(_isa)


def isa_supported(int isa):
    """True if this CPU runs flavour isa (0 portable, 1 AVX2+FMA, 2 AVX-512)."""
    return bool(fnn_isa_supported(isa))


def get_isa():
    """The flavour this module's kernels run (0 portable, 1 AVX2+FMA, 2 AVX-512)."""
    return _isa


def set_isa(int isa):
    """Run flavour isa from now on (not while a kernel of this module runs); returns the old
    one. ValueError if this CPU lacks it."""
    global _isa
    if isa < 0 or isa > 2 or not fnn_isa_supported(isa):
        raise ValueError(f"set_isa: flavour {isa} is not available on this CPU "
                         f"(best: {fnn_isa_best()}; 0 portable, 1 avx2, 2 avx512)")
    cdef int old = _isa
    _isa = isa
    _apply_isa(isa)
    return old
