"""The Keras application architectures (fastnn.applications) exported to ONNX at small input sizes
and run by ONNX Runtime at two batch sizes: the logits of fastnn's predict, to 1e-4 of their
largest magnitude (the measure tests/applications uses against Keras: float32 sums over up to
2048-channel convolutions in another order; measured here: at most 3.8e-6 of it, ResNet50V2).

The applications come with their own branch; where fastnn has none, this module skips.
"""
import importlib
import importlib.util

import numpy as np
import pytest

from oracles import require

onnx = require("onnx")
require("onnxruntime")

import fastnn  # noqa: E402
import fastnn.onnx  # noqa: E402

if importlib.util.find_spec("fastnn.applications") is None:   # a part of fastnn, not an optional dependency
    pytest.skip("fastnn has no applications in this build (fastnn.applications is absent)", allow_module_level=True)
apps = importlib.import_module("fastnn.applications")

from onnxutil import BATCHES, session  # noqa: E402

REL_TOL = 1e-4
FAST = [("VGG16", 32), ("ResNet50", 32), ("ResNet50V2", 32), ("InceptionV3", 75), ("Xception", 71),
        ("MobileNet", 32), ("MobileNetV2", 32), ("DenseNet121", 32), ("EfficientNetB0", 32)]
SLOW = [("VGG19", 32), ("ResNet101", 32), ("ResNet152V2", 32), ("DenseNet169", 32), ("EfficientNetB3", 32)]


@pytest.mark.parametrize("name,size", FAST + [pytest.param(*c, marks=pytest.mark.slow) for c in SLOW])
def test_application(name, size):
    model = getattr(apps, name)(weights=None, input_shape=(size, size, 3), classes=7, classifier_activation=None)
    rng = np.random.default_rng(0)
    # every 1-D weight (biases, batch norm statistics) redrawn in [0.5, 1.5], so each does real work
    for v in model.weights:
        if v.value.ndim == 1 and v.value.dtype == np.float32:
            v.value[...] = rng.uniform(0.5, 1.5, v.shape)
    proto = fastnn.onnx.to_onnx(model)
    sess = session(proto)
    for batch in BATCHES:
        x = rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
        want = model.predict(x, batch_size=batch, verbose=0)
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        assert got.shape == want.shape
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert err <= REL_TOL, f"batch {batch}: error {err:.3g} of the largest logit"
