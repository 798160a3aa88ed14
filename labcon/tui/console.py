"""Console pane: the log of commands, replies, errors and session log lines."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Label, RichLog

from labcon.session.messages import CommandApplied, FitEnded, FitStarted, Log, StateChanged
from labcon.tui.bridge import UpdateBatch
from labcon.tui.pane import Pane

_LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "bold red"}


class ConsolePane(Pane):
    """Everything said on the command line and by the session, newest at the bottom.

    Refused commands are written by the app (once, whether the reply or the CommandFailed message comes first).
    """

    def __init__(self, session: Any, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Label("type a command below (':' or '/' focuses it; Tab completes; up/down history; help)")
        yield RichLog(id="console-log", wrap=True, max_lines=5000, auto_scroll=True)

    def write(self, text: str, style: str = "") -> None:
        """Append a line (also kept in `lines` for tests and the end-to-end check)."""
        self.lines.append(text)
        self.query_one("#console-log", RichLog).write(Text(text, style=style))

    def apply(self, update: UpdateBatch) -> None:
        for ev in update.events:
            if isinstance(ev, CommandApplied):
                self.write(f"applied {ev.text!r} at epoch {ev.epoch} batch {ev.iter}: {ev.reply}", "green")
            elif isinstance(ev, Log):
                self.write(f"{ev.level}: {ev.text}", _LEVEL_STYLE.get(ev.level, ""))
            elif isinstance(ev, StateChanged):
                self.write(f"session is {ev.state}" + (f" ({ev.reason})" if ev.reason else ""), "dim")
            elif isinstance(ev, FitStarted):
                self.write(
                    f"fit started: run {ev.run_id}, {ev.n_epochs} epoch(s) from epoch {ev.epoch_start}",
                    "cyan",
                )
            elif isinstance(ev, FitEnded):
                style = "bold red" if ev.status == "failed" else "cyan"
                self.write(f"fit {ev.status}" + (f": {ev.reason}" if ev.reason else ""), style)
