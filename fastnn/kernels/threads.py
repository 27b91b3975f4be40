"""One threading policy for BLAS, OpenMP (Cython kernels) and Numba.

fastnn's kernels run one parallel region at a time: a BLAS GEMM, then a Cython `prange`, then a
Numba `prange`, never two at once. So each runtime gets the same thread count, by default the
number of cores this process may use, and the three never oversubscribe the machine.

Override with `set_num_threads(n)` or the environment variable FASTNN_NUM_THREADS.
"""
from __future__ import annotations

import os
import sys

# GNU OpenMP's default spin-waiting costs 8-28 ms per parallel region on a loaded 2-core machine
# (measured with the optimizer kernels; 0.01 ms passive), and spinning OpenMP threads fight the
# BLAS threads between regions. Set before the OpenMP runtime loads; the user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_state = {"n": None, "limiter": None, "forked": False}


def _after_fork_in_child() -> None:
    """GNU OpenMP cannot start a thread team in a forked child once the parent has used one:
    the child hangs in its first parallel region (measured with max_pool2d, the activations,
    the optimizer step). So a forked child runs the OpenMP and Numba loops on one thread for
    good; fastnn's own Python worker threads (the convolutions') are made anew and keep the
    policy's count."""
    _state["forked"] = True
    if "fastnn._kernels.runtime" in sys.modules:
        sys.modules["fastnn._kernels.runtime"].set_num_threads(1)
    if "numba" in sys.modules:
        try:
            sys.modules["numba"].set_num_threads(1)
        except Exception:   # Numba refuses while its pool is being torn down: nothing ran yet
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def omp_threads() -> int:
    """Threads for an OpenMP (or Numba) loop: the policy's count, or 1 in a forked child."""
    return 1 if _state["forked"] else get_num_threads()


def _default_threads() -> int:
    env = os.environ.get("FASTNN_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer; received {env!r}.") from None
        if n < 1:
            raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer; received {env!r}.")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Use `n` threads in BLAS, the OpenMP kernels and Numba (n >= 1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int; received {n!r}.")
    from threadpoolctl import threadpool_limits
    from fastnn._kernels import runtime

    limiter = threadpool_limits(limits=n, user_api="blas")
    _state["limiter"] = limiter
    runtime.set_num_threads(1 if _state["forked"] else n)
    _state["n"] = n
    if "numba" in sys.modules:  # else the Numba kernel modules apply it when they load
        apply_numba()


def apply_numba() -> None:
    """Give Numba's parallel loops the policy's thread count (Numba kernel modules call this)."""
    import numba

    n = _state["n"] if _state["n"] is not None else _default_threads()
    numba.set_num_threads(1 if _state["forked"] else min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads() -> int:
    """The thread count in force (applies the default policy on first use)."""
    ensure_policy()
    return _state["n"]


def ensure_policy() -> None:
    """Apply the default policy once per process (called by fastnn.kernels on import)."""
    if _state["n"] is None:
        set_num_threads(_default_threads())


def info() -> dict:
    """Thread counts of every runtime and the BLAS libraries in use (for `fastnn info`)."""
    from threadpoolctl import threadpool_info
    from fastnn._kernels import runtime

    ensure_policy()
    out = {"fastnn": _state["n"], "openmp": runtime.get_max_threads(), "blas": []}
    import numba

    apply_numba()
    out["numba"] = numba.get_num_threads()
    for lib in threadpool_info():
        out["blas" if lib.get("user_api") == "blas" else "other"] = out.get(
            "blas" if lib.get("user_api") == "blas" else "other", []) + [
            {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}]
    return out
