"""Hyperparameter search: grid vs random vs Bayesian optimisation of the learning rate and weight
decay, at an equal budget of trials, on a validation split of the training data (the book's
section 6.5, with fastnn.tuner doing the searching).

Each trial trains the notes' 7-layer ReLU MLP with SGD on 500 training samples (400 train / 100
validation: fit's validation_split, never the test set); its score is the best validation
accuracy over the epochs. The three tuners search the same log-uniform ranges with the same
number of trials: GridSearch walks a 5 x 5 log-spaced grid, RandomSearch samples, and
BayesianOptimization (Optuna's TPE) samples its first points at random and then models where
the good ones are. Each search is repeated with a few seeds. Left: the best validation accuracy
found after each trial (mean over the repeats, band: min-max). Right: where each method looked.
"""
from __future__ import annotations

import math
import tempfile
import time

import numpy as np

from fastnn.experiments import _common

SIZES = {"full": {"n_samples": 500, "val_fraction": 0.2, "grid": 5, "repeats": 5, "epochs": 50, "batch": 100,
                  "hidden": [100] * 6, "lr_range": (1e-6, 1e-2), "wd_range": (1e-8, 1e-4)},
         "tiny": {"n_samples": 100, "val_fraction": 0.2, "grid": 2, "repeats": 1, "epochs": 2, "batch": 40,
                  "hidden": [16] * 3, "lr_range": (1e-6, 1e-2), "wd_range": (1e-8, 1e-4)}}
METHODS = ("grid", "random", "bayesian")


def _build(cfg, input_dim):
    def build(hp):
        from fastnn import optimizers
        lo, hi = cfg["lr_range"]
        wlo, whi = cfg["wd_range"]
        n = cfg["grid"]
        # log-spaced steps: the grid gets n values per axis; random and Bayesian sample the
        # same ranges continuously (a step would make them grid-bound too)
        if hp.Fixed("method", "") == "grid":
            lr = hp.Float("lr", lo, hi, step=(hi / lo) ** (1 / (n - 1)), sampling="log")
            wd = hp.Float("weight_decay", wlo, whi, step=(whi / wlo) ** (1 / (n - 1)), sampling="log")
        else:
            lr = hp.Float("lr", lo, hi, sampling="log")
            wd = hp.Float("weight_decay", wlo, whi, sampling="log")
        # the book's weight decay 0.5*lambda*||W||^2 is Keras's L2(lambda / 2)
        model = _common.mlp(input_dim, cfg["hidden"], "relu", "he_normal", l2=wd / 2)
        model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    return build


def _search(method, seed, cfg, data, x, y, directory):
    import fastnn.tuner as kt
    budget = cfg["grid"] ** 2
    hps = kt.HyperParameters()
    hps.Fixed("method", method)
    common = dict(objective="val_accuracy", max_trials=budget, seed=seed, hyperparameters=hps,
                  directory=directory, project_name=f"{method}-{seed}", overwrite=True)
    build = _build(cfg, data["input_dim"])
    tuner = {"grid": kt.GridSearch, "random": kt.RandomSearch, "bayesian": kt.BayesianOptimization}[method](
        build, **common)
    tuner.search(x, y, epochs=cfg["epochs"], batch_size=cfg["batch"], validation_split=cfg["val_fraction"],
                 shuffle=True, verbose=0)
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.number)
    out = [{"lr": t.hyperparameters["lr"], "weight_decay": t.hyperparameters["weight_decay"], "val": t.score}
           for t in trials]
    best = np.maximum.accumulate([t["val"] for t in out]).tolist()
    return {"trials": out, "best_so_far": best}


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    t0 = time.perf_counter()
    cfg = SIZES[size]
    data = _common.load_flat(cfg["n_samples"], 10)
    x, y = data["x_train"], data["y_train"]   # fit's validation_split takes the last 20%
    budget = cfg["grid"] ** 2
    results = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory(prefix="fastnn-search-") as directory:
        for seed in range(cfg["repeats"]):
            for method in METHODS:
                ts = time.perf_counter()
                r = _search(method, seed, cfg, data, x, y, directory)
                results[method].append(r)
                print(f"search: {method:8s} seed {seed}: best val accuracy {r['best_so_far'][-1]:.3f} after "
                      f"{budget} trials ({time.perf_counter() - ts:.0f} s)")

    fig = _common.figure(figsize=(15, 6))
    colors = {"grid": "tab:blue", "random": "tab:orange", "bayesian": "tab:green"}
    ax = fig.add_subplot(1, 2, 1)
    steps = np.arange(1, budget + 1)
    summary = {}
    for m in METHODS:
        curves = np.array([r["best_so_far"] for r in results[m]])
        mean = curves.mean(axis=0)
        ax.plot(steps, mean, color=colors[m], lw=2, label=f"{m} (final {mean[-1]:.3f})")
        ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=colors[m], alpha=0.15)
        summary[m] = {"final_best_mean": float(mean[-1]), "final_best_min": float(curves[:, -1].min()),
                      "final_best_max": float(curves[:, -1].max()),
                      "trials_to_90pct_of_best": int(np.argmax(mean >= 0.9 * mean[-1]) + 1)}
    ax.set_xlabel("trials")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"Equal budget of {budget} trials, {cfg['repeats']} seed{'s' * (cfg['repeats'] > 1)} "
                 f"(line: mean, band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax = fig.add_subplot(1, 2, 2)
    for m, marker in zip(METHODS, ("s", "o", "^")):
        tr = results[m][0]["trials"]
        sc = ax.scatter([t["lr"] for t in tr], [t["weight_decay"] for t in tr], c=[t["val"] for t in tr],
                        cmap="viridis", vmin=0, vmax=1, marker=marker, s=60, edgecolors=colors[m], linewidths=1.4,
                        label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("weight decay lambda")
    ax.set_title("Where each method looked (seed 0; colour: best validation accuracy)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=9)
    fig.colorbar(sc, ax=ax, label="validation accuracy")
    hid = "-".join(map(str, cfg["hidden"]))
    n_val = int(math.floor(len(x) * cfg["val_fraction"]))
    fig.suptitle(f"Grid vs random vs Bayesian (TPE) search of learning rate and weight decay on {data['name']} "
                 f"(fastnn.tuner on Optuna)\n{len(x) - n_val} train / {n_val} validation samples, MLP "
                 f"{data['input_dim']}-{hid}-10 ReLU, SGD, batch {cfg['batch']}, {cfg['epochs']} epochs per trial; "
                 f"score: best validation accuracy over the epochs")
    fig.tight_layout()
    return _common.finish("search", out, fig, {
        "size": size, "dataset": data["name"], **cfg, "budget": budget, "methods": list(METHODS),
        "n_train": len(x) - n_val, "n_val": n_val, "results": results, "summary": summary}, t0)
