"""Model helpers over fastnn's public API, shared by the tuner and `fastnn.wrappers`.

fastnn's Model does not expose its compile arguments (Keras's `get_compile_config`) nor a
`clone_model`; both are read back from the model's `.keras` file, whose `config.json` holds
`compile_config` (see fastnn/models/saving.py).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile


def compile_config(model):
    """{"optimizer", "loss", "metrics", "weighted_metrics"} of a compiled, built model (serialized form)."""
    if not getattr(model, "built", False):
        raise ValueError("the model is not built: give it an Input layer (keras.Input(shape)) so that its "
                         "compile settings can be copied.")
    with tempfile.TemporaryDirectory(prefix="fastnn-") as d:
        path = os.path.join(d, "model.keras")
        model.save(path)
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    cc = config.get("compile_config")
    if cc is None:
        raise ValueError("the model is not compiled: call model.compile(optimizer, loss, metrics) first.")
    return cc


def compile_kwargs(cc):
    """compile() arguments from a compile_config (fresh optimizer, loss and metric objects)."""
    from fastnn import losses, optimizers
    from fastnn import metrics as metrics_module

    def obj(x, getter):
        return getter({"class_name": x["class_name"], "config": x["config"]}) if isinstance(x, dict) else x
    return {"optimizer": obj(cc["optimizer"], optimizers.get), "loss": obj(cc["loss"], losses.get),
            "metrics": [obj(m, metrics_module.get) for m in cc.get("metrics", [])],
            "weighted_metrics": [obj(m, metrics_module.get) for m in cc.get("weighted_metrics", [])]}


def clone_model(model):
    """A new model of the same architecture and compile settings, freshly initialized (as
    keras.models.clone_model followed by compiling like the original)."""
    from fastnn.models import model_from_json
    cc = compile_config(model) if getattr(model, "compiled", False) else None
    clone = model_from_json(model.to_json())
    if cc is not None:
        clone.compile(**compile_kwargs(cc))
    return clone
