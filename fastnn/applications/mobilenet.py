"""MobileNet (Howard et al., 2017) as keras.applications.mobilenet builds it: a 3x3 stride-2
conv, then thirteen depthwise-separable blocks (3x3 depthwise -> BN -> ReLU6 -> 1x1 conv ->
BN -> ReLU6; a stride-2 block pads (0, 1) and runs 'valid'), width scaled by `alpha`, depthwise
channels by `depth_multiplier`. The top is a 1x1 convolution on the pooled features. Inputs are
preprocessed in "tf" mode.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

# pointwise filters and stride of blocks 1..13
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))
SIZES = (128, 160, 192, 224)


def _conv_block(inputs, filters, alpha, kernel=(3, 3), strides=(1, 1)):
    x = layers.Conv2D(int(filters * alpha), kernel, padding="same", use_bias=False, strides=strides,
                      name="conv1")(inputs)
    x = layers.BatchNormalization(axis=-1, name="conv1_bn")(x)
    return layers.ReLU(6.0, name="conv1_relu")(x)


def _depthwise_conv_block(inputs, pointwise_conv_filters, alpha, depth_multiplier=1, strides=(1, 1), block_id=1):
    x = inputs
    if strides != (1, 1):
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
    x = layers.DepthwiseConv2D((3, 3), padding="same" if strides == (1, 1) else "valid",
                               depth_multiplier=depth_multiplier, strides=strides, use_bias=False,
                               name=f"conv_dw_{block_id}")(x)
    x = layers.BatchNormalization(axis=-1, name=f"conv_dw_{block_id}_bn")(x)
    x = layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    x = layers.Conv2D(int(pointwise_conv_filters * alpha), (1, 1), padding="same", use_bias=False, strides=(1, 1),
                      name=f"conv_pw_{block_id}")(x)
    x = layers.BatchNormalization(axis=-1, name=f"conv_pw_{block_id}_bn")(x)
    return layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)


def _default_size(input_shape, sizes):
    if input_shape is not None and input_shape[0] == input_shape[1] and input_shape[0] in sizes:
        return input_shape[0]
    return 224


def MobileNet(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3, include_top=True, weights="imagenet",
              input_tensor=None, pooling=None, classes=1000, classifier_activation="softmax", name=None):
    """MobileNet with Keras's arguments, layer names and weight layout (4,253,864 parameters at
    alpha=1)."""
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=_default_size(input_shape, SIZES), min_size=32,
                                        require_flatten=include_top, weights=weights)
    rows = input_shape[0]
    if weights == "imagenet":
        if depth_multiplier != 1:
            raise ValueError(f"If imagenet weights are being loaded, depth multiplier must be 1. Received "
                             f"depth_multiplier={depth_multiplier}")
        if alpha not in (0.25, 0.50, 0.75, 1.0):
            raise ValueError(f"If imagenet weights are being loaded, alpha can be one of `0.25`, `0.50`, `0.75` or "
                             f"`1.0` only. Received alpha={alpha}")
        if rows != input_shape[1] or rows not in SIZES:
            rows = 224
    img_input = iu.image_input(input_tensor, input_shape)
    x = _conv_block(img_input, 32, alpha, strides=(2, 2))
    for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
        x = _depthwise_conv_block(x, filters, alpha, depth_multiplier, strides=(stride, stride), block_id=block_id)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(classes, (1, 1), padding="same", name="conv_preds")(x)
        x = layers.Reshape((classes,), name="reshape_2")(x)
        iu.validate_activation(classifier_activation, weights)
        x = layers.Activation(activation=classifier_activation, name="predictions")(x)
    else:
        x = iu.pooled(x, pooling)
    name = name or f"mobilenet_{alpha:0.2f}_{rows}"
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0"}.get(alpha, "2_5")
    file_name = f"mobilenet_{alpha_text}_{rows}_tf{'' if include_top else '_no_top'}.h5"
    return iu.finish(img_input, input_tensor, x, name, weights, file_name)


def preprocess_input(x, data_format=None):
    """Pixels scaled to [-1, 1] ("tf" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="tf")


decode_predictions = iu.decode_predictions
