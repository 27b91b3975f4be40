"""fastnn.regularizers against Keras 3 (penalties) and numerical differentiation (gradients)."""
import os

import numpy as np
import pytest

import fastnn.regularizers as R

os.environ.setdefault("KERAS_BACKEND", "torch")


def _w(shape=(7, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.keras
@pytest.mark.parametrize("ident", ["l1", "l2", "l1l2", {"class_name": "L1L2", "config": {"l1": 0.3, "l2": 0.2}},
                                   "orthogonal_regularizer",
                                   {"class_name": "OrthogonalRegularizer", "config": {"factor": 0.5, "mode": "columns"}}])
def test_penalty_matches_keras(keras, ident):
    w = _w()
    ours, theirs = R.get(ident), keras.regularizers.get(ident)
    oc, tc = ours.get_config(), theirs.get_config()
    assert oc.keys() == tc.keys()
    for k in oc:  # Keras stores some factors as float32 tensors
        assert oc[k] == (pytest.approx(tc[k]) if isinstance(tc[k], float) else tc[k])
    assert ours(w) == pytest.approx(float(keras.ops.convert_to_numpy(theirs(keras.ops.convert_to_tensor(w)))), rel=1e-5)


def test_l1_l2_string_is_tf_keras_helper():
    reg = R.get("l1_l2")
    assert (reg.l1, reg.l2) == (0.01, 0.01)
    assert R.get("l1l2").get_config() == {"l1": 0.0, "l2": 0.0}


@pytest.mark.parametrize("reg", [R.L1(0.3), R.L2(0.2), R.L1L2(0.1, 0.4), R.OrthogonalRegularizer(0.7),
                                 R.OrthogonalRegularizer(0.7, "columns")])
def test_gradient_matches_central_differences(reg):
    w = _w((4, 6), 1).astype(np.float64)
    g = reg.gradient(w)
    assert g.dtype == np.float32 and g.shape == w.shape
    h, num = 1e-6, np.zeros_like(w)
    for i in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[i] = h
        num[i] = (reg(w + e) - reg(w - e)) / (2 * h)
    # the float32 gradient against central differences of the float64 penalty: measured
    # |err| <= 8.6e-8 |num| (the float32 rounding) and <= 4.8e-8 absolute
    np.testing.assert_allclose(g, num, rtol=3e-7, atol=1e-9)


def test_round_trip_and_errors():
    for reg in [R.L1(0.2), R.L2(0.5), R.L1L2(0.1, 0.2), R.OrthogonalRegularizer(0.1, "rows")]:
        back = R.deserialize(R.serialize(reg))
        assert type(back) is type(reg) and back.get_config() == reg.get_config()
        assert R.get(reg) is reg
    assert R.get(None) is None
    assert R.get("l2").l2 == 0.01 and R.get("l1").l1 == 0.01
    with pytest.raises(ValueError, match="'l2'"):
        R.get("l3")
    with pytest.raises(ValueError, match="l2"):
        R.L2(-1.0)
    with pytest.raises(ValueError, match="mode"):
        R.OrthogonalRegularizer(mode="diag")
    with pytest.raises(ValueError, match="rank 2"):
        R.OrthogonalRegularizer()(np.zeros(3))
