"""One-line status: session, state, epoch / batch position, learning rate, input- or compute-bound, run, device."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from labcon.session.messages import LIVE_STATES, Progress
from labcon.tui.fmt import fmt_num
from labcon.tui.position import FitPosition

_STATE_STYLE = {
    "running": "bold green",
    "paused": "bold yellow",
    "stopping": "bold red",
    "idle": "dim",
    "lost": "bold white on red",
}


def bound_text(status: dict[str, Any]) -> tuple[str, str] | None:
    """(words, style) for whether a live run waits for its data loader: the status's `bound` and `input_share`
    (the Runner's own two clock readings per batch, nothing measured here); None before its first reading."""
    bound, share = status.get("bound"), status.get("input_share")
    if status.get("state") not in LIVE_STATES or bound is None or share is None:
        return None
    if bound == "input":
        return f"input-bound {100 * float(share):.0f}%", "bold yellow"
    return f"compute-bound (data {100 * float(share):.0f}%)", "dim"


class StatusBar(Static):
    """Shows session.status(), kept current by Progress messages between status reads."""

    def __init__(self, position: FitPosition | None = None, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.status: dict[str, Any] = {}
        # Shared with the Training pane's bars: the one source of the fit's epoch and batch counters.
        self.position = position if position is not None else FitPosition()

    def set_status(self, status: dict[str, Any]) -> None:
        """Replace the status (a session.status() dict); the position is updated by its owner."""
        self.status = dict(status)
        self._draw()

    def set_bound(self, status: dict[str, Any]) -> None:
        """Take only the input meter's reading (`bound`, `input_share`) from a newer status."""
        self.status["bound"], self.status["input_share"] = status.get("bound"), status.get("input_share")
        self._draw()

    def set_progress(self, p: Progress) -> None:
        """Show the newest Progress (already folded into the shared position)."""
        if p.lrs:
            self.status.setdefault("hypers", {})["lr"] = list(p.lrs)
        self._draw()

    def _draw(self) -> None:
        s = self.status
        state = str(s.get("state", "?"))
        text = Text()
        text.append(f" {s.get('name', 'session')} ", style="bold reverse")
        text.append(f" ● {state} ", style=_STATE_STYLE.get(state, ""))
        pos = self.position
        text.append(f" {pos.epoch_text()}")
        if pos.batch_text():
            text.append(f"  {pos.batch_text()}")
        lrs = (s.get("hypers") or {}).get("lr") or []
        if lrs:
            text.append(f"  lr {fmt_num(float(lrs[-1]), 3)}")
        bound = bound_text(s)
        if bound is not None:
            text.append("  ")
            text.append(*bound)
        if s.get("run_id") is not None:
            text.append(f"  run {s['run_id']}")
        if s.get("device"):
            text.append(f"  {s['device']}", style="dim")
        if s.get("last_error"):
            text.append(f"  error: {s['last_error']}", style="bold red")
        self.update(text, layout=False)  # fixed one line: no layout pass per update
