"""Batch normalization over the last (channel) axis of float32 C-contiguous arrays.

Keras 3 numerics (BatchNormalization, axis=-1): x of any rank (..., C) is seen as (M, C) with
M the product of the leading dims. Training uses the batch mean and the biased variance over M,
y = x*gamma*invstd + (beta - mean*gamma*invstd) with invstd = 1/sqrt(var + epsilon), and moves
the moving statistics in place: m = m*momentum + batch*(1 - momentum). Inference folds the
moving statistics the same way. gamma/beta may be None (scale=False / center=False).
The kernel evaluates y as (x - float32(mean))*scale + shift, the same expression regrouped so a
large mean loses no precision (Keras's plain fold loses eps32*|x|*gamma*invstd).

The compiled loops (fastnn._kernels.norm) accumulate statistics in float64, run two passes over
memory for training forward and backward and one for inference; every argument is checked here.
"""
from __future__ import annotations

import numpy as np

from fastnn._kernels import norm as _norm
from fastnn.kernels._checks import check_aliases, check_array, check_float, prepare_out


def _check_relu(relu, fn: str) -> bool:
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{fn}: relu must be True or False (apply max(y, 0) in the output pass); "
                        f"received {relu!r}.")
    return bool(relu)

__all__ = ["batch_norm_train", "batch_norm_inference", "batch_norm_backward", "inference_fold",
           "batch_norm_moments", "batch_norm_grad_sums"]

F64 = np.dtype(np.float64)


def _check_x(x, name: str, fn: str) -> np.ndarray:
    x = check_array(x, name, fn)
    if x.ndim < 1:
        raise ValueError(f"{fn}: {name} must have at least 1 dimension (..., C) with channels "
                         f"last; received a 0-d array. Use {name}.reshape(1, -1).")
    return x


def _check_vec(v, name: str, fn: str, c: int, *, optional=False, writeable=False):
    if v is None and optional:
        return None
    return check_array(v, name, fn, ndim=1, shape=(c,), writeable=writeable)


def batch_norm_train(x, gamma, beta, moving_mean, moving_var, momentum=0.99, epsilon=1e-3, *,
                     out=None, mean=None, invstd=None, relu=False, stats=None):
    """Training-mode batch norm of float32 (..., C) over all axes but the last.

    x (..., C) C-contiguous float32 with at least one row; gamma, beta (C,) float32 or None;
    moving_mean, moving_var (C,) float32, writeable, updated IN PLACE with the batch mean and
    biased variance. momentum in [0, 1], epsilon > 0. out (x's shape) may be x itself.
    relu=True writes max(y, 0) instead (a following ReLU fused into the same pass; bit-identical
    to activation.apply("relu", y)); pass that y to batch_norm_backward(..., y=y).
    stats=(count, shift, sums): normalise with the statistics of `count` rows whose shifted
    sums (2, C) float64 are `sums` (batch_norm_moments(..., shift), summed over the processes
    of a data-parallel step) instead of x's own; x may then have 0 rows.
    Returns (y (..., C), mean (C,), invstd (C,)) — mean and invstd are what backward needs.
    """
    fn = "batch_norm_train"
    x = _check_x(x, "x", fn)
    c = x.shape[-1]
    m = x.size // c if c else int(np.prod(x.shape[:-1]))
    if stats is not None:
        count, shift, sums = _check_stats(stats, "stats", fn, c, 2)
    if m == 0 and stats is None:
        raise ValueError(f"{fn}: x must hold at least one row to take batch statistics; "
                         f"received shape {x.shape}.")
    gamma = _check_vec(gamma, "gamma", fn, c, optional=True)
    beta = _check_vec(beta, "beta", fn, c, optional=True)
    moving_mean = _check_vec(moving_mean, "moving_mean", fn, c, writeable=True)
    moving_var = _check_vec(moving_var, "moving_var", fn, c, writeable=True)
    relu = _check_relu(relu, fn)
    momentum = check_float(momentum, "momentum", fn, low=0.0, high=1.0)
    epsilon = check_float(epsilon, "epsilon", fn, low=0.0, low_open=True)
    out = prepare_out(out, x.shape, "out", fn)
    mean = prepare_out(mean, (c,), "mean", fn)
    invstd = prepare_out(invstd, (c,), "invstd", fn)
    check_aliases(fn, [("out", out), ("mean", mean), ("invstd", invstd),
                       ("moving_mean", moving_mean), ("moving_var", moving_var)],
                  [("x", x), ("gamma", gamma), ("beta", beta)], same_ok=(("out", "x"),))
    if c and stats is not None:
        _norm.batch_norm_train_moments(x.reshape(m, c), gamma, beta, moving_mean, moving_var,
                                       momentum, epsilon, count, shift, sums, out.reshape(m, c),
                                       mean, invstd, relu)
    elif c:
        _norm.batch_norm_train(x.reshape(m, c), gamma, beta, moving_mean, moving_var,
                               momentum, epsilon, out.reshape(m, c), mean, invstd, relu)
    return out, mean, invstd


