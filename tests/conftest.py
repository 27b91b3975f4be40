import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Kernels compile/JIT on first use and the CI machine is shared: no per-example deadline.
# Under CI (FASTNN_REQUIRE_ORACLES=1) the examples are derandomised: a landing must not hang on
# a new draw; new draws are what local runs are for (FASTNN_HYPOTHESIS_EXAMPLES for more).
settings.register_profile(
    "fastnn", deadline=None, max_examples=int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("FASTNN_REQUIRE_ORACLES") == "1",
)
settings.load_profile("fastnn")

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")

from oracles import missing, require


@pytest.fixture(scope="session", name="require")
def require_fixture():
    """The require(module, minversion=None) function, for tests and fixtures."""
    return require


@pytest.fixture(scope="session")
def keras():
    """Keras 3 on the torch backend: the oracle of the parity tests."""
    return require("keras", minversion="3")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mnist_dir():
    """Folder of the real MNIST IDX files (FASTNN_DATA or ../shared/data/mnist); skip if absent
    (fail under FASTNN_REQUIRE_ORACLES=1)."""
    for d in (os.environ.get("FASTNN_DATA"), SHARED_MNIST):
        if d and os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
            return os.path.abspath(d)
    missing(f"the MNIST IDX files are not available (FASTNN_DATA={os.environ.get('FASTNN_DATA')!r})", "mnist")
