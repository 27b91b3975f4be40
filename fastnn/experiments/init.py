"""Weight initialization: activation histograms of a fresh 5-layer net, and MNIST loss per init.

Part 1 (the book's figures 6-10 to 6-14): 1000 random inputs (standard normal, 100 features)
pass through five Dense(100) layers without bias; the histogram of each layer's activations for
std 1 and std 0.01 normal weights, Xavier (glorot_normal: std sqrt(1/100) here) and He
(he_normal). With sigmoid, std 1 saturates at 0 and 1 (vanishing gradients), std 0.01 collapses
to 0.5 (no expressive power), Xavier keeps a spread; with ReLU only He keeps every layer alive.
Part 2 (figure 6-15): MNIST training loss of a 5-layer ReLU MLP with std 0.01, Xavier and He.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

INITS = ("std=1", "std=0.01", "xavier", "he")
ACTIVATIONS = ("sigmoid", "tanh", "relu")
SIZES = {"full": {"samples": 1000, "features": 100, "layers": 5, "n_train": None,
                  "iterations": 2000, "batch": 128, "hidden": [100] * 4},
         "tiny": {"samples": 200, "features": 20, "layers": 3, "n_train": 512,
                  "iterations": 20, "batch": 64, "hidden": [32] * 4}}


def activations(init, activation, cfg):
    """Each layer's activations (samples, features) for a fresh net fed standard-normal data."""
    from fastnn import layers, models
    h = np.random.default_rng(0).standard_normal((cfg["samples"], cfg["features"])).astype(np.float32)
    outs = []
    for k in range(cfg["layers"]):
        # one layer at a time: the same forward pass as a 5-layer net, each output kept
        layer = models.Sequential([layers.Input((cfg["features"],)),
                                   layers.Dense(cfg["features"], activation=activation, use_bias=False,
                                                kernel_initializer=_common.initializer(init, seed=k))])
        h = model_predict(layer, h)
        outs.append(h)
    return outs


def model_predict(model, x):
    return np.asarray(model.predict(x, batch_size=len(x), verbose=0), np.float32)


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    from fastnn import optimizers, utils
    t0 = time.perf_counter()
    cfg = SIZES[size]
    stats = {}
    fig = _common.figure(figsize=(15, 17))
    gs = fig.add_gridspec(5, 3, height_ratios=[1, 1, 1, 1, 1.3], hspace=0.55, wspace=0.25)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for r, init in enumerate(INITS):
        for c, act in enumerate(ACTIVATIONS):
            ax = fig.add_subplot(gs[r, c])
            outs = activations(init, act, cfg)
            lo, hi = (0, 1) if act == "sigmoid" else (-1, 1) if act == "tanh" else (0, None)
            # ReLU: the spike of exact zeros would flatten everything else; count it in the title
            vals = [o.ravel()[o.ravel() > 0] if act == "relu" else o.ravel() for o in outs]
            if hi is None:
                pos = np.concatenate(vals)
                hi = max(float(np.percentile(pos, 99)), 1e-6) if pos.size else 1.0
            bins = np.linspace(lo, hi, 31)
            for k, v in enumerate(vals):
                ax.hist(np.clip(v, lo, hi), bins=bins, histtype="step", lw=1.4, color=colors[k],
                        label=f"layer {k + 1}")
            title = f"{act}, init {init}"
            if act == "relu":
                zeros = ", ".join(f"{np.mean(o == 0):.0%}" for o in outs)
                title += f"\nnonzero values only (zeros per layer: {zeros})"
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("activation value")
            ax.set_ylabel("count")
            if r == 0 and c == 0:
                ax.legend(fontsize=8)
            stats[f"{act}/{init}"] = {"mean": [float(o.mean()) for o in outs],
                                      "std": [float(o.std()) for o in outs],
                                      "fraction_zero": [float(np.mean(o == 0)) for o in outs]}

    # part 2: MNIST loss per init, ReLU
    data = _common.load_flat(cfg["n_train"], 1000)
    x, y = data["x_train"], data["y_train"]
    losses, test_acc = {}, {}
    for init in ("std=0.01", "xavier", "he"):
        utils.set_random_seed(0)
        model = _common.mlp(data["input_dim"], cfg["hidden"], "relu", _common.initializer(init))
        model.compile(optimizer=optimizers.SGD(learning_rate=0.01), loss="categorical_crossentropy")
        batches = _common.minibatches(len(x), cfg["batch"], np.random.default_rng(0))
        losses[init] = [_common.train_batch(model, x[i], y[i]) for i, _ in zip(batches, range(cfg["iterations"]))]
        test_acc[init] = _common.accuracy(model, data["x_test"], data["y_test"])
    ax = fig.add_subplot(gs[4, :])
    for init, ls in losses.items():
        line, = ax.plot(_common.smooth(ls), lw=1.8, label=f"{init} (test acc {test_acc[init]:.3f})")
        ax.plot(ls, color=line.get_color(), alpha=0.15, lw=0.6)
    ax.set_xlabel("iteration (mini-batch)")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    hid = "-".join(map(str, cfg["hidden"]))
    ax.set_title(f"{data['name']}: MLP {data['input_dim']}-{hid}-10 ReLU, SGD lr=0.01, batch {cfg['batch']}, "
                 f"{len(x)} training samples, {cfg['iterations']} iterations")
    fig.suptitle(f"Activation histograms: {cfg['samples']} standard-normal samples x {cfg['features']} "
                 f"features through {cfg['layers']} Dense({cfg['features']}) layers (no bias)\n"
                 f"rows: initial weights std 1, std 0.01, Xavier (glorot_normal), He (he_normal)",
                 fontsize=13)
    return _common.finish("init", out, fig, {
        "size": size, "dataset": data["name"], "n_train": len(x), **cfg, "histogram_stats": stats,
        "losses": losses, "test_accuracy_1000": test_acc}, t0)
