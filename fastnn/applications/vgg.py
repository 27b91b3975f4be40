"""VGG16 and VGG19 (Simonyan & Zisserman, 2014), as keras.applications.vgg16 / vgg19 build
them: five blocks of 3x3 'same' ReLU convolutions, each closed by a 2x2 max pool, then
Flatten -> fc1 -> fc2 -> predictions. Inputs are preprocessed in "caffe" mode.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

# filters per block and convolutions per block
_BLOCKS = {16: ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
           19: ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))}


def vgg_block(x, filters, convs, block):
    """`convs` 3x3 ReLU convolutions blockK_convI, then blockK_pool."""
    for i in range(1, convs + 1):
        x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{i}")(x)
    return layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)


def vgg_stack(x, depth):
    for b, (filters, convs) in enumerate(_BLOCKS[depth], start=1):
        x = vgg_block(x, filters, convs, b)
    return x


def VGG(depth, include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
        classes=1000, classifier_activation="softmax", name=None):
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=224, min_size=32, require_flatten=include_top,
                                        weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)
    x = vgg_stack(img_input, depth)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        iu.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = iu.pooled(x, pooling)
    return iu.finish(img_input, input_tensor, x, name or f"vgg{depth}", weights,
                     iu.keras_file(f"vgg{depth}", include_top))


def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="vgg16"):
    """VGG16 with Keras's arguments, layer names and weight layout (138,357,544 parameters)."""
    return VGG(16, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name)


def VGG19(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="vgg19"):
    """VGG19 with Keras's arguments, layer names and weight layout (143,667,240 parameters)."""
    return VGG(19, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name)


def preprocess_input(x, data_format=None):
    """RGB -> BGR minus the ImageNet channel means ("caffe" mode)."""
    return iu.preprocess_input(x, data_format=data_format, mode="caffe")


decode_predictions = iu.decode_predictions
