"""Output sizes and padding for convolution and pooling windows (Keras/TF rules).

`same` follows keras:backend/torch/nn.py `_compute_padding_length`: out = ceil(n / s),
total = max(0, (out - 1) * s + (k - 1) * d + 1 - n), left = total // 2, right = total - left,
so an even kernel puts its extra padded pixel on the right/bottom.
"""
from __future__ import annotations

import numbers


def resolve_padding(n: int, k: int, s: int, d: int, padding, name: str, fn: str, *,
                    window: str = "window", data: str = ""):
    """Return (pad_before, pad_after, out_size) of one spatial axis.

    padding: "valid", "same", "causal" (all padding before; 1-D convolution only) or an
    explicit (before, after) pair of non-negative ints. window, data: the arguments an error
    names for the window (e.g. "pool_size", "w") and the input ("x").
    """
    eff = (k - 1) * d + 1
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            before = after = 0
        elif p == "same":
            out = -(-n // s)
            total = max(0, (out - 1) * s + eff - n)
            before, after = total // 2, total - total // 2
        elif p == "causal":
            before, after = eff - 1, 0
        else:
            raise ValueError(f"{fn}: {name} must be 'valid', 'same' or 'causal', or explicit "
                             f"(before, after) pads; received {padding!r}.")
    else:
        try:
            before, after = padding
        except (TypeError, ValueError):
            raise ValueError(f"{fn}: {name} must be 'valid', 'same' or a (before, after) pair of "
                             f"ints; received {padding!r}.") from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0
                   for v in (before, after)):
            raise ValueError(f"{fn}: explicit pads in {name} must be non-negative ints; received {padding!r}.")
        before, after = int(before), int(after)
    span = n + before + after - eff
    if span < 0:
        raise ValueError(f"{fn}: the window of {window} (size {k}, dilation {d}) is larger than the "
                         f"padded input{' ' + data if data else ''} ({n} + {before} + {after}); use "
                         f"padding='same' or a smaller window.")
    return before, after, span // s + 1


def conv_geometry(spatial, kernel, strides, dilation, padding, fn: str, *, window: str = "window",
                  data: str = ""):
    """Per-axis (pad_before, pad_after, out) for every spatial axis.

    padding is a string for all axes, or a sequence with one (before, after) pair per axis.
    """
    rank = len(spatial)
    if isinstance(padding, str):
        pads = [padding] * rank
    else:
        try:
            pads = list(padding)
        except TypeError:
            raise TypeError(f"{fn}: padding must be a string or {rank} (before, after) pairs; "
                            f"received {padding!r}.") from None
        if len(pads) != rank:
            raise ValueError(f"{fn}: padding must be a string or {rank} (before, after) pairs; "
                             f"received {padding!r}.")
    return [resolve_padding(n, k, s, d, p, "padding", fn, window=window, data=data)
            for n, k, s, d, p in zip(spatial, kernel, strides, dilation, pads)]


def conv_transpose_padding(n: int, k: int, s: int, d: int, padding, output_padding, name: str, fn: str):
    """Return (crop_before, crop_after, out_size) of one spatial axis of a transposed convolution.

    Keras's rule (keras:backend/common/backend_utils.py): the full output of input length n is
    (n - 1) * s + (k - 1) * d + 1 long; "valid" keeps it (plus output_padding, default
    max(k_eff, s) - k_eff, on the right); "same" gives n * s (or, with output_padding,
    (n - 1) * s + k_eff % 2 + output_padding) with the left crop min(ceil(pad / 2), k_eff - 1).
    A negative crop_after means zeros appended on the right (no window reaches them).
    """
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{fn}: {name} must be 'valid' or 'same'; received {padding!r}.")
    eff = (k - 1) * d + 1
    if output_padding is not None:
        if isinstance(output_padding, bool) or not isinstance(output_padding, numbers.Integral) \
                or not 0 <= output_padding < s:
            raise ValueError(f"{fn}: output_padding must be an int in [0, strides) per axis (here "
                             f"[0, {s})); received {output_padding!r}.")
    if padding.lower() == "valid":
        op = max(eff, s) - eff if output_padding is None else int(output_padding)
        left, right = eff - 1, eff - 1 + op
    else:
        total = s + eff - 2 if output_padding is None else eff + eff % 2 - 2 + int(output_padding)
        left = min(total // 2 + total % 2, eff - 1)
        right = total - left
    crop_before, crop_after = eff - 1 - left, eff - 1 - right
    return crop_before, crop_after, (n - 1) * s + eff - crop_before - crop_after
