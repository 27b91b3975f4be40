"""Interleaved A/B of the batch-norm kernels on M3's BN shapes, in ONE process (the machine is
shared: alternating the variants call by call lets all see the same load).

    python bench/norm_ab.py [--reps 9] [--old PATH/norm.cpython-*.so] [--isas 2 1 0]

Variants: each instruction-set flavour of this build (fastnn._kernels.norm.set_isa) and, with
--old, another build's compiled module (e.g. a copy of fastnn/_kernels/norm*.so taken before a
change), which is the baseline of the ratios; without it, the portable flavour (isa 0) is.
Prints best and median milliseconds per variant and old/new ratios of best and median.
"""
import argparse
import importlib.util
import time

import numpy as np

from fastnn._kernels import norm as new

SHAPES = [(64, 32, 32, 32), (64, 16, 16, 64)]


def _cases(mod, shape):
    rng = np.random.default_rng(0)
    c = shape[-1]
    m = int(np.prod(shape[:-1]))
    x = (rng.standard_normal((m, c)) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal((m, c)).astype(np.float32)
    g = (rng.standard_normal(c) + 1).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    mm, mv = np.zeros(c, np.float32), np.ones(c, np.float32)
    mean, inv = np.empty(c, np.float32), np.empty(c, np.float32)
    y = np.empty_like(x)
    new.batch_norm_train(x, g, b, mm, mv, 0.99, 1e-3, y, mean, inv, True)   # y: a ReLU output
    out, dx = np.empty_like(x), np.empty_like(x)
    dg, db = np.empty(c, np.float32), np.empty(c, np.float32)
    return {
        "train": lambda: mod.batch_norm_train(x, g, b, mm, mv, 0.99, 1e-3, out, mean, inv),
        "train_relu": lambda: mod.batch_norm_train(x, g, b, mm, mv, 0.99, 1e-3, out, mean, inv,
                                                   True),
        "backward": lambda: mod.batch_norm_backward(dy, x, g, mean, inv, dx, dg, db),
        "backward_y": lambda: mod.batch_norm_backward(dy, x, g, mean, inv, dx, dg, db, y),
        "inference": lambda: mod.batch_norm_inference(x, g, b, mm, mv, 1e-3, out),
        "affine_rows": lambda: mod.affine_rows(out, mm, g, b, False),
    }


def _time(f, n=20):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--old", help="another build's fastnn/_kernels/norm*.so (the baseline)")
    ap.add_argument("--isas", type=int, nargs="*", default=[i for i in (2, 1, 0) if new.isa_ok(i)])
    a = ap.parse_args()
    old = None
    if a.old:
        spec = importlib.util.spec_from_file_location("fastnn._kernels.norm", a.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    isa0 = new.get_isa()
    try:
        for shape in SHAPES:
            cn = _cases(new, shape)
            co = _cases(old, shape) if old else None
            for k in cn:
                res = {"old": []} if old else {}
                res.update({i: [] for i in a.isas})
                for _ in range(a.reps):
                    if old:
                        res["old"].append(_time(co[k]))
                    for i in a.isas:
                        new.set_isa(i)
                        res[i].append(_time(cn[k]))
                base = np.array(res["old"] if old else res[0])
                line = f"{str(shape):18s} {k:12s} {'old' if old else 'isa0'} best {base.min()*1e3:.3f} ms"
                for i in a.isas:
                    t = np.array(res[i])
                    line += (f" | isa{i} best {t.min()*1e3:.3f} ms x{base.min()/t.min():.2f}"
                             f" median x{np.median(base)/np.median(t):.2f}")
                print(line, flush=True)
    finally:
        new.set_isa(isa0)


if __name__ == "__main__":
    main()
