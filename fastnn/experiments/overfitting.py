"""Overfitting and its cures: 300 training samples, a 7-layer MLP, many epochs; train vs test
accuracy with no cure, with L2 weight decay and with Dropout (the book's figures 6-20 to 6-23).

The book's weight decay adds 0.5 * lambda * ||W||^2 with lambda = 0.1; Keras's L2(l) adds
l * ||W||^2, so L2(0.05) is the same penalty.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

SIZES = {"full": {"n_train": 300, "n_test": 10000, "epochs": 200, "batch": 100, "hidden": [100] * 6,
                  "lr": 0.01, "l2": 0.05, "dropout": 0.15},
         "tiny": {"n_train": 100, "n_test": 100, "epochs": 3, "batch": 50, "hidden": [16] * 6,
                  "lr": 0.01, "l2": 0.05, "dropout": 0.15}}


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    from fastnn import optimizers, utils
    t0 = time.perf_counter()
    cfg = SIZES[size]
    data = _common.load_flat(cfg["n_train"], cfg["n_test"])
    x, y = data["x_train"], data["y_train"]
    cures = {"no cure": {}, f"L2 weight decay {cfg['l2']}": {"l2": cfg["l2"]},
             f"Dropout {cfg['dropout']}": {"dropout": cfg["dropout"]}}
    results = {}
    for label, kw in cures.items():
        utils.set_random_seed(0)
        model = _common.mlp(data["input_dim"], cfg["hidden"], "relu", "he_normal", **kw)
        model.compile(optimizer=optimizers.SGD(learning_rate=cfg["lr"]), loss="categorical_crossentropy")
        tr, te = [], []
        for _ in range(cfg["epochs"]):
            model.fit(x, y, batch_size=cfg["batch"], epochs=1, shuffle=True, verbose=0)
            tr.append(_common.accuracy(model, x, y))
            te.append(_common.accuracy(model, data["x_test"], data["y_test"]))
        results[label] = {"train": tr, "test": te}

    fig = _common.figure(figsize=(16, 5))
    epochs = np.arange(1, cfg["epochs"] + 1)
    for k, (label, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.plot(epochs, r["train"], lw=1.8, label="train")
        ax.plot(epochs, r["test"], lw=1.8, label="test")
        ax.set_title(f"{label}: final train {r['train'][-1]:.3f}, test {r['test'][-1]:.3f}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    hid = "-".join(map(str, cfg["hidden"]))
    fig.suptitle(f"Overfitting on {data['name']}: {cfg['n_train']} training samples, {len(data['x_test'])} test "
                 f"samples, MLP {data['input_dim']}-{hid}-10 ReLU (7 Dense layers), SGD lr={cfg['lr']}, "
                 f"batch {cfg['batch']}, {cfg['epochs']} epochs")
    fig.tight_layout()
    return _common.finish("overfitting", out, fig, {"size": size, "dataset": data["name"], **cfg,
                                                    "results": results}, t0)
