"""One small ONNX handler per fastnn layer class, in a registry.

A handler is `fn(cx, layer, ins) -> out` where `ins` are the input tensors (fastnn.onnx._builder.Sym)
and `out` is a (name, layout) pair, a Sym to pass an input through, or a list of either for a
layer with several outputs. `cx.b` is the Builder; `cx.folded(layer, ...)` gives a conv's
weights with the following BatchNormalization folded in when `fold_batchnorm=True` chose it.

Weights become initializers in ONNX's layouts, converted from Keras's:
  Dense           (in, units)                 MatMul / Gemm B as is
  Conv1D/2D       (*k, in/groups, filters)    Conv W (filters, in/groups, *k)
  Depthwise       (*k, C, M)                  Conv W (C*M, 1, *k), group=C (Keras's channel c*M + m)
  Separable       depthwise as above, pointwise (1, [1,] C*M, filters) -> Conv W (filters, C*M, 1[, 1])
  ConvTranspose   (*k, filters, in)           ConvTranspose W (in, filters, *k)
"""
from __future__ import annotations

import numpy as np

from fastnn.kernels._geometry import conv_transpose_padding, resolve_padding
from fastnn.onnx import activations
from fastnn.onnx._builder import ExportError, Sym, axis_in, per_channel, to_first

HANDLERS = {}


def handles(*classes):
    """Register fn as the ONNX handler of the layer classes (and their subclasses)."""
    def deco(fn):
        for cls in classes:
            HANDLERS[cls] = fn
        return fn
    return deco


def lookup(layer):
    """The handler for a layer's class (the nearest registered class in its MRO), or None."""
    for cls in type(layer).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    return None


def describe(layer):
    return f"layer '{layer.name}' ({type(layer).__name__})"


def _act(cx, layer, y, layout, shape):
    """The layer's fused `activation=` applied to output y."""
    name = getattr(layer, "_act_name", "linear")
    if name == "linear":
        return y
    return activations.emit(cx.b, name, getattr(layer, "_act_params", {}), Sym(y, shape, layout),
                            layer.name, describe(layer))


# ---------------------------------------------------------------------------------------------
# core
def _passthrough(cx, layer, ins):
    return ins[0] if len(ins) == 1 else list(ins)


def _dense(cx, layer, ins):
    b, x = cx.b, ins[0]
    kernel, bias = cx.folded(layer, layer.kernel.value, None if layer.bias is None else layer.bias.value, -1)
    w = b.weight(kernel, f"{layer.name}/kernel", tag=cx.fold_tag(layer))
    bias_name = None if bias is None else b.weight(bias, f"{layer.name}/bias", tag=cx.fold_tag(layer))
    if x.rank == 2:
        y = b.node("Gemm", [x.name, w, bias_name], layer.name)
    else:
        y = b.node("MatMul", [b.last(x), w], layer.name)
        if bias_name is not None:
            y = b.node("Add", [y, bias_name], layer.name)
    return _act(cx, layer, y, "last", (*x.shape[:-1], layer.units)), "last"


def _activation(cx, layer, ins):
    x = ins[0]
    return activations.emit(cx.b, layer._act_name, layer._act_params, x, layer.name, describe(layer)), x.layout


def _kernel_activation(cx, layer, ins):
    x = ins[0]
    return activations.emit(cx.b, layer._act_name, layer._params(), x, layer.name, describe(layer)), x.layout


def _prelu(cx, layer, ins):
    b, x = cx.b, ins[0]
    tag = x.layout if x.rank > 2 else "last"

    def to_layout(alpha):   # alpha has the input's shape minus the batch axis
        if tag == "first":
            return np.transpose(alpha, [a - 1 for a in to_first(x.rank)[1:]])
        return alpha
    slope = b.weight(layer.alpha.value, f"{layer.name}/alpha", to_layout, tag)
    return b.node("PRelu", [x.name, slope], layer.name), x.layout


