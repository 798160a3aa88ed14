"""The key line at the bottom: the shown bindings of the focused widget's chain, as one line of text."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class KeyHints(Static):
    """A cheap Footer: one Static redrawn when the bindings change.

    Textual's Footer recomposes a widget per key on every focus change; profiling a pane switch showed that
    (plus styling the new widgets) as ~40 % of the switch. This draws the same hints as a single line.
    """

    DEFAULT_CSS = """
    KeyHints { dock: bottom; height: 1; background: $panel; color: $text-muted; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._pending = False
        self._shown: Text | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._draw()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, _screen: Screen) -> None:
        # A pane switch changes focus twice; draw once, after both.
        if not self._pending:
            self._pending = True
            self.call_after_refresh(self._draw)

    def _draw(self) -> None:
        self._pending = False
        text = self.hints()
        if text != self._shown:  # a pane switch often ends with the same keys it started with
            self._shown = text
            # One docked line: its size never depends on the text, so no layout pass (a full-screen reflow).
            self.update(text, layout=False)

    def hints(self) -> Text:
        """The line: 'key description' for each shown binding, one per action, and the palette key."""
        text = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        palette: str | None = None
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if key == self.app.COMMAND_PALETTE_BINDING and self.app.ENABLE_COMMAND_PALETTE:
                palette = self.app.get_key_display(binding)
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            text.append(f" {self.app.get_key_display(binding)} ", style="bold")
            text.append(binding.description, style="" if active.enabled else "dim")
            text.append(" ")
        if palette is not None:
            text.append(f"  {palette} ", style="bold")
            text.append("palette")
        return text
