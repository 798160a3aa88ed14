"""Helpers for the console's pilot tests (Textual's `run_test`): wait for a condition, type a command line."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import events
from textual.keys import _character_to_key, key_to_character


async def until(
    pilot: Any, cond: Callable[[], Any], timeout: float = 90.0, why: Callable[[], str] = str
) -> None:
    """Let the app run until `cond()` holds (generous timeout: a loaded 2-core box), then one more refresh."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"condition not reached in time {why()}"
        await pilot.pause(0.05)
    await pilot.pause()


async def burst(pilot: Any, *keys: str) -> None:
    """Keys as a fast typist or a terminal delivers them: all queued at once, then one refresh.

    `pilot.press` waits after every key until this process looks idle, at most 1 s; with a fit training in the
    same process it never does, so a typed line took 2 s a key. The app must route a burst right anyway (the
    priority ':' and Esc bindings exist for that), so tests type this way. Names and characters are derived as
    `pilot.press` derives them (textual's own key helpers)."""
    for key in keys:
        name = _character_to_key(key) if len(key) == 1 else key
        event = events.Key(name, key if len(key) == 1 else key_to_character(key))
        pilot.app.post_message(event)
    await pilot.pause()


async def type_line(pilot: Any, text: str) -> None:
    """Leave whatever has focus, focus the command line with ':', type `text` and press Enter, as one burst."""
    await burst(pilot, "escape", "colon", *text, "enter")


def screen_text(app: Any) -> str:
    """The app's current screen as plain text (what a user would read), for assertions and debugging."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def command(pilot, app: Any, text: str) -> None:
    """Type a command on the command line and wait for its reply in the console."""
    n = len(app.console_pane.lines)
    await pilot.press("escape", "colon")
    await pilot.press(*text)
    await pilot.press("enter")
    await until(pilot, lambda: len(app.console_pane.lines) >= n + 2 and app.sender.idle)
