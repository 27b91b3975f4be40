"""The Keras MNIST convnet on the real data: >= 99.0% test accuracy within 12 epochs."""
import time

import numpy as np
import pytest

import fastnn
from fastnn import layers as L


def _load(mnist_dir):
    from fastnn.datasets import mnist
    (x, y), (xt, yt) = mnist.load_data(mnist_dir)
    prep = lambda a: (a.astype(np.float32) / 255.0)[..., None]  # noqa: E731
    return prep(x), np.eye(10, dtype=np.float32)[y], prep(xt), np.eye(10, dtype=np.float32)[yt]


@pytest.mark.slow
def test_mnist_convnet_reaches_99_percent(mnist_dir, capsys):
    fastnn._random.set_seed(1337)
    x, y, xt, yt = _load(mnist_dir)
    model = fastnn.models.Sequential([
        fastnn.Input((28, 28, 1)),
        L.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    test_acc, times = [], []

    class TestAccuracy(fastnn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)
            test_acc.append(model.evaluate(xt, yt, batch_size=500, verbose=0, return_dict=True)["accuracy"])
            if test_acc[-1] >= 0.99:
                self.model.stop_training = True

    hist = model.fit(x, y, batch_size=128, epochs=12, validation_split=0.1, verbose=2, callbacks=[TestAccuracy()])
    with capsys.disabled():
        print(f"\nMNIST convnet: test accuracy per epoch {[round(a, 4) for a in test_acc]}, "
              f"seconds per epoch {[round(t, 1) for t in times]}")
    assert max(test_acc) >= 0.99, test_acc
    assert len(hist.history["loss"]) <= 12
    assert hist.history["val_accuracy"][-1] > 0.985
