"""Every kernel test runs once per instruction-set flavour this CPU has (fastnn.kernels.isa):
a session-scoped, parametrised, autouse fixture, so pytest runs the whole kernel suite under
avx512, then avx2, then portable (on a CPU without AVX-512 the first is left out, and
tests/kernels/test_isa.py reports the missing flavour as a skip with its reason). Session scope
keeps it usable from hypothesis tests. FASTNN_ISA=<flavour> in the environment runs that
flavour only."""
import os

import numpy as np
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


# A float32 sum of products is off its float64 value by a few eps32 times the sum of the
# |products|; the Winograd transforms spread that over a tile, so the bound is per tensor:
# |kernel - reference| <= TERMS_EPS * eps32 * max(sum of |products|). Measured over 600 random
# shapes on every convolution path (direct, Winograd, im2col; forward, dx, dw, db; the default
# and OpenBLAS's Haswell kernels): <= 2.0.
TERMS_EPS = 8
EPS32 = float(np.finfo(np.float32).eps)


def _f64(arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def conv_close(got, ref_fn, operands, *args, post=None, **kwargs):
    """got (an array, or a backward's tuple) against ref_fn in float64 on operands (then post,
    e.g. a ReLU), within TERMS_EPS eps32 of the largest sum of |products| (ref_fn on |operands|)."""
    want = ref_fn(*_f64(operands), *args, **kwargs)
    want = want if post is None else post(want)
    terms = ref_fn(*[None if a is None else np.abs(a) for a in _f64(operands)], *args, **kwargs)
    if not isinstance(want, tuple):
        got, want, terms = (got,), (want,), (terms,)
    for g, r, t in zip(got, want, terms, strict=True):
        if r is None:
            assert g is None
            continue
        assert g.dtype == np.float32 and g.shape == r.shape, (g.dtype, g.shape, r.shape)
        bound = TERMS_EPS * EPS32 * np.abs(t).max(initial=0.0)
        err = np.abs(g - r).max(initial=0.0)
        assert err <= bound, f"max |err| {err:.3g} > {bound:.3g} ({TERMS_EPS} eps32 max sum|products|)"


@pytest.fixture(scope="session", name="conv_close")
def conv_close_fixture():
    """conv_close(got, ref_fn, operands, *args, post=None, **kwargs): a convolution kernel's
    result against fastnn.reference.conv within the float32 rounding of its sums."""
    return conv_close


def _numgrad(f, a, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every element of a (changed in place and
    restored): (f(a + eps) - f(a - eps)) / 2 eps."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.fixture
def numgrad():
    """numgrad(f, a): the numerical gradient of f() w.r.t. the float64 array a."""
    return _numgrad
