"""Clocks for the profiler (host wall clock, CUDA events) and the input-bound meter every Runner keeps."""

from __future__ import annotations

import time
from typing import Any

import torch


class WallClock:
    """Host time: `mark()` is perf_counter; for CPU work, where the host waits for every op."""

    name = "wall"

    def mark(self) -> Any:
        """A point in time."""
        return time.perf_counter()

    def resolve(self) -> None:
        """Make every mark so far readable (nothing to wait for on the host)."""

    def seconds(self, a: Any, b: Any) -> float:
        """Seconds from mark a to mark b."""
        return b - a


class CudaClock:
    """GPU time: each mark records a CUDA event on the current stream, so asynchronous kernels are timed where
    they run, not where they were launched; `resolve()` waits for the last mark (once per profiled batch)."""

    name = "cuda"

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self._last: Any = None

    def mark(self) -> Any:
        """Record an event on the current stream."""
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        self._last = ev
        return ev

    def resolve(self) -> None:
        """Wait until the last recorded event has happened."""
        if self._last is not None:
            self._last.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        """Seconds between two recorded events (after `resolve()`)."""
        return a.elapsed_time(b) / 1e3


def clock_for(device: torch.device) -> WallClock | CudaClock:
    """CUDA events on a CUDA device, else the host clock."""
    return CudaClock(device) if device.type == "cuda" else WallClock()


class InputMeter:
    """Share of recent training time spent waiting for the data loader, over windows of `window` batches.

    The Runner feeds it two host-clock readings it takes anyway per batch (time in `next(loader)`, time in the
    batch), so it costs a few float additions per batch. `share` is None until the first window closes.
    """

    __slots__ = ("window", "share", "_wait", "_busy", "_n")

    # At or above this share of the step spent waiting for data, the run is input-bound.
    INPUT_BOUND = 0.3

    def __init__(self, window: int = 20):
        self.window = window
        self.share: float | None = None
        self._wait = self._busy = 0.0
        self._n = 0

    def add(self, wait: float, busy: float) -> None:
        """One training batch: seconds waiting for it, seconds processing it."""
        self._wait += wait
        self._busy += busy
        self._n += 1
        if self._n >= self.window:
            total = self._wait + self._busy
            self.share = self._wait / total if total > 0 else 0.0
            self._wait = self._busy = 0.0
            self._n = 0

    @property
    def bound(self) -> str | None:
        """'input' (the loader holds the step back), 'compute', or None before the first window."""
        if self.share is None:
            return None
        return "input" if self.share >= self.INPUT_BOUND else "compute"
