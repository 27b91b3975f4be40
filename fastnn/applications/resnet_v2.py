"""keras.applications.resnet_v2: the pre-activation ResNets (built in resnet.py) and their "tf"
mode preprocess_input."""
from fastnn.applications.resnet import ResNet50V2, ResNet101V2, ResNet152V2, decode_predictions  # noqa: F401
from fastnn.applications.resnet import preprocess_input_v2 as preprocess_input  # noqa: F401
