"""model.summary(): the Keras table of layers, output shapes and parameter counts."""
from __future__ import annotations

from fastnn.layers.base import shape_str


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024


def summary_lines(model, width=(31, 24, 14)):
    from fastnn.layers.core import InputLayer
    w1, w2, w3 = width
    total = w1 + w2 + w3 + 4
    lines = [f'Model: "{model.name}"']
    top = "┏" + "━" * (w1 + 1) + "┳" + "━" * (w2 + 1) + "┳" + "━" * (w3 + 1) + "┓"
    lines.append(top)
    lines.append(f"┃ {'Layer (type)':<{w1}}┃ {'Output Shape':<{w2}}┃ {'Param #':>{w3 - 1}} ┃")
    lines.append("┡" + "━" * (w1 + 1) + "╇" + "━" * (w2 + 1) + "╇" + "━" * (w3 + 1) + "┩")
    rows = [l for l in model.layers if not isinstance(l, InputLayer) or type(model).__name__ != "Sequential"]
    for i, layer in enumerate(rows):
        name = f"{layer.name} ({type(layer).__name__})"
        out = shape_str(layer.output_shape) if layer.output_shape is not None else "?"
        n = layer.count_params() if layer.built else 0
        lines.append(f"│ {name:<{w1}}│ {out:<{w2}}│ {n:>{w3 - 1},} │")
        if i < len(rows) - 1:
            lines.append("├" + "─" * (w1 + 1) + "┼" + "─" * (w2 + 1) + "┼" + "─" * (w3 + 1) + "┤")
    lines.append("└" + "─" * (w1 + 1) + "┴" + "─" * (w2 + 1) + "┴" + "─" * (w3 + 1) + "┘")
    if model.built:
        tr = sum(v.value.size for v in model.trainable_weights)
        al = sum(v.value.size for v in model.weights)
        lines.append(f" Total params: {al:,} ({_fmt_bytes(al * 4)})")
        lines.append(f" Trainable params: {tr:,} ({_fmt_bytes(tr * 4)})")
        lines.append(f" Non-trainable params: {al - tr:,} ({_fmt_bytes((al - tr) * 4)})")
        opt = getattr(model, "optimizer", None)
        if opt is not None and getattr(model, "_arena", None) is not None and hasattr(opt, "variables"):
            n = sum(int(getattr(v, "size", 1)) for v in opt.variables())
            lines.append(f" Optimizer params: {n:,} ({_fmt_bytes(n * 4)})")
    del total
    return lines
