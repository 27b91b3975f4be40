"""Keras 3's scikit-learn wrappers: `SKLearnClassifier`, `SKLearnRegressor`, `SKLearnTransformer`.

A fastnn model becomes a scikit-learn estimator, so it works with `clone`, `Pipeline`,
`cross_val_score`, `GridSearchCV` / `RandomizedSearchCV`:

    from fastnn.wrappers import SKLearnClassifier

    def make_model(X, y, hidden=32):
        model = fastnn.Sequential([fastnn.Input((X.shape[1],)),
                                   fastnn.layers.Dense(hidden, activation="relu"),
                                   fastnn.layers.Dense(y.shape[1], activation="softmax")])
        model.compile("adam", "categorical_crossentropy")
        return model

    clf = SKLearnClassifier(make_model, model_kwargs={"hidden": 64}, fit_kwargs={"epochs": 20, "verbose": 0})
    cross_val_score(clf, X, labels)                          # labels may be strings

`model` is a compiled Model (cloned, with fresh weights, before each fit unless
`warm_start=True`) or a callable `model(X=..., y=..., **model_kwargs)` returning one. The
classifier one-hot encodes the labels (so `y` reaching the model has one column per class)
and maps outputs back to `classes_`; `decision_function` gives the raw outputs (as Keras's;
for two classes the second column, as scikit-learn expects) and `predict_proba` the output rows
normalised to probabilities.

Needs scikit-learn (pip install "fastnn[examples]").
"""
from __future__ import annotations

import copy

import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
except ImportError:  # the classes stay importable; constructing one says what to install
    sklearn = None

    class BaseEstimator:
        pass

    class ClassifierMixin:
        pass

    class RegressorMixin:
        pass

    class TransformerMixin:
        pass

__all__ = ["SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"]


def _require_sklearn(name):
    if sklearn is None:
        raise ImportError(f"{name} needs scikit-learn: pip install 'fastnn[examples]' (or pip install scikit-learn).")


def _validate_data(estimator, *args, **kwargs):
    try:  # scikit-learn >= 1.6
        from sklearn.utils.validation import validate_data
    except ImportError:
        return estimator._validate_data(*args, **kwargs)
    return validate_data(estimator, *args, **kwargs)


def _type_of_target(y):
    from sklearn.utils.multiclass import type_of_target
    kind = type_of_target(y)
    if kind == "unknown":
        raise ValueError(f"Unknown label type: {y!r}")
    return kind


def _check_model(model):
    from fastnn.models import Model
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastnn Model or a callable returning one; received {model!r}.")
    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None \
            or getattr(model, "optimizer", None) is None:
        raise RuntimeError("Given model needs to be compiled, and have a loss and an optimizer: call "
                           "model.compile(optimizer, loss) before wrapping it.")


class TargetReshaper(TransformerMixin, BaseEstimator):
    """Makes 1-D targets 2-D (for OneHotEncoder) and back."""

    def fit(self, y):
        self.ndim_ = y.ndim
        return self

    def transform(self, y):
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def inverse_transform(self, y):
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        return np.squeeze(y, axis=1) if self.ndim_ == 1 and y.ndim == 2 else y


