"""IDX gzip files (the MNIST format): find them, download them safely, read them as uint8.

A dataset is four IDX files described by a `Spec` (file names, SHA-256 sums, mirrors). Files are
looked for, in order, in the `path` argument (a folder), in $FASTNN_DATA/<name>/, in $FASTNN_DATA
itself (only when its files carry this dataset's checksums, so one FASTNN_DATA pointing at the
MNIST folder does not shadow Fashion-MNIST), and in ~/.fastnn/datasets/<name>/. When none has
them, they are downloaded into the cache: each file streams into a temporary file next to its
destination, its SHA-256 is checked, and only then `os.replace` moves it in place, so a partial or
corrupt download never lands in the cache. FASTNN_OFFLINE=1 forbids downloading.

IDX layout (big-endian): two zero bytes, a type byte (0x08 = uint8), the number of dimensions,
then one uint32 per dimension, then the data. MNIST's magic numbers are 2049 (labels, 1-D) and
2051 (images, 3-D).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field

import numpy as np

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MAGIC = {"images": 2051, "labels": 2049}
_CHUNK = 1 << 16


class DatasetError(OSError):
    """A dataset file is missing, unreachable, truncated, corrupt or of the wrong kind."""


@dataclass(frozen=True)
class Spec:
    """What identifies an IDX dataset: its cache name, its files' SHA-256 sums, its mirrors."""
    name: str
    sha256: dict  # file name -> hex digest, or None to skip the check (tests)
    mirrors: tuple = ()
    files: tuple = FILES
    image_shape: tuple = field(default=(28, 28))


def cache_dir(name: str) -> str:
    """~/.fastnn/datasets/<name>: where downloaded files are kept."""
    return os.path.join(os.path.expanduser("~"), ".fastnn", "datasets", name)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _has_files(folder: str, spec: Spec) -> bool:
    return all(os.path.isfile(os.path.join(folder, f)) for f in spec.files)


def _checksums_ok(folder: str, spec: Spec) -> bool:
    return all(spec.sha256.get(f) is None or sha256_of(os.path.join(folder, f)) == spec.sha256[f]
               for f in spec.files)


def verify(folder: str, spec: Spec) -> None:
    """Raise DatasetError naming the first file in `folder` whose SHA-256 is not the expected one."""
    for f in spec.files:
        want = spec.sha256.get(f)
        if want is None:
            continue
        p = os.path.join(folder, f)
        got = sha256_of(p)
        if got != want:
            raise DatasetError(
                f"{spec.name}.load_data: checksum mismatch for {p}: SHA-256 {got}, expected {want}. "
                f"The file is corrupt, truncated or belongs to another dataset; delete it (it is "
                f"downloaded again when missing) or put the right file there.")


def candidates(spec: Spec, path=None) -> list:
    """The folders searched, in order, as (folder, must_match_checksums) pairs."""
    out = []
    if path is not None:
        out.append((os.fspath(path), False))
    env = os.environ.get("FASTNN_DATA")
    if env:
        out.append((os.path.join(env, spec.name), False))
        out.append((env, True))
    out.append((cache_dir(spec.name), False))
    return out


def find(spec: Spec, path=None):
    """The folder holding all of the dataset's files (no download), or None."""
    for folder, must_match in candidates(spec, path):
        if _has_files(folder, spec) and (not must_match or _checksums_ok(folder, spec)):
            return folder
    return None


def _where_to_put(spec: Spec, path=None) -> str:
    names = ", ".join(spec.files)
    return (f"Put the files {names} in {cache_dir(spec.name)} (or in a folder given as "
            f"load_data(path=...) or the FASTNN_DATA environment variable).")


def _progress(name: str, done: int, total, start: float, stream) -> None:
    rate = done / max(time.perf_counter() - start, 1e-9) / 1e6
    if total:
        width = 30
        k = int(width * done / total)
        bar = "=" * k + (">" if k < width else "") + "." * max(width - k - 1, 0)
        stream.write(f"\r{name} [{bar}] {done / 1e6:.1f}/{total / 1e6:.1f} MB {rate:.1f} MB/s")
    else:
        stream.write(f"\r{name} {done / 1e6:.1f} MB {rate:.1f} MB/s")
    stream.flush()


def _urlopen(url: str, timeout: float):  # a seam for tests (monkeypatched), never bypassed
    return urllib.request.urlopen(url, timeout=timeout)


