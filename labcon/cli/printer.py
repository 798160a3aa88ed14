"""The headless printer: a session's messages as plain lines on a terminal or log (`labcon run`, `serve`)."""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, TextIO


class HeadlessPrinter:
    """Prints a session's messages as plain lines (a reader of the message stream, like any front end)."""

    def __init__(self, session: Any, out: TextIO = sys.stdout, every: float = 10.0):
        self.sub, self.out, self.every = session.subscribe(), out, every
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, name="labcon-printer", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _loop(self) -> None:
        from labcon.session import messages as M
        from labcon.session.describe import describe, describe_progress

        losses_seen = False
        while not self._stop.is_set():
            m = self.sub.get(timeout=0.2)
            if m is None:
                continue
            if isinstance(m, M.BatchStats) and m.losses:
                losses_seen = True
            if isinstance(m, M.Progress):  # one line every `every` seconds
                now = time.monotonic()
                if now - self._last < self.every or m.phase != "train":
                    continue
                self._last = now
                # The recorder copies losses to the host in batches: until the first copy there is no loss to
                # show (a nan there would read as a diverged run).
                self._line(describe_progress(m, show_loss=losses_seen or math.isfinite(m.smooth_loss)))
                continue
            if isinstance(m, M.StateChanged) and m.state != "paused":
                continue  # the rest follow from the fit's own lines
            text = describe(m)
            if text is not None:
                self._line(text + (" (send 'resume' to continue)" if isinstance(m, M.StateChanged) else ""))

    def _line(self, text: str) -> None:
        from labcon.progress import visible

        self.out.write(visible(text) + "\n")
        self.out.flush()

    def close(self) -> None:
        """Print what is still queued, then stop."""
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(timeout=2)
        self.sub.close()
