"""One process's replica of a model in a data-parallel job: what the trainer consults.

The trainer (fastnn.models.trainer) holds `model._replica` (None in plain one-process
training) and calls it at a few documented points:

    replica.begin(fn, callbacks)   start of fit / evaluate / predict (and the first *_on_batch):
                                   check that every process built the same model, broadcast
                                   process 0's weights (fit: and optimizer state, and the seed
                                   state behind shuffling and dropout), wire BatchNormalization
                                   layers to the statistics sum and the backward pass to the
                                   gradient buckets; returns the callbacks this process runs
    replica.local_rows(idx, where) this process's rows of one global batch (index array)
    replica.local_slice(sl, where) the same for a slice (evaluate)
    replica.grad_scale             n_local / n_global: the loss gradient is divided by the
                                   global batch size (Keras's sum_over_batch_size)
    replica.reduce_gradients()     between backward and the optimizer step: the summed arena
    replica.global_sum(v)          one number summed over the processes (masked losses count
                                   the unmasked steps of the global batch)
    replica.phantom                True when this process has no row of the batch: it runs the
                                   step on one row for the collectives only, contributes zero
                                   gradients and statistics and does not update the metrics
    replica.summed_logs(model)     a context in which the loss tracker and metric states hold
                                   the sums over the processes (for the logs)
    replica.agree(model)           after the callbacks: process 0's stop_training and
                                   learning rate, on every process
    replica.predict_range(n), replica.gather_rows(local, n)   predict's split and gather
    replica.end()                  unwire

The gradient all-reduce is bucketed over the flat arena (see GradientBuckets): a bucket is a
slice of the arena whose gradients are complete once backward has passed its layers, so its
all-reduce starts while backward continues.
"""
from __future__ import annotations

import contextlib
import copy
import os
import sys
import time

import numpy as np

from fastnn import _random

# Bucketing: a bucket is cut once the arena slice whose gradients are final reaches this many
# bytes (at a layer boundary). FASTNN_DIST_BUCKET_MB=0 turns overlapping off (one all-reduce of
# the whole arena after backward). See docs/distributed.md for the measurement.
ENV_BUCKET = "FASTNN_DIST_BUCKET_MB"
DEFAULT_BUCKET_MB = 1.0


def _bucket_bytes():
    v = os.environ.get(ENV_BUCKET)
    if not v:
        return int(DEFAULT_BUCKET_MB * 2**20)
    try:
        mb = float(v)
    except ValueError:
        raise ValueError(f"{ENV_BUCKET} must be a number of MiB (0 = no overlap); received {v!r}.") from None
    if mb < 0:
        raise ValueError(f"{ENV_BUCKET} must be >= 0 MiB; received {v!r}.")
    return int(mb * 2**20)


def split_counts(n, size):
    """Rows of a batch of n per process: the first n % size processes take one more."""
    base, extra = divmod(n, size)
    return [base + (r < extra) for r in range(size)]


class StatsSync:
    """What a BatchNormalization layer calls to sum its float64 statistics over the processes.

    sum_(buf) sums in place (a phantom process contributes zeros); `root` is True on the one
    process that keeps the layer's gamma/beta gradients (they come from the summed statistics,
    so the same on every process: the others zero theirs before the gradient all-reduce).
    """

    def __init__(self, replica):
        self._replica = replica
        self.root = replica.comm.rank == 0

    def sum_(self, buf):
        t0 = time.perf_counter()
        if self._replica.phantom:
            buf.fill(0.0)
        self._replica.comm.ordered_sum_(buf, "the BatchNormalization statistics")
        self._replica.stats["other"] += time.perf_counter() - t0
        return buf


