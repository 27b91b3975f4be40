"""fastnn.constraints against Keras 3."""
import os

import numpy as np
import pytest

import fastnn.constraints as C

os.environ.setdefault("KERAS_BACKEND", "torch")


CASES = ["max_norm", "non_neg", "unit_norm", "min_max_norm",
         {"class_name": "MaxNorm", "config": {"max_value": 1.5, "axis": 1}},
         {"class_name": "UnitNorm", "config": {"axis": [0, 1, 2]}},
         {"class_name": "MinMaxNorm", "config": {"min_value": 0.5, "max_value": 2.0, "rate": 0.3, "axis": -1}}]


# every case on a matrix and on a conv kernel, except the axes a matrix does not have
SHAPED = [(ident, shape) for shape in [(6, 4), (3, 3, 2, 5)] for ident in CASES
          if not (isinstance(ident, dict) and ident["config"].get("axis") == [0, 1, 2] and len(shape) == 2)]


@pytest.mark.keras
@pytest.mark.parametrize("ident,shape", SHAPED, ids=str)
def test_matches_keras(keras, ident, shape):
    w = np.random.default_rng(0).normal(0, 1.5, shape).astype(np.float32)
    ours, theirs = C.get(ident), keras.constraints.get(ident)
    assert ours.get_config() == theirs.get_config()
    got = ours(w)
    assert got.dtype == np.float32 and got.shape == w.shape
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs(w)), rtol=1e-6, atol=1e-7)


def test_round_trip_and_errors():
    for c in [C.MaxNorm(3, 1), C.NonNeg(), C.UnitNorm(1), C.MinMaxNorm(0.1, 2, 0.5, 0)]:
        back = C.deserialize(C.serialize(c))
        assert type(back) is type(c) and back.get_config() == c.get_config()
        assert C.get(c) is c
    assert C.get(None) is None
    assert isinstance(C.get(C.NonNeg), C.NonNeg)
    with pytest.raises(ValueError, match="'max_norm'"):
        C.get("maxnorm")
    with pytest.raises(ValueError, match="constraint"):
        C.get(5)
