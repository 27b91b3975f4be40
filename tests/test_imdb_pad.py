"""fastnn.datasets.imdb on a small file in Keras's imdb.npz format (written here, offline), and
fastnn.utils.pad_sequences against keras.utils.pad_sequences."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.datasets import imdb
from fastnn.datasets._idx import DatasetError
from fastnn.utils import pad_sequences


def _ragged(seqs):
    a = np.empty(len(seqs), dtype=object)
    a[:] = [list(s) for s in seqs]
    return a


TRAIN = [[1, 5, 2], [7, 3], [4, 4, 4, 9], [2]]
TEST = [[6, 1], [3, 3, 8, 1, 2]]


@pytest.fixture
def npz(tmp_path):
    p = tmp_path / "imdb.npz"
    np.savez(p, x_train=_ragged(TRAIN), y_train=np.array([1, 0, 1, 0]), x_test=_ragged(TEST),
             y_test=np.array([0, 1]))
    return p


def test_load_data_matches_keras_steps(npz):
    (xtr, ytr), (xte, yte) = imdb.load_data(path=npz)
    rng = np.random.RandomState(113)
    i = np.arange(4)
    rng.shuffle(i)
    j = np.arange(2)
    rng.shuffle(j)
    # Keras's quirk, reproduced: without num_words it is the largest id, and ids must be
    # < num_words, so the most frequent-last word (id 12 here) becomes oov_char
    top = max(w + 3 for s in TRAIN + TEST for w in s)
    want_tr = [[1] + [w + 3 if w + 3 < top else 2 for w in TRAIN[k]] for k in i]
    want_te = [[1] + [w + 3 if w + 3 < top else 2 for w in TEST[k]] for k in j]
    assert xtr.dtype == object and [list(x) for x in xtr] == want_tr
    assert [list(x) for x in xte] == want_te
    np.testing.assert_array_equal(ytr, np.array([1, 0, 1, 0])[i])
    np.testing.assert_array_equal(yte, np.array([0, 1])[j])


def test_num_words_skip_top_oov_maxlen(npz):
    (xtr, ytr), (xte, _) = imdb.load_data(path=npz, num_words=8, skip_top=2, seed=0, maxlen=5)
    flat = [w for x in list(xtr) + list(xte) for w in x]
    assert all(w == 2 or 2 <= w < 8 for w in flat)
    assert all(len(x) < 5 for x in xtr) and len(xtr) == 3      # [4,4,4,9] + start = 5 words: dropped
    (xtr2, _), _ = imdb.load_data(path=npz, num_words=8, oov_char=None, start_char=None, index_from=0)
    assert all(w < 8 for x in xtr2 for w in x) and sum(len(x) for x in xtr2) == 9   # the 9 removed
    with pytest.raises(ValueError, match="Increase maxlen"):
        imdb.load_data(path=npz, maxlen=2)


def test_refuses_other_pickled_objects(tmp_path):
    """The .npz holds pickles: anything but NumPy arrays of word ids is refused, not executed."""
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    p = tmp_path / "imdb.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf.write(pickle.dumps(Evil()))
    with zipfile.ZipFile(p, "w") as z:
        for k in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(k + ".npy", buf.getvalue())
    with pytest.raises(DatasetError, match="refusing to load posix.system|refusing to load"):
        imdb.load_data(path=p)


def test_missing_offline_and_word_index(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    with pytest.raises(DatasetError, match="not found and downloading is off"):
        imdb.load_data()
    (tmp_path / "imdb_word_index.json").write_text('{"the": 1, "and": 2}')
    assert imdb.get_word_index(path=tmp_path) == {"the": 1, "and": 2}


def test_fastnn_data_folder(npz, monkeypatch, tmp_path):
    d = tmp_path / "data" / "imdb"
    d.mkdir(parents=True)
    os.replace(npz, d / "imdb.npz")
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FASTNN_OFFLINE", "1")
    (xtr, _), _ = imdb.load_data()
    assert len(xtr) == 4


# ------------------------------------------------------------------------------ pad_sequences
SEQS = [[1, 2, 3], [4, 5], [], [6, 7, 8, 9, 10], [11]]


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 3, 1])
def test_pad_sequences_matches_keras(keras, padding, truncating, maxlen):
    got = pad_sequences(SEQS, maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    want = keras.utils.pad_sequences(SEQS, maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_pad_sequences_dtype_shapes_and_errors():
    x = pad_sequences([[0.5, 1.5], [2.5]], dtype="float32", padding="post")
    np.testing.assert_array_equal(x, [[0.5, 1.5], [2.5, 0.0]])
    v = pad_sequences([np.ones((2, 3)), np.ones((1, 3))], maxlen=3)
    assert v.shape == (2, 3, 3) and v[1, :2].sum() == 0
    assert pad_sequences([["a", "b"], ["c"]], dtype=object, value="").tolist() == [["a", "b"], ["", "c"]]
    with pytest.raises(ValueError, match='padding must be "pre" or "post"'):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(ValueError, match="not compatible with value"):
        pad_sequences(SEQS, value="x")
    with pytest.raises(ValueError, match="different from expected shape"):
        pad_sequences([np.ones((2, 3)), np.ones((1, 2))])
    assert fastnn.utils.pad_sequences is pad_sequences
