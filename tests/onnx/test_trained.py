"""A trained M2 (the Keras MNIST convnet of bench/peers.py) written with model.export(path,
format="onnx") and run by ONNX Runtime from the file: the same probabilities (1e-4) at batch 1 and
a large batch, the same predicted digits, the same test accuracy."""
import numpy as np

from oracles import require

onnx = require("onnx")
ort = require("onnxruntime")

import fastnn  # noqa: E402
from fastnn import layers as L  # noqa: E402

from onnxutil import TOL  # noqa: E402


def m2():
    model = fastnn.Sequential([
        fastnn.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")], name="m2")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_trained_m2_runs_in_onnx_runtime(mnist_dir, tmp_path):
    from fastnn.datasets import mnist
    (x_train, y_train), (x_test, y_test) = mnist.load_data(mnist_dir)
    x_train = (x_train[:12000, ..., None] / 255.0).astype(np.float32)
    x_test = (x_test[:1000, ..., None] / 255.0).astype(np.float32)
    fastnn.utils.set_random_seed(0)
    model = m2()
    model.fit(x_train, y_train[:12000], batch_size=128, epochs=2, verbose=0)
    path = tmp_path / "m2.onnx"
    model.export(path, format="onnx")

    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    assert name == model.input_names[0]
    want = model.predict(x_test, batch_size=250, verbose=0)
    got = np.concatenate([sess.run(None, {name: x_test[i:i + 250]})[0] for i in range(0, 1000, 250)])
    err = np.max(np.abs(got - want))
    assert err <= TOL, f"max probability difference {err:.3g}"   # measured 1.3e-6 (probabilities in [0, 1])
    one = sess.run(None, {name: x_test[:1]})[0]
    np.testing.assert_allclose(one, want[:1], atol=TOL)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    accuracy = float(np.mean(got.argmax(1) == y_test[:1000]))
    assert accuracy > 0.9, f"the exported M2 is not a trained one: accuracy {accuracy:.3f}"
