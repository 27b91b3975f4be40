"""Fused softmax crossentropy forward + backward on (4096, 1000) logits (sparse labels), and the
sigmoid binary crossentropy on the same shape: reference, kernel and copy ceiling in one group.

GB/s counts forward (read z, write p) plus backward (read p, write dz): 16 bytes per logit.

    pytest bench/test_loss.py --benchmark-group-by=group --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from benchutil import record
from fastnn.kernels import loss as K
from fastnn.reference import loss as R

SHAPE = (4096, 1000)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(SHAPE) * 3).astype(np.float32)
    labels = rng.integers(0, SHAPE[1], SHAPE[0])
    yb = rng.integers(0, 2, SHAPE).astype(np.float32)
    return z, labels, yb


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_softmax_ce_fwd_bwd(benchmark, data, copy_ceiling, from_logits, impl):
    z, labels, _ = data
    nbytes = 16 * z.size
    benchmark.group = f"softmax CE {SHAPE} fwd+bwd from_logits={from_logits}"
    kw = dict(sparse=True, from_logits=from_logits)
    scale = 1.0 / SHAPE[0]
    if impl == "reference":
        run = lambda: R.softmax_crossentropy_backward(R.softmax_crossentropy(z, labels, **kw)[1],
                                                      labels, scale=scale, **kw)
    elif impl == "kernel":
        probs, out, dz = np.empty_like(z), np.empty(SHAPE[0], np.float32), np.empty_like(z)

        def run():
            K.softmax_crossentropy(z, labels, probs=probs, out=out, **kw)
            return K.softmax_crossentropy_backward(probs, labels, scale=scale, dz=dz, **kw)
    else:
        run = copy_ceiling(nbytes // 2)
    got = benchmark(run)
    if not benchmark.disabled:
        record(benchmark, nbytes=nbytes)
    if impl == "kernel":
        p = R.softmax_crossentropy(z[:64].astype(np.float64), labels[:64], **kw)[1]
        want = R.softmax_crossentropy_backward(p, labels[:64], scale=scale, **kw)
        np.testing.assert_allclose(got[:64], want, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("impl", ["reference", "kernel", "ceiling"])
def test_sigmoid_bce_fwd_bwd(benchmark, data, copy_ceiling, impl):
    z, _, yb = data
    nbytes = 24 * z.size        # forward: read z, y, write p; backward: read p, y, write dz
    benchmark.group = f"sigmoid BCE {SHAPE} fwd+bwd"
    if impl == "reference":
        run = lambda: R.sigmoid_binary_crossentropy_backward(
            R.sigmoid_binary_crossentropy(z, yb)[1], yb, scale=1.0 / SHAPE[0])
    elif impl == "kernel":
        probs, out, dz = np.empty_like(z), np.empty(SHAPE[0], np.float32), np.empty_like(z)

        def run():
            K.sigmoid_binary_crossentropy(z, yb, probs=probs, out=out)
            return K.sigmoid_binary_crossentropy_backward(probs, yb, scale=1.0 / SHAPE[0], dz=dz)
    else:
        run = copy_ceiling(nbytes // 2)
    benchmark(run)
    if not benchmark.disabled:
        record(benchmark, nbytes=nbytes)
