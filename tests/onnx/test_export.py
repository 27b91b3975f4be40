"""ONNX export (fastnn.onnx) checked by ONNX Runtime: each layer type and option gives fastnn's
predictions at two batch sizes, the graph passes onnx.checker, the batch axis is dynamic, input
and output names are the model's, and a layer without an ONNX form is an error naming it.

Tolerance: 1e-4 (the issue's), absolute on outputs of size ~1 and relative above. Measured over
this file: the largest difference is 3.8e-6 (ONNX Runtime's own conv and exp/erf against
fastnn's kernels), so 1e-4 sits ~25x above it.
"""
import numpy as np
import pytest

from oracles import require

onnx = require("onnx")
ort = require("onnxruntime")

import fastnn  # noqa: E402
import fastnn.onnx  # noqa: E402
from fastnn import layers as L  # noqa: E402

from onnxutil import BATCHES, TOL, check, ops, randomize, seq, session  # noqa: E402,F401


ACTIVATIONS = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid",
               "hard_silu", "hard_swish", "tanh", "softsign", "softplus", "silu", "swish", "exponential", "softmax",
               "log_softmax"]


def test_activation_list_is_every_kernel_activation():
    from fastnn.kernels.activation import NAMES
    assert sorted(ACTIVATIONS) == sorted(NAMES)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations(name):
    # as an Activation layer on a conv output (channels-first inside the graph: softmax's axis is
    # mapped) and fused into Dense
    m = seq((6, 5, 3), L.Conv2D(4, 3, padding="same"), L.Activation(name), L.Flatten(), L.Dense(8, activation=name),
            std=0.2)   # exponential twice stays finite
    check(m)


@pytest.mark.parametrize("opset", [17, 20])
def test_gelu_both_forms_each_opset(opset):
    from fastnn.activations import get
    m = seq((10,), L.Dense(6, activation=get("gelu").with_params(approximate=True)), L.Activation("gelu"))
    proto = check(m, opset=opset)
    assert ("Gelu" in ops(proto)) == (opset >= 20)


@pytest.mark.parametrize("kwargs", [dict(), dict(max_value=6.0), dict(negative_slope=0.1), dict(threshold=0.5),
                                    dict(max_value=2.0, negative_slope=0.2, threshold=-0.3),
                                    dict(max_value=1.5, threshold=0.25)])
def test_relu_arguments(kwargs):
    check(seq((4, 4, 3), L.Conv2D(3, 1), L.ReLU(**kwargs)))


def test_activation_layers():
    check(seq((5, 6), L.LeakyReLU(), L.ELU(alpha=0.7), L.Softmax(axis=1), L.Dense(3), L.LeakyReLU(0.05)))
    check(seq((6, 6, 2), L.Conv2D(4, 3), L.Softmax(axis=1), L.Conv2D(4, 1), L.Softmax()))
    check(seq((6, 6, 2), L.Conv2D(4, 3), L.PReLU(), L.Conv2D(4, 1), L.PReLU(shared_axes=[1, 2]), L.Flatten(),
              L.Dense(3), L.PReLU()))


def test_dense_on_higher_rank():
    check(seq((3, 4, 5), L.Dense(6, activation="tanh"), L.Dense(2, use_bias=False)))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3), dict(kernel_size=3, padding="same"), dict(kernel_size=(2, 4), padding="same"),
    dict(kernel_size=3, strides=2), dict(kernel_size=(3, 2), strides=(2, 3), padding="same"),
    dict(kernel_size=3, dilation_rate=2), dict(kernel_size=3, dilation_rate=(2, 1), padding="same"),
    dict(kernel_size=3, groups=2), dict(kernel_size=1, use_bias=False, activation="relu"),
])
def test_conv2d(kwargs):
    check(seq((9, 10, 4), L.Conv2D(6, **kwargs)))


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=4, padding="same"),
                                    dict(kernel_size=3, padding="causal", dilation_rate=2),
                                    dict(kernel_size=3, strides=2), dict(kernel_size=2, groups=2, padding="causal")])
def test_conv1d(kwargs):
    check(seq((11, 4), L.Conv1D(6, **kwargs)))


