"""What every application shares (Keras's keras.applications.imagenet_utils): input
preprocessing in the three ImageNet conventions, decoding of class scores, input-shape rules,
and the constructors' common steps (argument checks, the input tensor, weights from a file).

Nothing here downloads: `weights` is None, a file path, or "imagenet", which loads Keras's
published file for the architecture when it is already on disk (~/.keras/models/ or
~/.fastnn/models/) and otherwise says which file to fetch and where to put it.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

from fastnn.layers.base import KerasTensor

__all__ = ["preprocess_input", "decode_predictions", "obtain_input_shape", "correct_pad"]

MODES = ("caffe", "tf", "torch")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
WEIGHT_DIRS = ("~/.keras/models", "~/.fastnn/models")
CLASS_INDEX_FILE = "imagenet_class_index.json"


def preprocess_input(x, data_format=None, mode="caffe"):
    """Scale a batch (or one image) of RGB values in [0, 255] as the ImageNet weights expect.

    mode "caffe": RGB -> BGR, minus the ImageNet channel means, no scaling (VGG, ResNet v1);
    "tf": to [-1, 1] (ResNet v2, Inception, Xception, MobileNet); "torch": to [0, 1], minus the
    mean and divided by the std per channel (DenseNet). A float array is changed in place and
    returned (as Keras does); an integer array is converted to a new float32 one."""
    if mode not in MODES:
        raise ValueError(f"preprocess_input: mode must be one of {MODES}; received mode={mode!r}.")
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError(f"preprocess_input: data_format must be 'channels_last' or 'channels_first'; received "
                         f"data_format={data_format!r}.")
    channels_first = data_format == "channels_first"
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    caxis = (0 if x.ndim == 3 else 1) if channels_first else x.ndim - 1
    if x.ndim < 1 or x.shape[caxis] != 3:
        raise ValueError(f"preprocess_input: expects 3 colour channels on axis {caxis}; received shape {x.shape}.")
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "torch":
        x /= 255.0
        mean, std = TORCH_MEAN, TORCH_STD
    else:
        x = np.flip(x, axis=caxis)
        mean, std = CAFFE_MEAN_BGR, None
    for c in range(3):
        index = [slice(None)] * x.ndim
        index[caxis] = c
        x[tuple(index)] -= mean[c]
        if std is not None:
            x[tuple(index)] /= std[c]
    return x


_CLASS_INDEX = None


def decode_predictions(preds, top=5, class_index=None):
    """The `top` classes of each row of (N, 1000) scores as (class_id, name, score) tuples, best
    first. class_index is Keras's imagenet_class_index.json (a path or its dict); by default it
    is looked up in ~/.keras/models/ and ~/.fastnn/models/ (fastnn does not download it)."""
    global _CLASS_INDEX
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects a batch of predictions of shape (samples, 1000); received "
                         f"an array of shape {preds.shape}.")
    if isinstance(class_index, dict):
        index = class_index
    elif class_index is not None:
        with open(os.fspath(class_index)) as f:
            index = json.load(f)
    else:
        if _CLASS_INDEX is None:
            path = find_file(CLASS_INDEX_FILE)
            if path is None:
                raise FileNotFoundError(
                    f"decode_predictions: {CLASS_INDEX_FILE} (Keras's ImageNet class index) was not found in "
                    f"{' or '.join(WEIGHT_DIRS)}; fastnn does not download it. Copy it there, or pass "
                    f"class_index='path/to/{CLASS_INDEX_FILE}'.")
            with open(path) as f:
                _CLASS_INDEX = json.load(f)
        index = _CLASS_INDEX
    results = []
    for row in preds:
        best = row.argsort()[-top:][::-1]
        entry = [tuple(index[str(int(i))]) + (row[i],) for i in best]
        entry.sort(key=lambda t: t[2], reverse=True)
        results.append(entry)
    return results


def find_file(name):
    """The first of WEIGHT_DIRS holding `name`, or None."""
    for d in WEIGHT_DIRS:
        path = os.path.join(os.path.expanduser(d), name)
        if os.path.isfile(path):
            return path
    return None


def obtain_input_shape(input_shape, default_size, min_size, data_format="channels_last", require_flatten=True,
                       weights=None):
    """Keras's rule for an application's input shape (channels_last): the default
    (default_size, default_size, 3) with the top (or imagenet weights), else the user's shape
    checked (3 values, at least min_size x min_size, 3 channels with imagenet weights), or
    (None, None, 3) without a top."""
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        if input_shape[-1] not in {1, 3}:
            warnings.warn(f"This model usually expects 1 or 3 input channels. However, it was passed an "
                          f"input_shape with {input_shape[-1]} input channels.", stacklevel=3)
        default_shape = (default_size, default_size, input_shape[-1])
    else:
        default_shape = (default_size, default_size, 3)
    if weights == "imagenet" and require_flatten:
        if input_shape is not None and tuple(input_shape) != default_shape:
            raise ValueError(f"When setting `include_top=True` and loading `imagenet` weights, `input_shape` should "
                             f"be {default_shape}. Received: input_shape={input_shape}")
        return default_shape
    if input_shape:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"`input_shape` must be a tuple of three integers (height, width, channels); received "
                             f"input_shape={input_shape}.")
        if input_shape[-1] != 3 and weights == "imagenet":
            raise ValueError(f"The input must have 3 channels; Received `input_shape={input_shape}`")
        if any(d is not None and d < min_size for d in input_shape[:2]):
            raise ValueError(f"Input size must be at least {min_size}x{min_size}; Received: "
                             f"input_shape={input_shape}")
    elif require_flatten:
        input_shape = default_shape
    else:
        input_shape = (None, None, 3)
    if require_flatten and None in input_shape:
        raise ValueError(f"If `include_top` is True, you should specify a static `input_shape`. Received: "
                         f"input_shape={input_shape}")
    return input_shape


def correct_pad(inputs, kernel_size):
    """The ((top, bottom), (left, right)) zero padding before a stride-2 'valid' convolution
    that reproduces TensorFlow's 'same' (one fewer row/column before on even sizes)."""
    size = inputs.shape[1:3]
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    half = (k[0] // 2, k[1] // 2)
    return ((half[0] - adjust[0], half[0]), (half[1] - adjust[1], half[1]))


# --------------------------------------------------------------------------- constructors' steps
def check_weights(weights, include_top, classes):
    if not (weights in {"imagenet", None} or (isinstance(weights, (str, os.PathLike)) and os.path.exists(weights))):
        raise ValueError(f"The `weights` argument should be either `None` (random initialization), 'imagenet' "
                         f"(pre-training on ImageNet), or the path to the weights file to be loaded. Received: "
                         f"weights={weights}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"If using `weights='imagenet'` with `include_top=True`, `classes` should be 1000. "
                         f"Received classes={classes}")


def validate_activation(classifier_activation, weights):
    if weights is None:
        return
    name = getattr(classifier_activation, "name", classifier_activation)
    if name not in (None, "softmax", "linear"):
        raise ValueError(f"Only `None` and `softmax` activations are allowed for the `classifier_activation` "
                         f"argument when using pretrained weights, with `include_top=True`; Received: "
                         f"classifier_activation={classifier_activation}")


def image_input(input_tensor, input_shape):
    """The tensor the network starts from: a new Input, or the user's tensor."""
    from fastnn.layers import Input
    if input_tensor is None:
        return Input(shape=input_shape)
    if isinstance(input_tensor, KerasTensor):
        return input_tensor
    raise TypeError(f"input_tensor must be a KerasTensor (from fastnn.Input or a layer call); received "
                    f"{type(input_tensor).__name__}.")


def source_inputs(tensor):
    """The model inputs a tensor is computed from (Keras's operation_utils.get_source_inputs)."""
    from fastnn.layers.core import InputLayer
    seen, found, stack = set(), [], [tensor]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.call is None or isinstance(t.call.layer, InputLayer):
            found.append(t)
        else:
            stack.extend(reversed(t.call.inputs))
    return found[0] if len(found) == 1 else found


def pooled(x, pooling, avg_name=None, max_name=None):
    """The optional global pooling of a headless network (pooling None, 'avg' or 'max')."""
    from fastnn import layers
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=avg_name)(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=max_name)(x)
    if pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max'; received pooling={pooling!r}.")
    return x


