"""Per-layer profile of a training step: where the time of `model.profile(x, y)` goes.

The model's forward/backward loops read `model._timer`; when it is None (always, except
inside `profile`) they run their plain loop, so the timer costs one attribute test per pass.
When set, every layer's forward and backward are timed with `time.perf_counter`, and the
train step adds the loss (value and gradient) and the optimizer step (regularizers,
`apply_flat`, constraints). What is left of the measured step (metric updates, gradient sums at
branch points, Python glue) is reported as "other", so the shares add up to 1.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.layers.base import shape_str


class StepTimer:
    """Accumulated seconds per node (forward, backward), loss and optimizer over timed steps."""

    def __init__(self, n_nodes):
        self.forward = [0.0] * n_nodes
        self.backward = [0.0] * n_nodes
        self.shapes = [None] * n_nodes     # output shape of each node (last timed step)
        self.in_shapes = [None] * n_nodes  # shape of its (first) input
        self.loss = 0.0
        self.optimizer = 0.0

    def reset(self):
        n = len(self.forward)
        self.forward = [0.0] * n
        self.backward = [0.0] * n
        self.loss = 0.0
        self.optimizer = 0.0


def layer_flops(layer, x_shape, y_shape):
    """(forward, backward) floating-point operations of one call of a Dense/Conv layer, else (0, 0).

    A multiply-add counts 2. Forward is the GEMM 2·M·K·U (Dense: M rows of x, K inputs, U units;
    Conv: M = N·OH·OW output pixels, K = KH·KW·C); backward is the weight gradient (same count)
    plus the input gradient (same count again) unless the layer is first in the model.
    """
    from fastnn.layers.convolutional import BaseConv
    from fastnn.layers.core import Dense

    if isinstance(layer, Dense):
        m = int(np.prod(x_shape[:-1], dtype=np.int64))
        fwd = 2 * m * int(x_shape[-1]) * layer.units
    elif isinstance(layer, BaseConv):
        m = int(np.prod(y_shape[:-1], dtype=np.int64))
        k = int(np.prod(layer.kernel_size, dtype=np.int64)) * int(x_shape[-1])
        fwd = 2 * m * k * layer.filters
    else:
        return 0, 0
    return fwd, fwd * (2 if layer._need_dx else 1)


def run_profile(model, x, y, steps=5, batch_size=None, print_fn=print):
    """Time `steps` training steps after one warm-up step; print and return the per-layer rows.

    The weights and optimizer state are restored afterwards, so profiling does not train.
    """
    fn = "profile"
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{fn}: steps must be a positive int; received steps={steps!r}.")
    xs = model._prepare_x(x, fn)
    model._ready(xs, fn)
    n = model._check_x_shapes(xs, fn)
    yy = model._prepare_y(y, n, fn)
    sws = [None] * len(yy)
    batch_size = model._check_batch_size(batch_size, fn, min(32, n))
    if n == 0:
        raise ValueError(f"{fn}: x is empty (0 samples).")
    batch_size = min(batch_size, n)
    n_batches = max(1, n // batch_size)

    def batch(i):
        sl = slice((i % n_batches) * batch_size, (i % n_batches + 1) * batch_size)
        return [a[sl] for a in xs], [None if a is None else a[sl] for a in yy]

    saved_w = [v.value.copy() for v in model.weights]
    opt = model.optimizer
    saved_opt = [np.array(v, copy=True) for v in opt.variables()] if opt.built else None
    saved_metrics = model._metrics
    timer = StepTimer(len(model._nodes))
    clock = time.perf_counter
    try:
        model.reset_metrics()
        bx, by = batch(0)
        model._train_step(bx, by, sws)          # warm-up: buffers, caches, lazy kernels
        model._timer = timer
        model._train_step(bx, by, sws)          # records the output shapes
        timer.reset()
        total = 0.0
        for i in range(steps):
            bx, by = batch(i + 1)
            s = clock()
            model._train_step(bx, by, sws)
            total += clock() - s
    finally:
        model._timer = None
        for v, w in zip(model.weights, saved_w):
            v.value[...] = w
        if saved_opt is not None:
            opt.set_variables(saved_opt)
        model._metrics = saved_metrics
        model.reset_metrics()

    per = 1000.0 / steps
    rows = []
    accounted = 0.0
    for k, (layer, ins, _) in enumerate(model._nodes):
        f, b = timer.forward[k], timer.backward[k]
        accounted += f + b
        shape = timer.shapes[k]
        flops = 0
        if shape is not None and len(ins) == 1:
            in_shape = timer.in_shapes[k]
            ff, fb = layer_flops(layer, in_shape, shape)
            flops = ff + fb
        rows.append({"name": layer.name, "type": type(layer).__name__,
                     "output_shape": tuple(shape) if shape is not None else None,
                     "forward_ms": f * per, "backward_ms": b * per, "share": (f + b) / total,
                     "flops": flops,
                     "gflops": (flops / ((f + b) / steps) / 1e9) if flops and f + b > 0 else None})
    accounted += timer.loss + timer.optimizer
    for name, t in (("loss", timer.loss), ("optimizer", timer.optimizer),
                    ("other", max(total - accounted, 0.0))):
        rows.append({"name": name, "type": "", "output_shape": None, "forward_ms": t * per,
                     "backward_ms": 0.0, "share": t / total, "flops": 0, "gflops": None})
    total_flops = sum(r["flops"] for r in rows)
    rows.append({"name": "total", "type": f"batch {batch_size}", "output_shape": None,
                 "forward_ms": sum(r["forward_ms"] for r in rows[:len(model._nodes)]),
                 "backward_ms": sum(r["backward_ms"] for r in rows[:len(model._nodes)]),
                 "step_ms": total * per, "share": 1.0, "flops": total_flops,
                 "gflops": total_flops / (total / steps) / 1e9 if total_flops else None})
    if print_fn is not None:
        for line in format_rows(rows):
            print_fn(line)
    return rows


def format_rows(rows):
    """The profile as a text table (one string per line)."""
    head = f"{'layer':<22}{'type':<20}{'output shape':<20}{'fwd ms':>9}{'bwd ms':>9}{'share':>8}{'GFLOP/s':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["name"] == "total":
            lines.append("-" * len(head))
        shape = shape_str((None, *r["output_shape"][1:])) if r["output_shape"] is not None else ""
        fwd = r.get("step_ms", r["forward_ms"]) if r["name"] == "total" else r["forward_ms"]
        bwd = "" if r["name"] in ("loss", "optimizer", "other", "total") else f"{r['backward_ms']:9.2f}"
        gf = f"{r['gflops']:9.1f}" if r["gflops"] else ""
        lines.append(f"{r['name'][:21]:<22}{r['type'][:19]:<20}{shape[:19]:<20}{fwd:9.2f}{bwd:>9}"
                     f"{100 * r['share']:7.1f}%{gf:>9}")
    return lines
