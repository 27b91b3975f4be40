"""fastnn.applications against keras.applications (Keras 3, torch backend, weights=None).

For each architecture, built in both libraries at a small input size: the layer classes and
names in model.layers order (names Keras numbers itself, e.g. conv2d_7, compared as
auto-names: the counters depend on what the process built before), parameter counts, weight
order and shapes, predictions with Keras's weights copied in (the 1-D weights redrawn in
[0.5, 1.5] first so every batch norm does real work), and the weight files: Keras's
`save_weights` loaded through `weights=path`, fastnn's file loaded by Keras, and the legacy
HDF5 layout Keras publishes for these models (layer groups listed in `layer_names`, each with
`weight_names`), written here with h5py and read by both libraries.

Tolerance: logits (classifier_activation=None) agree to <= 3e-6 of their largest magnitude
(measured over these models: float32 sums over up to 2048-channel convolutions in another
order, Winograd in fastnn against direct convolutions in torch); asserted at 1e-4 of it.
"""
import gc
import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn
from fastnn import applications as apps
from fastnn.layers.base import snake_case
from oracles import require

keras = None


@pytest.fixture(autouse=True)
def _oracle(request):
    global keras
    keras = request.getfixturevalue("keras")


h5py = require("h5py")   # skips the module without it, fails it under CI (FASTNN_REQUIRE_ORACLES=1)

# name, keras constructor, input size; the default run builds the lighter or representative
# members of each family at a small size, the rest are marked slow
FAST = [("VGG16", 32), ("ResNet50", 32), ("ResNet50V2", 32), ("InceptionV3", 75), ("Xception", 71),
        ("MobileNet", 32), ("MobileNetV2", 32), ("DenseNet121", 32), ("EfficientNetB0", 32)]
SLOW = [("VGG19", 32), ("ResNet101", 32), ("ResNet152", 32), ("ResNet101V2", 32), ("ResNet152V2", 32),
        ("DenseNet169", 32), ("DenseNet201", 32), ("EfficientNetB1", 32), ("EfficientNetB2", 32),
        ("EfficientNetB3", 32)]
CASES = FAST + [pytest.param(*c, marks=pytest.mark.slow) for c in SLOW]
REL_TOL = 1e-4


def _names(model):
    """Layer names, with the ones a library made up itself (class name + counter) as <auto:class>."""
    out = []
    for layer in model.layers:
        base = snake_case(type(layer).__name__)
        if type(layer).__name__ == "Functional":
            base = "functional"
        out.append(f"<auto:{base}>" if re.fullmatch(rf"{re.escape(base)}(_\d+)?", layer.name) else layer.name)
    return out


def _build(lib, name, size, **kw):
    ctor = getattr(lib.applications, name)
    return ctor(weights=kw.pop("weights", None), input_shape=(size, size, 3), classes=7,
                classifier_activation=None, **kw)


def _redraw(weights, rng):
    """Keras's initial weights, with every 1-D weight (biases, BN gamma/beta/mean/variance,
    Normalization's mean/variance) drawn from [0.5, 1.5]; Normalization's int count kept."""
    out = []
    for w in weights:
        w = np.asarray(w)
        if w.ndim == 1 and w.dtype == np.float32:
            w = rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
        out.append(w)
    return out


def _assert_close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.abs(want).max()
    assert np.isfinite(scale) and scale > 0, what
    err = np.abs(got - want).max() / scale
    assert err <= REL_TOL, f"{what}: max error {err:.2e} of the largest output {scale:.3g}"


def write_legacy_h5(model, path):
    """The legacy Keras HDF5 weight layout of the published application files: root attribute
    `layer_names` (every layer, in model.layers order), a group per layer with `weight_names`
    ('<layer>/<weight>:0') and one dataset per weight under those names."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            g = f.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{v.name}:0" for v in variables]
            g.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for n, v in zip(names, variables):
                g.create_dataset(n, data=np.asarray(v.value))


@pytest.mark.parametrize("name,size", CASES)
def test_architecture_matches_keras(name, size, tmp_path, rng):
    km = _build(keras, name, size)
    fm = _build(fastnn, name, size)
    assert [type(layer).__name__ for layer in fm.layers] == \
        [type(layer).__name__.replace("Functional", "Model") for layer in km.layers]
    assert _names(fm) == _names(km)
    assert fm.name == km.name
    assert fm.count_params() == km.count_params()
    kw = _redraw(km.get_weights(), rng)
    assert [w.shape for w in fm.get_weights()] == [w.shape for w in kw]
    km.set_weights(kw)
    fm.set_weights(kw)
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    want = np.asarray(km.predict(x, verbose=0))
    _assert_close(fm.predict(x, verbose=0), want, f"{name} predict")

    # Keras's .weights.h5 through the constructor's weights=path
    km.save_weights(tmp_path / "k.weights.h5")
    f2 = _build(fastnn, name, size, weights=str(tmp_path / "k.weights.h5"))
    _assert_close(f2.predict(x, verbose=0), want, f"{name} from Keras's .weights.h5")
    del f2

    # the published (legacy) HDF5 layout, read by both libraries
    write_legacy_h5(fm, tmp_path / "legacy.h5")
    f3 = _build(fastnn, name, size, weights=str(tmp_path / "legacy.h5"))
    _assert_close(f3.predict(x, verbose=0), want, f"{name} from the legacy .h5")
    del f3
    km.set_weights([np.zeros_like(w) for w in kw])
    km.load_weights(tmp_path / "legacy.h5")
    _assert_close(km.predict(x, verbose=0), want, f"Keras {name} from the legacy .h5 written here")

    # fastnn's .weights.h5 into Keras
    km.set_weights([np.zeros_like(w) for w in kw])
    fm.save_weights(tmp_path / "f.weights.h5")
    km.load_weights(tmp_path / "f.weights.h5")
    _assert_close(km.predict(x, verbose=0), want, f"Keras {name} from fastnn's .weights.h5")
    del km, fm
    gc.collect()


@pytest.mark.parametrize("name,kw", [("ResNet50", dict(pooling="avg")), ("MobileNetV2", dict(pooling="max", alpha=0.5)),
                                     ("MobileNet", dict(alpha=0.5, depth_multiplier=2)),
                                     ("DenseNet121", dict(pooling=None)), ("EfficientNetB0", dict(pooling="avg")),
                                     ("InceptionV3", dict(pooling="max")), ("VGG16", dict(pooling="avg"))])
def test_headless_variants_match_keras(name, kw, rng):
    """include_top=False with each pooling, and MobileNets' alpha / depth_multiplier."""
    size = 75 if name == "InceptionV3" else 32
    km = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(size, size, 3), **kw)
    fm = getattr(fastnn.applications, name)(weights=None, include_top=False, input_shape=(size, size, 3), **kw)
    assert _names(fm) == _names(km)
    assert fm.count_params() == km.count_params()
    w = _redraw(km.get_weights(), rng)
    km.set_weights(w)
    fm.set_weights(w)
    x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    _assert_close(fm.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)), name)


