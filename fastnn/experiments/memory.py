"""How far back can a recurrent network remember? The notes' claim: a plain RNN "remembers only
2-3 steps back", an LSTM relates things over longer distances; and RNNs train better with
RMSprop than with Adam.

Task ("remember the first token"): a sequence of L random tokens (one-hot, K symbols); the label
is the FIRST token, so the answer lies L - 1 steps behind the last input. The same budget
(samples, epochs, units) for SimpleRNN, LSTM and GRU at each L; test accuracy against L (chance
is 1/K). Then the LSTM trained with RMSprop and with Adam (both at Keras's default learning
rate 1e-3): accuracy against L, and the training loss curves at the longest L.
Synthetic data: no dataset needed.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

SIZES = {"full": {"lengths": [2, 5, 10, 20, 40, 80], "k": 8, "units": 32, "n_train": 3000,
                  "n_test": 1000, "epochs": 20, "batch": 64},
         "tiny": {"lengths": [2, 4], "k": 4, "units": 4, "n_train": 64, "n_test": 32, "epochs": 2,
                  "batch": 32}}
CELLS = ("SimpleRNN", "LSTM", "GRU")


def make_data(n, length, k, rng):
    """(x (n, length, k) one-hot float32, y (n, k) one-hot of the first token)."""
    tokens = rng.integers(0, k, (n, length))
    x = np.eye(k, dtype=np.float32)[tokens]
    return x, np.eye(k, dtype=np.float32)[tokens[:, 0]]


def _train(cell, optimizer, data, cfg, seed):
    from fastnn import layers, models, optimizers, utils
    utils.set_random_seed(seed)
    (x, y), (xt, yt) = data
    model = models.Sequential([layers.Input(x.shape[1:]), getattr(layers, cell)(cfg["units"]),
                               layers.Dense(cfg["k"], activation="softmax")])
    model.compile(optimizer=optimizers.get(optimizer), loss="categorical_crossentropy")
    hist = model.fit(x, y, batch_size=cfg["batch"], epochs=cfg["epochs"], shuffle=True, verbose=0)
    return _common.accuracy(model, xt, yt), [float(v) for v in hist.history["loss"]]


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    t0 = time.perf_counter()
    cfg = SIZES[size]
    rng = np.random.default_rng(0)
    datasets = {L: (make_data(cfg["n_train"], L, cfg["k"], rng), make_data(cfg["n_test"], L, cfg["k"], rng))
                for L in cfg["lengths"]}
    cells = {c: [] for c in CELLS}
    for L in cfg["lengths"]:
        for c in CELLS:
            acc, _ = _train(c, "rmsprop", datasets[L], cfg, seed=1)
            cells[c].append(acc)
    opts = {o: {"accuracy": [], "loss": None} for o in ("rmsprop", "adam")}
    for o in opts:
        for L in cfg["lengths"]:
            acc, loss = _train("LSTM", o, datasets[L], cfg, seed=2)
            opts[o]["accuracy"].append(acc)
            opts[o]["loss"] = loss          # ends holding the longest L's curve
    chance = 1.0 / cfg["k"]

    def log_lengths(ax):
        ax.set_xscale("log")
        ax.set_xticks(cfg["lengths"], [str(L) for L in cfg["lengths"]])
        ax.minorticks_off()

    fig = _common.figure(figsize=(17, 5))
    ax = fig.add_subplot(1, 3, 1)
    for c in CELLS:
        ax.plot(cfg["lengths"], cells[c], "o-", lw=1.8, label=c)
    ax.axhline(chance, color="gray", ls="--", lw=1, label=f"chance (1/{cfg['k']})")
    log_lengths(ax)
    ax.set_xlabel("L: sequence length (the answer is L - 1 steps back)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("remember the first token (RMSprop)")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 3, 2)
    for o, r in opts.items():
        ax.plot(cfg["lengths"], r["accuracy"], "o-", lw=1.8, label=f"LSTM, {o}")
    ax.axhline(chance, color="gray", ls="--", lw=1)
    log_lengths(ax)
    ax.set_xlabel("L")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("LSTM: RMSprop vs Adam (lr 1e-3)")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 3, 3)
    for o, r in opts.items():
        ax.plot(np.arange(1, len(r["loss"]) + 1), r["loss"], lw=1.8, label=f"LSTM, {o}")
    ax.axhline(np.log(cfg["k"]), color="gray", ls="--", lw=1, label=f"ln {cfg['k']} (guessing)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"LSTM training loss at L = {cfg['lengths'][-1]}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle(f"Memory of recurrent networks: {cfg['n_train']} training sequences, {cfg['units']} units, "
                 f"{cfg['epochs']} epochs, batch {cfg['batch']}, {cfg['k']} symbols")
    fig.tight_layout()
    return _common.finish("memory", out, fig, {"size": size, "dataset": "synthetic (first token)", **cfg,
                                               "cells": cells, "optimizers": opts, "chance": chance}, t0)
