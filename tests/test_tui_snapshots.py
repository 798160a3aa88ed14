"""Snapshot tests of every pane at 100x30 on the FakeSession (fixed data, no clocks; journal rows are real rows
written through the Journal, at fixed times shown in UTC)."""

from __future__ import annotations

import time

import pytest

from labcon.tui.app import build_app
from tests.fakes import FakeSession

PANE_KEYS = {"training": "1", "telemetry": "2", "hooks": "3", "data": "4", "journal": "5", "console": "6"}


def _show(key: str):
    async def run_before(pilot) -> None:
        await pilot.press(key)
        # Workers (sample image, journal search) finish before the picture is taken.
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    """Journal times drawn the same in every time zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("pane", list(PANE_KEYS))
def test_pane_snapshot(pane: str, snap_compare, utc):
    fake = FakeSession()
    try:
        assert snap_compare(
            build_app(fake, images="halfcell"), terminal_size=(100, 30), run_before=_show(PANE_KEYS[pane])
        )
    finally:
        fake.close()
