"""fastnn.utils.model_to_dot / plot_model against Keras 3's: the same boxes (labels) and edges for
the same graph (node ids, which are object ids, mapped to layer names), for every option; the
PNG/SVG files where graphviz's `dot` exists; clear errors where pydot or `dot` is missing."""
import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn
from fastnn.utils import model_visualization as mv

keras = pydot = None   # the oracles, set for each test by _oracles


@pytest.fixture(autouse=True)
def _oracles(request, require):
    """Keras and pydot through conftest's require: a skip here, a failure under CI."""
    global keras, pydot
    keras = request.getfixturevalue("keras")
    pydot = require("pydot")

HAVE_DOT = mv.check_graphviz()


def _two_input(K):
    L = K.layers
    img, meta = K.Input((8, 8, 1), name="image"), K.Input((3,), name="meta")
    x = L.Flatten(name="flatten")(L.Conv2D(4, 3, activation="relu", name="conv")(img))
    h = L.Concatenate(name="concat")([x, L.Dense(4, activation="tanh", name="meta_dense")(meta)])
    inner_in = K.Input((148,), name="inner_in")
    head = K.Model(inner_in, L.Dense(3, activation="softmax", name="probs")(
        L.Dense(8, activation="relu", name="hidden")(inner_in)), name="head")
    head.trainable = False
    seq = K.Sequential([K.Input((148,)), L.Dense(2, name="s1"), L.Dense(1, name="s2")], name="tail")
    return K.Model([img, meta], [head(h), seq(h)], name="two_inputs")


def _normalized(dot):
    """(set of node labels, set of (src label, dst label) edges, clusters) with ids replaced."""
    text = dot.to_string()
    labels = {}
    for m in re.finditer(r'^\s*(\d+) \[label=(<<table.*?</table>>)', text, re.M):
        labels[m.group(1)] = m.group(2)
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", text, re.M)}
    clusters = sorted(re.findall(r"subgraph cluster_(\w+)", text))
    graph_attrs = sorted(re.findall(r"^(rankdir|concentrate|dpi|splines)=(\S+);", text, re.M))
    return set(labels.values()), edges, clusters, graph_attrs


OPTIONS = [{}, {"show_shapes": True}, {"show_shapes": True, "show_dtype": True, "show_trainable": True},
           {"expand_nested": True, "show_layer_activations": True, "rankdir": "LR", "dpi": 96},
           {"expand_nested": True, "show_shapes": True, "show_layer_names": False}]


@pytest.mark.parametrize("opts", OPTIONS)
def test_dot_equals_keras(opts):
    fd = fastnn.utils.model_to_dot(_two_input(fastnn), **opts)
    kd = keras.utils.model_to_dot(_two_input(keras), **opts)
    f_nodes, f_edges, f_cl, f_attrs = _normalized(fd)
    k_nodes, k_edges, k_cl, k_attrs = _normalized(kd)
    assert f_nodes == k_nodes
    assert f_edges == k_edges
    assert f_cl == k_cl and f_attrs == k_attrs
    assert len(f_edges) >= 6


@pytest.mark.skipif(not HAVE_DOT and os.environ.get("FASTNN_REQUIRE_ORACLES") != "1",
                    reason="graphviz's dot program is not installed")   # under CI a missing dot fails
@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_model_writes_the_file(tmp_path, ext, magic):
    path = tmp_path / f"model.{ext}"
    fastnn.utils.plot_model(_two_input(fastnn), to_file=path, show_shapes=True, expand_nested=True, dpi=60)
    assert path.read_bytes().startswith(magic) and path.stat().st_size > 1000


def test_without_dot_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(mv, "check_graphviz", lambda: False)
    with pytest.raises(ImportError, match="apt-get install graphviz"):
        fastnn.utils.plot_model(_two_input(fastnn), to_file=tmp_path / "m.png")
    fastnn.utils.plot_model(_two_input(fastnn), to_file=tmp_path / "m.dot")   # DOT text needs no graphviz
    assert (tmp_path / "m.dot").read_text().startswith("digraph")


def test_without_pydot_the_error_names_the_extra(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "pydot":
            raise ImportError("no pydot")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r'fastnn\[plot\]'):
        fastnn.utils.model_to_dot(_two_input(fastnn))


def test_import_fastnn_does_not_import_pydot(tmp_path):
    import subprocess
    import sys
    code = "import sys, fastnn, fastnn.utils, fastnn.models; assert 'pydot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)   # not ./fastnn
