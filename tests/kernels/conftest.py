"""Every kernel test runs once per instruction-set flavour this CPU has (fastnn.kernels.isa):
a session-scoped, parametrised, autouse fixture, so pytest runs the whole kernel suite under
avx512, then avx2, then portable (on a CPU without AVX-512 the first is left out, and
tests/kernels/test_isa.py reports the missing flavour as a skip with its reason). Session scope
keeps it usable from hypothesis tests. FASTNN_ISA=<flavour> in the environment runs that
flavour only."""
import os

import pytest

from fastnn.kernels import isa as _isa

LEVELS = {name: i for i, name in enumerate(_isa.FLAVOURS)}


_ONLY = os.environ.get("FASTNN_ISA", "").strip().lower()


@pytest.fixture(scope="session", autouse=True, params=[_ONLY] if _ONLY else list(_isa.supported()))
def flavour(request):
    """The flavour every kernel runs in this test (its name)."""
    with _isa.forced(request.param):
        yield request.param


@pytest.fixture(scope="session")
def isa(flavour):
    """The flavour in force as the compiled modules number it (0 portable, 1 avx2, 2 avx512)."""
    return LEVELS[flavour]
