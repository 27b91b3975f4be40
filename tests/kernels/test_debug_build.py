"""The bounds-checked debug build (-Ccmake.define.FASTNN_DEBUG_CHECKS=ON) really checks bounds in
every compiled kernel module.

.ci/run installs that build into a second venv and runs the kernel tests and the fuzzers there
with FASTNN_EXPECT_DEBUG_CHECKS=1. Then each module below must refuse one out-of-range buffer
access with Cython's IndexError. The probes hand a compiled function an empty (or too short)
buffer: in the release build nothing checks them (the Python layer never does that), so they
run only when the debug build is expected. Elsewhere this file skips.
"""
import os

import numpy as np
import pytest

from fastnn._kernels import (activation, conv, conv_direct, depthwise, dropout, gemm, loss, norm, optim_step,
                             pool, rnn, winograd)

EXPECT = os.environ.get("FASTNN_EXPECT_DEBUG_CHECKS") == "1"
pytestmark = pytest.mark.skipif(not EXPECT, reason="FASTNN_EXPECT_DEBUG_CHECKS=1 is not set: not the "
                                "bounds-checked debug build (.ci/run runs it)")

F32 = np.float32


def e(*shape, dtype=F32):
    return np.zeros(shape, dtype)


def _gemm_probe():
    if gemm.get_isa() == 0:
        pytest.skip("the portable flavour has no sgemm: gemm.sgemm refuses before any buffer access")
    v = 2 if gemm.get_isa() >= 2 else 3
    gemm.sgemm(e(1, 1), e(1, 1), e(1, 1), False, e(0), e(64), v, 1, 1)      # pa empty


PROBES = {   # module -> a call that indexes an empty (or too short) buffer
    "activation": lambda: activation.forward(0, e(2), e(0), (0.0, 0.0, 0.0, 0.0), 1 << 30),
    "conv": lambda: conv.bias_add(e(1, 2), e(0)),
    "conv_direct": lambda: conv_direct.forward(e(1, 1, 1, 1), e(1, 16), e(16), e(1), 1, 1, 1, 1,
                                               1, 1, 1, 1, 0, 0, 0, 1, e(0, 1), False, 0),
    "depthwise": lambda: depthwise.forward(e(1, 1, 1, 1), e(1, 1), None, e(1), 1, 1, 1, 1, 1, 1, 0, 0,
                                           e(1, 1, 1, 1), False, e(0), 0, 1),    # empty scratch
    "dropout": lambda: dropout.dropout(e(2), 1, 0, 1.0, e(0), e(0, dtype=np.uint8)),
    "gemm": _gemm_probe,
    "loss": lambda: loss.sigmoid_binary_crossentropy(e(1, 1), e(1, 1), 0.0, True, e(1, 1), e(0), 1 << 30),
    "norm": lambda: norm.batch_norm_inference(e(1, 2), None, None, e(2), e(2), 1e-3, e(0, 2)),
    "optim_step": lambda: optim_step.step(0, e(2), e(2), e(2), e(2), e(2), np.array([0, 2], np.int64),
                                          e(0), e(12), False, 1),
    "pool": lambda: pool.max_pool2x2_rows(e(1, 1, 2, 1), e(1, 1, 1, 1)),   # reads x row 1 of 1
    "rnn": lambda: rnn.embedding_forward(np.zeros(1, np.int64), e(1, 2), e(0, 2)),   # writes out row 0 of 0
    "winograd": lambda: winograd.weight_transform(e(3, 3, 1, 1), e(0, 1, 1)),
}


def test_every_kernel_module_is_probed():
    import pathlib

    import fastnn
    root = pathlib.Path(fastnn.__file__).parent / "_kernels"
    compiled = {p.name.split(".")[0] for p in root.glob("*.so")} - {"runtime"}   # runtime: no buffers
    assert compiled == set(PROBES), compiled ^ set(PROBES)


@pytest.mark.parametrize("module", sorted(PROBES))
def test_bounds_are_checked(module):
    with pytest.raises(IndexError, match="[Oo]ut of bounds"):
        PROBES[module]()
