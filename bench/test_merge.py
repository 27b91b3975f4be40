"""Merging benchmarks: NumPy reference vs fastnn kernel vs copy ceiling, float32.

Shapes of a residual block's Add and of a channel Concatenate in M3-sized activations. GB/s
counts the bytes the op must move: add reads two inputs and writes one (12 bytes per element),
concatenate reads and writes each element once (8). The copy ceiling is np.copyto of the same
bytes. The reference is the element-by-element textbook loop, so it is only run on a slice.
Run: pytest bench/test_merge.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from fastnn.kernels import merge as mk
from fastnn.reference import merge as ref
from benchutil import record

SHAPE = (64, 16, 16, 64)


@pytest.mark.parametrize("impl", ["kernel", "copy_ceiling"])
def test_add(benchmark, copy_ceiling, impl):
    benchmark.group = f"merge-add {SHAPE}"
    n = int(np.prod(SHAPE))
    if impl == "copy_ceiling":
        benchmark(copy_ceiling(6 * n))
        record(benchmark, nbytes=12 * n)
        return
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(2)]
    out = np.empty(SHAPE, np.float32)
    y = benchmark(lambda: mk.elementwise("add", xs, out=out))
    np.testing.assert_array_equal(y[:1, :2], ref.elementwise("add", [x[:1, :2] for x in xs]))
    record(benchmark, nbytes=12 * n)


@pytest.mark.parametrize("impl", ["kernel", "copy_ceiling"])
def test_concatenate(benchmark, copy_ceiling, impl):
    benchmark.group = f"merge-concatenate 2x{SHAPE}"
    n = 2 * int(np.prod(SHAPE))
    if impl == "copy_ceiling":
        benchmark(copy_ceiling(4 * n))
        record(benchmark, nbytes=8 * n)
        return
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(2)]
    out = np.empty((*SHAPE[:-1], 2 * SHAPE[-1]), np.float32)
    y = benchmark(lambda: mk.concatenate(xs, -1, out=out))
    np.testing.assert_array_equal(y, ref.concatenate(xs, -1))
    record(benchmark, nbytes=8 * n)
