"""fastnn.kernels: validated, embeddable CPU kernels for neural networks (float32, NHWC).

Each topic is a module with the same name at every level of the project:

    conv        conv2d / conv1d forward and backward (im2col + one GEMM per batch chunk), grouped
                and transposed (conv2d_transpose / conv1d_transpose)
    depthwise   depthwise convolution 2D and 1D, forward and backward (direct, not im2col)
    pool        max / average pooling 1D and 2D, global pooling, forward and backward
    dense       matmul-backed dense layer with the bias and activation fused after the GEMM
    gemm        the AVX-512 / AVX2 sgemm behind dense's per-thread blocks (np.matmul in the
                portable flavour)
    norm        batch normalization (training and inference), forward and backward
    activation  every Keras 3 activation and its derivative
    loss        fused softmax/sigmoid + crossentropy values and gradients
    dropout     inverted dropout with a seeded generator
    merge       merging layers' ops: element-wise over several inputs, concatenate, batch dot
    optim       fused optimizer updates over one flat float32 parameter buffer
    rnn         SimpleRNN / LSTM / GRU over whole sequences (forward, backward through time),
                embedding gather and scatter-add
    threads     one threading policy for BLAS, OpenMP and Numba
    resize      bilinear / nearest image resizing as Keras's Resizing (NumPy gathers)
    isa         the instruction-set flavour every kernel runs (avx512, avx2, portable;
                env FASTNN_ISA)

This package never imports the model layer (fastnn.layers, fastnn.models): other projects can
use it on its own. Inputs are checked here; bad shapes, dtypes or strides raise ValueError or
TypeError naming the argument. Outputs can be passed in with `out=` for allocation-free use.

    >>> import numpy as np
    >>> from fastnn.kernels import conv
    >>> x = np.random.rand(8, 28, 28, 1).astype(np.float32)
    >>> w = np.random.rand(3, 3, 1, 32).astype(np.float32)
    >>> conv.conv2d(x, w, padding="same").shape
    (8, 28, 28, 32)
"""
from __future__ import annotations

import importlib

# threads first: it sets OMP_WAIT_POLICY, which GNU OpenMP reads once, when the first compiled
# module loads it (isa imports them all)
from fastnn.kernels import threads  # isort: skip
from fastnn.kernels import isa  # isort: skip
from fastnn.kernels.threads import get_num_threads, set_num_threads

TOPICS = ("conv", "depthwise", "pool", "dense", "gemm", "norm", "activation", "loss", "dropout", "merge",
          "optim", "resize", "rnn")

__all__ = [*TOPICS, "threads", "isa", "set_num_threads", "get_num_threads"]

threads.ensure_policy()


def __getattr__(name):  # load topic modules on first use: keeps `import fastnn` fast
    if name in TOPICS:
        module = importlib.import_module(f"fastnn.kernels.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'fastnn.kernels' has no attribute {name!r}")
