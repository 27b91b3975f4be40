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

Per-sample weights and output masks enter the losses in one place, `_losses` (masks through
fastnn.models.masking.loss_weights), and the metrics in one place, `_update_metrics`.

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
from fastnn.layers.base import FLOATX
from fastnn.models.arena import Arena
from fastnn.models.data import DataChecks
from fastnn.models.graph import _pack
from fastnn.models import masking, memplan

_FUSABLE = ("softmax", "sigmoid")


class Trainer(DataChecks):
    """compile / fit / evaluate / predict over a model's graph (a mixin of Model)."""

    compiled = False
    optimizer = None
    loss = None
    _arena = None
    _in_fit = False
    _replica = None   # data parallel: this process's fastnn.distribution Replica during a call
    _heads = None

    # ---------------------------------------------------------------------------------------
    # compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Configure training: optimizer, loss and metrics (names, classes or objects, as Keras).

        With several outputs, `loss`, `loss_weights`, `metrics` and `weighted_metrics` may be one
        value for every output, a list (one entry per output) or a dict keyed by output name.
        """
        from fastnn import optimizers
        try:
            self.optimizer = optimizers.get(optimizer)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compile: could not interpret optimizer={optimizer!r}: {e}") from None
        if loss is None:
            raise ValueError("compile: a loss is required for training, e.g. loss='mse' or "
                             "loss='categorical_crossentropy'.")
        if loss_weights is not None and not isinstance(loss_weights, (list, tuple, dict, numbers.Real)):
            raise ValueError(f"compile: loss_weights must be a float, a list or a dict; received {loss_weights!r}.")
        self._compile_args = {"loss": loss, "loss_weights": loss_weights, "metrics": metrics,
                              "weighted_metrics": weighted_metrics}
        for ms in (metrics, weighted_metrics):
            for m in _flat_ids(ms):
                _check_metric_id(m)
        for l in _flat_ids(loss):
            if l is not None:
                _get_loss(l)
        self._heads = None     # one per output, made when the graph is known (_prepare_training)
        self.loss = _get_loss(loss) if not isinstance(loss, (list, tuple, dict)) else loss
        self._loss_id = loss
        self.compiled = True
        self._arena = None
        self._opt_built = False
        if self.built:
            self._prepare_training()

    def _make_heads(self):
        """One Head per model output: its loss, loss weight and metrics (Keras's compile_utils)."""
        args = self._compile_args
        names = self.output_names
        k = len(names)

        def per_output(value, what, allow_single=True):
            if isinstance(value, dict):
                unknown = set(value) - set(names)
                if unknown:
                    raise ValueError(f"compile: {what} has keys {sorted(unknown)} that are not output names; the "
                                     f"model's outputs are {names}.")
                return [value.get(nm) for nm in names]
            if isinstance(value, (list, tuple)) and k > 1:
                if len(value) != k:
                    raise ValueError(f"compile: {what} must have one entry per output ({k}: {names}); received "
                                     f"{len(value)} entries.")
                return list(value)
            if k > 1 and not allow_single:
                raise ValueError(f"compile: with {k} outputs give {what} as a list of {k} entries or a dict "
                                 f"keyed by {names}; received {value!r}.")
            return [value] * k if k > 1 else [value]

        losses = per_output(args["loss"], "loss")
        if k == 1 and isinstance(args["loss"], (list, tuple)):
            if len(args["loss"]) != 1:
                raise ValueError(f"compile: the model has 1 output; received {len(args['loss'])} losses.")
            losses = list(args["loss"])
        lw = args["loss_weights"]
        if not isinstance(args["loss"], (list, tuple, dict)) and isinstance(lw, (list, tuple, dict)) and len(lw) > 1:
            raise ValueError(f"compile: loss_weights must match the number of losses; received one loss and "
                             f"{len(lw)} weights. Give the loss as a list or dict too (as Keras requires).")
        weights = per_output(lw, "loss_weights") if lw is not None else [None] * k
        if k == 1 and isinstance(lw, (list, tuple)):
            weights = list(lw)
        ms = per_output(args["metrics"], "metrics", allow_single=False) if args["metrics"] else [None] * k
        wms = per_output(args["weighted_metrics"], "weighted_metrics", allow_single=False) \
            if args["weighted_metrics"] else [None] * k
        if k == 1:   # one output: every metric applies to it (a list, or a dict's values)
            ms, wms = [_flat_ids(args["metrics"])], [_flat_ids(args["weighted_metrics"])]
        heads = []
        for j, name in enumerate(names):
            loss = None if losses[j] is None else _get_loss(losses[j])
            heads.append(Head(j, name if k > 1 else None, self._output_ids[j], loss, weights[j],
                              _flat_ids(ms[j]), _flat_ids(wms[j])))
        if all(h.loss is None for h in heads):
            raise ValueError("compile: every output's loss is None; give at least one loss.")
        return heads

    def _ensure_heads(self):
        if self._heads is None and self.compiled and self.built:
            self._heads = self._make_heads()
            if len(self._heads) == 1:
                self.loss = self._heads[0].loss
        return self._heads

    @property
    def metrics_names(self):
        names = ["loss"]
        for h in self._heads or []:
            names += [m.name for m in h.metrics or []]
        if self._heads and sum(h.loss is not None for h in self._heads) > 1:
            names += [f"{h.name}_loss" for h in self._heads if h.loss is not None]
        return names

    def reset_metrics(self):
        self._loss_sum = 0.0
        self._loss_count = 0
        for h in self._heads or []:
            h.loss_sum, h.loss_count = 0.0, 0
            for m in h.metrics or []:
                m.reset_state()

    @property
    def _metrics(self):   # every resolved metric object (None before the first batch)
        if not self._heads or any(h.metrics is None for h in self._heads):
            return None
        return [m for h in self._heads for m in h.metrics]

    @_metrics.setter
    def _metrics(self, value):
        if value is None:
            for h in self._heads or []:
                h.metrics = None

    def _prepare_training(self):
        """Build the arena over the trainable weights and the optimizer slots; set up the heads
        and loss fusion."""
        self._ensure_heads()
        tvars = self.trainable_weights
        key = [id(v) for v in tvars]
        if self._arena is not None and self._arena_key == key:
            if not self._arena.holds():   # a model sharing these weights (e.g. a GAN's combined
                self._arena.adopt()       # model) moved them into its arena: take them back
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
        readers = {}
        for layer, ins, _ in self._nodes:
            for i in ins:
                readers[i] = readers.get(i, 0) + 1
        made_by = {out: layer for layer, _, out in self._nodes}
        outputs = self._output_ids
        for h in self._heads:
            h.fused = False
            last = made_by.get(h.out_id)
            kind = getattr(h.loss, "fused_kind", None)
            if (last is not None and kind in _FUSABLE and isinstance(getattr(type(last), "logits", None), property)
                    and getattr(last, "_act_name", None) == kind and not getattr(h.loss, "from_logits", False)
                    and not getattr(last, "_act_params", {}) and getattr(last, "axis", -1) == -1
                    and hasattr(h.loss, "value_and_grad_logits")
                    # nothing else may read the probabilities (their gradient is not computed)
                    and readers.get(h.out_id, 0) == 0 and outputs.count(h.out_id) == 1
                    # an activity penalty on the probabilities needs the activation's own backward
                    and last.activity_regularizer is None):
                last._fused_output = True
                h.fused, h.layer = True, last
        self._fused_layers = tuple(h.layer for h in self._heads if h.fused)
        self._plan_fusion()   # a fused output changes what inference may fuse

    @property
    def _fused(self):
        return bool(self._heads) and len(self._heads) == 1 and self._heads[0].fused

    def _ready(self, xs, fn):
        if not self.compiled:
            raise RuntimeError(f"{fn}: you must compile the model before training/testing; use "
                               f"model.compile(optimizer, loss).")
        self._ensure_built(xs)
        self._prepare_training()

    # ---------------------------------------------------------------------------------------
    # one step
    def _loss_and_grad(self, y, y_pred, sw, head=None):
        """(loss, dL/dy_pred) of one output for one batch: where sample weights enter the loss
        (Keras reduction). With a fused softmax/sigmoid output the gradient is w.r.t. the logits."""
        head = head or self._heads[0]
        if head.fused:
            loss, d = head.loss.value_and_grad_logits(y, head.layer.logits, sw)
        else:
            loss, d = head.loss.value_and_grad(y, y_pred, sw)
        return float(loss), d

    def _train_step(self, xs, ys, sws):
        """One optimizer step on one batch (already gathered): gradients, then the update.
        ys, sws: one array (or None) per output; a bare array means the only output."""
        if not isinstance(ys, list):
            ys, sws = [ys], [sws]
        # BLAS single-threaded for the whole step: the kernels split their GEMMs over their own
        # threads (see fastnn.kernels.conv.blas_pinned for the measurements)
        with blas_pinned():
            loss, y_preds = self._compute_gradients(xs, ys, sws)
            if self._replica is not None:      # data parallel: sum the arena over the processes
                self._replica.reduce_gradients()
            loss += self._weight_penalties()
            self._apply_gradients()
        self._update_metrics(loss, ys, y_preds, sws)
        return loss

    def _compute_gradients(self, xs, ys, sws):
        """Forward, losses and backward: every trainable weight's gradient of the loss (without
        the weight penalties) is written into the flat arena `self._arena.grads`. Returns
        (loss, y_preds)."""
        with memplan.planned(self, "train", xs):
            return self._planned_gradients(xs, ys, sws)

    def _planned_gradients(self, xs, ys, sws):
        timer = self._timer
        y_preds = self._forward(xs, True)
        if timer is not None:
            t0 = time.perf_counter()
        loss, douts = self._losses(ys, y_preds, sws, need_grad=True)
        if self._replica is not None:
            # data parallel: this process's share of the mean over the global batch (Keras's
            # sum_over_batch_size divides by the global batch size)
            scale = np.float32(self._replica.grad_scale)
            for d in douts:
                if d is not None:
                    np.multiply(d, scale, out=d)
        if timer is not None:
            timer.loss += time.perf_counter() - t0
        loss += self._activity_penalty()
        self._backward(douts)
        return loss, y_preds

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

    def _losses(self, ys, y_preds, sws, need_grad):
        """Total loss sum_i w_i * loss_i over the outputs with a loss (and, with need_grad, the
        gradient w.r.t. each output; None for outputs without a loss). Records each output's
        unweighted loss for its `<name>_loss` log."""
        total, douts = 0.0, []
        for h, y, yp, sw in zip(self._heads, ys, y_preds, sws):
            # an output mask (a sequence output after Embedding(mask_zero=True) / Masking)
            # weighs this output's loss as Keras's apply_mask does, and its metrics
            sw, h.mask = masking.loss_weights(self, h, sw, yp)
            if h.loss is None:
                douts.append(None)
                continue
            if need_grad or h.fused:
                value, d = self._loss_and_grad(y, yp, sw, h)
            else:
                value, d = float(h.loss(y, yp, sample_weight=sw)), None
            h.last_loss = value
            if d is not None:
                if d.dtype != FLOATX or not d.flags.c_contiguous:
                    d = np.ascontiguousarray(d, dtype=FLOATX)
                if not h.fused and d.shape != yp.shape:
                    d = d.reshape(yp.shape)
                if h.weight is not None and h.weight != 1:
                    d *= np.float32(h.weight)
            douts.append(d)
            total += value if h.weight is None else value * float(h.weight)
        return total, douts

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

    def _test_step(self, xs, ys, sws):
        if not isinstance(ys, list):
            ys, sws = [ys], [sws]
        with blas_pinned(), memplan.planned(self, "infer", xs):
            y_preds = self._forward(xs, False)
            loss, _ = self._losses(ys, y_preds, sws, need_grad=False)
        loss += self._activity_penalty()
        for v in self._reg_vars:
            loss += float(v.regularizer(v.value))
        self._update_metrics(loss, ys, y_preds, sws)
        return loss

    def _activity_penalty(self):
        """Sum of the layers' activity_regularizer(output) / batch size of the last forward pass
        (as Keras 3.15 computes it, measured: in training and evaluation)."""
        total = 0.0
        for layer, _, out in self._nodes:
            if layer.activity_regularizer is not None and type(out) is int:
                y = self._vals[out]
                total += float(layer.activity_regularizer(y)) / max(1, y.shape[0])
        return total

    def _update_metrics(self, loss, ys, y_preds, sws):
        """Add one batch to the loss trackers and the metrics (where sample weights enter them)."""
        if not isinstance(ys, list):
            ys, y_preds, sws = [ys], [y_preds], [sws]
        for h, y, yp in zip(self._heads, ys, y_preds):
            if h.metrics is None:
                h.resolve_metrics(y, yp)
        if self._replica is not None and self._replica.phantom:
            return     # data parallel: this process ran a stand-in row of an empty share
        n = y_preds[0].shape[0]
        self._loss_sum += loss * n
        self._loss_count += n
        for h, y, yp, sw in zip(self._heads, ys, y_preds, sws):
            if h.loss is not None:
                h.loss_sum += h.last_loss * n
                h.loss_count += n
            for m, weighted in zip(h.metrics, h.metric_weighted):
                m.update_state(y, yp, sample_weight=masking.metric_weights(sw if weighted else None, h.mask))

    def _logs(self, prefix=""):
        if self._replica is not None:       # data parallel: the sums over all processes
            with self._replica.summed_logs(self):
                return self._local_logs(prefix)
        return self._local_logs(prefix)

    def _local_logs(self, prefix=""):
        logs = {"loss": self._loss_sum / max(self._loss_count, 1)}
        heads = self._heads or []
        if sum(h.loss is not None for h in heads) > 1:
            for h in heads:
                if h.loss is not None:
                    logs[f"{h.name}_loss"] = h.loss_sum / max(h.loss_count, 1)
        for h in heads:
            for m in h.metrics or []:
                r = m.result()
                name = m.name if h.name is None else f"{h.name}_{m.name}"
                logs[name] = float(r) if np.ndim(r) == 0 else np.asarray(r)
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
        ys = self._prepare_y(y, n, fn)
        sws = self._sample_weights(ys, sample_weight, class_weight, n, fn)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight).")
            vxs = self._prepare_x(validation_data[0], "fit (validation_data)")
            vn = self._check_x_shapes(vxs, "fit (validation_data)")
            vys = self._prepare_y(validation_data[1], vn, "fit (validation_data)")
            vsws = self._sample_weights(vys, validation_data[2] if len(validation_data) == 3 else None, None, vn,
                                        "fit (validation_data)")
            val = (vxs, vys, vsws)
        elif validation_split:
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty training or validation "
                                 f"set with {n} samples.")
            tail = (lambda arrays: [None if a is None else a[split:] for a in arrays])
            head = (lambda arrays: [None if a is None else a[:split] for a in arrays])
            val = (tail(xs), tail(ys), tail(sws))
            xs, ys, sws = head(xs), head(ys), head(sws)
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
        nx, k = len(xs), len(ys)
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
                    bx = self._batch_bufs("train", [*xs, *ys, *sws], idx)
                    self._train_step(bx[:nx], bx[nx:nx + k], bx[nx + k:])
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

    def _evaluate_arrays(self, xs, ys, sws, batch_size, cb, steps=None):
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
            self._test_step([a[sl] for a in xs], [None if a is None else a[sl] for a in ys],
                            [None if a is None else a[sl] for a in sws])
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
            batch = [a[sl] for a in xs]
            with blas_pinned(), memplan.planned(self, "infer", batch):
                ys = self._forward(batch, False)
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
        return _pack(self._output_struct, outs)

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
        with blas_pinned(), memplan.planned(self, "infer", xs):
            outs = [np.array(o, copy=True) for o in self._forward(xs, False)]
        return _pack(self._output_struct, outs)


