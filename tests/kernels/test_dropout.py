"""fastnn.kernels.dropout: reference mask, determinism, thread independence, keep-rate statistics."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastnn.kernels import dropout as dk, threads
from fastnn.reference import dropout as ref

shapes = st.one_of(
    st.tuples(st.integers(1, 50), st.integers(1, 33)),
    st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 7), st.integers(1, 9)),
    st.tuples(st.integers(1, 9000)),
)


@given(shape=shapes, seed=st.integers(0, 2**64 - 1), rate=st.sampled_from([0.0, 1e-9, 0.1, 0.5, 0.75, 0.999]))
def test_matches_reference(shape, seed, rate):
    x = np.random.default_rng(seed % 2**32).standard_normal(shape).astype(np.float32)
    y, mask = dk.dropout(x, rate, seed)
    y_r, mask_r = ref.dropout(x, rate, seed)
    assert y.dtype == np.float32 and mask.dtype == np.uint8 and y.shape == mask.shape == shape
    np.testing.assert_array_equal(mask, mask_r)
    np.testing.assert_array_equal(y, y_r)   # same float32 product x * float32(1/(1 - rate))
    dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(dk.dropout_backward(dy, mask, rate), ref.dropout_backward(dy, mask, rate))


def test_inverted_scaling_and_zeros(rng):
    x = rng.standard_normal((40, 50)).astype(np.float32)
    y, mask = dk.dropout(x, 0.3, 7)
    keep = mask.astype(bool)
    assert set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(y[~keep], 0)
    np.testing.assert_allclose(y[keep], x[keep] / np.float32(0.7), rtol=2e-7)


def test_rate_zero_copies_with_all_ones_mask(rng):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    y, mask = dk.dropout(x, 0.0, 123)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    assert mask.dtype == np.uint8 and (mask == 1).all()
    np.testing.assert_array_equal(dk.dropout_backward(x, mask, 0.0), x)


def test_deterministic_per_seed():
    x = np.ones((64, 1000), np.float32)
    y1, m1 = dk.dropout(x, 0.5, 2024)
    y2, m2 = dk.dropout(x, 0.5, 2024)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    _, m3 = dk.dropout(x, 0.5, 2025)
    assert (m1 != m3).mean() > 0.45   # nearby seeds give unrelated masks
    # a prefix of a larger array has the same mask (the mask is a function of the index)
    _, m4 = dk.dropout(np.ones(64 * 1000 + 3, np.float32), 0.5, 2024)
    np.testing.assert_array_equal(m4[:64000], m1.reshape(-1))
    # numpy integer seeds and seeds beyond 2**63 work (taken modulo 2**64)
    np.testing.assert_array_equal(dk.dropout(x, 0.5, np.uint64(2024))[1], m1)
    np.testing.assert_array_equal(dk.dropout(x, 0.5, 2024 + 2**64)[1], m1)
    dk.dropout(x, 0.5, 2**64 - 1)


def test_thread_count_independence():
    x = np.random.default_rng(0).standard_normal((16, 32, 32, 8)).astype(np.float32)
    n0 = threads.get_num_threads()
    res = []
    try:
        for n in (1, 2):
            threads.set_num_threads(n)
            y, m = dk.dropout(x, 0.37, 99)
            res.append((y, m, dk.dropout_backward(x, m, 0.37)))
    finally:
        threads.set_num_threads(n0)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [1e-3, 0.1, 0.25, 0.5, 0.9, 0.99])
def test_keep_rate_within_binomial_tolerance(rate):
    n = 1_000_003
    x = np.ones(n, np.float32)
    p = 1.0 - rate
    sd = np.sqrt(n * p * (1 - p))
    for seed in (1, 2, 3):
        _, m = dk.dropout(x, rate, seed)
        assert abs(int(m.sum()) - n * p) < 5 * sd   # 5 sigma: false alarm ~ 6e-7 per draw
    # and no structure: neighbours and the two halves of one hash are independent
    _, m = dk.dropout(x, rate, 11)
    both = (m[:-1] & m[1:]).mean()
    assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / (n - 1)) + 1e-6
    even_odd = (m[0:-1:2] & m[1::2]).mean()
    assert abs(even_odd - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / (n // 2)) + 1e-6


def test_uniforms_are_uniform():
    u = ref.uniform_u32(200_000, 5).astype(np.float64) / 2**32
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = len(u) / 20
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 50   # 19 dof: P(chi2 > 50) ~ 1e-4


def test_backward_matches_formula(rng):
    dy = rng.standard_normal((7, 9, 5)).astype(np.float32)
    _, mask = dk.dropout(dy, 0.4, 3)
    dx = dk.dropout_backward(dy, mask, 0.4)
    np.testing.assert_allclose(dx, dy * mask / 0.6, rtol=1e-6)
    # any nonzero mask byte means kept
    m2 = mask * 7
    np.testing.assert_array_equal(dk.dropout_backward(dy, m2, 0.4), dx)


def test_out_buffers_in_place_and_read_only(rng):
    x = rng.standard_normal((6, 11)).astype(np.float32)
    out, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    y, m = dk.dropout(x, 0.5, 1, out=out, mask=mask)
    assert y is out and m is mask
    xc = x.copy()
    y2, _ = dk.dropout(xc, 0.5, 1, out=xc)
    assert y2 is xc
    np.testing.assert_array_equal(y2, y)
    ro = x.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(dk.dropout(ro, 0.5, 1)[0], y)
    dx = np.empty_like(x)
    assert dk.dropout_backward(ro, m, 0.5, dx=dx) is dx
    dyc = x.copy()
    assert dk.dropout_backward(dyc, m, 0.5, dx=dyc) is dyc
    np.testing.assert_array_equal(dyc, dx)
    m.setflags(write=False)
    dk.dropout_backward(ro, m, 0.5)
    xc = x.copy()
    assert dk.dropout(xc, 0.0, 1, out=xc)[0] is xc
    np.testing.assert_array_equal(xc, x)


def test_nan_inf_propagate_where_kept(rng):
    x = np.full(1000, np.nan, np.float32)
    x[::2] = np.inf
    y, m = dk.dropout(x, 0.5, 4)
    keep = m.astype(bool)
    assert np.isnan(y[keep & np.isnan(x)]).all() and np.isinf(y[keep & np.isinf(x)]).all()
    np.testing.assert_array_equal(y[~keep], 0)   # dropped means 0, as Keras's np.where
    dx = dk.dropout_backward(x, m, 0.5)
    assert np.isnan(dx[keep & np.isnan(x)]).all()
    np.testing.assert_array_equal(dx[~keep], 0)


def test_empty_and_scalar():
    y, m = dk.dropout(np.empty((0, 3), np.float32), 0.5, 1)
    assert y.shape == m.shape == (0, 3)
    assert dk.dropout_backward(y, m, 0.5).shape == (0, 3)
    y, m = dk.dropout(np.ones((), np.float32), 0.5, 1)
    assert y.shape == m.shape == ()


@pytest.mark.parametrize("kw, exc, match", [
    (dict(rate=1.0), ValueError, "rate must be a finite number in"),
    (dict(rate=1.5), ValueError, "rate"),
    (dict(rate=-0.1), ValueError, "rate"),
    (dict(rate=float("nan")), ValueError, "rate"),
    (dict(rate="0.5"), TypeError, "rate must be a real number"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(seed=True), TypeError, "seed must be an int"),
    (dict(seed=None), TypeError, "seed must be an int"),
    (dict(x=[1.0, 2.0]), TypeError, "x must be a numpy.ndarray"),
    (dict(x=np.ones(4)), TypeError, "x must have dtype float32"),
    (dict(x=np.ones((4, 4), np.float32)[:, ::2]), ValueError, "x must be C-contiguous"),
    (dict(out=np.empty((4, 3), np.float32)), ValueError, "out must have shape"),
    (dict(out=np.empty((4, 2), np.float64)), TypeError, "out must have dtype float32"),
    (dict(mask=np.empty((4, 2), np.bool_)), TypeError, "mask must have dtype uint8"),
    (dict(mask=np.empty((2, 4), np.uint8)), ValueError, "mask must have shape"),
])
def test_forward_validation(kw, exc, match):
    args = dict(x=np.ones((4, 2), np.float32), rate=0.5, seed=1)
    args.update(kw)
    with pytest.raises(exc, match=match) as e:
        dk.dropout(**args)
    assert "dropout" in str(e.value)


def test_forward_validation_aliasing():
    x = np.ones((4, 2), np.float32)
    buf = np.empty(10, np.float32)
    with pytest.raises(ValueError, match="out must not share memory with x"):
        dk.dropout(buf[:8].reshape(4, 2), 0.5, 1, out=buf[2:].reshape(4, 2))
    with pytest.raises(ValueError, match="mask must not share memory with x"):
        dk.dropout(x, 0.5, 1, mask=x.reshape(-1).view(np.uint8)[:8].reshape(4, 2))
    ro = np.empty((4, 2), np.uint8)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="mask is written to"):
        dk.dropout(x, 0.5, 1, mask=ro)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(rate=1.0), ValueError, "rate"),
    (dict(rate=-1e-9), ValueError, "rate"),
    (dict(dy=np.ones((4, 2))), TypeError, "dy must have dtype float32"),
    (dict(mask=np.ones((4, 2), np.float32)), TypeError, "mask must have dtype uint8"),
    (dict(mask=np.ones((4, 3), np.uint8)), ValueError, r"mask must have shape \(4, 2\)"),
    (dict(mask=np.ones((4, 4), np.uint8)[:, ::2]), ValueError, "mask must be C-contiguous"),
    (dict(dx=np.empty((4, 3), np.float32)), ValueError, "dx must have shape"),
])
def test_backward_validation(kw, exc, match):
    args = dict(dy=np.ones((4, 2), np.float32), mask=np.ones((4, 2), np.uint8), rate=0.5)
    args.update(kw)
    with pytest.raises(exc, match=match) as e:
        dk.dropout_backward(**args)
    assert "dropout_backward" in str(e.value)


def test_reference_mum_is_the_128_bit_product():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**64, 1000, dtype=np.uint64, endpoint=False)
    b = rng.integers(0, 2**64, 1000, dtype=np.uint64, endpoint=False)
    got = ref._mum(a, b)
    for x, y, g in zip(a.tolist(), b.tolist(), got.tolist()):
        p = x * y
        assert g == (p >> 64) ^ (p & (2**64 - 1))


@pytest.mark.parametrize("rate", [0.3, 0.5 + 2**-30])
def test_ties_on_the_high_16_bits_are_decided_by_the_low_bits(rate):
    n = (1 << 20) + 3
    x = np.ones(n, np.float32)
    thr = dk.drop_threshold(rate)
    u = ref.uniform_u32(n, 77)
    ties = (u >> np.uint64(16)) == np.uint64(thr >> 16)
    assert ties.sum() > 3   # ~16 expected: the rare path runs
    _, m = dk.dropout(x, rate, 77)
    np.testing.assert_array_equal(m, (u >= np.uint64(thr)).astype(np.uint8))
    np.testing.assert_array_equal(m, ref.dropout(x, rate, 77)[1])


# ---- offset: slices of a batch reproduce the whole batch's mask (data-parallel processes)
@given(n=st.integers(1, 20000), cut=st.integers(0, 20000), seed=st.integers(0, 2**64 - 1),
       rate=st.sampled_from([0.1, 0.5, 0.999]))
def test_offset_slices_reproduce_the_whole_mask(n, cut, seed, rate):
    cut = min(cut, n - 1)
    x = np.random.default_rng(seed % 2**32).standard_normal(n).astype(np.float32)
    y, mask = dk.dropout(x, rate, seed)
    y2, m2 = dk.dropout(np.ascontiguousarray(x[cut:]), rate, seed, offset=cut)
    np.testing.assert_array_equal(m2, mask[cut:])
    np.testing.assert_array_equal(y2, y[cut:])
    y_r, m_r = ref.dropout(x[cut:], rate, seed, offset=cut)
    np.testing.assert_array_equal(m2, m_r)
    np.testing.assert_array_equal(y2, y_r)


def test_offset_is_thread_independent_and_checked(rng):
    x = rng.standard_normal(3 * 4096 + 77).astype(np.float32)
    masks = []
    n0 = threads.get_num_threads()
    try:
        for n in (1, 2):
            threads.set_num_threads(n)
            masks.append(dk.dropout(x, 0.4, 3, offset=2**40 + 5)[1])
    finally:
        threads.set_num_threads(n0)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], ref.dropout(x, 0.4, 3, offset=2**40 + 5)[1])
    for bad in (-1, 2**63, 1.5, True):
        with pytest.raises(ValueError, match="offset"):
            dk.dropout(x, 0.4, 3, offset=bad)
