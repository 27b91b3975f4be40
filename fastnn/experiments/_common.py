"""Shared pieces of the experiments: data, MLP builder, one-batch training, saving PNG + JSON."""
from __future__ import annotations

import json
import os
import time

import numpy as np

SIZES = ("full", "tiny")


def check_size(size):
    if size not in SIZES:
        raise ValueError(f"experiment size must be 'full' or 'tiny'; received {size!r}.")


def load_flat(n_train=None, n_test=None, seed=0):
    """MNIST (digits when MNIST is absent) flattened to float32 (N, D) in [0, 1], one-hot labels.

    Takes the first n_train / n_test samples of a fixed shuffle. Returns a dict with x_train,
    y_train (one-hot), x_test, y_test, labels_*, name, input_dim.
    """
    from fastnn import datasets, utils
    if datasets.mnist.find() is not None:
        name, scale = "MNIST", 255.0
        (xtr, ytr), (xte, yte) = datasets.mnist.load_data()
    else:
        name, scale = "digits (MNIST absent)", float(datasets.digits.MAX_VALUE)
        (xtr, ytr), (xte, yte) = datasets.digits.load_data()
    rng = np.random.default_rng(seed)
    tr, te = rng.permutation(len(xtr))[:n_train], rng.permutation(len(xte))[:n_test]
    flat = lambda x: (x.reshape(len(x), -1).astype(np.float32) / np.float32(scale))  # noqa: E731
    return {"name": name, "x_train": flat(xtr[tr]), "y_train": utils.to_categorical(ytr[tr], 10),
            "x_test": flat(xte[te]), "y_test": utils.to_categorical(yte[te], 10),
            "labels_train": ytr[tr].astype(np.int64), "labels_test": yte[te].astype(np.int64),
            "input_dim": int(np.prod(xtr.shape[1:]))}


def mlp(input_dim, hidden, activation="relu", kernel_initializer="he_normal", *, batchnorm=False,
        dropout=0.0, l2=0.0, num_classes=10):
    """Dense(h) [-> BatchNormalization] -> activation [-> Dropout] per hidden size, then softmax.

    batchnorm: False, True (Keras defaults) or a dict of BatchNormalization arguments.
    """
    from fastnn import layers, models, regularizers
    stack = [layers.Input((input_dim,))]
    reg = regularizers.L2(l2) if l2 else None
    for h in hidden:
        stack.append(layers.Dense(h, kernel_initializer=kernel_initializer, kernel_regularizer=reg))
        if batchnorm:
            stack.append(layers.BatchNormalization(**(batchnorm if isinstance(batchnorm, dict) else {})))
        stack.append(layers.Activation(activation))
        if dropout:
            stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(num_classes, activation="softmax", kernel_initializer=kernel_initializer,
                              kernel_regularizer=reg))
    return models.Sequential(stack)


def initializer(name, seed=None):
    """'std=1', 'std=0.01' (RandomNormal), 'xavier' (glorot_normal), 'he' (he_normal)."""
    from fastnn import initializers
    if name.startswith("std="):
        return initializers.RandomNormal(mean=0.0, stddev=float(name[4:]), seed=seed)
    return {"xavier": initializers.GlorotNormal, "he": initializers.HeNormal}[name](seed=seed)


def train_batch(model, x, y):
    """One optimizer step on (x, y) -> that batch's loss (before the step) as a float."""
    out = model.train_on_batch(x, y)
    return float(out[0] if np.ndim(out) else out)


def minibatches(n, batch_size, rng):
    """Endless stream of index batches: shuffled epochs, the last partial batch dropped."""
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def accuracy(model, x, y_onehot):
    """Inference-mode accuracy of model on (x, one-hot y)."""
    p = model.predict(x, batch_size=min(len(x), 1000), verbose=0)
    return float(np.mean(np.argmax(p, -1) == np.argmax(y_onehot, -1)))


def smooth(y, window=21):
    """Centered moving median-free average (the book's smooth_curve spirit), same length."""
    y = np.asarray(y, np.float64)
    if len(y) < window:
        return y
    k = np.hanning(window)
    k /= k.sum()
    pad = window // 2
    return np.convolve(np.pad(y, pad, mode="edge"), k, mode="valid")


def figure(*args, **kwargs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.figure(*args, **kwargs)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.floating, float)):  # 6 significant digits keep the files small
        return float(f"{float(v):.6g}") if np.isfinite(v) else str(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def finish(name, out, fig, data, t0):
    """Write out/<name>.png and out/<name>.json (data + runtime); close the figure."""
    import matplotlib.pyplot as plt
    os.makedirs(out, exist_ok=True)
    png, js = os.path.join(out, f"{name}.png"), os.path.join(out, f"{name}.json")
    data = dict(data, experiment=name, seconds=round(time.perf_counter() - t0, 2))
    fig.savefig(png, dpi=100)
    plt.close(fig)
    with open(js, "w") as f:
        json.dump(_jsonable(data), f)
    return {"png": png, "json": js, "data": data}
