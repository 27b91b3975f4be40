"""Keras-style utilities: one-hot labels, normalization, a shuffled train/validation split,
seeding, learning-curve plots.

`gradient_check` (numerical gradient check of a model), `Progbar`, `plot_model` and
`model_to_dot` (model diagrams through pydot + graphviz, the `plot` extra) load on first use, so
`fastnn.utils` stays importable without the model layer or pydot.
"""
from __future__ import annotations

import importlib

import numpy as np

__all__ = ["to_categorical", "normalize", "pad_sequences", "train_val_split", "set_random_seed",
           "plot_history", "gradient_check", "Progbar", "plot_model", "model_to_dot"]

# names defined by the model layer, loaded on first use: (module, attribute) candidates
_LAZY = {
    "gradient_check": (("fastnn.models.gradient_check", "gradient_check"),),
    "Progbar": (("fastnn._progbar", "Progbar"),),
    "plot_model": (("fastnn.utils.model_visualization", "plot_model"),),
    "model_to_dot": (("fastnn.utils.model_visualization", "model_to_dot"),),
}


def __getattr__(name):
    if name in _LAZY:
        for module, attr in _LAZY[name]:
            try:
                value = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError):
                continue
            globals()[name] = value
            return value
        raise AttributeError(f"fastnn.utils.{name} comes from the model layer "
                             f"({_LAZY[name][0][0]}), which is not available.")
    raise AttributeError(f"module 'fastnn.utils' has no attribute {name!r}")


def to_categorical(x, num_classes=None):
    """One-hot encode integer class labels -> float32 array of shape x.shape + (num_classes,).

    As Keras: a trailing dimension of size 1 is dropped ((N, 1) -> (N, num_classes)), and
    num_classes defaults to max(x) + 1. Keras returns float64; fastnn returns float32, its compute
    dtype (the same values).
    """
    x = np.asarray(x)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
            raise ValueError(f"to_categorical: x must hold integer class labels; received dtype "
                             f"{x.dtype} with non-integer values.")
    x = x.astype(np.int64)
    shape = x.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    x = x.reshape(-1)
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise ValueError(f"to_categorical: num_classes must be a non-negative int; received {num_classes!r}.")
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must lie in [0, {num_classes}); received values "
                         f"from {x.min()} to {x.max()}. Pass num_classes=max(label)+1 or fix the labels.")
    out = np.zeros((x.size, int(num_classes)), np.float32)
    out[np.arange(x.size), x] = 1.0
    return out.reshape(shape + (int(num_classes),))


