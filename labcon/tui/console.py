"""Console pane: the log of commands, replies, errors and session log lines, and the last profile's chart.

The profile lives here because `profile N` is typed here and its reply and table land in this log (where they
scroll away); the chart keeps the last one in view beside the log (below it on a narrow terminal).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Label, RichLog

from labcon.session.describe import describe
from labcon.session.messages import (
    CommandApplied,
    CommandFailed,
    FitEnded,
    Log,
    Message,
    Profiled,
    StateChanged,
)
from labcon.tui.bridge import UpdateBatch
from labcon.tui.pane import Pane
from labcon.tui.profile import ProfileBox, ProfileView

# At least this many columns: the profile sits beside the log; fewer, below it.
WIDE = 110

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
        with Container(id="console-body"):
            yield RichLog(id="console-log", wrap=True, max_lines=5000, auto_scroll=True)
            yield ProfileBox(id="profile-box")

    def on_mount(self) -> None:
        box = self.query_one(ProfileBox)
        box.display = False
        # A console attaching after a profile shows it too (the session keeps it, or reads it from its journal).
        self.call_after_refresh(lambda: box.show(self.safe(self.session.profile_report)))

    def on_resize(self) -> None:
        self.set_class(self.size.width < WIDE, "narrow")

    @property
    def profile(self) -> dict[str, Any] | None:
        """The profile shown (None: none yet)."""
        return self.query_one(ProfileView).report

    def write(self, text: str, style: str = "") -> None:
        """Append a line (also kept in `lines` for tests and the end-to-end check)."""
        self.lines.append(text)
        self.query_one("#console-log", RichLog).write(Text(text, style=style))

    def apply(self, update: UpdateBatch) -> None:
        for ev in update.events:
            if isinstance(ev, CommandFailed):
                continue  # the app writes refusals, once
            if isinstance(ev, Profiled):
                self.query_one(ProfileBox).show(ev.report)
                if not self.shown:
                    self.app.notify("its table and chart are in the Console pane (6)", title="profile done")
                continue
            text = describe(ev)
            if text is not None:
                self.write(text, _style(ev))


def _style(ev: Message) -> str:
    """Colour by kind; the words are describe()'s, the same as the REPL's and the headless printer's."""
    if isinstance(ev, CommandApplied):
        return "green"
    if isinstance(ev, Log):
        return _LEVEL_STYLE.get(ev.level, "")
    if isinstance(ev, StateChanged):
        return "dim"
    if isinstance(ev, FitEnded):
        return "bold red" if ev.status == "failed" else "cyan"
    return "cyan"
