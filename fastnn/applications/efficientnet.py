"""EfficientNetB0-B3 (Tan & Le, 2019) as keras.applications.efficientnet builds them: the
input's Rescaling(1/255) and Normalization, a 3x3 stride-2 stem, seven stages of MBConv blocks
(1x1 expansion, depthwise conv, squeeze-and-excitation: global pool -> 1x1 reduce (swish) ->
1x1 expand (sigmoid) multiplied into the features, 1x1 projection; an identity shortcut with
stochastic depth, Dropout(noise_shape=(None, 1, 1, 1)), where shapes agree), scaled in width
and depth per variant, and a 1x1 conv to 1280 x width. The model includes its preprocessing:
`preprocess_input` returns its input unchanged.
"""
from __future__ import annotations

import math

from fastnn import layers
from fastnn.applications import imagenet_utils as iu

# (kernel, repeats, filters in, filters out, expansion, stride) per stage; every block has
# squeeze-and-excitation ratio 0.25 and an identity skip where shapes agree
DEFAULT_BLOCKS_ARGS = tuple(dict(kernel_size=k, repeats=r, filters_in=i, filters_out=o, expand_ratio=e,
                                 id_skip=True, strides=s, se_ratio=0.25)
                            for k, r, i, o, e, s in ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2),
                                                     (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
                                                     (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2),
                                                     (3, 1, 192, 320, 6, 1)))
