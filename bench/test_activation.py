"""Activation benchmarks: each activation forward + backward on 4M floats, softmax (4096, 1000).

One group per activation: the NumPy reference, the fastnn kernel and the copy ceiling (np.copyto
moving the same number of bytes). GB/s counts forward (read x, write y) plus backward (read x
or y and dy, write dx): 20 bytes per element.

    pytest bench/test_activation.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from benchutil import record
from fastnn.kernels import activation as K
from fastnn.reference import activation as R

N = 4 * 1024 * 1024
BYTES = 20 * N
CASES = [("linear", {}), ("relu", {}), ("relu6", {}), ("leaky_relu", {}), ("elu", {}), ("selu", {}),
         ("gelu", {}), ("gelu", {"approximate": True}), ("sigmoid", {}), ("hard_sigmoid", {}),
         ("hard_silu", {}), ("tanh", {}), ("softsign", {}), ("softplus", {}), ("silu", {}),
         ("exponential", {})]
IDS = [n + ("-tanh" if p else "") for n, p in CASES]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(N) * 3).astype(np.float32)
    dy = rng.standard_normal(N).astype(np.float32)
    return x, dy, np.empty_like(x), np.empty_like(x)


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_activation_fwd_bwd(benchmark, data, copy_ceiling, name, params, impl):
    x, dy, y, dx = data
    benchmark.group = f"activation {IDS[CASES.index((name, params))]} fwd+bwd 4M"
    if impl == "reference":
        def run():
            yr = R.apply(name, x, **params)
            return R.grad(name, x, yr, dy, **params)
    elif impl == "kernel":
        def run():
            K.apply(name, x, out=y, **params)
            return K.grad(name, x, y, dy, out=dx, **params)
    else:
        run = copy_ceiling(BYTES // 2)
    got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, nbytes=BYTES)
    if impl == "kernel":            # the timed result is right
        s = slice(0, 100_000)
        want = R.grad(name, x[s].astype(np.float64), None if name not in ("sigmoid", "tanh", "elu", "selu", "exponential")
                      else R.apply(name, x[s].astype(np.float64), **params), dy[s].astype(np.float64), **params)
        np.testing.assert_allclose(got[s], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_fwd_bwd(benchmark, copy_ceiling, name, impl):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4096, 1000)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    nbytes = 20 * x.size        # forward: read x, write y; backward: read y, dy, write dx
    benchmark.group = f"{name} (4096, 1000) fwd+bwd"
    if impl == "reference":
        run = lambda: R.grad(name, x, R.apply(name, x), dy)
    elif impl == "kernel":
        def run():
            K.apply(name, x, out=y)
            return K.grad(name, x, y, dy, out=dx)
    else:
        run = copy_ceiling(nbytes // 2)
    got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, nbytes=nbytes)
    if impl == "kernel":
        want = R.grad(name, x[:64].astype(np.float64), None, dy[:64].astype(np.float64))
        np.testing.assert_allclose(got[:64], want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["serial", "parallel"])
@pytest.mark.parametrize("n", [1 << 12, 1 << 14, 1 << 16, 1 << 18])
@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_parallel_threshold(benchmark, monkeypatch, name, n, mode):
    """Where a parallel loop starts to pay: sets activation.PARALLEL_MIN."""
    monkeypatch.setattr(K, "PARALLEL_MIN", 1 << 62 if mode == "serial" else 0)
    x = np.random.default_rng(2).standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    benchmark.group = f"threshold {name} n={n}"
    benchmark(lambda: K.apply(name, x, out=y))
    if not benchmark.disabled:
        record(benchmark, nbytes=8 * n)
