"""IMDB movie reviews (25,000 training, 25,000 test), as Keras's `keras.datasets.imdb`: each
review a list of word ids (ranked by frequency), labels 1 (positive) / 0 (negative).

    (x_train, y_train), (x_test, y_test) = fastnn.datasets.imdb.load_data(num_words=20000)
    x_train = fastnn.utils.pad_sequences(x_train, maxlen=200)

The file is Keras's `imdb.npz` (ragged arrays stored as pickled object arrays). It is read with
an unpickler that only rebuilds NumPy arrays and lists of ints, never arbitrary objects. Files are
looked for in the `path` argument, $FASTNN_DATA/imdb/, $FASTNN_DATA, ~/.fastnn/datasets/imdb/,
and downloaded into the latter when absent (SHA-256 checked, moved in place atomically;
FASTNN_OFFLINE=1 forbids downloading).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile

import numpy as np

from fastnn.datasets import _idx

NAME = "imdb"
FILE = "imdb.npz"
WORD_INDEX = "imdb_word_index.json"
SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"      # the hash Keras checks
MIRRORS = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",)


def _locate(fname, path, checksum):
    """The file's path: `path` (a file or a folder), $FASTNN_DATA/imdb, $FASTNN_DATA (only with
    the right checksum), the cache; downloaded into the cache when absent."""
    cands = []
    if path is not None:
        p = os.fspath(path)
        cands.append((p if os.path.isfile(p) else os.path.join(p, fname), False))
    env = os.environ.get("FASTNN_DATA")
    if env:
        cands += [(os.path.join(env, NAME, fname), False), (os.path.join(env, fname), True)]
    cached = os.path.join(_idx.cache_dir(NAME), fname)
    cands.append((cached, False))
    for p, must_match in cands:
        if os.path.isfile(p) and (not must_match or checksum(p)):
            return p
    if os.environ.get("FASTNN_OFFLINE"):
        raise _idx.DatasetError(f"imdb: {fname} was not found and downloading is off (FASTNN_OFFLINE). "
                                f"Put Keras's {fname} in {_idx.cache_dir(NAME)}, or pass path=.")
    errors = []
    for mirror in MIRRORS:
        try:
            _idx.download_file(mirror + fname, cached, SHA256 if fname == FILE else None)
            if not checksum(cached):
                os.remove(cached)
                raise _idx.DatasetError(f"imdb: {fname} from {mirror} failed its checksum; discarded.")
            return cached
        except (OSError, ValueError) as e:
            errors.append(f"{mirror + fname}: {e}")
    raise _idx.DatasetError(f"imdb: could not download {fname} ({'; '.join(errors)}). If this machine is "
                            f"offline, put Keras's {fname} in {_idx.cache_dir(NAME)} or pass path=.")


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays (and the lists of ints inside object arrays) and nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"imdb: refusing to load {module}.{name} from the data file "
                                     f"(only NumPy arrays of word ids are allowed).")


def _read_npz(fname):
    """{name: array} of an .npz whose members may be pickled object arrays (safely)."""
    out = {}
    try:
        with zipfile.ZipFile(fname) as z:
            for member in z.namelist():
                with z.open(member) as f:
                    raw = io.BytesIO(f.read())
                version = np.lib.format.read_magic(raw)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(raw) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(raw))
                if dtype.hasobject:
                    arr = _ArrayUnpickler(raw).load()
                else:
                    arr = np.frombuffer(raw.read(), dtype=dtype).reshape(shape, order="F" if fortran else "C")
                out[member[:-4] if member.endswith(".npy") else member] = arr
    except (zipfile.BadZipFile, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise _idx.DatasetError(f"imdb: {fname} is not a readable imdb.npz ({e}); delete it and load again.") from None
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in out:
            raise _idx.DatasetError(f"imdb: {fname} has no array '{key}'; it is not Keras's imdb.npz.")
    return out


def _remove_long(maxlen, xs, labels):
    keep = [i for i, x in enumerate(xs) if len(x) < maxlen]     # Keras keeps len < maxlen
    return [xs[i] for i in keep], labels[keep]


def load_data(path=None, num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
              oov_char=2, index_from=3, **kwargs):
    """Load IMDB as Keras does -> (x_train, y_train), (x_test, y_test).

    x_* are object arrays of lists of ints (ragged reviews); y_* int arrays of 0/1. Keras's
    arguments and order of operations: shuffle each split with RandomState(seed), prepend
    start_char and shift ids by index_from, drop reviews of maxlen words or more, then ids
    outside [skip_top, num_words) become oov_char (or are removed when oov_char is None).
    `path`: an imdb.npz file or a folder holding one.
    """
    if kwargs:
        raise TypeError(f"imdb.load_data: unrecognized keyword argument(s) {sorted(kwargs)}.")
    if path is not None and os.path.basename(os.fspath(path)) == FILE and not os.path.exists(path):
        path = None      # Keras's default path="imdb.npz" names the cached file
    fname = _locate(FILE, path, lambda p: _idx.sha256_of(p) == SHA256)
    f = _read_npz(fname)
    x_train, labels_train = f["x_train"], np.asarray(f["y_train"])
    x_test, labels_test = f["x_test"], np.asarray(f["y_test"])
    rng = np.random.RandomState(seed)
    idx = np.arange(len(x_train))
    rng.shuffle(idx)
    x_train, labels_train = x_train[idx], labels_train[idx]
    idx = np.arange(len(x_test))
    rng.shuffle(idx)
    x_test, labels_test = x_test[idx], labels_test[idx]
    if start_char is not None:
        x_train = [[start_char] + [w + index_from for w in x] for x in x_train]
        x_test = [[start_char] + [w + index_from for w in x] for x in x_test]
    else:
        x_train = [[w + index_from for w in x] for x in x_train]
        x_test = [[w + index_from for w in x] for x in x_test]
    if maxlen:
        x_train, labels_train = _remove_long(maxlen, x_train, labels_train)
        x_test, labels_test = _remove_long(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise ValueError(f"imdb.load_data: after filtering for sequences shorter than maxlen={maxlen}, "
                             f"no sequence was kept. Increase maxlen.")
    xs = x_train + x_test
    labels = np.concatenate([labels_train, labels_test])
    if not num_words:
        num_words = max(max(x) for x in xs if x)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]
    n = len(x_train)

    def ragged(seqs):
        a = np.empty(len(seqs), dtype=object)
        a[:] = seqs
        return a

    return (ragged(xs[:n]), labels[:n]), (ragged(xs[n:]), labels[n:])


def get_word_index(path=None):
    """{word: rank} of the IMDB vocabulary (Keras's imdb_word_index.json): id = rank + index_from."""
    if path is not None and os.path.basename(os.fspath(path)) == WORD_INDEX and not os.path.exists(path):
        path = None

    def md5_ok(p):
        h = hashlib.md5()
        with open(p, "rb") as fh:
            h.update(fh.read())
        return h.hexdigest() == WORD_INDEX_MD5

    fname = _locate(WORD_INDEX, path, md5_ok)
    with open(fname) as fh:
        return json.load(fh)
