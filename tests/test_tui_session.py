"""The console on a real Session (not the fake): train, pause, change lr, swap a callback, resume, journal."""

from __future__ import annotations

import time

import pytest

from labcon.commands.cmd_watch import USER_HOOK_OWNER
from labcon.fmt import fmt_num
from labcon.session.config import parse_config
from labcon.session.session import Session
from labcon.tui.app import build_app
from labcon.tui.journal import JournalPane
from tests.fakes import screen_text
from tests.helpers import make_image_folder, tiny_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(pilot, cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        await pilot.pause(0.05)


async def _type(pilot, text: str) -> None:
    await pilot.press("escape", "colon")
    await pilot.press(*text)
    await pilot.press("enter")


async def test_console_drives_a_real_session(tmp_path):
    data = make_image_folder(tmp_path / "img", n_train=48)
    s = Session(
        parse_config(tiny_config(data, name="ui", epochs=1000, extra='schedule = "constant"\n')),
        tmp_path / "s",
    )
    app = build_app(s, images="halfcell")
    sub = s.subscribe()
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await _type(pilot, "fit 1000")
            await _until(pilot, lambda: s.runner.train_iter >= 3)
            await pilot.press("escape", "space")  # pause key
            await _until(pilot, lambda: s.state == "paused")
            await _type(pilot, "set lr=0.003")
            await _until(pilot, lambda: s.runner.hyper("lr") == [0.003])
            await _type(pilot, "cb add gradient_clip max_norm=0.5")
            await _until(pilot, lambda: s.runner.cb("gradient_clip") is not None)
            await pilot.press("escape", "space")  # resume
            await _until(pilot, lambda: s.state == "running")
            # Hooks change while training (the grammar applies them at the next batch; no pause needed).
            await pilot.press("escape", "3")
            await pilot.pause()
            app.query_one("#module-tree").focus()
            await pilot.press("down", "a", "enter")
            await _until(pilot, lambda: any(h["owner"] == USER_HOOK_OWNER for h in s.hooks_table()))
            assert s.state == "running"
            it = s.runner.train_iter
            await _until(pilot, lambda: s.runner.train_iter > it + 2)
            await pilot.press("escape", "s", "y")  # stop key, confirmed
            await _until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0))
            await pilot.press("5")
            await _type(pilot, "journal status:stopped")
            await _until(pilot, lambda: any("run 1" in str(line) for line in app.console_pane.lines), 10)
            # The Journal pane: real rows, with the run's final metrics.
            pane = app.query_one(JournalPane)
            await _until(pilot, lambda: len(pane.results) == 1, 10)
            await pilot.pause()
            valid_loss = s.history()[-1]["valid_loss"]
            assert fmt_num(valid_loss) in screen_text(app) and "valid loss" in screen_text(app)
            # R replays the highlighted run in its own session process and says where to find it.
            pane.query_one("#journal-results").focus()
            await pilot.press("R")
            await _until(pilot, lambda: any("replaying run 1" in line for line in app.console_pane.lines), 30)
            assert "session 'ui-replay1'" in "\n".join(app.console_pane.lines)
            assert len(s.children) == 1
    finally:
        for proc in s.children:
            proc.kill()  # the replay itself is proven in test_contract; here only that R starts it
            proc.wait()
        s.close()
    assert s.history(), "at least one epoch ran"
    ends = [m for m in sub.drain() if type(m).__name__ == "FitEnded"]
    assert ends[-1].status == "stopped" and ends[-1].reason == "stopped by user", ends
