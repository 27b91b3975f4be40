"""The trainer: compile, fit, evaluate, predict and the `*_on_batch` methods (Keras 3's Trainer).

Follows keras:trainers/trainer.py and keras:backend/torch/trainer.py: the displayed loss is the
running mean weighted by batch size, validation_split takes the last fraction before shuffling,
train_on_batch resets the metrics first.

One training step (`_train_step`) is a few calls, with a seam between them:

    loss, y_pred = self._compute_gradients(xs, y, sw)   # forward, loss, backward: every
                                                        # gradient is in self._arena.grads
    self._replica.reduce_gradients()                    # data parallel only: the sum over
                                                        # the processes
    loss += self._weight_penalties()                    # kernel_regularizer & co., value and
                                                        # gradient (after the sum: once)
    self._apply_gradients()                             # optimizer step over the flat arena,
                                                        # then constraints

Per-sample weights (and later masks) enter the losses in one place, `_loss_and_grad`, and the
metrics in one place, `_update_metrics`.

Data parallel (fastnn.distribution): `self._replica` is None in one process. Under a
DataParallel distribution over several processes it is this process's
fastnn.distribution.replica.Replica for the duration of fit / evaluate / predict / *_on_batch,
consulted at the points marked "data parallel" below: `begin`/`end` around the call (same
model everywhere, process 0's weights, callbacks that write only on process 0),
`local_rows`/`local_slice` (this process's rows of each global batch), `grad_scale` (the loss
gradient divided by the global batch), `reduce_gradients`, `summed_logs` (metrics over all
processes), `agree` (process 0's stop and learning-rate decisions), `predict_range` and
`gather_rows`.
"""
from __future__ import annotations

import math
import numbers
import time

import numpy as np

from fastnn import _random
from fastnn import callbacks as callbacks_module
from fastnn.kernels.conv import blas_pinned
from fastnn.models import masking
from fastnn.layers.base import FLOATX
from fastnn.models.arena import Arena
from fastnn.models.data import DataChecks

_FUSABLE = ("softmax", "sigmoid")


