"""fastnn.applications: Keras's keras.applications CNNs, with Keras's constructors and
arguments, layer names, parameter counts, weight order and weight files, plus AlexNet.

    from fastnn import applications
    model = applications.ResNet50(weights="resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    probs = model.predict(applications.resnet50.preprocess_input(images))

`weights` is None (random), a file path (Keras 3 `.weights.h5`, or the legacy `.h5` files
Keras publishes for these models) or "imagenet" (Keras's file, when it is already on disk in
~/.keras/models/ or ~/.fastnn/models/: fastnn never downloads). Each family module has its own
`preprocess_input` and `decode_predictions` (docs/applications.md).
"""
from fastnn.applications import (alexnet, densenet, efficientnet, imagenet_utils, inception_v3,  # noqa: F401
                                 mobilenet, mobilenet_v2, resnet, resnet50, resnet_v2, vgg16, vgg19, xception)
from fastnn.applications.alexnet import AlexNet
from fastnn.applications.densenet import DenseNet121, DenseNet169, DenseNet201
from fastnn.applications.efficientnet import EfficientNetB0, EfficientNetB1, EfficientNetB2, EfficientNetB3
from fastnn.applications.inception_v3 import InceptionV3
from fastnn.applications.mobilenet import MobileNet
from fastnn.applications.mobilenet_v2 import MobileNetV2
from fastnn.applications.resnet import ResNet50, ResNet50V2, ResNet101, ResNet101V2, ResNet152, ResNet152V2
from fastnn.applications.vgg import VGG16, VGG19
from fastnn.applications.xception import Xception

__all__ = ["AlexNet", "DenseNet121", "DenseNet169", "DenseNet201", "EfficientNetB0", "EfficientNetB1",
           "EfficientNetB2", "EfficientNetB3", "InceptionV3", "MobileNet", "MobileNetV2", "ResNet50", "ResNet50V2",
           "ResNet101", "ResNet101V2", "ResNet152", "ResNet152V2", "VGG16", "VGG19", "Xception",
           "alexnet", "densenet", "efficientnet", "imagenet_utils", "inception_v3", "mobilenet", "mobilenet_v2",
           "resnet", "resnet50", "resnet_v2", "vgg16", "vgg19", "xception"]