def download_file(url: str, dest: str, sha256=None, *, timeout: float = 30.0, stream=None) -> str:
    """Download `url` to `dest` atomically, checking its SHA-256; returns dest.

    The bytes go to a temporary file in dest's folder; on any error (network, checksum) it is
    removed and `dest` is left untouched. Raises DatasetError on a checksum mismatch, and
    urllib's URLError/OSError when the URL cannot be read.
    """
    stream = sys.stderr if stream is None else stream
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(dest) + ".", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout) as resp:
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            total = int(total) if total else None
            done, start, last = 0, time.perf_counter(), 0.0
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                now = time.perf_counter()
                if now - last > 0.1:
                    _progress(os.path.basename(dest), done, total, start, stream)
                    last = now
            _progress(os.path.basename(dest), done, total, start, stream)
            stream.write("\n")
        got = h.hexdigest()
        if sha256 is not None and got != sha256:
            raise DatasetError(f"download of {url} has SHA-256 {got}, expected {sha256}; "
                               f"the file was discarded (corrupt or changed mirror).")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


def fetch(spec: Spec, path=None) -> str:
    """The folder holding the dataset's files, downloading them into the cache when absent."""
    folder = find(spec, path)
    if folder is not None:
        return folder
    if os.environ.get("FASTNN_OFFLINE") or not spec.mirrors:
        raise DatasetError(f"{spec.name}.load_data: the dataset files were not found and "
                           f"downloading is off. {_where_to_put(spec, path)}")
    dest_dir = cache_dir(spec.name)
    errors = []
    for f in spec.files:
        dest = os.path.join(dest_dir, f)
        if os.path.isfile(dest):
            continue
        for mirror in spec.mirrors:
            try:
                download_file(mirror + f, dest, spec.sha256.get(f))
                break
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{mirror + f}: {e}")
        else:
            raise DatasetError(f"{spec.name}.load_data: could not download {f} "
                               f"({'; '.join(errors)}). If this machine is offline: "
                               f"{_where_to_put(spec, path)}")
    return dest_dir


def read_idx(path: str, magic=None) -> np.ndarray:
    """Read one gzip IDX file of unsigned bytes -> uint8 ndarray of the shape its header gives.

    Raises DatasetError when the file is not gzip, is truncated, has another magic number than
    `magic` (2049 labels, 2051 images), or holds more or fewer bytes than its header announces.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as e:
        raise DatasetError(f"read_idx: {path} is not a complete gzip file ({e}); it is truncated "
                           f"or corrupt. Delete it and load again, or replace it.") from None
    if len(raw) < 4:
        raise DatasetError(f"read_idx: {path} is truncated: {len(raw)} bytes, shorter than the "
                           f"4-byte IDX header.")
    got_magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or (magic is not None and got_magic != magic):
        want = f"{magic} (0x{magic:08x})" if magic is not None else "0x000008NN (unsigned bytes)"
        raise DatasetError(f"read_idx: {path} has magic number {got_magic} (0x{got_magic:08x}); "
                           f"expected {want}. It is not the IDX file this name stands for.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"read_idx: {path} is truncated inside its header ({len(raw)} bytes).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    n = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != n:
        raise DatasetError(f"read_idx: {path} holds {len(raw) - header} data bytes but its header "
                           f"announces shape {shape} = {n} bytes; the file is truncated or corrupt.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def write_idx(path: str, array) -> None:
    """Write a uint8 array as a gzip IDX file (tests, and for making small datasets by hand)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + a.tobytes())


def load(spec: Spec, path=None):
    """(x_train, y_train), (x_test, y_test) as uint8 arrays from the dataset's IDX files."""
    folder = fetch(spec, path)
    verify(folder, spec)
    tri, trl, tei, tel = (os.path.join(folder, f) for f in spec.files)
    x_train, y_train = read_idx(tri, MAGIC["images"]), read_idx(trl, MAGIC["labels"])
    x_test, y_test = read_idx(tei, MAGIC["images"]), read_idx(tel, MAGIC["labels"])
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.shape[0] != y.shape[0] or x.shape[1:] != tuple(spec.image_shape):
            raise DatasetError(f"{spec.name}.load_data: {part} images {x.shape} and labels {y.shape} "
                               f"do not match (expected (N, {', '.join(map(str, spec.image_shape))}) "
                               f"and (N,)).")
    # frombuffer views are read-only; Keras hands out writeable arrays
    return (x_train.copy(), y_train.copy()), (x_test.copy(), y_test.copy())