def test_conv_unknown_spatial_size_same_padding():
    # unknown H, W: "same" becomes ONNX's SAME_UPPER, which pads as Keras does (extra at the end)
    m = seq((None, None, 3), L.Conv2D(4, 4, strides=2, padding="same"), L.MaxPooling2D(3, 2, padding="same"),
            L.DepthwiseConv2D(3, padding="same"), L.GlobalAveragePooling2D())
    proto = check(m)
    assert any(a.s == b"SAME_UPPER" for n in proto.graph.node for a in n.attribute if a.name == "auto_pad")
    m1 = seq((None, 2), L.Conv1D(3, 3, padding="causal"), L.Conv1D(3, 4, strides=3, padding="same"))
    check(m1)


@pytest.mark.parametrize("rank,kwargs", [
    (2, dict(kernel_size=3)), (2, dict(kernel_size=3, depth_multiplier=2, strides=2, padding="same")),
    (2, dict(kernel_size=(3, 5), dilation_rate=2, padding="same", activation="relu6")),
    (1, dict(kernel_size=3, depth_multiplier=3)), (1, dict(kernel_size=4, strides=2, padding="same")),
])
def test_depthwise(rank, kwargs):
    shape = (9, 8, 3) if rank == 2 else (12, 3)
    check(seq(shape, (L.DepthwiseConv2D if rank == 2 else L.DepthwiseConv1D)(**kwargs)))


@pytest.mark.parametrize("rank,kwargs", [
    (2, dict(kernel_size=3)), (2, dict(kernel_size=3, depth_multiplier=2, strides=2, padding="same")),
    (2, dict(kernel_size=3, dilation_rate=2, use_bias=False, activation="relu")),
    (1, dict(kernel_size=3, depth_multiplier=2, padding="same")),
])
def test_separable(rank, kwargs):
    shape = (9, 8, 3) if rank == 2 else (12, 3)
    check(seq(shape, (L.SeparableConv2D if rank == 2 else L.SeparableConv1D)(5, **kwargs)))


@pytest.mark.parametrize("rank,kwargs", [
    (2, dict(kernel_size=3)), (2, dict(kernel_size=3, strides=2, padding="same")),
    (2, dict(kernel_size=4, strides=2, padding="same")), (2, dict(kernel_size=3, strides=2)),
    (2, dict(kernel_size=3, strides=(2, 3), output_padding=(1, 2))),
    (2, dict(kernel_size=3, strides=2, padding="same", output_padding=0, activation="sigmoid")),
    (2, dict(kernel_size=2, strides=3)), (2, dict(kernel_size=3, dilation_rate=2, padding="same")),
    (1, dict(kernel_size=3, strides=2, padding="same")), (1, dict(kernel_size=3, strides=2, output_padding=1)),
])
def test_conv_transpose(rank, kwargs):
    shape = (5, 6, 3) if rank == 2 else (7, 3)
    check(seq(shape, (L.Conv2DTranspose if rank == 2 else L.Conv1DTranspose)(4, **kwargs)))


@pytest.mark.parametrize("cls", ["Max", "Average"])
@pytest.mark.parametrize("kwargs", [dict(), dict(pool_size=3, strides=2), dict(pool_size=3, padding="same"),
                                    dict(pool_size=(2, 3), strides=(1, 2), padding="same")])
def test_pooling(cls, kwargs):
    check(seq((9, 8, 3), getattr(L, f"{cls}Pooling2D")(**kwargs)))
    kw1 = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    check(seq((9, 3), getattr(L, f"{cls}Pooling1D")(**kw1)))


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(keepdims):
    for cls in ("GlobalMaxPooling", "GlobalAveragePooling"):
        # on the input (channels-last: ReduceMax/ReduceMean) and after a conv (Global*Pool)
        check(seq((5, 6, 3), getattr(L, f"{cls}2D")(keepdims=keepdims)))
        check(seq((5, 6, 3), L.Conv2D(4, 3), getattr(L, f"{cls}2D")(keepdims=keepdims)))
        check(seq((7, 3), getattr(L, f"{cls}1D")(keepdims=keepdims)))
        check(seq((7, 3), L.Conv1D(4, 3), getattr(L, f"{cls}1D")(keepdims=keepdims)))


