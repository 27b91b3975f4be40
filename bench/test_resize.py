"""Image resizing (Keras Resizing): the per-pixel NumPy reference, fastnn's vectorised gathers and
the copy ceiling (read the input, write the output).

Run: pytest bench/test_resize.py --benchmark-group-by=group --benchmark-min-rounds=5
Shapes: two RGB images brought to an application's 224x224 input (up from 160 and down from
320), bilinear and nearest (the reference loops over output pixels in Python: one round of it
takes seconds, so the batch is small and the same for all three).
"""
import numpy as np
import pytest

from fastnn.kernels import resize as K
from fastnn.reference import resize as R

SHAPES = {"160->224": (2, 160, 160, 3), "320->224": (2, 320, 320, 3)}
IMPLS = ["reference", "kernel", "copy"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("interpolation", K.INTERPOLATIONS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_resize(benchmark, copy_ceiling, record, name, interpolation, impl):
    shape = SHAPES[name]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    benchmark.group = f"resize {interpolation} {name} b{shape[0]}"
    out = np.empty((shape[0], 224, 224, 3), np.float32)
    nbytes = x.nbytes + out.nbytes
    if impl == "reference":
        y = benchmark.pedantic(lambda: R.resize(x, (224, 224), interpolation), rounds=2, iterations=1)
        np.testing.assert_allclose(y, K.resize(x, (224, 224), interpolation), rtol=1e-5, atol=1e-6)
    elif impl == "kernel":
        y = benchmark(lambda: K.resize(x, (224, 224), interpolation, out=out))
        np.testing.assert_allclose(y[:1], R.resize(x[:1], (224, 224), interpolation), rtol=1e-5, atol=1e-6)
    else:
        benchmark(copy_ceiling(nbytes // 2))
    record(benchmark, nbytes=nbytes)
