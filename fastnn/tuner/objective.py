"""What a search optimises: `Objective(name, direction)`, or a metric name whose direction is
inferred as KerasTuner infers it (accuracy-like names are maximised, losses minimised)."""
from __future__ import annotations

# KerasTuner's metrics_tracking._MAX_METRICS / _MAX_METRIC_FNS, as Keras logs them
_MAX = {"accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
        "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "true_positives",
        "true_negatives", "precision", "recall", "auc", "sensitivity_at_specificity",
        "specificity_at_sensitivity", "r2_score", "f1_score", "fbeta_score"}
_MIN = {"loss", "crossentropy", "ce", "mse", "mae", "mape", "msle", "mean_squared_error",
        "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
        "root_mean_squared_error", "categorical_crossentropy", "sparse_categorical_crossentropy",
        "binary_crossentropy", "kl_divergence", "kld", "poisson", "cosine_similarity_loss", "hinge",
        "squared_hinge", "categorical_hinge", "log_cosh", "logcosh", "huber", "false_positives",
        "false_negatives"}


class Objective:
    """The objective of a search: a logged metric `name` and a `direction`, 'min' or 'max'."""

    def __init__(self, name, direction):
        if not isinstance(name, str) or not name:
            raise ValueError(f"Objective: name must be a metric name such as 'val_accuracy'; received {name!r}.")
        if direction not in ("min", "max"):
            raise ValueError(f"Objective({name!r}): direction must be 'min' or 'max'; received {direction!r}.")
        self.name = name
        self.direction = direction

    def has_value(self, logs):
        return self.name in (logs or {})

    def get_value(self, logs):
        return logs[self.name]

    def better_than(self, a, b):
        return (a > b) if self.direction == "max" else (a < b)

    def __eq__(self, other):
        return isinstance(other, Objective) and self.name == other.name and self.direction == other.direction

    def __hash__(self):
        return hash((self.name, self.direction))

    def __str__(self):
        return f'Objective(name="{self.name}", direction="{self.direction}")'

    __repr__ = __str__


class DefaultObjective(Objective):
    """Used when no objective is given: the value that `run_trial` or `HyperModel.fit` returns."""

    def __init__(self):
        super().__init__(name="default_objective", direction="min")


def infer_direction(name):
    """'max' for accuracy-like metric names, 'min' for losses and errors, None when unknown."""
    base = name[4:] if name.startswith("val_") else name
    base = base[9:] if base.startswith("weighted_") else base
    if base in _MAX or base.endswith("accuracy"):
        return "max"
    if base in _MIN or base.endswith("loss") or base.endswith("error"):
        return "min"
    return None


def create_objective(objective):
    """A name, an Objective or None -> Objective (ValueError when the direction is unknown)."""
    if objective is None:
        return DefaultObjective()
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, (list, tuple)):
        raise ValueError("objective: fastnn's tuners optimise one objective; received a list "
                         f"{list(objective)!r}. Pass one name or Objective.")
    if not isinstance(objective, str):
        raise TypeError(f"objective must be a metric name or a fastnn.tuner.Objective; received {objective!r}.")
    direction = infer_direction(objective)
    if direction is None:
        raise ValueError(f"objective: unknown objective name {objective!r}: cannot infer whether to minimise or "
                         f"maximise it. Use a metric the model logs (e.g. 'val_loss', 'val_accuracy') or say "
                         f"so: fastnn.tuner.Objective({objective!r}, direction='max').")
    return Objective(objective, direction)
