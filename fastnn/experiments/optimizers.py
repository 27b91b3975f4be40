"""Optimizers compared: training loss of a 5-layer ReLU MLP on MNIST under nine Keras optimizers.

The book's figure 6-9 (SGD, Momentum, AdaGrad, Adam), extended to every optimizer fastnn has.
Learning rates are the usual ones for each (the book's 0.01 for SGD-family and AdaGrad; Keras's
defaults for the adaptive ones; Adadelta's 1.0 from its paper).
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

SIZES = {"full": {"n_train": None, "iterations": 2000, "batch": 128, "hidden": [100] * 4},
         "tiny": {"n_train": 512, "iterations": 20, "batch": 64, "hidden": [32] * 4}}


def optimizers():
    """(label, fresh Keras optimizer) pairs."""
    from fastnn import optimizers as o
    return [
        ("SGD lr=0.01", o.SGD(learning_rate=0.01)),
        ("Momentum 0.9", o.SGD(learning_rate=0.01, momentum=0.9)),
        ("Nesterov 0.9", o.SGD(learning_rate=0.01, momentum=0.9, nesterov=True)),
        ("AdaGrad lr=0.01", o.Adagrad(learning_rate=0.01)),
        ("RMSprop lr=0.001", o.RMSprop(learning_rate=0.001)),
        ("Adadelta lr=1.0", o.Adadelta(learning_rate=1.0)),
        ("Adam lr=0.001", o.Adam(learning_rate=0.001)),
        ("Adamax lr=0.002", o.Adamax(learning_rate=0.002)),
        ("Nadam lr=0.001", o.Nadam(learning_rate=0.001)),
    ]


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    from fastnn import utils
    t0 = time.perf_counter()
    cfg = SIZES[size]
    data = _common.load_flat(cfg["n_train"], 1000)
    x, y = data["x_train"], data["y_train"]
    losses, test_acc, seconds = {}, {}, {}
    for label, opt in optimizers():
        utils.set_random_seed(0)  # same initial weights and batches for every optimizer
        model = _common.mlp(data["input_dim"], cfg["hidden"], "relu", "he_normal")
        model.compile(optimizer=opt, loss="categorical_crossentropy")
        batches = _common.minibatches(len(x), cfg["batch"], np.random.default_rng(0))
        ts = time.perf_counter()
        losses[label] = [_common.train_batch(model, x[i], y[i])
                         for i, _ in zip(batches, range(cfg["iterations"]))]
        seconds[label] = time.perf_counter() - ts
        test_acc[label] = _common.accuracy(model, data["x_test"], data["y_test"])

    fig = _common.figure(figsize=(10, 6))
    ax = fig.add_subplot()
    for label, ls in losses.items():
        line, = ax.plot(_common.smooth(ls), label=f"{label} (test acc {test_acc[label]:.3f})", lw=1.6)
        ax.plot(ls, color=line.get_color(), alpha=0.15, lw=0.6)
    ax.set_xlabel("iteration (mini-batch)")
    ax.set_ylabel("training loss (categorical crossentropy)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9, ncol=2)
    hid = "-".join(map(str, cfg["hidden"]))
    ax.set_title(f"Optimizers on {data['name']}: MLP {data['input_dim']}-{hid}-10 ReLU, He init\n"
                 f"{len(x)} training samples, batch {cfg['batch']}, {cfg['iterations']} iterations "
                 f"(faint: raw, bold: smoothed)")
    fig.tight_layout()
    return _common.finish("optimizers", out, fig, {
        "size": size, "dataset": data["name"], "n_train": len(x), **cfg, "losses": losses,
        "test_accuracy_1000": test_acc, "train_seconds": seconds}, t0)
