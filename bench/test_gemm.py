"""fastnn.kernels.gemm against NumPy's BLAS on the dense layer's per-thread blocks (M1's shapes),
single-threaded as they run inside a model step: the float64 reference, the kernel and the
np.matmul ceiling in one group per block, the result checked inside.

    pytest bench/test_gemm.py --benchmark-group-by=group --benchmark-min-rounds=10
"""
import numpy as np
import pytest

from benchutil import record
from fastnn.kernels import conv as C
from fastnn.kernels import gemm as G
from fastnn.reference import gemm as R

pytestmark = pytest.mark.skipif(not G.available(), reason="the sgemm needs AVX-512F")


def _blocks():
    """name -> (a, b, out): the views dense / dense_backward hand to one thread."""
    rng = np.random.default_rng(0)
    out = {}
    for m in (128, 256):
        for k in (784, 1024):
            x = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((k, 1024), dtype=np.float32)
            out[f"fwd {m}x{k}x512"] = (x, w[:, :512], np.empty((m, 1024), np.float32)[:, :512])
    for kr in (392, 512):     # dw[a:b] = x[:, a:b].T @ dy
        x = rng.standard_normal((128, 2 * kr), dtype=np.float32)
        dy = rng.standard_normal((128, 1024), dtype=np.float32)
        out[f"dW {kr}x128x1024"] = (x[:, :kr].T, dy, np.empty((2 * kr, 1024), np.float32)[:kr])
    for k, kb in ((784, 400), (1024, 512)):     # dx[:, a:b] = dy @ w[a:b].T (shares of 16)
        dy = rng.standard_normal((128, 1024), dtype=np.float32)
        w = rng.standard_normal((k, 1024), dtype=np.float32)
        out[f"dx 128x1024x{kb}"] = (dy, w[:kb].T, np.empty((128, k), np.float32)[:, :kb])
    return out


BLOCKS = _blocks()


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_gemm_block(benchmark, name, impl):
    a, b, out = BLOCKS[name]
    benchmark.group = f"gemm {name} (1 thread)"
    with C.blas_pinned():     # BLAS single-threaded, as inside a model step
        if impl == "reference":
            benchmark.pedantic(lambda: R.matmul(a, b), rounds=2, iterations=1)
        elif impl == "kernel":
            benchmark(lambda: G.matmul(a, b, out))
        else:
            benchmark(lambda: np.matmul(a, b, out=out))
    if impl != "reference":
        want = R.matmul(a, b)
        assert np.abs(out - want).max() <= 1e-5 * np.abs(want).max()
    if not benchmark.disabled:
        record(benchmark, flops=2.0 * a.shape[0] * a.shape[1] * b.shape[1])
