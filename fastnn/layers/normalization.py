"""BatchNormalization over the last (channel) axis, as Keras 3 (KERAS-NUMERICS 2.1).

Training statistics (biased variance) are used only when `training=True` and the layer is
trainable; a frozen layer (`trainable=False`) runs in inference mode even inside fit. The
moving statistics are non-trainable weights: they live outside the trainable arena.
"""
from __future__ import annotations

import numpy as np

from fastnn import kernels as K
from fastnn.layers.base import Layer, serialize_obj, shape_str


class BatchNormalization(Layer):
    """y = gamma * (x - mean) / sqrt(var + epsilon) + beta per channel; x (..., C) float32.

    Weights in Keras order: [gamma, beta, moving_mean, moving_variance] (gamma/beta absent
    when scale/center is False).

    A model whose graph feeds this layer's output only into a plain ReLU sets `_relu_epilogue`
    for the duration of its forward pass: the kernel then writes max(y, 0) in its output pass,
    the ReLU passes it through, and backward masks dy by y > 0 inside the norm's own passes.
    """

    _relu_epilogue = False   # set by Model._forward around its layer loop (BN -> ReLU pairs)
    # set by fastnn.distribution for a data-parallel fit: an object whose sum_(buf) sums a float64
    # array over the processes in place, so training statistics are those of the global batch
    _sync_stats = None

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1]; received momentum={momentum!r}.")
        if not epsilon > 0:
            raise ValueError(f"BatchNormalization: epsilon must be > 0; received epsilon={epsilon!r}.")
        self.axis = axis
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.beta_regularizer, self.gamma_regularizer = beta_regularizer, gamma_regularizer
        self.beta_constraint, self.gamma_constraint = beta_constraint, gamma_constraint

    def build(self, input_shape):
        rank = len(input_shape)
        axis = self.axis if isinstance(self.axis, int) else (self.axis[0] if len(self.axis) == 1 else None)
        if axis is None or axis % rank != rank - 1:
            raise ValueError(f"BatchNormalization '{self.name}': fastnn normalizes over the channel (last) "
                             f"axis only; received axis={self.axis!r} for input shape {shape_str(input_shape)}.")
        c = input_shape[-1]
        if c is None:
            raise ValueError(f"BatchNormalization '{self.name}': the channel axis must be known; "
                             f"received input shape {shape_str(input_shape)}.")
        self.gamma = (self.add_weight((c,), self.gamma_initializer, "gamma", regularizer=self.gamma_regularizer,
                                      constraint=self.gamma_constraint) if self.scale else None)
        self.beta = (self.add_weight((c,), self.beta_initializer, "beta", regularizer=self.beta_regularizer,
                                     constraint=self.beta_constraint) if self.center else None)
        self.moving_mean = self.add_weight((c,), self.moving_mean_initializer, "moving_mean", trainable=False)
        self.moving_variance = self.add_weight((c,), self.moving_variance_initializer, "moving_variance",
                                               trainable=False)

    def forward(self, x, training=False):
        y = self._buffer("y", x.shape)
        c = x.shape[-1]
        gamma = None if self.gamma is None else self.gamma.value
        beta = None if self.beta is None else self.beta.value
        self._train_mode = bool(training) and self.trainable
        self._x = x
        relu = self._relu_epilogue
        self._y = y if relu else None   # backward's ReLU mask (y > 0)
        if self._train_mode:
            mean, invstd = self._buffer("mean", (c,)), self._buffer("invstd", (c,))
            stats = None if self._sync_stats is None else self._global_stats(x)
            y, self._mean, self._invstd = K.norm.batch_norm_train(
                x, gamma, beta, self.moving_mean.value, self.moving_variance.value, self.momentum,
                self.epsilon, out=y, mean=mean, invstd=invstd, relu=relu, stats=stats)
            return y
        return K.norm.batch_norm_inference(x, gamma, beta, self.moving_mean.value, self.moving_variance.value,
                                           self.epsilon, out=y, relu=relu)

    def _global_stats(self, x):
        """(rows, shift, sums) of the global batch: this process's shifted moments summed over
        the processes (shift = the moving mean, the same on every process)."""
        c = x.shape[-1]
        shift = self._buffer("shift", (c,))
        np.copyto(shift, self.moving_mean.value)
        s = self._buffer("moments", (2 * c + 1,), np.float64)
        K.norm.batch_norm_moments(x, shift, out=s[1:].reshape(2, c))
        s[0] = x.size // c
        self._sync_stats.sum_(s)
        self._rows = float(s[0])
        return self._rows, shift, s[1:].reshape(2, c)

    def backward(self, dy):
        c = dy.shape[-1]
        dx = self._buffer("dx", dy.shape)
        if self._train_mode:
            dgamma = self.gamma.grad if self.gamma is not None else self._buffer("dgamma_scratch", (c,))
            dbeta = self.beta.grad if self.beta is not None else self._buffer("dbeta_scratch", (c,))
            gamma = None if self.gamma is None else self.gamma.value
            sums = None
            sync = self._sync_stats
            if sync is not None:   # data parallel: the three channel sums of the global batch
                g = self._buffer("grad_sums", (3, c), np.float64)
                K.norm.batch_norm_grad_sums(dy, self._x, self._mean, y=self._y, out=g)
                sums = (self._rows, None, sync.sum_(g))
            dx, _, _ = K.norm.batch_norm_backward(dy, self._x, gamma, self._mean, self._invstd,
                                                  dx=dx, dgamma=dgamma, dbeta=dbeta, y=self._y, sums=sums)
            if sync is not None and not sync.root:
                # dgamma/dbeta come from the summed statistics, the same on every process: one
                # process keeps them for the gradient all-reduce
                dgamma.fill(0.0)
                dbeta.fill(0.0)
            return dx
        # inference mode is an affine map per channel: dx = dy * gamma / sqrt(moving_var + eps);
        # gamma/beta of a frozen layer get no update, so their gradients are not needed
        s = self._buffer("scale", (c,))
        np.add(self.moving_variance.value, self.epsilon, out=s)
        np.sqrt(s, out=s)
        np.reciprocal(s, out=s)
        if self.gamma is not None:
            np.multiply(s, self.gamma.value, out=s)
        if self._y is not None:   # fused ReLU: its gradient first (y = relu(z) > 0 iff z > 0)
            dy = K.activation.grad("relu", self._y, self._y, dy, out=dx)
        return np.multiply(dy, s, out=dx)

    def get_config(self):
        c = super().get_config()
        c.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                 scale=self.scale, beta_initializer=serialize_obj(self.beta_initializer),
                 gamma_initializer=serialize_obj(self.gamma_initializer),
                 moving_mean_initializer=serialize_obj(self.moving_mean_initializer),
                 moving_variance_initializer=serialize_obj(self.moving_variance_initializer),
                 beta_regularizer=serialize_obj(self.beta_regularizer),
                 gamma_regularizer=serialize_obj(self.gamma_regularizer),
                 beta_constraint=serialize_obj(self.beta_constraint),
                 gamma_constraint=serialize_obj(self.gamma_constraint))
        return c
