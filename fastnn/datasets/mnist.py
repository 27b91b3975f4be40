"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8, labels 0-9."""
from __future__ import annotations

from fastnn.datasets import _idx

SPEC = _idx.Spec(
    name="mnist",
    sha256={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    mirrors=("https://storage.googleapis.com/cvdf-datasets/mnist/",
             "https://ossci-datasets.s3.amazonaws.com/mnist/"),
)


def load_data(path=None):
    """Load MNIST as Keras does -> (x_train, y_train), (x_test, y_test), all uint8.

    x_train (60000, 28, 28), y_train (60000,), x_test (10000, 28, 28), y_test (10000,).
    `path` is a folder holding the four standard IDX gzip files (train-images-idx3-ubyte.gz, ...);
    without it they are looked for in $FASTNN_DATA and ~/.fastnn/datasets/mnist/, and downloaded
    there (SHA-256 checked) when absent.
    """
    return _idx.load(SPEC, path)


def find(path=None):
    """The folder holding the MNIST files, without downloading; None when absent."""
    return _idx.find(SPEC, path)
