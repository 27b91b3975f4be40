"""fastnn.metrics: Keras 3 stateful metrics on NumPy arrays.

    >>> m = fastnn.metrics.get("auc")                    # AUC(num_thresholds=200, curve="ROC")
    >>> m.update_state(y_true, y_pred); m.update_state(y_true2, y_pred2)
    >>> float(m.result()); m.reset_state()

Every metric accumulates over `update_state(y_true, y_pred, sample_weight=None)` calls (an
epoch) in float64 and returns Keras's value from `result()`. The mean metrics of the losses
(MeanSquaredError, BinaryCrossentropy, ...) average the per-sample loss values weighted by
sample_weight (divided by the weight sum, unlike the loss reduction). `resolve(id, y_true,
y_pred, loss)` is what `compile(metrics=[...])` uses: "accuracy"/"acc" and "crossentropy"/"ce"
pick the binary, sparse or categorical version from the shapes, as Keras's compile_utils.
"""
from __future__ import annotations

import inspect
import re

import numpy as np

from fastnn import losses as _losses
from fastnn._naming import deserialize_object, serialize_object

__all__ = [
    "Metric", "Mean", "Sum", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy",
    "TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives", "Precision", "Recall", "AUC",
    "F1Score", "FBetaScore", "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "RootMeanSquaredError", "Hinge", "SquaredHinge", "CategoricalHinge",
    "KLDivergence", "Poisson", "CosineSimilarity", "LogCoshError", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "resolve", "serialize",
    "deserialize", "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
]

EPSILON = 1e-7


def _snake(name):
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _divide_no_nan(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


_squeeze_or_expand = _losses._squeeze_or_expand


# --------------------------------------------------------------------------- base classes
class Metric:
    """Base class: update_state(...) accumulates, result() reads, reset_state() clears."""

    def __init__(self, name=None, dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.dtype = dtype or "float32"

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement update_state.")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement result.")

    def reset_state(self):
        raise NotImplementedError(f"{type(self).__name__} must implement reset_state.")

    def __call__(self, *args, **kwargs):
        """update_state then result (Keras's stateful call)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<fastnn.metrics.{type(self).__name__} name={self.name!r}>"


def _samplewise(values, sample_weight, reduce_fn):
    """Keras's reduce_to_samplewise_values: (per-sample values (N,) or scalar, weights)."""
    values = np.asarray(values, np.float64)
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        values, sw = _squeeze_or_expand(values, sw)
        if values.ndim > sw.ndim:
            values = reduce_fn(values, axis=tuple(range(sw.ndim, values.ndim)))
        sw = np.broadcast_to(sw, values.shape)
        values = values * sw
        if sw.ndim > 1:
            sw = reduce_fn(sw, axis=tuple(range(1, sw.ndim)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sw


class Sum(Metric):
    """The weighted sum of all values seen."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name, dtype)
        self.reset_state()

    def update_state(self, values, sample_weight=None):
        values, _ = _samplewise(values, sample_weight, np.sum)
        self.total += float(np.sum(values))

    def reset_state(self):
        self.total = 0.0

    def result(self):
        return np.float32(self.total)


class Mean(Metric):
    """The weighted mean of all values seen (weights summed per sample)."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name, dtype)
        self.reset_state()

    def update_state(self, values, sample_weight=None):
        values, sw = _samplewise(values, sample_weight, np.mean)
        self.total += float(np.sum(values))
        if sw is not None:
            self.count += float(np.sum(sw))
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def result(self):
        return np.float32(self.total / self.count if self.count else 0.0)


class MeanMetricWrapper(Mean):
    """The mean of fn(y_true, y_pred, **kwargs) over all samples seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name or getattr(fn, "__name__", "mean_metric_wrapper"), dtype)
        self._fn, self._fn_kwargs = fn, kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


def _wrapper(cls_name, fn, default_name, doc, **defaults):
    """A MeanMetricWrapper subclass with Keras's signature (name, dtype, **fn defaults)."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default_name),
              inspect.Parameter("dtype", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    params += [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v) for k, v in defaults.items()]

    def __init__(self, *args, **kwargs):
        bound = inspect.Signature(params).bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = dict(bound.arguments)
        a.pop("self")
        name, dtype = a.pop("name"), a.pop("dtype")
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **a)
    __init__.__signature__ = inspect.Signature(params)
    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": doc, "__module__": __name__,
                                                  "from_config": classmethod(lambda c, cfg: c(**cfg))})


