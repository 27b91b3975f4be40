"""fastnn.kernels.isa: the instruction-set flavour switch (FASTNN_ISA) that every kernel obeys."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn._kernels import activation as _act
from fastnn._kernels import conv_direct as _cd
from fastnn._kernels import gemm as _gemm
from fastnn._kernels import loss as _loss
from fastnn._kernels import norm as _norm
from fastnn._kernels import pool as _pool
from fastnn._kernels import winograd as _wg
from fastnn.kernels import activation, conv, dense, isa

MODULES = (_act, _loss, _norm, _cd, _wg, _gemm, _pool)
NEEDS = {"avx512": "avx512f avx512bw avx512cd avx512dq avx512vl", "avx2": "avx2 fma",
         "portable": ""}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@pytest.mark.parametrize("name", isa.FLAVOURS)
def test_every_flavour_runs_or_says_why_not(name, flavour):
    """Each flavour this CPU has is switchable and runs (the whole kernel suite runs under it,
    see conftest.py); a flavour it lacks is reported here as a skip with the reason."""
    if name not in isa.supported():
        flags = cpu_flags()
        missing = sorted(set(NEEDS[name].split()) - (flags or set()))
        pytest.skip(f"{name} flavour not tested: this CPU lacks {', '.join(missing) or NEEDS[name]}")
    with isa.forced(name):
        assert isa.get_isa() == name
        lvl = isa.FLAVOURS.index(name)
        assert [m.get_isa() for m in MODULES] == [lvl] * len(MODULES)
        x = np.linspace(-3, 3, 1000, dtype=np.float32)
        np.testing.assert_allclose(activation.apply("tanh", x), np.tanh(x), atol=2e-7)
    assert isa.get_isa() == flavour                       # restored


def test_supported_matches_cpu_flags():
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    for name in ("avx2", "avx512"):
        has = set(NEEDS[name].split()) <= flags
        assert (name in isa.supported()) == has, (name, isa.supported())
    assert isa.supported()[-1] == "portable"


def test_unknown_or_missing_flavour_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown instruction-set flavour 'avx3'"):
        isa.set_isa("avx3")
    for m in MODULES:
        with pytest.raises(ValueError, match="flavour 3"):
            m.set_isa(3)
    missing = [f for f in isa.FLAVOURS if f not in isa.supported()]
    for name in missing:
        with pytest.raises(ValueError, match="this CPU lacks"):
            isa.set_isa(name)


@pytest.mark.parametrize("value, ok", [("portable", True), ("AVX2", None), ("avx3", False),
                                       ("avx512", None)])
def test_env_var_at_import(tmp_path, value, ok):
    if ok is None:
        ok = value.lower() in isa.supported()
    code = ("import fastnn.kernels as K; from fastnn._kernels import norm, winograd; "
            "print(K.isa.get_isa(), norm.get_isa(), winograd.get_isa())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=dict(os.environ, FASTNN_ISA=value))
    if ok:
        lvl = isa.FLAVOURS.index(value.lower())
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [value.lower(), str(lvl), str(lvl)]
    else:
        assert r.returncode != 0
        assert "FASTNN_ISA" in r.stderr and ("unknown" in r.stderr or "lacks" in r.stderr)


def test_direct_kernels_refuse_a_flavour_above_the_module(rng):
    if _cd.get_isa() == 2:
        pytest.skip("every flavour is allowed under avx512")
    x = rng.standard_normal((1, 5, 5, 1), dtype=np.float32)
    wp = np.zeros((9, 16), np.float32)
    with pytest.raises(ValueError, match="above this module's flavour"):
        _cd.forward(x, wp, np.zeros(16, np.float32), np.zeros(64, np.float32), 3, 3, 3, 3, 1, 1,
                    1, 1, 0, 0, 0, 3, np.zeros((9, 16), np.float32), False, 2)


def test_info_names_the_body_of_each_kernel():
    info = isa.info()
    assert info["flavour"] == isa.get_isa()
    assert info["supported"] == list(isa.supported())
    gemm = info["kernels"]["dense GEMM"]
    assert ("avx512" in gemm) == (isa.get_isa() == "avx512")
    assert ("avx2" in gemm) == (isa.get_isa() == "avx2")
    # dense's "auto" takes fastnn's sgemm only in the avx512 flavour (avx2: OpenBLAS was faster)
    assert ("np.matmul" in gemm) == (isa.get_isa() != "avx512")
    assert dense._own(128, 784, 1024) == (isa.get_isa() == "avx512")
    assert conv._isa(64) == {"avx512": 2, "avx2": 1, "portable": 0}[isa.get_isa()]
