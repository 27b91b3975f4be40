"""Data-parallel scaling: one process vs two under mpiexec, one thread each (M2, M3 of peers.py).

    python bench/distributed.py                          # M2 M3, 3 rounds, interleaved
    python bench/distributed.py --models M3 --repeats 5 --steps 40
    python bench/distributed.py model                    # the 8-64 machine model + plot only
    python bench/distributed.py worker M2 40             # one measurement (alone or under mpiexec)

Each round runs, in turn and each in a fresh job: one process (FASTNN_NUM_THREADS=1), two
processes with the bucketed all-reduce overlapped with backward (the default), and two
processes with one all-reduce after backward (FASTNN_DIST_BUCKET_MB=0). The global batch is
the benchmark's (M2 128, M3 64), so two processes each compute half of it. A worker trains with
`fit` on random data and times every step from a callback (on_train_batch_begin/end), drops
the first 5, and reports the median step, the samples/s it gives, the time the step spent
waiting for the gradient all-reduce and in the other collectives (BatchNormalization
statistics, metric sums), and a bare all-reduce of the arena's bytes (20 repeats, median).

The scaling model for 8-64 machines (`model`) takes the arena bytes and the single-process
step time at 2 threads (fastnn's median in docs/peers.json, measured on a quiet machine by
bench/peers.py) and computes a ring all-reduce,
2(N-1) messages of arena/N bytes each way: t = 2(N-1)/N * bytes / bandwidth + 2(N-1) * latency,
at 10, 25 and 100 Gb/s with a 10 us per-message latency (MPI over TCP), plus the step's small
collectives (BatchNormalization statistics, metric sum, stop decision) at ceil(log2 N)
latencies each. The ring all-reduce time printed includes them. Results go to
docs/distributed.json and docs/distributed.png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess

import numpy as np
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DOCS = os.path.join(HERE, "..", "docs")

CONFIGS = [("1 process", 0, {}), ("2 processes, overlapped", 2, {}),
           ("2 processes, one all-reduce", 2, {"FASTNN_DIST_BUCKET_MB": "0"})]
LATENCY = 10e-6                  # seconds per message of the ring (MPI over TCP on 10-100 GbE)
BANDWIDTHS = (10, 25, 100)       # Gb/s
MACHINES = (1, 2, 4, 8, 16, 32, 64)
STRONG = 8                       # strong scaling: the global batch is 8 x the benchmark batch


# ----------------------------------------------------------------------------- one measurement
def worker(model_name, steps):
    import numpy as np

    import fastnn
    from fastnn import distribution
    from peers import MODELS, _data, _keras_like_model

    distribution.initialize()
    distribution.set_distribution(distribution.DataParallel())
    rank, size = distribution.process_index(), distribution.process_count()
    fastnn.utils.set_random_seed(0)
    batch = MODELS[model_name]["batch"]
    model = _keras_like_model(fastnn, model_name)
    x, y = _data(model_name, batch, steps)
    times = []
    waits = []

    class Timer(fastnn.callbacks.Callback):
        def on_train_batch_begin(self, b, logs=None):
            self.t = time.perf_counter()
            r = self.model._replica
            self.w = 0.0 if r is None else r._buckets.waited if r._buckets else 0.0
            self.o = 0.0 if r is None else r.comm_time()

        def on_train_batch_end(self, b, logs=None):
            times.append(time.perf_counter() - self.t)
            r = self.model._replica
            if r is not None:
                waits.append((r._buckets.waited - self.w, r.comm_time() - self.o))

    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[Timer()])
    step = statistics.median(times[5:])
    out = {"model": model_name, "processes": size, "threads": fastnn.get_num_threads(), "batch": batch,
           "step_ms": step * 1e3, "samples_per_s": batch / step, "arena_bytes": 4 * model._arena.size}
    if waits:
        out["grad_wait_ms"] = statistics.median(w[0] for w in waits[5:]) * 1e3
        out["other_collectives_ms"] = statistics.median(w[1] for w in waits[5:]) * 1e3
        c = distribution._comm()
        buf = np.ones(model._arena.size, np.float32)
        ts = []
        for _ in range(25):
            c.barrier()
            t = time.perf_counter()
            c.allreduce_(buf)
            ts.append(time.perf_counter() - t)
        out["bare_allreduce_ms"] = statistics.median(ts[5:]) * 1e3
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _run(model_name, steps, n, env):
    cmd = [sys.executable, os.path.abspath(__file__), "worker", model_name, str(steps)]
    if n:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec, "-n", str(n), *cmd]
    e = dict(os.environ, FASTNN_NUM_THREADS="1", **env)
    out = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=900)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{cmd} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


# ----------------------------------------------------------------------------- the model
def ring_allreduce_s(nbytes, n, gbps, latency=LATENCY):
    """Ring all-reduce of nbytes over n machines: reduce-scatter + all-gather, 2(n-1) steps."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes * 8 / (gbps * 1e9) + 2 * (n - 1) * latency


