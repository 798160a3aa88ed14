"""The command line: an Input with history (up/down), Tab completion and inline suggestions."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input

from labcon.commands.grammar import apply_completion, complete, help_text


def load_completer() -> Callable[[str], list[str]]:
    """The command language's completion (derived from the command registry)."""
    return complete


def load_help() -> Callable[[str | None], str]:
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


class PastedLines(Message):
    """A paste held whole lines: each is run as if typed and entered, in order."""

    def __init__(self, line: Input, lines: tuple[str, ...]) -> None:
        super().__init__()
        self.line = line
        self.lines = lines


class CommandLine(Input):
    """Command input: Enter submits, up/down walk the history, Tab completes, Esc leaves."""

    # Shown in the key line; the keys themselves are handled in _on_key (see there).
    BINDINGS = [
        Binding("up", "history(-1)", "Previous"),
        Binding("down", "history(1)", "Next"),
        Binding("tab", "complete", "Complete"),
        Binding("escape", "leave", "Leave"),
    ]
    # Keys acted on in the order they arrive, with the characters around them.
    # (Escape is the app's priority key: it must move the focus before the keys after it are routed.)
    _KEY_ACTIONS = {"enter": "submit", "tab": "complete", "up": "up", "down": "down"}

    def __init__(self, completer: Callable[[str], list[str]] | None = None, **kwargs: object) -> None:
        self._complete = completer or load_completer()
        super().__init__(suggester=CommandSuggester(self._complete), **kwargs)  # type: ignore[arg-type]
        self.history: list[str] = []
        self._pos = 0
        self.last_candidates: list[str] = []

    def remember(self, text: str) -> bool:
        """Add a submitted line to the history (no blank lines or consecutive duplicates); True when added."""
        text = text.strip()
        added = bool(text) and (not self.history or self.history[-1] != text)
        if added:
            self.history.append(text)
        self._pos = len(self.history)
        return added

    def load(self, entries: list[str]) -> None:
        """Start from a saved history (oldest first)."""
        self.history = [e for e in entries if e.strip()] + self.history
        self._pos = len(self.history)

    async def _on_key(self, event: events.Key) -> None:
        # A binding's action runs only once the key has bubbled up to the app, through every parent's queue,
        # while the characters typed after it go straight to this widget: with a fast typist or tmux under
        # load, `set a` Enter `:set b` became one line `set a:set b` (two commands lost). Acting here keeps
        # every key in arrival order.
        action = self._KEY_ACTIONS.get(event.key)
        if action is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        if action == "submit":
            text = self.value
            self.value = ""  # now, before the next key: the app gets the text in the message
            self.post_message(self.Submitted(self, text, None))
        elif action == "complete":
            self.action_complete()
        else:
            self.action_history(-1 if action == "up" else 1)

    def insert_text_at_cursor(self, text: str) -> None:
        """Type `text`; a ':' typed at the start is dropped (it is the key that focuses this line)."""
        if self.cursor_position == 0 and text.startswith(":"):
            text = text.lstrip(":")
            if not text:
                return
        super().insert_text_at_cursor(text)

    def _on_paste(self, event: events.Paste) -> None:
        # Input keeps only a paste's first line: the rest were lost. Whole lines run as commands, in order;
        # the text after the last newline stays on the line to be finished.
        lines = event.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if len(lines) == 1:
            super()._on_paste(event)
            return
        event.stop()
        first = self.value[: self.cursor_position] + lines[0]
        rest = self.value[self.cursor_position :]
        whole = tuple(x for x in [first.lstrip(":"), *lines[1:-1]] if x.strip())
        self.value = ""
        if whole:
            self.post_message(PastedLines(self, whole))
        self.insert_text_at_cursor(lines[-1])
        tail = self.cursor_position
        self.value += rest
        self.cursor_position = tail

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
