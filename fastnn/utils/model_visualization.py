"""Model diagrams: `plot_model` and `model_to_dot`, as Keras 3 draws them (keras:utils/model_visualization.py).

Each layer is a box (an HTML-like table: name and class, optionally activation, input/output
shapes, dtype, trainable), each connection an edge; `expand_nested=True` draws a nested model
as a dashed cluster of its own layers. The graph goes through pydot and the graphviz `dot`
program, both optional: `pip install "fastnn[plot]"` and the system's graphviz package (e.g.
`apt-get install graphviz`); without them the error says which one is missing.
"""
from __future__ import annotations

import os

_PYDOT_HINT = 'plot_model needs pydot: pip install "fastnn[plot]" (or pip install pydot).'
_DOT_HINT = ("plot_model needs the graphviz program `dot` on the PATH to render the diagram. Install "
             "graphviz with your system's package manager (Debian/Ubuntu: apt-get install graphviz; macOS: "
             "brew install graphviz; conda: conda install graphviz); model_to_dot(...).to_string() works "
             "without it.")


def _pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError(_PYDOT_HINT) from None
    return pydot


def check_graphviz():
    """True if pydot is installed and the graphviz `dot` program runs."""
    try:
        pydot = _pydot()
        pydot.Dot.create(pydot.Dot())
        return True
    except (ImportError, OSError, Exception):
        return False


def _is_model(layer):
    from fastnn.models.graph import Graph
    return isinstance(layer, Graph)


def _is_sequential(layer):
    return type(layer).__name__ == "Sequential" or (
        _is_model(layer) and any(c.__name__ == "Sequential" for c in type(layer).__mro__))


def _shape_text(tensors):
    if tensors is None:
        return "?"
    if isinstance(tensors, list):
        return "[" + ", ".join(str(t.shape) for t in tensors) + "]"
    return str(tensors.shape)


