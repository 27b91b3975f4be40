"""fastnn.losses: Keras 3 losses with exact gradients, on float32 NumPy arrays.

    >>> loss = fastnn.losses.get("categorical_crossentropy")
    >>> value = loss(y_true, y_pred)                       # float, Keras reduction
    >>> value, dy_pred = loss.value_and_grad(y_true, y_pred, sample_weight)

Each loss has a Keras function (`mean_squared_error(y_true, y_pred)` -> per-sample values) and
a class (`MeanSquaredError(reduction=..., name=...)`). Per-sample value = mean over the last
axis (mse, mae, mape, msle, hinge, squared_hinge, poisson, log_cosh, huber, binary CE) or a
sum over the class axis (categorical/sparse CE, kld, cosine); the default reduction
"sum_over_batch_size" divides the weighted sum by the number of per-sample values, not by the
sum of the weights ("mean_with_sample_weight" does that). Keras's `squeeze_or_expand_to_same_rank`
runs first, so y_true (N,) against y_pred (N, 1) works.

`value_and_grad` returns dL/dy_pred (float32, y_pred's shape) of exactly Keras's formula,
clipping included: where Keras clips (crossentropy to [1e-7, 1-1e-7], kld to [1e-7, 1]) the
gradient is zero outside the interval, as autodiff gives. The crossentropy classes also have
`fused_kind` ("softmax" or "sigmoid") and `value_and_grad_logits(y_true, logits, sw)`: the model
calls it when its last layer ends in that activation, skipping the activation's backward;
it runs in `fastnn.kernels.loss` (one pass: (p - y) * scale).
"""
from __future__ import annotations

import importlib
import inspect
import math
import warnings

import numpy as np

from fastnn._naming import deserialize_object, serialize_object

__all__ = [
    "Loss", "LossFunctionWrapper", "MeanSquaredError", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "Hinge", "SquaredHinge",
    "CategoricalHinge", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "KLDivergence", "Poisson", "CosineSimilarity", "Huber",
    "LogCosh", "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "Dice", "Tversky",
    "binary_focal_crossentropy", "categorical_focal_crossentropy", "dice", "tversky", "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "hinge", "squared_hinge", "categorical_hinge",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "kl_divergence", "poisson", "cosine_similarity", "huber", "log_cosh", "mse", "mae", "mape",
    "msle", "kld", "kullback_leibler_divergence", "logcosh", "get", "serialize", "deserialize",
]

EPSILON = 1e-7  # keras.config.epsilon()
# Keras clips float32 tensors: the bounds are the float32 roundings (1 - 1e-7 -> 1 - 2**-23 + ...),
# which moves a saturated log(1 - p) from -16.12 to -15.94; we clip at the same numbers
CLIP_LO = float(np.float32(EPSILON))
CLIP_HI = float(np.float32(1.0 - EPSILON))
REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


# --------------------------------------------------------------------------- shapes
def _squeeze_or_expand(x1, x2, expand_rank_1=True):
    """Keras's squeeze_or_expand_to_same_rank: fix a trailing size-1 axis on one side."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _prepare(y_true, y_pred, fn=None):
    """float64 copies of y_true/y_pred with Keras's rank fix; checks the shapes agree."""
    yp = np.asarray(y_pred, dtype=np.float64)
    yt = np.asarray(y_true, dtype=np.float64)
    yt, yp = _squeeze_or_expand(yt, yp)
    if fn is not None and yt.shape != yp.shape:
        try:
            yt = np.broadcast_to(yt, yp.shape)
        except ValueError:
            raise ValueError(f"{fn}: y_true and y_pred must have the same shape (after Keras's "
                             f"squeeze/expand of a trailing 1); received y_true.shape={np.shape(y_true)}, "
                             f"y_pred.shape={np.shape(y_pred)}.") from None
    return yt, yp


def _clip_mask(x, lo, hi):
    """1 where clip(x, lo, hi) passes the gradient (inclusive bounds, as autodiff's clamp)."""
    return ((x >= lo) & (x <= hi)).astype(np.float64)


# --------------------------------------------------------------------------- the formulas
# Each entry: value(yt, yp, **kw) -> per-sample values; vjp(yt, yp, c, **kw) -> d(sum c*per)/dyp.
# yt/yp are float64 of one shape (after _prepare); c has the per-sample shape.

def _mean_last(elem):
    return np.mean(elem, axis=-1)


def _mse(yt, yp):
    return _mean_last((yt - yp) ** 2)


def _mse_vjp(yt, yp, c):
    return c[..., None] * 2.0 * (yp - yt) / yp.shape[-1]


def _mae(yt, yp):
    return _mean_last(np.abs(yt - yp))


def _mae_vjp(yt, yp, c):
    return c[..., None] * np.sign(yp - yt) / yp.shape[-1]


def _mape(yt, yp):
    return 100.0 * _mean_last(np.abs((yt - yp) / np.maximum(np.abs(yt), EPSILON)))


def _mape_vjp(yt, yp, c):
    return c[..., None] * 100.0 * np.sign(yp - yt) / np.maximum(np.abs(yt), EPSILON) / yp.shape[-1]


def _msle(yt, yp):
    d = np.log(np.maximum(yp, EPSILON) + 1.0) - np.log(np.maximum(yt, EPSILON) + 1.0)
    return _mean_last(d * d)


def _msle_vjp(yt, yp, c):
    lp = np.maximum(yp, EPSILON)
    d = np.log(lp + 1.0) - np.log(np.maximum(yt, EPSILON) + 1.0)
    return c[..., None] * 2.0 * d / (lp + 1.0) * (yp >= EPSILON) / yp.shape[-1]


def _hinge_labels(yt):
    # Keras converts {0, 1} labels to {-1, 1} when every label is 0 or 1
    return 2.0 * yt - 1.0 if np.all((yt == 0) | (yt == 1)) else yt


