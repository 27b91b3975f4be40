"""fastnn.models: Sequential and functional Model, training loop, saving (Keras 3 API).

One file per responsibility (docs/internals.md, "Where things live"): graph.py (nodes,
topological order, forward/backward), fusion.py (the inference-fusion planner), trainer.py and
data.py (compile/fit/evaluate/predict and their input checks), saving.py, summary.py,
profile.py, arena.py; model.py assembles Model from them, sequential.py builds on Model.
"""
from fastnn.models.model import Model
from fastnn.models.saving import load_model, model_from_json
from fastnn.models.sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "model_from_json"]
