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

`save_weights("x.weights.h5")` writes Keras 3's layout (`layers/<snake_case class>[_k]/vars/<i>`,
nested models as `layers/functional/layers/...`) with h5py when it is installed, else an `.npz`
with the same keys (the file name is kept); files from Keras 3 load, and so do fastnn files keyed
by layer names (the earlier layout).
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


def _serialize_struct(obj):
    """A compile argument (one, a list or a dict of losses / metrics) as JSON; a list becomes
    {"list": [...]}, so it stays apart from a serialized object's own dict."""
    if isinstance(obj, dict):
        return {"dict": {k: _serialize_struct(v) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"list": [_serialize_struct(v) for v in obj]}
    return _serialize_id(obj)


def _serialize_metrics(arg):
    """Metrics as a plain JSON list when they are one metric or a flat list (the layout readers
    of earlier files expect), else the nested form of _serialize_struct (per-output lists, dicts)."""
    if arg is None:
        return []
    if not isinstance(arg, (list, tuple, dict)):
        return [_serialize_id(arg)]
    if isinstance(arg, (list, tuple)) and not any(isinstance(m, (list, tuple, dict)) for m in arg):
        return [_serialize_id(m) for m in arg]
    return _serialize_struct(arg)


def _deserialize_struct(obj, getter):
    if isinstance(obj, dict) and "dict" in obj and len(obj) == 1:
        return {k: _deserialize_struct(v, getter) for k, v in obj["dict"].items()}
    if isinstance(obj, dict) and "list" in obj and len(obj) == 1:
        return [_deserialize_struct(v, getter) for v in obj["list"]]
    if isinstance(obj, list):    # files written before compile arguments could be nested
        return [_deserialize_struct(v, getter) for v in obj]
    if obj is None or isinstance(obj, str):
        return obj
    return _deserialize_id(obj, getter)


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
        args = model._compile_args
        config["compile_config"] = {
            "optimizer": _serialize_id(model.optimizer),
            "loss": _serialize_struct(args["loss"]),
            "loss_weights": args["loss_weights"],
            "metrics": _serialize_metrics(args["metrics"]),
            "weighted_metrics": _serialize_metrics(args["weighted_metrics"]),
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
    from fastnn.layers.core import safe_mode_scope
    with safe_mode_scope(safe_mode):   # a Lambda's bytecode loads only with safe_mode=False
        model = _model_class(config["class_name"], custom_objects, "load_model").from_config(
            config["config"], custom_objects=custom_objects)
    model.set_weights(weights)
    cc = config.get("compile_config")
    if compile and cc:
        from fastnn import losses, optimizers
        from fastnn import metrics as metrics_module
        model.compile(optimizer=_deserialize_id(cc["optimizer"], optimizers.get),
                      loss=_deserialize_struct(cc["loss"], losses.get),
                      loss_weights=cc.get("loss_weights"),
                      metrics=_deserialize_struct(cc["metrics"], metrics_module.get),
                      weighted_metrics=_deserialize_struct(cc.get("weighted_metrics"), metrics_module.get))
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
def _weight_keys(model, owners=None):
    """Keras 3's .weights.h5 layout (KERAS-NUMERICS.md §2.13): ([(key, variable)], [groups]).

    Each container's children are keyed by their snake-cased class name, made unique within the
    container by _1, _2, ... in model.layers order (layers/dense, layers/dense_1,
    layers/batch_normalization/vars/0, ...), never by the layer's own name, so a file loads into
    an equal architecture built under other names; a nested model is a container of its own
    (layers/functional/layers/dense/vars/0). Every layer and container gets its vars group.
    `owners`, when a dict, receives key -> the layer's name (for error messages).
    A layer made of layers (an RNN and its cell, Bidirectional, TimeDistributed,
    StackedRNNCells) names them by attribute, as Keras's saving walk does
    (layers/lstm/cell/vars/0, layers/bidirectional/forward_layer/cell/vars/0,
    layers/rnn/cell/cells/lstm_cell/vars/0): such a layer lists them in `_weight_children()`.
    """
    from fastnn.layers.base import class_name, snake_case
    keys, groups = [], ["vars"]

    def unique(used, layer):
        base = snake_case(class_name(layer))
        k = used.get(base, 0)
        used[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def layer_keys(layer, path):
        groups.append(f"{path}/vars")
        children = layer._weight_children() if hasattr(layer, "_weight_children") else None
        if children is None:
            keys.extend((f"{path}/vars/{i}", v) for i, v in enumerate(layer._variables))
            if owners is not None:
                owners.update((f"{path}/vars/{i}", layer.name) for i in range(len(layer._variables)))
            return
        for attr, child in children:
            if isinstance(child, (list, tuple)):
                used = {}
                for c in child:
                    layer_keys(c, f"{path}/{attr}/{unique(used, c)}")
            else:
                layer_keys(child, f"{path}/{attr}")

    def walk(container, prefix):
        used = {}
        for layer in container.layers:
            path = f"{prefix}layers/{unique(used, layer)}"
            if hasattr(layer, "_graph_calls") and layer.built:
                groups.append(f"{path}/vars")
                walk(layer, path + "/")
            else:
                layer_keys(layer, path)

    walk(model, "")
    return keys, groups


def _legacy_weight_keys(model):
    """The layout fastnn wrote before: layers/<layer name>/vars/<i> (still read)."""
    return [(f"layers/{layer.name}/vars/{i}", v) for layer in model.layers for i, v in enumerate(layer.weights)]


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"save_weights: the filepath must end in '.weights.h5'; received {filepath!r}.")
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"save_weights: {filepath!r} exists and overwrite=False.")
    keys, groups = _weight_keys(model)
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
                for g in groups:  # layers without weights still get their group, as Keras
                    h.require_group(g)
        else:
            np.savez(f, **{k: v.value for k, v in keys})

    _atomic_write(filepath, write)


def _text(v):
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _is_keras_h5(h):
    """A legacy Keras HDF5 weight file (Keras 2's save_weights, the files Keras publishes for
    keras.applications, or a whole-model .h5): layer groups listed in a `layer_names` attribute."""
    return "layer_names" in h.attrs or ("model_weights" in h and "layer_names" in h["model_weights"].attrs)


def _legacy_h5_assignments(model, h, filepath):
    """[(variable, array)] for a legacy Keras HDF5 file, matched as Keras matches them: the
    file's layers that hold weights (in `layer_names` order) against the model's layers that
    hold weights (in model.layers order), each layer's `weight_names` against its trainable then
    non-trainable weights. Raises before anything is assigned."""
    group = h["model_weights"] if "model_weights" in h else h
    saved = []
    for name in (_text(n) for n in group.attrs["layer_names"]):
        weight_names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
        if weight_names:
            saved.append((name, weight_names))
    layers = [layer for layer in model.layers if layer.weights]
    if len(saved) != len(layers):
        have = {n for n, _ in saved}
        missing = [layer.name for layer in layers if layer.name not in have]
        hint = f"; layers of the model not in the file: {missing[:5]}" if missing else ""
        raise ValueError(f"load_weights: {filepath!r} holds weights for {len(saved)} layers but the model has "
                         f"{len(layers)} layers with weights{hint}.")
    out = []
    for k, ((name, weight_names), layer) in enumerate(zip(saved, layers)):
        variables = layer.trainable_weights + layer.non_trainable_weights
        if len(weight_names) != len(variables):
            raise ValueError(f"load_weights: layer #{k} (named {layer.name!r} in the model, {name!r} in the file) "
                             f"expects {len(variables)} weights; the file holds {len(weight_names)} "
                             f"({weight_names}).")
        for wname, v in zip(weight_names, variables):
            a = group[name][wname][()]
            if a.shape != v.shape:
                raise ValueError(f"load_weights: layer {layer.name!r} (file layer {name!r}), weight {wname!r}: the "
                                 f"file holds shape {a.shape}, the model expects {v.shape}.")
            out.append((v, a))
    return out


def load_weights(model, filepath):
    """Keras 3 .weights.h5 (or fastnn's .npz twin) and legacy Keras HDF5 weight files; every
    array is checked against the model before any is assigned, so a file that does not fit
    leaves the model as it was."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"load_weights: no file at {filepath!r}.")
    owners = {}
    keys, _ = _weight_keys(model, owners)
    with open(filepath, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK"):
        with np.load(filepath, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    else:
        try:
            import h5py
        except ImportError:
            raise ImportError('load_weights: reading .h5 weight files needs h5py: pip install "fastnn[h5]"') from None
        arrays = {}
        with h5py.File(filepath, "r") as h:
            if _is_keras_h5(h) and not any(k in h for k, _ in keys):
                assignments = _legacy_h5_assignments(model, h, filepath)
                for v, a in assignments:
                    v.value[...] = a
                return
            for key, _ in keys + _legacy_weight_keys(model):
                if key in h:
                    arrays[key] = h[key][()]
    if any(k not in arrays for k, _ in keys) and all(k in arrays for k, _ in _legacy_weight_keys(model)):
        keys = _legacy_weight_keys(model)    # a file from an earlier fastnn (keyed by layer names)
        owners = {k: k.split("/")[1] for k, _ in keys}
    missing = [k for k, _ in keys if k not in arrays]
    if missing:
        named = ", ".join(f"{owners.get(k, '?')!r} ({k})" for k in missing[:5])
        raise ValueError(f"load_weights: {filepath!r} lacks the weights of layer(s) {named}"
                         f"{' and more' if len(missing) > 5 else ''}; the file was written for another "
                         f"architecture.")
    for key, v in keys:
        a = arrays[key]
        if a.shape != v.shape:
            raise ValueError(f"load_weights: layer {owners.get(key, '?')!r} ({key}): the file holds shape {a.shape}, "
                             f"the model expects {v.shape}.")
    for key, v in keys:
        v.value[...] = arrays[key]