def _hinge(yt, yp):
    yt = _hinge_labels(yt)
    return _mean_last(np.maximum(1.0 - yt * yp, 0.0))


def _hinge_vjp(yt, yp, c):
    yt = _hinge_labels(yt)
    return c[..., None] * -yt * (1.0 - yt * yp > 0) / yp.shape[-1]


def _squared_hinge(yt, yp):
    yt = _hinge_labels(yt)
    return _mean_last(np.maximum(1.0 - yt * yp, 0.0) ** 2)


def _squared_hinge_vjp(yt, yp, c):
    yt = _hinge_labels(yt)
    return c[..., None] * -2.0 * yt * np.maximum(1.0 - yt * yp, 0.0) / yp.shape[-1]


def _categorical_hinge(yt, yp):
    pos = np.sum(yt * yp, axis=-1)
    neg = np.max((1.0 - yt) * yp, axis=-1)
    return np.maximum(neg - pos + 1.0, 0.0)


def _categorical_hinge_vjp(yt, yp, c):
    masked = (1.0 - yt) * yp
    pos = np.sum(yt * yp, axis=-1)
    neg = np.max(masked, axis=-1)
    active = (neg - pos + 1.0 > 0)
    pick = np.zeros_like(yp)
    np.put_along_axis(pick, np.argmax(masked, axis=-1)[..., None], 1.0, axis=-1)
    return (c * active)[..., None] * (pick * (1.0 - yt) - yt)


def _kld(yt, yp):
    t, p = np.clip(yt, CLIP_LO, 1.0), np.clip(yp, CLIP_LO, 1.0)
    return np.sum(t * np.log(t / p), axis=-1)


def _kld_vjp(yt, yp, c):
    t, p = np.clip(yt, CLIP_LO, 1.0), np.clip(yp, CLIP_LO, 1.0)
    return c[..., None] * -t / p * _clip_mask(yp, CLIP_LO, 1.0)


def _poisson(yt, yp):
    return _mean_last(yp - yt * np.log(yp + EPSILON))


def _poisson_vjp(yt, yp, c):
    return c[..., None] * (1.0 - yt / (yp + EPSILON)) / yp.shape[-1]


def _l2_normalize(x, axis):
    # Keras ops.normalize: x * min(rsqrt(sum x^2), 1/epsilon)
    with np.errstate(divide="ignore"):
        inv = np.minimum(1.0 / np.sqrt(np.sum(x * x, axis=axis, keepdims=True)), 1.0 / EPSILON)
    return x * inv, inv


def _cosine(yt, yp, axis=-1):
    ut, _ = _l2_normalize(yt, axis)
    up, _ = _l2_normalize(yp, axis)
    return -np.sum(ut * up, axis=axis)


def _cosine_vjp(yt, yp, c, axis=-1):
    ut, _ = _l2_normalize(yt, axis)
    up, inv = _l2_normalize(yp, axis)
    c = np.expand_dims(c, axis)
    capped = inv >= 1.0 / EPSILON  # the norm was clamped: u = x / eps, linear in x
    free = -inv * (ut - up * np.sum(ut * up, axis=axis, keepdims=True))
    return c * np.where(capped, -ut * inv, free)


def _huber(yt, yp, delta=1.0):
    e = yp - yt
    a = np.abs(e)
    return _mean_last(np.where(a <= delta, 0.5 * e * e, delta * a - 0.5 * delta * delta))


def _huber_vjp(yt, yp, c, delta=1.0):
    e = yp - yt
    return c[..., None] * np.where(np.abs(e) <= delta, e, delta * np.sign(e)) / yp.shape[-1]


def _log_cosh(yt, yp):
    x = yp - yt
    return _mean_last(x + np.logaddexp(-2.0 * x, 0.0) - math.log(2.0))


def _log_cosh_vjp(yt, yp, c):
    return c[..., None] * np.tanh(yp - yt) / yp.shape[-1]


def _smooth_categorical(yt, s):
    return yt * (1.0 - s) + s / yt.shape[-1] if s else yt


def _smooth_binary(yt, s):
    return yt * (1.0 - s) + 0.5 * s if s else yt


def _log_softmax(z, axis):
    m = np.max(z, axis=axis, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def _cce(yt, yp, from_logits=False, label_smoothing=0.0, axis=-1):
    yt = _smooth_categorical(yt, label_smoothing)
    if from_logits:
        return -np.sum(yt * _log_softmax(yp, axis), axis=axis)
    o = np.clip(yp / np.sum(yp, axis=axis, keepdims=True), CLIP_LO, CLIP_HI)
    return -np.sum(yt * np.log(o), axis=axis)


def _cce_vjp(yt, yp, c, from_logits=False, label_smoothing=0.0, axis=-1):
    yt = _smooth_categorical(yt, label_smoothing)
    c = np.expand_dims(c, axis)
    if from_logits:
        p = np.exp(_log_softmax(yp, axis))
        return c * (p * np.sum(yt, axis=axis, keepdims=True) - yt)
    s = np.sum(yp, axis=axis, keepdims=True)
    o = yp / s
    g = -yt / np.clip(o, CLIP_LO, CLIP_HI) * _clip_mask(o, CLIP_LO, CLIP_HI)
    # through o = p / sum(p): do_j/dp_k = (delta_jk - o_j) / s
    return c * (g - np.sum(g * o, axis=axis, keepdims=True)) / s


def _sparse_labels(yt, yp, axis, fn="sparse_categorical_crossentropy"):
    """Integer labels of y_pred's shape without the class axis (Keras squeezes a trailing 1)."""
    yt = np.asarray(yt)
    if yt.ndim == yp.ndim and yt.shape[axis] == 1:
        yt = np.squeeze(yt, axis=axis)
    want = tuple(d for i, d in enumerate(yp.shape) if i != axis % yp.ndim)
    if yt.shape != want:
        raise ValueError(f"{fn}: y_true must hold integer labels of shape {want} (y_pred's shape "
                         f"without the class axis); received y_true.shape={yt.shape}, y_pred.shape={yp.shape}.")
    return yt.astype(np.int64)


def _one_hot(labels, k, axis):
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"sparse_categorical_crossentropy: labels must be in [0, {k}); received "
                         f"values from {labels.min()} to {labels.max()}.")
    oh = (labels[..., None] == np.arange(k)).astype(np.float64)
    return np.moveaxis(oh, -1, axis)


