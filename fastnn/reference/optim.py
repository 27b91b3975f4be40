"""Per-parameter NumPy optimizers with Keras 3's update rules (test oracle and baseline).

The textbook way ("Deep Learning from Scratch", common/optimizer.py): one class per optimizer
whose `update` loops over the model's separate parameter arrays and applies NumPy expressions
to each, here with Keras 3's formulas (keras/src/optimizers/<kind>.py), its clipping
(base_optimizer._clip_gradients) and its decoupled weight decay, all in float32 with Keras's
order of operations. `init_slots` and `step` have the signatures of fastnn.kernels.optim: they
cut the flat buffers into the variables given by `segments` and run the class on those views.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
ONE = F32(1.0)


class SGD:
    """w -= lr*g; momentum: m = m*mu - lr*g, w += m (nesterov: w += m*mu - lr*g)."""
    slots = ("momentum",)

    def __init__(self, momentum=0.0, nesterov=False):
        self.momentum, self.nesterov = F32(momentum), nesterov

    def update(self, params, grads, state, lr, t):
        for i, (w, g) in enumerate(zip(params, grads)):
            if self.momentum != 0:
                m = state["momentum"][i]
                m[...] = m * self.momentum - g * lr
                if self.nesterov:
                    w += m * self.momentum - g * lr
                else:
                    w += m
            else:
                w -= g * lr


class RMSprop:
    """v = rho*v + (1-rho)*g^2; inc = lr*g / sqrt(v + eps) (centered: v - avg^2 + eps)."""

    def __init__(self, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        self.rho, self.one_rho = F32(rho), F32(1 - rho)
        self.momentum, self.epsilon, self.centered = F32(momentum), F32(epsilon), centered

    def update(self, params, grads, state, lr, t):
        for i, (w, g) in enumerate(zip(params, grads)):
            v = state["velocity"][i]
            v[...] = self.rho * v + self.one_rho * np.square(g)
            if self.centered:
                avg = state["average_gradient"][i]
                avg[...] = self.rho * avg + self.one_rho * g
                denominator = v - np.square(avg) + self.epsilon
            else:
                denominator = v + self.epsilon
            increment = (lr * g) / np.sqrt(denominator)
            if self.momentum > 0:
                m = state["momentum"][i]
                m[...] = self.momentum * m + increment
                w -= m
            else:
                w -= increment


class Adagrad:
    """acc += g^2; w -= lr*g / sqrt(acc + eps)  (acc starts at initial_accumulator_value)."""

    def __init__(self, initial_accumulator_value=0.1, epsilon=1e-7):
        self.epsilon = F32(epsilon)

    def update(self, params, grads, state, lr, t):
        for i, (w, g) in enumerate(zip(params, grads)):
            acc = state["accumulator"][i]
            acc += np.square(g)
            w -= (lr * g) / np.sqrt(acc + self.epsilon)


class Adadelta:
    """Ag = rho*Ag + (1-rho)g^2; d = -sqrt(Ad+eps)*g/sqrt(Ag+eps); Ad = rho*Ad + (1-rho)d^2; w += lr*d."""

    def __init__(self, rho=0.95, epsilon=1e-7):
        self.rho, self.one_rho, self.epsilon = F32(rho), F32(1 - rho), F32(epsilon)

    def update(self, params, grads, state, lr, t):
        for i, (w, g) in enumerate(zip(params, grads)):
            ag, ad = state["accumulated_grad"][i], state["accumulated_delta_var"][i]
            ag[...] = self.rho * ag + self.one_rho * np.square(g)
            delta = -((np.sqrt(ad + self.epsilon) * g) / np.sqrt(ag + self.epsilon))
            ad[...] = self.rho * ad + self.one_rho * np.square(delta)
            w += lr * delta


class Adam:
    """m += (g-m)(1-b1); v += (g^2-v)(1-b2); w -= m*alpha / (sqrt(v)+eps), alpha = lr*sqrt(1-b2^t)/(1-b1^t)."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, F32(epsilon), amsgrad

    def update(self, params, grads, state, lr, t):
        # Keras computes the bias corrections in the variable dtype (float32)
        beta_1_power = F32(self.beta_1) ** F32(t)
        beta_2_power = F32(self.beta_2) ** F32(t)
        alpha = lr * np.sqrt(ONE - beta_2_power) / (ONE - beta_1_power)
        for i, (w, g) in enumerate(zip(params, grads)):
            m, v = state["m"][i], state["v"][i]
            m += (g - m) * F32(1 - self.beta_1)
            v += (np.square(g) - v) * F32(1 - self.beta_2)
            if self.amsgrad:
                v_hat = state["vhat"][i]
                v_hat[...] = np.maximum(v_hat, v)
                v = v_hat
            w -= (m * alpha) / (np.sqrt(v) + self.epsilon)


