"""Keras activations as ONNX ops: `emit(b, name, params, x, base)` returns the output name.

Every name fastnn's layers take (fastnn.kernels.activation.NAMES) maps onto ONNX's own op where
one computes Keras's formula (Relu, LeakyRelu, Elu, Selu, HardSigmoid, HardSwish, Softplus, ...),
else onto a short composition of them (silu = x * Sigmoid(x); gelu before opset 20 through Erf).
The formulas are Keras 3's (shared/KERAS-NUMERICS.md, fastnn.activations).
"""
from __future__ import annotations

import math

from fastnn.onnx._builder import ExportError, Sym, axis_in

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _relu(b, x, base, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's ReLU with max_value, negative_slope and threshold (ReLU.static_call)."""
    ns, thr = float(negative_slope), float(threshold)
    if ns != 0.0 and max_value is None and thr == 0.0:
        return b.node("LeakyRelu", [x], base, alpha=ns)
    if thr != 0.0:
        keep = b.node("Greater", [x, b.scalar(thr, "threshold")], base)
        y = b.node("Where", [keep, x, b.scalar(0.0, "zero")], base)
    else:
        y = b.node("Relu", [x], base)
    if max_value is not None:
        y = b.node("Clip", [y, b.scalar(0.0, "zero"), b.scalar(max_value, "max_value")], base)
    if ns != 0.0:   # y - negative_slope * relu(threshold - x)
        below = b.node("Relu", [b.node("Sub", [b.scalar(thr, "threshold"), x], base)], base)
        y = b.node("Sub", [y, b.node("Mul", [below, b.scalar(ns, "negative_slope")], base)], base)
    return y


def emit(b, name, params, x: Sym, base, layer_desc=None):
    """The ONNX ops of activation `name` (with Keras's `params`) on tensor x; returns the output
    name, stored in x's layout."""
    p = dict(params or {})
    v = x.name
    if name == "linear":
        return v
    if name == "relu":
        return _relu(b, v, base, **p)
    if name == "relu6":
        return b.node("Clip", [v, b.scalar(0.0, "zero"), b.scalar(6.0, "six")], base)
    if name == "leaky_relu":
        ns = float(p.get("negative_slope", 0.2))
        if ns <= 1.0:   # Keras: max(x, ns * x), which is LeakyRelu while ns <= 1
            return b.node("LeakyRelu", [v], base, alpha=ns)
        return b.node("Max", [v, b.node("Mul", [v, b.scalar(ns, "negative_slope")], base)], base)
    if name == "elu":
        return b.node("Elu", [v], base, alpha=float(p.get("alpha", 1.0)))
    if name == "selu":
        return b.node("Selu", [v], base, alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if name == "gelu":
        approximate = bool(p.get("approximate", False))
        if b.opset >= 20:
            return b.node("Gelu", [v], base, approximate="tanh" if approximate else "none")
        if approximate:   # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = b.node("Mul", [b.node("Mul", [v, v], base), v], base)
            inner = b.node("Add", [v, b.node("Mul", [cube, b.scalar(0.044715, "gelu_c")], base)], base)
            t = b.node("Tanh", [b.node("Mul", [inner, b.scalar(math.sqrt(2 / math.pi), "sqrt_2_pi")], base)], base)
            half_x = b.node("Mul", [v, b.scalar(0.5, "half")], base)
            return b.node("Mul", [half_x, b.node("Add", [t, b.scalar(1.0, "one")], base)], base)
        # x (1 + erf(x / sqrt 2)) / 2
        e = b.node("Erf", [b.node("Mul", [v, b.scalar(1 / math.sqrt(2), "inv_sqrt2")], base)], base)
        return b.node("Mul", [b.node("Mul", [v, b.node("Add", [e, b.scalar(1.0, "one")], base)], base),
                              b.scalar(0.5, "half")], base)
    if name == "sigmoid":
        return b.node("Sigmoid", [v], base)
    if name == "hard_sigmoid":   # Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)
        return b.node("HardSigmoid", [v], base, alpha=1.0 / 6.0, beta=0.5)
    if name in ("hard_silu", "hard_swish"):
        return b.node("HardSwish", [v], base)
    if name == "tanh":
        return b.node("Tanh", [v], base)
    if name == "softsign":
        return b.node("Softsign", [v], base)
    if name == "softplus":
        return b.node("Softplus", [v], base)
    if name in ("silu", "swish"):
        return b.node("Mul", [v, b.node("Sigmoid", [v], base)], base)
    if name == "exponential":
        return b.node("Exp", [v], base)
    if name in ("softmax", "log_softmax"):
        axis = p.get("axis", -1)
        if not isinstance(axis, int):
            raise ExportError(f"{layer_desc or base}: {name} over several axes {axis!r} has no ONNX op; "
                              f"use one axis.")
        return b.node("Softmax" if name == "softmax" else "LogSoftmax", [v], base,
                      axis=axis_in(x.layout, x.rank, axis))
    raise ExportError(f"{layer_desc or base}: the activation {name!r} has no ONNX exporter.")
