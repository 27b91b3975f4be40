"""Every Keras 3 activation and its derivative on float32 C-contiguous arrays of any shape.

    y = apply("relu", x, max_value=6.0)             # Keras keras.activations.relu semantics
    dx = grad("relu", x, y, dy, max_value=6.0)      # dL/dx from dL/dy
    y = apply("softmax", x, axis=1)                 # any axis, stable at |x| = 1e4

Elementwise activations run one vectorised compiled loop per call (parallel over chunks for
arrays of at least PARALLEL_MIN floats); softmax and log_softmax reduce over one axis.
Parameters and defaults are Keras's (keras.activations.<name>); hard_sigmoid is the Keras 3
form relu6(x + 3) / 6. NaN propagates.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastnn._kernels import activation as _act
from fastnn.kernels._checks import check_array, check_float, prepare_out

__all__ = ["NAMES", "PARAMS", "apply", "grad", "resolve", "PARALLEL_MIN"]

# Below this many floats a loop runs on the calling thread: the OpenMP team costs more than
# it saves (bench/test_activation.py::test_parallel_threshold measures the crossover).
PARALLEL_MIN = 1 << 16

# name -> (kernel kind, {param: default}); softmax kinds use -1 / -2
_SPEC = {
    "linear": (0, {}),
    "relu": (1, {"negative_slope": 0.0, "max_value": None, "threshold": 0.0}),
    "relu6": (1, {}),
    "leaky_relu": (1, {"negative_slope": 0.2}),
    "elu": (2, {"alpha": 1.0}),
    "selu": (3, {}),
    "gelu": (4, {"approximate": False}),
    "sigmoid": (6, {}),
    "hard_sigmoid": (7, {}),
    "hard_silu": (8, {}),
    "hard_swish": (8, {}),
    "tanh": (9, {}),
    "softsign": (10, {}),
    "softplus": (11, {}),
    "silu": (12, {}),
    "swish": (12, {}),
    "exponential": (13, {}),
    "softmax": (-1, {"axis": -1}),
    "log_softmax": (-2, {"axis": -1}),
}
NAMES = tuple(_SPEC)
PARAMS = {name: dict(spec[1]) for name, spec in _SPEC.items()}


def resolve(name, params: dict, fn: str = "activation"):
    """Check an activation name and its parameters once.

    Returns (kind, kernel_params, axis): kind >= 0 is an elementwise kernel, -1 softmax,
    -2 log_softmax; kernel_params is the float tuple the compiled loop takes; axis is the
    softmax axis (None for elementwise kinds).
    """
    if not isinstance(name, str):
        raise TypeError(f"{fn}: name must be an activation name (str); received {name!r}. "
                        f"Valid names: {', '.join(NAMES)}.")
    key = name.lower()
    if key not in _SPEC:
        raise ValueError(f"{fn}: unknown activation {name!r}: not an activation name. "
                         f"Valid names: {', '.join(NAMES)}.")
    kind, defaults = _SPEC[key]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) if defaults else "none"
        raise ValueError(f"{fn}: activation {key!r} got unknown parameter(s) {', '.join(unknown)}; "
                         f"valid parameters: {valid}.")
    p = {**defaults, **params}
    if key in ("relu", "relu6", "leaky_relu"):
        ns = check_float(p.get("negative_slope", 0.0), "negative_slope", fn)
        t = check_float(p.get("threshold", 0.0), "threshold", fn)
        mv = 6.0 if key == "relu6" else p.get("max_value")
        if mv is not None:
            mv = check_float(mv, "max_value", fn, low=0.0)
        return kind, (ns, t, 0.0 if mv is None else mv, 0.0 if mv is None else 1.0), None
    if key == "elu":
        return kind, (check_float(p["alpha"], "alpha", fn),), None
    if key == "gelu":
        approximate = p["approximate"]
        if not isinstance(approximate, (bool, np.bool_)):
            raise TypeError(f"{fn}: gelu's approximate must be True or False; received {approximate!r}.")
        return (5 if approximate else 4), (), None
    if kind < 0:
        axis = p["axis"]
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{fn}: {key}'s axis must be an int; received {axis!r}.")
        return kind, (), int(axis)
    return kind, (), None


def _axis_geometry(shape, axis, fn):
    nd = len(shape)
    if nd == 0:
        raise ValueError(f"{fn}: x must have at least 1 dimension for a softmax over an axis; "
                         f"received a 0-d array. Use x.reshape(1).")
    if not -nd <= axis < nd:
        raise ValueError(f"{fn}: axis {axis} is out of range for an array with {nd} dimensions "
                         f"(x of shape {tuple(shape)}); use an axis in [{-nd}, {nd - 1}].")
    axis %= nd
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _check_alias(out, inputs, fn):
    """out may be one of the inputs exactly (in place), never a partial overlap."""
    for name, a in inputs:
        if out is a or not np.shares_memory(out, a):
            continue
        if (out.__array_interface__["data"][0] == a.__array_interface__["data"][0]
                and out.shape == a.shape):
            continue
        raise ValueError(f"{fn}: out overlaps {name} partially; pass {name} itself (in place) or a "
                         f"separate buffer.")


def apply(name, x, *, out=None, **params):
    """y = activation(x) elementwise (softmax / log_softmax over `axis`), float32, any shape.

    x: float32 C-contiguous array (read-only is fine). out: optional float32 buffer of x's
    shape; may be x itself (in place). Returns y (out when given).
    """
    fn = f"activation.apply({name!r})" if isinstance(name, str) else "activation.apply"
    kind, p, axis = resolve(name, params, fn)
    x = check_array(x, "x", fn)
    out = prepare_out(out, x.shape, "out", fn)
    _check_alias(out, [("x", x)], fn)
    if kind >= 0:
        _act.forward(kind, x.reshape(-1), out.reshape(-1), p, PARALLEL_MIN)
    else:
        outer, k, inner = _axis_geometry(x.shape, axis, fn)
        _act.softmax(x.reshape(-1), out.reshape(-1), outer, k, inner, kind == -2, PARALLEL_MIN)
    return out


def grad(name, x, y, dy, *, out=None, **params):
    """dx = dL/dx of the activation, from x, y = apply(name, x) and dy = dL/dy (float32).

    All of x, y, dy have the same shape; out (dx) may be any one of them (in place).
    Returns dx (out when given).
    """
    fn = f"activation.grad({name!r})" if isinstance(name, str) else "activation.grad"
    kind, p, axis = resolve(name, params, fn)
    x = check_array(x, "x", fn)
    y = check_array(y, "y", fn, shape=x.shape)
    dy = check_array(dy, "dy", fn, shape=x.shape)
    out = prepare_out(out, x.shape, "out", fn)
    _check_alias(out, [("x", x), ("y", y), ("dy", dy)], fn)
    if kind >= 0:
        _act.backward(kind, x.reshape(-1), y.reshape(-1), dy.reshape(-1), out.reshape(-1), p,
                      PARALLEL_MIN)
    else:
        outer, k, inner = _axis_geometry(x.shape, axis, fn)
        _act.softmax_backward(y.reshape(-1), dy.reshape(-1), out.reshape(-1), outer, k, inner,
                              kind == -2, PARALLEL_MIN)
    return out
