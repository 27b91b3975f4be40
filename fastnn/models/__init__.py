"""fastnn.models: Sequential and functional Model, training loop, saving (Keras 3 API)."""
from fastnn.models.model import Model
from fastnn.models.saving import load_model, model_from_json
from fastnn.models.sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "model_from_json"]
