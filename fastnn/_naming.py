"""Names, configs and error messages shared by every Keras namespace module (activations,
losses, metrics, initializers, regularizers, constraints, optimizers, schedules)."""
from __future__ import annotations

import difflib
import inspect


def identifier_error(kind: str, identifier, names) -> ValueError:
    """A ValueError for an unknown `identifier` of `kind`, listing the closest valid names."""
    names = sorted(set(names))
    close = difflib.get_close_matches(str(identifier), names, n=5, cutoff=0.5)
    if not close:  # case-insensitive prefix matches help for e.g. "Adam " or "GLOROT"
        low = str(identifier).strip().lower()
        close = [n for n in names if n.lower().startswith(low[:3])][:5] if low else []
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"Could not interpret {kind} identifier: {identifier!r}.{hint} "
                      f"Valid names: {', '.join(names)}.")


def deserialize_object(kind: str, config, objects: dict, custom_objects=None):
    """Rebuild an object from a name or a Keras-style dict {"class_name", "config", ...}.

    `objects` maps names to classes (built with `from_config`/the constructor) or to ready
    objects (returned as they are). Keras's own serialized dicts (module "keras...") work too.
    """
    table = dict(objects)
    if custom_objects:
        table.update(custom_objects)
    if isinstance(config, str):
        name, cfg = config, None
    elif isinstance(config, dict):
        if "class_name" not in config:
            raise ValueError(f"Could not interpret {kind} config {config!r}: a dict needs a "
                             "'class_name' key (as produced by serialize/get_config).")
        name, cfg = config["class_name"], config.get("config") or {}
        if name == "function" and isinstance(cfg, str):  # Keras's form for plain functions
            name, cfg = cfg, None
    else:
        raise TypeError(f"Could not interpret {kind} config: expected a str or dict; "
                        f"received {type(config).__name__} {config!r}.")
    if name not in table:
        raise identifier_error(kind, name, table)
    obj = table[name]
    if inspect.isclass(obj):
        if cfg is None:
            return obj()
        return obj.from_config(cfg) if hasattr(obj, "from_config") else obj(**cfg)
    if cfg:  # a configured function-like object (e.g. an Activation with params)
        if hasattr(obj, "with_params"):
            return obj.with_params(**cfg)
    return obj


def serialize_object(obj, module: str) -> dict:
    """Keras-style serialization dict of an object with get_config()."""
    return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(),
            "registered_name": None}


class ConfigMixin:
    """get_config/from_config/repr for objects whose constructor takes their config as kwargs."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