def _flatten(cx, layer, ins):
    return cx.b.node("Flatten", [cx.b.last(ins[0])], layer.name, axis=1), "last"


def _reshape(cx, layer, ins):
    b = cx.b
    return b.node("Reshape", [b.last(ins[0]), b.ints((0, *layer.target_shape), "shape")], layer.name), "last"


def _permute(cx, layer, ins):
    return cx.b.node("Transpose", [cx.b.last(ins[0])], layer.name, perm=[0, *layer.dims]), "last"


def _repeat_vector(cx, layer, ins):
    b = cx.b
    y = b.node("Unsqueeze", [ins[0].name, b.ints((1,), "axes")], layer.name)
    return b.node("Expand", [y, b.ints((1, layer.n, 1), "shape")], layer.name), "last"


def _lambda(cx, layer, ins):
    raise ExportError(f"Cannot export {describe(layer)} to ONNX: a Lambda layer runs Python code, which an ONNX "
                      f"graph cannot hold. Rebuild the model with built-in layers in its place (its weights "
                      f"copy across with set_weights) and export that.")


# ---------------------------------------------------------------------------------------------
# convolutions
def _pads(layer, shape, transpose=False):
    """ONNX (pads, auto_pad, output_padding) for a conv/pool window over Keras shape `shape`."""
    rank = len(shape) - 2
    ks = getattr(layer, "kernel_size", None) or layer.pool_size
    dil = getattr(layer, "dilation_rate", (1,) * rank)
    if transpose:
        ops = layer.output_padding or (None,) * rank
        crops = [conv_transpose_padding(1, k, s, d, layer.padding, op, "padding", layer.name)
                 for k, s, d, op in zip(ks, layer.strides, dil, ops)]
        return ([c[0] for c in crops] + [max(c[1], 0) for c in crops], None, [max(-c[1], 0) for c in crops])
    spatial = shape[1:-1]
    if layer.padding == "valid":
        return [0] * (2 * rank), None, None
    if layer.padding == "causal":   # all the padding before
        eff = [(k - 1) * d + 1 for k, d in zip(ks, dil)]
        return [e - 1 for e in eff] + [0] * rank, None, None
    if any(n is None for n in spatial):
        return None, "SAME_UPPER", None      # ONNX's SAME_UPPER is Keras's "same" (extra pad at the end)
    pads = [resolve_padding(n, k, s, d, "same", "padding", layer.name)[:2]
            for n, k, s, d in zip(spatial, ks, layer.strides, dil)]
    return [p[0] for p in pads] + [p[1] for p in pads], None, None


def _conv_weight(kernel):
    """Keras (*k, in, out) -> ONNX (out, in, *k)."""
    r = kernel.ndim - 2
    return np.transpose(kernel, (r + 1, r, *range(r)))


def _conv(cx, layer, ins):
    b, x = cx.b, ins[0]
    kernel, bias = cx.folded(layer, layer.kernel.value, None if layer.bias is None else layer.bias.value, -1)
    tag = cx.fold_tag(layer)
    w = b.weight(kernel, f"{layer.name}/kernel", _conv_weight, tag)
    bias_name = None if bias is None else b.weight(bias, f"{layer.name}/bias", tag=tag)
    pads, auto_pad, _ = _pads(layer, x.shape)
    y = b.node("Conv", [b.first(x), w, bias_name], layer.name, kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), dilations=list(layer.dilation_rate), pads=pads, auto_pad=auto_pad,
               group=layer.groups)
    out_shape = layer.compute_output_shape(x.shape)
    return _act(cx, layer, y, "first", out_shape), "first"


def _depthwise_weight(kernel):
    """Keras (*k, C, M) -> ONNX (C*M, 1, *k): output channel c*M + m, as Keras orders them."""
    r = kernel.ndim - 2
    flat = kernel.reshape(*kernel.shape[:r], -1)
    return np.transpose(flat, (r, *range(r)))[:, None]


