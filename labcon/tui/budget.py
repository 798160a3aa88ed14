"""The console's own cost while training shares its process: an adaptive update rate and a GC policy."""

from __future__ import annotations

import gc
import time

# At most this many UI updates per second, however fast the session publishes.
MAX_UPDATES_PER_S = 5.0
# Fewest updates per second the throttle goes down to.
MIN_UPDATES_PER_S = 1.0
# The console's own share of one core that the throttle aims for while training runs in this process:
# rendering shares the GIL and the cores with the trainer (5 % of a core cost ~10 % of the steps on 2 cores).
UI_CPU_SHARE = 0.025
# Collector thresholds while the console runs (Python's default is 700, 10, 10).
GC_THRESHOLDS = (10_000, 10, 10)


class Throttle:
    """The console's update rate, adapted to what rendering costs on this machine.

    `observe` is fed the UI thread's CPU time over a window; above `cpu_share` of a core the rate drops in
    proportion (down to `min_rate`), well below it the rate climbs back to `max_rate`. `slowdown` (>= 1)
    stretches other periodic work (plots) the same way.
    """

    def __init__(
        self,
        max_rate: float = MAX_UPDATES_PER_S,
        min_rate: float = MIN_UPDATES_PER_S,
        cpu_share: float = UI_CPU_SHARE,
    ) -> None:
        self.max_rate, self.min_rate, self.cpu_share = max_rate, min(min_rate, max_rate), cpu_share
        self.rate = max_rate

    @property
    def interval(self) -> float:
        """Seconds between updates now."""
        return 1.0 / self.rate

    @property
    def slowdown(self) -> float:
        """How much slower than the full rate the console runs now."""
        return self.max_rate / self.rate

    def observe(self, cpu_s: float, wall_s: float) -> None:
        """Adapt to the UI thread having used `cpu_s` seconds of CPU in the last `wall_s` seconds."""
        if wall_s <= 0:
            return
        share = cpu_s / wall_s
        if share > self.cpu_share:
            # At most halve per window: one costly moment (start-up, a pane switch) is not the steady state.
            self.rate = max(self.min_rate, self.rate * max(0.5, self.cpu_share / share))
        elif share < self.cpu_share / 2:
            self.rate = min(self.max_rate, self.rate * 1.5)


class UiBudget:
    """Feeds a Throttle the UI thread's CPU time and owns the collector settings while the console runs.

    Call every method from the UI thread: `time.thread_time()` then measures the console, not the trainer.
    """

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle
        self._mark = (time.thread_time(), time.monotonic())
        self._gc_saved: tuple[int, int, int] | None = None

    def check(self) -> None:
        """Tell the throttle what the UI thread used since the last check."""
        cpu, now = time.thread_time(), time.monotonic()
        self.throttle.observe(cpu - self._mark[0], now - self._mark[1])
        self._mark = (cpu, now)

    def freeze_gc(self) -> None:
        """After start-up: collect once, freeze what exists, collect the young generation less often.

        Rendering allocates containers by the thousand; with torch loaded every full collection scanned ~400k
        objects (~250 ms with the GIL held: the trainer stalled too), about twelve times in 8 s of training.
        Frozen objects are never scanned again; the same 8 s then saw one full collection.
        """
        if self._gc_saved is None:
            self._gc_saved = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)

    def restore_gc(self) -> None:
        """Put the collector back as it was (the app is going)."""
        if self._gc_saved is not None:
            gc.set_threshold(*self._gc_saved)
            gc.unfreeze()
            self._gc_saved = None
