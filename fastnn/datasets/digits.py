"""The 8x8 handwritten digits that scikit-learn ships (1,797 images, values 0-16, labels 0-9).

Always available offline (with the optional `examples` extra: pip install fastnn[examples]), so
examples and the CLI can train something real without downloading MNIST.
"""
from __future__ import annotations

import numpy as np

N_TEST = 360  # 20% of the 1,797 images
MAX_VALUE = 16  # pixel values are 0..16: divide by 16 to scale to [0, 1]


def load_data(test_size: int = N_TEST, seed: int = 0):
    """Load the 8x8 digits split Keras-style -> (x_train, y_train), (x_test, y_test), uint8.

    x_train (1437, 8, 8), y_train (1437,), x_test (360, 8, 8), y_test (360,) by default; pixel
    values 0..16. The split is a fixed permutation (`seed`), the same on every machine.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("fastnn.datasets.digits needs scikit-learn, which ships the data: "
                          "pip install 'fastnn[examples]' (or pip install scikit-learn).") from None
    if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer)) or not 0 < test_size < 1797:
        raise ValueError(f"digits.load_data: test_size must be an int in 1..1796; received {test_size!r}.")
    d = load_digits()
    x = d.images.astype(np.uint8)  # exact: the values are integers 0..16
    y = d.target.astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:test_size], order[test_size:]
    return (x[train], y[train]), (x[test], y[test])
