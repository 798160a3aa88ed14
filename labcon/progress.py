"""Progress reporting for plain Runner use: a live bar on a terminal, plain lines in logs and under nohup."""

from __future__ import annotations

import sys
import time
import unicodedata
from typing import TextIO

from labcon.core.events import Callback
from labcon.fmt import format_row

__all__ = ["ProgressReporter", "format_row", "visible"]


def visible(text: str) -> str:
    """`text` safe to echo to a terminal: control and format characters (ESC, CR, bidi overrides...) shown as
    escapes like \\x1b, so text from a client or a journal can never drive the user's terminal. Newlines and
    tabs are kept."""
    if text.isprintable():
        return text  # the common case, cheap
    out = []
    for ch in text:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


class ProgressReporter(Callback):
    """Writes progress to a stream: a carriage-return bar on a TTY, one plain line per `every` batches otherwise."""

    order = 70
    run_in_probe = False

    def __init__(self, out: TextIO | None = None, every: int = 50, tty: bool | None = None):
        self.out = out or sys.stdout
        self.every = every
        self.tty = self.out.isatty() if tty is None else tty

    def before_fit(self) -> None:
        r = self.runner
        self._t0 = time.perf_counter()
        self._write_line(f"fit {r.n_epochs} epoch(s) from epoch {r.epoch} on {r.device}")

    def before_epoch(self) -> None:
        self._te = time.perf_counter()

    def after_batch(self) -> None:
        r = self.runner
        if not r.training:
            return
        i, n = r.iter + 1, r.n_iter
        rec = r.recorder
        loss = rec.smooth_losses[-1] if rec.smooth_losses else float("nan")
        if self.tty:
            if i % max(1, n // 100 or 1) == 0 or i == n:
                eta = (time.perf_counter() - self._te) / i * (n - i)
                width = 30
                done = int(width * i / max(1, n))
                bar = "#" * done + "." * (width - done)
                self.out.write(f"\repoch {r.epoch} [{bar}] {i}/{n} loss {loss:.4f} eta {eta:.0f}s ")
                self.out.flush()
        elif i % self.every == 0 or i == n:
            eta = (time.perf_counter() - self._te) / i * (n - i)
            self._write_line(f"epoch {r.epoch} batch {i}/{n} loss {loss:.4f} eta {eta:.0f}s")

    def after_epoch(self) -> None:
        row = self.runner.recorder.last_row
        if self.tty:
            self.out.write("\r" + " " * 79 + "\r")
        if row is not None:
            self._write_line(format_row(row))

    def after_cancel_fit(self) -> None:
        if self.tty:
            self.out.write("\n")

    def after_fit(self) -> None:
        self._write_line(f"fit finished in {time.perf_counter() - self._t0:.1f}s")

    def _write_line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
