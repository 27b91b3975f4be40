"""Fused Keras 3 optimizer steps over one flat float32 parameter buffer.

All trainable parameters of a model live in one contiguous float32 vector (the arena), their
gradients in another, and every optimizer slot (Adam's m and v, ...) in one more vector each.
`step` runs one Keras 3 training step over all of them in one compiled call:

    clip (clipnorm per variable, else global_clipnorm, else clipvalue)
    -> decoupled weight decay  w <- w - w*wd*lr
    -> the rule's update (sgd, rmsprop, adagrad, adadelta, adam, adamw, adamax, nadam)

with the per-step scalars (bias corrections, Nadam's momentum schedule) computed here once,
in float32 exactly as Keras computes them in the variable dtype. Norm clipping adds one
reduction pass over the gradients; everything else is a single pass over memory.

    >>> import numpy as np
    >>> from fastnn.kernels import optim
    >>> w = np.ones(10, np.float32); g = np.full(10, 0.5, np.float32)
    >>> slots = optim.init_slots("adam", w.size)
    >>> optim.step("adam", w, g, slots, lr=0.001, iteration=0)
    >>> float(w[0])  # doctest: +ELLIPSIS
    0.999000...
"""
from __future__ import annotations

import numbers

import numpy as np

import types

from fastnn._kernels import optim_step as _c
from fastnn.kernels import threads
from fastnn.kernels._checks import check_array, check_float

# The step runs in compiled C (fastnn._kernels.optim_step: no JIT to load; loading a Numba
# version from its cache cost ~1 s per process). Numba (fastnn._kernels.optim_jit) is imported
# only for norm clipping's sum of squares.
_V = types.SimpleNamespace(**_c.VARIANTS)


def _numba_kernels():
    from fastnn._kernels import optim_jit
    threads.apply_numba()
    return optim_jit

F32 = np.float32
INT64 = np.dtype(np.int64)

