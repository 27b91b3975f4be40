"""Keras-style progress bar (keras:utils/progbar.py format, KERAS-NUMERICS 2.12).

verbose=1 on a terminal redraws one line with `\\b`/`\\r`; when stdout is not a TTY the bar
prints clean lines only (no control characters): the final line of each epoch. verbose=2
prints one line per epoch: `{cur}/{total} - {N}s - {t}/step - name: value ...`.
"""
from __future__ import annotations

import math
import sys
import time


def format_value(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return f" {v}"
    return f" {v:.4f}" if abs(v) > 1e-3 else f" {v:.4e}"


def format_time(time_per_unit: float, unit_name: str = "step") -> str:
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1e6:.0f}us/{unit_name}"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progbar:
    """Displays a progress bar over `target` steps; values are shown as given (already means)."""

    def __init__(self, target, width=20, verbose=1, interval=0.05, unit_name="step", stream=None):
        self.target, self.width, self.verbose = target, width, verbose
        self.interval, self.unit_name = interval, unit_name
        self.stream = stream
        self._dynamic = _is_tty(self._out()) or "ipykernel" in sys.modules
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0
        self._values = {}

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def _step_time(self, current, now):
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            t = (now - self._time_after_first_step) / (current - 1)
        else:
            t = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return t

    def update(self, current, values=None, finalize=None):
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in (values or []):
            self._values[k] = v
        now = time.time()
        per_step = self._step_time(current, now)
        out = self._out()
        if self.verbose == 1:
            if not finalize and (not self._dynamic or now - self._last_update < self.interval):
                return
            if self.target:
                digits = int(math.log10(self.target)) + 1
                count = f"%{digits}d/%d" % (current, self.target)
                done = int(self.width * current / self.target)
                if self._dynamic:
                    bar = f"\x1b[1m{count}\x1b[0m "
                    special = 8
                    if done > 0:
                        bar += f"\x1b[32m{'━' * done}\x1b[0m"
                        special += 9
                    bar += f"\x1b[37m{'━' * (self.width - done)}\x1b[0m"
                    special += 9
                else:
                    bar, special = f"{count} {'━' * done}{'─' * (self.width - done)}", 0
            else:
                bar, special = "%7d/Unknown" % current, 0
            if self.target and not finalize:
                eta = per_step * (self.target - current)
                if eta > 3600:
                    t = "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
                elif eta > 60:
                    t = "%d:%02d" % (eta // 60, eta % 60)
                else:
                    t = "%ds" % eta
            else:
                t = f"{now - self._start:.0f}s"
            if self._dynamic:
                info = f" \x1b[1m{t}\x1b[0m"
                special += 8
            else:
                info = f" {t}"
            info += format_time(per_step, self.unit_name)
            for k, v in self._values.items():
                info += f" - {k}:{format_value(v)}"
            if self._dynamic:
                width = len(bar) + len(info) - special
                msg = "\b" * self._prev_total_width + "\r" + bar + info
                if self._prev_total_width > width:
                    msg += " " * (self._prev_total_width - width)
                self._prev_total_width = width
                if finalize:
                    msg += "\n"
            else:
                msg = bar + info + "\n"
            out.write(msg)
            out.flush()
        elif self.verbose == 2 and finalize and self.target:
            digits = int(math.log10(self.target)) + 1
            info = f"%{digits}d/%d - {now - self._start:.0f}s -" % (current, self.target)
            info += format_time(per_step, self.unit_name)
            for k, v in self._values.items():
                info += f" - {k}:{format_value(v)}"
            out.write(info + "\n")
            out.flush()
        self._last_update = now

    def add(self, n, values=None):
        raise NotImplementedError
