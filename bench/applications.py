"""fastnn.applications against PyTorch and ONNX Runtime at 224x224.

The method of bench/peers.py: every measurement in a fresh process (its peak RSS is that
framework's alone), repeats interleaved (fastnn, torch, onnxruntime, fastnn, ...) because the
machine is shared, medians reported with the machine's load.

    python bench/applications.py                      # every case, 3 repeats
    python bench/applications.py --cases resnet50-infer-1 --repeats 5
    python bench/applications.py worker fastnn resnet50-infer-16 5   # one measurement (JSON)
    python bench/applications.py --isa avx2           # every framework held to AVX2 + FMA

Cases: inference of ResNet50 and MobileNetV2 at batch 1 and 16; one training step of ResNet50
at batch 16 (SGD, momentum 0.9, sparse categorical crossentropy); fastnn's time to build each
model (in the fastnn worker). Peers:
  torch  the same architectures as Keras's, in plain torch.nn (biases in ResNet50's convs,
         Keras's strides and its TensorFlow-style 'same' padding as explicit zero padding,
         batch-norm epsilons), channels_last; inference in eval mode under torch.no_grad()
  ort    ONNX Runtime (CPU provider, all cores) on those PyTorch models exported with
         torch.onnx.export(..., dynamo=False), opset 17
Every worker runs with OMP_WAIT_POLICY=passive (unless set): fastnn's default, and on a shared
machine PyTorch's spinning OpenMP threads otherwise lose their time slices to other processes.
Needs: torch==2.13.0 (CPU build), `pip install onnxruntime onnx` (test/bench only).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
CASES = {   # name: (model, mode, batch)
    "resnet50-infer-1": ("resnet50", "infer", 1), "resnet50-infer-16": ("resnet50", "infer", 16),
    "mobilenetv2-infer-1": ("mobilenetv2", "infer", 1), "mobilenetv2-infer-16": ("mobilenetv2", "infer", 16),
    "resnet50-train-16": ("resnet50", "train", 16),
}
FRAMEWORKS = ("fastnn", "torch", "ort")
# the targets: (mode, peer) -> minimum ratio fastnn / peer (samples/s)
TARGETS = {("infer", "torch"): 1.0, ("infer", "ort"): 0.8, ("train", "torch"): 1.25}
STEPS = {"infer": {1: 20, 16: 5}, "train": {16: 4}}
ISA_ENV = {
    "native": {},
    "avx2": {"FASTNN_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
SIZE, CLASSES = 224, 1000


def _data(batch, n, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (batch * n, SIZE, SIZE, 3)).astype(np.float32),
            rng.integers(0, CLASSES, batch * n))


# ----------------------------------------------------------------------------- fastnn
def run_fastnn(model, mode, batch, steps):
    import fastnn
    t = time.perf_counter()
    ctor = {"resnet50": fastnn.applications.ResNet50, "mobilenetv2": fastnn.applications.MobileNetV2}[model]
    net = ctor(weights=None)
    build = time.perf_counter() - t
    x, y = _data(batch, steps + 1)
    times = []
    if mode == "train":
        net.compile(optimizer=fastnn.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
        step = lambda i: net.train_on_batch(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])  # noqa: E731
    else:
        step = lambda i: net.predict_on_batch(x[i * batch:(i + 1) * batch])  # noqa: E731
    for i in range(steps + 1):
        s = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - s)
    return times, {"build_s": build}


# ----------------------------------------------------------------------------- torch models
def torch_model(model):
    """Keras's ResNet50 / MobileNetV2 in plain torch.nn (NCHW modules; run channels_last)."""
    from torch import nn

    class ResBlock(nn.Module):
        def __init__(self, cin, filters, stride, shortcut):
            super().__init__()
            bn = lambda c: nn.BatchNorm2d(c, eps=1.001e-5)  # noqa: E731
            self.short = nn.Sequential(nn.Conv2d(cin, 4 * filters, 1, stride), bn(4 * filters)) if shortcut else None
            self.body = nn.Sequential(
                nn.Conv2d(cin, filters, 1, stride), bn(filters), nn.ReLU(inplace=True),
                nn.Conv2d(filters, filters, 3, 1, padding=1), bn(filters), nn.ReLU(inplace=True),
                nn.Conv2d(filters, 4 * filters, 1), bn(4 * filters))
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            s = x if self.short is None else self.short(x)
            return self.relu(self.body(x) + s)

    class InvRes(nn.Module):
        def __init__(self, cin, filters, stride, expansion):
            super().__init__()
            bn = lambda c: nn.BatchNorm2d(c, eps=1e-3, momentum=0.001)  # noqa: E731
            mid = cin * expansion
            mods = [] if expansion == 1 else [nn.Conv2d(cin, mid, 1, bias=False), bn(mid), nn.ReLU6(inplace=True)]
            if stride == 2:   # Keras's correct_pad on even sizes: (0, 1) rows and columns
                mods.append(nn.ZeroPad2d((0, 1, 0, 1)))
            mods += [nn.Conv2d(mid, mid, 3, stride, padding=1 if stride == 1 else 0, groups=mid, bias=False),
                     bn(mid), nn.ReLU6(inplace=True), nn.Conv2d(mid, filters, 1, bias=False), bn(filters)]
            self.body = nn.Sequential(*mods)
            self.residual = stride == 1 and cin == filters

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    if model == "resnet50":
        mods = [nn.ZeroPad2d(3), nn.Conv2d(3, 64, 7, 2), nn.BatchNorm2d(64, eps=1.001e-5), nn.ReLU(inplace=True),
                nn.ZeroPad2d(1), nn.MaxPool2d(3, 2)]
        cin = 64
        for k, (filters, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for b in range(blocks):
                mods.append(ResBlock(cin, filters, (1 if k == 0 else 2) if b == 0 else 1, b == 0))
                cin = 4 * filters
        mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, CLASSES)]
        return nn.Sequential(*mods)
    from fastnn.applications.mobilenet_v2 import BLOCKS
    mods = [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32, eps=1e-3),
            nn.ReLU6(inplace=True)]
    cin = 32
    for filters, stride, expansion in BLOCKS:
        mods.append(InvRes(cin, filters, stride, expansion))
        cin = filters
    mods += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6(inplace=True),
             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, CLASSES)]
    return nn.Sequential(*mods)