class SKLBase(BaseEstimator):
    """Base of the wrappers: model, warm_start, model_kwargs, fit_kwargs (Keras's arguments).

    Attributes after fit: `model_` (the trained model) and `history_` (the History's dict).
    """

    def __init__(self, model, warm_start=False, model_kwargs=None, fit_kwargs=None):
        _require_sklearn(type(self).__name__)
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    def _more_tags(self):  # scikit-learn < 1.6
        return {"non_deterministic": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags

    def __sklearn_clone__(self):
        """A new, unfitted estimator with the same parameters (a Model is deep-copied)."""
        model = self.model if callable(self.model) and not _is_model(self.model) else copy.deepcopy(self.model)
        return type(self)(model=model, warm_start=self.warm_start, model_kwargs=self.model_kwargs,
                          fit_kwargs=self.fit_kwargs)

    # Models travel through pickle (joblib, n_jobs, the estimator checks) as their .keras bytes:
    # architecture, weights, compile settings and optimizer state, nothing of the layers' cached
    # work buffers (joblib may hand those back as read-only memory maps).
    def __getstate__(self):
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__)
        for key in ("model", "model_"):
            if _is_model(state.get(key)):
                state[key] = _SavedModel(state[key])
        return state

    def __setstate__(self, state):
        state = {k: v.load() if isinstance(v, _SavedModel) else v for k, v in state.items()}
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:
            self.__dict__.update(state)

    @property
    def epoch_(self):
        """Epochs trained by the last fit."""
        return len(getattr(self, "history_", {}).get("loss", []))

    def _get_model(self, X, y):
        if self.warm_start and hasattr(self, "model_"):
            return self.model_
        if _is_model(self.model):
            if self.warm_start:
                return self.model
            from fastnn.tuner._models import clone_model
            return clone_model(self.model)  # fresh weights, as keras.models.clone_model
        if not callable(self.model):
            raise TypeError(f"model must be a fastnn Model or a callable returning one; received {self.model!r}.")
        return self.model(X=X, y=y, **(self.model_kwargs or {}))

    def fit(self, X, y, **kwargs):
        """Train on (X, y); keyword arguments go to model.fit (over fit_kwargs)."""
        X, y = _validate_data(self, X, y)
        y = self._process_target(y, reset=True)
        model = self._get_model(X, y)
        _check_model(model)
        fit_kwargs = dict(self.fit_kwargs or {})
        fit_kwargs.update(kwargs)
        fit_kwargs.setdefault("verbose", 0)
        history = model.fit(X, y, **fit_kwargs)
        self.history_ = dict(history.history)
        self.model_ = model
        return self

    def predict(self, X):
        """Model outputs mapped back to the targets' form."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        return self._reverse_process_target(self.model_.predict(X, verbose=0))

    def _process_target(self, y, reset=False):
        _type_of_target(y)
        if reset:
            self._target_encoder = TargetReshaper().fit(y)
        return self._target_encoder.transform(y)

    def _reverse_process_target(self, y):
        return self._target_encoder.inverse_transform(y)


class _SavedModel:
    """A model as the bytes of its .keras file (picklable, loads into fresh buffers)."""

    def __init__(self, model):
        import os
        import tempfile
        with tempfile.TemporaryDirectory(prefix="fastnn-") as d:
            path = os.path.join(d, "model.keras")
            if model.built:
                model.save(path)
                with open(path, "rb") as f:
                    self.data, self.json = f.read(), None
            else:  # nothing trained yet: the architecture is enough
                self.data, self.json = None, model.to_json()

    def load(self):
        import os
        import tempfile

        from fastnn.models import load_model, model_from_json
        if self.data is None:
            return model_from_json(self.json)
        with tempfile.TemporaryDirectory(prefix="fastnn-") as d:
            path = os.path.join(d, "model.keras")
            with open(path, "wb") as f:
                f.write(self.data)
            return load_model(path)


def _is_model(obj):
    from fastnn.models import Model
    return isinstance(obj, Model)


class SKLearnClassifier(ClassifierMixin, SKLBase):
    """scikit-learn classifier over a fastnn model; labels are one-hot encoded for the model.

    Attributes after fit: `model_`, `history_`, `classes_` (the sorted labels).
    """

    def _process_target(self, y, reset=False):
        kind = _type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"Only binary and multiclass target types are supported. Target type: {kind}")
        if reset:
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import OneHotEncoder
            self._target_encoder = make_pipeline(TargetReshaper(), OneHotEncoder(sparse_output=False)).fit(y)
            self.classes_ = np.unique(y)
            if len(self.classes_) == 1:
                raise ValueError("Classifier can't train when only one class is present.")
        return self._target_encoder.transform(y)

    def decision_function(self, X):
        """The model's raw outputs, (n_samples, n_classes); for two classes the score of the
        second, (n_samples,), as scikit-learn expects of a binary classifier."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        out = self.model_.predict(X, verbose=0)
        if len(self.classes_) == 2:
            return out[:, -1] if out.ndim == 2 else out
        return out

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes) in the order of `classes_`: the model's
        outputs (softmax or sigmoid) clipped at 0 and normalised to sum to one per row."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        out = np.asarray(self.model_.predict(X, verbose=0), dtype=np.float64)
        if out.ndim == 1 or out.shape[1] == 1:  # one sigmoid unit: P(second class)
            p = np.clip(out.reshape(-1), 0.0, 1.0)
            return np.stack([1.0 - p, p], axis=1)
        out = np.clip(out, 0.0, None)
        total = out.sum(axis=1, keepdims=True)
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / out.shape[1])

    def _more_tags(self):
        return {**super()._more_tags(), "poor_score": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags


class SKLearnRegressor(RegressorMixin, SKLBase):
    """scikit-learn regressor over a fastnn model (1-D targets come back 1-D)."""

    def _more_tags(self):
        return {**super()._more_tags(), "poor_score": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


class SKLearnTransformer(TransformerMixin, SKLBase):
    """scikit-learn transformer: `transform(X)` is the model's output (an embedding, say)."""

    def transform(self, X):
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        return self.model_.predict(X, verbose=0)

    def _more_tags(self):
        return {**super()._more_tags(), "preserves_dtype": []}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags
