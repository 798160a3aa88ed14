"""The command line: an Input with history (up/down), Tab completion and inline suggestions."""

from __future__ import annotations

from collections.abc import Callable

from textual.binding import Binding
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input

from labcon.commands.grammar import apply_completion, complete, help_text


def load_completer() -> Callable[[str], list[str]]:
    """The command language's completion (derived from the command registry)."""
    return complete


def load_help() -> Callable[[str | None], str] | None:
    """The command language's help text."""
    return help_text


class CommandSuggester(Suggester):
    """Ghost-text suggestion when exactly one completion fits (accept with right arrow or Tab)."""

    def __init__(self, completer: Callable[[str], list[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self._complete = completer

    async def get_suggestion(self, value: str) -> str | None:
        """The completed line when the completion is unambiguous."""
        try:
            cands = self._complete(value)
        except Exception:  # noqa: BLE001 - a completer bug must never break typing
            return None
        if len(cands) != 1:
            return None
        return apply_completion(value, cands).rstrip(" ") or None


class Completions(Message):
    """Several completions fit: the app lists them in the console log."""

    def __init__(self, line: Input, candidates: tuple[str, ...]) -> None:
        super().__init__()
        self.line = line
        self.candidates = candidates


class CommandLine(Input):
    """Command input: Enter submits, up/down walk the history, Tab completes, Esc leaves."""

    BINDINGS = [
        Binding("up", "history(-1)", "Previous"),
        Binding("down", "history(1)", "Next"),
        Binding("tab", "complete", "Complete", priority=True),
        Binding("escape", "leave", "Leave"),
    ]

    def __init__(self, completer: Callable[[str], list[str]] | None = None, **kwargs: object) -> None:
        self._complete = completer or load_completer()
        super().__init__(suggester=CommandSuggester(self._complete), **kwargs)  # type: ignore[arg-type]
        self.history: list[str] = []
        self._pos = 0
        self.last_candidates: list[str] = []

    def remember(self, text: str) -> None:
        """Add a submitted line to the history (no consecutive duplicates)."""
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._pos = len(self.history)

    def action_history(self, step: int) -> None:
        """Show the previous (-1) or next (+1) line of the history."""
        if not self.history:
            return
        self._pos = max(0, min(len(self.history), self._pos + step))
        self.value = self.history[self._pos] if self._pos < len(self.history) else ""
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        """Complete the word before the cursor; several candidates are listed in the console."""
        if not self.has_focus:
            self.screen.focus_next()
            return
        before = self.value[: self.cursor_position]
        try:
            cands = self._complete(before)
        except Exception:  # noqa: BLE001 - a completer bug must never break typing
            cands = []
        self.last_candidates = list(cands)
        new = apply_completion(before, cands)
        self.value = new + self.value[self.cursor_position :]
        self.cursor_position = len(new)
        if len(cands) > 1:
            self.post_message(Completions(self, tuple(cands)))

    def action_leave(self) -> None:
        """Give the focus back to the current pane."""
        self.screen.set_focus(None)
