"""Interleaved A/B of the training step of bench/peers.py's M1, M2, M3 between two source trees.

    python bench/model_step_ab.py --old /tmp/base [--new installed] [--rounds 7] [--steps 20]

`--old` is a copy of another revision's `fastnn/` package folder with its compiled `_kernels`
inside (e.g. `git archive REV fastnn | tar -x -C /tmp/base` and a copy of the installed
`fastnn/_kernels`). Each measurement runs in a fresh process that imports fastnn from one tree
(the editable-install finder is bypassed), builds the model, warms up with one epoch of `fit`,
then times `fit` over `--steps` batches (the real per-step path: gather, forward, loss,
backward, optimizer, metrics, callbacks) and prints the best and median ms per step of
`--epochs` timed epochs. Rounds alternate old/new so both see the same machine load; the report
gives medians over rounds and the new/old ratio (below 1 = new is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH = {"M1": 128, "M2": 128, "M3": 64}


def _import_from(tree):
    if tree == "installed":
        import fastnn
        return fastnn
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, os.path.abspath(tree))
    import fastnn
    assert fastnn.__file__.startswith(os.path.abspath(tree)), fastnn.__file__
    return fastnn


def worker(tree, name, steps, epochs, clock="wall"):
    fastnn = _import_from(tree)
    import numpy as np
    batch = BATCH[name]
    shape = {"M1": (784,), "M2": (28, 28, 1), "M3": (32, 32, 3)}[name]
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, *shape), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch * steps)]
    fastnn.utils.set_random_seed(0)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peers import _keras_like_model   # the models exactly as peers.py builds them (Adam)
    model = _keras_like_model(fastnn, name)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    now = time.process_time if clock == "cpu" else time.perf_counter
    times = []
    for _ in range(epochs):
        t = now()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        times.append((now() - t) / steps * 1e3)
    print(json.dumps({"best": min(times), "median": statistics.median(times)}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True)
    p.add_argument("--new", default="installed", help="a tree as --old, or 'installed' (default): the "
                   "fastnn this Python imports")
    p.add_argument("--models", nargs="+", default=["M1", "M2", "M3"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cpu", action="store_true", help="one thread, and time the process's CPU seconds "
                   "instead of the wall clock: on a loaded shared machine this counts the work done, not "
                   "the time spent waiting for a core")
    args = p.parse_args(argv)
    env = dict(os.environ, FASTNN_NUM_THREADS="1") if args.cpu else None
    res = {(m, v): [] for m in args.models for v in ("old", "new")}
    for r in range(args.rounds):
        for m in args.models:
            for v in (("old", "new") if r % 2 == 0 else ("new", "old")):
                tree = args.old if v == "old" else args.new
                out = subprocess.run([sys.executable, __file__, "worker", tree, m, str(args.steps), str(args.epochs),
                                      "cpu" if args.cpu else "wall"], capture_output=True, text=True, check=True,
                                     env=env)
                res[(m, v)].append(json.loads(out.stdout.strip().splitlines()[-1])["best"])
        print(f"round {r + 1}/{args.rounds} done; load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    what = "CPU ms/step, 1 thread" if args.cpu else "ms/step"
    print(f"{'model':6} {'old':>10} {'new':>10} {'new/old':>8}   ({what}; medians of {args.rounds} rounds, "
          f"each the best of {args.epochs} epochs of {args.steps} steps; load {os.getloadavg()})")
    for m in args.models:
        o, n = statistics.median(res[(m, "old")]), statistics.median(res[(m, "new")])
        ratios = [b / a for a, b in zip(res[(m, "old")], res[(m, "new")])]
        print(f"{m:6} {o:10.2f} {n:10.2f} {n / o:8.3f}   per-round ratios {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] if len(sys.argv) > 6 else "wall")
    else:
        main()
