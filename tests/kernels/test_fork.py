"""A forked child (multiprocessing's default on Linux, data loaders, tuner workers) runs every
kernel without hanging, after the parent has run them on several threads. GNU OpenMP cannot start
a thread team in such a child: fastnn.kernels.threads drops the OpenMP and Numba loops to one
thread there; the convolutions' own worker threads are made anew."""
import os
import signal
import time

import numpy as np
import pytest

from fastnn.kernels import activation, conv, depthwise, dense, norm, optim, pool, rnn
from fastnn.kernels import threads as T


def _everything(rng):
    x = rng.random((16, 20, 20, 32), dtype=np.float32)
    w = rng.standard_normal((3, 3, 32, 16), dtype=np.float32) * 0.1
    out = [pool.max_pool2d(x, (2, 2))[0], activation.apply("gelu", x),
           norm.batch_norm_train(x, None, None, np.zeros(32, np.float32), np.ones(32, np.float32))[0],
           conv.conv2d(x, w, padding="same", activation="relu"),
           depthwise.depthwise_conv2d(x, np.ascontiguousarray(w[:, :, :, :1]), padding="same"),
           dense.dense(x.reshape(16, -1), rng.standard_normal((12800, 64), dtype=np.float32))]
    xs = rng.standard_normal((64, 12, 16), dtype=np.float32)
    k, u = rng.standard_normal((16, 128), dtype=np.float32) * 0.2, rng.standard_normal((32, 128), dtype=np.float32) * 0.2
    y, _, _, cache = rnn.forward("lstm", xs, k, u, np.zeros(128, np.float32), training=True)
    out += [y, *rnn.backward(cache, dy=np.ones_like(y))[:3],
            rnn.embedding(rng.integers(0, 50, (8, 7)), rng.random((50, 4), dtype=np.float32))]
    params, grads = rng.random(300_000, dtype=np.float32), rng.random(300_000, dtype=np.float32)
    slots = optim.init_slots("adam", params.size)
    optim.step("adam", params, grads, slots, lr=1e-3, iteration=0, global_clipnorm=1.0)
    return out + [params]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_every_kernel(rng):
    n0 = T.get_num_threads()
    T.set_num_threads(2)
    try:
        want = _everything(np.random.default_rng(5))      # the parent's OpenMP teams exist now
        pid = os.fork()
        if pid == 0:                                      # child: same results, no hang
            try:
                signal.alarm(120)
                got = _everything(np.random.default_rng(5))
                same = all(np.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(got, want))
                os._exit(0 if same and T.omp_threads() == 1 else 1)
            except BaseException:
                os._exit(2)
    finally:
        T.set_num_threads(n0)
    deadline = time.monotonic() + 180
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("a kernel hung in a forked child")
        time.sleep(0.05)
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)} (14: hung in a kernel)"
    assert os.WEXITSTATUS(status) == 0
