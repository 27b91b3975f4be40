"""Shared buffers for a model's tensors, planned from the graph's liveness (an inference
engine's memory plan, made online).

Without a plan every layer keeps its own output and gradient buffers (`Layer._buffer`), so a
model holds every tensor of a pass at once: ResNet50's layer outputs alone are 142 MB per
image. A tensor is needed only from the step that writes it to the last step that reads it;
tensors whose lifetimes do not overlap can share memory. One `Plan` per (model, pass kind,
input shapes) does that:

- The first pass is the recording: each `Layer._buffer` request goes to the plan (the layer's
  `_plan`), which hands out a block: the lowest free range of a segment that fits it (first
  fit; a segment is 1 GiB of address space whose pages the system maps when they are first
  written, so RSS follows the highest offset used). After each step the plan looks at what the
  step produced: a block that holds a
  step's output (a forward tensor, or a gradient returned by a backward) lives until the last
  step that reads that tensor (known from the graph), a model output until the pass ends; in
  training also until the backward of every layer that keeps a reference into it (a layer
  keeps what its backward reads: the conv's input, the norm's input, ...). A block that holds
  no tensor (a layer's scratch or its forward state: argmax, masks, statistics) is pinned to
  that request for good, as the layer's own buffer was. Blocks whose lifetime has ended go
  back to the free ranges (joined with their free neighbours) before the next step. Online
  first fit suits the passes' shapes: on ResNet50 training it touches 1.003x the peak of live
  tensors, on MobileNetV2 inference 1.10x (the planned pass has to make its layout while it
  runs: a layout made after the pass would come after the peak RSS it is meant to cut).
- Every later pass of the same kind and shapes replays the recording: each layer gets the same
  views for the same requests (a dict per layer), so a steady-state step allocates nothing and
  runs the same float operations on the same values: results are bit-identical to unplanned
  passes (tests/models/test_memplan.py).

Passes that are planned: inference in predict, predict_on_batch, evaluate and `model(x)`
(training=False), and the training step (forward, loss, backward). The public
`Graph.forward` / `backward`, `model.profile` and masked graphs run on the layers' own buffers.
`ENABLED = False` (or FASTNN_MEMORY_PLAN=0 in the environment) turns planning off.

The contract this needs from a layer: its backward reads forward state through its own
attributes (what `forward` kept), never by requesting a forward buffer again; a request of a
tensor buffer after its lifetime ended is a RuntimeError naming the layer and key.
"""
from __future__ import annotations

import bisect
import os
import types
from collections import OrderedDict

import numpy as np

ENABLED = os.environ.get("FASTNN_MEMORY_PLAN", "1").strip().lower() not in ("0", "false", "off", "no")

END = 1 << 60          # "lives until the pass ends"
_ALIGN = 64            # every view starts on a cache line (as Layer._buffer's arrays)
_SEGMENT = 1 << 30     # address space reserved at a time: pages count (RSS) only once written
_SMALL = 1 << 16       # requests below 64 KiB (per-channel statistics, scales, small tensors) have
_SMALL_SEGMENT = 1 << 22   # segments of their own: pinned among the tensors they would split
                           # the free ranges that large tensors could join
_PLANS_KEPT = 2        # plans per pass kind: the full batch and the last partial batch


# what a layer's attributes hold that is not forward state (its own buffers, weights, graph links)
_NOT_STATE = frozenset(("_bufs", "_plan", "_variables", "_calls", "_primary", "_memory_plans", "_vals",
                        "_gvals", "_acc", "_nodes"))
