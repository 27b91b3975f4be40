"""MobileNetV2 (Sandler et al., 2018) as keras.applications.mobilenet_v2 builds it: a 3x3
stride-2 conv, seventeen inverted residual blocks (1x1 expansion -> BN -> ReLU6 -> 3x3
depthwise -> BN -> ReLU6 -> 1x1 linear projection -> BN, added to the input when the shapes
agree), a 1x1 conv to 1280 channels and the classifier. Batch norms use momentum 0.999. Inputs
are preprocessed in "tf" mode.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

# (filters, stride, expansion) of blocks 0..16
BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
          (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
          (320, 1, 6))
SIZES = (96, 128, 160, 192, 224)
ALPHAS = (0.35, 0.50, 0.75, 1.0, 1.3, 1.4)


def _make_divisible(v, divisor, min_value=None):
    """v rounded to a multiple of divisor, never more than 10% below v."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _bn(name):
    return layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.999, name=name)


def _inverted_res_block(inputs, expansion, stride, alpha, filters, block_id):
    in_channels = inputs.shape[-1]
    pointwise_filters = _make_divisible(int(filters * alpha), 8)
    x = inputs
    if block_id:
        prefix = f"block_{block_id}_"
        x = layers.Conv2D(expansion * in_channels, kernel_size=1, padding="same", use_bias=False, activation=None,
                          name=f"{prefix}expand")(x)
        x = layers.ReLU(6.0, name=f"{prefix}expand_relu")(_bn(f"{prefix}expand_BN")(x))
    else:
        prefix = "expanded_conv_"
    if stride == 2:
        x = layers.ZeroPadding2D(padding=iu.correct_pad(x, 3), name=f"{prefix}pad")(x)
    x = layers.DepthwiseConv2D(kernel_size=3, strides=stride, activation=None, use_bias=False,
                               padding="same" if stride == 1 else "valid", name=f"{prefix}depthwise")(x)
    x = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(_bn(f"{prefix}depthwise_BN")(x))
    x = layers.Conv2D(pointwise_filters, kernel_size=1, padding="same", use_bias=False, activation=None,
                      name=f"{prefix}project")(x)
    x = _bn(f"{prefix}project_BN")(x)
    if in_channels == pointwise_filters and stride == 1:
        return layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def _default_size(input_shape, input_tensor):
    if input_shape is None and input_tensor is not None:
        input_shape = input_tensor.shape[1:]
    if input_shape is not None and input_shape[0] == input_shape[1] and input_shape[0] in SIZES:
        return input_shape[0]
    return 224


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                classes=1000, classifier_activation="softmax", name=None):
    """MobileNetV2 with Keras's arguments, layer names and weight layout (3,538,984 parameters at
    alpha=1)."""
    iu.check_weights(weights, include_top, classes)
    if input_shape is not None and input_tensor is not None and tuple(input_tensor.shape[1:]) != tuple(input_shape):
        raise ValueError(f"input_shape {input_shape} and input_tensor of shape {input_tensor.shape} do not match.")
    input_shape = iu.obtain_input_shape(input_shape, default_size=_default_size(input_shape, input_tensor),
                                        min_size=32, require_flatten=include_top, weights=weights)
    rows = input_shape[0]
    if weights == "imagenet":
        if alpha not in ALPHAS:
            raise ValueError(f"If imagenet weights are being loaded, alpha must be one of `0.35`, `0.50`, `0.75`, "
                             f"`1.0`, `1.3` or `1.4` only; Received `alpha={alpha}`")
        if rows != input_shape[1] or rows not in SIZES:
            rows = 224
    img_input = iu.image_input(input_tensor, input_shape)
    x = layers.Conv2D(_make_divisible(32 * alpha, 8), kernel_size=3, strides=(2, 2), padding="same", use_bias=False,
                      name="Conv1")(img_input)
    x = layers.ReLU(6.0, name="Conv1_relu")(_bn("bn_Conv1")(x))
    for block_id, (filters, stride, expansion) in enumerate(BLOCKS):
        x = _inverted_res_block(x, filters=filters, alpha=alpha, stride=stride, expansion=expansion,
                                block_id=block_id)
    last = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = layers.Conv2D(last, kernel_size=1, use_bias=False, name="Conv_1")(x)
    x = layers.ReLU(6.0, name="out_relu")(_bn("Conv_1_bn")(x))
    if include_top:
        x = layers.GlobalAveragePooling2D()(x)
        iu.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = iu.pooled(x, pooling)
    name = name or f"mobilenetv2_{alpha:0.2f}_{rows}"
    file_name = (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}"
                 f"{'' if include_top else '_no_top'}.h5")
    return iu.finish(img_input, input_tensor, x, name, weights, file_name)


def preprocess_input(x, data_format=None):
    """Pixels scaled to [-1, 1] ("tf" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="tf")


decode_predictions = iu.decode_predictions
