"""Hyperparameter search: random search of learning rate and weight decay (log-uniform) on a
validation split of the training data, never the test set (the book's section 6.5).

Each trial trains a 7-layer ReLU MLP with SGD on 500 training samples (400 train / 100
validation after a shuffled split). Left: the validation accuracy of every trial over the
(learning rate, weight decay) plane. Right: the learning curves of the best trials.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

SIZES = {"full": {"n_samples": 500, "val_fraction": 0.2, "trials": 60, "epochs": 50, "batch": 100,
                  "hidden": [100] * 6, "lr_range": (1e-6, 1e-2), "wd_range": (1e-8, 1e-4), "best": 8},
         "tiny": {"n_samples": 100, "val_fraction": 0.2, "trials": 3, "epochs": 2, "batch": 40,
                  "hidden": [16] * 3, "lr_range": (1e-6, 1e-2), "wd_range": (1e-8, 1e-4), "best": 2}}


def log_uniform(rng, lo, hi):
    return float(10 ** rng.uniform(np.log10(lo), np.log10(hi)))


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    from fastnn import optimizers, utils
    t0 = time.perf_counter()
    cfg = SIZES[size]
    data = _common.load_flat(cfg["n_samples"], 10)
    (x, y), (xv, yv) = utils.train_val_split(data["x_train"], data["y_train"], cfg["val_fraction"], seed=0)
    rng = np.random.default_rng(0)
    trials = []
    for t in range(cfg["trials"]):
        lr = log_uniform(rng, *cfg["lr_range"])
        wd = log_uniform(rng, *cfg["wd_range"])
        utils.set_random_seed(t)
        # the book's weight decay 0.5*lambda*||W||^2 is Keras's L2(lambda / 2)
        model = _common.mlp(data["input_dim"], cfg["hidden"], "relu", "he_normal", l2=wd / 2)
        model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="categorical_crossentropy")
        tr, va = [], []
        for _ in range(cfg["epochs"]):
            model.fit(x, y, batch_size=cfg["batch"], epochs=1, shuffle=True, verbose=0)
            tr.append(_common.accuracy(model, x, y))
            va.append(_common.accuracy(model, xv, yv))
        trials.append({"lr": lr, "weight_decay": wd, "train": tr, "val": va, "best_val": max(va)})
    ranked = sorted(trials, key=lambda r: -r["val"][-1])

    fig = _common.figure(figsize=(15, 6))
    ax = fig.add_subplot(1, 2, 1)
    final = np.array([r["val"][-1] for r in trials])
    sc = ax.scatter([r["lr"] for r in trials], [r["weight_decay"] for r in trials], c=final,
                    cmap="viridis", s=45, vmin=0, vmax=1, edgecolors="k", linewidths=0.4)
    for k, r in enumerate(ranked[:cfg["best"]]):
        ax.annotate(str(k + 1), (r["lr"], r["weight_decay"]), xytext=(4, 4), textcoords="offset points", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate (log-uniform sample)")
    ax.set_ylabel("weight decay lambda (log-uniform sample)")
    ax.set_title(f"{cfg['trials']} trials: final validation accuracy (numbers: best {cfg['best']})")
    ax.grid(alpha=0.3, which="both")
    fig.colorbar(sc, ax=ax, label="validation accuracy")
    ax = fig.add_subplot(1, 2, 2)
    epochs = np.arange(1, cfg["epochs"] + 1)
    for k, r in enumerate(ranked[:cfg["best"]]):
        line, = ax.plot(epochs, r["val"], lw=1.8,
                        label=f"{k + 1}: lr={r['lr']:.2g}, wd={r['weight_decay']:.2g} (val {r['val'][-1]:.2f})")
        ax.plot(epochs, r["train"], "--", color=line.get_color(), lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (solid: validation, dashed: train)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Learning curves of the best {cfg['best']} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    hid = "-".join(map(str, cfg["hidden"]))
    fig.suptitle(f"Random search on {data['name']}: {len(x)} train / {len(xv)} validation samples (shuffled "
                 f"split, no test data), MLP {data['input_dim']}-{hid}-10 ReLU, SGD, batch {cfg['batch']}, "
                 f"{cfg['epochs']} epochs per trial")
    fig.tight_layout()
    return _common.finish("search", out, fig, {
        "size": size, "dataset": data["name"], **cfg, "n_train": len(x), "n_val": len(xv),
        "trials": trials, "best": [{k: r[k] for k in ("lr", "weight_decay")} | {"val": r["val"][-1]}
                                   for r in ranked[:cfg["best"]]]}, t0)
