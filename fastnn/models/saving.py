"""Saving and loading: `.keras` archives, `.weights.h5` (or `.npz`) weight files.

The `.keras` file is a zip holding only JSON and `.npy` arrays, so loading never unpickles or
executes code (np.load(allow_pickle=False)):

    metadata.json          {"format": "fastnn.keras", "format_version": 1, "fastnn_version": ...,
                            "keras_version": "3", "date_saved": ...}
    config.json            {"class_name": "Sequential"|"Model", "config": model.get_config(),
                            "compile_config": {"optimizer": {...}, "loss": ..., "metrics": [...]}}
    weights/<i>.npy        model.weights[i] (Keras order and layout), i = 0, 1, ...
    optimizer/<i>.npy      optimizer.variables()[i] (iterations, slots ...)

Writes are atomic: the file is written next to the target under a temporary name and moved in
with os.replace, so an interrupted save leaves any previous file intact.

`save_weights("x.weights.h5")` writes Keras's layout (`layers/<layer name>/vars/<i>`) with h5py
when it is installed, else an `.npz` with the same keys (the file name is kept).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile

import numpy as np

import fastnn

FORMAT = "fastnn.keras"
FORMAT_VERSION = 1


def model_config(model):
    return {"class_name": type(model).__name__, "config": model.get_config()}


def _atomic_write(path, write):
    """Call write(file object) on a temp file in path's folder, then os.replace it onto path.

    In a data-parallel job (fastnn.distribution) only process 0 writes; the others return."""
    from fastnn import distribution
    if not distribution.writes_files():
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _npy_bytes(a):
    buf = io.BytesIO()
    a = np.asarray(a)   # (not ascontiguousarray: it turns 0-d values such as `iterations` into 1-d)
    np.save(buf, a if a.flags.c_contiguous else a.copy(), allow_pickle=False)
    return buf.getvalue()


def _serialize_id(obj):
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "get_config"):
        return {"class_name": type(obj).__name__, "config": obj.get_config()}
    name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
    if isinstance(name, str):
        return name
    raise TypeError(f"cannot serialize {obj!r} into a .keras file")


def save_model(model, filepath, overwrite=True):
    """Write `model` (architecture, weights, compile settings, optimizer state) to a .keras zip."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"save: the filepath must end in '.keras'; received {filepath!r}. Use "
                         f"save_weights('x.weights.h5') for weights only.")
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"save: {filepath!r} exists and overwrite=False.")
    if not model.built:
        raise ValueError("save: the model is not built yet; build it (or fit it) first.")
    config = model_config(model)
    opt_vars = []
    if model.compiled:
        config["compile_config"] = {
            "optimizer": _serialize_id(model.optimizer),
            "loss": _serialize_id(model._loss_id if isinstance(model._loss_id, str) else model.loss),
            "metrics": [_serialize_id(m) for m, w in zip(model._metric_ids, model._metric_weighted) if not w],
            "weighted_metrics": [_serialize_id(m) for m, w in zip(model._metric_ids, model._metric_weighted) if w],
        }
        if getattr(model, "_arena", None) is not None and hasattr(model.optimizer, "variables"):
            opt_vars = [np.asarray(v) for v in model.optimizer.variables()]
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "fastnn_version": fastnn.__version__,
            "keras_version": "3", "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}
    weights = [v.value for v in model.weights]

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("metadata.json", json.dumps(meta, indent=1))
            z.writestr("config.json", json.dumps(config, indent=1))
            for i, w in enumerate(weights):
                z.writestr(f"weights/{i}.npy", _npy_bytes(w))
            for i, v in enumerate(opt_vars):
                z.writestr(f"optimizer/{i}.npy", _npy_bytes(v))

    _atomic_write(filepath, write)


def _load_npys(z, prefix):
    names = sorted((n for n in z.namelist() if n.startswith(prefix) and n.endswith(".npy")),
                   key=lambda n: int(n[len(prefix):-4]))
    return [np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in names]