def _scce(yt, yp, from_logits=False, axis=-1, ignore_class=None):
    labels = _sparse_labels(yt, yp, axis)
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = np.where(valid, labels, 0)
    per = _cce(_one_hot(labels, yp.shape[axis], axis), yp, from_logits, 0.0, axis)
    return per if valid is None else np.where(valid, per, 0.0)


def _scce_vjp(yt, yp, c, from_logits=False, axis=-1, ignore_class=None):
    labels = _sparse_labels(yt, yp, axis)
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = np.where(valid, labels, 0)
        c = c * valid
    return _cce_vjp(_one_hot(labels, yp.shape[axis], axis), yp, c, from_logits, 0.0, axis)


def _bce_elem(yt, yp, from_logits):
    if from_logits:  # stable: max(z, 0) - z*y + log(1 + exp(-|z|))
        return np.maximum(yp, 0.0) - yp * yt + np.log1p(np.exp(-np.abs(yp)))
    o = np.clip(yp, CLIP_LO, CLIP_HI)
    return -(yt * np.log(o) + (1.0 - yt) * np.log(1.0 - o))


def _bce(yt, yp, from_logits=False, label_smoothing=0.0, axis=-1):
    yt = _smooth_binary(yt, label_smoothing)
    return np.mean(_bce_elem(yt, yp, from_logits), axis=axis)


def _bce_vjp(yt, yp, c, from_logits=False, label_smoothing=0.0, axis=-1):
    yt = _smooth_binary(yt, label_smoothing)
    c = np.expand_dims(c, axis) / yp.shape[axis]
    if from_logits:
        return c * (0.5 * (1.0 + np.tanh(0.5 * yp)) - yt)  # sigmoid(z) - y, overflow-free
    o = np.clip(yp, CLIP_LO, CLIP_HI)
    return c * (-yt / o + (1.0 - yt) / (1.0 - o)) * _clip_mask(yp, CLIP_LO, CLIP_HI)


def _keras_function(fn, name, doc):
    """The Keras functional form: (y_true, y_pred, **kw) -> float32 per-sample values."""
    def loss_fn(y_true, y_pred, **kwargs):
        yt, yp = _prepare(y_true, y_pred)
        if fn not in (_scce,):
            yt = np.broadcast_to(yt, yp.shape) if yt.shape != yp.shape else yt
        return np.asarray(fn(yt, yp, **kwargs), dtype=np.float32)
    loss_fn.__name__ = loss_fn.__qualname__ = name
    loss_fn.__doc__ = doc
    return loss_fn


mean_squared_error = _keras_function(_mse, "mean_squared_error", "mean((y_true - y_pred)**2, axis=-1), float32.")
mean_absolute_error = _keras_function(_mae, "mean_absolute_error", "mean(|y_true - y_pred|, axis=-1), float32.")
mean_absolute_percentage_error = _keras_function(
    _mape, "mean_absolute_percentage_error", "100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1).")
mean_squared_logarithmic_error = _keras_function(
    _msle, "mean_squared_logarithmic_error",
    "mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))**2, axis=-1).")
hinge = _keras_function(_hinge, "hinge", "mean(max(1 - y_true * y_pred, 0), axis=-1); {0,1} labels -> {-1,1}.")
squared_hinge = _keras_function(_squared_hinge, "squared_hinge", "mean(max(1 - y_true * y_pred, 0)**2, axis=-1).")
categorical_hinge = _keras_function(_categorical_hinge, "categorical_hinge",
                                    "max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0).")
kl_divergence = _keras_function(_kld, "kl_divergence", "sum(y_true * log(y_true / y_pred), axis=-1), both clipped to [eps, 1].")
poisson = _keras_function(_poisson, "poisson", "mean(y_pred - y_true * log(y_pred + eps), axis=-1).")
cosine_similarity = _keras_function(_cosine, "cosine_similarity", "-sum(l2norm(y_true) * l2norm(y_pred), axis).")
huber = _keras_function(_huber, "huber", "mean(0.5 e**2 if |e| <= delta else delta |e| - 0.5 delta**2, axis=-1).")
log_cosh = _keras_function(_log_cosh, "log_cosh", "mean(log(cosh(y_pred - y_true)), axis=-1).")
binary_crossentropy = _keras_function(_bce, "binary_crossentropy",
                                      "mean(-(y log p + (1-y) log(1-p)), axis), p clipped to [eps, 1-eps].")
categorical_crossentropy = _keras_function(_cce, "categorical_crossentropy",
                                           "-sum(y * log(p / sum(p)), axis), clipped to [eps, 1-eps].")
sparse_categorical_crossentropy = _keras_function(_scce, "sparse_categorical_crossentropy",
                                                  "categorical_crossentropy with integer labels.")
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kullback_leibler_divergence = kl_divergence
logcosh = log_cosh
bce = BCE = binary_crossentropy


# --------------------------------------------------------------------------- reduction
def _standardize_reduction(reduction, cls):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{cls}: invalid value for argument reduction; expected one of "
                         f"{REDUCTIONS}; received reduction={reduction!r}.")
    return reduction


