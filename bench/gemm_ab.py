"""Interleaved A/B of dense.GEMM = "auto" (fastnn's sgemm) and "blas" (np.matmul), in ONE process
(the machine is shared: alternating the modes lets both see the same load).

    python bench/gemm_ab.py [--reps 200]

Two parts: dense / dense_backward on M1's shapes inside blas_pinned (two threads, column
shares), then the M1 training step and inference batch of bench/peers.py. Prints best and
median per mode and the blas/auto speed-ups. The per-block single-thread comparison is the
pytest-benchmark suite bench/test_gemm.py.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn.kernels import conv as C
from fastnn.kernels import dense as D
from peers import INFER_BATCH, MODELS, _data, _keras_like_model


def _alternate(fns, reps):
    """{mode: [seconds]} for each (name, fn) of fns, the two modes alternated rep by rep."""
    t = {}
    for r in range(reps):
        for mode in (("auto", "blas") if r % 2 else ("blas", "auto")):
            D.GEMM = mode
            for name, fn in fns:
                s = time.perf_counter()
                fn(r)
                t.setdefault((name, mode), []).append(time.perf_counter() - s)
    return t


def _report(t, names, flops=None):
    for name in names:
        a, b = np.array(t[(name, "auto")]), np.array(t[(name, "blas")])
        rate = "" if flops is None else (f" | blas {flops[name] / np.median(b) / 1e9:.0f} "
                                         f"auto {flops[name] / np.median(a) / 1e9:.0f} GFLOP/s (median)")
        print(f"{name:22s} blas best {b.min() * 1e3:6.2f} med {np.median(b) * 1e3:6.2f} ms | auto best "
              f"{a.min() * 1e3:6.2f} med {np.median(a) * 1e3:6.2f} ms | x{b.min() / a.min():.3f} best "
              f"x{np.median(b) / np.median(a):.3f} median{rate}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    reps = ap.parse_args().reps
    rng = np.random.default_rng(0)
    fns, flops = [], {}
    for m in (128, 256):
        for k in (784, 1024):
            x = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((k, 1024), dtype=np.float32)
            b, out = np.zeros(1024, np.float32), np.empty((m, 1024), np.float32)
            name = f"dense fwd {m}x{k}x1024"
            fns.append((name, lambda r, x=x, w=w, b=b, out=out: D.dense(x, w, b, "relu", out=out)))
            flops[name] = 2.0 * m * k * 1024
    for k in (784, 1024):
        x = rng.standard_normal((128, k), dtype=np.float32)
        w = rng.standard_normal((k, 1024), dtype=np.float32)
        dy = rng.standard_normal((128, 1024), dtype=np.float32)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(1024, np.float32)
        name = f"dense bwd 128x{k}x1024"
        fns.append((name, lambda r, x=x, w=w, dy=dy, dx=dx, dw=dw, db=db:
                    D.dense_backward(x, w, dy, dx=dx, dw=dw, db=db)))
        flops[name] = 4.0 * 128 * k * 1024
    saved = D.GEMM
    try:
        with C.blas_pinned():
            _report(_alternate(fns, reps), [n for n, _ in fns], flops)
        model = _keras_like_model(fastnn, "M1")
        bt, bi = MODELS["M1"]["batch"], INFER_BATCH
        x, y = _data("M1", max(bt, bi), 8)
        for _ in range(5):
            model.train_on_batch(x[:bt], y[:bt])
            model.predict_on_batch(x[:bi])
        steps = [("M1 train step", lambda r: model.train_on_batch(x[r % 8 * bt:(r % 8 + 1) * bt],
                                                                    y[r % 8 * bt:(r % 8 + 1) * bt])),
                 ("M1 infer batch", lambda r: model.predict_on_batch(x[r % 8 * bi:(r % 8 + 1) * bi]))]
        _report(_alternate(steps, reps), [n for n, _ in steps])
    finally:
        D.GEMM = saved


if __name__ == "__main__":
    main()
