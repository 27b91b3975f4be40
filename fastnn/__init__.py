"""fastnn: Keras-compatible deep learning on the CPU, over compiled kernels.

    import fastnn as keras          # a tf.keras script runs with this import line
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])

The Keras namespaces (layers, models, losses, optimizers, ...) load on first use, so that
`import fastnn.kernels` stays light for projects that embed only the kernels.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "activations", "callbacks", "constraints", "datasets", "distribution", "initializers", "kernels", "layers",
    "losses", "metrics", "models", "optimizers", "reference", "regularizers", "utils", "wrappers",
)
# top-level names Keras exposes, and the submodule that defines each
_ATTRS = {
    "Sequential": "models",
    "Model": "models",
    "Input": "layers",
    "set_num_threads": "kernels",
    "get_num_threads": "kernels",
}

__all__ = [*_SUBMODULES, *_ATTRS, "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"fastnn.{name}")
        globals()[name] = module
        return module
    if name in _ATTRS:
        value = getattr(importlib.import_module(f"fastnn.{_ATTRS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