class GradientBuckets:
    """The gradient all-reduce over the flat arena, in buckets that start during backward.

    After backward has run node k, every arena element from `ready[k]` on is final (nodes run in
    reverse; a variable is final once its first user has run, so shared layers are safe). The
    cut points are fixed once per arena: walking the nodes in reverse, a bucket closes at the
    first node where the final slice not yet sent reaches `bucket_bytes`. bucket_bytes = 0:
    one all-reduce of the whole arena after backward.
    """

    def __init__(self, replica, model, bucket_bytes):
        self.replica = replica
        arena = model._arena
        self.grads = arena.grads
        n = arena.size
        owner = {}
        for k, (layer, _, _) in enumerate(model._nodes):
            for v in layer.trainable_weights:
                owner.setdefault(id(v), k)          # first node that uses the variable
        seg = arena.segments
        first_node = [owner.get(id(v), 0) for v in arena.variables]
        # ready[k]: the smallest offset o with every variable at or after o first used at >= k
        ready = []
        for k in range(len(model._nodes)):
            o = n
            for i in range(len(first_node) - 1, -1, -1):
                if first_node[i] < k:
                    break
                o = int(seg[i])
            ready.append(o)
        self.cuts = {}        # node index -> (lo, hi) of the bucket launched after it
        hi = n
        if bucket_bytes > 0:
            for k in range(len(model._nodes) - 1, 0, -1):
                lo = ready[k]
                if (hi - lo) * 4 >= bucket_bytes and lo < hi:
                    self.cuts[k] = (lo, hi)
                    hi = lo
        self.last = (0, hi)   # what is left after backward
        self.reqs = []
        self.waited = 0.0     # seconds spent waiting for the all-reduce (exposed time)

    def node_done(self, k):
        cut = self.cuts.get(k)
        if cut is not None:
            self._launch(*cut)
        elif self.reqs:
            self.replica.comm.MPI.Request.Testall(self.reqs)    # drive progress

    def _launch(self, lo, hi):
        g = self.grads[lo:hi]
        if self.replica.phantom:
            g.fill(0.0)
        self.reqs.append(self.replica.comm.iallreduce_(g))

    def finish(self):
        t0 = time.perf_counter()
        lo, hi = self.last
        if hi > lo:
            self._launch(lo, hi)
        self.replica.comm.wait(self.reqs, "the gradient all-reduce")
        self.reqs = []
        self.waited += time.perf_counter() - t0


