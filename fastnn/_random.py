"""The process-wide seed behind initializers, dropout masks and shuffling.

`set_seed(s)` (exposed as fastnn.utils.set_random_seed) resets one SeedSequence; every consumer
takes its own child generator from it with `generator()`, in a fixed order, so the same seed,
machine and thread count give the same run bit for bit.
"""
from __future__ import annotations

import random

import numpy as np

_state = {"seq": np.random.SeedSequence(), "row_offset": 0}


def set_seed(seed: int) -> None:
    """Seed fastnn, Python's `random` and NumPy's legacy global generator (as Keras does)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed: seed must be a non-negative int; received {seed!r}.")
    _state["seq"] = np.random.SeedSequence(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def generator() -> np.random.Generator:
    """A new independent Generator, the next child of the current seed."""
    return np.random.Generator(np.random.PCG64(_state["seq"].spawn(1)[0]))


def next_seed() -> int:
    """A new 64-bit integer seed, the next child of the current seed (for compiled generators)."""
    return int(_state["seq"].spawn(1)[0].generate_state(1, np.uint64)[0])


def batch_row_offset() -> int:
    """The position in the global batch of this process's first row (0 unless data parallel):
    random layers draw by global sample index, so their masks do not depend on the split."""
    return _state["row_offset"]


def set_batch_row_offset(offset: int) -> None:
    """Set by fastnn.distribution for each batch of a data-parallel step."""
    _state["row_offset"] = int(offset)