def _check_stats(stats, name, fn, c, rows):
    """(count, shift, sums) of a synchronised batch norm, checked: count > 0 rows, shift (C,)
    float32 (or None for the backward sums), sums (rows, C) float64 C-contiguous."""
    if not isinstance(stats, (tuple, list)) or len(stats) != 3:
        raise TypeError(f"{fn}: {name} must be a tuple (count, shift, sums); received {stats!r}.")
    count, shift, sums = stats
    count = check_float(count, f"{name}[0] (count)", fn, low=0.0, low_open=True)
    if shift is not None:
        shift = check_array(shift, f"{name}[1] (shift)", fn, ndim=1, shape=(c,))
    sums = check_array(sums, f"{name}[2] (sums)", fn, dtype=F64, shape=(rows, c))
    return count, shift, sums


def batch_norm_moments(x, shift, *, out=None):
    """Shifted moment sums of float32 (..., C) over all axes but the last, in float64.

    x (..., C) C-contiguous float32 with at least one row; shift (C,) float32 (any per-channel
    value near the mean, the same on every process that sums these). Returns out (2, C) float64:
    out[0] = sum(x - shift), out[1] = sum((x - shift)**2), per channel. Summed over the
    processes of a data-parallel step, they feed batch_norm_train(..., stats=(rows, shift, out)).
    """
    fn = "batch_norm_moments"
    x = _check_x(x, "x", fn)
    c = x.shape[-1]
    m = x.size // c if c else int(np.prod(x.shape[:-1]))
    shift = check_array(shift, "shift", fn, ndim=1, shape=(c,))
    out = prepare_out(out, (2, c), "out", fn, dtype=F64)
    if c and m:
        _norm.batch_norm_moments(x.reshape(m, c), shift, out)
    else:
        out.fill(0.0)
    return out


def batch_norm_grad_sums(dy, x, mean, *, y=None, out=None):
    """The per-channel sums batch norm's backward needs, of float32 (..., C), in float64.

    dy, x (..., C) float32; mean (C,) float32 from batch_norm_train; y as in
    batch_norm_backward (dy is masked by y > 0 first). Returns out (3, C) float64: sum(dy),
    sum(dy*(x - mean)), sum(x - mean). Summed over the processes of a data-parallel step, they
    feed batch_norm_backward(..., sums=(rows, None, out)).
    """
    fn = "batch_norm_grad_sums"
    x = _check_x(x, "x", fn)
    c = x.shape[-1]
    m = x.size // c if c else int(np.prod(x.shape[:-1]))
    dy = check_array(dy, "dy", fn, shape=x.shape)
    mean = _check_vec(mean, "mean", fn, c)
    if y is not None:
        y = check_array(y, "y", fn, shape=x.shape)
    out = prepare_out(out, (3, c), "out", fn, dtype=F64)
    if c and m:
        _norm.batch_norm_grad_sums(dy.reshape(m, c), x.reshape(m, c), mean, out,
                                   None if y is None else y.reshape(m, c))
    else:
        out.fill(0.0)
    return out


def batch_norm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3, *, out=None,
                         relu=False):
    """Inference-mode batch norm of float32 (..., C) with the moving statistics (one pass).

    y = x*gamma/sqrt(moving_var + epsilon) + (beta - moving_mean*gamma/sqrt(moving_var + epsilon)).
    x (..., C) C-contiguous float32; gamma, beta (C,) or None; moving_mean, moving_var (C,);
    epsilon > 0; out (x's shape) may be x itself. relu=True writes max(y, 0) in the same pass.
    Returns y (..., C).
    """
    fn = "batch_norm_inference"
    x = _check_x(x, "x", fn)
    c = x.shape[-1]
    gamma = _check_vec(gamma, "gamma", fn, c, optional=True)
    beta = _check_vec(beta, "beta", fn, c, optional=True)
    moving_mean = _check_vec(moving_mean, "moving_mean", fn, c)
    moving_var = _check_vec(moving_var, "moving_var", fn, c)
    epsilon = check_float(epsilon, "epsilon", fn, low=0.0, low_open=True)
    relu = _check_relu(relu, fn)
    out = prepare_out(out, x.shape, "out", fn)
    check_aliases(fn, [("out", out)], [("x", x), ("gamma", gamma), ("beta", beta),
                                       ("moving_mean", moving_mean), ("moving_var", moving_var)],
                  same_ok=(("out", "x"),))
    if x.size:
        _norm.batch_norm_inference(x.reshape(-1, c), gamma, beta, moving_mean, moving_var,
                                   epsilon, out.reshape(-1, c), relu)
    return out


