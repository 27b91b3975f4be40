"""InceptionV3 (Szegedy et al., 2015) as keras.applications.inception_v3 builds it: a stem of
conv-BN-ReLU units (no conv bias, BN without scale), then eleven mixed blocks that run 1x1,
factorised 5x5 / 7x7 / 3x3 and pooling branches side by side and concatenate them (mixed0 ..
mixed10). Inputs are preprocessed in "tf" mode; the default size is 299x299, the minimum 75x75.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu


def conv2d_bn(x, filters, num_row, num_col, padding="same", strides=(1, 1), name=None):
    """Conv2D (no bias) -> BatchNormalization(scale=False) -> ReLU; named `<name>_conv`,
    `<name>_bn`, `<name>` when a name is given (Keras's own names otherwise)."""
    x = layers.Conv2D(filters, (num_row, num_col), strides=strides, padding=padding, use_bias=False,
                      name=None if name is None else f"{name}_conv")(x)
    x = layers.BatchNormalization(axis=3, scale=False, name=None if name is None else f"{name}_bn")(x)
    return layers.Activation("relu", name=name)(x)


def _chain(x, specs):
    """conv2d_bn applied in turn for each (filters, rows, cols[, strides, padding])."""
    for spec in specs:
        f, r, c, *rest = spec
        strides, padding = (rest + [(1, 1), "same"][len(rest):])[:2]
        x = conv2d_bn(x, f, r, c, strides=strides, padding=padding)
    return x


def _avg_branch(x, filters):
    return conv2d_bn(layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same")(x), filters, 1, 1)


def block_a(x, pool_filters, name):
    """mixed0-2: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""
    branches = [_chain(x, [(64, 1, 1)]),
                _chain(x, [(48, 1, 1), (64, 5, 5)]),
                _chain(x, [(64, 1, 1), (96, 3, 3), (96, 3, 3)]),
                _avg_branch(x, pool_filters)]
    return layers.concatenate(branches, axis=3, name=name)


def block_b(x, name):
    """mixed3 (grid reduction): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2."""
    branches = [_chain(x, [(384, 3, 3, (2, 2), "valid")]),
                _chain(x, [(64, 1, 1), (96, 3, 3), (96, 3, 3, (2, 2), "valid")]),
                layers.MaxPooling2D((3, 3), strides=(2, 2))(x)]
    return layers.concatenate(branches, axis=3, name=name)


def block_c(x, width, name):
    """mixed4-7: 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1."""
    w = width
    branches = [_chain(x, [(192, 1, 1)]),
                _chain(x, [(w, 1, 1), (w, 1, 7), (192, 7, 1)]),
                _chain(x, [(w, 1, 1), (w, 7, 1), (w, 1, 7), (w, 7, 1), (192, 1, 7)]),
                _avg_branch(x, 192)]
    return layers.concatenate(branches, axis=3, name=name)


def block_d(x, name):
    """mixed8 (grid reduction): 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2."""
    branches = [_chain(x, [(192, 1, 1), (320, 3, 3, (2, 2), "valid")]),
                _chain(x, [(192, 1, 1), (192, 1, 7), (192, 7, 1), (192, 3, 3, (2, 2), "valid")]),
                layers.MaxPooling2D((3, 3), strides=(2, 2))(x)]
    return layers.concatenate(branches, axis=3, name=name)


def block_e(x, i, name):
    """mixed9-10: 1x1 | 1x1 -> (1x3 | 3x1) | 1x1 -> 3x3 -> (1x3 | 3x1) | avg pool -> 1x1."""
    b1 = conv2d_bn(x, 320, 1, 1)
    b3 = conv2d_bn(x, 384, 1, 1)
    b3 = layers.concatenate([conv2d_bn(b3, 384, 1, 3), conv2d_bn(b3, 384, 3, 1)], axis=3, name=f"mixed9_{i}")
    bd = _chain(x, [(448, 1, 1), (384, 3, 3)])
    bd = layers.concatenate([conv2d_bn(bd, 384, 1, 3), conv2d_bn(bd, 384, 3, 1)], axis=3)
    return layers.concatenate([b1, b3, bd, _avg_branch(x, 192)], axis=3, name=name)


def InceptionV3(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="inception_v3"):
    """InceptionV3 with Keras's arguments, layer names and weight layout (23,851,784 parameters)."""
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=299, min_size=75, require_flatten=include_top,
                                        weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)
    x = _chain(img_input, [(32, 3, 3, (2, 2), "valid"), (32, 3, 3, (1, 1), "valid"), (64, 3, 3)])
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = _chain(x, [(80, 1, 1, (1, 1), "valid"), (192, 3, 3, (1, 1), "valid")])
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    for k, pool_filters in enumerate((32, 64, 64)):
        x = block_a(x, pool_filters, f"mixed{k}")
    x = block_b(x, "mixed3")
    for k, width in enumerate((128, 160, 160, 192)):
        x = block_c(x, width, f"mixed{4 + k}")
    x = block_d(x, "mixed8")
    for i in range(2):
        x = block_e(x, i, f"mixed{9 + i}")
    x = iu.top_or_pool(x, include_top, pooling, classes, classifier_activation, weights)
    return iu.finish(img_input, input_tensor, x, name, weights, iu.keras_file("inception_v3", include_top))


def preprocess_input(x, data_format=None):
    """Pixels scaled to [-1, 1] ("tf" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="tf")


decode_predictions = iu.decode_predictions
