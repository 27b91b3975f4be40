"""Datasets: real MNIST through the Keras API, IDX reading errors, safe downloads (never real)."""
import gzip
import hashlib
import io
import os

import numpy as np
import pytest

from fastnn.datasets import DatasetError, _idx, digits, fashion_mnist, mnist


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test reads the user's cache, FASTNN_DATA or the network."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_OFFLINE", raising=False)

    def no_network(url, timeout):
        raise AssertionError(f"a test tried to download {url}")
    monkeypatch.setattr(_idx, "_urlopen", no_network)


def make_dataset(folder, n_train=5, n_test=3, shape=(28, 28), seed=0):
    """Four small IDX files in `folder`; returns the arrays and a Spec with their checksums."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    os.makedirs(folder, exist_ok=True)
    for f, a in arrays.items():
        _idx.write_idx(os.path.join(folder, f), a)
    sums = {f: _idx.sha256_of(os.path.join(folder, f)) for f in arrays}
    return arrays, _idx.Spec(name="tiny", sha256=sums, image_shape=shape)


# --- the real MNIST ---------------------------------------------------------------------------

def test_mnist_keras_shapes_and_labels(mnist_dir):
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=mnist_dir)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    # label counts from the data README; the first labels every MNIST user knows
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert x_train.max() == 255 and x_train.min() == 0
    assert x_train.flags.writeable


def test_mnist_found_through_fastnn_data(mnist_dir, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", mnist_dir)
    assert mnist.find() == mnist_dir
    (x, _), _ = mnist.load_data()
    assert x.shape == (60000, 28, 28)
    # the MNIST folder carries MNIST checksums: it must not pass for Fashion-MNIST
    assert fashion_mnist.find() is None


def test_mnist_as_fashion_mnist_is_a_checksum_error(mnist_dir):
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fashion_mnist.load_data(path=mnist_dir)


def test_offline_and_absent_says_where_to_put_files(monkeypatch):
    monkeypatch.setenv("FASTNN_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"Put the files train-images-idx3-ubyte.gz.*\.fastnn"):
        mnist.load_data()


def test_unreachable_mirrors_say_where_to_put_files(monkeypatch):
    import urllib.error

    def offline(url, timeout):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(_idx, "_urlopen", offline)
    with pytest.raises(DatasetError, match="could not download.*Put the files"):
        fashion_mnist.load_data()
    assert not os.listdir(_idx.cache_dir("fashion_mnist"))  # nothing half-written


# --- reading IDX files ------------------------------------------------------------------------

def test_load_small_dataset_from_path(tmp_path):
    arrays, spec = make_dataset(tmp_path / "d")
    (xtr, ytr), (xte, yte) = _idx.load(spec, tmp_path / "d")
    np.testing.assert_array_equal(xtr, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(yte, arrays["t10k-labels-idx1-ubyte.gz"])
    assert xte.shape == (3, 28, 28) and ytr.dtype == np.uint8


def test_search_order_path_env_cache(tmp_path, monkeypatch):
    _, spec = make_dataset(tmp_path / "p", seed=1)
    spec = _idx.Spec(name="tiny", sha256={}, image_shape=(28, 28))
    make_dataset(tmp_path / "env" / "tiny", seed=2)
    make_dataset(_idx.cache_dir("tiny"), seed=3)
    assert _idx.find(spec, tmp_path / "p") == str(tmp_path / "p")
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "env"))
    assert _idx.find(spec) == str(tmp_path / "env" / "tiny")
    monkeypatch.delenv("FASTNN_DATA")
    assert _idx.find(spec) == _idx.cache_dir("tiny")


def test_truncated_gzip_is_a_clear_error(tmp_path):
    _, spec = make_dataset(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="not a complete gzip file.*truncated"):
        _idx.read_idx(str(p), 2051)
    spec = _idx.Spec(name="tiny", sha256={})
    with pytest.raises(DatasetError, match="truncated"):
        _idx.load(spec, tmp_path)


def test_truncated_payload_is_a_clear_error(tmp_path):
    p = tmp_path / "x.gz"
    a = np.zeros((4, 28, 28), np.uint8)
    head = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    with gzip.open(p, "wb") as f:  # a valid gzip holding fewer bytes than the header says
        f.write(head + a.tobytes()[:-100])
    with pytest.raises(DatasetError, match=r"announces shape \(4, 28, 28\)"):
        _idx.read_idx(str(p), 2051)


def test_wrong_magic_is_a_clear_error(tmp_path):
    _, _ = make_dataset(tmp_path)
    # labels where images are expected: magic 2049, not 2051
    os.replace(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match=r"magic number 2049 .*expected 2051"):
        _idx.read_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), 2051)
    p = tmp_path / "float.gz"
    with gzip.open(p, "wb") as f:  # IDX float32 (type byte 0x0D) is not unsigned bytes
        f.write(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + b"\0" * 8)
    with pytest.raises(DatasetError, match="magic number"):
        _idx.read_idx(str(p))


def test_not_gzip_is_a_clear_error(tmp_path):
    p = tmp_path / "plain.gz"
    p.write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        _idx.read_idx(str(p))


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    _, spec = make_dataset(tmp_path)
    _idx.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.ones(3, np.uint8))  # altered
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*t10k-labels.*delete it"):
        _idx.load(spec, tmp_path)


def test_images_labels_count_mismatch(tmp_path):
    make_dataset(tmp_path)
    _idx.write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), np.ones(4, np.uint8))
    with pytest.raises(DatasetError, match="do not match"):
        _idx.load(_idx.Spec(name="tiny", sha256={}), tmp_path)


# --- downloading (from local file:// URLs or a fake opener: never the network) -----------------

def test_download_from_mirror_into_cache(tmp_path, monkeypatch, capsys):
    import urllib.request
    arrays, spec = make_dataset(tmp_path / "mirror")
    bad_mirror = (tmp_path / "nowhere").as_uri() + "/"
    spec = _idx.Spec(name="tiny", sha256=spec.sha256,
                     mirrors=(bad_mirror, (tmp_path / "mirror").as_uri() + "/"))
    monkeypatch.setattr(_idx, "_urlopen", lambda url, timeout: urllib.request.urlopen(url, timeout=timeout))
    (xtr, _), (_, yte) = _idx.load(spec)
    np.testing.assert_array_equal(xtr, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(yte, arrays["t10k-labels-idx1-ubyte.gz"])
    cache = _idx.cache_dir("tiny")
    assert sorted(os.listdir(cache)) == sorted(_idx.FILES)  # no temporary files left
    assert "MB" in capsys.readouterr().err  # the progress bar


class FakeResponse(io.BytesIO):
    def __init__(self, data, fail_after=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection dropped")
        return super().read(min(n, 1000) if n > 0 else n)


def test_checksum_failure_never_lands_in_cache(tmp_path, monkeypatch):
    payload = b"corrupted bytes" * 100
    monkeypatch.setattr(_idx, "_urlopen", lambda url, timeout: FakeResponse(payload))
    dest = tmp_path / "cache" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DatasetError, match="SHA-256 .* expected .*discarded"):
        _idx.download_file("https://example.invalid/f", str(dest), "0" * 64)
    assert os.listdir(tmp_path / "cache") == []
    # the right checksum lands atomically
    _idx.download_file("https://example.invalid/f", str(dest), hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert os.listdir(tmp_path / "cache") == [dest.name]


def test_interrupted_download_leaves_previous_file_intact(tmp_path, monkeypatch):
    dest = tmp_path / "f.gz"
    dest.write_bytes(b"old")
    monkeypatch.setattr(_idx, "_urlopen", lambda url, timeout: FakeResponse(b"x" * 5000, fail_after=2000))
    with pytest.raises(ConnectionResetError):
        _idx.download_file("https://example.invalid/f", str(dest), None)
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.gz"]


def test_all_mirrors_corrupt_is_a_clear_error(tmp_path, monkeypatch):
    spec = _idx.Spec(name="tiny", sha256={f: "0" * 64 for f in _idx.FILES}, mirrors=("https://a.invalid/",))
    monkeypatch.setattr(_idx, "_urlopen", lambda url, timeout: FakeResponse(b"junk"))
    with pytest.raises(DatasetError, match="could not download train-images.*SHA-256"):
        _idx.load(spec)
    assert os.listdir(_idx.cache_dir("tiny")) == []


# --- digits -----------------------------------------------------------------------------------

def test_digits_keras_style_and_deterministic(require):
    require("sklearn")
    (xtr, ytr), (xte, yte) = digits.load_data()
    assert xtr.shape == (1437, 8, 8) and xte.shape == (360, 8, 8)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.uint8
    assert xtr.max() == 16 and set(np.unique(yte)) == set(range(10))
    (xtr2, _), (xte2, _) = digits.load_data()
    np.testing.assert_array_equal(xtr, xtr2)
    np.testing.assert_array_equal(xte, xte2)
    # train and test are disjoint parts of the same 1797 images: together they are scikit-learn's
    # images and labels, each (image, label) pair exactly as many times as there (rows sorted)
    from sklearn.datasets import load_digits
    d = load_digits()
    assert len(xtr) + len(xte) == len(d.target) == 1797
    rows = lambda x, y: np.concatenate([x.reshape(len(x), -1), y[:, None]], axis=1).astype(np.int64)  # noqa: E731
    ours = rows(np.concatenate([xtr, xte]), np.concatenate([ytr, yte]))
    theirs = rows(d.images, d.target)
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])


def test_digits_without_sklearn_is_a_clear_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[examples\]'"):
        digits.load_data()


def test_digits_bad_test_size():
    with pytest.raises(ValueError, match="test_size"):
        digits.load_data(test_size=0)
