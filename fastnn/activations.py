"""fastnn.activations: Keras 3 activations as functions on float32 arrays, by name.

    >>> import numpy as np, fastnn
    >>> fastnn.activations.relu(np.array([-1.0, 2.0]), max_value=1.0)
    array([0., 1.], dtype=float32)
    >>> act = fastnn.activations.get("gelu")          # what a layer resolves once in __init__
    >>> act.name, act.params
    ('gelu', {})

Every public activation is an `Activation`: a callable carrying the `name` and `params` that
`fastnn.kernels.activation.apply(name, x, **params)` takes, so a layer can hand it to a fused
kernel, and with `grad(x, y, dy)` for the backward pass. Names the kernel supports run there
(float32, C-contiguous, one pass); the rest of Keras's list (celu, glu, mish, sparsemax, ...)
runs in NumPy here.
"""
from __future__ import annotations

import importlib
import math

import numpy as np

from fastnn._naming import deserialize_object, identifier_error, serialize_object  # noqa: F401

__all__ = [
    "Activation", "get", "serialize", "deserialize",
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "swish", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "tanh",
    "tanh_shrink", "threshold",
]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def as_float32(x) -> np.ndarray:
    """x as a C-contiguous float32 array (a no-op when it already is one)."""
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------- backends
_backend_cache: dict = {}


def _kernel():
    """fastnn.kernels.activation if it is built, else fastnn.reference.activation, else None.

    Looked up until found (the kernel may land while a session runs), then cached.
    """
    if "mod" in _backend_cache:
        return _backend_cache["mod"]
    for path in ("fastnn.kernels.activation", "fastnn.reference.activation"):
        try:
            mod = importlib.import_module(path)
        except ImportError:
            continue
        if hasattr(mod, "apply") and hasattr(mod, "grad"):
            if path.startswith("fastnn.kernels"):
                _backend_cache["mod"] = mod
            return mod
    return None


def _erf(x):
    try:
        from scipy.special import erf
        return erf(x)
    except ImportError:  # scipy is optional: math.erf elementwise (slower, same values)
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)


def _sigmoid(x):
    # stable on both tails: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def _softplus(x):
    return np.logaddexp(x, np.zeros((), x.dtype))


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    # Keras's ReLU.static_call, including its leaky part below the threshold
    if negative_slope != 0.0 and max_value is None and threshold == 0:
        return np.where(x >= 0, x, negative_slope * x).astype(x.dtype)
    y = np.where(x > threshold, x, 0).astype(x.dtype) if threshold != 0 else np.maximum(x, 0)
    if max_value is not None:
        y = np.clip(y, 0, max_value)
    if negative_slope != 0.0:
        y = y - negative_slope * np.maximum(threshold - x, 0)
    return y.astype(x.dtype)