class Trainer(DataChecks):
    """compile / fit / evaluate / predict over a model's graph (a mixin of Model)."""

    compiled = False
    optimizer = None
    loss = None
    _arena = None
    _in_fit = False
    _metric_mask = None    # the output mask of the last training batch (fastnn.models.masking)
    _replica = None   # data parallel: this process's fastnn.distribution Replica during a call

    # ---------------------------------------------------------------------------------------
    # compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Configure training: optimizer, loss and metrics (names, classes or objects, as Keras)."""
        from fastnn import losses, optimizers
        try:
            self.optimizer = optimizers.get(optimizer)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compile: could not interpret optimizer={optimizer!r}: {e}") from None
        if loss is None:
            raise ValueError("compile: a loss is required for training, e.g. loss='mse' or "
                             "loss='categorical_crossentropy'.")
        if isinstance(loss, (list, tuple, dict)):
            raise ValueError("compile: one loss per model output; fastnn trains single-output models "
                             f"(received loss={loss!r}).")
        try:
            self.loss = losses.get(loss)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compile: could not interpret loss={loss!r}: {e}") from None
        if self.loss is None:
            raise ValueError(f"compile: could not interpret loss={loss!r}.")
        self._loss_id = loss
        if metrics is None:
            metrics = []
        elif isinstance(metrics, dict):
            metrics = [m for v in metrics.values() for m in (v if isinstance(v, (list, tuple)) else [v])]
        elif not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        self._metric_ids = list(metrics) + list(weighted_metrics or [])
        # Keras applies sample weights only to `weighted_metrics`; `metrics` are unweighted
        self._metric_weighted = [False] * len(metrics) + [True] * len(weighted_metrics or [])
        self._check_metric_ids()
        self._metrics = None   # resolved on the first batch, when y shapes are known (as Keras)
        self.compiled = True
        self._arena = None
        self._opt_built = False
        if self.built:
            self._prepare_training()

    def _check_metric_ids(self):
        from fastnn import metrics as metrics_module
        for m in self._metric_ids:
            if isinstance(m, str) and m not in ("accuracy", "acc", "crossentropy", "ce"):
                try:
                    metrics_module.get(m)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"compile: unknown metric {m!r}: {e}") from None

    def _resolve_metrics(self, y, y_pred):
        from fastnn import metrics as metrics_module
        self._metrics = [metrics_module.resolve(m, y, y_pred, self.loss) for m in self._metric_ids]

    @property
    def metrics_names(self):
        return ["loss"] + [m.name for m in (self._metrics or [])]

    def reset_metrics(self):
        self._loss_sum = 0.0
        self._loss_count = 0
        for m in self._metrics or []:
            m.reset_state()

    def _prepare_training(self):
        """Build the arena over the trainable weights and the optimizer slots; set up loss fusion."""
        tvars = self.trainable_weights
        key = [id(v) for v in tvars]
        if self._arena is not None and self._arena_key == key:
            return
        if self._arena is not None:
            self._arena.release()
        # weights that are no longer trainable keep (or get) storage of their own
        for v in self.weights:
            if v.grad is None or (self._arena is not None and np.shares_memory(v.grad, self._arena.grads)):
                v.grad = np.zeros_like(v.value)
        self._arena = Arena(tvars)
        self._arena_key = key
        self.optimizer.build(self._arena.size, self._arena.segments)
        self._reg_vars = [v for v in tvars if v.regularizer is not None]
        self._constrained = [v for v in tvars if v.constraint is not None]
        # softmax/sigmoid output + crossentropy: the loss gives d/d(logits) directly
        for layer, _, _ in self._nodes:
            layer._fused_output = False
        self._fused = False
        last = self._nodes[-1][0] if self._nodes else None
        kind = getattr(self.loss, "fused_kind", None)
        if (last is not None and self._single_output and kind in _FUSABLE and isinstance(getattr(type(last), "logits", None), property)
                and getattr(last, "_act_name", None) == kind and not getattr(self.loss, "from_logits", False)
                and not getattr(last, "_act_params", {}) and getattr(last, "axis", -1) == -1
                and hasattr(self.loss, "value_and_grad_logits")
                # an activity penalty on the probabilities needs the activation's own backward
                and last.activity_regularizer is None):
            last._fused_output = True
            self._fused = True

    def _ready(self, xs, fn):
        if not self.compiled:
            raise RuntimeError(f"{fn}: you must compile the model before training/testing; use "
                               f"model.compile(optimizer, loss).")
        self._ensure_built(xs)
        if not self._single_output or len(self._graph_outputs) != 1:
            raise ValueError(f"{fn}: training and evaluating multi-output models is not supported by fastnn yet "
                             f"(model '{self.name}' has {len(self._graph_outputs)} outputs); predict works.")
        self._prepare_training()

    # ---------------------------------------------------------------------------------------
    # one step
    def _loss_and_grad(self, y, y_pred, sw):
        """(loss, dL/dy_pred) of one batch: where sample weights enter the loss (Keras reduction)."""
        if self._fused:
            loss, d = self.loss.value_and_grad_logits(y, self._nodes[-1][0].logits, sw)
        else:
            loss, d = self.loss.value_and_grad(y, y_pred, sw)
        return float(loss), d

    def _train_step(self, xs, y, sw):
        """One optimizer step on one batch (already gathered): gradients, then the update."""
        # BLAS single-threaded for the whole step: the kernels split their GEMMs over their own
        # threads (see fastnn.kernels.conv.blas_pinned for the measurements)
        with blas_pinned():
            loss, y_pred = self._compute_gradients(xs, y, sw)
            if self._replica is not None:      # data parallel: sum the arena over the processes
                self._replica.reduce_gradients()
            loss += self._weight_penalties()
            self._apply_gradients()
        self._update_metrics(loss, y, y_pred, sw, self._metric_mask)
        return loss

    def _compute_gradients(self, xs, y, sw):
        """Forward, loss and backward: every trainable weight's gradient of the loss (without
        the weight penalties) is written into the flat arena `self._arena.grads`. Returns
        (loss, y_pred)."""
        timer = self._timer
        (y_pred,) = self._forward(xs, True)
        if timer is not None:
            t0 = time.perf_counter()
        sw, self._metric_mask = masking.loss_weights(self, sw, y_pred)
        loss, d = self._loss_and_grad(y, y_pred, sw)
        if d.dtype != FLOATX or not d.flags.c_contiguous:
            d = np.ascontiguousarray(d, dtype=FLOATX)
        if d.shape != y_pred.shape and not self._fused:
            d = d.reshape(y_pred.shape)
        if self._replica is not None:
            # data parallel: this process's share of the mean over the global batch (Keras's
            # sum_over_batch_size divides by the global batch size)
            np.multiply(d, np.float32(self._replica.grad_scale), out=d)
        if timer is not None:
            timer.loss += time.perf_counter() - t0
        loss += self._activity_penalty()
        self._backward([d])
        return loss, y_pred

    def _weight_penalties(self):
        """The weight regularizers' penalty (returned) and gradient (added to the arena)."""
        timer = self._timer
        if timer is not None:
            t0 = time.perf_counter()
        loss = 0.0
        for v in self._reg_vars:
            loss += float(v.regularizer(v.value))
            v.grad += v.regularizer.gradient(v.value)
        if timer is not None:
            timer.optimizer += time.perf_counter() - t0
        return loss

    def _apply_gradients(self):
        """The optimizer step over the flat arena (one fused kernel call), then constraints."""
        timer = self._timer
        if timer is not None:
            t0 = time.perf_counter()
        self.optimizer.apply_flat(self._arena.params, self._arena.grads)
        for v in self._constrained:
            v.value[...] = v.constraint(v.value)
        if timer is not None:
            timer.optimizer += time.perf_counter() - t0

    def _test_step(self, xs, y, sw):
        with blas_pinned():
            (y_pred,) = self._forward(xs, False)
        lsw, mmask = masking.loss_weights(self, sw, y_pred)
        if self._fused:
            loss, _ = self._loss_and_grad(y, y_pred, lsw)
        else:
            loss = float(self.loss(y, y_pred, sample_weight=lsw))
        loss += self._activity_penalty()
        for v in self._reg_vars:
            loss += float(v.regularizer(v.value))
        self._update_metrics(loss, y, y_pred, sw, mmask)
        return loss

    def _activity_penalty(self):
        """Sum of the layers' activity_regularizer(output) / batch size of the last forward pass
        (as Keras 3.15 computes it, measured: in training and evaluation)."""
        total = 0.0
        for layer, _, out in self._nodes:
            if layer.activity_regularizer is not None and not isinstance(out, list):
                y = self._vals[out]
                total += float(layer.activity_regularizer(y)) / max(1, y.shape[0])
        return total

    def _update_metrics(self, loss, y, y_pred, sw, mask=None):
        """Add one batch to the loss tracker and the metrics (where sample weights enter them;
        an output mask weighs every metric, as Keras)."""
        if self._metrics is None:
            self._resolve_metrics(y, y_pred)
        if self._replica is not None and self._replica.phantom:
            return     # data parallel: this process ran a stand-in row of an empty share
        n = y_pred.shape[0]
        self._loss_sum += loss * n
        self._loss_count += n
        for m, weighted in zip(self._metrics, self._metric_weighted):
            m.update_state(y, y_pred, sample_weight=masking.metric_weights(sw if weighted else None, mask))

    def _logs(self, prefix=""):
        if self._replica is not None:       # data parallel: the sums over all processes
            with self._replica.summed_logs(self):
                return self._local_logs(prefix)
        return self._local_logs(prefix)

    def _local_logs(self, prefix=""):
        logs = {"loss": self._loss_sum / max(self._loss_count, 1)}
        for m in self._metrics or []:
            r = m.result()
            logs[m.name] = float(r) if np.ndim(r) == 0 else np.asarray(r)
        return {prefix + k: logs[k] for k in sorted(logs)}

    # ---------------------------------------------------------------------------------------
    # public training API
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train for `epochs` over (x, y) in batches; returns a History (Keras's log keys)."""
        fn = "fit"
        batch_size = self._check_batch_size(batch_size, fn)
        if not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int; received epochs={epochs!r}.")
        if verbose not in ("auto", 0, 1, 2):
            raise ValueError(f"fit: verbose must be 'auto', 0, 1 or 2; received verbose={verbose!r}.")
        if not 0 <= validation_split < 1:
            raise ValueError(f"fit: validation_split must be in [0, 1); received {validation_split!r}.")
        if not self.compiled:
            raise RuntimeError("fit: you must compile the model before training; use model.compile(optimizer, loss).")
        xs = self._prepare_x(x, fn)
        self._ensure_built(xs)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, class_weight, n, fn)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight).")
            vxs = self._prepare_x(validation_data[0], "fit (validation_data)")
            vn = self._check_x_shapes(vxs, "fit (validation_data)")
            vy = self._prepare_y(validation_data[1], vn, "fit (validation_data)")
            vsw = self._sample_weights(vy, validation_data[2] if len(validation_data) == 3 else None, None, vn,
                                       "fit (validation_data)")
            val = (vxs, vy, vsw)
        elif validation_split:
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty training or validation "
                                 f"set with {n} samples.")
            val = ([a[split:] for a in xs], y[split:], None if sw is None else sw[split:])
            xs, y, sw = [a[:split] for a in xs], y[:split], None if sw is None else sw[:split]
            n = split
        if n == 0:
            raise ValueError("fit: x is empty (0 samples).")
        self._ready(xs, fn)
        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, int(steps_per_epoch))
        verbose_v = 1 if verbose == "auto" else verbose
        history = callbacks_module.History()
        cbs = list(callbacks or [])
        if verbose_v and not any(isinstance(c, callbacks_module.ProgbarLogger) for c in cbs):
            cbs.append(callbacks_module.ProgbarLogger())
        cbs.append(history)
        params = {"verbose": verbose_v, "epochs": epochs, "steps": steps}
        replica = self._replica_begin()
        if replica is not None:   # data parallel: writers and the progress bar on process 0 only
            try:
                cbs = replica.begin(fn, cbs, train=True)
            except BaseException:
                self._replica_end()
                raise
        cb = callbacks_module.CallbackList(cbs, self, params)
        history.params = params
        self.stop_training = False
        rng = _random.generator()
        order = np.arange(n)
        self._in_fit = True
        try:
            cb.on_train_begin()
            logs = {}
            for epoch in range(initial_epoch, epochs):
                self.reset_metrics()
                cb.on_epoch_begin(epoch)
                if shuffle:
                    rng.shuffle(order)
                for step in range(steps):
                    cb.on_train_batch_begin(step)
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    if replica is not None:
                        idx = replica.local_rows(idx, f"epoch {epoch + 1}, step {step + 1}")
                    bx = self._batch_bufs("train", [*xs, y, sw], idx)
                    self._train_step(bx[:-2], bx[-2], bx[-1])
                    logs = self._logs()
                    cb.on_train_batch_end(step, logs)
                    if replica is not None:
                        replica.agree(self)
                    if self.stop_training:
                        break
                logs = self._logs()
                if val is not None and (epoch + 1) % validation_freq == 0:
                    vb = self._check_batch_size(validation_batch_size, fn, batch_size)
                    vlogs = self._evaluate_arrays(*val, vb, None, validation_steps)
                    logs.update({"val_" + k: v for k, v in vlogs.items()})
                cb.on_epoch_end(epoch, logs)
                if replica is not None:
                    replica.agree(self, lr=True)
                if self.stop_training:
                    break
            cb.on_train_end(logs)
        finally:
            self._in_fit = False
            self._replica_end()
        history.model = self
        self.history = history
        return history

    def _replica_begin(self):
        """Data parallel: this process's Replica for the call (None in plain training)."""
        from fastnn import distribution
        self._replica = distribution.replica_for(self)
        return self._replica

    def _replica_end(self):
        if self._replica is not None:
            self._replica.end()
        self._replica = None

    def _evaluate_arrays(self, xs, y, sw, batch_size, cb, steps=None):
        n = xs[0].shape[0]
        self.reset_metrics()
        total = math.ceil(n / batch_size)
        if steps is not None:
            total = min(total, int(steps))
        for step in range(total):
            if cb is not None:
                cb.on_test_batch_begin(step)
            sl = slice(step * batch_size, min((step + 1) * batch_size, n))
            if self._replica is not None:
                sl = self._replica.local_slice(sl, f"evaluation step {step + 1}")
            self._test_step([a[sl] for a in xs], y[sl], None if sw is None else sw[sl])
            if cb is not None:
                cb.on_test_batch_end(step, self._logs())
        return self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Loss and metrics over (x, y): a float, [loss, *metrics], or a dict with return_dict."""
        fn = "evaluate"
        batch_size = self._check_batch_size(batch_size, fn)
        xs = self._prepare_x(x, fn)
        self._ready(xs, fn)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, None, n, fn)
        verbose_v = 1 if verbose == "auto" else verbose
        total = math.ceil(n / batch_size) if steps is None else min(math.ceil(n / batch_size), int(steps))
        cbs = list(callbacks or [])
        if verbose_v:
            cbs.append(callbacks_module.ProgbarLogger())
        replica = self._replica_begin()
        try:
            if replica is not None:
                cbs = replica.begin(fn, cbs)
            cb = callbacks_module.CallbackList(cbs, self, {"verbose": verbose_v, "epochs": 1, "steps": total})
            cb.on_test_begin()
            logs = self._evaluate_arrays(xs, y, sw, batch_size, cb, steps)
            cb.on_test_end(logs)
        finally:
            self._replica_end()
        if return_dict:
            return logs
        return self._flat_logs(logs)

    def _flat_logs(self, logs):
        names = self.metrics_names
        out = [logs[k] for k in names if k in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return out[0] if len(out) == 1 else out

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for x computed in batches (inference mode); a float32 array (list if several outputs)."""
        fn = "predict"
        batch_size = self._check_batch_size(batch_size, fn)
        xs = self._prepare_x(x, fn)
        self._ensure_built(xs)
        n = self._check_x_shapes(xs, fn)
        verbose_v = 1 if verbose == "auto" else verbose
        cbs = list(callbacks or [])
        if verbose_v:
            cbs.append(callbacks_module.ProgbarLogger())
        replica = self._replica_begin()
        if replica is not None:
            # data parallel: each process predicts a contiguous share of the rows
            try:
                cbs = replica.begin(fn, cbs)
                lo, hi = replica.predict_range(n)
            finally:
                self._replica_end()
            xs, n_all, n = [a[lo:hi] for a in xs], n, hi - lo
        total = math.ceil(n / batch_size)
        cb = callbacks_module.CallbackList(cbs, self, {"verbose": verbose_v, "epochs": 1, "steps": total})
        outs = None
        cb.on_predict_begin()
        for step in range(total):
            cb.on_predict_batch_begin(step)
            sl = slice(step * batch_size, (step + 1) * batch_size)
            with blas_pinned():
                ys = self._forward([a[sl] for a in xs], False)
            if outs is None:
                outs = [np.empty((n, *o.shape[1:]), FLOATX) for o in ys]
            for o, yb in zip(outs, ys):
                o[sl] = yb
            cb.on_predict_batch_end(step)
        cb.on_predict_end()
        if replica is not None:   # every process's rows, in order, on every process
            outs = [replica.gather_rows(None if outs is None else o, n_all)
                    for o in (outs or [None] * len(self._graph_outputs))]
        if outs is None:
            outs = [np.empty((0, *t.shape[1:]), FLOATX) for t in self._graph_outputs]
        return outs[0] if len(outs) == 1 else outs

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns the loss (and metrics) of that batch."""
        fn = "train_on_batch"
        xs = self._prepare_x(x, fn)
        self._ready(xs, fn)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, class_weight, n, fn)
        return self._one_batch(fn, self._train_step, xs, y, sw, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        fn = "test_on_batch"
        xs = self._prepare_x(x, fn)
        self._ready(xs, fn)
        n = self._check_x_shapes(xs, fn)
        y = self._prepare_y(y, n, fn)
        sw = self._sample_weights(y, sample_weight, None, n, fn)
        return self._one_batch(fn, self._test_step, xs, y, sw, return_dict)

    def _one_batch(self, fn, step, xs, y, sw, return_dict):
        """train_on_batch / test_on_batch after their checks: metrics reset, one step, the logs."""
        replica = self._replica_begin()
        try:
            if replica is not None:   # data parallel: this process's rows of the batch
                replica.begin(fn, train=step == self._train_step, once=True)
                sl = replica.local_slice(slice(0, len(y)), fn)
                xs, y, sw = [a[sl] for a in xs], y[sl], None if sw is None else sw[sl]
            self.reset_metrics()
            step(xs, y, sw)
            logs = self._logs()
        finally:
            self._replica_end()
        return logs if return_dict else self._flat_logs(logs)

    def predict_on_batch(self, x):
        xs = self._prepare_x(x, "predict_on_batch")
        self._ensure_built(xs)
        self._check_x_shapes(xs, "predict_on_batch")
        with blas_pinned():
            outs = [np.array(o, copy=True) for o in self._forward(xs, False)]
        return outs[0] if len(outs) == 1 else outs

