"""fastnn.kernels.merge against fastnn.reference.merge (many shapes), numerical gradients, out=
buffers and argument checks. Tolerances: one float32 rounding per op against the float64
reference (rtol 1e-6, atol 5e-7 where sums cancel); batch dot sums k products (rtol 1e-5,
measured <= 2e-6)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastnn.kernels import merge as mk
from fastnn.reference import merge as ref

shapes = st.one_of(st.tuples(st.integers(1, 9), st.integers(1, 17)),
                   st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), st.integers(1, 6)))


@given(shape=shapes, op=st.sampled_from(mk.OPS), k=st.integers(2, 4), seed=st.integers(0, 2**31))
def test_elementwise_matches_reference(shape, op, k, seed):
    if op == "subtract":
        k = 2
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(k)]
    y = mk.elementwise(op, xs)
    # float32 sums/products of 2-4 N(0, 1) values round at ~1.2e-7 absolute (measured) where the
    # float64 reference cancels to near 0: atol 5e-7
    np.testing.assert_allclose(y, ref.elementwise(op, xs), rtol=1e-6, atol=5e-7)
    dy = rng.standard_normal(shape).astype(np.float32)
    for a, b in zip(mk.elementwise_backward(op, xs, y, dy), ref.elementwise_backward(op, xs, y, dy)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=5e-7)


def test_maximum_ties_go_to_the_first_input():
    a = np.array([[1.0, 2.0, 3.0]], np.float32)
    b = np.array([[1.0, 5.0, 3.0]], np.float32)
    y = mk.elementwise("maximum", [a, b])
    da, db = mk.elementwise_backward("maximum", [a, b], y, np.ones_like(a))
    np.testing.assert_array_equal(da, [[1, 0, 1]])
    np.testing.assert_array_equal(db, [[0, 1, 0]])


@given(n=st.integers(1, 4), sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       axis=st.sampled_from([1, 2, -1]), seed=st.integers(0, 2**31))
def test_concatenate_matches_reference(n, sizes, axis, seed):
    rng = np.random.default_rng(seed)
    xs = []
    for s in sizes:
        shape = [n, 3, 2]
        shape[axis] = s
        xs.append(rng.standard_normal(shape).astype(np.float32))
    y = mk.concatenate(xs, axis)
    np.testing.assert_array_equal(y, ref.concatenate(xs, axis))
    for a, b in zip(mk.concatenate_backward(y, sizes, axis), ref.concatenate_backward(y, sizes, axis)):
        np.testing.assert_array_equal(a, b)


dot_cases = [((5, 7), (5, 7), 1), ((4, 3, 6), (4, 6, 2), (2, 1)), ((2, 5, 3), (2, 5, 4), 1),
             ((3, 4, 6), (3, 2, 6), (2, 2)), ((3, 4, 6), (3, 4, 6), -1)]


@pytest.mark.parametrize("sa, sb, axes", dot_cases)
def test_batch_dot_matches_reference_and_numerical_gradient(sa, sb, axes, rng):
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    y = mk.batch_dot(a, b, axes)
    np.testing.assert_allclose(y, ref.batch_dot(a, b, axes), rtol=1e-5, atol=1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    da, db = mk.batch_dot_backward(a, b, dy, axes)
    ra, rb = ref.batch_dot_backward(a, b, dy, axes)
    np.testing.assert_allclose(da, ra, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, rb, rtol=1e-5, atol=1e-6)
    # central differences of sum(dy * batch_dot(a, b)) in float64 through the reference
    eps = 1e-3
    for arr, grad in ((a, da), (b, db)):
        for idx in list(np.ndindex(arr.shape))[:6]:
            orig = arr[idx]
            arr[idx] = orig + eps
            lp = float(np.sum(dy * ref.batch_dot(a, b, axes)))
            arr[idx] = orig - eps
            lm = float(np.sum(dy * ref.batch_dot(a, b, axes)))
            arr[idx] = orig
            assert abs((lp - lm) / (2 * eps) - grad[idx]) < 2e-2 * max(1.0, abs(grad[idx]))


@given(shape=shapes, seed=st.integers(0, 2**31))
def test_l2_normalize_matches_reference(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    if seed % 5 == 0:
        x[0] = 0.0           # a zero row: the 1/1e-7 floor
    u, inv = mk.l2_normalize(x, -1)
    ru, rinv = ref.l2_normalize(x, -1)
    np.testing.assert_allclose(u, ru, rtol=2e-6, atol=1e-7)
    du = rng.standard_normal(shape).astype(np.float32)
    # the gradient's scale is inv_norm * |du|; float32 rounding of u (|u| = 1 +- 1e-7) leaves
    # ~1e-7 of it where the true value cancels to 0 (one element per row)
    scale = float(np.max(inv[inv < 1e7], initial=1.0)) * max(1.0, float(np.abs(du).max()))
    np.testing.assert_allclose(mk.l2_normalize_backward(u, inv, du, -1), ref.l2_normalize_backward(ru, rinv, du, -1),
                               rtol=1e-4, atol=1e-6 * scale)


def test_l2_normalize_gradient_is_numerical(rng):
    x = rng.standard_normal((3, 5)).astype(np.float64)
    du = rng.standard_normal((3, 5))
    u, inv = mk.l2_normalize(x.astype(np.float32), 1)
    dx = mk.l2_normalize_backward(u, inv, du.astype(np.float32), 1)
    eps = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        f = (lambda z: np.sum(du * z / np.linalg.norm(z, axis=1, keepdims=True)))
        num[idx] = (f(xp) - f(xm)) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-4, atol=1e-5)


def test_out_buffers_are_used(rng):
    xs = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(2)]
    out = np.empty((4, 3), np.float32)
    assert mk.elementwise("multiply", xs, out=out) is out
    cat = np.empty((4, 6), np.float32)
    assert mk.concatenate(xs, -1, out=cat) is cat
    y = np.empty((4, 1), np.float32)
    assert mk.batch_dot(xs[0], xs[1], 1, out=y) is y
    dxs = [np.empty((4, 3), np.float32) for _ in range(2)]
    got = mk.elementwise_backward("subtract", xs, None, xs[0], dxs=dxs)
    assert all(g is d for g, d in zip(got, dxs))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: mk.elementwise("pow", [np.zeros((2, 2), np.float32)] * 2), ValueError, "op must be one of"),
    (lambda: mk.elementwise("add", [np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32)]), ValueError,
     "same shape"),
    (lambda: mk.elementwise("subtract", [np.zeros((2,), np.float32)] * 3), ValueError, "exactly 2"),
    (lambda: mk.elementwise("add", [np.zeros((2, 2))] * 2), TypeError, "float32"),
    (lambda: mk.concatenate([np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32)], -1), ValueError,
     "agree"),
    (lambda: mk.batch_dot(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), 1), ValueError,
     "must be equal"),
    (lambda: mk.batch_dot(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), 0), ValueError, "batch"),
    (lambda: mk.elementwise("add", [np.zeros((2, 2), np.float32)] * 2, out=np.zeros((2, 3), np.float32)),
     ValueError, "out"),
])
def test_bad_arguments_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
