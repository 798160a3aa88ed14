"""The base of every pane: gets the session at construction and the merged updates from the app."""

from __future__ import annotations

from typing import Any

from textual.containers import Container

from labcon.session.api import SessionAPI
from labcon.tui.bridge import UpdateBatch


class Pane(Container):
    """A pane of the console: reads session snapshots; `apply` receives merged messages.

    Panes redraw expensive parts only when shown (`dirty` + `on_show`), so hidden panes cost nothing.
    """

    def __init__(self, session: SessionAPI, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.dirty = True

    def apply(self, update: UpdateBatch) -> None:
        """Take one merged update (called on the UI thread)."""

    def redraw(self) -> None:
        """Re-read what is shown from the session."""

    def on_show(self) -> None:
        """Redraw when the pane becomes visible and something changed meanwhile."""
        if self.dirty:
            self.dirty = False
            # After the first frame: the switch itself shows at once, the (maybe costly) contents right after.
            self.call_after_refresh(self.redraw)

    @property
    def shown(self) -> bool:
        """On screen now (a pane in a hidden tab keeps display=True; its tab is what is hidden)."""
        return bool(self.display and self.is_on_screen)

    def mark_dirty(self) -> None:
        """Redraw now if visible, else when next shown."""
        if self.shown:
            self.dirty = False
            self.redraw()
        else:
            self.dirty = True

    def safe(self, fn: Any, *args: Any, default: Any = None) -> Any:
        """Call a session read; a failure becomes a notification and `default` (the UI must survive it)."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - session snapshots are another team's code; never crash
            self.app.notify(f"{getattr(fn, '__name__', 'read')}: {e}", severity="error", markup=False)
            return default
