"""Data parallel under `mpiexec`: the same script on 1, 2 and 3 processes, and the failure paths.

Each run is a subprocess (its own session, killed whole on timeout), so a hung process can
never hang the test run. Needs mpi4py and the MPICH wheel's mpiexec (the `mpi` extra, part of
the `test` extra): under CI (FASTNN_REQUIRE_ORACLES=1) a missing MPI fails instead of skipping.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "dp_script.py")
RUN_TIMEOUT = 240          # seconds for one job (a 2-core machine shared by several jobs)
DEAD_TIMEOUT = 6           # FASTNN_DIST_TIMEOUT of the failure runs


@pytest.fixture(scope="module")
def mpiexec(require):
    """The mpiexec that came with mpi4py's MPI (the MPICH wheel's, next to this Python)."""
    require("mpi4py")
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = exe if os.path.exists(exe) else shutil.which("mpiexec")
    if exe is None:
        msg = 'mpiexec is not on the PATH: pip install "fastnn[mpi]" (the MPICH wheel brings it)'
        if os.environ.get("FASTNN_REQUIRE_ORACLES", "0") not in ("", "0"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def run(mpiexec, out, n, scenario="train", env=None, flags=(), timeout=RUN_TIMEOUT):
    """Run dp_script.py on n processes (n = 0: plain python); returns (rc, output, seconds)."""
    cmd = [sys.executable, SCRIPT, str(out), scenario]
    if n:
        cmd = [mpiexec, *flags, "-n", str(n), *cmd]
    return spawn(cmd, env, timeout)


def spawn(cmd, env=None, timeout=RUN_TIMEOUT):
    """Run cmd in a session of its own, killed whole if it outlives `timeout`."""
    e = dict(os.environ)
    e.pop("FASTNN_NUM_THREADS", None)
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e, text=True,
                         start_new_session=True)
    try:
        output, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        output, _ = p.communicate()
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s:\n{output[-3000:]}")
    return p.returncode, output, time.monotonic() - t0


def _load(out, rank):
    z = np.load(os.path.join(out, f"rank{rank}.npz"))
    with open(os.path.join(out, f"rank{rank}.json")) as f:
        meta = json.load(f)
    return [z[f"arr_{i}"] for i in range(len(z.files) - 1)], z["pred"], meta


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, mpiexec):
    out = tmp_path_factory.mktemp("one")
    rc, output, _ = run(mpiexec, out, 0)
    assert rc == 0, output
    return _load(out, 0)


@pytest.mark.parametrize("n", [2, 3])
def test_processes_compute_what_one_process_computes(n, one_process, mpiexec, tmp_path):
    rc, output, _ = run(mpiexec, tmp_path, n)
    assert rc == 0, output
    w1, p1, m1 = one_process
    runs = [_load(tmp_path, r) for r in range(n)]
    # every process holds identical weights, bit for bit
    for w, p, m in runs[1:]:
        for a, b in zip(runs[0][0], w):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(p, runs[0][1])
        assert m == runs[0][2] or m["history"] == runs[0][2]["history"]
    w, p, m = runs[0]
    # the same weights as one process with the same global batch: measured max |diff| 1.9e-7
    # (2 processes) on weights of magnitude <= 1 after 2 epochs of Adam (float rounding of the
    # summed gradients); BatchNormalization, dropout and the uneven last batch included
    assert len(w) == len(w1)
    for a, b in zip(w, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
    np.testing.assert_allclose(p, p1, rtol=0, atol=2e-6)
    # the same history (loss, metrics, validation) and evaluate: measured rel. diff <= 3e-7
    assert m["history"].keys() == m1["history"].keys() and len(m["history"]["loss"]) == 2
    for k in m1["history"]:
        np.testing.assert_allclose(m["history"][k], m1["history"][k], rtol=5e-6, err_msg=k)
    for k in m1["evaluate"]:
        np.testing.assert_allclose(m["evaluate"][k], m1["evaluate"][k], rtol=5e-6, err_msg=k)
    # process 0's decisions won over process 1's (stop, learning rate 0.5): 2 epochs, 3e-3
    assert m["learning_rate"] == pytest.approx(3e-3)
    assert m["processes"] == n and m["devices"] == [f"cpu:{i}" for i in range(n)]
    if n == 2:
        assert m["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # cores / processes per host
    # only process 0 wrote files; the progress lines printed once
    names = sorted(os.listdir(tmp_path))
    assert "from_process0.weights.h5" in names and not any(x.startswith("from_process") and x != "from_process0.weights.h5"
                                                           for x in names), names
    assert {"log.csv", "ckpt.weights.h5", "model.keras"} <= set(names)
    assert not [x for x in names if x.startswith(".tmp-")]
    with open(tmp_path / "log.csv") as f:
        assert len(f.read().strip().splitlines()) == 3        # header + 2 epochs, written once
    assert output.count("Epoch 1/2") == 1


def test_recurrent_processes_compute_what_one_process_computes(mpiexec, tmp_path):
    """Masked sequences, RNN dropout drawn by global row, a masked per-step loss whose valid
    steps are counted over the global batch: 2 processes give one process's run."""
    for name, n in (("one", 0), ("two", 2)):
        os.makedirs(tmp_path / name)
        rc, output, _ = run(mpiexec, tmp_path / name, n, "recurrent")
        assert rc == 0, output
    w1, p1, m1 = _load(tmp_path / "one", 0)
    w, p, m = _load(tmp_path / "two", 0)
    # measured: weights within 6e-8, history within 4e-7 relative (float rounding of the sums)
    for a, b in zip(w, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
    np.testing.assert_allclose(p, p1, rtol=0, atol=2e-6)
    assert m["processes"] == 2 and m["history"].keys() == m1["history"].keys()
    for k in m1["history"]:
        np.testing.assert_allclose(m["history"][k], m1["history"][k], rtol=5e-6, err_msg=k)
    for k in m1["evaluate"]:
        np.testing.assert_allclose(m["evaluate"][k], m1["evaluate"][k], rtol=5e-6, err_msg=k)


def test_mismatched_models_fail_at_start_naming_the_difference(mpiexec, tmp_path):
    rc, output, t = run(mpiexec, tmp_path, 2, "mismatch", env={"FASTNN_DIST_TIMEOUT": str(DEAD_TIMEOUT)})
    assert rc != 0
    assert "the processes built different models" in output
    assert "process 1 differs from process 0: 2 layers instead of 10" in output
    assert "'other_dense'" in output
    assert not os.path.exists(tmp_path / "rank0.npz")


@pytest.mark.parametrize("scenario, flags, expect", [
    # an uncaught error on one process: its traceback, then every process stops
    ("raise", (), "process 1 of 2 stopped on an uncaught RuntimeError: a bug on process 1 (in fit, epoch 1, step 3)"),
    # sys.exit() in the middle of fit
    ("exit", (), "process 1 of 2 is exiting in the middle of fit (epoch 1, step 3)"),
    # a process that hangs: the others give up after FASTNN_DIST_TIMEOUT
    ("hang", (), f"process 0 of 2 waited {DEAD_TIMEOUT} s for the others"),
    # a process that vanishes (os._exit) under a launcher that leaves the others running
    ("dead", ("-disable-auto-cleanup",), f"process 0 of 2 waited {DEAD_TIMEOUT} s for the others"),
    # killed by a signal: the launcher ends the job and names the signal
    ("kill", (), "signal 9"),
])
def test_a_failed_process_stops_the_job_with_a_clear_error(scenario, flags, expect, mpiexec, tmp_path):
    rc, output, t = run(mpiexec, tmp_path, 2, scenario, flags=flags, env={"FASTNN_DIST_TIMEOUT": str(DEAD_TIMEOUT)},
                        timeout=120)
    assert rc != 0, output
    assert expect in output, output[-3000:]
    assert t < 90
    assert not os.path.exists(tmp_path / "rank0.npz")     # nobody finished


def test_vanished_process_ends_the_job_under_the_default_launcher(mpiexec, tmp_path):
    # MPICH's launcher ends the job as soon as one process exits early (exit code 3 of the
    # vanished process, or 9 when the launcher's kill of the other is seen first), long before
    # fastnn's own 300 s deadline
    rc, output, t = run(mpiexec, tmp_path, 2, "dead", env={"FASTNN_DIST_TIMEOUT": "300"}, timeout=120)
    assert rc in (3, 9), output
    assert not os.path.exists(tmp_path / "rank0.npz")
    assert t < 90


def test_fastnn_train_runs_under_mpiexec(mpiexec, require, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "fastnn")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "fastnn.cli"]
    cmd = [mpiexec, "-n", "2", *cmd, "train", "--dataset", "digits", "--epochs", "2", "--seed", "1",
           "--out", str(tmp_path)]
    require("sklearn")
    rc, output, _ = spawn(cmd)
    assert rc == 0, output[-3000:]
    assert output.count("test accuracy") == 1 and "x 2 processes (data parallel)" in output
    with open(tmp_path / "digits_convnet_digits.json") as f:
        summary = json.load(f)
    assert summary["processes"] == 2 and summary["test_accuracy"] > 0.5