def _weights(per, sample_weight, mask, reduction, fn):
    """Keras's apply_mask + squeeze_or_expand: a weight array broadcastable to `per`, or None."""
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            valid = float(np.sum(mask))
            fmask = np.where(mask, mask.size / valid if valid else 0.0, 0.0)
        else:
            fmask = mask.astype(np.float64)
        if sw is not None:
            fmask, sw = _squeeze_or_expand(fmask, sw)
            sw = sw * fmask
        else:
            sw = fmask
    if sw is None:
        return None
    p, sw = _squeeze_or_expand(per, sw)
    if p.shape != per.shape:  # Keras squeezed a trailing 1 of the per-sample values
        sw = sw.reshape(sw.shape + (1,))
    try:
        np.broadcast_shapes(sw.shape, per.shape)
    except ValueError:
        # a weight per sample for per-timestep values: broadcast over the trailing axes
        if sw.ndim < per.ndim and per.shape[:sw.ndim] == sw.shape:
            sw = sw.reshape(sw.shape + (1,) * (per.ndim - sw.ndim))
        else:
            raise ValueError(f"{fn}: sample_weight of shape {np.shape(sample_weight)} does not match the "
                             f"per-sample losses of shape {per.shape}.") from None
    return sw


def _reduce(per, sw, reduction):
    """(value, c) with value = Keras's reduction and c = d value / d per (per's shape)."""
    values = per if sw is None else per * sw
    if reduction in (None, "none") or values.shape in ((), (0,)):
        c = np.ones(values.shape) if sw is None else np.broadcast_to(sw, values.shape)
        return values, c
    total = float(np.sum(values))
    if reduction == "sum":
        c = np.ones(values.shape) if sw is None else np.broadcast_to(sw, values.shape)
        return total, c
    if reduction == "mean_with_sample_weight" and sw is not None:
        div = float(np.sum(sw))
    else:
        div = float(values.size)
    scale = 1.0 / div if div else 0.0
    c = np.full(values.shape, scale) if sw is None else np.broadcast_to(sw, values.shape) * scale
    return total * scale, c


def _unbroadcast(c, shape):
    """Sum c down to `shape` (weights may broadcast a per-batch scalar loss, e.g. dice)."""
    while c.ndim > len(shape):
        c = c.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and c.shape[i] != 1:
            c = c.sum(axis=i, keepdims=True)
    return c


