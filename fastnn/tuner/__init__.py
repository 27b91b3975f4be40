"""fastnn.tuner: KerasTuner's API on Optuna, so a KerasTuner script runs with its import changed.

    import fastnn.tuner as keras_tuner          # was: import keras_tuner

    def build_model(hp):
        model = keras.Sequential([keras.Input((64,)),
                                  keras.layers.Dense(hp.Int("units", 32, 256, step=32), activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.BayesianOptimization(build_model, objective="val_accuracy", max_trials=20,
                                             directory="searches", project_name="digits")
    tuner.search(x, y, epochs=10, validation_split=0.2)
    best = tuner.get_best_models(1)[0]

Optuna samples, prunes and stores the search (an SQLite file under directory/project_name
unless `storage=` names another database); it is the `tune` extra: pip install "fastnn[tune]".
Importing this package does not import Optuna; creating a tuner does. See docs/tuner.md.
"""
from fastnn.tuner.hypermodel import HyperModel
from fastnn.tuner.hyperparameters import Boolean, Choice, Fixed, Float, HyperParameter, HyperParameters, Int
from fastnn.tuner.objective import Objective
from fastnn.tuner.oracle import MetricsTracker, Oracle, Trial, TrialStatus
from fastnn.tuner.tuner import FailedTrialError, FatalError, Tuner
from fastnn.tuner.tuners import (BayesianOptimization, BayesianOptimizationOracle, GridSearch, GridSearchOracle,
                                 Hyperband, HyperbandOracle, RandomSearch, RandomSearchOracle)

__all__ = ["HyperModel", "HyperParameter", "HyperParameters", "Int", "Float", "Choice", "Boolean", "Fixed",
           "Objective", "Oracle", "Trial", "TrialStatus", "MetricsTracker", "Tuner", "FatalError",
           "FailedTrialError", "RandomSearch", "GridSearch", "BayesianOptimization", "Hyperband",
           "RandomSearchOracle", "GridSearchOracle", "BayesianOptimizationOracle", "HyperbandOracle"]
