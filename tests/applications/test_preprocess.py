"""preprocess_input per family (caffe, tf and torch modes) and decode_predictions, against
keras.applications' own functions."""
import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

from fastnn import applications as apps

FAMILIES = {"vgg16": "caffe", "vgg19": "caffe", "resnet": "caffe", "resnet50": "caffe", "resnet_v2": "tf",
            "inception_v3": "tf", "xception": "tf", "mobilenet": "tf", "mobilenet_v2": "tf", "densenet": "torch",
            "efficientnet": None}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (6, 7, 3)])
def test_preprocess_input_matches_keras(family, shape, keras, rng):
    x = rng.uniform(0, 255, shape).astype(np.float32)
    want = getattr(keras.applications, family).preprocess_input(x.copy())
    got = getattr(apps, "resnet" if family == "resnet" else family).preprocess_input(x.copy())
    # one or two float32 roundings per value, the same operations in the same order
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_modes_and_integer_input(mode, keras, rng):
    x = rng.integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    got = apps.imagenet_utils.preprocess_input(x, mode=mode)
    want = keras.applications.imagenet_utils.preprocess_input(x.astype(np.float32), mode=mode)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        apps.imagenet_utils.preprocess_input(x, mode="keras")


def test_decode_predictions_with_a_class_index_file(tmp_path, rng):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    preds = rng.uniform(0, 1, (2, 1000)).astype(np.float32)
    preds[0, 17], preds[1, 999] = 5.0, 4.0
    out = apps.resnet50.decode_predictions(preds, top=3, class_index=str(path))
    assert len(out) == 2 and len(out[0]) == 3
    assert out[0][0][:2] == ("n00000017", "class_17") and out[0][0][2] == pytest.approx(5.0)
    assert out[1][0][1] == "class_999"
    assert [t[2] for t in out[0]] == sorted((t[2] for t in out[0]), reverse=True)
    assert [t[1] for t in out[1]] == [f"class_{i}" for i in np.argsort(preds[1])[::-1][:3]]
    assert apps.mobilenet.decode_predictions(preds, top=1, class_index=index)[1][0][1] == "class_999"
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        apps.vgg16.decode_predictions(preds[:, :10], class_index=index)
