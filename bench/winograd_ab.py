"""Interleaved A/B of the two conv2d paths for the 3x3 stride-1 shapes, in ONE process (the
machine is shared: alternating im2col / Winograd call by call lets both see the same load).

    python bench/winograd_ab.py [--reps 9] [SHAPE ...]    (names as in bench/test_winograd.py)

Prints, per shape and direction, best and median milliseconds of each path and the speed-up.
"""
import argparse
import time

import numpy as np

from fastnn.kernels import conv as K

from test_winograd import SHAPES   # the pytest-benchmark suite's shapes (bench/ is on sys.path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shapes", nargs="*", default=list(SHAPES))
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for name in args.shapes:
        xs, f, p, relu = SHAPES[name]
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal((3, 3, xs[3], f), dtype=np.float32) * np.float32(0.1)
        b = rng.standard_normal(f, dtype=np.float32)
        act = "relu" if relu else "linear"
        y = K.conv2d(x, w, b, 1, p, activation=act)
        out, dy = np.empty_like(y), rng.standard_normal(y.shape, dtype=np.float32)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(f, np.float32)
        res = {}
        saved = K.WINOGRAD
        try:
            for _ in range(args.reps):
                for mode in (False, True):
                    K.WINOGRAD = mode
                    t0 = time.perf_counter()
                    K.conv2d(x, w, b, 1, p, out=out, activation=act)
                    t1 = time.perf_counter()
                    K.conv2d_backward(x, w, dy, 1, p, dx=dx, dw=dw, db=db, y=y if relu else None)
                    t2 = time.perf_counter()
                    res.setdefault((mode, "fwd"), []).append(t1 - t0)
                    res.setdefault((mode, "bwd"), []).append(t2 - t1)
        finally:
            K.WINOGRAD = saved
        for ph in ("fwd", "bwd"):
            a, g = np.array(res[(False, ph)]) * 1e3, np.array(res[(True, ph)]) * 1e3
            print(f"{name:32s} {ph} im2col best {a.min():7.2f} med {np.median(a):7.2f} ms | winograd "
                  f"best {g.min():7.2f} med {np.median(g):7.2f} ms | x{a.min() / g.min():.2f} best "
                  f"x{np.median(a) / np.median(g):.2f} median")


if __name__ == "__main__":
    main()
