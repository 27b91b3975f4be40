"""keras.applications.vgg16: VGG16, preprocess_input and decode_predictions (built in vgg.py)."""
from fastnn.applications.vgg import VGG16, decode_predictions, preprocess_input  # noqa: F401
