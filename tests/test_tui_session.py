"""The console on a real Session (not the fake): train, pause, change lr, swap a callback, resume, journal."""

from __future__ import annotations

import re

import pytest

from labcon.commands.cmd_watch import USER_HOOK_OWNER
from labcon.fmt import fmt_num
from labcon.session.config import parse_config
from labcon.session.session import Session
from labcon.tui.app import build_app
from labcon.tui.journal import JournalPane
from tests.helpers import make_image_folder, tiny_config
from tests.pilot import burst, screen_text, type_line, until

pytestmark = pytest.mark.anyio


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
            await type_line(pilot, "fit 1000")
            await until(pilot, lambda: s.runner.train_iter >= 3)
            await burst(pilot, "escape", "space")  # pause key
            await until(pilot, lambda: s.state == "paused")
            await type_line(pilot, "set lr=0.003")
            await until(pilot, lambda: s.runner.hyper("lr") == [0.003])
            await type_line(pilot, "cb add gradient_clip max_norm=0.5")
            await until(pilot, lambda: s.runner.cb("gradient_clip") is not None)
            await burst(pilot, "escape", "space")  # resume
            await until(pilot, lambda: s.state == "running")
            # Hooks change while training (the grammar applies them at the next batch; no pause needed).
            await burst(pilot, "escape", "3")
            await pilot.pause()
            app.query_one("#module-tree").focus()
            # Key by key: `a` opens a dialog, which the Enter is for.
            await pilot.press("down", "a", "enter")
            await until(pilot, lambda: any(h["owner"] == USER_HOOK_OWNER for h in s.hooks_table()))
            assert s.state == "running"
            it = s.runner.train_iter
            await until(pilot, lambda: s.runner.train_iter > it + 2)
            await burst(pilot, "escape", "s", "y")  # stop key, confirmed
            await until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0))
            await pilot.press("5")
            await type_line(pilot, "journal status:stopped")
            await until(pilot, lambda: any("run 1" in str(line) for line in app.console_pane.lines), 10)
            # The Journal pane: real rows, with the run's final metrics.
            pane = app.query_one(JournalPane)
            await until(pilot, lambda: len(pane.results) == 1, 10)
            await pilot.pause()
            valid_loss = s.history()[-1]["valid_loss"]
            assert fmt_num(valid_loss) in screen_text(app) and "valid loss" in screen_text(app)
            # R replays the highlighted run in its own session process and says where to find it.
            pane.query_one("#journal-results").focus()
            await pilot.press("R")
            await until(pilot, lambda: any("replaying run 1" in line for line in app.console_pane.lines), 30)
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


async def test_journal_pane_shows_a_branch_from_another_session_with_its_deviation(tmp_path):
    """A branch of the console's run, made by another session (as `labcon replay --until --then` does): the shown
    pane lists it without any message from it, and its detail leads with its per-epoch deviation from the parent."""
    from labcon.session.replay import start_replay

    data = make_image_folder(tmp_path / "img", n_train=24)
    home = tmp_path / "home"
    s = Session(parse_config(tiny_config(data, name="p", epochs=2, telemetry=False)), home)
    branch = None
    try:
        assert s.submit("fit 2").ok and s.jobs.wait_idle(120)
        s.persist.writer.flush()
        parent = s.persist.run_id
        app = build_app(s, images="halfcell")
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("5")
            pane = app.query_one(JournalPane)
            await until(pilot, lambda: len(pane.results) == 1, 20)
            branch, _ = start_replay(parent, home, until=1, then="set lr=0.5", name="p-branch")
            assert branch.wait(120)
            rid = branch.persist.run_id
            branch.close()
            branch = None
            await until(
                pilot, lambda: any(r["id"] == rid and r["status"] == "done" for r in pane.results), 30
            )
            pane.show_run(next(r for r in pane.results if r["id"] == rid))
            await pilot.pause()
            detail = str(pane.query_one("#journal-detail").render())
            head = f"branch of run {parent}\nafter epoch 1 with:\n  set lr=0.5\nminus parent:\n"
            assert head in detail, detail
            block = detail.split("minus parent:")[1].split("parent_id")[0]
            # The parent trained 2 epochs: one after the branch point.
            assert " epoch 1\n  valid_loss " in block and "epoch 2" not in block, block
            values = [float(v) for v in re.findall(r"[a-z_]+ ([+-][0-9.]+(?:e[+-]?\d+)?)", block)]
            assert len(values) >= 3 and any(v != 0 for v in values), block
            assert "parent_id: " + str(parent) in detail  # and the record below it
    finally:
        if branch is not None:
            branch.close()
        s.close()