def _peers_step_ms(model_name):
    """The single-process training step at 2 threads, quiet machine: the median of fastnn's
    runs in docs/peers.json (bench/peers.py)."""
    with open(os.path.join(DOCS, "peers.json")) as f:
        runs = [r for r in json.load(f)["results"]
                if r["framework"] == "fastnn" and r["model"] == model_name and r["mode"] == "train"]
    return statistics.median(r["median_step_s"] for r in runs) * 1e3


def small_collectives(model_name):
    """Latency-bound collectives per training step besides the gradient all-reduce: two per
    BatchNormalization layer (statistics forward, sums backward), the metric sum, the stop
    decision."""
    import fastnn
    from peers import _keras_like_model

    model = _keras_like_model(fastnn, model_name)
    return 2 * sum(hasattr(layer, "_sync_stats") for layer in model.layers) + 2


def scaling_model(measured):
    """Weak scaling (each machine keeps the benchmark batch) and strong scaling (the global
    batch fixed at STRONG x the benchmark batch, split over the machines) from the arena bytes
    and the 2-thread step (compute per sample taken as constant: small per-machine batches run
    less efficiently than that, so the strong figures are an upper bound)."""
    out = {}
    for name, m in measured.items():
        per_sample = m["step_ms_2_threads"] / 1e3 / m["batch"]
        k = small_collectives(name)
        rows = []
        for n in MACHINES:
            row = {"machines": n}
            # each small collective: ceil(log2 n) rounds of one latency (recursive doubling)
            small = k * int(np.ceil(np.log2(n))) * LATENCY if n > 1 else 0.0
            row["small_collectives_ms"] = small * 1e3
            for gbps in BANDWIDTHS:
                ar = ring_allreduce_s(m["arena_bytes"], n, gbps) + small
                weak = per_sample * m["batch"]
                strong = per_sample * m["batch"] * STRONG / n
                row[f"allreduce_ms_{gbps}"] = ar * 1e3
                row[f"weak_speedup_{gbps}"] = n * weak / (weak + ar)
                row[f"strong_speedup_{gbps}"] = (per_sample * m["batch"] * STRONG) / (strong + ar)
            row["compute_ms_weak"] = per_sample * m["batch"] * 1e3
            row["compute_ms_strong"] = per_sample * m["batch"] * STRONG / n * 1e3
            rows.append(row)
        out[name] = {"arena_bytes": m["arena_bytes"], "batch": m["batch"], "strong_batch": STRONG * m["batch"],
                     "small_collectives_per_step": k,
                     "step_ms_2_threads": m["step_ms_2_threads"], "rows": rows,
                     "latency_s": LATENCY}
    return out


