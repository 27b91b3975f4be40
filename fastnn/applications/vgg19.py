"""keras.applications.vgg19: VGG19, preprocess_input and decode_predictions (built in vgg.py)."""
from fastnn.applications.vgg import VGG19, decode_predictions, preprocess_input  # noqa: F401
