"""Model: Keras's `keras.Model`, assembled from the rooms of this package.

    Model = Trainer (trainer.py: compile, fit, evaluate, predict; data.py: input checks)
          + Graph   (graph.py: nodes, topological order, forward and backward passes;
                     fusion.py plans the fused inference runs)
          + Layer   (a model is a layer: name, trainable, weights)

Saving lives in saving.py, the summary table in summary.py, the per-layer profile in
profile.py, the flat parameter arena in arena.py. Sequential (sequential.py) is a Model whose
graph is a stack.
"""
from __future__ import annotations

from fastnn.layers import register
from fastnn.layers.base import Layer, snake_case, unique_name
from fastnn.models.graph import Graph
from fastnn.models.trainer import Trainer


@register
class Model(Trainer, Graph, Layer):
    """A graph of layers from Input tensors to outputs: Model(inputs, outputs)."""

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        # Keras names a functional model "functional", a subclass after its class
        base = "functional" if type(self) is Model else snake_case(type(self).__name__)
        super().__init__(name=name or unique_name(base), trainable=trainable)
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._arena = None
        self._nodes = []
        self._in_fit = False
        self._timer = None   # a fastnn.models.profile.StepTimer while model.profile runs
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model: give both `inputs` and `outputs` (KerasTensors from fastnn.Input "
                                 "and layer calls).")
            self._init_graph(inputs, outputs)

    @property
    def trainable(self):
        return Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        """Freezing a model freezes every layer in it, nested models included (as Keras)."""
        Layer.trainable.fset(self, value)
        for layer in self.__dict__.get("_layer_order", ()) or self.__dict__.get("_layers", ()):
            layer.trainable = value

    def profile(self, x, y, steps=5, batch_size=None, print_fn=print):
        """Per-layer time of a training step: prints a table and returns it as a list of dicts.

        Runs one warm-up step, then `steps` timed training steps on batches of (x, y)
        (batch_size default min(32, len(x))), and restores the weights and optimizer state.
        Rows: every layer (name, type, output_shape, forward_ms, backward_ms, share, flops,
        gflops for Dense/Conv), then loss, optimizer, other (metrics and glue) and total
        (step_ms); shares of all rows but total add up to 1. See docs/performance.md.
        """
        from fastnn.models.profile import run_profile
        return run_profile(self, x, y, steps=steps, batch_size=batch_size, print_fn=print_fn)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras's table of the layers (see fastnn.models.summary for the layout)."""
        from fastnn.models.summary import summary_lines
        lines = summary_lines(self, line_length=line_length, positions=positions, expand_nested=expand_nested,
                              show_trainable=show_trainable, layer_range=layer_range)
        if print_fn is None:
            print("\n".join(lines))
        else:
            for line in lines:
                print_fn(line)

    def save(self, filepath, overwrite=True, **kwargs):
        """Save architecture, weights and optimizer state to a `.keras` zip (see saving.py)."""
        from fastnn.models.saving import save_model
        save_model(self, filepath, overwrite=overwrite)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Export the model for inference, as Keras 3's `model.export`: fastnn writes
        format="onnx" (fastnn.onnx.export; kwargs `opset_version` / `opset` and
        `fold_batchnorm`). Needs `pip install "fastnn[onnx]"`."""
        if format != "onnx":
            raise ValueError(f"export: fastnn exports format='onnx' only (a TensorFlow SavedModel or OpenVINO "
                             f"artifact needs TensorFlow / OpenVINO); received format={format!r}. Use "
                             f"model.export(path, format='onnx').")
        from fastnn import onnx as fastnn_onnx
        opset = kwargs.pop("opset_version", None)
        opset = kwargs.pop("opset", opset)
        fold = kwargs.pop("fold_batchnorm", False)
        if kwargs:
            raise TypeError(f"export: unexpected keyword argument(s) {sorted(kwargs)}; format='onnx' takes "
                            f"opset_version, fold_batchnorm, verbose and input_signature.")
        return fastnn_onnx.export(self, filepath, opset=fastnn_onnx.DEFAULT_OPSET if opset is None else opset,
                                  fold_batchnorm=fold, input_signature=input_signature,
                                  verbose=True if verbose is None else verbose)

    def save_weights(self, filepath, overwrite=True):
        from fastnn.models.saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        from fastnn.models.saving import load_weights
        load_weights(self, filepath)

    def to_json(self, **kwargs):
        import json
        from fastnn.models.saving import model_config
        return json.dumps(model_config(self), **kwargs)
