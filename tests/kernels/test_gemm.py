"""fastnn.kernels.gemm (the AVX-512 / AVX2 sgemm of dense's per-thread blocks) against float64
matmul, and fastnn.kernels.dense with GEMM = "auto" (inside blas_pinned, where the kernel is
used). Runs under every flavour (tests/kernels/conftest.py); the portable flavour has no sgemm
kernel, so the tests of the kernel itself skip there (dense falls back to np.matmul, tested)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastnn.kernels import conv as C
from fastnn.kernels import dense as D
from fastnn.kernels import gemm as G
from fastnn.reference import gemm as RG

from fastnn._kernels import gemm as _G

# the microkernels of each flavour (0-2 AVX-512, 3 AVX2+FMA)
VARIANTS = {2: list(_G.AVX512_VARIANTS), 1: list(_G.AVX2_VARIANTS), 0: []}


@pytest.fixture
def kernel(isa):
    """The variants the flavour in force runs; skips under the portable flavour."""
    if not VARIANTS[isa]:
        pytest.skip("the portable flavour has no sgemm kernel (dense runs np.matmul there)")
    return VARIANTS[isa]


def operand(rng, rows, cols, layout):
    """(rows, cols) float32 view: 'c' contiguous, 't' a transposed array, 's' a column block
    of a wider array (row stride > cols), 'ts' a transposed column block."""
    if layout == "c":
        return rng.standard_normal((rows, cols)).astype(np.float32)
    if layout == "t":
        return rng.standard_normal((cols, rows)).astype(np.float32).T
    if layout == "s":
        return rng.standard_normal((rows, cols + 21)).astype(np.float32)[:, 5:5 + cols]
    return rng.standard_normal((cols + 7, rows + 19)).astype(np.float32)[3:3 + cols, 2:2 + rows].T


def check(a, b, out, accumulate, **kw):
    c0 = out.astype(np.float64)
    want = RG.matmul(a, b, out, accumulate)      # the float64 reference twin
    G.matmul(a, b, out, accumulate, **kw)
    k = a.shape[1]
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64) + (np.abs(c0) if accumulate else 0)
    np.testing.assert_array_less(np.abs(out - want), 1e-6 * (k + 2) * scale + 1e-30)


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 300), n=st.integers(1, 300), k=st.integers(1, 300),
       la=st.sampled_from(["c", "t", "s", "ts"]), lb=st.sampled_from(["c", "t", "s", "ts"]),
       accumulate=st.booleans(), vi=st.integers(0, 2),
       kc=st.sampled_from([16, 64, 256]), mc=st.sampled_from([12, 96]), seed=st.integers(0, 2**31))
def test_matches_float64(isa, m, n, k, la, lb, accumulate, vi, kc, mc, seed):
    if not VARIANTS[isa]:
        pytest.skip("the portable flavour has no sgemm kernel (dense runs np.matmul there)")
    variant = VARIANTS[isa][vi % len(VARIANTS[isa])]
    rng = np.random.default_rng(seed)
    a, b = operand(rng, m, k, la), operand(rng, k, n, lb)
    big = rng.standard_normal((m, n + 40)).astype(np.float32)     # out: a strided column block
    out = big[:, 17:17 + n]
    before = big.copy()
    check(a, b, out, accumulate, variant=variant, kc=kc, mc=mc)
    np.testing.assert_array_equal(big[:, :17], before[:, :17])    # nothing outside out written
    np.testing.assert_array_equal(big[:, 17 + n:], before[:, 17 + n:])


@pytest.mark.parametrize("m,k,n,la,lb", [
    (128, 784, 512, "c", "s"), (256, 1024, 512, "c", "s"),     # forward blocks
    (392, 128, 1024, "ts", "c"), (400, 128, 1024, "ts", "c"),  # dW blocks
    (128, 1024, 400, "c", "ts"), (128, 1024, 512, "c", "ts"),  # dx blocks
])
def test_m1_blocks(kernel, m, k, n, la, lb, rng):
    a, b = operand(rng, m, k, la), operand(rng, k, n, lb)
    for accumulate in (False, True):
        check(a, b, np.full((m, n), 0.5, np.float32), accumulate)


def test_overwrite_ignores_nan_in_out(kernel, rng):
    a, b = operand(rng, 37, 50, "c"), operand(rng, 50, 70, "c")
    out = np.full((37, 70), np.nan, np.float32)
    G.matmul(a, b, out)
    assert np.isfinite(out).all()


def test_nan_inf_propagate(kernel, rng):
    for variant in kernel:
        a, b = operand(rng, 40, 90, "c"), operand(rng, 90, 100, "t")
        a[3, 7] = np.nan
        a[20, 5] = np.inf
        b[11, 70] = -np.inf
        out = np.empty((40, 100), np.float32)
        G.matmul(a, b, out, variant=variant)
        with np.errstate(invalid="ignore"):
            want = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(out), np.isposinf(want))
        np.testing.assert_array_equal(np.isneginf(out), np.isneginf(want))


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 200), n=st.integers(1, 200), k=st.integers(1, 600),
       la=st.sampled_from(["c", "t"]), lb=st.sampled_from(["c", "t", "ts"]),
       cut_m=st.integers(0, 200), cut_n=st.integers(0, 200), seed=st.integers(0, 2**31))
def test_split_gives_the_same_bits(isa, m, n, k, la, lb, cut_m, cut_n, seed):
    """Any split of the product by rows or by columns (how dense shares it over threads) gives
    the bits of the whole: each element is one fma chain over k, whatever its tile."""
    if not VARIANTS[isa]:
        pytest.skip("the portable flavour has no sgemm kernel (dense runs np.matmul there)")
    rng = np.random.default_rng(seed)
    a, b = operand(rng, m, k, la), operand(rng, k, n, lb)
    whole = np.empty((m, n), np.float32)
    G.matmul(a, b, whole)
    cm, cn = cut_m % (m + 1), cut_n % (n + 1)
    parts = np.empty((m, n), np.float32)
    G.matmul(a[:cm], b, parts[:cm])
    G.matmul(a[cm:], b[:, :cn], parts[cm:, :cn])
    G.matmul(a[cm:], b[:, cn:], parts[cm:, cn:])
    np.testing.assert_array_equal(parts, whole)


def test_empty_and_k0(kernel, rng):
    out = np.full((3, 4), 7.0, np.float32)
    G.matmul(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), out, True)
    assert (out == 7).all()
    G.matmul(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), out)
    assert (out == 0).all()
    G.matmul(np.zeros((0, 5), np.float32), np.zeros((5, 4), np.float32), np.empty((0, 4), np.float32))


def test_validation(kernel):
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="a must"):
        G.matmul(a.astype(np.float64), np.zeros((4, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="shapes"):
        G.matmul(a, np.zeros((5, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="contiguous rows"):
        G.matmul(a, np.zeros((4, 2), np.float32), np.zeros((2, 3), np.float32).T)


@pytest.fixture
def gemm_mode():
    old = D.GEMM
    yield
    D.GEMM = old


@pytest.mark.parametrize("m,k,u", [(128, 784, 1024), (256, 1024, 1024), (70, 333, 200), (128, 1024, 10)])
def test_dense_with_own_gemm(m, k, u, rng, gemm_mode):
    """dense / dense_backward in a model step (pinned: per-thread shares on our kernel) agree with
    float64 and with the BLAS path to float32 rounding."""
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((k, u)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(u).astype(np.float32)
    dy = rng.standard_normal((m, u)).astype(np.float32)
    res = {}
    with C.blas_pinned():
        for mode in ("auto", "blas"):
            D.GEMM = mode
            y = D.dense(x, w, b, "relu")
            dx, dw, db = D.dense_backward(x, w, dy)
            res[mode] = (y, dx, dw, db)
    x64, w64, dy64 = (v.astype(np.float64) for v in (x, w, dy))
    want = (np.maximum(x64 @ w64 + b, 0), dy64 @ w64.T, x64.T @ dy64, dy64.sum(0))
    tol = [2e-6 * np.sqrt(k), 2e-6 * np.sqrt(u), 2e-6 * np.sqrt(m), 1e-5]
    for mode in ("auto", "blas"):
        for got, exp, t in zip(res[mode], want, tol):
            np.testing.assert_allclose(got, exp, rtol=1e-5, atol=t)
