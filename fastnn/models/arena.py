"""The flat parameter arena: every trainable weight of a model is a view into one float32 vector.

Gradients live in a second vector of the same layout, so an optimizer step is one fused kernel
call over the whole model (`optimizer.apply_flat(params, grads)`), and global-norm clipping is
one reduction. `segments` holds the int64 offsets (k+1,) of the k variables, for per-tensor
clipnorm.
"""
from __future__ import annotations

import numpy as np


class Arena:
    """Flat float32 storage for `variables` (trainable Variables, in model order)."""

    def __init__(self, variables):
        self.variables = list(variables)
        sizes = [v.value.size for v in self.variables]
        self.segments = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=self.segments[1:])
        n = int(self.segments[-1])
        self.params = np.empty(n, np.float32)
        self.grads = np.zeros(n, np.float32)
        for v, a, b in zip(self.variables, self.segments[:-1], self.segments[1:]):
            self.params[a:b] = v.value.ravel()
            v.value = self.params[a:b].reshape(v.value.shape)
            v.grad = self.grads[a:b].reshape(v.value.shape)

    @property
    def size(self) -> int:
        return int(self.params.size)

    def owns(self, var) -> bool:
        return np.shares_memory(var.value, self.params)

    def holds(self) -> bool:
        """True while every variable's value is still a view into this arena (cheap: no memory
        scan). False after another model that shares the variables built its own arena."""
        params = self.params
        return all(v.value.base is params for v in self.variables)

    def adopt(self):
        """Point the variables back into this arena, copying their current values in (another
        model sharing them trained them meanwhile); the optimizer state stays as it is."""
        for v, a, b in zip(self.variables, self.segments[:-1], self.segments[1:]):
            self.params[a:b] = v.value.ravel()
            v.value = self.params[a:b].reshape(v.value.shape)
            v.grad = self.grads[a:b].reshape(v.value.shape)

    def release(self, keep=()):
        """Give every variable its own storage again (before building a new arena)."""
        keep = {id(v) for v in keep}
        for v in self.variables:
            if id(v) in keep:
                continue
            v.value = v.value.copy()
            v.grad = np.zeros_like(v.value)
