"""Inference: fastnn against ONNX Runtime running the same model exported by fastnn.onnx.

    python bench/onnx_runtime.py                     # M2 and M3, batch 256 and 1, 5 rounds
    python bench/onnx_runtime.py --repeats 3 --steps 30 --batches 256
    python bench/onnx_runtime.py worker ort M2 256 30    # one measurement, prints JSON

The models are bench/peers.py's M2 (the Keras MNIST convnet) and M3 (small VGG + BatchNormalization),
built in fastnn with a fixed seed; the ONNX worker exports that model (fastnn.onnx.export, default
options: no BatchNormalization folding, which ONNX Runtime's graph optimizer does itself) and times
InferenceSession.run. Both engines use every core (fastnn's default threads; ONNX Runtime's
default intra-op pool, ORT_ENABLE_ALL optimizations). Every measurement is a fresh process; the
rounds are interleaved (fastnn, ort, ort, fastnn, ...) because the machine is shared and noisy;
the report gives the median per-batch time of each process and the median over the rounds, as
samples/s and the ratio ONNX Runtime time / fastnn time (> 1: fastnn is faster).
Needs `pip install "fastnn[onnx]" onnxruntime`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def build(name):
    import fastnn
    from peers import _keras_like_model
    fastnn.utils.set_random_seed(0)
    return _keras_like_model(fastnn, name)


def worker(engine, name, batch, steps):
    import numpy as np
    from peers import MODELS
    model = build(name)
    x = np.random.default_rng(0).random((batch * (steps + 3), *MODELS[name]["input"]), dtype=np.float32)
    if engine == "fastnn":
        def run(xb):
            return model.predict_on_batch(xb)
    else:
        import onnxruntime as ort
        import fastnn.onnx
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, f"{name}.onnx")
            fastnn.onnx.export(model, path)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0].name

        def run(xb):
            return sess.run(None, {feed: xb})[0]
    for i in range(3):
        run(x[i * batch:(i + 1) * batch])
    times = []
    for i in range(3, steps + 3):
        s = time.perf_counter()
        run(x[i * batch:(i + 1) * batch])
        times.append(time.perf_counter() - s)
    print(json.dumps({"engine": engine, "model": name, "batch": batch, "median_ms": 1e3 * statistics.median(times)}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["M2", "M3"])
    p.add_argument("--batches", nargs="+", type=int, default=[256, 1])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    results = {}
    print(f"load before: {os.getloadavg()}")
    for r in range(args.repeats):
        order = ("fastnn", "ort") if r % 2 == 0 else ("ort", "fastnn")
        for name in args.models:
            for batch in args.batches:
                steps = args.steps if batch > 1 else 10 * args.steps
                for engine in order:
                    out = subprocess.run([sys.executable, __file__, "worker", engine, name, str(batch), str(steps)],
                                         capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(out.stderr)
                    ms = json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]
                    results.setdefault((name, batch, engine), []).append(ms)
                    print(f"round {r} {name} batch {batch} {engine}: {ms:.3f} ms", flush=True)
    print(f"load after: {os.getloadavg()}")
    print("\n| model | batch | fastnn ms (samples/s) | ONNX Runtime ms (samples/s) | ORT time / fastnn time |")
    print("|---|---|---|---|---|")
    for name in args.models:
        for batch in args.batches:
            f = statistics.median(results[(name, batch, "fastnn")])
            o = statistics.median(results[(name, batch, "ort")])
            print(f"| {name} | {batch} | {f:.3f} ({batch / f * 1e3:.0f}) | {o:.3f} ({batch / o * 1e3:.0f}) | "
                  f"x{o / f:.2f} |")
    ratios = {f"{n} b{b}": [o / f for f, o in zip(results[(n, b, "fastnn")], results[(n, b, "ort")])]
              for n in args.models for b in args.batches}
    print("\nper-round ratios:", {k: [round(v, 2) for v in vs] for k, vs in ratios.items()})
    print("median per-round ratio:", {k: round(statistics.median(vs), 2) for k, vs in ratios.items()})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
