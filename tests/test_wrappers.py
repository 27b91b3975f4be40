"""fastnn.wrappers under scikit-learn's estimator checks, and in scikit-learn's model selection tools."""
import numpy as np
import pytest

from oracles import require

sklearn = require("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn.wrappers import SKLearnClassifier, SKLearnRegressor, SKLearnTransformer  # noqa: E402


def dynamic_model(X, y, loss, out_activation_function="softmax", layers=(10,), optimizer="rmsprop"):
    """Keras's test model: an MLP sized from X and y (one output per one-hot column)."""
    inp = fastnn.layers.Input(shape=(X.shape[1],))
    hidden = inp
    for size in layers:
        hidden = fastnn.layers.Dense(size, activation="relu")(hidden)
    n_outputs = y.shape[1] if len(y.shape) > 1 else 1
    out = fastnn.layers.Dense(n_outputs, activation=out_activation_function)(hidden)
    model = fastnn.models.Model(inp, out)
    model.compile(loss=loss, optimizer=optimizer)
    return model


# The checks Keras's own wrapper marks as expected failures (keras/src/wrappers/sklearn_test.py),
# with Keras's reasons; docs/tuner.md lists them. The ones marked "not an issue in
# sklearn>=1.6" pass here.
EXPECTED_FAILED_CHECKS = {
    "SKLearnClassifier": {
        # passes most runs here, fails on some draws of the random initial weights
        "check_classifiers_one_label_sample_weights": "0 sample weight is not ignored",
        "check_classifiers_classes": "with small test cases the estimator returns not all classes sometimes",
        "check_classifier_data_not_an_array": "This test assumes reproducibility in fit.",
        "check_supervised_y_2d": "This test assumes reproducibility in fit.",
        "check_fit_idempotent": "This test assumes reproducibility in fit.",
        "check_classifiers_train": "decision_function can return both probabilities and logits",
    },
    "SKLearnRegressor": {},
    "SKLearnTransformer": {},
}


@parametrize_with_checks(
    [SKLearnClassifier(model=dynamic_model, model_kwargs={"loss": "categorical_crossentropy", "layers": [20, 20, 20]},
                       fit_kwargs={"epochs": 5}),
     # Keras's configurations, softmax output included: for one output unit it is constant,
     # which is what lets Keras's regressor and transformer pass the checks that refit and
     # compare (a model whose initialisation is random is not reproducible; see docs/tuner.md)
     SKLearnRegressor(model=dynamic_model, model_kwargs={"loss": "mse"}),
     SKLearnTransformer(model=dynamic_model, model_kwargs={"loss": "mse"})],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target


def classifier(**kw):
    return SKLearnClassifier(dynamic_model, model_kwargs={"loss": "categorical_crossentropy", "layers": [32],
                                                          "optimizer": "adam", **kw},
                             fit_kwargs={"epochs": 30, "batch_size": 32})


def test_string_labels_predict_proba_and_score(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    labels = names[y]
    fastnn.utils.set_random_seed(0)
    clf = classifier().fit(X[:1200], labels[:1200])
    assert sorted(clf.classes_) == sorted(names) and list(clf.classes_) == sorted(clf.classes_)
    pred = clf.predict(X[1200:])
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    proba = clf.predict_proba(X[1200:])
    assert proba.shape == (len(X) - 1200, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    assert clf.score(X[1200:], labels[1200:]) >= 0.9
    assert clf.epoch_ == 30 and len(clf.history_["loss"]) == 30


def test_clone_pipeline_cross_val_score(digits):
    X, y = digits
    fastnn.utils.set_random_seed(1)
    pipe = make_pipeline(StandardScaler(), classifier())
    scores = cross_val_score(pipe, X[:900], y[:900], cv=3)
    # measured over seeds 0-3: folds 0.82-0.96, means 0.87-0.90
    assert scores.shape == (3,) and scores.mean() >= 0.84 and scores.min() >= 0.75, scores
    est = classifier(layers=[7])
    twin = clone(est)
    assert twin is not est and twin.get_params()["model_kwargs"] == est.get_params()["model_kwargs"]
    assert not hasattr(twin, "model_")


def test_grid_and_randomized_search(digits):
    X, y = digits
    fastnn.utils.set_random_seed(2)
    grid = GridSearchCV(classifier(), {"model_kwargs": [{"loss": "categorical_crossentropy", "layers": [4]},
                                                        {"loss": "categorical_crossentropy", "layers": [64]}]},
                        cv=2).fit(X[:600], y[:600])
    assert grid.best_params_["model_kwargs"]["layers"] == [64]   # 4 hidden units cannot learn 10 digits
    rand = RandomizedSearchCV(classifier(), {"fit_kwargs": [{"epochs": 1}, {"epochs": 3}]}, n_iter=2, cv=2,
                              random_state=0).fit(X[:400], y[:400])
    assert set(map(str, rand.cv_results_["param_fit_kwargs"])) == {"{'epochs': 1}", "{'epochs': 3}"}


def test_model_instance_is_cloned_unless_warm_start(digits):
    X, y = digits
    model = fastnn.Sequential([fastnn.Input((64,)), fastnn.layers.Dense(10, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    w0 = [w.copy() for w in model.get_weights()]
    est = SKLearnClassifier(model, fit_kwargs={"epochs": 2}).fit(X[:300], y[:300])
    assert est.model_ is not model
    for a, b in zip(model.get_weights(), w0):
        np.testing.assert_array_equal(a, b)   # the given model is not trained
    warm = SKLearnClassifier(model, warm_start=True, fit_kwargs={"epochs": 1})
    warm.fit(X[:300], y[:300])
    assert warm.model_ is model
    first = [w.copy() for w in model.get_weights()]
    warm.fit(X[:300], y[:300])
    assert warm.model_ is model and any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), first))


def test_regressor_and_transformer(digits):
    X, y = digits
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(400, 5)).astype(np.float32)
    yr = Xr @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1
    fastnn.utils.set_random_seed(3)
    reg = SKLearnRegressor(dynamic_model, model_kwargs={"loss": "mse", "out_activation_function": "linear",
                                                        "layers": [32], "optimizer": "adam"},
                           fit_kwargs={"epochs": 60, "batch_size": 32}).fit(Xr, yr)
    assert reg.predict(Xr).shape == (400,) and reg.score(Xr, yr) > 0.9
    emb = SKLearnTransformer(dynamic_model, model_kwargs={"loss": "mse", "out_activation_function": "linear",
                                                          "layers": [8]},
                             fit_kwargs={"epochs": 1}).fit(X[:200], X[:200, 0])
    assert emb.transform(X[:10]).shape == (10, 1)
    pipe = make_pipeline(emb, SKLearnRegressor(dynamic_model, model_kwargs={"loss": "mse",
                                                                            "out_activation_function": "linear"}))
    assert pipe.fit(X[:200], y[:200].astype(float)).predict(X[:5]).shape == (5,)


def test_errors_name_what_to_fix(digits):
    X, y = digits
    uncompiled = fastnn.Sequential([fastnn.Input((64,)), fastnn.layers.Dense(10, activation="softmax")])
    with pytest.raises(RuntimeError, match="needs to be compiled"):
        SKLearnClassifier(uncompiled).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="Only binary and multiclass"):
        classifier().fit(X[:50], X[:50, 20] + 0.5)   # continuous targets
    with pytest.raises(TypeError, match="fastnn Model or a callable"):
        SKLearnClassifier(model=lambda X, y: "not a model").fit(X[:50], y[:50])