def _relu_grad(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope != 0.0 and max_value is None and threshold == 0:
        return np.where(x >= 0, 1.0, negative_slope)
    g = (x > threshold).astype(np.float64)
    if max_value is not None:
        g = g * (x < max_value)
    if negative_slope != 0.0:
        g = g + negative_slope * (x < threshold)
    return g


def _sparsemax(x, axis=-1):
    z = -np.sort(-x, axis=axis)
    cs = np.cumsum(z, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    r = np.arange(1, x.shape[axis] + 1).reshape(shape)
    support = z - (cs - 1) / r > 0
    k = np.sum(support, axis=axis, keepdims=True)
    tau = (np.sum(np.where(support, cs, 0.0), axis=axis, keepdims=True) - 1) / k
    return np.maximum(x - tau, 0.0).astype(x.dtype)


def _np_apply(name, x, p):
    """NumPy forward of every Keras 3 activation (Keras's NumPy-backend formulas)."""
    f = x.dtype.type
    if name == "linear":
        return x.copy()
    if name == "relu":
        return _relu(x, **p)
    if name == "relu6":
        return np.minimum(np.maximum(x, f(0)), f(6))
    if name == "leaky_relu":
        return np.maximum(x, f(p.get("negative_slope", 0.2)) * x)
    if name == "elu":
        return np.where(x >= 0, x, f(p.get("alpha", 1.0)) * np.expm1(x)).astype(x.dtype)
    if name == "selu":
        return (f(SELU_SCALE) * np.where(x >= 0, x, f(SELU_ALPHA) * np.expm1(x))).astype(x.dtype)
    if name == "celu":
        a = f(p.get("alpha", 1.0))
        return np.maximum(x, f(0)) + a * np.expm1(np.minimum(x, f(0)) / a)
    if name == "gelu":
        if p.get("approximate", False):
            c = f(math.sqrt(2 / math.pi))
            return x * f(0.5) * (f(1) + np.tanh(c * (x + f(0.044715) * x ** 3)))
        return (x * (_erf(x / f(math.sqrt(2))) + f(1)) / f(2)).astype(x.dtype)
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "hard_sigmoid":
        return np.clip(x / f(6) + f(0.5), f(0), f(1))
    if name in ("hard_silu", "hard_swish"):
        return x * np.clip(x / f(6) + f(0.5), f(0), f(1))
    if name == "sparse_sigmoid":
        return np.clip(f(0.5) * (x + f(1)), f(0), f(1))
    if name == "tanh":
        return np.tanh(x)
    if name == "tanh_shrink":
        return x - np.tanh(x)
    if name == "hard_tanh":
        return np.clip(x, f(-1), f(1))
    if name == "softsign":
        return x / (f(1) + np.abs(x))
    if name == "softplus":
        return _softplus(x)
    if name == "log_sigmoid":
        return -_softplus(-x)
    if name in ("silu", "swish"):
        return x * _sigmoid(x)
    if name == "mish":
        return x * np.tanh(_softplus(x))
    if name == "exponential":
        return np.exp(x)
    if name == "softmax":
        return _softmax(x, p.get("axis", -1)).astype(x.dtype)
    if name == "log_softmax":
        return _log_softmax(x, p.get("axis", -1)).astype(x.dtype)
    if name == "soft_shrink":
        t = f(p.get("threshold", 0.5))
        return np.where(x > t, x - t, np.where(x < -t, x + t, f(0))).astype(x.dtype)
    if name == "hard_shrink":
        t = f(p.get("threshold", 0.5))
        return np.where(np.abs(x) > t, x, f(0)).astype(x.dtype)
    if name == "sparse_plus":
        return np.where(x <= -1, f(0), np.where(x < 1, f(0.25) * (x + f(1)) ** 2, x)).astype(x.dtype)
    if name == "squareplus":
        return (x + np.sqrt(x * x + f(p.get("b", 4)))) / f(2)
    if name == "threshold":
        return np.where(x > p["threshold"], x, f(p["default_value"])).astype(x.dtype)
    if name == "glu":
        axis = p.get("axis", -1)
        if x.shape[axis] % 2:
            raise ValueError(f"glu: the size of axis {axis} must be even; received shape {x.shape}.")
        a, b = np.split(x, 2, axis)
        return a * _sigmoid(b)
    if name == "sparsemax":
        return _sparsemax(x, p.get("axis", -1))
    raise identifier_error("activation function", name, _FUNCTIONS)


def _np_grad(name, x, y, dy, p):
    """NumPy backward (dy -> dx) of every activation, in float64 then cast to float32."""
    x64, y64, dy64 = (np.asarray(a, np.float64) for a in (x, y, dy))
    if name == "softmax":
        axis = p.get("axis", -1)
        return y64 * (dy64 - np.sum(dy64 * y64, axis=axis, keepdims=True))
    if name == "log_softmax":
        axis = p.get("axis", -1)
        return dy64 - np.exp(y64) * np.sum(dy64, axis=axis, keepdims=True)
    if name == "sparsemax":
        # derivative of Keras's formula y = max(x - tau, 0), tau = (sum_{m<=k} cumsum_m - 1) / k
        # (Keras 3 sums the cumulative sums over the support; d tau / d z_l = (k - l + 1) / k
        # for the l-th largest input inside the support)
        axis = p.get("axis", -1)
        xm, dym = np.moveaxis(x64, axis, -1), np.moveaxis(dy64, axis, -1)
        n = xm.shape[-1]
        order = np.argsort(-xm, axis=-1, kind="stable")
        z = np.take_along_axis(xm, order, -1)
        cs = np.cumsum(z, axis=-1)
        r = np.arange(1, n + 1)
        support = z - (cs - 1) / r > 0
        k = np.sum(support, axis=-1, keepdims=True)
        tau = (np.sum(np.where(support, cs, 0.0), axis=-1, keepdims=True) - 1) / k
        s = (xm - tau > 0).astype(np.float64)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(r, order.shape), -1)
        w = np.where(rank <= k, (k - rank + 1) / k, 0.0)
        dx = s * dym - w * np.sum(s * dym, axis=-1, keepdims=True)
        return np.moveaxis(dx, -1, axis)
    if name == "glu":
        axis = p.get("axis", -1)
        a, b = np.split(x64, 2, axis)
        s = 1 / (1 + np.exp(-b))
        return np.concatenate([dy64 * s, dy64 * a * s * (1 - s)], axis=axis)
    return dy64 * _np_derivative(name, x64, y64, p)


def _np_derivative(name, x, y, p):
    """Elementwise derivative dy/dx (float64) of the elementwise activations."""
    if name == "linear":
        return np.ones_like(x)
    if name == "relu":
        return _relu_grad(x, **p)
    if name == "relu6":
        return ((x > 0) & (x < 6)).astype(np.float64)
    if name == "leaky_relu":
        return np.where(x >= 0, 1.0, p.get("negative_slope", 0.2))
    if name == "elu":
        a = p.get("alpha", 1.0)
        return np.where(x >= 0, 1.0, a * np.exp(np.minimum(x, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(x >= 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0)))
    if name == "celu":
        a = p.get("alpha", 1.0)
        return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0) / a))
    if name == "gelu":
        if p.get("approximate", False):
            c = math.sqrt(2 / math.pi)
            u = c * (x + 0.044715 * x ** 3)
            t = np.tanh(u)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
        return 0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    if name == "sigmoid":
        s = _sigmoid(x)
        return s * (1 - s)
    if name == "hard_sigmoid":
        return ((x > -3) & (x < 3)) / 6.0
    if name in ("hard_silu", "hard_swish"):
        return np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, x / 3 + 0.5))
    if name == "sparse_sigmoid":
        return ((x > -1) & (x < 1)) * 0.5
    if name == "tanh":
        t = np.tanh(x)
        return 1 - t * t
    if name == "tanh_shrink":
        t = np.tanh(x)
        return t * t
    if name == "hard_tanh":
        return ((x > -1) & (x < 1)).astype(np.float64)
    if name == "softsign":
        return 1 / (1 + np.abs(x)) ** 2
    if name == "softplus":
        return _sigmoid(x)
    if name == "log_sigmoid":
        return _sigmoid(-x)
    if name in ("silu", "swish"):
        s = _sigmoid(x)
        return s * (1 + x * (1 - s))
    if name == "mish":
        sp = _softplus(x)
        t = np.tanh(sp)
        return t + x * (1 - t * t) * _sigmoid(x)
    if name == "exponential":
        return np.exp(x)
    if name == "soft_shrink":
        t = p.get("threshold", 0.5)
        return (np.abs(x) > t).astype(np.float64)
    if name == "hard_shrink":
        t = p.get("threshold", 0.5)
        return (np.abs(x) > t).astype(np.float64)
    if name == "sparse_plus":
        return np.where(x <= -1, 0.0, np.where(x < 1, 0.5 * (x + 1), 1.0))
    if name == "squareplus":
        return 0.5 * (1 + x / np.sqrt(x * x + p.get("b", 4)))
    if name == "threshold":
        return (x > p["threshold"]).astype(np.float64)
    raise identifier_error("activation function", name, _FUNCTIONS)


# --------------------------------------------------------------------------- the callable
class Activation:
    """A named Keras activation: `act(x, **params)` -> float32 array of x's shape.

    `name` and `params` are what `fastnn.kernels.activation.apply(name, x, **params)` takes;
    `grad(x, y, dy)` returns dL/dx given y = act(x) and dy = dL/dy (float32).
    """

    def __init__(self, name: str, params: dict | None = None, doc: str = ""):
        self.name = name
        self.params = dict(params or {})
        self.__name__ = name
        self.__doc__ = doc or f"Keras activation {name!r} on a float32 array (same shape out)."

    def with_params(self, **params) -> "Activation":
        """The same activation with some parameters fixed (e.g. relu with max_value=6)."""
        return Activation(self.name, {**self.params, **params}, self.__doc__)

    def _params(self, overrides):
        p = {**self.params, **overrides}
        if self.name == "threshold" and ("threshold" not in p or "default_value" not in p):
            raise TypeError("threshold: needs the arguments threshold and default_value, "
                            "e.g. fastnn.activations.threshold(x, threshold=0.0, default_value=0.0).")
        return p

    def __call__(self, x, **params):
        p = self._params(params)
        x = as_float32(x)
        kernel = _kernel()
        if kernel is not None and self.name in getattr(kernel, "NAMES", ()):
            return kernel.apply(self.name, x, **p)
        return _np_apply(self.name, x, p)

    def grad(self, x, y, dy, **params):
        """dL/dx (float32, x's shape) from x, y = act(x) and the upstream gradient dy."""
        p = self._params(params)
        x, y, dy = as_float32(x), as_float32(y), as_float32(dy)
        kernel = _kernel()
        if kernel is not None and self.name in getattr(kernel, "NAMES", ()):
            return kernel.grad(self.name, x, y, dy, **p)
        return _np_grad(self.name, x, y, dy, p).astype(np.float32)

    def get_config(self):
        return dict(self.params)

    def __eq__(self, other):
        return isinstance(other, Activation) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"<fastnn activation {self.name}{extra}>"


