import importlib
import os
import re

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

# CI (.ci/run) sets FASTNN_REQUIRE_ORACLES=1: every test oracle and test input it installs
# (Keras, scikit-learn, matplotlib, h5py, the MNIST files, ...) must then be there, and a
# missing one fails the run. Elsewhere such a test skips and says what to install.
REQUIRE_ORACLES = os.environ.get("FASTNN_REQUIRE_ORACLES", "0") not in ("", "0")

# how to get what a test needs (the default: the test extra)
INSTALL = {
    "keras": 'pip install "torch==2.13.0" keras, with KERAS_BACKEND=torch',
    "mnist": "set FASTNN_DATA to a folder with the MNIST *-idx?-ubyte.gz files",
}


def missing(what: str, name: str):
    """Skip the running test because `what` is missing, or fail it under CI."""
    hint = INSTALL.get(name, 'pip install "fastnn[test]"')
    if REQUIRE_ORACLES:
        pytest.fail(f"{what}; FASTNN_REQUIRE_ORACLES=1 (CI) requires every test oracle and input: "
                    f"{hint}", pytrace=False)
    pytest.skip(f"{what} ({hint})", allow_module_level=True)


def _version(v) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", str(v))[:3])


def require(module: str, minversion: str | None = None):
    """Import an optional test oracle or test dependency (`require("keras")`).

    The only way tests import one: a missing or broken module (or one older than minversion)
    skips the test, except under FASTNN_REQUIRE_ORACLES=1, where it fails it.
    """
    if module == "keras":
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        mod, error = importlib.import_module(module), None
    except Exception as e:   # absent, or present but unusable (e.g. Keras without its backend)
        mod, error = None, f"{type(e).__name__}: {e}"
    if error is not None:
        missing(f"the test oracle {module!r} is not importable ({error})", module.split(".")[0])
    if minversion is not None:
        have = getattr(mod, "__version__", "0")
        if _version(have) < _version(minversion):
            missing(f"the test oracle {module!r} is {have}, older than {minversion}", module.split(".")[0])
    return mod


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