def plot(model, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(model), figsize=(5.5 * len(model), 4.2), squeeze=False)
    for ax, (name, m) in zip(axes[0], model.items()):
        ns = [r["machines"] for r in m["rows"]]
        ax.plot(ns, ns, color="0.7", lw=1, label="ideal")
        for gbps, color in zip(BANDWIDTHS, ("tab:red", "tab:orange", "tab:green")):
            ax.plot(ns, [r[f"weak_speedup_{gbps}"] for r in m["rows"]], "o-", color=color,
                    label=f"{gbps} Gb/s, {m['batch']} per machine")
            ax.plot(ns, [r[f"strong_speedup_{gbps}"] for r in m["rows"]], "s--", color=color,
                    label=f"{gbps} Gb/s, global batch {STRONG * m['batch']}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_yticks(ns, [str(n) for n in ns])
        ax.set_xlabel("machines (2 cores each, 1 process)")
        ax.set_ylabel("speed-up over one machine")
        ax.set_title(f"{name}: arena {m['arena_bytes'] / 1e6:.2f} MB, step {m['step_ms_2_threads']:.0f} ms "
                     f"/ {m['batch']} samples")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Modelled data-parallel scaling: ring all-reduce (10 us/message) vs measured compute")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        worker(argv[1], int(argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="measure", choices=["measure", "model"])
    p.add_argument("--models", nargs="+", default=["M2", "M3"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    path = os.path.join(DOCS, "distributed.json")
    if args.what == "model":
        with open(path) as f:
            doc = json.load(f)
    else:
        results = {m: {c[0]: [] for c in CONFIGS} for m in args.models}
        loads = [os.getloadavg()[0]]
        for r in range(args.repeats):
            for m in args.models:
                for label, n, env in CONFIGS:
                    res = _run(m, args.steps, n, env)
                    results[m][label].append(res)
                    print(f"round {r + 1} {m} {label}: {res['samples_per_s']:.0f} samples/s "
                          f"(step {res['step_ms']:.1f} ms, grad wait {res.get('grad_wait_ms', 0):.2f} ms, "
                          f"other collectives {res.get('other_collectives_ms', 0):.2f} ms)", flush=True)
            loads.append(os.getloadavg()[0])
        summary = {}
        for m, per in results.items():
            rows = {}
            for label, rs in per.items():
                med = {k: statistics.median(x[k] for x in rs) for k in rs[0] if isinstance(rs[0][k], float)}
                med.update({k: rs[0][k] for k in rs[0] if not isinstance(rs[0][k], float)})
                rows[label] = med
            one = rows["1 process"]
            for label, row in rows.items():
                row["speedup"] = row["samples_per_s"] / one["samples_per_s"]
                if "grad_wait_ms" in row:
                    # the all-reduce's own cost, and the time spent in collectives (which
                    # includes waiting for the slower process)
                    row["allreduce_share"] = row["bare_allreduce_ms"] / row["step_ms"]
                    row["collective_wait_share"] = (row["grad_wait_ms"] + row["other_collectives_ms"]) / row["step_ms"]
            summary[m] = rows
        doc = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_1min": loads, "repeats": args.repeats,
               "steps": args.steps, "measured": summary,
               "runs": {m: {k: v for k, v in per.items()} for m, per in results.items()}}
    measured = {m: {"arena_bytes": rows["1 process"]["arena_bytes"], "batch": rows["1 process"]["batch"],
                    "step_ms_2_threads": _peers_step_ms(m)}
                for m, rows in doc["measured"].items()}
    doc["model"] = scaling_model(measured)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    plot(doc["model"], os.path.join(DOCS, "distributed.png"))
    report(doc)


def report(doc):
    print(f"\nload average (1 min) over the run: {', '.join(f'{x:.1f}' for x in doc['load_avg_1min'])}")
    print("| model | run | samples/s | speed-up | step ms | all-reduce of the arena ms (share) | "
          "waiting in the gradient all-reduce ms | in other collectives ms | all waits, share |")
    print("|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for m, rows in doc["measured"].items():
        for label, r in rows.items():
            print(f"| {m} | {label} | {r['samples_per_s']:.0f} | x{r['speedup']:.2f} | {r['step_ms']:.1f} | "
                  f"{r.get('bare_allreduce_ms', nan):.3f} ({100 * r.get('allreduce_share', nan):.2f}%) | "
                  f"{r.get('grad_wait_ms', nan):.2f} | {r.get('other_collectives_ms', nan):.2f} | "
                  f"{100 * r.get('collective_wait_share', nan):.1f}% |")
    for m, mod in doc["model"].items():
        print(f"\n{m}: arena {mod['arena_bytes']} bytes, 2-thread step {mod['step_ms_2_threads']:.1f} ms / {mod['batch']}")
        print(f"(strong scaling: global batch {mod['strong_batch']}; {mod['small_collectives_per_step']} small "
              f"collectives per step)")
        print("| machines | compute ms (weak / strong) | small collectives ms | ring all-reduce ms 10 / 25 / 100 Gb/s | "
              "speed-up weak 10 / 25 / 100 | speed-up strong 10 / 25 / 100 |")
        print("|---|---|---|---|---|---|")
        for r in mod["rows"]:
            print(f"| {r['machines']} | {r['compute_ms_weak']:.1f} / {r['compute_ms_strong']:.1f} | "
                  f"{r['small_collectives_ms']:.2f} | "
                  + " / ".join(f"{r[f'allreduce_ms_{g}']:.2f}" for g in BANDWIDTHS) + " | "
                  + " / ".join(f"{r[f'weak_speedup_{g}']:.1f}" for g in BANDWIDTHS) + " | "
                  + " / ".join(f"{r[f'strong_speedup_{g}']:.1f}" for g in BANDWIDTHS) + " |")


if __name__ == "__main__":
    main()