@pytest.mark.parametrize("opset", [17, 18])
def test_global_pooling_reduce_opsets(opset):
    check(seq((5, 6, 3), L.GlobalMaxPooling2D(), L.RepeatVector(2), L.GlobalAveragePooling1D()), opset=opset)


def test_batch_norm():
    # channels-first after a conv (ONNX's op), channels-last at rank 3 (Mul/Add), rank 2
    check(seq((6, 6, 3), L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(),
              L.Dense(5), L.BatchNormalization(epsilon=0.01)))
    check(seq((7, 4), L.BatchNormalization(center=False), L.BatchNormalization(scale=False)))
    check(seq((5, 5, 2), L.BatchNormalization()))


def test_dropout_flatten_reshape_permute_repeat():
    check(seq((4, 6, 2), L.Dropout(0.5), L.Conv2D(3, 3), L.Reshape((-1, 3)), L.Permute((2, 1)), L.Flatten(),
              L.RepeatVector(3), L.Reshape((6, 2, -1)), L.Identity()))


def test_padding_cropping_upsampling():
    # each on the input (channels-last) and after a conv (channels-first: axes mapped)
    for conv in ([], [L.Conv2D(3, 1)]):
        check(seq((5, 6, 2), *conv, L.ZeroPadding2D(((1, 2), (0, 3))), L.Cropping2D(((2, 0), (1, 1))),
                  L.UpSampling2D((2, 3)), L.ZeroPadding2D(1), L.Cropping2D(1)))
    for conv in ([], [L.Conv1D(3, 1)]):
        check(seq((5, 2), *conv, L.ZeroPadding1D((2, 1)), L.ZeroPadding1D()))