class Adamax:
    """m += (g-m)(1-b1); u = max(b2*u, |g|); w -= lr*m / ((1-b1^t)(u+eps))."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.beta_1, self.beta_2, self.epsilon = beta_1, F32(beta_2), F32(epsilon)

    def update(self, params, grads, state, lr, t):
        beta_1_power = F32(self.beta_1) ** F32(t)
        for i, (w, g) in enumerate(zip(params, grads)):
            m, u = state["m"][i], state["u"][i]
            m += (g - m) * F32(1 - self.beta_1)
            u[...] = np.maximum(self.beta_2 * u, np.abs(g))
            w -= (lr * m) / ((ONE - beta_1_power) * (u + self.epsilon))


class Nadam:
    """Dozat's Nadam with Keras's schedule u_t = b1(1 - 0.5*0.96^t) and product state u_product."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, F32(epsilon)

    def update(self, params, grads, state, lr, t):
        beta_1, decay, half = F32(self.beta_1), F32(0.96), F32(0.5)
        u_t = beta_1 * (ONE - half * decay ** F32(t))
        u_t_1 = beta_1 * (ONE - half * decay ** F32(t + 1))
        u_product_t = state["u_product"][0] * u_t   # updated once per step, before the variables
        state["u_product"][0] = u_product_t
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = F32(self.beta_2) ** F32(t)
        for i, (w, g) in enumerate(zip(params, grads)):
            m, v = state["m"][i], state["v"][i]
            m += (g - m) * F32(1 - self.beta_1)
            v += (np.square(g) - v) * F32(1 - self.beta_2)
            m_hat = (u_t_1 * m) / (ONE - u_product_t_1) + ((ONE - u_t) * g) / (ONE - u_product_t)
            v_hat = v / (ONE - beta_2_power)
            w -= (m_hat * lr) / (np.sqrt(v_hat) + self.epsilon)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
              "adam": Adam, "adamw": Adam, "adamax": Adamax, "nadam": Nadam}


def _slot_names(kind, momentum=0.0, centered=False, amsgrad=False, **_):
    return {
        "sgd": ("momentum",) if momentum != 0 else (),
        "rmsprop": ("velocity",) + (("momentum",) if momentum > 0 else ())
        + (("average_gradient",) if centered else ()),
        "adagrad": ("accumulator",),
        "adadelta": ("accumulated_grad", "accumulated_delta_var"),
        "adam": ("m", "v") + (("vhat",) if amsgrad else ()),
        "adamw": ("m", "v") + (("vhat",) if amsgrad else ()),
        "adamax": ("m", "u"),
        "nadam": ("m", "v", "u_product"),
    }[kind]


def init_slots(kind, n, **hyper):
    """Fresh state for n flat float32 parameters (names and initial values as the kernel)."""
    slots = {}
    for name in _slot_names(kind, **hyper):
        if name == "u_product":
            slots[name] = np.ones(1, F32)
        elif name == "accumulator":
            slots[name] = np.full(n, hyper.get("initial_accumulator_value", 0.1), F32)
        else:
            slots[name] = np.zeros(n, F32)
    return slots


def clip_gradients(grads, clipvalue=None, clipnorm=None, global_clipnorm=None):
    """New list of clipped gradients, as keras base_optimizer._clip_gradients (float32)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if clipnorm:
            c = F32(clipnorm)
            out = []
            for g in grads:
                l2sum = np.sum(np.square(g), dtype=F32)
                l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
                out.append((g * c) / np.maximum(l2norm, c))
            return out
        if global_clipnorm:
            c = F32(global_clipnorm)
            norm = np.sqrt(np.sum([np.sum(np.square(g), dtype=F32) for g in grads], dtype=F32))
            scale = c * np.minimum(ONE / norm, ONE / c) + (norm - norm)
            return [g * scale for g in grads]
        if clipvalue:
            v = F32(clipvalue)
            return [np.clip(g, -v, v) for g in grads]
    return list(grads)


def step(kind, params, grads, slots, *, lr, iteration, weight_decay=None, clipvalue=None,
         clipnorm=None, global_clipnorm=None, segments=None, **hyper):
    """One Keras 3 step in place on flat float32 params/slots, variable by variable (see module)."""
    if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
        raise ValueError("step: only one of clipnorm, clipvalue and global_clipnorm can be set.")
    n = params.shape[0]
    bounds = [0, n] if segments is None else [int(s) for s in segments]
    cut = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    ws = [params[s] for s in cut]
    gs = clip_gradients([grads[s] for s in cut], clipvalue, clipnorm, global_clipnorm)
    state = {name: (a if name == "u_product" else [a[s] for s in cut]) for name, a in slots.items()}
    lr = F32(lr)
    if weight_decay is None:
        weight_decay = 0.004 if kind == "adamw" else 0.0
    if weight_decay:
        wd = F32(weight_decay)
        with np.errstate(invalid="ignore", over="ignore"):
            for w in ws:
                w -= w * wd * lr
    opt_hyper = {k: v for k, v in hyper.items() if k != "initial_accumulator_value" or kind == "adagrad"}
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN/inf propagate quietly
        OPTIMIZERS[kind](**opt_hyper).update(ws, gs, state, lr, iteration + 1)