def _depthwise(cx, layer, ins):
    b, x = cx.b, ins[0]
    c = x.shape[-1]
    bias = None if layer.bias is None else layer.bias.value
    tag = cx.fold_tag(layer)
    if tag:   # fold on the flat (*k, C*M) kernel, whose last axis is the output channel
        k = layer.kernel.value
        kernel, bias = cx.folded(layer, k.reshape(*k.shape[:-2], 1, -1), bias, -1)
    else:
        kernel = layer.kernel.value
    w = b.weight(kernel, f"{layer.name}/kernel", _depthwise_weight, tag)
    bias_name = None if bias is None else b.weight(bias, f"{layer.name}/bias", tag=tag)
    pads, auto_pad, _ = _pads(layer, x.shape)
    y = b.node("Conv", [b.first(x), w, bias_name], layer.name, kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), dilations=list(layer.dilation_rate), pads=pads, auto_pad=auto_pad,
               group=int(c))
    return _act(cx, layer, y, "first", layer.compute_output_shape(x.shape)), "first"


def _separable(cx, layer, ins):
    b, x = cx.b, ins[0]
    c = x.shape[-1]
    dw = b.weight(layer.depthwise_kernel.value, f"{layer.name}/depthwise_kernel", _depthwise_weight)
    pads, auto_pad, _ = _pads(layer, x.shape)
    t = b.node("Conv", [b.first(x), dw], layer.name, kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), dilations=list(layer.dilation_rate), pads=pads, auto_pad=auto_pad,
               group=int(c))
    kernel, bias = cx.folded(layer, layer.pointwise_kernel.value, None if layer.bias is None else layer.bias.value, -1)
    tag = cx.fold_tag(layer)
    pw = b.weight(kernel, f"{layer.name}/pointwise_kernel", _conv_weight, tag)
    bias_name = None if bias is None else b.weight(bias, f"{layer.name}/bias", tag=tag)
    y = b.node("Conv", [t, pw, bias_name], layer.name, kernel_shape=[1] * layer.rank)
    return _act(cx, layer, y, "first", layer.compute_output_shape(x.shape)), "first"


def _conv_transpose(cx, layer, ins):
    b, x = cx.b, ins[0]
    kernel, bias = cx.folded(layer, layer.kernel.value, None if layer.bias is None else layer.bias.value, -2)
    tag = cx.fold_tag(layer)
    w = b.weight(kernel, f"{layer.name}/kernel", _conv_weight, tag)    # (*k, F, C) -> (C, F, *k)
    bias_name = None if bias is None else b.weight(bias, f"{layer.name}/bias", tag=tag)
    pads, _, output_padding = _pads(layer, x.shape, transpose=True)
    y = b.node("ConvTranspose", [b.first(x), w, bias_name], layer.name, kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), dilations=list(layer.dilation_rate), pads=pads,
               output_padding=output_padding if any(output_padding) else None)
    return _act(cx, layer, y, "first", layer.compute_output_shape(x.shape)), "first"


# ---------------------------------------------------------------------------------------------
# pooling and normalization
def _pool(cx, layer, ins):
    b, x = cx.b, ins[0]
    pads, auto_pad, _ = _pads(layer, x.shape)
    op = "MaxPool" if layer.mode == "max" else "AveragePool"
    y = b.node(op, [b.first(x)], layer.name, kernel_shape=list(layer.pool_size), strides=list(layer.strides),
               pads=pads, auto_pad=auto_pad)
    return y, "first"


