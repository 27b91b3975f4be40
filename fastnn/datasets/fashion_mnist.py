"""Fashion-MNIST (Zalando): 60,000 training and 10,000 test images of clothes, 28x28 uint8.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
8 Bag, 9 Ankle boot.
"""
from __future__ import annotations

from fastnn.datasets import _idx

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")

SPEC = _idx.Spec(
    name="fashion_mnist",
    sha256={
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    mirrors=("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
             "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
)


def load_data(path=None):
    """Load Fashion-MNIST as Keras does -> (x_train, y_train), (x_test, y_test), all uint8.

    Shapes as MNIST: (60000, 28, 28), (60000,), (10000, 28, 28), (10000,). Files are looked for
    in `path`, $FASTNN_DATA/fashion_mnist, $FASTNN_DATA and ~/.fastnn/datasets/fashion_mnist/,
    and downloaded there (SHA-256 checked) when absent.
    """
    return _idx.load(SPEC, path)


def find(path=None):
    """The folder holding the Fashion-MNIST files, without downloading; None when absent."""
    return _idx.find(SPEC, path)