def _deserialize_id(obj, getter):
    if isinstance(obj, dict) and "class_name" in obj:
        return getter({"class_name": obj["class_name"], "config": obj["config"]})
    return obj


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model saved with model.save('x.keras'), with weights and optimizer state."""
    filepath = os.fspath(filepath)
    if not zipfile.is_zipfile(filepath):
        raise ValueError(f"load_model: {filepath!r} is not a .keras zip archive.")
    with zipfile.ZipFile(filepath) as z:
        meta = json.loads(z.read("metadata.json"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"load_model: {filepath!r} was not written by fastnn (format {meta.get('format')!r}).")
        config = json.loads(z.read("config.json"))
        weights = _load_npys(z, "weights/")
        opt_vars = _load_npys(z, "optimizer/")
    model = _model_class(config["class_name"], custom_objects, "load_model").from_config(
        config["config"], custom_objects=custom_objects)
    model.set_weights(weights)
    cc = config.get("compile_config")
    if compile and cc:
        from fastnn import losses, optimizers
        from fastnn import metrics as metrics_module

        def metric(m):
            return m if isinstance(m, str) else _deserialize_id(m, metrics_module.get)
        model.compile(optimizer=_deserialize_id(cc["optimizer"], optimizers.get),
                      loss=_deserialize_id(cc["loss"], losses.get),
                      metrics=[metric(m) for m in cc["metrics"]],
                      weighted_metrics=[metric(m) for m in cc.get("weighted_metrics", [])])
        if opt_vars and hasattr(model.optimizer, "set_variables"):
            model.optimizer.set_variables(opt_vars)
    return model


def model_from_json(json_string, custom_objects=None):
    config = json.loads(json_string)
    return _model_class(config["class_name"], custom_objects, "model_from_json").from_config(
        config["config"], custom_objects=custom_objects)


def _model_class(name, custom_objects, fn):
    """The model class saved under `name`, from the layer registry (Model and Sequential register
    themselves there, so this module imports neither: no import cycle)."""
    from fastnn import layers
    custom = {k: v for k, v in (custom_objects or {}).items() if isinstance(v, type)}
    if name in custom:
        return custom[name]
    try:
        return layers.get_class("Model" if name == "Functional" else name)
    except ValueError:
        raise ValueError(f"{fn}: unknown model class {name!r}; pass it in custom_objects.") from None


# ---------------------------------------------------------------------------------------------
def _weight_keys(model):
    """Keras's .weights.h5 layout: layers/<layer name>/vars/<i> for each layer with weights."""
    keys = []
    for layer in model.layers:
        for i, v in enumerate(layer.weights):
            keys.append((f"layers/{layer.name}/vars/{i}", v))
    return keys


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"save_weights: the filepath must end in '.weights.h5'; received {filepath!r}.")
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"save_weights: {filepath!r} exists and overwrite=False.")
    keys = _weight_keys(model)
    try:
        import h5py
    except ImportError:
        h5py = None

    def write(f):
        if h5py is not None:
            with h5py.File(f, "w") as h:
                h.attrs["format"] = FORMAT
                for key, v in keys:
                    h.create_dataset(key, data=v.value)
                for layer in model.layers:  # layers without weights still get their group, as Keras
                    h.require_group(f"layers/{layer.name}/vars")
        else:
            np.savez(f, **{k: v.value for k, v in keys})

    _atomic_write(filepath, write)


def load_weights(model, filepath):
    filepath = os.fspath(filepath)
    keys = _weight_keys(model)
    with open(filepath, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK"):
        with np.load(filepath, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    else:
        import h5py
        arrays = {}
        with h5py.File(filepath, "r") as h:
            for key, _ in keys:
                if key in h:
                    arrays[key] = h[key][()]
    missing = [k for k, _ in keys if k not in arrays]
    if missing:
        raise ValueError(f"load_weights: {filepath!r} lacks weights {missing[:5]}; the layer names or structure "
                         f"differ from this model.")
    for key, v in keys:
        a = arrays[key]
        if a.shape != v.shape:
            raise ValueError(f"load_weights: {key} has shape {a.shape} in the file but {v.shape} in the model.")
    for key, v in keys:
        v.value[...] = arrays[key]
