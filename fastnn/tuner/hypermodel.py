"""`HyperModel`: a search space of models (`build(hp)`) and how to train one (`fit`)."""
from __future__ import annotations


class HyperModel:
    """Subclass and override `build(hp)` (and optionally `fit(hp, model, *args, **kwargs)`).

    `build` returns a compiled fastnn model for the values in `hp`; `fit` trains it and returns
    the History (the default calls `model.fit`), a dict of metrics or the objective value.
    """

    def __init__(self, name=None, tunable=True):
        self.name = name
        self.tunable = tunable

    def build(self, hp):
        raise NotImplementedError("HyperModel.build(hp) must be overridden to return a compiled model.")

    def declare_hyperparameters(self, hp):
        pass

    def fit(self, hp, model, *args, **kwargs):
        """Train `model`; `kwargs` holds what `Tuner.search` received (callbacks included)."""
        return model.fit(*args, **kwargs)


class _FunctionHyperModel(HyperModel):
    """A plain `build_model(hp)` function as a HyperModel."""

    def __init__(self, build):
        super().__init__(name=getattr(build, "__name__", None))
        self._fn = build

    def build(self, hp):
        return self._fn(hp)


def get_hypermodel(hypermodel):
    if hypermodel is None or isinstance(hypermodel, HyperModel):
        return hypermodel
    if not callable(hypermodel):
        raise TypeError("hypermodel must be a HyperModel or a function build_model(hp) that returns a compiled "
                        f"model; received {hypermodel!r}.")
    return _FunctionHyperModel(hypermodel)