FULL = ["MobileNet", "MobileNetV2", "EfficientNetB0", "DenseNet121", "ResNet50"]
FULL_SLOW = ["VGG16", "VGG19", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2", "InceptionV3",
             "Xception", "DenseNet169", "DenseNet201", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3"]


@pytest.mark.parametrize("name", FULL + [pytest.param(n, marks=pytest.mark.slow) for n in FULL_SLOW])
def test_full_size_parameter_counts(name):
    """Keras's full-size models (default input size, 1000 classes), one model alive at a time."""
    kcount = getattr(keras.applications, name)(weights=None).count_params()
    gc.collect()
    fcount = getattr(fastnn.applications, name)(weights=None).count_params()
    gc.collect()
    assert fcount == kcount
    doc = getattr(fastnn.applications, name).__doc__
    assert f"{fcount:,}" in doc, f"{name}'s docstring should state its {fcount:,} parameters"


def test_input_tensor_and_errors():
    inp = fastnn.Input((40, 40, 3), name="img")
    m = apps.MobileNetV2(input_tensor=inp, weights=None, include_top=False, pooling="avg")
    assert m.inputs[0] is inp and m.output_shape == (None, 1280)
    x = fastnn.layers.Rescaling(1 / 255)(fastnn.Input((32, 32, 3), name="raw"))
    m = apps.ResNet50(input_tensor=x, weights=None, include_top=False)
    assert m.layers[0].name == "raw" and m.layers[1].name.startswith("rescaling")
    with pytest.raises(ValueError, match="at least 75x75"):
        apps.InceptionV3(weights=None, input_shape=(64, 64, 3), include_top=False)
    with pytest.raises(ValueError, match="`classes` should be 1000"):
        apps.ResNet50(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="weights"):
        apps.VGG16(weights="no/such/file.h5")
    with pytest.raises(FileNotFoundError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        apps.ResNet50(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="pooling"):
        apps.ResNet50(weights=None, include_top=False, pooling="mean")


def test_bad_weight_file_names_layer_and_shapes_and_loads_nothing(tmp_path, rng):
    """A file of another architecture (10 classes against 7; a missing layer) is refused with
    the layer and both shapes named, and the model keeps every weight it had."""
    other = apps.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10, alpha=0.35)
    other.save_weights(tmp_path / "other.weights.h5")
    write_legacy_h5(other, tmp_path / "other.h5")
    m = apps.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=7, alpha=0.35)
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(ValueError, match=r"'predictions'.*\(1280, 10\).*\(1280, 7\)"):
        m.load_weights(tmp_path / "other.weights.h5")
    with pytest.raises(ValueError, match=r"'predictions'.*\(1280, 10\).*\(1280, 7\)"):
        m.load_weights(tmp_path / "other.h5")
    headless = apps.MobileNetV2(weights=None, input_shape=(32, 32, 3), include_top=False, alpha=0.35)
    headless.save_weights(tmp_path / "headless.weights.h5")
    write_legacy_h5(headless, tmp_path / "headless.h5")
    with pytest.raises(ValueError, match="'predictions'"):
        m.load_weights(tmp_path / "headless.weights.h5")
    with pytest.raises(ValueError, match="'predictions'"):
        m.load_weights(tmp_path / "headless.h5")
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_alexnet_is_the_notes_network(rng):
    m = apps.AlexNet(weights=None)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds.count("Conv2D") == 5 and kinds.count("MaxPooling2D") == 3
    assert kinds.count("Dense") == 3 and kinds.count("Dropout") == 2
    assert m.output_shape == (None, 1000)
    assert f"{m.count_params():,}" in apps.AlexNet.__doc__
    assert "notes" in apps.AlexNet.__doc__ and "Keras has no AlexNet" in apps.alexnet.__doc__
    small = apps.AlexNet(weights=None, input_shape=(67, 67, 3), classes=5)
    p = small.predict(rng.uniform(0, 1, (2, 67, 67, 3)).astype(np.float32), verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="no published"):
        apps.AlexNet(weights="imagenet")