def run_torch(model, mode, batch, steps):
    import torch
    torch.manual_seed(0)
    t = time.perf_counter()
    net = torch_model(model).to(memory_format=torch.channels_last)
    build = time.perf_counter() - t
    x_np, y_np = _data(batch, steps + 1)
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(y_np)
    times = []
    if mode == "train":
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        for i in range(steps + 1):
            s = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[i * batch:(i + 1) * batch]), y[i * batch:(i + 1) * batch]).backward()
            opt.step()
            times.append(time.perf_counter() - s)
    else:
        net.eval()
        with torch.no_grad():
            for i in range(steps + 1):
                s = time.perf_counter()
                torch.softmax(net(x[i * batch:(i + 1) * batch]), 1)
                times.append(time.perf_counter() - s)
    return times, {"build_s": build}


def export_onnx(model, path):
    """The PyTorch model in eval mode, exported with the TorchScript exporter (opset 17, batch axis
    dynamic, softmax included as in the other frameworks)."""
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch_model(model), torch.nn.Softmax(1)).eval()
    torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), path, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})


def run_ort(model, mode, batch, steps, onnx_path=None):
    import numpy as np
    import onnxruntime as ort
    if onnx_path is None:
        onnx_path = os.path.join(tempfile.mkdtemp(), f"{model}.onnx")
        export_onnx(model, onnx_path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    build = time.perf_counter() - t
    x_np, _ = _data(batch, steps + 1)
    x = np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))
    times = []
    for i in range(steps + 1):
        s = time.perf_counter()
        sess.run(None, {"x": x[i * batch:(i + 1) * batch]})
        times.append(time.perf_counter() - s)
    return times, {"build_s": build}


RUNNERS = {"fastnn": run_fastnn, "torch": run_torch, "ort": run_ort}