class _CustomActivation(Activation):
    """A user callable wrapped as an Activation (computed by the callable, no kernel)."""

    def __init__(self, fn):
        super().__init__(getattr(fn, "__name__", type(fn).__name__), {})
        self.fn = fn
        self.custom = True

    def __call__(self, x, **params):
        return np.asarray(self.fn(as_float32(x), **params), dtype=np.float32)

    def grad(self, x, y, dy, **params):
        # an elementwise user function: central difference in float64, step ~ eps^(1/3)
        x64 = np.asarray(x, np.float64)
        h = 1e-3 * np.maximum(1.0, np.abs(x64))
        up = np.asarray(self.fn(x64 + h, **params), np.float64)
        dn = np.asarray(self.fn(x64 - h, **params), np.float64)
        return (np.asarray(dy, np.float64) * (up - dn) / (2 * h)).astype(np.float32)


_FUNCTIONS: dict[str, Activation] = {}


def _make(name):
    act = Activation(name, {})
    _FUNCTIONS[name] = act
    return act


linear = _make("linear")
relu = _make("relu")                     # relu(x, negative_slope=0.0, max_value=None, threshold=0.0)
relu6 = _make("relu6")
leaky_relu = _make("leaky_relu")         # leaky_relu(x, negative_slope=0.2)
elu = _make("elu")                       # elu(x, alpha=1.0)
selu = _make("selu")
celu = _make("celu")                     # celu(x, alpha=1.0)
gelu = _make("gelu")                     # gelu(x, approximate=False)
glu = _make("glu")                       # glu(x, axis=-1)
sigmoid = _make("sigmoid")
hard_sigmoid = _make("hard_sigmoid")     # Keras 3 form: clip(x/6 + 1/2, 0, 1)
hard_silu = _make("hard_silu")
sparse_sigmoid = _make("sparse_sigmoid")
tanh = _make("tanh")
tanh_shrink = _make("tanh_shrink")
hard_tanh = _make("hard_tanh")
softsign = _make("softsign")
softplus = _make("softplus")
log_sigmoid = _make("log_sigmoid")
silu = _make("silu")
mish = _make("mish")
exponential = _make("exponential")
softmax = _make("softmax")               # softmax(x, axis=-1)
log_softmax = _make("log_softmax")       # log_softmax(x, axis=-1)
soft_shrink = _make("soft_shrink")       # soft_shrink(x, threshold=0.5)
hard_shrink = _make("hard_shrink")       # hard_shrink(x, threshold=0.5)
sparse_plus = _make("sparse_plus")
squareplus = _make("squareplus")         # squareplus(x, b=4)
threshold = _make("threshold")           # threshold(x, threshold, default_value)
sparsemax = _make("sparsemax")           # sparsemax(x, axis=-1)
# Keras's aliases resolve to the same objects (their `.name` is the canonical kernel name)
swish = silu
hard_swish = hard_silu
_ALIASES = {"swish": silu, "hard_swish": hard_silu}


def _table():
    return {**_FUNCTIONS, **_ALIASES}


def serialize(activation):
    """Keras-style serialization: the name for a built-in, a dict when it carries params."""
    act = get(activation)
    if isinstance(act, _CustomActivation):
        raise ValueError(f"Unknown activation function {activation!r} cannot be serialized: "
                         "use a fastnn.activations name, or a layer for custom activations.")
    if act.params:
        return {"module": "fastnn.activations", "class_name": "function", "config": act.name,
                "params": dict(act.params), "registered_name": None}
    return act.name


def deserialize(config, custom_objects=None):
    """The Activation named by `config` (a name, or a dict from serialize)."""
    if isinstance(config, dict) and config.get("params"):
        return deserialize_object("activation function", config, _table(),
                                  custom_objects).with_params(**config["params"])
    return deserialize_object("activation function", config, _table(), custom_objects)


def get(identifier) -> Activation:
    """Resolve an activation: None -> linear; a name ("relu"), a dict, an Activation or a callable.

    Returns an Activation (callable on arrays, with `.name`, `.params` and `.grad`).
    """
    if identifier is None:
        return linear
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        table = _table()
        if identifier not in table:
            raise identifier_error("activation function", identifier, table)
        return table[identifier]
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        name = getattr(identifier, "__name__", None)
        # keras.activations.relu and friends map to ours by name (same definitions)
        if (name in _table() and getattr(identifier, "__module__", "").startswith("keras")):
            return _table()[name]
        return _CustomActivation(identifier)
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}. "
                     "Pass a name such as 'relu', a dict from serialize() or a callable.")
