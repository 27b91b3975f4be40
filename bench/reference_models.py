"""The benchmark models built from textbook-style layers over fastnn.reference (naive NumPy).

This is the baseline of bench/peers.py: the "Deep Learning from Scratch" way of writing a
network (a list of layer objects with forward/backward, a per-parameter Adam), with every
kernel taken from fastnn.reference.
"""
from __future__ import annotations

import numpy as np

from fastnn.reference import activation, conv, dense, dropout, loss, norm, pool


class Conv:
    def __init__(self, rng, c, f, padding):
        self.w = (rng.standard_normal((3, 3, c, f)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        self.b = np.zeros(f, np.float32)
        self.padding = padding

    def forward(self, x, training):
        self.x = x
        return conv.conv2d(x, self.w, self.b, (1, 1), self.padding)

    def backward(self, dy):
        dx, self.dw, self.db = conv.conv2d_backward(self.x, self.w, dy, (1, 1), self.padding)
        return dx

    def params(self):
        return [(self.w, self.dw), (self.b, self.db)]


class Dense:
    def __init__(self, rng, k, u):
        self.w = (rng.standard_normal((k, u)) * np.sqrt(2 / k)).astype(np.float32)
        self.b = np.zeros(u, np.float32)

    def forward(self, x, training):
        self.x = x
        return dense.dense(x, self.w, self.b)

    def backward(self, dy):
        dx, self.dw, self.db = dense.dense_backward(self.x, self.w, dy)
        return dx

    def params(self):
        return [(self.w, self.dw), (self.b, self.db)]


class Relu:
    def forward(self, x, training):
        self.x = x
        self.y = activation.apply("relu", x)
        return self.y

    def backward(self, dy):
        return activation.grad("relu", self.x, self.y, dy)


class MaxPool:
    def forward(self, x, training):
        self.shape = x.shape
        y, self.argmax = pool.max_pool2d(x, (2, 2))
        return y

    def backward(self, dy):
        return pool.max_pool2d_backward(dy, self.argmax, self.shape)


class Flatten:
    def forward(self, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


class Dropout:
    def __init__(self, rate):
        self.rate, self.seed = rate, 0

    def forward(self, x, training):
        if not training:
            return x
        self.seed += 1
        y, self.mask = dropout.dropout(x, self.rate, self.seed)
        return y

    def backward(self, dy):
        return dropout.dropout_backward(dy, self.mask, self.rate)


class BatchNorm:
    def __init__(self, c):
        self.gamma, self.beta = np.ones(c, np.float32), np.zeros(c, np.float32)
        self.mm, self.mv = np.zeros(c, np.float32), np.ones(c, np.float32)

    def forward(self, x, training):
        if not training:
            return norm.batch_norm_inference(x, self.gamma, self.beta, self.mm, self.mv)
        self.x = x
        y, self.mean, self.invstd = norm.batch_norm_train(x, self.gamma, self.beta, self.mm, self.mv)
        return y

    def backward(self, dy):
        dx, self.dg, self.db = norm.batch_norm_backward(dy, self.x, self.gamma, self.mean, self.invstd)
        return dx

    def params(self):
        return [(self.gamma, self.dg), (self.beta, self.db)]


class Adam:
    """Per-parameter Adam as the textbook writes it (Keras's epsilon-hat form)."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7):
        self.lr, self.beta1, self.beta2, self.eps, self.t = lr, beta1, beta2, eps, 0
        self.m, self.v = {}, {}

    def update(self, pairs):
        self.t += 1
        alpha = self.lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        for i, (p, g) in enumerate(pairs):
            if i not in self.m:
                self.m[i], self.v[i] = np.zeros_like(p), np.zeros_like(p)
            self.m[i] += (1 - self.beta1) * (g - self.m[i])
            self.v[i] += (1 - self.beta2) * (g ** 2 - self.v[i])
            p -= alpha * self.m[i] / (np.sqrt(self.v[i]) + self.eps)


class Net:
    def __init__(self, layers):
        self.layers, self.opt = layers, Adam()

    def predict(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return activation.apply("softmax", x)

    def train_step(self, x, y):
        z = x
        for layer in self.layers:
            z = layer.forward(z, True)
        _, probs = loss.softmax_crossentropy(z, y)
        d = loss.softmax_crossentropy_backward(probs, y, scale=1.0 / len(x))
        for layer in reversed(self.layers):
            d = layer.backward(d)
        self.opt.update([pg for layer in self.layers if hasattr(layer, "params") for pg in layer.params()])


def build(name, seed=0):
    rng = np.random.default_rng(seed)
    if name == "M1":
        layers = [Dense(rng, 784, 1024), Relu(), Dense(rng, 1024, 1024), Relu(), Dense(rng, 1024, 10)]
    elif name == "M2":
        layers = [Conv(rng, 1, 32, "valid"), Relu(), MaxPool(), Conv(rng, 32, 64, "valid"), Relu(), MaxPool(),
                  Flatten(), Dropout(0.5), Dense(rng, 5 * 5 * 64, 10)]
    else:
        layers, c = [], 3
        for f in (32, 64):
            for _ in range(2):
                layers += [Conv(rng, c, f, "same"), BatchNorm(f), Relu()]
                c = f
            layers.append(MaxPool())
        layers += [Flatten(), Dense(rng, 8 * 8 * 64, 256), Relu(), Dense(rng, 256, 10)]
    return Net(layers)