class Replica:
    """This process's part in a data-parallel job for one model (see the module docstring)."""

    def __init__(self, comm, model):
        self.comm = comm
        self.model = model
        self.phantom = False
        self.grad_scale = 1.0
        self.rows = 0             # rows of the current global batch
        self._synced_arena = None
        self._buckets = None
        self._stats = StatsSync(self)
        # seconds spent in collectives: the gradient all-reduce's exposed wait, and the others
        # (BatchNormalization statistics, metric sums, decisions)
        self.stats = {"grad_wait": 0.0, "other": 0.0, "steps": 0}

    # ------------------------------------------------------------------ start and end
    def begin(self, fn, callbacks=None, train=False, once=False):
        """Check the models, broadcast process 0's state, wire the layers; returns the callbacks
        this process runs (the writers and the progress bar only on process 0)."""
        model = self.model
        self.comm.busy = fn
        key = (id(model._arena), train)
        if not (once and self._synced_arena == key):
            self._check_same_model(fn, train)
            self._broadcast_state(train)
            self._synced_arena = key
        if train:
            self._wire(model)
        if callbacks is None:
            return None
        if self.comm.rank == 0:
            return list(callbacks)
        return [c for c in callbacks if not getattr(c, "_process_zero_only", False)]

    def _wire(self, model):
        for layer in model.layers:
            if hasattr(layer, "_sync_stats"):
                layer._sync_stats = self._stats
        if self._buckets is None or self._buckets.grads is not model._arena.grads:
            self._buckets = GradientBuckets(self, model, _bucket_bytes())
        model._grad_ready = self._buckets.node_done

    def end(self):
        model = self.model
        for layer in model.layers:
            if hasattr(layer, "_sync_stats"):
                layer._sync_stats = None
        model._grad_ready = None
        model._activity_rows = None
        self.phantom = False
        _random.set_batch_row_offset(0)
        if sys.exc_info()[0] is None:
            # ended normally; with an exception on its way (sys.exit in a callback, a bug) the
            # call stays marked, so exiting the script stops the job instead of leaving the
            # other processes waiting in their next collective
            self.comm.where = ""
            self.comm.busy = ""

    # ------------------------------------------------------------------ same model everywhere
    def _signature(self, train):
        model = self.model
        layers = [(layer.name, type(layer).__name__,
                   [(getattr(v, "path", None) or getattr(v, "name", "?"), tuple(v.shape)) for v in layer.weights])
                  for layer in model.layers]
        sig = {"layers": layers}
        if train and model._arena is not None:
            sig["arena"] = model._arena.size
            opt = model.optimizer
            sig["optimizer"] = (type(opt).__name__, [np.shape(a) for a in opt.variables()])
        return sig

    def _check_same_model(self, fn, train):
        sigs = self.comm.allgather(self._signature(train), "the model check at the start of " + fn)
        ref = sigs[0]
        for r, sig in enumerate(sigs[1:], 1):
            diff = _difference(ref, sig)
            if diff:
                raise ValueError(f"{fn}: the processes built different models, so they cannot train "
                                 f"together: process {r} differs from process 0: {diff}. Build the same "
                                 f"model (same layers, names and shapes) on every process.")

    # ------------------------------------------------------------------ state from process 0
    def _broadcast_state(self, train):
        model = self.model
        c = self.comm
        what = "the broadcast of process 0's weights"
        arena = model._arena
        done = set()
        if arena is not None:
            c.bcast_(arena.params, 0, what)
            done = {id(v) for v in arena.variables}
        for v in model.weights:
            if id(v) not in done:
                c.bcast_(v.value, 0, what)
        if not train:
            return
        opt = model.optimizer
        vals = opt.variables()
        out = []
        for a in vals:
            a = np.array(a) if a.ndim == 0 else a
            c.bcast_(a, 0, "the broadcast of process 0's optimizer state")
            out.append(a)
        opt.set_variables(out)
        # the seed state behind shuffling, dropout masks and initializers: process 0's
        _random._state["seq"] = c.bcast(_random._state["seq"], 0, "the broadcast of the seed state")

    # ------------------------------------------------------------------ one batch
    def local_rows(self, idx, where=""):
        """This process's rows of the global batch `idx` (an index array)."""
        lo, hi = self._range(len(idx), where)
        return idx[lo:hi] if hi > lo else idx[:1]

    def local_slice(self, sl, where=""):
        """This process's part of the global batch rows `sl` (a slice with a stop)."""
        start, stop = sl.start or 0, sl.stop
        lo, hi = self._range(stop - start, where)
        return slice(start + lo, start + hi) if hi > lo else slice(start, start + 1)

    def _range(self, n, where):
        counts = split_counts(n, self.comm.size)
        r = self.comm.rank
        lo = sum(counts[:r])
        hi = lo + counts[r]
        self.rows = n
        self.phantom = hi == lo
        self.grad_scale = 0.0 if self.phantom else (hi - lo) / n
        self.model._activity_rows = n
        _random.set_batch_row_offset(lo)
        self.comm.where = where
        return lo, hi

    def reduce_gradients(self):
        """Sum the gradient arena over the processes (wait for the buckets and the rest)."""
        b = self._buckets
        if b is None:
            raise RuntimeError("reduce_gradients: the replica was not started for training (begin(train=True)).")
        b.finish()
        self.stats["grad_wait"] = b.waited
        self.stats["steps"] += 1

    def global_sum(self, value, what="a sum"):
        """The sum of one number over the processes (float64, in process order: the same bits on
        every process). Used by output masks (fastnn.models.masking): the unmasked steps of the
        global batch."""
        t0 = time.perf_counter()
        buf = np.array([value], np.float64)
        self.comm.ordered_sum_(buf, what)
        self.stats["other"] += time.perf_counter() - t0
        return float(buf[0])

    # ------------------------------------------------------------------ logs and decisions
    @contextlib.contextmanager
    def summed_logs(self, model):
        """Within: model._loss_sum/_loss_count and the metric states are sums over processes."""
        t0 = time.perf_counter()
        metrics = model._metrics or []
        heads = model._heads or []
        names = [_state_names(m) for m in metrics]
        mine = [model._loss_sum, model._loss_count, [{k: getattr(m, k) for k in ns} for m, ns in zip(metrics, names)],
                [(h.loss_sum, h.loss_count) for h in heads]]      # each output's own loss
        everyone = self.comm.allgather(mine, "the sum of the metrics")
        saved = [dict(s) for s in mine[2]]
        model._loss_sum = float(sum(e[0] for e in everyone))
        model._loss_count = sum(e[1] for e in everyone)
        for i, m in enumerate(metrics):
            for k in names[i]:
                setattr(m, k, _sum_states([e[2][i][k] if i < len(e[2]) else None for e in everyone]))
        for j, h in enumerate(heads):
            h.loss_sum = float(sum(e[3][j][0] for e in everyone))
            h.loss_count = sum(e[3][j][1] for e in everyone)
        self.stats["other"] += time.perf_counter() - t0
        try:
            yield
        finally:
            model._loss_sum, model._loss_count = mine[0], mine[1]
            for m, s in zip(metrics, saved):
                for k, v in s.items():
                    setattr(m, k, v)
            for h, (ls, lc) in zip(heads, mine[3]):
                h.loss_sum, h.loss_count = ls, lc

    def agree(self, model, lr=False):
        """Process 0's stop_training (and learning rate, at an epoch end), on every process."""
        t0 = time.perf_counter()
        opt = model.optimizer
        mine = [bool(getattr(model, "stop_training", False))]
        if lr:
            mine.append(opt._learning_rate if isinstance(opt._learning_rate, float) else None)
        theirs = self.comm.bcast(mine, 0, "the agreement on stopping")
        model.stop_training = theirs[0]
        if lr and theirs[1] is not None and isinstance(opt._learning_rate, float):
            opt._learning_rate = theirs[1]
        self.stats["other"] += time.perf_counter() - t0

    def comm_time(self):
        """Seconds spent so far in the collectives other than the gradient all-reduce."""
        return self.stats["other"]

    # ------------------------------------------------------------------ predict
    def predict_range(self, n):
        counts = split_counts(n, self.comm.size)
        lo = sum(counts[:self.comm.rank])
        return lo, lo + counts[self.comm.rank]

    def gather_rows(self, local, n):
        """The (n, ...) array of every process's rows (`local`, None for no rows), in order."""
        c = self.comm
        counts = split_counts(n, c.size)
        shapes = c.allgather(None if local is None else local.shape[1:], "the gather of predictions")
        row = next(s for s in shapes if s is not None)
        per = int(np.prod(row)) if row else 1
        out = np.empty((n, *row), np.float32)
        send = np.ascontiguousarray(local, np.float32).reshape(-1) if local is not None else np.empty(0, np.float32)
        c.allgatherv_(send, out.reshape(-1), [k * per for k in counts], "the gather of predictions")
        return out


