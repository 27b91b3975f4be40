"""Searches as separate processes: resume after kill -9, and workers sharing one SQLite file.

Each process runs tests/tuner/search_script.py, which logs every fit it starts (pid and
hyperparameter values), so the tests count exactly what was trained, and by whom.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

import fastnn.tuner as kt

SCRIPT = os.path.join(os.path.dirname(__file__), "search_script.py")


@pytest.fixture(autouse=True)
def _needs(optuna, digits):
    pass


def run(tmp_path, *args, log, wait=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, SCRIPT, str(tmp_path), "proj", "--log", str(log), *map(str, args)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return p
    out, _ = p.communicate(timeout=300)
    return p.returncode, out


def fits(log):
    with open(log) as f:
        return [json.loads(line) for line in f]


def started(log, n=1, timeout=120):
    """Wait until n fits are logged (a worker is inside a trial), so the next one overlaps it."""
    import time
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(log) and len(fits(log)) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no fit logged in {timeout} s")


def key(values):
    return tuple(sorted(values.items()))


def open_tuner(tmp_path, max_trials):
    sys.path.insert(0, os.path.dirname(SCRIPT))
    try:
        import search_script
    finally:
        sys.path.pop(0)
    return kt.RandomSearch(search_script.LoggedMLP("/dev/null"), objective="val_accuracy", max_trials=max_trials,
                           directory=tmp_path, project_name="proj")


def test_resume_after_kill_9(tmp_path):
    log = tmp_path / "fits.jsonl"
    # the third fit kills its own process with SIGKILL after its first epoch
    rc, out = run(tmp_path, "--max-trials", 4, "--kill-at-fit", 3, "--seed", 1, log=log)
    assert rc == -signal.SIGKILL, out
    first = fits(log)
    assert len(first) == 3
    tuner = open_tuner(tmp_path, 4)
    status = sorted(t.status for t in tuner.oracle.trials.values())
    assert status == ["COMPLETED", "COMPLETED", "RUNNING"]   # as the database saw the kill

    rc, out = run(tmp_path, "--max-trials", 4, "--seed", 1, log=log)
    assert rc == 0, out
    second = fits(log)[3:]
    # the finished trials are not trained again; the interrupted one is, with the same values,
    # then the one trial still missing from the budget of 4
    done_before = {key(f["values"]) for f in first[:2]}
    assert not done_before & {key(f["values"]) for f in second}
    assert key(second[0]["values"]) == key(first[2]["values"])
    assert len(second) == 2

    tuner = open_tuner(tmp_path, 4)
    trials = tuner.oracle.trials
    assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials.values())
    assert sorted(key(t.hyperparameters.values) for t in trials.values()) == \
        sorted(key(f["values"]) for f in first[:3] + second[1:])
    killed_id = [t for t in trials.values() if key(t.hyperparameters.values) == key(first[2]["values"])]
    assert len(killed_id) == 1 and os.path.exists(tuner._get_checkpoint_fname(killed_id[0].trial_id))
    assert tuner.remaining_trials == 0


def test_two_workers_share_one_sqlite_file(tmp_path):
    log = tmp_path / "fits.jsonl"
    # two independent processes on the same directory/project_name; the second starts once the
    # first is inside a trial, and a sleep per epoch (>= 1.5 s a trial) keeps them overlapping
    procs = [run(tmp_path, "--max-trials", 6, "--sleep", 0.5, "--seed", 10, log=log, wait=False)]
    started(log)
    procs.append(run(tmp_path, "--max-trials", 6, "--sleep", 0.5, "--seed", 11, log=log, wait=False))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    logged = fits(log)
    assert len(logged) == 6                                     # none run twice, none lost
    assert len({key(f["values"]) for f in logged}) == 6
    assert len({f["pid"] for f in logged}) == 2                 # both workers trained
    tuner = open_tuner(tmp_path, 6)
    trials = tuner.oracle.trials
    assert len(trials) == 6 and all(t.status == "COMPLETED" for t in trials.values())
    assert sorted(trials) == sorted({t.trial_id for t in trials.values()})


@pytest.mark.slow  # ~20 s on a busy machine; test_resume_after_kill_9 covers the retry in the default run
def test_a_killed_worker_s_trial_is_finished_by_the_other(tmp_path):
    log = tmp_path / "fits.jsonl"
    # B runs; A joins while B is inside a trial and is killed inside its own first trial
    b = run(tmp_path, "--max-trials", 6, "--sleep", 0.5, "--seed", 2, log=log, wait=False)
    started(log)
    a = run(tmp_path, "--max-trials", 6, "--sleep", 0.5, "--seed", 1, "--kill-at-fit", 1, log=log, wait=False)
    out_a, out_b = a.communicate(timeout=300)[0], b.communicate(timeout=300)[0]
    assert a.returncode == -signal.SIGKILL, out_a
    assert b.returncode == 0, out_b
    logged = fits(log)
    by_a = [f for f in logged if f["pid"] == a.pid]
    assert len(by_a) == 1
    killed = key(by_a[0]["values"])
    # exactly one configuration trained twice: the one worker A was killed in, finished by B
    keys = [key(f["values"]) for f in logged]
    assert keys.count(killed) == 2 and len(set(keys)) == 6 and len(keys) == 7
    assert [f["pid"] for f in logged if key(f["values"]) == killed][1] == b.pid
    tuner = open_tuner(tmp_path, 6)
    assert len(tuner.oracle.trials) == 6
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


def test_workers_argument_splits_the_cores(tmp_path):
    log = tmp_path / "fits.jsonl"
    rc, out = run(tmp_path, "--max-trials", 4, "--workers", 2, "--sleep", 0.5, "--seed", 3, log=log)
    assert rc == 0, out
    logged = fits(log)
    assert len(logged) == 4 and len({key(f["values"]) for f in logged}) == 4
    assert len({f["pid"] for f in logged}) == 2
    tuner = open_tuner(tmp_path, 4)
    from fastnn.kernels import threads
    expected = max(1, threads.get_num_threads() // 2)
    for number in range(4):
        ft = tuner.oracle._frozen(number)
        assert ft.user_attrs["fastnn_trial"]["threads"] == expected
    assert "2 worker processes" in out
