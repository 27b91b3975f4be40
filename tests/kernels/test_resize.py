"""fastnn.kernels.resize against the per-pixel reference, its backward as the exact adjoint, and
the checks."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnn.kernels import resize as K
from fastnn.reference import resize as R


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(1, 12),
       st.integers(1, 12), st.sampled_from(K.INTERPOLATIONS), st.integers(0, 2**32 - 1))
def test_resize_matches_reference(n, h, w, c, oh, ow, interpolation, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    y = K.resize(x, (oh, ow), interpolation)
    ref = R.resize(x.astype(np.float64), (oh, ow), interpolation)
    assert y.shape == ref.shape == (n, oh, ow, c)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)     # float32 lerps of O(1) values
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = K.resize_backward(dy, x.shape, interpolation)
    np.testing.assert_allclose(dx, R.resize_backward(dy.astype(np.float64), x.shape, interpolation),
                               rtol=1e-5, atol=1e-5)
    # the backward is the adjoint of the (linear) forward: <resize(x), dy> = <x, resize_backward(dy)>
    np.testing.assert_allclose(np.vdot(y.astype(np.float64), dy), np.vdot(x.astype(np.float64), dx),
                               rtol=1e-5, atol=1e-4)


def test_known_values():
    """Half-pixel centres: 4 -> 2 bilinear averages pairs; 2 -> 4 puts 1/4, 3/4 weights inside
    and copies the edges; nearest 4 -> 3 picks 0, 2, 3 (floor((o + 0.5) * 4/3))."""
    x = np.array([0, 1, 2, 3], np.float32).reshape(1, 1, 4, 1)
    np.testing.assert_array_equal(K.resize(x, (1, 2)).ravel(), [0.5, 2.5])
    np.testing.assert_array_equal(K.resize(x, (1, 3), "nearest").ravel(), [0, 2, 3])
    x2 = np.array([0, 4], np.float32).reshape(1, 1, 2, 1)
    np.testing.assert_array_equal(K.resize(x2, (1, 4)).ravel(), [0, 1, 3, 4])
    same = np.random.default_rng(0).standard_normal((2, 5, 6, 3), dtype=np.float32)
    np.testing.assert_array_equal(K.resize(same, (5, 6)), same)


def test_out_buffer_and_checks():
    x = np.ones((1, 4, 4, 2), np.float32)
    out = np.full((1, 2, 3, 2), 9, np.float32)
    assert K.resize(x, (2, 3), out=out) is out and (out == 1).all()
    with pytest.raises(ValueError, match="interpolation must be one of"):
        K.resize(x, (2, 2), "bicubic")
    with pytest.raises(ValueError, match="size must be"):
        K.resize(x, (0, 2))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        K.resize(x.astype(np.float64), (2, 2))
    with pytest.raises(ValueError, match="does not match x_shape"):
        K.resize_backward(np.ones((1, 2, 2, 3), np.float32), (1, 4, 4, 2))
