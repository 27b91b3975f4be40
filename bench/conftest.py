"""Shared pieces of the kernel benchmarks: ceilings and throughput figures.

Each bench file puts the NumPy reference, the fastnn kernel and a ceiling (the bare GEMM of the
same shape, or np.copyto of the same bytes) in one pytest-benchmark group, and records GFLOP/s or
GB/s in extra_info. Run: `pytest bench/ --benchmark-group-by=group`.
"""
import numpy as np
import pytest
from benchutil import record


@pytest.fixture(name="record")
def record_fixture():
    """`record(benchmark, flops=..., nbytes=...)` as a fixture (bench files are not importable
    by name under --import-mode=importlib)."""
    return record


@pytest.fixture
def gemm_ceiling():
    """Benchmark body for np.matmul of (m,k)@(k,n) into a preallocated output."""
    def make(m, k, n, seed=0):
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        return lambda: np.matmul(a, b, out=c)
    return make


@pytest.fixture
def copy_ceiling():
    """Benchmark body for np.copyto of `nbytes` bytes (read nbytes + write nbytes)."""
    def make(nbytes):
        src = np.ones(nbytes // 4, np.float32)
        dst = np.empty_like(src)
        return lambda: np.copyto(dst, src)
    return make
