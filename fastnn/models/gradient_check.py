"""gradient_check(model, x, y): backprop gradients against central differences, per layer.

The kernels compute in float32, so the check perturbs each sampled parameter by +-eps in the
float32 arena and evaluates the loss (accumulated in float64 by the loss) twice:
    g_num = (L(w + eps) - L(w - eps)) / (2 eps)
The error of a layer is max|g_backprop - g_num| / max(max|g_num|, max|g_backprop|, floor) over
all its sampled parameters (one scale per layer: a bias before BatchNormalization has a true
gradient of 0); float32 rounding puts correct layers near 1e-3 with eps=1e-3, a wrong
gradient near 1. Dropout masks are frozen and BatchNormalization moving statistics restored
around every evaluation, so the loss is a deterministic function of the weights.
"""
from __future__ import annotations

import numpy as np


def gradient_check(model, x, y, sample_weight=None, *, eps=1e-3, max_per_weight=24, training=True, seed=0,
                   verbose=False, floor=1e-4):
    """Return {layer name: worst relative gradient error}; print a table with verbose=True."""
    if not model.compiled:
        raise RuntimeError("gradient_check: compile the model first (the loss defines the gradient).")
    fn = "gradient_check"
    xs = model._prepare_x(x, fn)
    model._ensure_built(xs)
    n = model._check_x_shapes(xs, fn)
    model._prepare_training()
    ys = model._prepare_y(y, n, fn)
    sws = model._sample_weights(ys, sample_weight, None, n, fn)
    from fastnn.layers.core import Dropout
    frozen = {}
    for layer in model.layers:
        if isinstance(layer, Dropout):
            s = int(np.random.default_rng(seed + len(frozen)).integers(2**62))
            frozen[layer] = layer.__dict__.get("_next_seed")
            layer._next_seed = lambda s=s: s
    non_trainable = [(v, v.value.copy()) for v in model.non_trainable_weights]

    def restore():
        for v, a in non_trainable:
            v.value[...] = a

    def loss_at():
        restore()
        val, _ = model._losses(ys, model._forward(xs, training), sws, need_grad=False)
        return val + model._activity_penalty() + sum(float(v.regularizer(v.value)) for v in model._reg_vars)

    try:
        restore()
        _, douts = model._losses(ys, model._forward(xs, training), sws, need_grad=True)
        model._backward(douts)
        for v in model._reg_vars:
            v.grad += v.regularizer.gradient(v.value)
        grads = {id(v): v.grad.copy() for v in model.trainable_weights}
        rng = np.random.default_rng(seed)
        report = {}
        for layer in model.layers:
            nums, bps = [], []
            for v in layer.trainable_weights:
                flat, gflat = v.value.reshape(-1), grads[id(v)].reshape(-1)
                idx = np.arange(flat.size) if flat.size <= max_per_weight else \
                    rng.choice(flat.size, max_per_weight, replace=False)
                num = np.empty(idx.size)
                for j, i in enumerate(idx):
                    orig = flat[i]
                    flat[i] = orig + np.float32(eps)
                    lp = loss_at()
                    flat[i] = orig - np.float32(eps)
                    lm = loss_at()
                    flat[i] = orig
                    num[j] = (lp - lm) / (2 * eps)
                nums.append(num)
                bps.append(gflat[idx].astype(np.float64))
            if nums:
                num, bp = np.concatenate(nums), np.concatenate(bps)
                scale = max(np.abs(num).max(initial=0), np.abs(bp).max(initial=0), floor)
                report[layer.name] = float(np.abs(num - bp).max(initial=0) / scale)
    finally:
        restore()
        for layer, orig in frozen.items():
            if orig is None:
                layer.__dict__.pop("_next_seed", None)
            else:
                layer._next_seed = orig
    if verbose:
        width = max([len(k) for k in report] + [5])
        print(f"{'layer':<{width}}  worst relative error")
        for k, e in report.items():
            print(f"{k:<{width}}  {e:.3e}")
    return report