# --------------------------------------------------------------------------- accuracy family
def accuracy(y_true, y_pred):
    """1.0 where y_true == y_pred (float32), after Keras's rank fix."""
    yt, yp = _squeeze_or_expand(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32))
    return (yt == yp).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where y_true == (y_pred > threshold) (strict), per element."""
    yt, yp = _squeeze_or_expand(np.asarray(y_true), np.asarray(y_pred, np.float32))
    return (yt == (yp > threshold).astype(yt.dtype)).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_true) == argmax(y_pred) over the last axis."""
    t = np.argmax(np.asarray(y_true), axis=-1)
    p = np.argmax(np.asarray(y_pred), axis=-1)
    return (t == p).astype(np.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label equals argmax(y_pred) over the last axis."""
    yp = np.asarray(y_pred)
    yt = np.asarray(y_true)
    shape = yt.shape
    if yt.ndim == yp.ndim and yt.shape[-1] == 1:
        yt = yt[..., 0]
    m = (yt.astype(np.float64) == np.argmax(yp, axis=-1)).astype(np.float32)
    m = m.reshape(shape) if yt.shape != shape else m
    if m.ndim > 1 and m.shape[-1] == 1:
        m = m[..., 0]
    return m


def _in_top_k(targets, predictions, k):
    """Keras/torch in_top_k: the target's score is >= the k-th largest score (ties count)."""
    k = min(int(k), predictions.shape[-1])
    kth = -np.sort(-predictions, axis=-1)[:, k - 1]
    t = np.take_along_axis(predictions, targets.astype(np.int64)[:, None], axis=-1)[:, 0]
    return t >= kth


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where argmax(y_true) is among the k largest scores of y_pred."""
    yp = np.asarray(y_pred, np.float64)
    t = np.argmax(np.asarray(y_true), axis=-1)
    shape = t.shape
    return _in_top_k(t.reshape(-1), yp.reshape(-1, yp.shape[-1]), k).astype(np.float32).reshape(shape)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1.0 where the integer label is among the k largest scores (or first k sorted ids)."""
    yp = np.asarray(y_pred)
    yt = np.asarray(y_true)
    shape = yt.shape
    yp2 = yp.reshape(-1, yp.shape[-1])
    if from_sorted_ids:
        m = np.any(yt.reshape(-1)[:, None] == yp2[:, :k], axis=1)
    else:
        m = _in_top_k(yt.reshape(-1), yp2.astype(np.float64), k)
    return m.astype(np.float32).reshape(shape if yt.ndim > 1 else (-1,))


Accuracy = _wrapper("Accuracy", accuracy, "accuracy", "How often predictions equal labels.")
BinaryAccuracy = _wrapper("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                          "How often (y_pred > threshold) equals the binary label.", threshold=0.5)
CategoricalAccuracy = _wrapper("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy",
                               "How often argmax(y_pred) equals argmax of the one-hot label.")
SparseCategoricalAccuracy = _wrapper("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                     "sparse_categorical_accuracy", "How often argmax(y_pred) equals the integer label.")
TopKCategoricalAccuracy = _wrapper("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                   "top_k_categorical_accuracy", "How often the one-hot label is in the top k.")


def _topk_init(cls, fn, default_name, extra):
    def __init__(self, k=5, name=default_name, dtype=None, **kw):
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, k=k, **{**extra, **kw})
    cls.__init__ = __init__
    return cls


_topk_init(TopKCategoricalAccuracy, top_k_categorical_accuracy, "top_k_categorical_accuracy", {})
SparseTopKCategoricalAccuracy = _topk_init(
    _wrapper("SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy, "sparse_top_k_categorical_accuracy",
             "How often the integer label is in the top k."),
    sparse_top_k_categorical_accuracy, "sparse_top_k_categorical_accuracy", {"from_sorted_ids": False})


# --------------------------------------------------------------------------- confusion counts
def _filter_top_k(x, k):
    """Keep the k largest entries of the last axis, the rest -inf (Keras's _filter_top_k)."""
    idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(x.shape, bool)
    np.put_along_axis(keep, idx, True, axis=-1)
    return np.where(keep, x, -np.inf)


def _confusion(y_true, y_pred, thresholds, sample_weight=None, top_k=None, class_id=None, multi_label=False,
               label_weights=None):
    """(tp, fp, tn, fn) per threshold (T,) or (T, labels) with positive iff y_pred > threshold."""
    yp = np.asarray(y_pred, np.float64)
    yt = np.asarray(y_true, np.float64)
    yp, yt = _squeeze_or_expand(yp, yt)
    if yt.shape != yp.shape:
        yt = np.broadcast_to(yt, yp.shape)
    if top_k is not None:
        yp = _filter_top_k(yp, top_k)
    if class_id is not None:
        yt, yp = yt[..., class_id:class_id + 1], yp[..., class_id:class_id + 1]
    w = np.ones(yp.shape)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        _, sw = _squeeze_or_expand(yp, sw)
        if sw.ndim < yp.ndim and sw.shape == yp.shape[:sw.ndim]:
            sw = sw.reshape(sw.shape + (1,) * (yp.ndim - sw.ndim))
        w = w * np.broadcast_to(sw, yp.shape)
    if label_weights is not None and not multi_label:
        w = w * np.asarray(label_weights, np.float64)
    truth = yt.astype(bool)
    thr = np.asarray(thresholds, np.float64)
    if multi_label:  # one set of counts per label (last axis): (T, L) each
        cols = [_counts(yp[..., j].reshape(-1), truth[..., j].reshape(-1), w[..., j].reshape(-1), thr)
                for j in range(yp.shape[-1])]
        return tuple(np.stack([c[i] for c in cols], axis=1) for i in range(4))
    return _counts(yp.reshape(-1), truth.reshape(-1), w.reshape(-1), thr)


def _counts(yp, truth, w, thr):
    """(tp, fp, tn, fn) at every threshold for flat predictions, positive iff yp > threshold.

    Sorts once; every threshold is then a cumulative sum read at its insertion point, so the
    cost is O(N log N + T) with no (T, N) matrix.
    """
    yp = np.where(np.isnan(yp), -np.inf, yp)  # NaN > threshold is False: a negative, as in Keras
    order = np.argsort(yp, kind="stable")
    ys, tw, fw = yp[order], (truth * w)[order], ((~truth) * w)[order]
    ctw = np.concatenate([[0.0], np.cumsum(tw)])
    cfw = np.concatenate([[0.0], np.cumsum(fw)])
    below = np.searchsorted(ys, thr, side="right")           # entries <= threshold: predicted negative
    return ctw[-1] - ctw[below], cfw[-1] - cfw[below], cfw[below], ctw[below]


def _parse_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    return [float(t) for t in (thresholds if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds])]


class _ConfusionCount(Metric):
    """Weighted count of one confusion-matrix cell per threshold (default 0.5)."""

    _cell = None

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        counts = dict(zip(("tp", "fp", "tn", "fn"), _confusion(y_true, y_pred, self.thresholds, sample_weight)))
        self.accumulator += counts[self._cell]

    def reset_state(self):
        self.accumulator = np.zeros(len(self.thresholds))

    def result(self):
        r = self.accumulator.astype(np.float32)
        return r[0] if len(self.thresholds) == 1 else r

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


TruePositives = type("TruePositives", (_ConfusionCount,), {"_cell": "tp", "__module__": __name__,
                                                           "__doc__": "Weighted count of true positives."})
FalsePositives = type("FalsePositives", (_ConfusionCount,), {"_cell": "fp", "__module__": __name__,
                                                             "__doc__": "Weighted count of false positives."})
TrueNegatives = type("TrueNegatives", (_ConfusionCount,), {"_cell": "tn", "__module__": __name__,
                                                           "__doc__": "Weighted count of true negatives."})
FalseNegatives = type("FalseNegatives", (_ConfusionCount,), {"_cell": "fn", "__module__": __name__,
                                                             "__doc__": "Weighted count of false negatives."})


class Precision(Metric):
    """TP / (TP + FP) over the epoch at each threshold (default 0.5, strict >), 0 when undefined."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        # with top_k, everything kept counts as positive (Keras's NEG_INF default threshold)
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else -1e10)
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, tn, fn = _confusion(y_true, y_pred, self.thresholds, sample_weight, self.top_k, self.class_id)
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += fn

    def reset_state(self):
        n = len(self.thresholds)
        self.true_positives, self.false_positives, self.false_negatives = np.zeros(n), np.zeros(n), np.zeros(n)

    def result(self):
        r = _divide_no_nan(self.true_positives, self.true_positives + self.false_positives).astype(np.float32)
        return r[0] if len(self.thresholds) == 1 else r

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Recall(Precision):
    """TP / (TP + FN) over the epoch at each threshold (default 0.5, strict >), 0 when undefined."""

    def result(self):
        r = _divide_no_nan(self.true_positives, self.true_positives + self.false_negatives).astype(np.float32)
        return r[0] if len(self.thresholds) == 1 else r


class AUC(Metric):
    """Area under the ROC or PR curve from confusion counts at num_thresholds thresholds (Keras's)."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        super().__init__(name, dtype)
        curve_u = str(curve).upper()
        if curve_u not in ("ROC", "PR", "PRGAIN"):
            raise ValueError(f"AUC: invalid curve argument value {curve!r}; expected one of 'ROC', 'PR', 'PRGAIN'.")
        method = str(summation_method).lower()
        if method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC: invalid summation_method argument value {summation_method!r}; expected one of "
                             "'interpolation', 'minoring', 'majoring'.")
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or num_thresholds <= 1:
                raise ValueError(f"AUC: argument num_thresholds must be an integer > 1; received {num_thresholds!r}.")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self._init_thresholds = thresholds
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.curve, self.summation_method = curve_u, method
        self.multi_label, self.num_labels = bool(multi_label), num_labels
        if num_labels and not multi_label:
            raise ValueError("AUC: num_labels is needed only when multi_label is True.")
        self.label_weights = None if label_weights is None else np.asarray(label_weights, np.float64)
        self._from_logits = bool(from_logits)
        self.reset_state()

    @property
    def thresholds(self):
        return list(self._thresholds)

    def reset_state(self):
        shape = (self.num_thresholds,) if not self.multi_label else None
        self.true_positives = self.false_positives = self.true_negatives = self.false_negatives = None
        if shape is not None:
            self.true_positives, self.false_positives = np.zeros(shape), np.zeros(shape)
            self.true_negatives, self.false_negatives = np.zeros(shape), np.zeros(shape)

    def update_state(self, y_true, y_pred, sample_weight=None):
        yp = np.asarray(y_pred, np.float64)
        if self._from_logits:
            yp = 0.5 * (1.0 + np.tanh(0.5 * yp))
        if self.multi_label and yp.ndim != 2:
            raise ValueError(f"AUC: y_pred must have rank 2 when multi_label=True; received shape {yp.shape}.")
        tp, fp, tn, fn = _confusion(y_true, yp, self._thresholds, sample_weight, multi_label=self.multi_label,
                                    label_weights=None if self.multi_label else self.label_weights)
        if self.true_positives is None:
            self.true_positives, self.false_positives = np.zeros_like(tp), np.zeros_like(fp)
            self.true_negatives, self.false_negatives = np.zeros_like(tn), np.zeros_like(fn)
        self.true_positives += tp
        self.false_positives += fp
        self.true_negatives += tn
        self.false_negatives += fn

    def _by_label(self, terms):
        if not self.multi_label:
            return float(np.sum(terms))
        by_label = np.sum(terms, axis=0)
        if self.label_weights is None:
            return float(np.mean(by_label))
        return float(_divide_no_nan(np.sum(by_label * self.label_weights), np.sum(self.label_weights)))

    def _interpolate_pr_auc(self):
        # Davis & Goadrich (2006): precision interpolated between thresholds
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        n = self.num_thresholds
        dtp = tp[:n - 1] - tp[1:]
        p = tp + fp
        dp = p[:n - 1] - p[1:]
        slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where((p[:n - 1] > 0) & (p[1:] > 0), _divide_no_nan(p[:n - 1], np.maximum(p[1:], 0)), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            inc = _divide_no_nan(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
        return self._by_label(inc)

    def result(self):
        if self.true_positives is None:
            return np.float32(0.0)
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        n = self.num_thresholds
        if self.curve == "PR" and self.summation_method == "interpolation":
            return np.float32(self._interpolate_pr_auc())
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scale = _divide_no_nan(tp + fn, tn + fp)
            rg = np.maximum(np.where(tp == 0, 0.0, 1.0 - scale * _divide_no_nan(fn, tp)), 0.0)
            pg = np.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
            x, y = rg, pg
        if self.summation_method == "interpolation":
            heights = (y[:n - 1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:n - 1], y[1:])
        else:
            heights = np.maximum(y[:n - 1], y[1:])
        return np.float32(self._by_label((x[:n - 1] - x[1:]) * heights))

    def get_config(self):
        cfg = {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
               "summation_method": self.summation_method, "multi_label": self.multi_label,
               "num_labels": self.num_labels,
               "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
               "from_logits": self._from_logits}
        if self._init_thresholds is not None:
            cfg["thresholds"] = list(self._thresholds[1:-1])
        return cfg


class FBetaScore(Metric):
    """F-beta per class (average None), or micro/macro/weighted averaged; 2-D inputs."""

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name, dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("FBetaScore: invalid average argument value; expected one of None, 'micro', 'macro', "
                             f"'weighted'; received average={average!r}.")
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"FBetaScore: invalid beta argument value; it should be a Python float > 0; "
                             f"received beta={beta!r}.")
        if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
            raise ValueError(f"FBetaScore: invalid threshold argument value; it should be a Python float with "
                             f"0 < threshold <= 1; received threshold={threshold!r}.")
        self.average, self.beta, self.threshold = average, beta, threshold
        self.axis = None if average == "micro" else 0
        self.reset_state()

    def reset_state(self):
        self.true_positives = self.false_positives = self.false_negatives = self.intermediate_weights = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
        if yt.ndim != 2 or yp.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects 2D inputs with shape (batch_size, output_dim); "
                             f"received y_pred.shape={yp.shape} and y_true.shape={yt.shape}.")
        if self.threshold is None:
            pred = (yp >= yp.max(axis=-1, keepdims=True)) & (np.abs(yp) > 1e-9)
        else:
            pred = yp > self.threshold
        pred = pred.astype(np.float64)
        sw = None if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1, 1)

        def wsum(v):
            return np.sum(v if sw is None else v * sw, axis=self.axis)
        cells = [wsum(pred * yt), wsum(pred * (1 - yt)), wsum((1 - pred) * yt), wsum(yt)]
        if self.true_positives is None:
            self.true_positives, self.false_positives, self.false_negatives, self.intermediate_weights = cells
        else:
            self.true_positives = self.true_positives + cells[0]
            self.false_positives = self.false_positives + cells[1]
            self.false_negatives = self.false_negatives + cells[2]
            self.intermediate_weights = self.intermediate_weights + cells[3]

    def result(self):
        if self.true_positives is None:
            return np.float32(0.0)
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        b2 = self.beta ** 2
        f = precision * recall / (b2 * precision + recall + EPSILON) * (1 + b2)
        if self.average == "weighted":
            weights = self.intermediate_weights / (np.sum(self.intermediate_weights) + EPSILON)
            f = np.sum(f * weights)
        elif self.average is not None:
            f = np.mean(f)
        return np.asarray(f, np.float32) if np.ndim(f) else np.float32(f)

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """F1 (beta = 1) per class or averaged."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("beta")
        return cfg


# --------------------------------------------------------------------------- mean metrics of the losses
def _cosine_metric(y_true, y_pred, axis=-1):
    """sum(l2norm(y_true) * l2norm(y_pred), axis): the metric is the positive cosine."""
    return -_losses.cosine_similarity(y_true, y_pred, axis=axis)


MeanSquaredError = _wrapper("MeanSquaredError", _losses.mean_squared_error, "mean_squared_error",
                            "Mean of (y_true - y_pred)**2.")
MeanAbsoluteError = _wrapper("MeanAbsoluteError", _losses.mean_absolute_error, "mean_absolute_error",
                             "Mean of |y_true - y_pred|.")
MeanAbsolutePercentageError = _wrapper("MeanAbsolutePercentageError", _losses.mean_absolute_percentage_error,
                                       "mean_absolute_percentage_error", "Mean absolute percentage error.")
MeanSquaredLogarithmicError = _wrapper("MeanSquaredLogarithmicError", _losses.mean_squared_logarithmic_error,
                                       "mean_squared_logarithmic_error", "Mean squared logarithmic error.")
Hinge = _wrapper("Hinge", _losses.hinge, "hinge", "Mean hinge loss.")
SquaredHinge = _wrapper("SquaredHinge", _losses.squared_hinge, "squared_hinge", "Mean squared hinge loss.")
CategoricalHinge = _wrapper("CategoricalHinge", _losses.categorical_hinge, "categorical_hinge",
                            "Mean categorical hinge loss.")
KLDivergence = _wrapper("KLDivergence", _losses.kl_divergence, "kl_divergence", "Mean KL divergence.")
Poisson = _wrapper("Poisson", _losses.poisson, "poisson", "Mean Poisson loss.")
LogCoshError = _wrapper("LogCoshError", _losses.log_cosh, "logcosh", "Mean log-cosh error.")
CosineSimilarity = _wrapper("CosineSimilarity", _cosine_metric, "cosine_similarity",
                            "Mean cosine similarity (positive: 1 is best).", axis=-1)
BinaryCrossentropy = _wrapper("BinaryCrossentropy", _losses.binary_crossentropy, "binary_crossentropy",
                              "Mean binary crossentropy.", from_logits=False, label_smoothing=0)
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", _losses.categorical_crossentropy,
                                   "categorical_crossentropy", "Mean categorical crossentropy.",
                                   from_logits=False, label_smoothing=0, axis=-1)
SparseCategoricalCrossentropy = _wrapper("SparseCategoricalCrossentropy", _losses.sparse_categorical_crossentropy,
                                         "sparse_categorical_crossentropy", "Mean sparse categorical crossentropy.",
                                         from_logits=False, ignore_class=None, axis=-1)


class RootMeanSquaredError(Mean):
    """sqrt of the weighted mean of (y_pred - y_true)**2."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp = _squeeze_or_expand(np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64))
        super().update_state((yp - yt) ** 2, sample_weight=sample_weight)

    def result(self):
        return np.float32(np.sqrt(super().result()))


# --------------------------------------------------------------------------- lookup
_CLASSES = [Metric, Mean, Sum, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy,
            SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, TruePositives,
            FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall, AUC, F1Score, FBetaScore,
            MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
            RootMeanSquaredError, Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson, CosineSimilarity,
            LogCoshError, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy]
_OBJECTS = {c.__name__: c for c in _CLASSES}
_OBJECTS.update({_snake(c.__name__): c for c in _CLASSES})
_OBJECTS.update({
    # Keras's function names and aliases
    "mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
    "kld": KLDivergence, "KLD": KLDivergence, "kullback_leibler_divergence": KLDivergence,
    "log_cosh": LogCoshError, "logcosh": LogCoshError, "log_cosh_error": LogCoshError,
    "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy, "f_beta_score": FBetaScore, "fbeta_score": FBetaScore,
    "auc": AUC, "a_u_c": AUC, "rmse": RootMeanSquaredError,
})
_OBJECTS.pop("a_u_c", None)


def serialize(metric) -> dict:
    """Keras-style dict {"module", "class_name", "config", "registered_name"}."""
    return serialize_object(metric, "fastnn.metrics")


def deserialize(config, custom_objects=None) -> Metric:
    """A Metric from a name or a dict from serialize()/get_config()."""
    return deserialize_object("metric", config, _OBJECTS, custom_objects)


def get(identifier) -> Metric:
    """Resolve a metric: a name ("auc", "mse", "Precision"), dict, Metric, class or function.

    Always returns a Metric; a plain function (y_true, y_pred) -> values is wrapped in a
    MeanMetricWrapper.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, (str, dict)):
        if isinstance(identifier, str) and identifier in ("accuracy", "acc"):
            return Accuracy(name=identifier)  # the shape-dependent choice happens in resolve()
        return deserialize(identifier)
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        for name, obj in _OBJECTS.items():
            if name == getattr(identifier, "__name__", None) and getattr(identifier, "__module__", "").startswith(
                    ("keras", "fastnn")):
                return obj()
        return MeanMetricWrapper(identifier)
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}. Pass a name such as 'accuracy', "
                     "a dict from serialize(), a Metric or a function (y_true, y_pred).")


def resolve(identifier, y_true, y_pred, loss=None) -> Metric:
    """The Metric `compile(metrics=[identifier])` uses, given a batch's y_true and y_pred.

    "accuracy"/"acc": BinaryAccuracy if y_pred.shape[-1] == 1, SparseCategoricalAccuracy if
    y_true has lower rank (or a last axis of 1 against several classes), else
    CategoricalAccuracy; "crossentropy"/"ce" likewise pick Binary/SparseCategorical/Categorical
    Crossentropy (tf.keras's rule). A string identifier also becomes the metric's name.
    `loss` (the compiled loss) is accepted for symmetry with Keras and not needed.
    """
    if identifier is None:
        raise ValueError("Expected metric, received None.")
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc", "crossentropy", "ce"):
        yt_shape, yp_shape = np.shape(y_true), np.shape(y_pred)
        yt_last = yt_shape[-1] if yt_shape else 1
        yp_last = yp_shape[-1] if yp_shape else 1
        is_binary = yp_last == 1
        is_sparse = len(yt_shape) < len(yp_shape) or (yt_last == 1 and yp_last > 1)
        if identifier.lower() in ("accuracy", "acc"):
            cls = BinaryAccuracy if is_binary else SparseCategoricalAccuracy if is_sparse else CategoricalAccuracy
        else:
            cls = BinaryCrossentropy if is_binary else (SparseCategoricalCrossentropy if is_sparse
                                                        else CategoricalCrossentropy)
        return cls(name=identifier)
    metric = get(identifier)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric
