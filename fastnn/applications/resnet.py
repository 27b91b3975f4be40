"""ResNet50/101/152 (He et al., 2015) and ResNet50V2/101V2/152V2 (pre-activation, He et al.,
2016), as keras.applications.resnet / resnet_v2 build them: a 7x7 stride-2 stem, four stacks of
bottleneck blocks (1x1 -> 3x3 -> 1x1 convolutions, 4x wider output, biases in every conv,
batch norm epsilon 1.001e-5), global average pooling and the classifier.

v1 inputs are preprocessed in "caffe" mode (`resnet.preprocess_input`), v2 in "tf" mode
(`resnet_v2.preprocess_input`).
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

BN_EPSILON = 1.001e-5
# bottleneck filters and blocks per stack (conv2 .. conv5)
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
FILTERS = (64, 128, 256, 512)


def _bn(name):
    return layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name=name)


def residual_block_v1(x, filters, kernel_size=3, stride=1, conv_shortcut=True, name=None):
    """Post-activation bottleneck: conv-BN-ReLU x2, conv-BN, add the shortcut, ReLU."""
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    steps = ((filters, 1, stride, "valid"), (filters, kernel_size, 1, "same"), (4 * filters, 1, 1, "valid"))
    for i, (f, k, s, pad) in enumerate(steps, start=1):
        x = layers.Conv2D(f, k, strides=s, padding=pad, name=f"{name}_{i}_conv")(x)
        x = _bn(f"{name}_{i}_bn")(x)
        if i < 3:
            x = layers.Activation("relu", name=f"{name}_{i}_relu")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def stack_residual_blocks_v1(x, filters, blocks, stride1=2, name=None):
    """The first block projects the shortcut (and strides), the others add the identity."""
    x = residual_block_v1(x, filters, stride=stride1, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = residual_block_v1(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


def residual_block_v2(x, filters, kernel_size=3, stride=1, conv_shortcut=False, name=None):
    """Pre-activation bottleneck: BN-ReLU first; the stride sits on the 3x3 conv, and an identity
    shortcut of a strided block is a 1x1 stride-s max pool."""
    preact = _bn(f"{name}_preact_bn")(x)
    preact = layers.Activation("relu", name=f"{name}_preact_relu")(preact)
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride)(x)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=1, use_bias=False, name=f"{name}_1_conv")(preact)
    x = layers.Activation("relu", name=f"{name}_1_relu")(_bn(f"{name}_1_bn")(x))
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name=f"{name}_2_pad")(x)
    x = layers.Conv2D(filters, kernel_size, strides=stride, use_bias=False, name=f"{name}_2_conv")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(_bn(f"{name}_2_bn")(x))
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    return layers.Add(name=f"{name}_out")([shortcut, x])


def stack_residual_blocks_v2(x, filters, blocks, stride1=2, name=None):
    """v2 stacks stride in their last block (the first projects the shortcut)."""
    x = residual_block_v2(x, filters, conv_shortcut=True, name=f"{name}_block1")
    for i in range(2, blocks):
        x = residual_block_v2(x, filters, name=f"{name}_block{i}")
    return residual_block_v2(x, filters, stride=stride1, name=f"{name}_block{blocks}")


def ResNet(stack_fn, preact, use_bias, include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
           pooling=None, classes=1000, classifier_activation="softmax", name="resnet", weights_name=None):
    """The ResNet skeleton around `stack_fn(x) -> x` (Keras's resnet.ResNet)."""
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=224, min_size=32, require_flatten=include_top,
                                        weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    if not preact:
        x = layers.Activation("relu", name="conv1_relu")(_bn("conv1_bn")(x))
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = stack_fn(x)
    if preact:
        x = layers.Activation("relu", name="post_relu")(_bn("post_bn")(x))
    x = iu.top_or_pool(x, include_top, pooling, classes, classifier_activation, weights,
                       pool_avg_name="avg_pool", pool_max_name="max_pool")
    return iu.finish(img_input, input_tensor, x, name, weights,
                     iu.keras_file(weights_name, include_top) if weights_name else None)


def _v1_stacks(depth):
    def stack_fn(x):
        for k, (filters, blocks) in enumerate(zip(FILTERS, DEPTHS[depth])):
            x = stack_residual_blocks_v1(x, filters, blocks, stride1=1 if k == 0 else 2, name=f"conv{k + 2}")
        return x
    return stack_fn


def _v2_stacks(depth):
    def stack_fn(x):
        for k, (filters, blocks) in enumerate(zip(FILTERS, DEPTHS[depth])):
            x = stack_residual_blocks_v2(x, filters, blocks, stride1=1 if k == 3 else 2, name=f"conv{k + 2}")
        return x
    return stack_fn


def _v1(depth, name, **kw):
    return ResNet(_v1_stacks(depth), False, True, name=name, weights_name=f"resnet{depth}", **kw)


def _v2(depth, name, **kw):
    return ResNet(_v2_stacks(depth), True, True, name=name, weights_name=f"resnet{depth}v2", **kw)


def ResNet50(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="resnet50"):
    """ResNet50 with Keras's arguments, layer names and weight layout (25,636,712 parameters)."""
    return _v1(50, name, include_top=include_top, weights=weights, input_tensor=input_tensor,
               input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation)


def ResNet101(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax", name="resnet101"):
    """ResNet101 with Keras's arguments, layer names and weight layout (44,707,176 parameters)."""
    return _v1(101, name, include_top=include_top, weights=weights, input_tensor=input_tensor,
               input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation)


def ResNet152(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax", name="resnet152"):
    """ResNet152 with Keras's arguments, layer names and weight layout (60,419,944 parameters)."""
    return _v1(152, name, include_top=include_top, weights=weights, input_tensor=input_tensor,
               input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation)


def ResNet50V2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
               classifier_activation="softmax", name="resnet50v2"):
    """ResNet50V2 (pre-activation) with Keras's arguments, names and weights (25,613,800 parameters)."""
    return _v2(50, name, include_top=include_top, weights=weights, input_tensor=input_tensor,
               input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation)


def ResNet101V2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="resnet101v2"):
    """ResNet101V2 (pre-activation) with Keras's arguments, names and weights (44,675,560 parameters)."""
    return _v2(101, name, include_top=include_top, weights=weights, input_tensor=input_tensor,
               input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation)


def ResNet152V2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="resnet152v2"):
    """ResNet152V2 (pre-activation) with Keras's arguments, names and weights (60,380,648 parameters)."""
    return _v2(152, name, include_top=include_top, weights=weights, input_tensor=input_tensor,
               input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation)


def preprocess_input(x, data_format=None):
    """ResNet v1: RGB -> BGR minus the ImageNet channel means ("caffe" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="caffe")


def preprocess_input_v2(x, data_format=None):
    """ResNet v2: pixels scaled to [-1, 1] ("tf" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="tf")


decode_predictions = iu.decode_predictions
