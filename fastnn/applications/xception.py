"""Xception (Chollet, 2017) as keras.applications.xception builds it: an entry flow of strided
separable-conv blocks with 1x1 projected shortcuts, eight middle blocks of three separable
convolutions around an identity shortcut, and an exit flow. Inputs are preprocessed in "tf"
mode; the default size is 299x299, the minimum 71x71.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu


def _bn(name=None):
    return layers.BatchNormalization(axis=-1, name=name)


def _sep(x, filters, name):
    """SeparableConv2D 3x3 'same' without bias, then its batch norm `<name>_bn`."""
    x = layers.SeparableConv2D(filters, (3, 3), padding="same", use_bias=False, name=name)(x)
    return _bn(f"{name}_bn")(x)


def entry_block(x, filters, block, first_relu=True):
    """Two separable convs and a 3x3/2 max pool, added to a 1x1/2 projection of the input."""
    residual = layers.Conv2D(filters[1], (1, 1), strides=(2, 2), padding="same", use_bias=False)(x)
    residual = _bn()(residual)
    if first_relu:
        x = layers.Activation("relu", name=f"block{block}_sepconv1_act")(x)
    x = _sep(x, filters[0], f"block{block}_sepconv1")
    x = layers.Activation("relu", name=f"block{block}_sepconv2_act")(x)
    x = _sep(x, filters[1], f"block{block}_sepconv2")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name=f"block{block}_pool")(x)
    return layers.add([x, residual])


def middle_block(x, block):
    """Three ReLU -> separable conv -> BN units around an identity shortcut."""
    residual = x
    for i in (1, 2, 3):
        x = layers.Activation("relu", name=f"block{block}_sepconv{i}_act")(x)
        x = _sep(x, 728, f"block{block}_sepconv{i}")
    return layers.add([x, residual])


def Xception(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="xception"):
    """Xception with Keras's arguments, layer names and weight layout (22,910,480 parameters)."""
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=299, min_size=71, require_flatten=include_top,
                                        weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)
    x = layers.Conv2D(32, (3, 3), strides=(2, 2), use_bias=False, name="block1_conv1")(img_input)
    x = layers.Activation("relu", name="block1_conv1_act")(_bn("block1_conv1_bn")(x))
    x = layers.Conv2D(64, (3, 3), use_bias=False, name="block1_conv2")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(_bn("block1_conv2_bn")(x))
    x = entry_block(x, (128, 128), 2, first_relu=False)
    x = entry_block(x, (256, 256), 3)
    x = entry_block(x, (728, 728), 4)
    for block in range(5, 13):
        x = middle_block(x, block)
    x = entry_block(x, (728, 1024), 13)
    x = _sep(x, 1536, "block14_sepconv1")
    x = layers.Activation("relu", name="block14_sepconv1_act")(x)
    x = _sep(x, 2048, "block14_sepconv2")
    x = layers.Activation("relu", name="block14_sepconv2_act")(x)
    x = iu.top_or_pool(x, include_top, pooling, classes, classifier_activation, weights)
    return iu.finish(img_input, input_tensor, x, name, weights, iu.keras_file("xception", include_top))


def preprocess_input(x, data_format=None):
    """Pixels scaled to [-1, 1] ("tf" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="tf")


decode_predictions = iu.decode_predictions
