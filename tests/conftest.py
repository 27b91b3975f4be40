import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Kernels compile/JIT on first use and the CI machine is shared: no per-example deadline.
settings.register_profile(
    "fastnn", deadline=None, max_examples=int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("fastnn")

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mnist_dir():
    """Folder of the real MNIST IDX files (FASTNN_DATA or ../shared/data/mnist); skip if absent."""
    for d in (os.environ.get("FASTNN_DATA"), SHARED_MNIST):
        if d and os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
            return os.path.abspath(d)
    pytest.skip("the MNIST IDX files are not available (set FASTNN_DATA)")
