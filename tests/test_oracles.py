"""Test oracles (Keras, scikit-learn, ...) and test inputs (MNIST) that CI installs: a missing
one skips a test here, and fails the run under CI (FASTNN_REQUIRE_ORACLES=1, set by .ci/run).
conftest.py's require() / `keras` / `mnist_dir` are the one way in; these tests hold that."""
import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

TESTS = pathlib.Path(__file__).parent


def _optional_imports_outside_require(path):
    """(line, what) of each pytest.importorskip call and each `try: import ...` whose handler
    skips, in one test file: the ways around require()."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name == "importorskip":
                found.append((node.lineno, "importorskip"))
        if isinstance(node, ast.Try) and any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in node.body):
            for h in node.handlers:
                for call in ast.walk(h):
                    if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "skip":
                        found.append((h.lineno, "try-import-skip"))
    return found


def test_every_optional_import_goes_through_require():
    bad = {str(p.relative_to(TESTS)): hits for p in sorted(TESTS.rglob("*.py"))
           if p.name not in ("conftest.py", "oracles.py") and (hits := _optional_imports_outside_require(p))}
    assert not bad, f"use conftest's require()/keras fixture, which fails under CI: {bad}"


def test_the_checker_finds_both_forms(tmp_path):
    p = tmp_path / "t.py"
    p.write_text("import pytest\nk = pytest.importorskip('keras')\n"
                 "def f():\n    try:\n        import keras\n    except ImportError:\n        pytest.skip('x')\n")
    assert [w for _, w in _optional_imports_outside_require(p)] == ["importorskip", "try-import-skip"]


NEEDS = '''
def test_keras(keras):
    assert keras.ops

def test_sklearn(require):
    require("sklearn")

def test_mnist(mnist_dir):
    assert mnist_dir

def test_plain():
    pass
'''


def _run_with_oracles_blocked(tmp_path, require_oracles):
    """pytest on a copy of conftest.py and NEEDS, with keras and sklearn made unimportable
    (sys.modules[name] = None) and FASTNN_DATA pointing at an empty folder."""
    (tmp_path / "block_oracles.py").write_text("import sys\nsys.modules['keras'] = None\n"
                                               "sys.modules['sklearn'] = None\n")
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(TESTS / "conftest.py", suite / "conftest.py")
    shutil.copy(TESTS / "oracles.py", tmp_path / "oracles.py")      # on the PYTHONPATH below
    (suite / "test_needs.py").write_text(NEEDS)
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_REQUIRE_ORACLES"}
    env.update(PYTHONPATH=str(tmp_path), FASTNN_DATA=str(tmp_path / "empty"))
    if require_oracles:
        env["FASTNN_REQUIRE_ORACLES"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "block_oracles", "-p", "no:cacheprovider",
                           "-q", "-rsE", str(suite)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_missing_oracles_skip_outside_ci(tmp_path):
    r = _run_with_oracles_blocked(tmp_path, require_oracles=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 3 skipped" in r.stdout, r.stdout
    assert "'keras' is not importable" in r.stdout and "MNIST" in r.stdout


def test_missing_oracles_fail_under_ci(tmp_path):
    r = _run_with_oracles_blocked(tmp_path, require_oracles=True)
    assert r.returncode == 1, r.stdout + r.stderr
    # an error in the fixtures (keras, mnist_dir), a failure in the test body (require)
    assert "1 failed, 1 passed, 2 errors" in r.stdout, r.stdout
    assert r.stdout.count("FASTNN_REQUIRE_ORACLES=1 (CI) requires every test oracle") >= 3, r.stdout


def test_require_refuses_an_old_version(require):
    import numpy
    under_ci = os.environ.get("FASTNN_REQUIRE_ORACLES", "0") not in ("", "0")
    with pytest.raises(pytest.fail.Exception if under_ci else pytest.skip.Exception, match="older than 999"):
        require("numpy", minversion="999")
    assert require("numpy", minversion="1.20") is numpy
