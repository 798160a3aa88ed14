"""Pilot tests of the console against FakeSession: every pane and the main flows."""

from __future__ import annotations

import time

import pytest

from labcon.session.messages import BatchStats, Log, Progress
from labcon.tui.bridge import Merger, pump
from labcon.tui.budget import Throttle
from labcon.tui.commandline import CommandLine, apply_completion
from labcon.tui.data import DataPane
from labcon.tui.fmt import progress_line
from labcon.tui.heatmap import render_heatmap, resample
from labcon.tui.hooks import HooksPane
from labcon.tui.journal import JournalPane
from labcon.tui.keyhints import KeyHints
from labcon.tui.telemetry import TelemetryPane
from labcon.tui.training import TrainingPane
from tests.fakes import FakeSession, fake_app
from tests.pilot import screen_text, until

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


# -- pure parts ----------------------------------------------------------------------------------
def test_merger_keeps_newest_progress_and_all_batches():
    m = Merger()
    for i in range(50):
        m.add(Progress(0, "train", i, 50, i, 1.0 / (i + 1), 1.0, (0.1,), (0.9,), 0.0, 1.0, 2.0))
        m.add(BatchStats(i, (float(i),), (float(i),), (0.1,), (0.9,)))
    m.add(Log("error", "x"))
    b = m.take()
    assert b.progress is not None and b.progress.iter == 49
    assert b.batch_stats is not None and b.batch_stats.losses == tuple(float(i) for i in range(50))
    assert b.batch_stats.start_iter == 0
    assert [type(e).__name__ for e in b.events] == ["Log"]
    assert b.n_messages == 101 and not m


def test_pump_throttles_to_max_rate():
    import threading

    fake = FakeSession()
    sub = fake.subscribe()
    posted = []
    stop = threading.Event()
    t = threading.Thread(target=pump, args=(sub, posted.append, stop, Throttle(max_rate=10.0, min_rate=10.0)))
    t.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.6:
        fake.train_batches(5)
        time.sleep(0.002)
    time.sleep(0.15)
    stop.set()
    t.join()
    # ~0.75 s at <= 10 updates/s: at most 8 posts (+1 for the first flush), and nothing lost.
    assert 3 <= len(posted) <= 9
    assert sum(len(b.batch_stats.losses) for b in posted if b.batch_stats) == fake.train_iter - 300


def test_throttle_follows_ui_cpu_share():
    t = Throttle(max_rate=5.0, min_rate=1.0, cpu_share=0.025)
    t.observe(0.10, 2.0)  # 5 % of a core: twice the share, so half the rate
    assert t.rate == pytest.approx(2.5) and t.slowdown == pytest.approx(2.0)
    t.observe(1.0, 2.0)  # one very expensive window: at most halved
    assert t.rate == pytest.approx(1.25)
    t.observe(1.0, 2.0)  # never below the floor
    assert t.rate == 1.0
    for _ in range(10):
        t.observe(0.0, 2.0)  # idle: back to the full rate, not above
    assert t.rate == 5.0 and t.interval == pytest.approx(0.2)
    t.observe(0.04, 2.0)  # 2 % is within the share: unchanged
    assert t.rate == 5.0


def test_pump_sends_rare_events_without_waiting_for_the_slot():
    import threading

    fake = FakeSession()
    sub = fake.subscribe()
    posted: list = []
    stop = threading.Event()
    t = threading.Thread(target=pump, args=(sub, posted.append, stop, Throttle(max_rate=1.0, min_rate=1.0)))
    t.start()
    try:
        fake.train_batches(3)
        time.sleep(0.2)
        n = len(posted)
        fake.error("disk full")
        time.sleep(0.3)  # well inside the 1 s slot
        assert any(isinstance(e, Log) for b in posted[n:] for e in b.events), posted
    finally:
        stop.set()
        t.join()


def test_completion_and_heatmap_helpers():
    assert apply_completion("se", ["set"]) == "set "
    assert apply_completion("set l", ["lr="]) == "set lr="
    assert apply_completion("f", ["fit", "fit_one_cycle"]) == "fit"
    grid = [[0.0] * 40 for _ in range(10)]
    for row in grid:
        row[39] = 100.0  # all mass in the top bin
    cells = resample(grid, 5, 4)
    assert cells[0][0] > 0 and cells[-1][0] == 0
    assert len(render_heatmap(grid, 7, 3).plain.splitlines()) == 3


def test_progress_line_fits_its_width():
    for width in (40, 80, 120):
        for frac in (0.0, 0.37, 1.0, 1.5):
            line = progress_line("epoch", frac, "3 train 40/100  ETA 0:12", width)
            assert line.cell_len <= width and "\n" not in line.plain
    assert " 37% " in progress_line("fit", 0.37, "", 80).plain
    assert "100%" in progress_line("fit", 2.0, "", 80).plain  # clamped


async def test_key_line_follows_focus():
    """The key line shows the focused pane's keys and the app's, and the command line's own keys there."""
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        keys = app.query_one(KeyHints)
        await pilot.press("3")
        await pilot.pause(0.2)
        assert keys.hints().plain.startswith(" a Add hook")  # the pane's own keys first
        assert "Quit" in keys.hints().plain and "palette" in keys.hints().plain
        await pilot.press("colon")
        await pilot.pause(0.2)
        assert "Complete" in keys.hints().plain and "Add hook" not in keys.hints().plain