CONV_KERNEL_INITIALIZER = {"class_name": "VarianceScaling",
                           "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}
DENSE_KERNEL_INITIALIZER = {"class_name": "VarianceScaling",
                            "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}}
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
# width, depth, default size, top dropout
VARIANTS = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
            "b3": (1.2, 1.4, 300, 0.3)}


def block(inputs, activation="swish", drop_rate=0.0, name="", filters_in=32, filters_out=16, kernel_size=3,
          strides=1, expand_ratio=1, se_ratio=0.0, id_skip=True):
    """One MBConv block (inverted residual with squeeze-and-excitation)."""
    filters = filters_in * expand_ratio
    x = inputs
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
                          name=f"{name}expand_conv")(x)
        x = layers.BatchNormalization(axis=3, name=f"{name}expand_bn")(x)
        x = layers.Activation(activation, name=f"{name}expand_activation")(x)
    conv_pad = "same"
    if strides == 2:
        x = layers.ZeroPadding2D(padding=iu.correct_pad(x, kernel_size), name=f"{name}dwconv_pad")(x)
        conv_pad = "valid"
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding=conv_pad, use_bias=False,
                               depthwise_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}dwconv")(x)
    x = layers.BatchNormalization(axis=3, name=f"{name}bn")(x)
    x = layers.Activation(activation, name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        filters_se = max(1, int(filters_in * se_ratio))
        se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
        se = layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
        se = layers.Conv2D(filters_se, 1, padding="same", activation=activation,
                           kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_reduce")(se)
        se = layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                           kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_expand")(se)
        x = layers.multiply([x, se], name=f"{name}se_excite")
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
                      name=f"{name}project_conv")(x)
    x = layers.BatchNormalization(axis=3, name=f"{name}project_bn")(x)
    if id_skip and strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.add([x, inputs], name=f"{name}add")
    return x


def EfficientNet(width_coefficient, depth_coefficient, default_size, dropout_rate=0.2, drop_connect_rate=0.2,
                 depth_divisor=8, activation="swish", blocks_args="default", name="efficientnet", include_top=True,
                 weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
                 classifier_activation="softmax", weights_name=None):
    """The EfficientNet skeleton (Keras's efficientnet.EfficientNet)."""
    blocks_args = DEFAULT_BLOCKS_ARGS if blocks_args == "default" else blocks_args
    iu.check_weights(weights, include_top, classes)
    input_shape = iu.obtain_input_shape(input_shape, default_size=default_size, min_size=32,
                                        require_flatten=include_top, weights=weights)
    img_input = iu.image_input(input_tensor, input_shape)

    def round_filters(filters, divisor=depth_divisor):
        filters *= width_coefficient
        new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
        return int(new + divisor if new < 0.9 * filters else new)

    def round_repeats(repeats):
        return int(math.ceil(depth_coefficient * repeats))

    x = layers.Rescaling(1.0 / 255.0)(img_input)
    x = layers.Normalization(axis=3)(x)
    if weights == "imagenet":   # the published weights expect the std division too
        x = layers.Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB])(x)
    x = layers.ZeroPadding2D(padding=iu.correct_pad(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(round_filters(32), 3, strides=2, padding="valid", use_bias=False,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, name="stem_conv")(x)
    x = layers.BatchNormalization(axis=3, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)
    total = float(sum(round_repeats(a["repeats"]) for a in blocks_args))
    b = 0
    for i, args in enumerate(blocks_args):
        args = dict(args)
        if args["repeats"] <= 0:
            raise ValueError(f"EfficientNet: every stage needs repeats > 0; stage {i} has {args['repeats']}.")
        args["filters_in"] = round_filters(args["filters_in"])
        args["filters_out"] = round_filters(args["filters_out"])
        for j in range(round_repeats(args.pop("repeats"))):
            if j > 0:
                args["strides"] = 1
                args["filters_in"] = args["filters_out"]
            x = block(x, activation, drop_connect_rate * b / total, name=f"block{i + 1}{chr(j + 97)}_", **args)
            b += 1
    x = layers.Conv2D(round_filters(1280), 1, padding="same", use_bias=False,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, name="top_conv")(x)
    x = layers.BatchNormalization(axis=3, name="top_bn")(x)
    x = layers.Activation(activation, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        iu.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, kernel_initializer=DENSE_KERNEL_INITIALIZER,
                         name="predictions")(x)
    else:
        x = iu.pooled(x, pooling, "avg_pool", "max_pool")
    return iu.finish(img_input, input_tensor, x, name, weights,
                     f"{name}{'.h5' if include_top else '_notop.h5'}")


def _variant(key, name, kw):
    width, depth, size, dropout = VARIANTS[key]
    return EfficientNet(width, depth, size, dropout, name=name, weights_name=key, **kw)


def EfficientNetB0(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                   classes=1000, classifier_activation="softmax", name="efficientnetb0"):
    """EfficientNetB0 with Keras's arguments, layer names and weight layout (5,330,571 parameters)."""
    return _variant("b0", name, dict(include_top=include_top, weights=weights, input_tensor=input_tensor,
                                     input_shape=input_shape, pooling=pooling, classes=classes,
                                     classifier_activation=classifier_activation))


def EfficientNetB1(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                   classes=1000, classifier_activation="softmax", name="efficientnetb1"):
    """EfficientNetB1 with Keras's arguments, layer names and weight layout (7,856,239 parameters)."""
    return _variant("b1", name, dict(include_top=include_top, weights=weights, input_tensor=input_tensor,
                                     input_shape=input_shape, pooling=pooling, classes=classes,
                                     classifier_activation=classifier_activation))


def EfficientNetB2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                   classes=1000, classifier_activation="softmax", name="efficientnetb2"):
    """EfficientNetB2 with Keras's arguments, layer names and weight layout (9,177,569 parameters)."""
    return _variant("b2", name, dict(include_top=include_top, weights=weights, input_tensor=input_tensor,
                                     input_shape=input_shape, pooling=pooling, classes=classes,
                                     classifier_activation=classifier_activation))


def EfficientNetB3(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                   classes=1000, classifier_activation="softmax", name="efficientnetb3"):
    """EfficientNetB3 with Keras's arguments, layer names and weight layout (12,320,535 parameters)."""
    return _variant("b3", name, dict(include_top=include_top, weights=weights, input_tensor=input_tensor,
                                     input_shape=input_shape, pooling=pooling, classes=classes,
                                     classifier_activation=classifier_activation))


def preprocess_input(x, data_format=None):
    """The identity: EfficientNet models rescale and normalise inside (kept for API parity)."""
    return x


decode_predictions = iu.decode_predictions
