"""Batch normalization: training accuracy with and without BatchNormalization over 16 initial
weight scales (the book's figure 6-19).

A 5-hidden-layer ReLU MLP (Dense -> [BatchNormalization] -> ReLU) whose kernels start as
N(0, w^2) for w from 1 down to 1e-4, trained with SGD on 1000 samples; each panel shows the
inference-mode accuracy on those training samples after every epoch. Without BN, training only
works in a narrow band of scales; with BN it works across nearly all of them.

BatchNormalization takes the book's momentum 0.9 and epsilon 1e-7 here. With Keras's defaults
(momentum 0.99, epsilon 1e-3) it fails at small scales, for two reasons a first run showed: after
only 200 steps the moving variance (started at 1) is still far above the true one, so inference
mode squashes every activation; and an epsilon of 1e-3 exceeds the variance of pre-activations
made with weights of std 0.01, so BN no longer rescales them.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

BN = {"momentum": 0.9, "epsilon": 1e-7}
SIZES = {"full": {"n_train": 1000, "epochs": 20, "batch": 100, "hidden": [100] * 5, "scales": 16, "lr": 0.01},
         "tiny": {"n_train": 200, "epochs": 2, "batch": 50, "hidden": [16] * 3, "scales": 2, "lr": 0.01}}


def train(data, cfg, scale, batchnorm):
    from fastnn import optimizers, utils
    utils.set_random_seed(0)
    x, y = data["x_train"], data["y_train"]
    model = _common.mlp(data["input_dim"], cfg["hidden"], "relu",
                        _common.initializer(f"std={scale}"),
                        batchnorm=BN if batchnorm else False)
    model.compile(optimizer=optimizers.SGD(learning_rate=cfg["lr"]), loss="categorical_crossentropy")
    acc = []
    for _ in range(cfg["epochs"]):
        model.fit(x, y, batch_size=cfg["batch"], epochs=1, shuffle=True, verbose=0)
        acc.append(_common.accuracy(model, x, y))
    return acc


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    t0 = time.perf_counter()
    cfg = SIZES[size]
    data = _common.load_flat(cfg["n_train"], 10)
    scales = np.logspace(0, -4, cfg["scales"])
    results = []
    for s in scales:
        results.append({"scale": float(s), "batchnorm": train(data, cfg, float(s), True),
                        "plain": train(data, cfg, float(s), False)})
    cols = 4
    rows = int(np.ceil(len(scales) / cols))
    fig = _common.figure(figsize=(14, 3.1 * rows + 1))
    epochs = np.arange(1, cfg["epochs"] + 1)
    for k, r in enumerate(results):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.plot(epochs, r["batchnorm"], "-", lw=2, label="with BatchNormalization (momentum 0.9, eps 1e-7)")
        ax.plot(epochs, r["plain"], "--", lw=2, label="without")
        ax.set_title(f"initial weight std = {r['scale']:.2g}", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel("training accuracy")
        if k >= len(results) - cols:
            ax.set_xlabel("epoch")
        if k == 0:
            ax.legend(fontsize=8, loc="lower right")
    hid = "-".join(map(str, cfg["hidden"]))
    fig.suptitle(f"Batch normalization on {data['name']}: MLP {data['input_dim']}-{hid}-10 ReLU, "
                 f"{cfg['n_train']} training samples, SGD lr={cfg['lr']}, batch {cfg['batch']}, "
                 f"{cfg['epochs']} epochs", fontsize=12)
    fig.tight_layout()
    return _common.finish("batchnorm", out, fig, {"size": size, "dataset": data["name"], **cfg,
                                                  "results": results}, t0)