# -- panes ---------------------------------------------------------------------------------------
async def test_training_pane_shows_history_and_live_progress():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainingPane)
        assert [r["epoch"] for r in pane.rows] == [0, 1, 2]
        assert pane.query_one("#epoch-table").row_count == 3
        fake.train_batches(150)  # finishes epoch 3 mid-way through epoch 4
        await until(
            pilot, lambda: len(pane.rows) == 4 and pane.progress is not None and pane.progress.iter == 50
        )
        assert pane.query_one("#epoch-table").row_count == 4
        assert len(pane.batches["losses"]) == 450
        assert "ETA" in screen_text(app)
        assert app.n_updates <= 3  # 300 messages merged into a handful of UI updates
        # Hidden, the table waits (each added row re-laid it out); shown again, it has every epoch.
        await pilot.press("2")
        fake.train_batches(100)
        await until(pilot, lambda: len(pane.rows) == 5)
        assert pane.query_one("#epoch-table").row_count == 4
        await pilot.press("1")
        await until(pilot, lambda: pane.query_one("#epoch-table").row_count == 5)
        assert pane.query_one("#epoch-table").cursor_row == 4


async def test_telemetry_pane_flags_and_heatmap():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(TelemetryPane)
        text = screen_text(app)
        assert "layers.1.conv2 dead" in text and "exploding" in text
        assert pane.selected_layer == "stem.0"
        await pilot.press("down", "down")
        await pilot.pause()
        assert pane.selected_layer == "layers.0.conv1"
        assert f"histogram of {pane.selected_layer}" in screen_text(app)
        assert len(pane.query_one("#heatmap").grid) == 60


async def test_hooks_pane_add_and_remove_when_paused():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        pane = app.query_one(HooksPane)
        assert "8 hook(s) on the whole model" in screen_text(app)
        tree = pane.query_one("#module-tree")
        tree.focus()
        await pilot.press("down", "down")  # model > stem > 0
        await pilot.pause()
        assert pane.selected == "stem.0"
        await pilot.press("a")
        line = app.query_one(CommandLine)
        assert line.value == "hook add stem.0 kind=forward" and line.has_focus
        await pilot.press("enter")
        await until(pilot, lambda: app.sender.idle and len(fake.hooks_table()) == 9)
        await until(pilot, lambda: any(h["id"] == 9 for h in pane.hooks))
        table = pane.query_one("#hooks-table")
        table.focus()
        await pilot.press("down", "x")  # the new hook is the second on stem.0
        await pilot.pause()
        assert "Remove hook 9?" in screen_text(app)  # a destructive key asks first
        await pilot.press("y")
        await until(pilot, lambda: "hook rm 9" in fake.received and app.sender.idle)
        assert all(h["id"] != 9 for h in fake.hooks_table())


async def test_hooks_change_while_running():
    """`hook add` / `hook rm` apply at the next batch, so the pane offers them while training too."""
    fake, app = fake_app(state="running")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        pane = app.query_one(HooksPane)
        app.query_one("#hooks-table").focus()
        await pilot.press("x")  # the first hook: id 1
        await pilot.pause()
        await pilot.press("y")  # a destructive key asks first
        await until(pilot, lambda: "hook rm 1" in fake.received and app.sender.idle)
        await until(pilot, lambda: all(h["id"] != 1 for h in pane.hooks))
        assert "queued: 'hook rm 1' applies at the next batch" in "\n".join(app.console_pane.lines)
        assert not any("paused" in n.message for n in app._notifications)


async def test_data_pane_draws_and_redraws_batch():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: fake.n_image_calls == 1)
        await app.workers.wait_for_complete()
        await pilot.pause()
        pane = app.query_one(DataPane)
        assert "GrandparentSplitter" in screen_text(app)
        assert pane.query_one("#data-image").image is not None
        await pilot.press("r")
        await until(pilot, lambda: fake.n_image_calls == 2)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "sample batch #2" in screen_text(app)


async def test_journal_search_detail_diff_replay():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        pane = app.query_one(JournalPane)
        await until(pilot, lambda: len(pane.results) == 5)
        pane.query_one("#journal-query").focus()
        await pilot.press(*"status:done", "enter")
        await until(pilot, lambda: len(pane.results) == 3)
        assert [r["session"] for r in pane.results] == ["one-cycle", "mixup", "baseline"]
        text = screen_text(app)
        assert "valid loss" in text and "accuracy" in text and "0.8890" in text  # final metrics per run
        await pilot.press("enter")  # results table has focus: show run 4
        await pilot.pause()
        assert pane.current == 4 and "run 4" in screen_text(app)
        await pilot.press("m", "down", "m", "d")
        await pilot.pause()
        assert "diff run 4 -> run 2" in screen_text(app)
        await pilot.press("R")
        await until(pilot, lambda: "replay 2" in fake.received and app.sender.idle)
        await pilot.pause()
        assert "replaying run 2 as session 'mixup-replay2'" in "\n".join(app.console_pane.lines)


async def test_journal_bad_query_is_shown_not_raised():
    fake, app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        pane = app.query_one(JournalPane)
        pane.search("((lr")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "query error: unclosed '('" in screen_text(app)
