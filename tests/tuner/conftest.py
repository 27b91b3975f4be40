import numpy as np
import pytest

from oracles import require


@pytest.fixture(scope="session")
def optuna():
    return require("optuna")


@pytest.fixture(scope="session")
def digits():
    """The 8x8 digits flattened to float32 in [0, 1]: (x_train, y_train), (x_test, y_test), int labels."""
    require("sklearn")
    from fastnn import datasets
    (x, y), (xt, yt) = datasets.digits.load_data()
    flat = lambda a: (a.reshape(len(a), -1) / np.float32(datasets.digits.MAX_VALUE)).astype(np.float32)  # noqa: E731
    return (flat(x), y.astype(np.int64)), (flat(xt), yt.astype(np.int64))
