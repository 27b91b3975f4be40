"""End-to-end training and inference: fastnn vs the NumPy reference, PyTorch and Keras on JAX.

Every measurement runs in a fresh process (so peak RSS and time to first step are that
framework's alone); repeats are interleaved (fastnn, torch, keras, fastnn, ...) because the
machine is shared and noisy, and the report takes medians.

    python bench/peers.py                        # all models, all installed frameworks
    python bench/peers.py --models M2 --repeats 3 --frameworks fastnn torch
    python bench/peers.py worker fastnn M2 train # one measurement, prints JSON
    python bench/peers.py --isa avx2             # every framework held to AVX2 + FMA

--isa avx2 measures what an AVX2-only machine (Zen 3, Intel client chips) gets, on a CPU with
AVX-512: FASTNN_ISA=avx2 for fastnn, OPENBLAS_CORETYPE=Haswell for NumPy's BLAS (fastnn's
convolutions and the reference), ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 for
PyTorch, XLA_FLAGS=--xla_cpu_max_isa=AVX2 for JAX. Each instruction set keeps its own results
(docs/peers.json, docs/peers_avx2.json, and a chart each); docs/peers.md gets one table per
instruction set.

Peers are optional: `pip install torch==2.13.0` (CPU build), `pip install keras jax`.
Models (same architecture, batch size, float32, He init, Adam in every framework):
  M1  MLP 784-1024-1024-10 relu, batch 128
  M2  the Keras MNIST convnet (28x28x1), batch 128
  M3  small VGG on 32x32x3, batch 64
  M4  Keras's MNIST-rows LSTM: (28, 28) -> LSTM(128) -> Dense(10, softmax), batch 128
  M5  Keras's IMDB bidirectional LSTM: 200 int tokens -> Embedding(20000, 128) ->
      Bidirectional(LSTM(64)) -> Dense(1, sigmoid), batch 32 (inference 128)
Inference runs at batch 256 (M5: 128). Data is random, of the right shape.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "M1": {"input": (784,), "batch": 128},
    "M2": {"input": (28, 28, 1), "batch": 128},
    "M3": {"input": (32, 32, 3), "batch": 64},
    "M4": {"input": (28, 28), "batch": 128},
    "M5": {"input": (200,), "batch": 32, "infer_batch": 128, "vocab": 20000},
}
INFER_BATCH = 256
FRAMEWORKS = ("fastnn", "reference", "torch", "torch_cl", "keras_jax")
# --isa: the environment of every worker process (see the module docstring)
ISA_ENV = {
    "native": {},
    "avx2": {"FASTNN_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
}

# Forward FLOPs per sample (multiply-add = 2) of each model's convolutions and dense layers;
# a training step does about three times that (forward, dW, dX), less the first layer's dX.
_FWD_FLOPS = {
    "M1": [2 * 784 * 1024, 2 * 1024 * 1024, 2 * 1024 * 10],
    "M2": [2 * 26 * 26 * 32 * 9, 2 * 11 * 11 * 64 * 288, 2 * 1600 * 10],
    "M3": [2 * 32 * 32 * 32 * 27, 2 * 32 * 32 * 32 * 288, 2 * 16 * 16 * 64 * 288,
           2 * 16 * 16 * 64 * 576, 2 * 4096 * 256, 2 * 256 * 10],
    # recurrent models: 2 * steps * (input + recurrent GEMM) per direction, then the head
    "M4": [2 * 28 * (28 + 128) * 512, 2 * 128 * 10],
    "M5": [2 * 2 * 200 * (128 + 64) * 256, 2 * 128],
}
_RECURRENT = ("M4", "M5")     # no textbook-model reference (bench/test_rnn.py has the kernel's)


def _batch(model, mode):
    return MODELS[model]["batch"] if mode == "train" else MODELS[model].get("infer_batch", INFER_BATCH)


def flops_per_sample(model, mode):
    f = _FWD_FLOPS[model]
    return sum(f) if mode == "infer" else 3 * sum(f) - f[0]


# The targets: (mode, model) -> [(peer, minimum ratio fastnn/peer)]; "torch_best" is
# the faster of the default and channels_last PyTorch runs.
TARGETS = {
    ("train", "M1"): [("keras_jax", 1.0)], ("train", "M2"): [("torch_best", 1.25), ("reference", 4.0)],
    ("train", "M3"): [("torch_best", 1.25), ("reference", 4.0)],
    ("infer", "M1"): [("torch_best", 1.0)],
    ("infer", "M2"): [("torch_best", 1.25), ("keras_jax", 0.8)],
    ("infer", "M3"): [("torch_best", 1.25), ("keras_jax", 0.8)],
    ("train", "M4"): [("torch_best", 1.25), ("keras_jax", 1.25)],
    ("infer", "M4"): [("torch_best", 1.0), ("keras_jax", 1.0)],
    ("train", "M5"): [("torch_best", 1.25), ("keras_jax", 1.25)],
    ("infer", "M5"): [("torch_best", 1.0), ("keras_jax", 1.0)],
}


def _data(model, batch, n_batches, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n = batch * n_batches
    if model == "M5":
        x = rng.integers(0, MODELS[model]["vocab"], (n, *MODELS[model]["input"])).astype(np.int32)
        return x, rng.integers(0, 2, (n, 1)).astype(np.float32)
    x = rng.random((n, *MODELS[model]["input"]), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


# ----------------------------------------------------------------------------- fastnn / keras
def _keras_like_model(keras, name):
    L = keras.layers
    he = "he_normal"
    if name == "M1":
        layers = [keras.Input((784,)), L.Dense(1024, activation="relu", kernel_initializer=he),
                  L.Dense(1024, activation="relu", kernel_initializer=he),
                  L.Dense(10, activation="softmax", kernel_initializer=he)]
    elif name == "M2":
        layers = [keras.Input((28, 28, 1)),
                  L.Conv2D(32, 3, activation="relu", kernel_initializer=he), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, activation="relu", kernel_initializer=he), L.MaxPooling2D(2),
                  L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax", kernel_initializer=he)]
    elif name == "M4":
        layers = [keras.Input((28, 28)), L.LSTM(128), L.Dense(10, activation="softmax")]
    elif name == "M5":
        layers = [keras.Input((200,), dtype="int32"), L.Embedding(20000, 128),
                  L.Bidirectional(L.LSTM(64)), L.Dense(1, activation="sigmoid")]
    else:
        layers = [keras.Input((32, 32, 3))]
        for filters in (32, 64):
            for _ in range(2):
                layers += [L.Conv2D(filters, 3, padding="same", kernel_initializer=he),
                           L.BatchNormalization(), L.ReLU()]
            layers.append(L.MaxPooling2D(2))
        layers += [L.Flatten(), L.Dense(256, activation="relu", kernel_initializer=he),
                   L.Dense(10, activation="softmax", kernel_initializer=he)]
    model = keras.Sequential(layers)
    loss = "binary_crossentropy" if name == "M5" else "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return model


def _run_keras_like(keras, model_name, mode, steps, t0):
    batch = _batch(model_name, mode)
    model = _keras_like_model(keras, model_name)
    x, y = _data(model_name, batch, steps)
    times = []
    if mode == "train":
        model.train_on_batch(x[:batch], y[:batch])
        first = time.perf_counter() - t0
        for i in range(steps):
            s = time.perf_counter()
            model.train_on_batch(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            times.append(time.perf_counter() - s)
    else:
        model.predict_on_batch(x[:batch])
        first = time.perf_counter() - t0
        for i in range(steps):
            s = time.perf_counter()
            model.predict_on_batch(x[i * batch:(i + 1) * batch])
            times.append(time.perf_counter() - s)
    return batch, times, first


def run_fastnn(model_name, mode, steps, t0):
    import fastnn

    return _run_keras_like(fastnn, model_name, mode, steps, t0)


def run_keras_jax(model_name, mode, steps, t0):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    return _run_keras_like(keras, model_name, mode, steps, t0)


# ----------------------------------------------------------------------------- torch
def run_torch(model_name, mode, steps, t0, channels_last=False):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if model_name in _RECURRENT:
        return _run_torch_rnn(torch, nn, model_name, mode, steps, t0)
    if model_name == "M1":
        net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                            nn.Linear(1024, 10))
    elif model_name == "M2":
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                            nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5),
                            nn.Linear(64 * 5 * 5, 10))
    else:
        mods, c = [], 3
        for filters in (32, 64):
            for _ in range(2):
                mods += [nn.Conv2d(c, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU()]
                c = filters
            mods.append(nn.MaxPool2d(2))
        net = nn.Sequential(*mods, nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    batch = MODELS[model_name]["batch"] if mode == "train" else INFER_BATCH
    x_np, y_np = _data(model_name, batch, steps)
    x = torch.from_numpy(x_np)
    if x.dim() == 4:
        x = x.permute(0, 3, 1, 2).contiguous()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            net = net.to(memory_format=torch.channels_last)
    y = torch.from_numpy(y_np.argmax(1))
    return _time_torch(torch, net, x, y, nn.CrossEntropyLoss(), lambda z: torch.softmax(z, 1),
                       mode, batch, steps, t0)


def _time_torch(torch, net, x, y, loss_fn, out_act, mode, batch, steps, t0):
    """Fused-Adam training steps or inference batches of a torch model, timed one by one."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    times = []

    def train_step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        opt.step()

    if mode == "train":
        net.train()
        train_step(x[:batch], y[:batch])
        first = time.perf_counter() - t0
        for i in range(steps):
            s = time.perf_counter()
            train_step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            times.append(time.perf_counter() - s)
    else:
        net.eval()
        with torch.inference_mode():
            net(x[:batch])
            first = time.perf_counter() - t0
            for i in range(steps):
                s = time.perf_counter()
                out_act(net(x[i * batch:(i + 1) * batch]))
                times.append(time.perf_counter() - s)
    return batch, times, first