class Head:
    """One model output in training: its loss, loss weight, metrics and running loss."""

    def __init__(self, index, name, out_id, loss, weight, metric_ids, weighted_ids):
        self.index, self.name, self.out_id = index, name, out_id
        self.loss, self.weight = loss, weight
        self.metric_ids = list(metric_ids) + list(weighted_ids)
        # Keras applies sample weights only to `weighted_metrics`; `metrics` are unweighted
        self.metric_weighted = [False] * len(metric_ids) + [True] * len(weighted_ids)
        self.metrics = None     # resolved on the first batch, when y shapes are known (as Keras)
        self.fused, self.layer = False, None
        self.loss_sum, self.loss_count, self.last_loss = 0.0, 0, 0.0
        self.mask = None        # the output's mask in the last batch (fastnn.models.masking)

    def resolve_metrics(self, y, y_pred):
        from fastnn import metrics as metrics_module
        self.metrics = [metrics_module.resolve(m, y, y_pred, self.loss) for m in self.metric_ids]


def _flat_ids(value):
    """A metric argument as a flat list (None -> [], one -> [one], dict -> its values)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [m for v in value.values() for m in _flat_ids(v)]
    if isinstance(value, (list, tuple)):
        return [m for v in value for m in _flat_ids(v)]
    return [value]


def _check_metric_id(m):
    from fastnn import metrics as metrics_module
    if isinstance(m, str) and m not in ("accuracy", "acc", "crossentropy", "ce"):
        try:
            metrics_module.get(m)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compile: unknown metric {m!r}: {e}") from None


def _get_loss(identifier):
    from fastnn import losses
    try:
        loss = losses.get(identifier)
    except (ValueError, TypeError) as e:
        raise ValueError(f"compile: could not interpret loss={identifier!r}: {e}") from None
    if loss is None:
        raise ValueError(f"compile: could not interpret loss={identifier!r}.")
    return loss