def _label(layer, show_layer_names, show_layer_activations, show_dtype, show_shapes, show_trainable):
    from fastnn.layers.base import class_name
    cls = class_name(layer)
    colspan = max(1, int(show_dtype) + int(show_trainable) + (2 if show_shapes else 0))
    table = '<<table border="0" cellborder="1" bgcolor="black" cellpadding="10">'
    title = f"<b>{layer.name}</b> ({cls})" if show_layer_names else f"<b>{cls}</b>"
    table += (f'<tr><td colspan="{colspan}" bgcolor="black"><font point-size="16" color="white">{title}'
              "</font></td></tr>")
    act = getattr(layer, "activation", None)
    if show_layer_activations and act is not None:
        name = getattr(act, "name", None) or getattr(act, "__name__", None) or str(act)
        table += (f'<tr><td bgcolor="white" colspan="{colspan}"><font point-size="14">Activation: <b>{name}</b>'
                  "</font></td></tr>")
    cols = []
    if show_shapes:
        try:
            ins, outs = layer.input, layer.output
        except AttributeError:
            ins = outs = None
        if cls != "InputLayer":
            cols.append(f'<td bgcolor="white"><font point-size="14">Input shape: <b>{_shape_text(ins)}</b></font></td>')
        cols.append(f'<td bgcolor="white"><font point-size="14">Output shape: <b>{_shape_text(outs)}</b></font></td>')
    if show_dtype:
        cols.append('<td bgcolor="white"><font point-size="14">Output dtype: <b>float32</b></font></td>')
    if show_trainable and layer.weights:
        if layer.trainable:
            cols.append('<td bgcolor="forestgreen"><font point-size="14" color="white"><b>Trainable</b></font></td>')
        else:
            cols.append('<td bgcolor="firebrick"><font point-size="14" color="white"><b>Non-trainable</b>'
                        '</font></td>')
    if cols:
        table += f"<tr>{''.join(cols)}</tr>"
    return table + "</table>>"


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
                 expand_nested=False, dpi=200, subgraph=False, show_layer_activations=False,
                 show_trainable=False, splines="ortho", **kwargs):
    """The model as a `pydot.Dot` graph (a `pydot.Cluster` with subgraph=True), Keras's layout."""
    if not model.built:
        raise ValueError("model_to_dot: the model is not built yet; build it (or call it on data) first.")
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError("model_to_dot: layer_range is no longer supported (as in Keras 3).")
    if kwargs:
        raise ValueError(f"model_to_dot: unrecognized keyword arguments {sorted(kwargs)}.")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"model_to_dot: rankdir must be 'TB', 'LR', 'BT' or 'RL'; received {rankdir!r}.")
    pydot = _pydot()
    if subgraph:
        dot = pydot.Cluster(style="dashed", graph_name=model.name)
        dot.set("label", model.name)
        dot.set("labeljust", "l")
    else:
        dot = pydot.Dot()
        dot.set("rankdir", rankdir)
        dot.set("concentrate", True)
        dot.set("dpi", dpi)
        dot.set("splines", splines)
        dot.set_node_defaults(shape="record")
    opts = dict(show_layer_names=show_layer_names, show_layer_activations=show_layer_activations,
                show_dtype=show_dtype, show_shapes=show_shapes, show_trainable=show_trainable)
    layers = model.layers
    for layer in layers:
        if expand_nested and _is_model(layer):
            dot.add_subgraph(model_to_dot(layer, show_shapes, show_dtype, show_layer_names, rankdir, expand_nested,
                                          subgraph=True, show_layer_activations=show_layer_activations,
                                          show_trainable=show_trainable))
        else:
            node = pydot.Node(str(id(layer)), label=_label(layer, **opts))
            node.set("fontname", "Helvetica")
            node.set("border", "0")
            node.set("margin", "0")
            dot.add_node(node)

    def add_edge(src, dst):
        s, d = str(id(src)), str(id(dst))
        if not dot.get_edge(s, d):
            edge = pydot.Edge(s, d)
            edge.set("penwidth", "2")
            dot.add_edge(edge)

    if _is_sequential(model):
        if not expand_nested:
            for a, b in zip(layers, layers[1:]):
                add_edge(a, b)
            return dot
        layers = layers[1:]   # the first layer's edge comes from outside (the InputLayer is not drawn)
    in_model = {id(c) for c in getattr(model, "_graph_calls", ())}
    for layer in layers:
        for call in layer._calls:
            if not _is_sequential(model) and id(call) not in in_model:
                continue   # a call made for another model
            for input_index, t in enumerate(call.inputs):
                if t.call is None:
                    continue
                source, output_index, destination = t.call.layer, t.index, layer
                if not expand_nested:
                    add_edge(source, destination)
                    continue
                while _is_model(source):      # the layer inside that makes this output
                    out = source.outputs[output_index]
                    source, output_index = out.call.layer, out.index
                while _is_model(destination):  # the InputLayer (or first layer) that takes it
                    if _is_sequential(destination):
                        destination = destination.layers[0]
                    else:
                        destination = destination.inputs[input_index].layer
                add_edge(source, destination)
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               splines="ortho", **kwargs):
    """Draw the model to `to_file` (.png, .svg, .pdf, .jpg or .dot), Keras's arguments and defaults.

    Returns an IPython Image for PNG/JPG files when IPython is installed (inline in notebooks),
    else None.
    """
    if not model.built:
        raise ValueError("plot_model: the model is not built yet; build it (or call it on data) first.")
    _pydot()
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError("plot_model: layer_range is no longer supported (as in Keras 3).")
    if kwargs:
        raise ValueError(f"plot_model: unrecognized keyword arguments {sorted(kwargs)}.")
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                       rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable, splines=splines)
    to_file = os.fspath(to_file)
    ext = os.path.splitext(to_file)[1][1:].lower() or "png"
    if ext == "dot":
        with open(to_file, "w") as f:
            f.write(dot.to_string())
        return None
    if not check_graphviz():
        raise ImportError(_DOT_HINT)
    data = dot.create(format=ext)
    folder = os.path.dirname(os.path.abspath(to_file))
    os.makedirs(folder, exist_ok=True)
    with open(to_file, "wb") as f:
        f.write(data)
    if ext in ("png", "jpg", "jpeg"):
        try:
            from IPython import display
        except ImportError:
            return None
        return display.Image(filename=to_file)
    return None
