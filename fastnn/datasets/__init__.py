"""Keras-compatible datasets: `mnist`, `fashion_mnist` (IDX files, downloaded and checked),
`imdb` (Keras's imdb.npz: reviews as word ids) and `digits` (scikit-learn's 8x8 digits, offline).

    (x_train, y_train), (x_test, y_test) = fastnn.datasets.mnist.load_data()
"""
from fastnn.datasets import digits, fashion_mnist, imdb, mnist
from fastnn.datasets._idx import DatasetError

__all__ = ["mnist", "fashion_mnist", "imdb", "digits", "DatasetError"]
