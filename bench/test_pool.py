"""Pooling benchmarks on NHWC (64, 32, 32, 64) float32: reference, kernel and copy ceiling.

Each group holds the im2col NumPy reference, the fastnn kernel and np.copyto moving the same
number of bytes the kernel must move (read inputs + write outputs), all with GB/s in extra_info
computed from those bytes: kernel GB/s / ceiling GB/s is the share of memory bandwidth reached.
The kernel's result is checked against the reference (computed once per case) after timing.

    pytest bench/test_pool.py --benchmark-group-by=group --benchmark-min-rounds=3

Targets: kernel >= 10x the reference and kernel GB/s >= 50% of the copy's GB/s. The global
references are a single NumPy reduction (np.max/np.argmax, np.mean) or broadcast copy that
already runs near memory speed, so for them only the ceiling target is meaningful. np.copyto is
single-threaded while the kernels use every thread of the fastnn policy.
"""
import os

# Idle OpenMP threads must sleep, not spin, between kernel calls: on a shared machine spinning
# workers steal the cores that the next region needs (2-thread pools ran 5-30x slower than with
# one thread under load). Set before libgomp loads, as bench/test_conv.py does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


from fastnn.kernels import pool as K  # noqa: E402
from fastnn.reference import pool as R  # noqa: E402
from benchutil import record  # noqa: E402

SHAPE = (64, 32, 32, 64)
F4 = 4  # bytes per float32 / int32




def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    y_shape = (SHAPE[0], SHAPE[1] // 2, SHAPE[2] // 2, SHAPE[3])
    dy = rng.standard_normal(y_shape, dtype=np.float32)
    dg = rng.standard_normal((SHAPE[0], SHAPE[3]), dtype=np.float32)
    return x, dy, dg


X, DY, DG = _data()
XSZ, YSZ, GSZ = X.size * F4, DY.size * F4, DG.size * F4
_, ARGMAX = K.max_pool2d(X)
_, GARGMAX = K.global_max_pool2d(X)

# name -> (reference call, kernel call with preallocated outputs, bytes moved)
_OUT = {
    "y": np.empty_like(DY), "a": np.empty(DY.shape, np.int32), "dx": np.empty_like(X),
    "g": np.empty_like(DG), "ga": np.empty(DG.shape, np.int32),
}
CASES = {
    "max_pool2d 2x2": (
        lambda: R.max_pool2d(X),
        lambda: K.max_pool2d(X, out=_OUT["y"], argmax=_OUT["a"]),
        XSZ + 2 * YSZ),
    "max_pool2d_backward 2x2": (
        lambda: R.max_pool2d_backward(DY, ARGMAX, SHAPE),
        lambda: K.max_pool2d_backward(DY, ARGMAX, SHAPE, dx=_OUT["dx"]),
        2 * YSZ + XSZ),
    "avg_pool2d 2x2": (
        lambda: R.avg_pool2d(X),
        lambda: K.avg_pool2d(X, out=_OUT["y"]),
        XSZ + YSZ),
    "avg_pool2d_backward 2x2": (
        lambda: R.avg_pool2d_backward(DY, SHAPE),
        lambda: K.avg_pool2d_backward(DY, SHAPE, dx=_OUT["dx"]),
        YSZ + XSZ),
    "global_max_pool2d": (
        lambda: R.global_max_pool2d(X),
        lambda: K.global_max_pool2d(X, out=_OUT["g"], argmax=_OUT["ga"]),
        XSZ + 2 * GSZ),
    "global_max_pool2d_backward": (
        lambda: R.global_max_pool2d_backward(DG, GARGMAX, SHAPE),
        lambda: K.global_max_pool2d_backward(DG, GARGMAX, SHAPE, dx=_OUT["dx"]),
        2 * GSZ + XSZ),
    "global_avg_pool2d": (
        lambda: R.global_avg_pool2d(X),
        lambda: K.global_avg_pool2d(X, out=_OUT["g"]),
        XSZ + GSZ),
    "global_avg_pool2d_backward": (
        lambda: R.global_avg_pool2d_backward(DG, SHAPE),
        lambda: K.global_avg_pool2d_backward(DG, SHAPE, dx=_OUT["dx"]),
        GSZ + XSZ),
}


def _same(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        if g.dtype == np.int32:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["reference", "kernel", "copy"])
@pytest.mark.parametrize("case", list(CASES))
def test_pool(benchmark, copy_ceiling, case, impl):
    reference, kernel, nbytes = CASES[case]
    benchmark.group = f"{case} {SHAPE}"
    if impl == "copy":
        # np.copyto reads and writes half of the kernel's traffic each
        benchmark(copy_ceiling(nbytes // 2))
    else:
        result = benchmark(reference if impl == "reference" else kernel)
        if impl == "kernel":
            _same(result, reference())
    benchmark.extra_info["bytes"] = nbytes
    record(benchmark, nbytes=nbytes)