def _run_torch_rnn(torch, nn, model_name, mode, steps, t0):
    """M4 / M5 on nn.LSTM (bidirectional for M5), fused Adam."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if model_name == "M4":
                self.emb = None
                self.rnn = nn.LSTM(28, 128, batch_first=True)
                self.head = nn.Linear(128, 10)
            else:
                self.emb = nn.Embedding(20000, 128)
                self.rnn = nn.LSTM(128, 64, batch_first=True, bidirectional=True)
                self.head = nn.Linear(128, 1)

        def forward(self, x):
            if self.emb is not None:
                x = self.emb(x)
            _, (h, _) = self.rnn(x)
            h = h[-1] if self.emb is None else torch.cat([h[0], h[1]], 1)
            return self.head(h)

    net = Net()
    batch = _batch(model_name, mode)
    x_np, y_np = _data(model_name, batch, steps)
    x = torch.from_numpy(x_np.astype("int64") if model_name == "M5" else x_np)
    if model_name == "M5":
        y, loss_fn = torch.from_numpy(y_np), nn.BCEWithLogitsLoss()
    else:
        y, loss_fn = torch.from_numpy(y_np.argmax(1)), nn.CrossEntropyLoss()
    out_act = torch.sigmoid if model_name == "M5" else (lambda z: torch.softmax(z, 1))
    return _time_torch(torch, net, x, y, loss_fn, out_act, mode, batch, steps, t0)


# ----------------------------------------------------------------------------- reference
def run_reference(model_name, mode, steps, t0):
    sys.path.insert(0, HERE)
    from reference_models import build  # textbook-style layers over fastnn.reference

    batch = _batch(model_name, mode)
    net = build(model_name)
    x, y = _data(model_name, batch, steps)
    times = []
    step = net.train_step if mode == "train" else net.predict
    args = (lambda i: (x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])) if mode == "train" \
        else (lambda i: (x[i * batch:(i + 1) * batch],))
    step(*args(0))
    first = time.perf_counter() - t0
    for i in range(steps):
        s = time.perf_counter()
        step(*args(i))
        times.append(time.perf_counter() - s)
    return batch, times, first


RUNNERS = {
    "fastnn": run_fastnn,
    "reference": run_reference,
    "torch": run_torch,
    "torch_cl": lambda *a: run_torch(*a, channels_last=True),
    "keras_jax": run_keras_jax,
}


def worker(framework, model_name, mode, steps):
    t0 = time.perf_counter()
    batch, times, first = RUNNERS[framework](model_name, mode, steps, t0)
    warm = times[max(1, len(times) // 5):]  # drop warm-up steps
    med = statistics.median(warm)
    flavour = None
    if framework == "fastnn":
        from fastnn.kernels import isa

        flavour = isa.get_isa()
    print(json.dumps({
        "framework": framework, "model": model_name, "mode": mode, "batch": batch, "isa": flavour,
        "samples_per_s": batch / med, "median_step_s": med, "steps": len(warm),
        "first_step_s": first,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def available(framework):
    mod = {"torch": "torch", "torch_cl": "torch", "keras_jax": "jax"}.get(framework)
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None and (
        framework != "keras_jax" or importlib.util.find_spec("keras") is not None)


def ceilings():
    """The machine's float32 ceilings at the benchmark's thread count: BLAS sgemm (np.matmul,
    2048^3 and the M1 inference shape) and a pure-FMA loop bound (from the GEMM: OpenBLAS
    reaches ~85% of it)."""
    import numpy as np

    out = {}
    for name, (m, k, n) in {"sgemm_2048": (2048, 2048, 2048), "sgemm_256x1024x1024": (256, 1024, 1024)}.items():
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(k, n).astype(np.float32)
        c = np.empty((m, n), np.float32)
        np.matmul(a, b, out=c)
        best = float("inf")
        for _ in range(5 if m > 1000 else 30):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        out[name + "_gflops"] = 2.0 * m * k * n / best / 1e9
    return out


def _ceilings_in(env):
    """ceilings() measured in a child with env (e.g. OpenBLAS held to its Haswell kernels)."""
    code = f"import json, sys; sys.path.insert(0, {HERE!r}); import peers; print(json.dumps(peers.ceilings()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}


def machine():
    """Cores, CPU model (with family/model and the widest SIMD it has) and package versions."""
    from importlib import metadata

    cpu, fam, mod, flags = platform.processor() or "?", "?", "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name":
                    cpu = val
                elif key == "cpu family":
                    fam = val
                elif key == "model":
                    mod = val
                elif key == "flags":
                    flags = set(val.split())
                    break
    except OSError:
        pass
    isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse2"
    versions = {}
    for pkg in ("numpy", "torch", "jax", "keras"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"cores": len(os.sched_getaffinity(0)), "cpu": f"{cpu} (family {fam} model {mod}, {isa})",
            "python": platform.python_version(), "versions": versions}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--modes", nargs="+", default=["train", "infer"])
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", default=os.path.join(HERE, "..", "docs"))
    p.add_argument("--isa", choices=list(ISA_ENV), default="native",
                   help="native: each framework's best; avx2: every framework held to AVX2 + FMA")
    p.add_argument("--from-json", metavar="PEERS_JSON",
                   help="redo the report and chart from a saved peers.json instead of measuring")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            saved = json.load(fh)
        results = saved["results"]
        args.ceilings = saved.get("ceilings", {})
        seen = {r["framework"] for r in results}
        args.models = [m for m in args.models if any(r["model"] == m for r in results)]
        args.repeats = max(sum(1 for r in results if (r["framework"], r["model"], r["mode"]) == (
            results[0]["framework"], results[0]["model"], results[0]["mode"])), 1)
        args.command = saved.get("command")
        args.machine_info = saved.get("machine")
        args.isa = saved.get("isa", "native")
        args.date = saved.get("date")
        report(results, args, [f for f in FRAMEWORKS if f in seen])
        return
    fws = [f for f in args.frameworks if available(f)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **ISA_ENV[args.isa]}
    args.ceilings = ceilings() if args.isa == "native" else _ceilings_in(env)
    results = []
    for model_name in args.models:
        for mode in args.modes:
            for r in range(args.repeats):
                for fw in fws:  # interleaved: A B C A B C ...
                    if fw == "reference" and model_name in _RECURRENT:
                        continue
                    steps = args.steps if fw != "reference" else max(6, args.steps // 4)
                    cmd = [sys.executable, os.path.abspath(__file__), "worker", fw, model_name, mode, str(steps)]
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        print(f"{fw} {model_name} {mode}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                        continue
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    results.append(res)
                    print(f"{model_name} {mode:5s} {fw:10s} rep {r}: {res['samples_per_s']:9.0f} samples/s  "
                          f"first step {res['first_step_s']:.2f}s  rss {res['peak_rss_mb']:.0f} MB", flush=True)
    report(results, args, fws)


def report(results, args, fws):
    from collections import defaultdict

    agg = defaultdict(list)
    for r in results:
        agg[(r["model"], r["mode"], r["framework"])].append(r)
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("samples_per_s", "first_step_s", "peak_rss_mb")}
           for k, v in agg.items()}
    info = getattr(args, "machine_info", None) or machine()
    cmd = getattr(args, "command", None) or "python bench/peers.py " + " ".join(sys.argv[1:])
    isa = getattr(args, "isa", "native")
    flavours = sorted({r.get("isa") for r in results if r["framework"] == "fastnn" and r.get("isa")})
    held = ("every framework held to AVX2 + FMA (" + ", ".join(f"{k}={v}" for k, v in ISA_ENV["avx2"].items())
            + ")") if isa == "avx2" else "each framework's best instruction set"
    lines = [f"## {'AVX2 + FMA' if isa == 'avx2' else 'Native instruction set'} "
             f"({getattr(args, 'date', None) or datetime.date.today()})", "",
             f"Machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ". "
             f"Instruction set: {held}; fastnn's flavour: {', '.join(flavours) or '?'}. "
             f"Command: `{cmd.strip()}`. Medians of {args.repeats} interleaved processes; "
             "samples/s (ratio fastnn/peer), time to first step, peak RSS.", ""]
    peers = [f for f in fws if f != "fastnn"]
    lines.append("| model | mode | fastnn | " + " | ".join(peers) + " |")
    lines.append("|---|---|---|" + "---|" * len(peers))
    for model_name in args.models:
        for mode in args.modes:
            f = med.get((model_name, mode, "fastnn"))
            row = [model_name, mode]
            row.append(f"{f['samples_per_s']:.0f} ({f['first_step_s']:.2f}s, {f['peak_rss_mb']:.0f} MB)" if f else "-")
            for peer in peers:
                m = med.get((model_name, mode, peer))
                if not m:
                    row.append("-")
                    continue
                ratio = f"; x{f['samples_per_s'] / m['samples_per_s']:.2f}" if f else ""
                row.append(f"{m['samples_per_s']:.0f} ({m['first_step_s']:.2f}s, {m['peak_rss_mb']:.0f} MB{ratio})")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "GFLOP/s of fastnn (conv and dense FLOPs per sample x samples/s): " + ", ".join(
        f"{m} {mode} {med[(m, mode, 'fastnn')]['samples_per_s'] * flops_per_sample(m, mode) / 1e9:.0f}"
        for m in args.models for mode in args.modes if (m, mode, "fastnn") in med) +
        "; the machine's sgemm ceiling (np.matmul, all cores): " +
        ", ".join(f"{k[:-7]} {v:.0f}" for k, v in args.ceilings.items()) + "."]
    lines += ["", "The issue's targets (ratio fastnn / peer; torch_best = the faster of torch and torch_cl):", "",
              "| model | mode | peer | target | measured | met |", "|---|---|---|---|---|---|"]
    for (mode, model_name), goals in TARGETS.items():
        f = med.get((model_name, mode, "fastnn"))
        if model_name not in args.models or mode not in args.modes or not f:
            continue
        for peer, goal in goals:
            names = ("torch", "torch_cl") if peer == "torch_best" else (peer,)
            rates = [med[(model_name, mode, p)]["samples_per_s"] for p in names if (model_name, mode, p) in med]
            if not rates:
                continue
            ratio = f["samples_per_s"] / max(rates)
            lines.append(f"| {model_name} | {mode} | {peer} | >= {goal:g} | {ratio:.2f} | "
                         f"{'yes' if ratio >= goal else '**no**'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    suffix = "" if isa == "native" else f"_{isa}"
    with open(os.path.join(args.out, f"peers{suffix}.section.md"), "w") as fh:
        fh.write(text)
    if not getattr(args, "from_json", None):
        with open(os.path.join(args.out, f"peers{suffix}.json"), "w") as fh:
            json.dump({"machine": info, "command": cmd, "isa": isa, "date": str(datetime.date.today()),
                       "ceilings": args.ceilings,
                       "results": results}, fh, indent=1)
    _write_markdown(args.out)
    try:
        plot(med, args, fws, suffix)
    except ImportError:
        pass


def _write_markdown(out):
    """docs/peers.md: one section per instruction set measured (the saved .section.md files)."""
    parts = ["# fastnn vs peers", "",
             "One table per instruction set: the native one (each framework's best) and AVX2 + FMA "
             "(every framework held to it, what an AVX2-only machine runs). `python bench/peers.py "
             "[--isa avx2]` remakes a section; charts: peers.png, peers_avx2.png.", ""]
    for isa in ISA_ENV:
        path = os.path.join(out, f"peers{'' if isa == 'native' else '_' + isa}.section.md")
        if os.path.exists(path):
            with open(path) as fh:
                parts.append(fh.read())
    with open(os.path.join(out, "peers.md"), "w") as fh:
        fh.write("\n".join(parts))


def plot(med, args, fws, suffix=""):
    """Two rows of panels: samples/s per framework (log scale), and fastnn's speed-up over each
    peer with the issue's targets drawn as short black bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(args.modes), figsize=(6.5 * len(args.modes), 8), squeeze=False)
    peers = [f for f in fws if f not in ("fastnn", "reference")]   # the reference's 10-20x in the table
    for col, mode in enumerate(args.modes):
        ax = axes[0][col]
        width = 0.8 / len(fws)
        for j, fw in enumerate(fws):
            vals = [med.get((m, mode, fw), {}).get("samples_per_s", 0) for m in args.models]
            ax.bar([i + j * width for i in range(len(args.models))], vals, width, label=fw,
                   color=f"C{FRAMEWORKS.index(fw)}")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(args.models))], args.models)
        ax.set_ylabel("samples/s (higher is better)")
        ax.set_yscale("log")
        ax.set_title(f"{mode}: throughput")
        ax.legend(fontsize=8)
        ax = axes[1][col]
        width = 0.8 / max(1, len(peers))
        for j, peer in enumerate(peers):
            xs, vals = [], []
            for i, m in enumerate(args.models):
                f, p = med.get((m, mode, "fastnn")), med.get((m, mode, peer))
                if f and p:
                    xs.append(i + j * width)
                    vals.append(f["samples_per_s"] / p["samples_per_s"])
            bars = ax.bar(xs, vals, width, label=peer, color=f"C{FRAMEWORKS.index(peer)}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
            for i, m in enumerate(args.models):
                for goal_peer, goal in TARGETS.get((mode, m), ()):
                    if goal_peer == peer or (goal_peer == "torch_best" and peer in ("torch", "torch_cl")):
                        x0 = i + j * width
                        ax.plot([x0 - width / 2, x0 + width / 2], [goal, goal], color="black", lw=2)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(args.models))], args.models)
        ax.set_ylabel("fastnn / peer (black: the issue's target)")
        ax.set_title(f"{mode}: fastnn's speed-up over each peer")
        ax.legend(fontsize=8)
    info = getattr(args, "machine_info", None) or machine()
    held = " (every framework held to AVX2 + FMA)" if suffix == "_avx2" else ""
    fig.suptitle(f"fastnn vs peers, {datetime.date.today()}: {info['cpu']}, {info['cores']} cores{held}")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, f"peers{suffix}.png"), dpi=100)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