# Keras 3 defaults of every rule's own arguments (keras/src/optimizers/<kind>.py).
HYPER_DEFAULTS = {
    "sgd": {"momentum": 0.0, "nesterov": False},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "adagrad": {"initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "adadelta": {"rho": 0.95, "epsilon": 1e-7},
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "adamw": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "adamax": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "nadam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
KINDS = tuple(HYPER_DEFAULTS)
LEARNING_RATE_DEFAULTS = {k: (0.01 if k == "sgd" else 0.001) for k in KINDS}
WEIGHT_DECAY_DEFAULTS = {k: (0.004 if k == "adamw" else 0.0) for k in KINDS}

# (low, high, low_open, high_open) of every real hyperparameter; the others are booleans.
_RANGES = {
    "momentum": (0.0, 1.0, False, False),
    "rho": (0.0, 1.0, False, False),
    "epsilon": (0.0, None, False, False),
    "beta_1": (0.0, 1.0, False, True),
    "beta_2": (0.0, 1.0, False, True),
    "initial_accumulator_value": (0.0, None, False, False),
}
_BOOLS = ("nesterov", "centered", "amsgrad")

_ONE_SCALE = np.ones(1, F32)     # gradient scale without norm clipping
_UNUSED = np.zeros(1, F32)       # stands in for the slots a rule does not have (never touched)


def _resolve(kind, hyper, fn):
    """Validated hyperparameters of `kind` (Keras defaults filled in) as Python scalars."""
    if not isinstance(kind, str) or kind.lower() not in HYPER_DEFAULTS:
        raise ValueError(f"{fn}: kind must be one of {', '.join(KINDS)}; received {kind!r}.")
    kind = kind.lower()
    defaults = HYPER_DEFAULTS[kind]
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise ValueError(f"{fn}: unknown hyperparameter(s) {', '.join(unknown)} for kind {kind!r}; "
                         f"valid ones are {', '.join(defaults) or '(none)'}.")
    h = dict(defaults)
    for name, value in hyper.items():
        if name in _BOOLS:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{fn}: {name} must be a bool; received {value!r}.")
            h[name] = bool(value)
        else:
            lo, hi, lo_open, hi_open = _RANGES[name]
            h[name] = check_float(value, name, fn, low=lo, high=hi, low_open=lo_open, high_open=hi_open)
    return kind, h


def slot_names(kind: str, **hyper) -> tuple:
    """Names of the state buffers `kind` keeps with these hyperparameters (as Keras builds them)."""
    kind, h = _resolve(kind, hyper, "slot_names")
    return _slot_names(kind, h)


def _slot_names(kind, h):
    if kind == "sgd":
        return ("momentum",) if h["momentum"] != 0 else ()
    if kind == "rmsprop":
        return (("velocity",) + (("momentum",) if h["momentum"] > 0 else ())
                + (("average_gradient",) if h["centered"] else ()))
    if kind == "adagrad":
        return ("accumulator",)
    if kind == "adadelta":
        return ("accumulated_grad", "accumulated_delta_var")
    if kind in ("adam", "adamw"):
        return ("m", "v") + (("vhat",) if h["amsgrad"] else ())
    if kind == "adamax":
        return ("m", "u")
    return ("m", "v", "u_product")  # nadam


def init_slots(kind: str, n: int, **hyper) -> dict:
    """Fresh optimizer state for n flat float32 parameters: {name: float32 ndarray}.

    Every slot is (n,) zeros, except adagrad's accumulator (filled with
    initial_accumulator_value, Keras default 0.1) and nadam's u_product, a (1,) array of 1.0
    (Keras's momentum-schedule product, updated once per step).
    """
    fn = "init_slots"
    kind, h = _resolve(kind, hyper, fn)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{fn}: n must be a non-negative int (the number of parameters); received {n!r}.")
    slots = {}
    for name in _slot_names(kind, h):
        if name == "u_product":
            slots[name] = np.ones(1, F32)
        elif name == "accumulator":
            slots[name] = np.full(int(n), h["initial_accumulator_value"], F32)
        else:
            slots[name] = np.zeros(int(n), F32)
    return slots


def _check_buffers(params, grads, slots, names, fn):
    params = check_array(params, "params", fn, ndim=1, writeable=True)
    n = params.shape[0]
    grads = check_array(grads, "grads", fn, ndim=1, shape=(n,))
    if not isinstance(slots, dict):
        raise TypeError(f"{fn}: slots must be the dict returned by init_slots; received "
                        f"{type(slots).__name__}.")
    missing = [s for s in names if s not in slots]
    if missing:
        raise ValueError(f"{fn}: slots lacks {', '.join(missing)} (this kind and these options need "
                         f"{', '.join(names) or 'none'}); received keys {sorted(slots)}. "
                         f"Build the state with init_slots(kind, n, **hyper) using the same options.")
    arrays = {}
    for s in names:
        shape = (1,) if s == "u_product" else (n,)
        arrays[s] = check_array(slots[s], f"slots[{s!r}]", fn, ndim=1, shape=shape, writeable=True)
    # Every buffer is a distinct block of memory: the loop reads and writes them at one index.
    bufs = [("params", params), ("grads", grads)] + [(f"slots[{s!r}]", a) for s, a in arrays.items()]
    for i in range(len(bufs)):
        for j in range(i + 1, len(bufs)):
            if bufs[i][1].size and bufs[j][1].size and np.may_share_memory(bufs[i][1], bufs[j][1]):
                raise ValueError(f"{fn}: {bufs[i][0]} must not share memory with {bufs[j][0]}.")
    return params, grads, arrays


def check_segments(segments, n, fn):
    """int64 (k+1,) offsets 0 = s_0 <= s_1 <= ... <= s_k = n of the k variables (or None)."""
    if segments is None:
        return None
    segments = check_array(segments, "segments", fn, ndim=1, dtype=INT64)
    if segments.shape[0] < 1 or segments[0] != 0 or segments[-1] != n or np.any(np.diff(segments) < 0):
        head = np.array2string(segments[:6], separator=", ")
        raise ValueError(f"{fn}: segments must be int64 offsets rising from 0 to n={n} (variable i is "
                         f"params[segments[i]:segments[i+1]]); received {segments.shape[0]} offsets "
                         f"starting {head}, ending {segments[-1] if segments.size else None}.")
    return segments


def _clip_args(clipvalue, clipnorm, global_clipnorm, fn):
    if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
        raise ValueError(f"{fn}: only one of clipnorm, clipvalue and global_clipnorm can be set; "
                         f"received clipnorm={clipnorm}, clipvalue={clipvalue}, "
                         f"global_clipnorm={global_clipnorm}.")
    out = []
    for name, v in (("clipvalue", clipvalue), ("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm)):
        # 0 means "off", as in Keras (`if self.clipnorm and self.clipnorm > 0`)
        out.append(None if v is None else (check_float(v, name, fn, low=0.0) or None))
    return out


def _constants(kind, h, lr, wd, lo, hi, iteration, slots):
    """(variant, c) for the compiled step: float32 scalars computed as Keras does in float32."""
    f = F32
    lr32 = f(lr)
    c = np.zeros(12, F32)
    c[0], c[1], c[2], c[3] = lr32, f(wd), lo, hi
    r = c[4:]
    t = f(iteration + 1)
    one = f(1.0)
    with np.errstate(over="ignore", under="ignore"):
        if kind == "sgd":
            r[0] = h["momentum"]
            if h["momentum"] == 0:
                variant = _V.SGD
            else:
                variant = _V.SGD_NESTEROV if h["nesterov"] else _V.SGD_MOMENTUM
        elif kind == "rmsprop":
            r[0], r[1], r[2], r[3] = h["rho"], 1 - h["rho"], h["epsilon"], h["momentum"]
            mom = h["momentum"] > 0
            if h["centered"]:
                variant = _V.RMSPROP_CENTERED_MOMENTUM if mom else _V.RMSPROP_CENTERED
            else:
                variant = _V.RMSPROP_MOMENTUM if mom else _V.RMSPROP
        elif kind == "adagrad":
            r[0] = h["epsilon"]
            variant = _V.ADAGRAD
        elif kind == "adadelta":
            r[0], r[1], r[2] = h["rho"], 1 - h["rho"], h["epsilon"]
            variant = _V.ADADELTA
        elif kind in ("adam", "adamw"):
            b1p = f(h["beta_1"]) ** t
            b2p = f(h["beta_2"]) ** t
            alpha = lr32 * np.sqrt(one - b2p) / (one - b1p)
            r[0], r[1], r[2], r[3] = 1 - h["beta_1"], 1 - h["beta_2"], alpha, h["epsilon"]
            variant = _V.ADAM_AMSGRAD if h["amsgrad"] else _V.ADAM
        elif kind == "adamax":
            b1p = f(h["beta_1"]) ** t
            r[0], r[1], r[2], r[3] = 1 - h["beta_1"], h["beta_2"], one - b1p, h["epsilon"]
            variant = _V.ADAMAX
        else:  # nadam: Keras updates u_product once per step, before the variables
            b1, decay, half = f(h["beta_1"]), f(0.96), f(0.5)
            u_t = b1 * (one - half * decay ** t)
            u_t1 = b1 * (one - half * decay ** f(iteration + 2))
            prod_t = slots["u_product"][0] * u_t
            prod_t1 = prod_t * u_t1
            b2p = f(h["beta_2"]) ** t
            r[:] = (1 - h["beta_1"], 1 - h["beta_2"], u_t1, one - prod_t1, one - u_t, one - prod_t,
                    one - b2p, h["epsilon"])
            variant = _V.NADAM
            return variant, c, prod_t
    return variant, c, None


def _norm_scale(grads, segments, clipnorm, global_clipnorm):
    """(segments, per-variable float32 gradient scale) of norm clipping, as Keras computes it."""
    n = grads.shape[0]
    whole = np.array([0, n], np.int64)
    segs = whole if (segments is None or global_clipnorm is not None) else segments
    k = segs.shape[0] - 1
    sums = np.empty(k, np.float64)
    _jit = _numba_kernels()
    sumsq = _jit.sumsq_segments_serial if threads.omp_threads() == 1 else _jit.sumsq_segments
    sumsq(grads, segs, np.empty(_jit.n_pieces(n, k), np.float64), sums)
    l2sum = sums.astype(F32)  # Keras sums squares in float32 (overflows to inf as it does)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if clipnorm is not None:
            # keras base_optimizer._clip_by_norm: g*c / max(norm, c), norm 0 where sum is 0
            c = F32(clipnorm)
            norm = np.where(l2sum > 0, np.sqrt(l2sum), l2sum)
            scale = c / np.maximum(norm, c)
        else:
            # keras clip_by_global_norm: c*min(1/norm, 1/c) + (norm - norm)  (NaN for inf/NaN norm)
            c = F32(global_clipnorm)
            norm = np.sqrt(l2sum)
            scale = c * np.minimum(F32(1) / norm, F32(1) / c) + (norm - norm)
    return segs, np.ascontiguousarray(scale, dtype=F32)


def step(kind, params, grads, slots, *, lr, iteration, weight_decay=None, clipvalue=None,
         clipnorm=None, global_clipnorm=None, segments=None, **hyper) -> None:
    """One Keras 3 optimizer step in place over flat float32 params (n,), grads (n,) and slots.

    kind: sgd, rmsprop, adagrad, adadelta, adam, adamw, adamax, nadam; hyper: that rule's Keras
    arguments (momentum, nesterov, rho, centered, beta_1, beta_2, epsilon, amsgrad,
    initial_accumulator_value), defaults as Keras. lr: the learning rate of this step;
    iteration: Keras's `optimizer.iterations` before the step (t = iteration + 1).
    weight_decay: decoupled decay `w -= w*wd*lr` (None: Keras's default of the kind, 0.004 for
    adamw, else off). At most one of clipvalue, clipnorm (per variable, over `segments`; the
    whole buffer is one variable when segments is None) and global_clipnorm.
    segments: int64 (k+1,) offsets of the k variables in the flat buffer.
    params and slots are updated in place (nadam's u_product too); grads are only read.
    """
    fn = "optim.step"
    kind, h = _resolve(kind, hyper, fn)
    names = _slot_names(kind, h)
    params, grads, arrays = _check_buffers(params, grads, slots, names, fn)
    n = params.shape[0]
    lr = check_float(lr, "lr", fn, low=0.0)
    if isinstance(iteration, (bool, np.bool_)) or not isinstance(iteration, numbers.Integral) or iteration < 0:
        raise ValueError(f"{fn}: iteration must be a non-negative int (Keras's optimizer.iterations "
                         f"before this step); received {iteration!r}.")
    iteration = int(iteration)
    wd = WEIGHT_DECAY_DEFAULTS[kind] if weight_decay is None else check_float(
        weight_decay, "weight_decay", fn, low=0.0)
    clipvalue, clipnorm, global_clipnorm = _clip_args(clipvalue, clipnorm, global_clipnorm, fn)
    segments = check_segments(segments, n, fn)

    lo, hi = (-clipvalue, clipvalue) if clipvalue is not None else (-np.inf, np.inf)
    variant, c, u_product = _constants(kind, h, lr, wd, lo, hi, iteration, arrays)
    # all checks passed: from here on the step mutates state
    if u_product is not None:
        arrays["u_product"][0] = u_product
    if n == 0:
        return None
    if clipnorm is not None or global_clipnorm is not None:
        segs, gscale = _norm_scale(grads, segments, clipnorm, global_clipnorm)
    else:
        segs, gscale = np.array([0, n], np.int64), _ONE_SCALE
    s = [arrays[name] for name in names if name != "u_product"]
    s += [_UNUSED] * (3 - len(s))
    if kind == "rmsprop" and not h["momentum"] > 0 and h["centered"]:
        s = [s[0], _UNUSED, s[1]]  # the loop reads the average gradient from the third slot
    _c.step(variant, params, grads, s[0], s[1], s[2], segs, gscale, c, wd != 0, threads.omp_threads())
    return None


__all__ = ["KINDS", "HYPER_DEFAULTS", "LEARNING_RATE_DEFAULTS", "WEIGHT_DECAY_DEFAULTS",
           "init_slots", "slot_names", "step"]
