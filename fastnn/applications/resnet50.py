"""keras.applications.resnet50: ResNet50, preprocess_input and decode_predictions (built in resnet.py)."""
from fastnn.applications.resnet import ResNet50, decode_predictions, preprocess_input  # noqa: F401