_LEAVES = (str, bytes, int, float, complex, bool, type(None), np.generic, np.dtype, type,
           types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def enabled() -> bool:
    return ENABLED


class _Segment:
    """One reserved range of memory and its free ranges [(offset, size)], sorted, coalesced.
    The memory comes from np.empty: the system maps its pages when they are first written, so
    RSS grows with the highest offset used (first fit keeps that low), not with the size."""

    def __init__(self, nbytes, small=False):
        from fastnn.kernels._checks import empty_aligned
        self.mem = empty_aligned((nbytes,), np.uint8)
        self.size, self.small = nbytes, small
        self.addr = self.mem.__array_interface__["data"][0]
        self.free = [(0, nbytes)]
        self.high = 0              # the highest offset ever handed out (what the plan touches)

    def alloc(self, n):
        for j, (off, size) in enumerate(self.free):
            if size >= n:
                if size == n:
                    del self.free[j]
                else:
                    self.free[j] = (off + n, size - n)
                self.high = max(self.high, off + n)
                return off
        return None

    def alloc_at(self, off, n):
        """Take [off, off + n) again if it is still free (a tensor read again); else False."""
        for j, (o, size) in enumerate(self.free):
            if o <= off and off + n <= o + size:
                parts = [(o, off - o), (off + n, o + size - off - n)]
                self.free[j:j + 1] = [p for p in parts if p[1] > 0]
                return True
        return False

    def release(self, off, n):
        j = bisect.bisect(self.free, (off, 0))
        self.free.insert(j, (off, n))
        if j + 1 < len(self.free) and off + n == self.free[j + 1][0]:      # join the next
            self.free[j] = (off, n + self.free.pop(j + 1)[1])
        if j > 0 and self.free[j - 1][0] + self.free[j - 1][1] == off:      # join the previous
            o, size = self.free.pop(j - 1)
            self.free[j - 1] = (o, size + self.free[j - 1][1])


class _Block:
    """One request's range of a segment while it is handed out."""

    __slots__ = ("seg", "off", "nbytes", "addr", "busy", "pinned", "last", "record")

    def __init__(self, seg, off, nbytes):
        self.seg, self.off, self.nbytes = seg, off, nbytes
        self.addr = seg.addr + off
        self.busy, self.pinned, self.last, self.record = True, False, -1, None


class _LayerPlan:
    """What one layer (or the model's own gradient sums) sees as `_plan` during a pass."""

    __slots__ = ("plan", "owner", "views")

    def __init__(self, plan, owner):
        self.plan, self.owner, self.views = plan, owner, {}

    def take(self, key, shape, dtype):
        """A view for this request, or None (the caller then uses a buffer of its own)."""
        shape = tuple(shape)
        if self.plan.recording:
            return self.plan._take(self, key, shape, dtype)
        buf = self.views.get((key, shape))
        if buf is not None and buf.dtype == dtype:
            return buf
        return None


class Plan:
    """The shared buffers of one kind of pass ("infer" or "train") at one set of input shapes.

    `records` lists every planned request, a dict with the owner's name, the key, the view, the
    first and last step it lives (END: to the end of the pass) and whether it is pinned;
    `nbytes` is the memory the plan touches, `requested` the bytes of the requests (what they
    held as buffers of their own)."""

    def __init__(self, graph, kind):
        self.graph, self.kind = graph, kind
        self.recorded = False
        self.recording = False
        self.segments: list[_Segment] = []
        self._addrs: list[int] = []       # start addresses of the blocks handed out, sorted
        self._live: list[_Block] = []     # those blocks, in the same order
        self.records: list[dict] = []
        self._layer_plans: dict = {}
        self.requested = 0

    # ---- the pass ------------------------------------------------------------------------
    def layer_plan(self, owner):
        lp = self._layer_plans.get(id(owner))
        if lp is None:
            lp = self._layer_plans[id(owner)] = _LayerPlan(self, owner)
        return lp

    def begin(self):
        """Install the plan on the graph's layers for one pass (recording the first time)."""
        g = self.graph
        if not self.recorded:
            self._start_recording()
        for layer, _, _ in g._nodes:
            layer._plan = self.layer_plan(layer)
        g._acc_plan = self.layer_plan(g)
        g._step_hook = self if self.recording else None

    def end(self, ok=True):
        g = self.graph
        for layer, _, _ in g._nodes:
            layer._plan = None
        g._acc_plan = None
        g._step_hook = None
        if self.recording:
            self.recording = False
            if not ok:     # a failed recording is not replayed
                return False
            for rec in self.records:
                if rec["last"] is None:
                    rec["last"] = END
            self.recorded = True
        return True

    # ---- recording -------------------------------------------------------------------------
    def _start_recording(self):
        g = self.graph
        self.recording = True
        self._step = 0
        self._handed = {}          # (id(owner), key, shape) -> (view, block, record)
        self._new = []             # blocks handed out in the current step
        self._released = []        # blocks released so far, latest first
        nodes = g._nodes
        producer = {}
        for k, (_, _, out) in enumerate(nodes):
            for o in (out if isinstance(out, tuple) else (out,)):
                producer[o] = k
        live_to_end = set(g._output_ids)
        for layer, _, out in nodes:
            if layer.activity_regularizer is not None:
                live_to_end.update(out if isinstance(out, tuple) else (out,))
        # the forward steps in the order the pass runs them, and what each reads
        if self.kind == "infer" and g._chains:
            from fastnn.models.fusion import _skipped
            skip = _skipped(g._chains)
            steps = []
            for k, (layer, ins, out) in enumerate(nodes):
                if k in skip:
                    continue
                chain = g._chains.get(k)
                reads = list(ins) if chain is None or chain[4] is None else [ins[0], chain[4]]
                steps.append((k, reads))
        else:
            steps = [(k, list(ins)) for k, (_, ins, _) in enumerate(nodes)]
        last_read = {}
        for s, (_, reads) in enumerate(steps):
            for t in reads:
                last_read[t] = s
        self._last_read, self._live_to_end = last_read, live_to_end
        n_fwd, n = len(steps), len(nodes)
        self._n_fwd = n_fwd
        # training: node k's backward is step n_fwd + (n - 1 - k); a gradient w.r.t. tensor t
        # is read by the backward of the node that produced t
        self._bwd_step = {id(layer): n_fwd + (n - 1 - k) for k, (layer, _, _) in enumerate(nodes)}
        self._grad_reader = {t: n_fwd + (n - 1 - k) for t, k in producer.items()}

    def _take(self, lp, key, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes == 0:
            return None
        hk = (id(lp.owner), key, shape)
        got = self._handed.get(hk)
        if got is not None:       # the same request again in this pass: the same view
            view, block, rec = got
            if view.dtype != dtype:
                return None
            if not block.busy and not self._revive(block):
                name = getattr(lp.owner, "name", type(lp.owner).__name__)
                raise RuntimeError(
                    f"memory plan: '{name}' requested its buffer {key!r} {shape} again after the tensor it "
                    f"held was last read, and the memory now holds another tensor. A layer's backward must "
                    f"read forward state from its own attributes; set FASTNN_MEMORY_PLAN=0 to run without "
                    f"shared buffers meanwhile.")
            block.last = max(block.last, self._step)
            return view
        size = -(-nbytes // _ALIGN) * _ALIGN
        small = size < _SMALL
        for seg in self.segments:      # first fit, lowest segment and offset first
            if seg.small == small:
                off = seg.alloc(size)
                if off is not None:
                    break
        else:
            seg = _Segment(max(size, _SMALL_SEGMENT if small else _SEGMENT), small)
            self.segments.append(seg)
            off = seg.alloc(size)
        block = _Block(seg, off, size)
        view = seg.mem[off:off + nbytes].view(dtype).reshape(shape)
        rec = {"owner": getattr(lp.owner, "name", type(lp.owner).__name__), "key": key, "view": view,
               "first": self._step, "last": None, "pinned": False}
        block.last, block.record = self._step, rec
        self._insert(block)
        self.records.append(rec)
        self.requested += nbytes
        self._handed[hk] = (view, block, rec)
        self._new.append(block)
        lp.views[(key, shape)] = view
        return view

    def _insert(self, block):
        i = bisect.bisect(self._addrs, block.addr)
        self._addrs.insert(i, block.addr)
        self._live.insert(i, block)

    def _revive(self, block):
        """A released block read again (its tensor passed on, or requested again): take its
        range back if nothing else took it meanwhile."""
        if not block.seg.alloc_at(block.off, block.nbytes):
            return False
        block.busy, block.record["last"] = True, None
        self._insert(block)
        return True

    def _block_of(self, a):
        if not isinstance(a, np.ndarray) or a.size == 0:
            return None
        addr = a.__array_interface__["data"][0]
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i >= 0:
            b = self._live[i]
            if addr < b.addr + b.nbytes:
                return b
        for b in self._released:    # a tensor whose block was released at an earlier step (latest first)
            if b.addr <= addr < b.addr + b.nbytes:
                return b
        return None

    def _holds(self, a, until, homes):
        b = self._block_of(a)
        if b is None or b.pinned:
            return
        if not b.busy and not self._revive(b):
            raise RuntimeError(
                f"memory plan: a tensor of '{b.record['owner']}' ({b.record['key']!r}) is read after its "
                f"memory was given to another tensor; set FASTNN_MEMORY_PLAN=0 to run without shared buffers.")
        b.last = max(b.last, until)
        homes.add(id(b))

    def _retained(self, obj, seen, depth=0):
        """The arrays reachable from `obj`: a layer's attributes, through containers and the
        objects it keeps (a recurrent layer's caches, a wrapper's inner layers)."""
        if isinstance(obj, np.ndarray):
            yield obj
            return
        if depth > 6 or isinstance(obj, _LEAVES) or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple, set, frozenset)):
            for v in obj:
                yield from self._retained(v, seen, depth + 1)
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from self._retained(v, seen, depth + 1)
        else:
            from fastnn.layers.base import Variable
            if isinstance(obj, (Variable, Plan, _LayerPlan)):
                return
            attrs = getattr(obj, "__dict__", None)
            if attrs is not None:
                for k, v in attrs.items():
                    if k not in _NOT_STATE:
                        yield from self._retained(v, seen, depth + 1)
            for k in getattr(type(obj), "__slots__", ()):
                if k not in _NOT_STATE:
                    yield from self._retained(getattr(obj, k, None), seen, depth + 1)

    def _layer_state(self, layer):
        return self._retained(layer, set())

    def forward_step(self, k, layer, out, y, training):
        """After forward step `self._step` (node k, or the chain starting at k) wrote `y` to
        tensor id(s) `out`."""
        homes = set()
        outs = out if isinstance(out, tuple) else (out,)
        ys = y if isinstance(out, tuple) else (y,)
        for o, a in zip(outs, ys):
            until = END if o in self._live_to_end else self._last_read.get(o, self._step)
            self._holds(a, until, homes)
        if training:   # what this layer keeps for its backward lives until then
            for a in self._layer_state(layer):
                self._holds(a, self._bwd_step[id(layer)], homes)
        self._finish_step(homes)

    def backward_step(self, k, layer, grads):
        """After node k's backward: `grads` lists (tensor id, gradient array) as the graph keeps
        them (a branch point's sum included); tensor id None for a gradient read only now (added
        into a branch point's sum)."""
        homes = set()
        for t, d in grads:
            self._holds(d, self._step if t is None else self._grad_reader.get(t, END), homes)
        self._finish_step(homes)

    def _finish_step(self, homes):
        s = self._step
        for b in self._new:
            if id(b) not in homes:        # scratch or forward state: the request keeps it
                b.pinned, b.last = True, END
                b.record["pinned"] = True
        self._new = []
        keep_addrs, keep = [], []
        released = []
        for a, b in zip(self._addrs, self._live):
            if not b.pinned and b.last <= s:
                b.busy = False
                b.record["last"] = b.last
                b.seg.release(b.off, b.nbytes)
                released.append(b)
            else:
                keep_addrs.append(a)
                keep.append(b)
        self._addrs, self._live = keep_addrs, keep
        self._released[:0] = released    # latest first
        self._step = s + 1

    # ---- what it holds -----------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """The memory the plan touches: the highest offset used in each segment."""
        return sum(seg.high for seg in self.segments)


class Plans:
    """A model's plans: per pass kind, the last `_PLANS_KEPT` input shapes."""

    def __init__(self):
        self._plans = {"infer": OrderedDict(), "train": OrderedDict()}

    def get(self, graph, kind, shapes):
        slot = self._plans[kind]
        plan = slot.get(shapes)
        if plan is None:
            plan = slot[shapes] = Plan(graph, kind)
            if len(slot) > _PLANS_KEPT:
                slot.popitem(last=False)
        else:
            slot.move_to_end(shapes)
        return plan

    def all(self):
        return [p for slot in self._plans.values() for p in slot.values()]

    def clear(self):
        for slot in self._plans.values():
            slot.clear()


class planned:
    """Context manager around one pass of `graph`: installs the plan for (kind, shapes of xs),
    or nothing when planning is off or the pass cannot be planned."""

    __slots__ = ("plan",)

    def __init__(self, graph, kind, xs, when=True):
        self.plan = None
        if not when or not ENABLED or not graph.built or graph._timer is not None or graph._masking:
            return
        plans = graph.__dict__.get("_memory_plans")
        if plans is None:
            plans = graph._memory_plans = Plans()
        self.plan = plans.get(graph, kind, tuple(np.shape(x) for x in xs))

    def __enter__(self):
        if self.plan is not None:
            self.plan.begin()
        return self.plan

    def __exit__(self, exc_type, exc, tb):
        if self.plan is not None:
            ok = self.plan.end(ok=exc_type is None)
            if not ok:
                graph = self.plan.graph
                graph._memory_plans.clear()
        return False