def normalize(x, axis=-1, order=2):
    """Scale x so that its `order`-norm along `axis` is 1 (zero vectors stay zero), as Keras."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis, keepdims=True))
    norm[norm == 0] = 1
    return (x / norm).astype(x.dtype, copy=False)


def train_val_split(x, y, val_fraction=0.1, *, seed=None, shuffle=True):
    """Shuffle (x, y) together, then split -> (x_train, y_train), (x_val, y_val).

    The validation part holds round(val_fraction * N) samples (at least 1 when val_fraction > 0).
    The shuffle uses `seed`, or fastnn's global seed (set_random_seed) when seed is None.
    Unlike Keras's validation_split, which takes the last samples unshuffled, this shuffles first
    so that sorted data still gives a representative validation set.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"train_val_split: x and y must have the same number of samples; received "
                         f"{x.shape[0]} and {y.shape[0]}.")
    if not isinstance(val_fraction, (float, int)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ValueError(f"train_val_split: val_fraction must be a number in [0, 1); received {val_fraction!r}.")
    n = x.shape[0]
    n_val = int(round(val_fraction * n))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val >= n:
        raise ValueError(f"train_val_split: val_fraction={val_fraction} leaves no training samples out of {n}.")
    if shuffle:
        if seed is None:
            from fastnn import _random
            rng = _random.generator()
        else:
            rng = np.random.default_rng(seed)
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    tr, va = order[:n - n_val], order[n - n_val:]
    return (x[tr], y[tr]), (x[va], y[va])


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Pad (or cut) variable-length sequences to one length -> array (len(sequences), maxlen, ...).

    Keras's semantics: maxlen defaults to the longest sequence; padding="pre" puts `value`
    before a short sequence ("post" after it); truncating="pre" keeps the last maxlen items of a
    long one ("post" the first); items may be scalars or equal-shaped arrays; dtype may be a
    string dtype (then value must be a string too).
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("pad_sequences: sequences must be iterable (a list of sequences).")
    if padding not in ("pre", "post"):
        raise ValueError(f'pad_sequences: padding must be "pre" or "post"; received padding={padding!r}.')
    if truncating not in ("pre", "post"):
        raise ValueError(f'pad_sequences: truncating must be "pre" or "post"; received truncating={truncating!r}.')
    num = len(sequences)
    lengths, sample_shape, flag = [], (), True
    for x in sequences:
        try:
            lengths.append(len(x))
            if flag and len(x):
                sample_shape = np.asarray(x).shape[1:]
                flag = False
        except TypeError as e:
            raise ValueError(f"pad_sequences: every element of sequences must be a sequence (list or "
                             f"array); found a non-iterable: {x!r}") from e
    if maxlen is None:
        maxlen = int(np.max(lengths)) if lengths else 0
    elif isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise ValueError(f"pad_sequences: maxlen must be a non-negative int or None; received {maxlen!r}.")
    is_str = np.issubdtype(np.dtype(dtype), np.str_) or np.issubdtype(np.dtype(dtype), np.object_)
    if isinstance(value, str) and dtype is not object and not is_str:
        raise ValueError(f"pad_sequences: dtype {dtype!r} is not compatible with value {value!r}; use "
                         f"dtype=object for variable-length strings.")
    x = np.full((num, int(maxlen)) + tuple(sample_shape), value, dtype=dtype)
    for idx, s in enumerate(sequences):
        if not len(s) or not maxlen:
            continue
        trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        trunc = np.asarray(trunc, dtype=dtype)
        if trunc.shape[1:] != tuple(sample_shape):
            raise ValueError(f"pad_sequences: shape of sample {trunc.shape[1:]} of sequence at position "
                             f"{idx} is different from expected shape {tuple(sample_shape)}.")
        if padding == "post":
            x[idx, :len(trunc)] = trunc
        else:
            x[idx, -len(trunc):] = trunc
    return x


def set_random_seed(seed):
    """Seed fastnn (initializers, dropout, shuffling), Python's `random` and NumPy, as Keras does."""
    from fastnn import _random
    _random.set_seed(seed)


def plot_history(history, metrics=None, *, path=None, title=None, ax=None):
    """Plot learning curves from a History (or its .history dict): one panel per metric.

    Each metric gets its training curve and, when present, its `val_` curve against the epoch.
    Returns the matplotlib Figure; writes a PNG when `path` is given. Needs matplotlib
    (pip install 'fastnn[examples]').
    """
    try:
        import matplotlib
        if path is not None and ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install 'fastnn[examples]'.") from None
    h = getattr(history, "history", history)
    if not isinstance(h, dict) or not h:
        raise ValueError(f"plot_history: history must be a History or a non-empty dict of lists; "
                         f"received {type(history).__name__}.")
    if metrics is None:
        metrics = [k for k in h if not k.startswith("val_") and k not in ("learning_rate", "lr")]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [m for m in metrics if m not in h]
    if missing:
        raise ValueError(f"plot_history: metrics {missing} are not in the history (it has {sorted(h)}).")
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(ax)
        fig = axes[0].figure
    for a, m in zip(axes, metrics):
        epochs = np.arange(1, len(h[m]) + 1)
        a.plot(epochs, h[m], "o-", ms=3, label=f"train {m}")
        if f"val_{m}" in h:
            a.plot(np.arange(1, len(h[f'val_{m}']) + 1), h[f"val_{m}"], "s--", ms=3, label=f"validation {m}")
        a.set_xlabel("epoch")
        a.set_ylabel(m)
        a.set_title(m)
        a.grid(alpha=0.3)
        a.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
