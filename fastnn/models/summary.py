"""model.summary(): Keras 3's table of layers (keras:utils/summary_utils.py, drawn by rich).

Keras's layout, reproduced without rich:
- a chain of layers ("sequential-like") gets three columns (Layer (type), Output Shape,
  Param #); any other graph a fourth, "Connected to", listing each call's inputs as
  `layer[call index][output index]`; show_trainable adds "Trainable" (Y / N / - ).
- line length min(88 (chain) or 108 (graph), +12 with show_trainable, terminal columns - 4);
  column widths from Keras's relative positions, then shrunk to fit the borders and padding
  the way rich does (ratio_reduce: the excess split evenly, rounded half to even, left first).
- a cell wraps at spaces; a word wider than its column gets a line of its own, cut with "…".
- expand_nested lists a nested model's layers under it, prefixed "   " * depth + "└ ".
"""
from __future__ import annotations

import shutil

from fastnn.layers.base import class_name, shape_str


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024


def column_widths(line_length, positions):
    """Content width of each column: Keras's positions, then rich's shrinking to the table width."""
    widths, current = [], 0
    for p in positions:
        w = int(p * line_length) - current
        if w < 4:
            raise ValueError("summary: insufficient width to print the summary; give a larger line_length.")
        widths.append(w)
        current += w
    n = len(widths)
    excess = sum(widths) - (line_length - (n + 1) - 2 * n)   # borders and one space of padding a side
    if excess > 0:   # rich's ratio_reduce with equal ratios
        remaining, ratio = excess, n
        for i in range(n):
            d = min(widths[i], round(remaining / ratio))
            widths[i] -= d
            remaining -= d
            ratio -= 1
    return widths


def wrap(text, width):
    """Lines of `text` at most `width` wide: words kept whole, a too-long word cut with '…'."""
    lines, line = [], ""
    lead = len(text) - len(text.lstrip(" "))
    words = text[lead:].split(" ")
    words[0] = " " * lead + words[0]   # indentation (nested rows) stays with the first word
    for word in words:
        if len(word) > width:
            if line:
                lines.append(line)
            lines.append(word[:width - 1] + "…")
            line = ""
        elif not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            lines.append(line)
            line = word
    if line or not lines:
        lines.append(line)
    return lines


def _table(header, align, widths, rows):
    def rule(l, m, r, c):
        return l + m.join(c * (w + 2) for w in widths) + r

    def cells(values, edge):
        wrapped = [wrap(str(v), w) for v, w in zip(values, widths)]
        out = []
        for k in range(max(len(c) for c in wrapped)):
            parts = []
            for col, w, a in zip(wrapped, widths, align):
                s = col[k] if k < len(col) else ""
                s = s.rjust(w) if a == "right" else (s.center(w) if a == "center" else s.ljust(w))
                parts.append(" " + s + " ")
            out.append(edge + edge.join(parts) + edge)
        return out

    lines = [rule("┏", "┳", "┓", "━"), *cells(header, "┃"), rule("┡", "╇", "┩", "━")]
    for i, row in enumerate(rows):
        lines += cells(row, "│")
        if i < len(rows) - 1:
            lines.append(rule("├", "┼", "┤", "─"))
    lines.append(rule("└", "┴", "┘", "─"))
    return lines


def _output_shape(layer):
    calls = getattr(layer, "_calls", None)
    if calls:
        outs = calls[-1].outputs
        return shape_str(outs[0].shape) if len(outs) == 1 else "[" + ", ".join(shape_str(t.shape) for t in outs) + "]"
    shape = getattr(layer, "output_shape", None)
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(shape_str(s) for s in shape) + "]"
    return shape_str(shape)


def _connections(layer, calls_in_model):
    parts = []
    for call in layer._calls:
        if id(call) not in calls_in_model:
            continue   # a call made for another model
        for t in call.inputs:
            src = t.call.layer if t.call is not None else t.layer
            k = next(j for j, c in enumerate(src._calls) if c is t.call) if t.call is not None else 0
            parts.append(f"{src.name}[{k}][{t.index}]")
    return ", ".join(parts) or "-"


def summary_lines(model, line_length=None, positions=None, expand_nested=False, show_trainable=False,
                  layer_range=None):
    """The summary as a list of lines (what model.summary prints)."""
    from fastnn.models.graph import Graph
    graph_calls = getattr(model, "_graph_calls", None)
    sequential_like = type(model).__name__ == "Sequential" or not graph_calls or model._is_chain()
    layers = model.layers
    if sequential_like:
        default, header, align = 88, ["Layer (type)", "Output Shape", "Param #"], ["left", "left", "right"]
        positions = positions or [0.45, 0.80, 1.0]
    else:
        default = 108
        header, align = ["Layer (type)", "Output Shape", "Param #", "Connected to"], ["left", "left", "right", "left"]
        positions = positions or [0.3, 0.56, 0.74, 1.0]
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header, align = header + ["Trainable"], align + ["center"]
    line_length = line_length or min(default, shutil.get_terminal_size().columns - 4)
    widths = column_widths(line_length, positions)
    in_model = {id(c) for c in graph_calls or ()}

    def fields(layer, prefix, top):
        n = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{prefix}{layer.name} ({class_name(layer)})", _output_shape(layer), n]
        if not sequential_like:
            row.append(_connections(layer, in_model) if top else "-")
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        return row

    def rows_of(layer, level):
        out = [fields(layer, "   " * level + "└ " if level else "", level == 0)]
        if expand_nested and isinstance(layer, Graph) and layer.layers:
            for sub in layer.layers:
                out += rows_of(sub, level + 1)
        return out

    if layer_range is not None:
        names = [l.name for l in layers]
        if len(layer_range) != 2 or any(n not in names for n in layer_range):
            raise ValueError(f"summary: layer_range must be two layer names of this model; received {layer_range!r}.")
        layers = layers[names.index(layer_range[0]):names.index(layer_range[1]) + 1]
    rows = [r for layer in layers for r in rows_of(layer, 0)]
    lines = [f'Model: "{model.name}"', *_table(header, align, widths, rows)]
    if model.built:
        tr = sum(v.value.size for v in model.trainable_weights)
        nt = sum(v.value.size for v in model.non_trainable_weights)
        opt = getattr(model, "optimizer", None)
        n_opt = 0
        if opt is not None and getattr(model, "_arena", None) is not None and hasattr(opt, "variables"):
            n_opt = sum(int(getattr(v, "size", 1)) for v in opt.variables())
        al = tr + nt + n_opt
        lines.append(f" Total params: {al:,} ({_fmt_bytes(al * 4)})")
        lines.append(f" Trainable params: {tr:,} ({_fmt_bytes(tr * 4)})")
        lines.append(f" Non-trainable params: {nt:,} ({_fmt_bytes(nt * 4)})")
        if n_opt:
            lines.append(f" Optimizer params: {n_opt:,} ({_fmt_bytes(n_opt * 4)})")
    return lines
