"""Depthwise convolution: fastnn's kernel against PyTorch's (channels_last, the oneDNN path
PyTorch takes on this CPU) on MobileNetV2's and EfficientNet-B0's depthwise layers.

    python bench/depthwise_peers.py                 # 1 thread and all threads, both ways
    python bench/depthwise_peers.py --threads 1 --rounds 15

One process; for each shape the two frameworks run interleaved (fastnn, torch, fastnn, ...) and
the report takes each side's median over the rounds, so a noisy neighbour slows both alike.
Inference is the forward at batch 1 (no_grad); training is forward + backward (dx, dw) at
batch 16. Each result is checked against the other framework once before timing. Prints a
markdown table with the machine load; ratio = torch time / fastnn time (> 1: fastnn faster).
Needs `pip install torch==2.13.0` (the CPU build).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

# name: (H, C, kernel, stride)
LAYERS = {
    "mbv2 112x112x32 3x3": (112, 32, 3, 1),
    "mbv2 112x112x96 3x3 s2": (112, 96, 3, 2),
    "mbv2 56x56x144 3x3": (56, 144, 3, 1),
    "mbv2 28x28x192 3x3": (28, 192, 3, 1),
    "mbv2 14x14x576 3x3": (14, 576, 3, 1),
    "mbv2 7x7x960 3x3": (7, 960, 3, 1),
    "effb0 56x56x144 5x5 s2": (56, 144, 5, 2),
    "effb0 14x14x672 5x5": (14, 672, 5, 1),
}


def _cases(name, batch, seed=0):
    import torch

    h, c, k, s = LAYERS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, h, h, c), dtype=np.float32)
    w = rng.standard_normal((k, k, c, 1), dtype=np.float32) * np.float32(0.3)
    conv = torch.nn.Conv2d(c, c, k, s, padding=k // 2, groups=c, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[:, :, :, 0].transpose(2, 0, 1)))[:, None])
    conv = conv.to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)          # NHWC memory = channels_last
    return x, w, s, conv, xt


def _fastnn_fns(x, w, s):
    from fastnn.kernels import depthwise as D

    p = w.shape[0] // 2
    pad = ((p, p), (p, p))        # PyTorch's symmetric padding (Keras's MobileNetV2 pads so too)
    y = D.depthwise_conv2d(x, w, None, s, pad)
    dy = np.ones_like(y)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(w.shape[2], np.float32)

    def infer():
        D.depthwise_conv2d(x, w, None, s, pad, out=y)

    def train():
        D.depthwise_conv2d(x, w, None, s, pad, out=y)
        D.depthwise_conv2d_backward(x, w, dy, s, pad, dx=dx, dw=dw, db=db)
    return infer, train, y


def _torch_fns(conv, xt):
    import torch

    xg = xt.detach().clone().requires_grad_(True)
    with torch.no_grad():
        y = conv(xt)
    dy = torch.ones_like(y)

    def infer():
        with torch.no_grad():
            conv(xt)

    def train():
        xg.grad = None
        conv.weight.grad = None
        conv(xg).backward(dy)
    return infer, train, y


def _interleaved(fa, fb, rounds):
    ta, tb = [], []
    for _ in range(rounds):
        for f, t in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts (default: 1 and all)")
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args()
    import torch

    import fastnn

    all_threads = len(os.sched_getaffinity(0))
    for threads in args.threads or sorted({1, all_threads}):
        fastnn.set_num_threads(threads)
        torch.set_num_threads(threads)
        print(f"\n{threads} thread(s), load {os.getloadavg()[0]:.1f} (1-min average), medians of {args.rounds} "
              f"interleaved rounds, ms\n")
        print("| layer | infer b1 fastnn | torch | ratio | train b16 fastnn | torch | ratio |")
        print("|---|---|---|---|---|---|---|")
        for name in LAYERS:
            row = [name]
            for batch, which in ((1, 0), (16, 1)):
                x, w, s, conv, xt = _cases(name, batch)
                fi, ft, yf = _fastnn_fns(x, w, s)
                ti, tt, yt = _torch_fns(conv, xt)
                np.testing.assert_allclose(yf, yt.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)
                fa, fb = (fi, ti) if which == 0 else (ft, tt)
                fa(), fb()                                      # warm-up
                a, b = _interleaved(fa, fb, args.rounds)
                row += [f"{a * 1e3:.3f}", f"{b * 1e3:.3f}", f"{b / a:.2f}"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
