"""Optimizer step over the flat parameter arena: per-parameter NumPy vs fused kernel vs copy.

Each group (one rule, one arena size) holds the per-parameter NumPy reference (the arena cut
into ~20 layer arrays, one NumPy expression per array and slot), the fused kernel (one
compiled pass over the whole arena) and the copy ceiling: np.copyto moving as many bytes as
the step must (read params, grads and slots; write params and slots). GB/s in extra_info
counts those bytes for all three.

    pytest bench/test_optim.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import os
import sys

import numpy as np
import pytest

from benchutil import record  # noqa: E402

from fastnn.kernels import optim
from fastnn.reference import optim as ref

CONFIGS = [
    ("sgd", {}, {}), ("sgd", {"momentum": 0.9}, {}), ("rmsprop", {}, {}), ("adagrad", {}, {}),
    ("adadelta", {}, {}), ("adam", {}, {}), ("adamw", {}, {}), ("adamax", {}, {}),
    ("nadam", {}, {}), ("adam", {}, {"global_clipnorm": 1.0}), ("adam", {}, {"clipnorm": 1.0}),
]
SIZES = [1_000_000, 10_000_000]
IMPLS = ["reference", "kernel", "copy"]


def layer_segments(n, layers=10):
    """Offsets of a plausible model: `layers` (kernel, bias) pairs, 20 arrays, kernels growing."""
    bias = [64 * 2 ** (i % 4) for i in range(layers)]
    weight = np.array([1 + (i * 7) % 10 for i in range(layers)], np.float64)
    kernels = np.floor(weight / weight.sum() * (n - sum(bias))).astype(np.int64)
    kernels[-1] += n - sum(bias) - kernels.sum()
    sizes = [v for pair in zip(kernels, bias) for v in pair]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _name(cfg):
    kind, hyper, clip = cfg
    return kind + "".join(f"-{k}={v}" for k, v in {**hyper, **clip}.items())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n // 1_000_000}M")
@pytest.mark.parametrize("cfg", CONFIGS, ids=_name)
def test_optim_step(benchmark, copy_ceiling, cfg, n, impl):
    kind, hyper, clip = cfg
    benchmark.group = f"optim {_name(cfg)} n={n:,}"
    rng = np.random.default_rng(0)
    segments = layer_segments(n)
    w = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    slots = optim.init_slots(kind, n, **hyper)
    n_streams = sum(1 for a in slots.values() if a.size == n)
    nbytes = 4 * n * ((2 + n_streams) + (1 + n_streams))  # read w, g, slots; write w, slots
    args = dict(lr=1e-4, segments=segments, **clip, **hyper)

    if impl == "copy":
        benchmark(copy_ceiling(nbytes // 2))  # a copy of B bytes reads B and writes B
        record(benchmark, nbytes=nbytes)
        return

    # one step of both from the same state must agree before we time anything
    wk, wr = w.copy(), w.copy()
    sk = {k: v.copy() for k, v in slots.items()}
    sr = {k: v.copy() for k, v in slots.items()}
    optim.step(kind, wk, g, sk, iteration=0, **args)
    ref.step(kind, wr, g, sr, iteration=0, **args)
    np.testing.assert_allclose(wk, wr, rtol=1e-6, atol=1e-7)

    fn = optim.step if impl == "kernel" else ref.step
    it = iter(range(1, 10**9))
    benchmark(lambda: fn(kind, wk, g, sk, iteration=next(it), **args))
    assert np.isfinite(wk[:1000]).all()
    record(benchmark, nbytes=nbytes)
