"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as the study notes describe it: five
convolutional layers with max pooling (11x11 stride 4 -> pool, 5x5 -> pool, 3x3, 3x3, 3x3 ->
pool) and three dense layers with dropout between them (4096 -> 4096 -> classes), ReLU
throughout. Keras has no AlexNet; this one follows the applications' constructor (include_top,
weights, input_tensor, input_shape, pooling, classes, classifier_activation) in one tower
(the original split it over two GPUs and used local response normalisation, left out as the
notes do). There are no published weights: `weights` is None or a file path.
"""
from __future__ import annotations

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

# filters, kernel, stride, max pool after
CONVS = ((96, 11, 4, True), (256, 5, 1, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, True))


def alexnet_features(x):
    """conv1 .. conv5 with their pools (pool1, pool2, pool5): 3x3 stride-2 max pooling."""
    for i, (filters, k, s, pool) in enumerate(CONVS, start=1):
        x = layers.Conv2D(filters, k, strides=s, padding="valid" if i == 1 else "same", activation="relu",
                          name=f"conv{i}")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{i}")(x)
    return x


def AlexNet(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
            classifier_activation="softmax", dropout=0.5, name="alexnet"):
    """AlexNet as the notes describe it: 5 conv + pooling layers, 3 dense layers with dropout
    (62,378,344 parameters at 227x227x3 and 1000 classes). Preprocess with `alexnet.preprocess_input` ("caffe" mode)."""
    if weights == "imagenet":
        raise ValueError("AlexNet has no published Keras weights: pass weights=None or the path of a weight file.")
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=227, min_size=63, require_flatten=include_top,
                                        weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)
    x = alexnet_features(img_input)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc6")(x)
        x = layers.Dropout(dropout, name="drop6")(x)
        x = layers.Dense(4096, activation="relu", name="fc7")(x)
        x = layers.Dropout(dropout, name="drop7")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = iu.pooled(x, pooling, "avg_pool", "max_pool")
    return iu.finish(img_input, input_tensor, x, name, weights)


def preprocess_input(x, data_format=None):
    """RGB -> BGR minus the ImageNet channel means ("caffe" mode, as the original's mean image)."""
    return iu.preprocess_input(x, data_format=data_format, mode="caffe")


decode_predictions = iu.decode_predictions
