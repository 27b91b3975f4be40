"""Vanishing gradients: a deep MLP with sigmoid or ReLU, with naive (std 0.01) or Xavier/He init.

The gradient of each Dense kernel is read through the public API only: one plain SGD step with
learning rate lr changes each kernel by minus lr times its gradient, so
||W_before - W_after|| / lr is the gradient norm. lr is a large power of two (2**40): the change
then stays far above float32's resolution of W even for gradients of 1e-15 (with lr = 1 they
would round away), and dividing by it is exact. Gradients below ~1e-20 still vanish into
rounding and are drawn at that floor: they are zero for all practical purposes. Shown per layer at initialization (averaged over a few batches), with the
training loss of each configuration.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

CONFIGS = (("sigmoid", "std=0.01"), ("sigmoid", "xavier"), ("relu", "std=0.01"), ("relu", "he"))
SIZES = {"full": {"n_train": None, "depth": 10, "width": 100, "iterations": 1500, "batch": 128,
                  "probe_batches": 5, "lr": 0.1},
         "tiny": {"n_train": 512, "depth": 4, "width": 32, "iterations": 20, "batch": 64,
                  "probe_batches": 2, "lr": 0.1}}


PROBE_LR = 2.0 ** 40
FLOOR = 1e-20


def kernel_gradient_norms(model, x, y):
    """||dL/dW|| of every Dense kernel for one batch, via one SGD(lr=2**40) step (weights restored)."""
    from fastnn import optimizers
    before = model.get_weights()
    model.compile(optimizer=optimizers.SGD(learning_rate=PROBE_LR), loss="categorical_crossentropy")
    model.train_on_batch(x, y)
    after = model.get_weights()
    model.set_weights(before)
    # kernels are the 2-D weights, in layer order; float64 so the norm of huge steps cannot overflow
    return [float(np.linalg.norm(b.astype(np.float64) - a.astype(np.float64)) / PROBE_LR)
            for b, a in zip(before, after) if b.ndim == 2]


def run(size="full", out="fastnn-out"):
    _common.check_size(size)
    from fastnn import optimizers, utils
    t0 = time.perf_counter()
    cfg = SIZES[size]
    data = _common.load_flat(cfg["n_train"], 1000)
    x, y = data["x_train"], data["y_train"]
    grads, losses, test_acc = {}, {}, {}
    for act, init in CONFIGS:
        label = f"{act}, {init}"
        utils.set_random_seed(0)
        model = _common.mlp(data["input_dim"], [cfg["width"]] * cfg["depth"], act, _common.initializer(init))
        batches = _common.minibatches(len(x), cfg["batch"], np.random.default_rng(0))
        probes = [kernel_gradient_norms(model, x[i], y[i]) for i, _ in zip(batches, range(cfg["probe_batches"]))]
        grads[label] = np.mean(probes, axis=0).tolist()
        model.compile(optimizer=optimizers.SGD(learning_rate=cfg["lr"]), loss="categorical_crossentropy")
        losses[label] = [_common.train_batch(model, x[i], y[i]) for i, _ in zip(batches, range(cfg["iterations"]))]
        test_acc[label] = _common.accuracy(model, data["x_test"], data["y_test"])

    fig = _common.figure(figsize=(14, 5.5))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label in grads:
        g = np.maximum(grads[label], FLOOR)
        ax1.semilogy(np.arange(1, len(g) + 1), g, "o-", label=label)
        line, = ax2.plot(_common.smooth(losses[label]), lw=1.8, label=f"{label} (test acc {test_acc[label]:.3f})")
        ax2.plot(losses[label], color=line.get_color(), alpha=0.15, lw=0.6)
    n = cfg["depth"] + 1
    ax1.set_xticks(range(1, n + 1))
    ax1.set_xlabel(f"Dense layer (1 = input side, {n} = softmax output)")
    ax1.set_ylabel(f"||dL/dW|| at initialization (log; {FLOOR:g} = rounds to zero)")
    ax1.set_title("Gradient norm per layer before training")
    ax1.grid(alpha=0.3, which="both")
    ax1.legend()
    ax2.set_xlabel("iteration (mini-batch)")
    ax2.set_ylabel("training loss")
    ax2.set_title(f"Training loss, SGD lr={cfg['lr']}")
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.suptitle(f"Vanishing gradients on {data['name']}: {cfg['depth']} hidden Dense({cfg['width']}) layers, "
                 f"{len(x)} training samples, batch {cfg['batch']}, {cfg['iterations']} iterations")
    fig.tight_layout()
    return _common.finish("vanishing", out, fig, {
        "size": size, "dataset": data["name"], "n_train": len(x), **cfg, "gradient_norms": grads,
        "losses": losses, "test_accuracy_1000": test_acc}, t0)
