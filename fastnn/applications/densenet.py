"""DenseNet121/169/201 (Huang et al., 2017) as keras.applications.densenet builds them: a 7x7
stride-2 stem, four dense blocks whose layers (BN -> ReLU -> 1x1 conv to 128 -> BN -> ReLU ->
3x3 conv to 32) each concatenate their 32 new channels to everything before, and transition
blocks (BN -> ReLU -> 1x1 conv halving the channels -> 2x2 average pool) between them. Inputs
are preprocessed in "torch" mode.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

BN_EPSILON = 1.001e-5
GROWTH_RATE = 32
BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}


def _bn_relu(x, name):
    x = layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def conv_block(x, growth_rate, name):
    """One dense layer: its `growth_rate` new channels concatenated after x's."""
    x1 = _bn_relu(x, f"{name}_0")
    x1 = layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(x1)
    x1 = _bn_relu(x1, f"{name}_1")
    x1 = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x1)
    return layers.Concatenate(axis=3, name=f"{name}_concat")([x, x1])


def dense_block(x, blocks, name):
    for i in range(blocks):
        x = conv_block(x, GROWTH_RATE, name=f"{name}_block{i + 1}")
    return x


def transition_block(x, reduction, name):
    x = _bn_relu(x, name)
    x = layers.Conv2D(int(x.shape[3] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def DenseNet(blocks, include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="densenet"):
    """The DenseNet skeleton for `blocks` dense layers per block (Keras's densenet.DenseNet)."""
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=224, min_size=32, require_flatten=include_top,
                                        weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)))(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn_relu(x, "conv1")
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)))(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for k, n in enumerate(blocks):
        x = dense_block(x, n, name=f"conv{k + 2}")
        if k < 3:
            x = transition_block(x, 0.5, name=f"pool{k + 2}")
    x = layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = iu.top_or_pool(x, include_top, pooling, classes, classifier_activation, weights,
                       pool_avg_name="avg_pool", pool_max_name="max_pool")
    depth = {v: k for k, v in BLOCKS.items()}.get(tuple(blocks))
    return iu.finish(img_input, input_tensor, x, name, weights,
                     iu.keras_file(f"densenet{depth}", include_top) if depth else None)


def DenseNet121(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="densenet121"):
    """DenseNet121 with Keras's arguments, layer names and weight layout (8,062,504 parameters)."""
    return DenseNet(BLOCKS[121], include_top, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name=name)


def DenseNet169(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="densenet169"):
    """DenseNet169 with Keras's arguments, layer names and weight layout (14,307,880 parameters)."""
    return DenseNet(BLOCKS[169], include_top, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name=name)


def DenseNet201(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="densenet201"):
    """DenseNet201 with Keras's arguments, layer names and weight layout (20,242,984 parameters)."""
    return DenseNet(BLOCKS[201], include_top, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name=name)


def preprocess_input(x, data_format=None):
    """Pixels to [0, 1], then the ImageNet mean and std per channel ("torch" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="torch")


decode_predictions = iu.decode_predictions