def _global_pool(cx, layer, ins):
    b, x = cx.b, ins[0]
    mask = cx.mask_in[0] if cx.mask_in else None
    if mask is not None and layer.mode == "avg" and x.rank == 3:   # Keras: the mean of the unmasked steps
        from fastnn.onnx.recurrent import masked_global_average
        cx.mask_out = None
        return masked_global_average(cx, layer, x, mask), "last"
    if x.layout == "first":
        y = b.node("GlobalMaxPool" if layer.mode == "max" else "GlobalAveragePool", [x.name], layer.name)
        if layer.keepdims:
            return y, "first"
        return b.node("Flatten", [y], layer.name, axis=1), "last"
    op = "ReduceMax" if layer.mode == "max" else "ReduceMean"
    return b.reduce(op, x.name, range(1, x.rank - 1), layer.name, keepdims=int(layer.keepdims)), "last"


def _batch_norm(cx, layer, ins):
    b, x = cx.b, ins[0]
    c = x.shape[-1]
    gamma = np.ones(c, np.float32) if layer.gamma is None else layer.gamma.value
    beta = np.zeros(c, np.float32) if layer.beta is None else layer.beta.value
    if x.layout == "first" or x.rank == 2:   # ONNX's op: channels on axis 1
        names = [b.weight(v, f"{layer.name}/{n}") for v, n in ((gamma, "gamma"), (beta, "beta"),
                                                               (layer.moving_mean.value, "moving_mean"),
                                                               (layer.moving_variance.value, "moving_variance"))]
        return b.node("BatchNormalization", [x.name, *names], layer.name, epsilon=layer.epsilon), x.layout
    # channels last at rank > 2: the same affine map as Mul and Add over the last axis
    scale, shift = bn_affine(layer)
    y = b.node("Mul", [x.name, b.const(scale, f"{layer.name}/scale")], layer.name)
    return b.node("Add", [y, b.const(shift, f"{layer.name}/shift")], layer.name), "last"


def bn_affine(layer):
    """(scale, shift) of an inference BatchNormalization, y = x * scale + shift (computed in float64)."""
    var = layer.moving_variance.value.astype(np.float64)
    s = 1.0 / np.sqrt(var + layer.epsilon)
    if layer.gamma is not None:
        s = s * layer.gamma.value
    shift = -layer.moving_mean.value * s
    if layer.beta is not None:
        shift = shift + layer.beta.value
    return s.astype(np.float32), shift.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# reshaping
def _pad(cx, layer, ins):
    b, x = cx.b, ins[0]
    begin, end = [0] * x.rank, [0] * x.rank
    for k, (a, z) in enumerate(layer.padding):
        ax = axis_in(x.layout, x.rank, k + 1)
        begin[ax], end[ax] = a, z
    return b.node("Pad", [x.name, b.ints(begin + end, "pads")], layer.name, mode="constant"), x.layout


def _crop(cx, layer, ins):
    b, x = cx.b, ins[0]
    axes = [axis_in(x.layout, x.rank, k + 1) for k in range(2)]
    starts = [a for a, _ in layer.cropping]
    ends = [-z if z else np.iinfo(np.int64).max for _, z in layer.cropping]
    return b.node("Slice", [x.name, b.ints(starts, "starts"), b.ints(ends, "ends"), b.ints(axes, "axes")],
                  layer.name), x.layout