def inference_fold(gamma, beta, moving_var, epsilon=1e-3, *, scale=None, shift=None):
    """Per-channel (scale, shift) of inference-mode batch norm: y = (x - moving_mean)*scale + shift.

    The same float32 values batch_norm_inference computes inside (scale = gamma/sqrt(moving_var
    + epsilon) in float64, rounded once; shift = beta), so an epilogue that applies them to a
    convolution's output (fastnn.kernels.conv.conv2d(affine=(moving_mean, scale, shift))) is
    bit-identical to the separate batch norm. gamma, beta (C,) or None; moving_var (C,).
    """
    fn = "inference_fold"
    moving_var = check_array(moving_var, "moving_var", fn, ndim=1)
    c = moving_var.shape[0]
    gamma = _check_vec(gamma, "gamma", fn, c, optional=True)
    beta = _check_vec(beta, "beta", fn, c, optional=True)
    epsilon = check_float(epsilon, "epsilon", fn, low=0.0, low_open=True)
    scale = prepare_out(scale, (c,), "scale", fn)
    shift = prepare_out(shift, (c,), "shift", fn)
    check_aliases(fn, [("scale", scale), ("shift", shift)],
                  [("gamma", gamma), ("beta", beta), ("moving_var", moving_var)])
    _norm.inference_fold(gamma, beta, moving_var, epsilon, scale, shift)
    return scale, shift


def batch_norm_backward(dy, x, gamma, mean, invstd, *, dx=None, dgamma=None, dbeta=None, y=None,
                        sums=None):
    """Training-mode gradient of float32 (..., C) batch norm through the batch statistics.

    With xhat = (x - mean)*invstd over the M rows: dx = gamma*invstd/M * (M*dy - sum(dy)
    - xhat*sum(dy*xhat)), dgamma = sum(dy*xhat), dbeta = sum(dy) (gamma None means 1).
    dy, x (..., C) float32; gamma (C,) or None; mean, invstd (C,) from batch_norm_train.
    dx (x's shape) may be dy or x itself; dgamma, dbeta (C,) are written, not accumulated.
    `mean` is used as a shift and refined to x's exact batch mean in the same pass (float64).
    y (x's shape, optional): the output of batch_norm_train(..., relu=True); dy is then the
    gradient w.r.t. that ReLU output and is masked by y > 0 inside both passes (bit-identical
    to activation.grad("relu", ...) followed by this function). dx may also be y itself.
    sums=(count, None, s): the gradient through the statistics of `count` rows whose
    batch_norm_grad_sums are s (3, C) float64 (summed over the processes of a data-parallel
    step) instead of x's own; dgamma and dbeta are then those of all `count` rows, and x may
    have 0 rows.
    Returns (dx, dgamma, dbeta).
    """
    fn = "batch_norm_backward"
    x = _check_x(x, "x", fn)
    c = x.shape[-1]
    dy = check_array(dy, "dy", fn, shape=x.shape)
    m = x.size // c if c else int(np.prod(x.shape[:-1]))
    if sums is not None:
        count, _, s3 = _check_stats(sums, "sums", fn, c, 3)
    if m == 0 and sums is None:
        raise ValueError(f"{fn}: x must hold at least one row; received shape {x.shape}.")
    gamma = _check_vec(gamma, "gamma", fn, c, optional=True)
    mean = _check_vec(mean, "mean", fn, c)
    invstd = _check_vec(invstd, "invstd", fn, c)
    if y is not None:
        y = check_array(y, "y", fn, shape=x.shape)
    dx = prepare_out(dx, x.shape, "dx", fn)
    dgamma = prepare_out(dgamma, (c,), "dgamma", fn)
    dbeta = prepare_out(dbeta, (c,), "dbeta", fn)
    check_aliases(fn, [("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)],
                  [("dy", dy), ("x", x), ("gamma", gamma), ("mean", mean), ("invstd", invstd),
                   ("y", y)],
                  same_ok=(("dx", "dy"), ("dx", "x"), ("dx", "y")))
    if c and sums is not None:
        _norm.batch_norm_backward_sums(dy.reshape(m, c), x.reshape(m, c), gamma, mean, invstd,
                                       count, s3, dx.reshape(m, c), dgamma, dbeta,
                                       None if y is None else y.reshape(m, c))
    elif c:
        _norm.batch_norm_backward(dy.reshape(m, c), x.reshape(m, c), gamma, mean, invstd,
                                  dx.reshape(m, c), dgamma, dbeta,
                                  None if y is None else y.reshape(m, c))
    return dx, dgamma, dbeta
