"""Sequential: a plain stack of layers, built from an Input, an input_shape kwarg or the first data."""
from __future__ import annotations

from fastnn.layers import register
from fastnn.layers.base import KerasTensor, Layer, shape_str
from fastnn.layers.core import InputLayer
from fastnn.models.model import Model


@register
class Sequential(Model):
    """A linear stack of layers: Sequential([Input((784,)), Dense(10, activation="softmax")])."""

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._layers = []
        self._input_layer = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build_graph()

    def add(self, layer, rebuild=True):
        """Append a layer (or an Input tensor / InputLayer as the first element)."""
        if isinstance(layer, KerasTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("Sequential.add: an Input/InputLayer can only be the first element.")
            self._input_layer = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a fastnn Layer; received {type(layer).__name__} ({layer!r}).")
        if any(l is layer for l in self._layers):
            raise ValueError(f"Sequential.add: layer '{layer.name}' is already in the model.")
        if any(l.name == layer.name for l in self._layers):
            raise ValueError(f"Sequential.add: all layers need unique names; '{layer.name}' is already used.")
        self._layers.append(layer)
        if self._input_layer is None and len(self._layers) == 1 and layer._input_shape_arg is not None:
            self._input_layer = InputLayer(batch_shape=layer._input_shape_arg)
        if rebuild:
            self.built = False
            self._maybe_build_graph()

    def pop(self):
        if not self._layers:
            raise ValueError("Sequential.pop: there are no layers to remove.")
        layer = self._layers.pop()
        self.built = False
        self._maybe_build_graph()
        return layer

    def _maybe_build_graph(self):
        if self._input_layer is None or not self._layers:
            return
        t = self._input_layer.output
        for layer in self._layers:
            try:
                t = layer(t)
            except ValueError as e:
                raise ValueError(f"Sequential '{self.name}': cannot add layer '{layer.name}' "
                                 f"({type(layer).__name__}) after output shape {shape_str(t.shape)}: {e}") from None
        self._init_graph(self._input_layer.output, t)
        self._arena = None
        if self.compiled:
            self._prepare_training()

    def build(self, input_shape=None):
        if self.built:
            return
        if input_shape is None:
            raise ValueError(f"Sequential '{self.name}': give input_shape (batch axis first) to build().")
        self._input_layer = InputLayer(batch_shape=(None, *tuple(input_shape)[1:]))
        self._maybe_build_graph()

    def _build_from_symbolic(self, x):
        self.build((None, *x.shape[1:]))

    def _ensure_built(self, xs):
        if not self.built:
            if not self._layers:
                raise ValueError(f"Sequential '{self.name}' has no layers; add some with model.add().")
            self.build((None, *xs[0].shape[1:]))

    @property
    def layers(self):
        return list(self._layers)

    def get_config(self):
        from fastnn.layers import serialize
        layers = []
        if self._input_layer is not None:
            layers.append(serialize(self._input_layer))
        layers += [serialize(l) for l in self._layers]
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from fastnn.layers import deserialize
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config["layers"]:
            model.add(deserialize(entry, custom_objects), rebuild=False)
        model._maybe_build_graph()
        return model
