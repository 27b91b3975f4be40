"""Naive NumPy activations and derivatives: the oracle for fastnn.kernels.activation.

Same functions as the kernel (without out=). Computes in the input's dtype, so float64 input
gives a float64 oracle. Written from the textbook formulas (keras.activations definitions),
derivatives from x, independently of the kernel's choices.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["NAMES", "PARAMS", "apply", "grad"]

# Keras's parameters and defaults (keras.activations), written out here rather than imported
# from the kernel so that the oracle does not inherit a mistake in the kernel's table
PARAMS = {
    "linear": {}, "relu": {"negative_slope": 0.0, "max_value": None, "threshold": 0.0},
    "relu6": {}, "leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 1.0}, "selu": {},
    "gelu": {"approximate": False}, "sigmoid": {}, "hard_sigmoid": {}, "hard_silu": {},
    "hard_swish": {}, "tanh": {}, "softsign": {}, "softplus": {}, "silu": {}, "swish": {},
    "exponential": {}, "softmax": {"axis": -1}, "log_softmax": {"axis": -1},
}
NAMES = tuple(PARAMS)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _erfc(x):
    # erfc, not 1 + erf: Phi(x) = erfc(-x / sqrt 2) / 2 keeps its digits in the negative tail
    try:
        from scipy.special import erfc
        return erfc(x)
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn
        return np.vectorize(math.erfc, otypes=[x.dtype])(x)


def _gelu_tanh_cdf(x):
    # 0.5 (1 + tanh(u)) written as sigmoid(2u): equal, and exact in the tail where 1 + tanh
    # cancels
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return 1 / (1 + np.exp(-2 * u)), u


def _params(name, params):
    name = name.lower()
    if name not in PARAMS:
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(NAMES)}")
    unknown = set(params) - set(PARAMS[name])
    if unknown:
        raise ValueError(f"activation {name!r} got unknown parameter(s) {sorted(unknown)}")
    return name, {**PARAMS[name], **params}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    # keras.activations.relu (ReLU.static_call), step by step as Keras writes it; the order
    # matters for +-inf and NaN: relu(-inf) = 0, but x * (x > threshold) makes -inf * 0 = NaN
    if negative_slope != 0 and max_value is None and threshold == 0:
        return np.where(x >= 0, x, negative_slope * x)           # leaky_relu
    if negative_slope != 0:
        negative_part = np.maximum(threshold - x, 0)
    if threshold != 0:
        x = x * (x > threshold)
    else:
        x = np.maximum(x, 0)
    if max_value is not None:
        x = np.clip(x, 0, max_value)
    if negative_slope != 0:
        x = x - negative_slope * negative_part
    return x


def _relu_d(x, negative_slope=0.0, max_value=None, threshold=0.0):
    d = (x > threshold).astype(x.dtype)
    if max_value is not None:
        d = d * ((x > 0) & (x < max_value))
    return d + negative_slope * (x < threshold)


def _softmax(x, axis):
    if x.shape[axis] == 0:      # nothing to normalise (np.max has no identity)
        return x.copy()
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    if x.shape[axis] == 0:
        return x.copy()
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def apply(name, x, **params):
    """y = activation(x) (NumPy, in x's dtype)."""
    name, p = _params(name, params)
    x = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if name == "linear":
            return x.copy()
        if name == "relu":
            return _relu(x, **p)
        if name == "relu6":
            return _relu(x, max_value=6.0)
        if name == "leaky_relu":
            return _relu(x, negative_slope=p["negative_slope"])
        if name in ("elu", "selu"):
            alpha, scale = (p["alpha"], 1.0) if name == "elu" else (SELU_ALPHA, SELU_SCALE)
            return scale * np.where(x >= 0, x, alpha * np.expm1(x))
        if name == "gelu":
            if p["approximate"]:
                return x * _gelu_tanh_cdf(x)[0]
            return 0.5 * x * _erfc(-x / math.sqrt(2))
        if name == "sigmoid":
            return _sigmoid(x)
        if name == "hard_sigmoid":
            return np.clip(x / 6 + 0.5, 0, 1)
        if name in ("hard_silu", "hard_swish"):
            return x * np.clip(x / 6 + 0.5, 0, 1)
        if name == "tanh":
            return np.tanh(x)
        if name == "softsign":
            return x / (1 + np.abs(x))
        if name == "softplus":
            return np.logaddexp(x, 0)
        if name in ("silu", "swish"):
            return x * _sigmoid(x)
        if name == "exponential":
            return np.exp(x)
        if name == "softmax":
            return _softmax(x, p["axis"])
        return _log_softmax(x, p["axis"])


def grad(name, x, y, dy, **params):
    """dx = dy * activation'(x) (softmax: the Jacobian-vector product over `axis`)."""
    name, p = _params(name, params)
    x, dy = np.asarray(x), np.asarray(dy)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if name == "linear":
            d = np.ones_like(x)
        elif name == "relu":
            d = _relu_d(x, **p)
        elif name == "relu6":
            d = _relu_d(x, max_value=6.0)
        elif name == "leaky_relu":
            d = _relu_d(x, negative_slope=p["negative_slope"])
        elif name in ("elu", "selu"):
            alpha, scale = (p["alpha"], 1.0) if name == "elu" else (SELU_ALPHA, SELU_SCALE)
            d = scale * np.where(x >= 0, 1.0, alpha * np.exp(x))
        elif name == "gelu":
            if p["approximate"]:
                c = math.sqrt(2 / math.pi)
                cdf, u = _gelu_tanh_cdf(x)
                # d/dx 0.5 x (1 + tanh u) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u', with
                # 1 - tanh^2 u = 4 cdf (1 - cdf) (no cancellation in the tails)
                d = cdf + 2 * x * cdf * (1 - cdf) * c * (1 + 3 * 0.044715 * x * x)
            else:
                d = 0.5 * _erfc(-x / math.sqrt(2)) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        elif name == "sigmoid":
            s = _sigmoid(x)
            d = s * (1 - s)
        elif name == "hard_sigmoid":
            d = ((x > -3) & (x < 3)) / 6.0
        elif name in ("hard_silu", "hard_swish"):
            d = np.where(x >= 3, 1.0, np.where(x > -3, (2 * x + 3) / 6, 0.0))
        elif name == "tanh":
            d = 1 - np.tanh(x) ** 2
        elif name == "softsign":
            d = 1 / (1 + np.abs(x)) ** 2
        elif name == "softplus":
            d = _sigmoid(x)
        elif name in ("silu", "swish"):
            s = _sigmoid(x)
            d = s * (1 + x * (1 - s))
        elif name == "exponential":
            d = np.exp(x)
        elif name == "softmax":
            s = _softmax(x, p["axis"])
            return s * (dy - (dy * s).sum(axis=p["axis"], keepdims=True))
        else:
            s = _softmax(x, p["axis"])
            return dy - s * dy.sum(axis=p["axis"], keepdims=True)
        if name != "linear":
            d = np.where(np.isnan(x), np.nan, d)   # NaN in x gives NaN in dx
        return (dy * d).astype(np.result_type(x, dy))