def _two_branch(merge, conv=True):
    inp = fastnn.Input((6, 5, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", name="a")(inp) if conv else L.Dense(4, name="a")(inp)
    b = L.Conv2D(4, 1, name="b")(inp) if conv else L.Dense(4, name="b")(inp)
    m = fastnn.Model(inp, merge([a, b]))
    randomize(m)
    return m


@pytest.mark.parametrize("cls", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"])
def test_elementwise_merges(cls):
    check(_two_branch(getattr(L, cls)()))
    check(_two_branch(getattr(L, cls)(), conv=False))


def test_merge_of_three_and_mixed_layouts():
    inp = fastnn.Input((6, 5, 3), name="x")
    a = L.Conv2D(3, 3, padding="same")(inp)        # channels-first inside the graph
    b = L.Dense(3)(inp)                              # channels-last
    y = L.Add()([a, b, inp])
    z = L.Concatenate()([a, b, y])
    w = L.Concatenate(axis=1)([z, L.Conv2D(9, 1)(inp)])
    m = fastnn.Model(inp, [w, L.Maximum()([b, a, inp])])
    randomize(m)
    check(m)


@pytest.mark.parametrize("axes,normalize,shapes", [
    (1, False, ((5,), (5,))), (-1, True, ((5,), (5,))), ((1, 1), False, ((3, 4), (3, 6))),
    ((2, 2), True, ((3, 4), (5, 4))), ((2, 1), False, ((3, 4), (4, 2))),
])
def test_dot(axes, normalize, shapes):
    a, c = fastnn.Input(shapes[0], name="a"), fastnn.Input(shapes[1], name="c")
    m = fastnn.Model([a, c], L.Dot(axes, normalize=normalize)([a, c]))
    check(m)


def test_preprocessing():
    data = np.random.default_rng(1).normal(2, 3, (50, 6, 5, 3)).astype(np.float32)
    norm = L.Normalization()
    norm.adapt(data)
    norm_hw = L.Normalization(axis=(1, 2))
    norm_hw.adapt(data)
    check(seq((6, 5, 3), L.Rescaling(1 / 255.0, offset=-0.5), norm, norm_hw,
              L.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25], invert=True),
              L.Rescaling(np.array([1.0, 2.0, 0.5], np.float32)), L.Conv2D(3, 1),
              L.Normalization(mean=0.5, variance=2.0), L.Normalization(mean=[1.0, 2.0, 3.0], variance=[1, 2, 3])))


@pytest.mark.parametrize("kwargs", [dict(height=8, width=11), dict(height=3, width=4),
                                    dict(height=7, width=5, interpolation="nearest"),
                                    dict(height=4, width=9, interpolation="nearest"),
                                    dict(height=6, width=6, crop_to_aspect_ratio=True),
                                    dict(height=4, width=8, pad_to_aspect_ratio=True, fill_value=0.5)])
def test_resizing(kwargs):
    check(seq((10, 7, 3), L.Resizing(**kwargs)))


def test_functional_several_inputs_outputs_nested_shared():
    inner_in = fastnn.Input((8, 8, 3))
    inner = fastnn.Model(inner_in, L.MaxPooling2D()(L.Conv2D(4, 3, padding="same", activation="relu")(inner_in)),
                         name="inner")
    img, meta = fastnn.Input((8, 8, 3), name="image"), fastnn.Input((5,), name="metadata")
    shared = L.Dense(6, activation="relu", name="shared")
    f = L.GlobalAveragePooling2D()(inner(img))
    h = L.Concatenate(name="concat")([f, shared(meta), shared(L.Dense(5)(f))])
    m = fastnn.Model({"image": img, "metadata": meta}, {"cls": L.Dense(3, activation="softmax", name="cls")(h),
                                                        "reg": L.Dense(1, name="reg")(h)})
    randomize(m)
    proto = check(m)
    # the shared Dense's weights are written once
    assert sum(1 for i in proto.graph.initializer if i.name.startswith("shared/kernel")) == 1
    # an output that is a model input, and one tensor returned twice
    x = fastnn.Input((4,), name="x")
    y = L.Dense(2, name="d")(x)
    check(fastnn.Model(x, [y, x, y]))


def test_dynamic_batch_axis_and_names():
    m = seq((28, 28, 1), L.Conv2D(4, 3), L.Flatten(), L.Dense(10))
    proto = fastnn.onnx.to_onnx(m)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [28, 28, 1]
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.opset_import[0].version == fastnn.onnx.DEFAULT_OPSET >= 17
    # a convnet costs one Transpose into channels-first and one out
    assert ops(proto).count("Transpose") == 2
    fixed = fastnn.onnx.to_onnx(m, input_signature=[(4, 28, 28, 1)])
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_opsets_and_export_paths(tmp_path):
    m = seq((6, 6, 2), L.Conv2D(3, 3), L.BatchNormalization(), L.GlobalMaxPooling2D(), L.Dense(2))
    top = min(onnx.defs.onnx_opset_version(), 23)   # the newest ONNX Runtime 1.2x runs
    for opset in sorted({17, 18, 21, top}):
        check(m, opset=opset)
    path = tmp_path / "m.onnx"
    m.export(path, format="onnx", verbose=False)
    again = onnx.load(str(path))
    assert again.opset_import[0].version == fastnn.onnx.DEFAULT_OPSET
    m.export(str(path), format="onnx", opset_version=17, verbose=False)
    assert onnx.load(str(path)).opset_import[0].version == 17
    fastnn.onnx.export(m, path, opset=17, fold_batchnorm=True)
    assert "BatchNormalization" not in ops(onnx.load(str(path)))


def test_export_prints_as_keras(tmp_path, capsys):
    m = seq((3,), L.Dense(2))
    m.export(tmp_path / "a.onnx", format="onnx")
    assert capsys.readouterr().out.strip() == f"Saved artifact at '{tmp_path / 'a.onnx'}'."


def _fold_models():
    yield "conv", seq((8, 8, 3), L.Conv2D(4, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
                      L.Conv2D(4, 3, strides=2), L.BatchNormalization(center=False), L.Flatten())
    yield "depthwise", seq((8, 8, 3), L.DepthwiseConv2D(3, depth_multiplier=2), L.BatchNormalization(),
                           L.SeparableConv2D(5, 3, padding="same"), L.BatchNormalization(scale=False))
    yield "transpose", seq((5, 5, 3), L.Conv2DTranspose(4, 3, strides=2), L.BatchNormalization(),
                           L.Conv2D(2, 1), L.BatchNormalization())
    yield "dense", seq((6,), L.Dense(5), L.BatchNormalization(), L.Dense(3, activation="relu"),
                       L.BatchNormalization())
    yield "1d", seq((9, 3), L.Conv1D(4, 3, padding="causal"), L.BatchNormalization(), L.DepthwiseConv1D(3),
                    L.BatchNormalization())


@pytest.mark.parametrize("name", ["conv", "depthwise", "transpose", "dense", "1d"])
def test_fold_batchnorm(name):
    model = dict(_fold_models())[name]
    plain = check(model)
    folded = check(model, fold_batchnorm=True)
    n_bn = sum(isinstance(l, L.BatchNormalization) for l in model.layers)
    # each BN after an unactivated conv/dense is folded; the one after Dense(activation="relu") stays
    kept = 1 if name == "dense" else 0
    assert sum(o in ("BatchNormalization",) or o == "Mul" for o in ops(folded)) <= kept
    assert len(ops(folded)) < len(ops(plain)) and n_bn >= 2
    # the folded graph gives the unfolded graph's outputs
    x = np.random.default_rng(3).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    a = session(plain).run(None, {plain.graph.input[0].name: x})[0]
    b = session(folded).run(None, {folded.graph.input[0].name: x})[0]
    np.testing.assert_allclose(b, a, rtol=TOL, atol=TOL)


def test_fold_skips_shared_and_output_convs():
    inp = fastnn.Input((6, 6, 2))
    c = L.Conv2D(3, 3, name="c")(inp)
    m = fastnn.Model(inp, [L.BatchNormalization()(c), c])   # c is an output: BN must stay
    randomize(m)
    proto = check(m, fold_batchnorm=True)
    assert "BatchNormalization" in ops(proto)


def test_lambda_is_an_error_naming_the_layer():
    m = fastnn.Sequential([fastnn.Input((3,)), L.Dense(2), L.Lambda(lambda x: x * 2, name="double")])
    with pytest.raises(fastnn.onnx.ExportError, match=r"layer 'double' \(Lambda\).*Python code"):
        fastnn.onnx.to_onnx(m)


def test_unknown_layer_is_an_error_naming_it():
    class Mine(L.Layer):
        def forward(self, x, training=False):
            return x
    m = fastnn.Sequential([fastnn.Input((3,)), Mine(name="mine")])
    with pytest.raises(fastnn.onnx.ExportError, match=r"layer 'mine' \(Mine\).*no ONNX exporter"):
        fastnn.onnx.to_onnx(m)


def test_argument_errors(tmp_path):
    m = seq((3,), L.Dense(2))
    with pytest.raises(ValueError, match="opset must be an int from 17"):
        fastnn.onnx.to_onnx(m, opset=13)
    with pytest.raises(ValueError, match="format='onnx'"):
        m.export(tmp_path / "x", format="tf_saved_model")
    with pytest.raises(TypeError, match="unexpected keyword"):
        m.export(tmp_path / "x", format="onnx", dynamo=True)
    with pytest.raises(ValueError, match="not built"):
        fastnn.onnx.to_onnx(fastnn.Sequential([L.Dense(2)]))
    with pytest.raises(ValueError, match="does not fit"):
        fastnn.onnx.to_onnx(m, input_signature=[(None, 4)])


def test_every_layer_class_has_a_handler():
    """Each public layer class of fastnn.layers (whatever branches are merged in) exports; a layer
    added without an ONNX handler fails here, naming it."""
    import inspect
    from fastnn.onnx import layers as handlers
    handlers.register_all()
    # the recurrent cells (SimpleRNNCell, ..., StackedRNNCells) are no model layers of their own:
    # they run inside an RNN, whose handler exports them
    missing = [n for n, c in vars(L).items() if inspect.isclass(c) and issubclass(c, L.Layer) and c is not L.Layer
               and not n.endswith(("Cell", "Cells")) and handlers.lookup(c.__new__(c)) is None]
    assert not missing, f"no ONNX handler for {missing}"