def finish(img_input, input_tensor, x, name, weights, file_name=None):
    """The model from the input to x, with its weights loaded from `weights` (a path) or, for
    'imagenet', from Keras's published file `file_name` when it is on disk."""
    from fastnn.models import Model
    inputs = source_inputs(input_tensor) if input_tensor is not None else img_input
    model = Model(inputs, x, name=name)
    if weights == "imagenet":
        path = find_file(file_name) if file_name else None
        if path is None:
            raise FileNotFoundError(
                f"{name}: weights='imagenet' needs Keras's file {file_name!r} in {' or '.join(WEIGHT_DIRS)}; fastnn "
                f"does not download. Fetch it once (keras.applications downloads it to ~/.keras/models/), or "
                f"pass weights='path/to/file' (a Keras .h5 or .weights.h5 file), or weights=None.")
        model.load_weights(path)
    elif weights is not None:
        model.load_weights(weights)
    return model


def keras_file(stem, include_top):
    """The name of Keras's published weight file for most families."""
    return f"{stem}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"


def top_or_pool(x, include_top, pooling, classes, classifier_activation, weights, *, avg_name="avg_pool",
                pool_avg_name=None, pool_max_name=None):
    """The usual head: global average pooling and the `predictions` Dense layer, or the
    optional pooling of a headless network."""
    from fastnn import layers
    if include_top:
        x = layers.GlobalAveragePooling2D(name=avg_name)(x)
        validate_activation(classifier_activation, weights)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return pooled(x, pooling, pool_avg_name, pool_max_name)