# --------------------------------------------------------------------------- classes
class Loss:
    """Base class of fastnn losses: `loss(y_true, y_pred, sample_weight=None)` -> float.

    Subclasses define `call(y_true, y_pred)` -> per-sample values; the builtin losses also
    define the exact gradient used by `value_and_grad`.
    """

    fused_kind = None

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.reduction = _standardize_reduction(reduction, type(self).__name__)
        self.dtype = dtype

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred).")

    def _per_sample(self, y_true, y_pred):
        """(per-sample values float64, mask or None)."""
        return np.asarray(self.call(y_true, y_pred), dtype=np.float64), None

    def __call__(self, y_true, y_pred, sample_weight=None):
        per, mask = self._per_sample(y_true, y_pred)
        sw = _weights(per, sample_weight, mask, self.reduction, self.name)
        value, _ = _reduce(per, sw, self.reduction)
        return value if np.ndim(value) == 0 else np.asarray(value, np.float32)

    def _vjp(self, y_true, y_pred, c):
        """d(sum c * per)/d y_pred; the default is a central difference (custom losses)."""
        yp = np.asarray(y_pred, dtype=np.float64)
        flat = yp.reshape(yp.shape[0] if yp.ndim > 1 else 1, -1)
        grad = np.zeros_like(flat)
        # per-sample losses depend on their own row only: perturb one column of every row at once
        for j in range(flat.shape[1]):
            h = 1e-4 * np.maximum(1.0, np.abs(flat[:, j]))
            up, dn = flat.copy(), flat.copy()
            up[:, j] += h
            dn[:, j] -= h
            fu = np.asarray(self.call(y_true, up.reshape(yp.shape)), np.float64)
            fd = np.asarray(self.call(y_true, dn.reshape(yp.shape)), np.float64)
            diff = ((fu - fd) * c).reshape(flat.shape[0], -1).sum(axis=1)
            grad[:, j] = diff / (2 * h)
        return grad.reshape(yp.shape)

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        """(loss, dL/dy_pred): the reduced loss (float) and its float32 gradient of y_pred's shape.

        With reduction "none" the value is the per-sample array and the gradient is that of
        its sum (each sample's own gradient).
        """
        per, mask = self._per_sample(y_true, y_pred)
        sw = _weights(per, sample_weight, mask, self.reduction, self.name)
        value, c = _reduce(per, sw, self.reduction)
        grad = self._vjp(y_true, y_pred, _unbroadcast(np.asarray(c, np.float64), per.shape))
        grad = np.asarray(grad, np.float32).reshape(np.shape(y_pred))
        return (value if np.ndim(value) == 0 else np.asarray(value, np.float32)), grad

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("fn", None)
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _snake(name):
    import re
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class LossFunctionWrapper(Loss):
    """A Loss around a function (y_true, y_pred, **kwargs) -> per-sample values."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        yt, yp = _squeeze_or_expand(np.asarray(y_true), np.asarray(y_pred))
        return self.fn(yt, yp, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


class _Builtin(Loss):
    """A Keras loss with a NumPy formula and its exact vector-Jacobian product."""

    _value = _vjp_fn = None

    def _kwargs(self):
        return {}

    def _arrays(self, y_true, y_pred):
        return _prepare(y_true, y_pred, self.name)

    def _per_sample(self, y_true, y_pred):
        yt, yp = self._arrays(y_true, y_pred)
        return type(self)._value(yt, yp, **self._kwargs()), None

    def call(self, y_true, y_pred):
        return np.asarray(self._per_sample(y_true, y_pred)[0], np.float32)

    def _vjp(self, y_true, y_pred, c):
        yt, yp = self._arrays(y_true, y_pred)
        return type(self)._vjp_fn(yt, yp, c, **self._kwargs())


def _builtin(cls_name, value, vjp, default_name, doc):
    def __init__(self, reduction="sum_over_batch_size", name=default_name, dtype=None):
        _Builtin.__init__(self, name=name, reduction=reduction, dtype=dtype)
    return type(cls_name, (_Builtin,), {"__init__": __init__, "_value": staticmethod(value),
                                        "_vjp_fn": staticmethod(vjp), "__doc__": doc,
                                        "__module__": __name__})


MeanSquaredError = _builtin("MeanSquaredError", _mse, _mse_vjp, "mean_squared_error",
                            "mean((y_true - y_pred)**2) per sample, Keras reduction.")
MeanAbsoluteError = _builtin("MeanAbsoluteError", _mae, _mae_vjp, "mean_absolute_error",
                             "mean(|y_true - y_pred|) per sample, Keras reduction.")
MeanAbsolutePercentageError = _builtin("MeanAbsolutePercentageError", _mape, _mape_vjp,
                                       "mean_absolute_percentage_error",
                                       "100 * mean(|y_true - y_pred| / max(|y_true|, eps)) per sample.")
MeanSquaredLogarithmicError = _builtin("MeanSquaredLogarithmicError", _msle, _msle_vjp,
                                       "mean_squared_logarithmic_error",
                                       "mean((log1p(max(y_pred, eps)) - log1p(max(y_true, eps)))**2).")
Hinge = _builtin("Hinge", _hinge, _hinge_vjp, "hinge", "mean(max(1 - y_true * y_pred, 0)).")
SquaredHinge = _builtin("SquaredHinge", _squared_hinge, _squared_hinge_vjp, "squared_hinge",
                        "mean(max(1 - y_true * y_pred, 0)**2).")
CategoricalHinge = _builtin("CategoricalHinge", _categorical_hinge, _categorical_hinge_vjp,
                            "categorical_hinge", "max(neg - pos + 1, 0) per sample.")
KLDivergence = _builtin("KLDivergence", _kld, _kld_vjp, "kl_divergence",
                        "sum(y_true * log(y_true / y_pred)), both clipped to [eps, 1].")
Poisson = _builtin("Poisson", _poisson, _poisson_vjp, "poisson", "mean(y_pred - y_true * log(y_pred + eps)).")
LogCosh = _builtin("LogCosh", _log_cosh, _log_cosh_vjp, "log_cosh", "mean(log(cosh(y_pred - y_true))).")


class CosineSimilarity(_Builtin):
    """-sum(l2norm(y_true) * l2norm(y_pred), axis) per sample (in [-1, 1], -1 best)."""

    _value, _vjp_fn = staticmethod(_cosine), staticmethod(_cosine_vjp)

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.axis = axis

    def _kwargs(self):
        return {"axis": self.axis}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Huber(_Builtin):
    """mean(0.5 e**2 if |e| <= delta else delta * (|e| - delta / 2)) per sample (delta 1.0)."""

    _value, _vjp_fn = staticmethod(_huber), staticmethod(_huber_vjp)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = float(delta)

    def _kwargs(self):
        return {"delta": self.delta}

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


# --------------------------------------------------------------------------- crossentropies
_loss_kernel_cache: dict = {}


def _loss_kernel():
    """fastnn.kernels.loss when it is built (looked up until found), else None."""
    if "mod" in _loss_kernel_cache:
        return _loss_kernel_cache["mod"]
    try:
        mod = importlib.import_module("fastnn.kernels.loss")
    except ImportError:
        return None
    if not hasattr(mod, "softmax_crossentropy"):
        return None
    _loss_kernel_cache["mod"] = mod
    return mod


def _check_smoothing(s, cls):
    if isinstance(s, bool) or not isinstance(s, (int, float, np.floating)) or not 0.0 <= s <= 1.0:
        raise ValueError(f"{cls}: label_smoothing must be a float in [0, 1]; received {s!r}.")
    return float(s)


def _check_axis(axis, cls):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{cls}: axis must be of type int; received axis={axis!r} of type {type(axis).__name__}.")
    return int(axis)


class _Crossentropy(_Builtin):
    """Shared fused path: the value and gradient w.r.t. the logits of a softmax/sigmoid output."""

    def _init_crossentropy(self, from_logits, label_smoothing, axis):
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)
        self.axis = _check_axis(axis, type(self).__name__)

    def _kwargs(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, **self._kwargs()}

    def value_and_grad_logits(self, y_true, logits, sample_weight=None):
        """(loss, dL/dlogits) for y_pred = softmax(logits) (or sigmoid); float, float32.

        The model calls this when its output layer ends in `fused_kind`; with from_logits=False
        the value is Keras's (clipped) crossentropy of the activated output.
        """
        z = np.ascontiguousarray(logits, dtype=np.float32)
        kernel = _loss_kernel()
        if kernel is not None and self._fusable(z):
            return self._fused(kernel, y_true, z, sample_weight)
        # NumPy path: through the activation by the chain rule
        p = self._activate(z.astype(np.float64))
        if self.from_logits:
            value, g = self.value_and_grad(y_true, z, sample_weight)
            return value, g
        value, gp = self.value_and_grad(y_true, p, sample_weight)
        return value, self._activation_vjp(p, gp.astype(np.float64)).astype(np.float32)


class CategoricalCrossentropy(_Crossentropy):
    """-sum(y * log p) over the class axis; p clipped to [1e-7, 1 - 1e-7] unless from_logits."""

    fused_kind = "softmax"
    _value, _vjp_fn = staticmethod(_cce), staticmethod(_cce_vjp)

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._init_crossentropy(from_logits, label_smoothing, axis)

    def _arrays(self, y_true, y_pred):
        yt, yp = _prepare(y_true, y_pred)
        if yt.shape != yp.shape:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same shape (one-hot labels; "
                             f"use SparseCategoricalCrossentropy for integer labels); received "
                             f"y_true.shape={np.shape(y_true)}, y_pred.shape={np.shape(y_pred)}.")
        if yp.ndim < 1:
            raise ValueError(f"{self.name}: y_pred must be at least rank 1; received a scalar.")
        if yp.shape[-1] == 1:
            warnings.warn(f"In loss {self.name}, expected y_pred.shape to be (batch_size, num_classes) "
                          f"with num_classes > 1. Received: y_pred.shape={yp.shape}. Consider using "
                          "'binary_crossentropy' if you only have 2 classes.", SyntaxWarning, stacklevel=3)
        return yt, yp

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self._kwargs()}

    def _activate(self, z):
        e = np.exp(z - np.max(z, axis=self.axis, keepdims=True))
        return e / np.sum(e, axis=self.axis, keepdims=True)

    def _activation_vjp(self, p, gp):
        return p * (gp - np.sum(gp * p, axis=self.axis, keepdims=True))

    def _fusable(self, z):
        return z.ndim >= 1 and self.axis in (-1, z.ndim - 1)

    def _labels_for_kernel(self, y_true, z):
        """(labels as the kernel takes them, valid-mask or None)."""
        yt = np.asarray(y_true, np.float32)
        yt, _ = _squeeze_or_expand(yt, z)
        return np.ascontiguousarray(np.broadcast_to(yt, z.shape).reshape(-1, z.shape[-1]), np.float32), None

    _sparse = False

    def _fused(self, kernel, y_true, z, sample_weight):
        k = z.shape[-1]
        z2 = z.reshape(-1, k)
        y2, mask = self._labels_for_kernel(y_true, z)
        smoothing = getattr(self, "label_smoothing", 0.0)
        per, probs = kernel.softmax_crossentropy(z2, y2, sparse=self._sparse, from_logits=self.from_logits,
                                                 label_smoothing=smoothing)
        per = np.asarray(per, np.float64).reshape(z.shape[:-1])
        if mask is not None:  # ignore_class: zero loss there, Keras's mask in the reduction
            mask = mask.reshape(z.shape[:-1])
            per = np.where(mask, per, 0.0)
        sw = _weights(per, sample_weight, mask, self.reduction, self.name)
        value, c = _reduce(per, sw, self.reduction)
        c = np.broadcast_to(c, per.shape)
        if mask is not None:
            c = c * mask
        scale = np.ascontiguousarray(c.reshape(-1), np.float32)
        dz = kernel.softmax_crossentropy_backward(probs, y2, sparse=self._sparse, from_logits=self.from_logits,
                                                  label_smoothing=smoothing, scale=scale)
        value = value if np.ndim(value) == 0 else np.asarray(value, np.float32)
        return value, np.asarray(dz, np.float32).reshape(z.shape)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical crossentropy with integer labels (y_pred's shape without the class axis)."""

    _value, _vjp_fn = staticmethod(_scce), staticmethod(_scce_vjp)
    _sparse = True

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy", dtype=None):
        _Builtin.__init__(self, name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class
        self.axis = _check_axis(axis, type(self).__name__)

    def _kwargs(self):
        return {"from_logits": self.from_logits, "axis": self.axis, "ignore_class": self.ignore_class}

    def _arrays(self, y_true, y_pred):
        yp = np.asarray(y_pred, np.float64)
        if yp.ndim < 1:
            raise ValueError(f"{self.name}: y_pred must be at least rank 1; received a scalar.")
        return np.asarray(y_true), yp

    def _per_sample(self, y_true, y_pred):
        yt, yp = self._arrays(y_true, y_pred)
        per = _scce(yt, yp, **self._kwargs())
        mask = None
        if self.ignore_class is not None:  # Keras attaches the valid mask to the losses
            mask = _sparse_labels(yt, yp, self.axis) != self.ignore_class
        return per, mask

    def _vjp(self, y_true, y_pred, c):
        yt, yp = self._arrays(y_true, y_pred)
        return _scce_vjp(yt, yp, c, **self._kwargs())

    def _labels_for_kernel(self, y_true, z):
        labels = _sparse_labels(np.asarray(y_true), z, -1).reshape(-1)
        mask = None
        if self.ignore_class is not None:
            mask = labels != self.ignore_class
            labels = np.where(mask, labels, 0)
        _one_hot(labels, z.shape[-1], -1)  # range check with our message
        return np.ascontiguousarray(labels, np.int64), mask


class BinaryCrossentropy(_Crossentropy):
    """mean(-(y log p + (1 - y) log(1 - p))) over `axis`; p clipped to [1e-7, 1 - 1e-7]."""

    fused_kind = "sigmoid"
    _value, _vjp_fn = staticmethod(_bce), staticmethod(_bce_vjp)

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._init_crossentropy(from_logits, label_smoothing, axis)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self._kwargs()}

    def _arrays(self, y_true, y_pred):
        yt, yp = _prepare(y_true, y_pred)
        if yt.shape != yp.shape:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same shape; received "
                             f"y_true.shape={np.shape(y_true)}, y_pred.shape={np.shape(y_pred)}.")
        return yt, yp

    def _activate(self, z):
        return 0.5 * (1.0 + np.tanh(0.5 * z))

    def _activation_vjp(self, p, gp):
        return gp * p * (1.0 - p)

    def _fusable(self, z):
        return z.ndim >= 1 and self.axis in (-1, z.ndim - 1)

    def _fused(self, kernel, y_true, z, sample_weight):
        yt, zz = _squeeze_or_expand(np.asarray(y_true, np.float32), z)
        k = zz.shape[-1] if zz.ndim else 1
        z2 = np.ascontiguousarray(zz.reshape(-1, k))
        y2 = np.ascontiguousarray(np.broadcast_to(yt, zz.shape).reshape(-1, k), np.float32)
        per, probs = kernel.sigmoid_binary_crossentropy(z2, y2, from_logits=self.from_logits,
                                                        label_smoothing=self.label_smoothing)
        per = np.asarray(per, np.float64).reshape(zz.shape[:-1])
        sw = _weights(per, sample_weight, None, self.reduction, self.name)
        value, c = _reduce(per, sw, self.reduction)
        scale = np.ascontiguousarray(np.broadcast_to(c, per.shape).reshape(-1), np.float32)
        dz = kernel.sigmoid_binary_crossentropy_backward(probs, y2, from_logits=self.from_logits,
                                                         label_smoothing=self.label_smoothing, scale=scale)
        value = value if np.ndim(value) == 0 else np.asarray(value, np.float32)
        return value, np.asarray(dz, np.float32).reshape(z.shape)


