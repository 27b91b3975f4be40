"""fastnn.layers: Keras-3-compatible layers over fastnn.kernels (float32, channels_last).

Each layer implements build(input_shape), forward(x, training) and backward(dy); see
docs/layers.md for writing your own.
"""
from fastnn.layers.activation import ELU, LeakyReLU, PReLU, ReLU, Softmax
from fastnn.layers.base import KerasTensor, Layer, Variable
from fastnn.layers.convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Convolution1D,
                                         Convolution1DTranspose, Convolution2D, Convolution2DTranspose,
                                         DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D,
                                         SeparableConvolution1D, SeparableConvolution2D)
from fastnn.layers.core import (Activation, Dense, Dropout, Flatten, Identity, Input, InputLayer, Lambda,
                                Permute, RepeatVector, Reshape)
from fastnn.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,
                                   concatenate, dot, maximum, minimum, multiply, subtract)
from fastnn.layers.normalization import BatchNormalization
from fastnn.layers.pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D,
                                   GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAvgPool1D,
                                   GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPooling1D,
                                   GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from fastnn.layers.preprocessing import Normalization, Rescaling, Resizing
from fastnn.layers.recurrent import (GRU, LSTM, RNN, Bidirectional, Embedding, GRUCell, LSTMCell, Masking,
                                     SimpleRNN, SimpleRNNCell, StackedRNNCells, TimeDistributed)
from fastnn.layers.reshaping import Cropping2D, UpSampling2D, ZeroPadding1D, ZeroPadding2D

_CLASSES = {name: obj for name, obj in dict(globals()).items()
            if isinstance(obj, type) and issubclass(obj, Layer)}


def get_class(name):
    """The layer class registered under a Keras class name (for from_config / load_model)."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise ValueError(f"Unknown layer class {name!r}; known: {sorted(_CLASSES)}.") from None


def register(cls):
    """Register a custom Layer subclass so saved models using it can be loaded."""
    _CLASSES[cls.__name__] = cls
    return cls


def serialize(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config, custom_objects=None):
    classes = dict(_CLASSES, **{k: v for k, v in (custom_objects or {}).items() if isinstance(v, type)})
    name = config["class_name"]
    if name == "Functional":
        name = "Model"
    if name not in classes:
        raise ValueError(f"Unknown layer class {name!r}; pass it in custom_objects or register it with "
                         f"fastnn.layers.register.")
    cls = classes[name]
    if name == "Lambda" or getattr(cls, "_graph_calls", None) is not None or hasattr(cls, "_init_graph"):
        return cls.from_config(config["config"], custom_objects=custom_objects)   # nested models, Lambda
    return cls.from_config(config["config"])
