"""How tests import what CI installs for them: require(module) imports a test oracle or test
dependency (Keras, scikit-learn, optuna, ...), and missing(what, name) handles an absent test
input. Without it a test skips and says what to install; under CI (FASTNN_REQUIRE_ORACLES=1, set
by .ci/run) it fails the run instead. conftest.py exposes require as a fixture; a test module that
needs an oracle at import time (a parametrisation) calls `from oracles import require`."""
import importlib
import os
import re

import pytest

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