# ---------------------------------------------------------------------------- helpers
def _difference(a, b):
    """The first difference between two model signatures, in words ('' if none)."""
    la, lb = a["layers"], b["layers"]
    if len(la) != len(lb):
        return f"{len(lb)} layers instead of {len(la)} ({[x[0] for x in lb]} vs {[x[0] for x in la]})"
    for i, (x, y) in enumerate(zip(la, lb)):
        if x[0] != y[0] or x[1] != y[1]:
            return f"layer {i} is '{y[0]}' ({y[1]}) instead of '{x[0]}' ({x[1]})"
        if x[2] != y[2]:
            for (pa, sa), (pb, sb) in zip(x[2], y[2]):
                if pa != pb or sa != sb:
                    return f"layer '{x[0]}' has weight {pb} of shape {sb} instead of {pa} of shape {sa}"
            return f"layer '{x[0]}' has {len(y[2])} weights instead of {len(x[2])}"
    if a.get("arena") != b.get("arena"):
        return f"its trainable arena holds {b.get('arena')} values instead of {a.get('arena')}"
    if a.get("optimizer") != b.get("optimizer"):
        return f"its optimizer is {b.get('optimizer')} instead of {a.get('optimizer')}"
    return ""


_STATE_NAMES = {}


def _state_names(metric):
    """The attributes of `metric` that accumulate (0, zeros or None right after reset_state):
    the state that is summed over the processes."""
    key = id(metric)
    hit = _STATE_NAMES.get(key)
    if hit is not None and hit[0] is metric:
        return hit[1]
    probe = copy.deepcopy(metric)
    probe.reset_state()
    names = []
    for k, v in vars(probe).items():
        if k.startswith("__"):
            continue
        if v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v == 0) or \
                (isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and not v.any()):
            names.append(k)
    _STATE_NAMES[key] = (metric, names)
    return names


def _sum_states(values):
    """Sum one state over the processes in process order (None = nothing accumulated yet)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    total = copy.copy(present[0])
    if isinstance(total, np.ndarray):
        total = total.copy()
    for v in present[1:]:
        total = total + v
    return total
