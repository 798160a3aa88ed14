"""The console's six panes: their keys, titles, the widget each focuses, and how each is built."""

from __future__ import annotations

from typing import Any

from labcon.tui.console import ConsolePane
from labcon.tui.data import DataPane
from labcon.tui.hooks import HooksPane
from labcon.tui.journal import JournalPane
from labcon.tui.pane import Pane
from labcon.tui.position import FitPosition
from labcon.tui.telemetry import TelemetryPane
from labcon.tui.training import TrainingPane

# (id, title) in key order: key 1 shows the first.
PANES: tuple[tuple[str, str], ...] = (
    ("training", "Training"),
    ("telemetry", "Telemetry"),
    ("hooks", "Hooks"),
    ("data", "Data"),
    ("journal", "Journal"),
    ("console", "Console"),
)
# The widget that gets the keys when a pane is shown: a table, never a text box, so 1-6 keep switching.
FOCUS: dict[str, str] = {
    "training": "#epoch-table",
    "telemetry": "#layer-table",
    "hooks": "#module-tree",
    "data": "#data-summary-box",
    "journal": "#journal-results",
    "console": "#console-log",
}


def make_pane(pid: str, session: Any, journal: Any, images: str, position: FitPosition | None = None) -> Pane:
    """The pane widget for `pid` (one of PANES) over `session` (`position`: the app's shared fit counters)."""
    if pid == "training":
        return TrainingPane(session, position=position, id="pane-training")
    if pid == "telemetry":
        return TelemetryPane(session, id="pane-telemetry")
    if pid == "hooks":
        return HooksPane(session, id="pane-hooks")
    if pid == "data":
        return DataPane(session, images=images, id="pane-data")
    if pid == "journal":
        return JournalPane(session, journal=journal, id="pane-journal")
    return ConsolePane(session, id="pane-console")


__all__ = ["FOCUS", "PANES", "ConsolePane", "make_pane"]