def _upsample(cx, layer, ins):
    b, x = cx.b, ins[0]
    scales = [1.0] * x.rank
    for k, s in enumerate(layer.size):
        scales[axis_in(x.layout, x.rank, k + 1)] = float(s)
    y = b.node("Resize", [x.name, "", b.const(np.array(scales, np.float32), "scales", key=("scales", tuple(scales)))],
               layer.name, mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return y, x.layout


# ---------------------------------------------------------------------------------------------
# merging
def _common(cx, ins):
    """The inputs' names in one layout (the first input's)."""
    layout = ins[0].layout
    return [cx.b.get(t, layout) for t in ins], layout


def _merged_mask(cx, layer, ins, concat_axis=None):
    """Keras's output mask of a merging layer: the OR of the inputs' masks (None unless every
    input has one); for Concatenate each input's mask (all True where it has none) joined along
    the axis (the OR of them when the features are concatenated)."""
    masks = cx.mask_in
    if all(m is None for m in masks) or (concat_axis is None and any(m is None for m in masks)):
        return None
    b = cx.b
    if concat_axis is not None:
        filled = []
        for t, m in zip(ins, masks):
            if m is None:   # all True, the shape of the input without its last axis
                shape = b.node("Slice", [b.node("Shape", [b.last(t)], layer.name), b.ints((0,), "starts"),
                                         b.ints((t.rank - 1,), "ends")], layer.name)
                m = b.node("ConstantOfShape", [shape], layer.name,
                           value=cx.b.helper.make_tensor("true", 9, [1], [1]))
            filled.append(m)
        masks = filled
        ax = concat_axis % ins[0].rank
        if ax != ins[0].rank - 1:
            return b.node("Concat", masks, layer.name, axis=ax)
    y = masks[0]
    for m in masks[1:]:
        y = b.node("Or", [y, m], layer.name)
    return y


def _merge(cx, layer, ins):
    b = cx.b
    cx.mask_out = _merged_mask(cx, layer, ins)
    names, layout = _common(cx, ins)
    op = layer.op
    if op in ("maximum", "minimum", "average"):
        return b.node({"maximum": "Max", "minimum": "Min", "average": "Mean"}[op], names, layer.name), layout
    onnx_op = {"add": "Add", "subtract": "Sub", "multiply": "Mul"}[op]
    y = names[0]
    for n in names[1:]:   # left to right, as the kernel sums
        y = b.node(onnx_op, [y, n], layer.name)
    if len(names) == 1:
        y = b.node("Identity", [y], layer.name)
    return y, layout


def _concat(cx, layer, ins):
    cx.mask_out = _merged_mask(cx, layer, ins, concat_axis=layer.axis)
    names, layout = _common(cx, ins)
    return cx.b.node("Concat", names, layer.name, axis=axis_in(layout, ins[0].rank, layer.axis)), layout


def _dot(cx, layer, ins):
    b = cx.b
    cx.mask_out = None   # Keras: the dot product drops the mask
    a, c = ins
    p, q = layer._pair(a.rank)
    xs = [b.last(a), b.last(c)]
    if layer.normalize:
        for k, ax in enumerate((p, q)):
            ss = b.reduce("ReduceSumSquare", xs[k], [ax], layer.name)
            inv = b.node("Min", [b.node("Reciprocal", [b.node("Sqrt", [ss], layer.name)], layer.name),
                                 b.scalar(1e7, "max_inv_norm")], layer.name)
            xs[k] = b.node("Mul", [xs[k], inv], layer.name)
    la, lc = list("abcd"[:a.rank - 1]), list("efgh"[:c.rank - 1])
    lc[q - 1] = la[p - 1]
    out = [l for k, l in enumerate(la) if k != p - 1] + [l for k, l in enumerate(lc) if k != q - 1]
    eq = f"n{''.join(la)},n{''.join(lc)}->n{''.join(out)}"
    y = b.node("Einsum", xs, layer.name, equation=eq)
    if not out:   # (N,) -> (N, 1), as Keras returns
        y = b.node("Unsqueeze", [y, b.ints((1,), "axes")], layer.name)
    return y, "last"


# ---------------------------------------------------------------------------------------------
# preprocessing
def _rescaling(cx, layer, ins):
    b, x = cx.b, ins[0]
    scale, offset = np.asarray(layer._scale), np.asarray(layer._offset)
    name = x.name if scale.ndim == 0 and offset.ndim == 0 else b.last(x)
    layout = x.layout if name == x.name else "last"
    y = b.node("Mul", [name, b.const(scale, f"{layer.name}/scale")], layer.name)
    return b.node("Add", [y, b.const(offset, f"{layer.name}/offset")], layer.name), layout


def _normalization(cx, layer, ins):
    b, x = cx.b, ins[0]
    mean, var = (np.asarray(a, np.float32) for a in layer._stats())
    denom = np.maximum(np.sqrt(var), np.float32(1e-7)).astype(np.float32)
    if layer._keep_axis == (x.rank - 1,):   # per channel: works in either layout
        layout, v = x.layout, x.name
        mean, denom = (per_channel(a.reshape(-1), layout, x.rank) for a in (mean, denom))
    else:
        layout, v = "last", b.last(x)
    m, d = b.const(mean, f"{layer.name}/mean"), b.const(denom, f"{layer.name}/denominator")
    if layer.invert:
        return b.node("Add", [b.node("Mul", [v, d], layer.name), m], layer.name), layout
    return b.node("Div", [b.node("Sub", [v, m], layer.name), d], layer.name), layout


def _resizing(cx, layer, ins):
    b, x = cx.b, ins[0]
    h, w = x.shape[1:3]
    if h is None or w is None:
        raise ExportError(f"Cannot export {describe(layer)}: its input's height and width must be known (received "
                          f"{x.shape}); give the model's Input a fixed image size.")
    v = b.first(x)
    top, left, bh, bw = layer._box(h, w)
    if layer.crop_to_aspect_ratio:
        v = b.node("Slice", [v, b.ints((top, left), "starts"), b.ints((top + bh, left + bw), "ends"),
                             b.ints((2, 3), "axes")], layer.name)
    elif layer.pad_to_aspect_ratio and (top or left):
        v = b.node("Pad", [v, b.ints((0, 0, top, left, 0, 0, top, left), "pads"),
                           b.scalar(layer.fill_value, "fill_value")], layer.name, mode="constant")
    nc = b.node("Slice", [b.node("Shape", [v], layer.name), b.ints((0,), "starts"), b.ints((2,), "ends")], layer.name)
    sizes = b.node("Concat", [nc, b.ints((layer.height, layer.width), "size")], layer.name, axis=0)
    if layer.interpolation == "nearest":   # Keras: floor((o + 0.5) * in / out)
        attrs = dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    else:   # half-pixel centres, clamped at the border
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    return b.node("Resize", [v, "", "", sizes], layer.name, **attrs), "first"


def register_all():
    """Fill the registry with the handlers of fastnn's layer classes."""
    from fastnn.layers import activation as A, convolutional as C, core, merging as M, normalization as N
    from fastnn.layers import pooling as P, preprocessing as PP, reshaping as R
    handles(core.InputLayer, core.Dropout, core.Identity)(_passthrough)
    handles(core.Dense)(_dense)
    handles(core.Activation)(_activation)
    handles(A.ReLU, A.LeakyReLU, A.ELU, A.Softmax)(_kernel_activation)
    handles(A.PReLU)(_prelu)
    handles(core.Flatten)(_flatten)
    handles(core.Reshape)(_reshape)
    handles(core.Permute)(_permute)
    handles(core.RepeatVector)(_repeat_vector)
    handles(core.Lambda)(_lambda)
    handles(C.BaseConv)(_conv)
    handles(C.BaseDepthwiseConv)(_depthwise)
    handles(C.BaseSeparableConv)(_separable)
    handles(C.BaseConvTranspose)(_conv_transpose)
    handles(P.BasePooling)(_pool)
    handles(P.BaseGlobalPooling)(_global_pool)
    handles(N.BatchNormalization)(_batch_norm)
    handles(R._Pad)(_pad)
    handles(R.Cropping2D)(_crop)
    handles(R.UpSampling2D)(_upsample)
    handles(M._Merge)(_merge)
    handles(M.Concatenate)(_concat)
    handles(M.Dot)(_dot)
    handles(PP.Rescaling)(_rescaling)
    handles(PP.Normalization)(_normalization)
    handles(PP.Resizing)(_resizing)
    # the recurrent layers (SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed, Embedding,
    # Masking) register only where fastnn has them
    import importlib.util
    if importlib.util.find_spec("fastnn.layers.recurrent") is not None:
        from fastnn.onnx import recurrent
        recurrent.register(handles)