def worker(framework, case, steps, onnx_path=None):
    model, mode, batch = CASES[case]
    kw = {"onnx_path": onnx_path} if framework == "ort" else {}
    times, extra = RUNNERS[framework](model, mode, batch, steps, **kw)
    warm = times[1:]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"framework": framework, "case": case, "batch": batch, "median_step_s": statistics.median(warm),
                      "samples_per_s": batch / statistics.median(warm), "steps": len(warm),
                      "peak_rss_mb": cpu.ru_maxrss / 1024, **extra}))


def load():
    return os.getloadavg()[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES))
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--isa", choices=list(ISA_ENV), default="native")
    p.add_argument("--out", default=os.path.join(HERE, "..", "docs"))
    p.add_argument("--from-json", metavar="JSON", help="redo the report and chart from a saved result file")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            saved = json.load(fh)
        return report(saved, args)
    # idle OpenMP threads sleep in every framework (fastnn's own default): with PyTorch's spinning
    # default its MobileNetV2 step took 186 ms instead of 36 ms on this shared machine under load 6
    env = {"OMP_WAIT_POLICY": "passive", **os.environ, "PYTHONWARNINGS": "ignore", **ISA_ENV[args.isa]}
    onnx_dir = tempfile.mkdtemp()
    onnx_paths = {}
    if "ort" in args.frameworks:
        for model in sorted({CASES[c][0] for c in args.cases if CASES[c][1] == "infer"}):
            onnx_paths[model] = os.path.join(onnx_dir, f"{model}.onnx")
            code = (f"import sys; sys.path.insert(0, {HERE!r}); import applications; "
                    f"applications.export_onnx({model!r}, {onnx_paths[model]!r})")
            subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    results, loads = [], []
    for case in args.cases:
        model, mode, batch = CASES[case]
        for r in range(args.repeats):
            for fw in args.frameworks:
                if fw == "ort" and mode == "train":
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "worker", fw, case, str(STEPS[mode][batch])]
                if fw == "ort":
                    cmd.append(onnx_paths[model])
                before = load()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(f"{fw} {case}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                res["load"] = (before + load()) / 2
                loads.append(res["load"])
                results.append(res)
                print(f"{case:22s} {fw:7s} rep {r}: {res['samples_per_s']:8.2f} samples/s  "
                      f"({res['median_step_s'] * 1e3:7.1f} ms/step)  rss {res['peak_rss_mb']:5.0f} MB  "
                      f"build {res['build_s']:.2f}s  load {res['load']:.1f}", flush=True)
    saved = {"date": str(datetime.date.today()), "isa": args.isa,
             "command": "python bench/applications.py " + " ".join(sys.argv[1:] if argv is None else argv),
             "threads": os.environ.get("FASTNN_NUM_THREADS", "all cores"),
             "omp_wait_policy": env["OMP_WAIT_POLICY"], "load": [min(loads), max(loads)]
             if loads else None, "results": results}
    suffix = "" if args.isa == "native" else f"_{args.isa}"
    os.makedirs(args.out, exist_ok=True)      # (a missing folder lost a whole run's results)
    with open(os.path.join(args.out, f"applications{suffix}.json"), "w") as fh:
        json.dump(saved, fh, indent=1)
    report(saved, args)


def report(saved, args):
    from collections import defaultdict
    agg = defaultdict(list)
    for r in saved["results"]:
        agg[(r["case"], r["framework"])].append(r)
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("samples_per_s", "median_step_s", "peak_rss_mb",
                                                             "build_s")} for k, v in agg.items()}
    cases = [c for c in CASES if any(k[0] == c for k in med)]
    lines = [f"Measured {saved['date']} ({saved['isa']} instruction set), `{saved['command'].strip()}`; "
             f"load average {saved['load'][0]:.1f}-{saved['load'][1]:.1f} on 2 cores during the runs, "
             f"OMP_WAIT_POLICY={saved.get('omp_wait_policy', 'unset')} in every worker. "
             "Medians of interleaved processes: ms per step (samples/s), fastnn's ratio to each peer "
             "(samples/s; in brackets the range of the ratios within one repeat), peak RSS.", "",
             "| case | fastnn | PyTorch | ONNX Runtime | fastnn / PyTorch | fastnn / ORT | RSS fastnn / PyTorch / ORT (MB) |",
             "|---|---|---|---|---|---|---|"]
    verdicts = []
    for c in cases:
        model, mode, batch = CASES[c]
        cell = {fw: med.get((c, fw)) for fw in FRAMEWORKS}
        fmt = lambda m: f"{m['median_step_s'] * 1e3:.0f} ms ({m['samples_per_s']:.1f}/s)" if m else "-"  # noqa: E731
        ratio, spread = {}, {}
        for peer in ("torch", "ort"):
            if cell["fastnn"] and cell[peer]:
                ratio[peer] = cell["fastnn"]["samples_per_s"] / cell[peer]["samples_per_s"]
                # the same repeat's pair (run back to back): how far the load moved the ratio
                pairs = [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(agg[(c, "fastnn")], agg[(c, peer)])]
                spread[peer] = f" ({min(pairs):.2f}-{max(pairs):.2f})" if len(pairs) > 1 else ""
                goal = TARGETS.get((mode, peer))
                if goal:
                    verdicts.append((c, peer, goal, ratio[peer]))
        rss = " / ".join(f"{cell[fw]['peak_rss_mb']:.0f}" if cell[fw] else "-" for fw in FRAMEWORKS)
        lines.append(f"| {c} | {fmt(cell['fastnn'])} | {fmt(cell['torch'])} | {fmt(cell['ort'])} | "
                     + " | ".join(f"x{ratio[p]:.2f}{spread[p]}" if p in ratio else "-" for p in ("torch", "ort"))
                     + f" | {rss} |")
    builds = {m: statistics.median(r["build_s"] for r in saved["results"] if r["framework"] == "fastnn"
                                   and CASES[r["case"]][0] == m)
              for m in {CASES[c][0] for c in cases}}
    lines += ["", "fastnn's time to build each model (constructor, weights initialised): " +
              ", ".join(f"{m} {s:.2f} s" for m, s in sorted(builds.items())) + ".", "",
              "| case | peer | target | measured | met |", "|---|---|---|---|---|"]
    for c, peer, goal, r in verdicts:
        lines.append(f"| {c} | {peer} | >= {goal:g} | {r:.2f} | {'yes' if r >= goal else '**no**'} |")
    rss_ok = [c for c in cases if med.get((c, "fastnn")) and med.get((c, "torch"))]
    lines += ["", "Peak RSS below PyTorch's: " + ", ".join(
        f"{c} {'yes' if med[(c, 'fastnn')]['peak_rss_mb'] < med[(c, 'torch')]['peak_rss_mb'] else '**no**'}"
        for c in rss_ok) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    suffix = "" if saved["isa"] == "native" else f"_{saved['isa']}"
    try:
        plot(med, cases, os.path.join(args.out, f"applications{suffix}.png"), saved)
    except ImportError:
        pass


def plot(med, cases, path, saved):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.27
    for j, fw in enumerate(FRAMEWORKS):
        vals = [med[(c, fw)]["samples_per_s"] / med[(c, "torch")]["samples_per_s"]
                if (c, fw) in med and (c, "torch") in med else 0 for c in cases]
        ax.bar([i + (j - 1) * width for i in range(len(cases))], vals, width,
               label={"fastnn": "fastnn", "torch": "PyTorch (channels_last)", "ort": "ONNX Runtime"}[fw])
    for i, c in enumerate(cases):
        mode = CASES[c][1]
        goal = TARGETS.get((mode, "torch"))
        ax.plot([i - 1.5 * width, i - 0.5 * width], [goal, goal], color="black", lw=2)
    ax.set_xticks(range(len(cases)), cases, rotation=15)
    ax.set_ylabel("samples/s relative to PyTorch")
    ax.set_title(f"fastnn.applications at 224x224 ({saved['date']}, load {saved['load'][0]:.1f}-"
                 f"{saved['load'][1]:.1f}); black: fastnn's target vs PyTorch")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), *(sys.argv[5:6]))
    else:
        main()
