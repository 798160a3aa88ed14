"""Helpers for the console's pilot tests (Textual's `run_test`): wait for a condition, type a command line."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


async def until(
    pilot: Any, cond: Callable[[], Any], timeout: float = 90.0, why: Callable[[], str] = str
) -> None:
    """Let the app run until `cond()` holds (generous timeout: a loaded 2-core box), then one more refresh."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"condition not reached in time {why()}"
        await pilot.pause(0.05)
    await pilot.pause()


async def type_line(pilot: Any, text: str) -> None:
    """Leave whatever has focus, focus the command line with ':', type `text` and press Enter."""
    await pilot.press("escape", "colon")
    await pilot.press(*text)
    await pilot.press("enter")