# --------------------------------------------------------------------------- focal, dice, tversky
def _sigmoid64(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _bfce_parts(yt, yp, apply_class_balancing, alpha, gamma, from_logits, label_smoothing):
    y = _smooth_binary(yt, label_smoothing)
    p = _sigmoid64(yp) if from_logits else yp
    o = np.clip(p, CLIP_LO, CLIP_HI)
    bce = -(y * np.log(o) + (1.0 - y) * np.log(1.0 - o))
    pt = y * p + (1.0 - y) * (1.0 - p)     # Keras uses the unclipped p here
    focal = (1.0 - pt) ** gamma
    weight = y * alpha + (1.0 - y) * (1.0 - alpha) if apply_class_balancing else 1.0
    return y, p, o, bce, pt, focal, weight


def _bfce(yt, yp, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
          axis=-1):
    _, _, _, bce, _, focal, weight = _bfce_parts(yt, yp, apply_class_balancing, alpha, gamma, from_logits,
                                                 label_smoothing)
    return np.mean(weight * focal * bce, axis=axis)


def _bfce_vjp(yt, yp, c, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
              label_smoothing=0.0, axis=-1):
    y, p, o, bce, pt, focal, weight = _bfce_parts(yt, yp, apply_class_balancing, alpha, gamma, from_logits,
                                                  label_smoothing)
    dbce = (-y / o + (1.0 - y) / (1.0 - o)) * _clip_mask(p, CLIP_LO, CLIP_HI)
    dfocal = -gamma * (1.0 - pt) ** (gamma - 1.0) * (2.0 * y - 1.0) if gamma else 0.0
    dp = weight * (dfocal * bce + focal * dbce)
    if from_logits:
        dp = dp * p * (1.0 - p)
    return np.expand_dims(c, axis) * dp / yp.shape[axis]


def _cfce_parts(yt, yp, alpha, gamma, from_logits, label_smoothing, axis):
    y = _smooth_categorical(yt, label_smoothing)
    p = np.exp(_log_softmax(yp, axis)) if from_logits else yp
    s = np.sum(p, axis=axis, keepdims=True)
    out = p / s
    o = np.clip(out, CLIP_LO, CLIP_HI)
    return y, p, s, out, o


def _cfce(yt, yp, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    y, _, _, _, o = _cfce_parts(yt, yp, alpha, gamma, from_logits, label_smoothing, axis)
    return np.sum(alpha * (1.0 - o) ** gamma * (-y * np.log(o)), axis=axis)


def _cfce_vjp(yt, yp, c, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    y, p, s, out, o = _cfce_parts(yt, yp, alpha, gamma, from_logits, label_smoothing, axis)
    cce = -y * np.log(o)
    dmod = -gamma * (1.0 - o) ** (gamma - 1.0) if gamma else 0.0
    g = alpha * (dmod * cce + (1.0 - o) ** gamma * (-y / o)) * _clip_mask(out, CLIP_LO, CLIP_HI)
    c = np.expand_dims(c, axis)
    gp = (g - np.sum(g * out, axis=axis, keepdims=True)) / s      # through out = p / sum(p)
    if from_logits:
        gp = p * (gp - np.sum(gp * p, axis=axis, keepdims=True))  # through the softmax
    return c * gp


def _expand(c, axis, ndim):
    if axis is None:
        return c
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return np.expand_dims(c, tuple(a % ndim for a in axes))


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _dice(yt, yp, axis=None):
    axis = _axis(axis)
    inter = np.sum(yt * yp, axis=axis)
    return 1.0 - 2.0 * inter / (np.sum(yt, axis=axis) + np.sum(yp, axis=axis) + EPSILON)


def _dice_vjp(yt, yp, c, axis=None):
    axis = _axis(axis)
    inter = _expand(np.sum(yt * yp, axis=axis), axis, yp.ndim)
    d = _expand(np.sum(yt, axis=axis) + np.sum(yp, axis=axis) + EPSILON, axis, yp.ndim)
    return -_expand(c, axis, yp.ndim) * (2.0 * yt * d - 2.0 * inter) / (d * d)


def _tversky(yt, yp, alpha=0.5, beta=0.5, axis=None):
    axis = _axis(axis)
    inter = np.sum(yt * yp, axis=axis)
    fp = np.sum((1.0 - yp) * yt, axis=axis)
    fn = np.sum(yp * (1.0 - yt), axis=axis)
    return 1.0 - inter / (inter + fp * alpha + fn * beta + EPSILON)


def _tversky_vjp(yt, yp, c, alpha=0.5, beta=0.5, axis=None):
    axis = _axis(axis)
    inter = np.sum(yt * yp, axis=axis)
    d = inter + np.sum((1.0 - yp) * yt, axis=axis) * alpha + np.sum(yp * (1.0 - yt), axis=axis) * beta + EPSILON
    inter, d = _expand(inter, axis, yp.ndim), _expand(d, axis, yp.ndim)
    dd = yt - alpha * yt + beta * (1.0 - yt)
    return -_expand(c, axis, yp.ndim) * (yt * d - inter * dd) / (d * d)


binary_focal_crossentropy = _keras_function(_bfce, "binary_focal_crossentropy",
                                            "mean((1 - p_t)**gamma * bce, axis) (class-balanced with alpha).")
categorical_focal_crossentropy = _keras_function(_cfce, "categorical_focal_crossentropy",
                                                 "sum(alpha * (1 - p)**gamma * -y log p, axis), p clipped.")
dice = _keras_function(_dice, "dice", "1 - 2 sum(y p) / (sum(y) + sum(p) + eps) over axis (all by default).")
tversky = _keras_function(_tversky, "tversky", "1 - TP / (TP + alpha FP + beta FN + eps) over axis.")


class BinaryFocalCrossentropy(_Crossentropy):
    """Focal binary crossentropy: bce weighted by (1 - p_t)**gamma (alpha with class balancing)."""

    _value, _vjp_fn = staticmethod(_bfce), staticmethod(_bfce_vjp)

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name="binary_focal_crossentropy", dtype=None):
        _Builtin.__init__(self, name=name, reduction=reduction, dtype=dtype)
        self.apply_class_balancing, self.alpha, self.gamma = bool(apply_class_balancing), alpha, gamma
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)
        self.axis = _check_axis(axis, type(self).__name__)

    def _kwargs(self):
        return {"apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha, "gamma": self.gamma,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self._kwargs()}

    _arrays = BinaryCrossentropy._arrays
    _activate = BinaryCrossentropy._activate
    _activation_vjp = BinaryCrossentropy._activation_vjp

    def _fusable(self, z):
        return False  # no fused focal kernel: the chain rule in NumPy

    def value_and_grad_logits(self, y_true, logits, sample_weight=None):
        """(loss, dL/dlogits) for y_pred = sigmoid(logits) (NumPy chain rule)."""
        return _Crossentropy.value_and_grad_logits(self, y_true, logits, sample_weight)


class CategoricalFocalCrossentropy(_Crossentropy):
    """Focal categorical crossentropy: sum(alpha * (1 - p)**gamma * -y log p) over the class axis."""

    _value, _vjp_fn = staticmethod(_cfce), staticmethod(_cfce_vjp)

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_crossentropy", dtype=None):
        _Builtin.__init__(self, name=name, reduction=reduction, dtype=dtype)
        self.alpha, self.gamma = alpha, gamma
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)
        self.axis = _check_axis(axis, type(self).__name__)

    def _kwargs(self):
        return {"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self._kwargs()}

    _arrays = CategoricalCrossentropy._arrays
    _activate = CategoricalCrossentropy._activate
    _activation_vjp = CategoricalCrossentropy._activation_vjp

    def _fusable(self, z):
        return False


class Dice(_Builtin):
    """1 - Dice coefficient over `axis` (None: the whole batch, one value)."""

    _value, _vjp_fn = staticmethod(_dice), staticmethod(_dice_vjp)

    def __init__(self, reduction="sum_over_batch_size", name="dice", axis=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.axis = axis

    def _kwargs(self):
        return {"axis": self.axis}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Tversky(_Builtin):
    """1 - Tversky index (alpha weighs false positives, beta false negatives) over `axis`."""

    _value, _vjp_fn = staticmethod(_tversky), staticmethod(_tversky_vjp)

    def __init__(self, alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name="tversky", axis=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha, self.beta, self.axis = alpha, beta, axis

    def _kwargs(self):
        return {"alpha": self.alpha, "beta": self.beta, "axis": self.axis}

    def get_config(self):
        return {**super().get_config(), **self._kwargs()}


# --------------------------------------------------------------------------- lookup
_CLASSES = [Loss, LossFunctionWrapper, MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
            MeanSquaredLogarithmicError, Hinge, SquaredHinge, CategoricalHinge, BinaryCrossentropy,
            CategoricalCrossentropy, SparseCategoricalCrossentropy, KLDivergence, Poisson,
            CosineSimilarity, Huber, LogCosh, BinaryFocalCrossentropy, CategoricalFocalCrossentropy, Dice,
            Tversky]
_FUNCTION_CLASS = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError, "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError, "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "kl_divergence": KLDivergence, "kld": KLDivergence, "KLD": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson, "cosine_similarity": CosineSimilarity,
    "huber": Huber, "huber_loss": Huber, "log_cosh": LogCosh, "logcosh": LogCosh,
    "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy, "dice": Dice, "tversky": Tversky,
}
_OBJECTS = {**{c.__name__: c for c in _CLASSES}, **_FUNCTION_CLASS}
_FUNCTIONS = {mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
              mean_absolute_percentage_error: MeanAbsolutePercentageError,
              mean_squared_logarithmic_error: MeanSquaredLogarithmicError, hinge: Hinge,
              squared_hinge: SquaredHinge, categorical_hinge: CategoricalHinge,
              binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
              sparse_categorical_crossentropy: SparseCategoricalCrossentropy, kl_divergence: KLDivergence,
              poisson: Poisson, cosine_similarity: CosineSimilarity, huber: Huber, log_cosh: LogCosh,
              binary_focal_crossentropy: BinaryFocalCrossentropy,
              categorical_focal_crossentropy: CategoricalFocalCrossentropy, dice: Dice, tversky: Tversky}


def serialize(loss) -> dict | str:
    """Keras-style dict for a Loss instance; the name for one of this module's functions."""
    if loss in _FUNCTIONS:
        return loss.__name__
    return serialize_object(loss, "fastnn.losses")


def deserialize(config, custom_objects=None) -> Loss:
    """A Loss from a name or a dict from serialize()/get_config()."""
    return deserialize_object("loss", config, _OBJECTS, custom_objects)


def get(identifier) -> Loss | None:
    """Resolve a loss: a name ("mse", "categorical_crossentropy"), dict, Loss, class or function.

    Always returns a Loss object (function names give the class with default arguments, the
    same numbers as Keras's function); a user function (y_true, y_pred) -> per-sample values
    is wrapped in a LossFunctionWrapper. None stays None.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if inspect.isclass(identifier) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier]()
        name = getattr(identifier, "__name__", None)
        if getattr(identifier, "__module__", "").startswith("keras") and name in _OBJECTS:
            return deserialize(name)
        return LossFunctionWrapper(identifier)
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}. Pass a name such as "
                     "'mse', a dict from serialize(), a Loss or a function (y_true, y_pred).")

