"""Dropout benchmarks: NumPy reference vs fastnn kernel vs copy ceiling, float32.

GB/s counts the bytes the kernel must move: forward reads x and writes y and the uint8 mask
(9 bytes per element), backward reads dy and the mask and writes dx (9 bytes per element).
The copy ceiling is np.copyto moving the same number of bytes (read half, write half).
Run: pytest bench/test_dropout.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from fastnn.kernels import dropout as dk
from fastnn.reference import dropout as ref
from benchutil import record



SHAPES = [(64, 32, 32, 64)]
RATE = 0.3
SEED = 12345


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["forward", "backward"])
@pytest.mark.parametrize("impl", ["reference", "kernel", "copy_ceiling"])
def test_dropout(benchmark, copy_ceiling, shape, kind, impl):
    benchmark.group = f"dropout-{kind} {shape}"
    n = int(np.prod(shape))
    nbytes = 9 * n
    if impl == "copy_ceiling":
        benchmark(copy_ceiling(nbytes // 2))
        record(benchmark, nbytes=nbytes)
        return
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y_r, mask_r = ref.dropout(x, RATE, SEED)
    if kind == "forward":
        if impl == "reference":
            y, mask = benchmark(lambda: ref.dropout(x, RATE, SEED))
        else:
            out, mask = np.empty_like(x), np.empty(shape, np.uint8)
            y, mask = benchmark(lambda: dk.dropout(x, RATE, SEED, out=out, mask=mask))
        np.testing.assert_array_equal(mask, mask_r)
        np.testing.assert_array_equal(y, y_r)
    else:
        expect = ref.dropout_backward(x, mask_r, RATE)
        if impl == "reference":
            got = benchmark(lambda: ref.dropout_backward(x, mask_r, RATE))
        else:
            dx = np.empty_like(x)
            got = benchmark(lambda: dk.dropout_backward(x, mask_r, RATE, dx=dx))
        np.testing.assert_array_equal(got, expect)
    record(benchmark, nbytes=nbytes)
