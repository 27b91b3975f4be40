"""fastnn.utils: Keras's to_categorical/normalize, the shuffled split, seeding, plots."""
import numpy as np
import pytest

from fastnn import utils


def test_to_categorical_matches_keras_definition():
    y = np.array([0, 2, 1, 2])
    out = utils.to_categorical(y)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[y])
    assert utils.to_categorical(y, num_classes=5).shape == (4, 5)
    assert utils.to_categorical(y.reshape(4, 1)).shape == (4, 3)  # trailing 1 dropped
    assert utils.to_categorical(y.reshape(2, 2)).shape == (2, 2, 3)
    assert utils.to_categorical(np.array([1.0, 0.0])).tolist() == [[0, 1], [1, 0]]


def test_to_categorical_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="labels must lie"):
        utils.to_categorical([-1, 1])
    with pytest.raises(ValueError, match="integer class labels"):
        utils.to_categorical([0.5, 1.0])
    with pytest.raises(ValueError, match="num_classes"):
        utils.to_categorical([0, 1], num_classes=-2)


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    out = utils.normalize(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0, 0]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(utils.normalize(x, axis=0, order=1), [[1, 1], [0, 0]])
    np.testing.assert_allclose(np.linalg.norm(utils.normalize(np.random.rand(5, 7)), axis=-1), 1)


def test_train_val_split_shuffles_then_splits():
    x = np.arange(100).reshape(100, 1)
    y = np.arange(100)
    (xt, yt), (xv, yv) = utils.train_val_split(x, y, 0.2, seed=0)
    assert len(xt) == 80 and len(xv) == 20
    np.testing.assert_array_equal(xt[:, 0], yt)  # pairs stay together
    np.testing.assert_array_equal(xv[:, 0], yv)
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(100))
    assert not np.array_equal(yv, np.arange(80, 100))  # shuffled, not Keras's tail
    (_, _), (_, yv2) = utils.train_val_split(x, y, 0.2, seed=0)
    np.testing.assert_array_equal(yv, yv2)
    (_, _), (_, yv3) = utils.train_val_split(x, y, 0.2, shuffle=False)
    np.testing.assert_array_equal(yv3, np.arange(80, 100))


def test_train_val_split_follows_global_seed():
    x = np.arange(50)
    utils.set_random_seed(3)
    a = utils.train_val_split(x, x, 0.1)[1][0]
    utils.set_random_seed(3)
    b = utils.train_val_split(x, x, 0.1)[1][0]
    np.testing.assert_array_equal(a, b)


def test_train_val_split_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        utils.train_val_split(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="val_fraction"):
        utils.train_val_split(np.zeros(3), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="no training samples"):
        utils.train_val_split(np.zeros(1), np.zeros(1), 0.5)


def test_set_random_seed_seeds_everything():
    import random
    from fastnn import _random
    utils.set_random_seed(7)
    a = (_random.generator().random(), random.random(), np.random.rand())
    utils.set_random_seed(7)
    b = (_random.generator().random(), random.random(), np.random.rand())
    assert a == b
    with pytest.raises(ValueError, match="seed"):
        utils.set_random_seed(-1)


def test_plot_history(tmp_path, require):
    require("matplotlib")

    class History:
        history = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6],
                   "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.4, 0.7, 0.8]}
    fig = utils.plot_history(History(), path=tmp_path / "h.png", title="t")
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert len(fig.axes) == 2
    assert [l.get_label() for l in fig.axes[0].get_lines()] == ["train loss", "validation loss"]
    with pytest.raises(ValueError, match="not in the history"):
        utils.plot_history(History.history, metrics=["mae"])
    with pytest.raises(ValueError, match="History or a non-empty dict"):
        utils.plot_history({})
    import matplotlib.pyplot as plt
    plt.close("all")


def test_lazy_model_names():
    with pytest.raises(AttributeError, match="no attribute"):
        utils.does_not_exist
