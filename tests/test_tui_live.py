"""The console on a real Session: counters, journal, errors, change markers, lr_find, typed commands, history."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from labcon.remote.client import RemoteSession
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.config import parse_config
from labcon.session.session import Session
from labcon.tui.app import build_app
from labcon.tui.commandline import CommandLine
from labcon.tui.journal import JournalPane
from labcon.tui.training import TrainingPane
from tests.helpers import make_image_folder, tiny_config
from tests.pilot import burst, type_line, until

pytestmark = pytest.mark.anyio
SIZE = (120, 36)


@pytest.fixture
def short_dir():
    # Unix socket paths are short: a pytest tmp_path can be too long.
    d = tempfile.mkdtemp(prefix="lct", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _session(
    root: Path, epochs: int = 1000, n_train: int = 48, extra: str = 'schedule = "constant"\n'
) -> Session:
    data = make_image_folder(root / "img", n_train=n_train)
    return Session(parse_config(tiny_config(data, name="live", epochs=epochs, extra=extra)), root / "home")


def _wait(cond, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def _screen(app) -> str:
    from tests.pilot import screen_text

    return screen_text(app)


def _epochs_shown(app) -> tuple[str, str]:
    status = str(app.status_bar.render())
    fit = str(app.query_one("#fit-progress").render())
    return status, fit


async def test_counters_agree_after_attach_mid_fit(tmp_path):
    """Status bar and fit bar count the fit's own epochs (attach after 2 earlier epochs: `epoch 1/3`, not 2/3 or 3/3)."""
    s = _session(tmp_path)
    try:
        assert s.submit("fit 2").ok and s.jobs.wait_idle(120)
        assert s.submit("fit 3").ok
        _wait(lambda: s.state == "running" and s.runner.train_iter >= 24 + 3)
        assert s.submit("pause").ok
        _wait(lambda: s.state == "paused")
        app = build_app(s, images="halfcell")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            status, fit = _epochs_shown(app)
            assert "epoch 1/3" in status and "epoch 1/3" in fit, (status, fit)
            pct = int(re.search(r"(\d+)%", fit)[1])
            assert pct == int(100 * (s.runner.train_iter - 24) / 36), fit
            await type_line(pilot, "resume")
            # Into the fit's second epoch (global epoch 3), paused there: both say 2/3, and the fit is not done.
            await until(pilot, lambda: s.runner.epoch >= 3)
            if s.submit("pause").ok:  # (the fit may end before the pause reaches a batch boundary)
                await until(pilot, lambda: s.state == "paused" or (s.state == "idle" and s.jobs.wait_idle(0)))
                if s.state == "paused" and s.runner.epoch == 3:
                    await until(pilot, lambda: "epoch 2/3" in _epochs_shown(app)[0], 20)
                    status, fit = _epochs_shown(app)
                    assert "epoch 2/3" in fit and "100%" not in fit, (status, fit)
                if s.state == "paused":
                    await type_line(pilot, "resume")
            await until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0), 120)
            await until(pilot, lambda: "epochs done 5" in _epochs_shown(app)[0], 10)
    finally:
        s.close()


async def test_journal_pane_lists_the_first_run_of_a_fresh_directory(short_dir):
    """Attached to a fresh directory's session, the pane shows the run as soon as it is journaled (no reopening)."""
    s = _session(short_dir, epochs=1)
    home = short_dir / "home"
    server = ControlServer(s, control_socket_path(home, s.name)).start()
    remote = RemoteSession(control_socket_path(home, s.name))
    try:
        app = build_app(remote, images="halfcell")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            pane = app.query_one(JournalPane)
            await until(pilot, lambda: "no journal yet" in _screen(app) or "0 run(s)" in _screen(app), 10)
            await type_line(pilot, "fit 1")
            await pilot.press("escape", "5")
            await until(pilot, lambda: len(pane.results) == 1 and s.jobs.wait_idle(0), 120)
            await until(pilot, lambda: pane.results[0]["status"] != "running", 20)
            text = _screen(app)
            assert re.search(r"\d\d-\d\d \d\d:\d\d", text) and "e+09" not in text, text
    finally:
        remote.close()
        server.close()
        s.close()


async def test_a_refused_command_is_shown_once_with_its_quotes(tmp_path):
    s = _session(tmp_path, epochs=1)
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await type_line(pilot, "cb rm nosuchcb")
            await until(
                pilot, lambda: app.sender.idle and any("error" in ln for ln in app.console_pane.lines)
            )
            await pilot.pause(0.5)  # the CommandFailed message has arrived too by now
            errors = [ln for ln in app.console_pane.lines if ln.startswith("error")]
            assert len(errors) == 1, app.console_pane.lines
            assert len([n for n in app._notifications if n.severity == "error"]) == 1
            reply = s.submit("cb rm nosuchcb").text
            assert reply in errors[0] and reply.count("'") % 2 == 0, (reply, errors)
    finally:
        s.close()


async def test_applied_change_marker_lr_find_and_typed_commands(tmp_path):
    """A `set` applied mid-fit is numbered on the plots and in the legend; lr_find's curve and `L`; a burst of
    typed and pasted commands all reach the session; the history is saved in the session folder."""
    s = _session(tmp_path)
    sub = s.subscribe()
    seen: list[
        str
    ] = []  # every applied command, read as it comes (as a front end does: the queue is bounded)
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            m = sub.get(0.1)
            if type(m).__name__ == "CommandApplied":
                seen.append(m.text)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(TrainingPane)
            assert "fit_one_cycle 5" in _screen(app)  # the first screen suggests a first command
            await type_line(pilot, "lr_find num_it=12")
            await until(pilot, lambda: pane.lr_find is not None and s.jobs.wait_idle(0))
            await pilot.pause(2.5)
            assert "lr_find: suggests" in _screen(app)
            app.main.set_focus(app.query_one("#epoch-table"))
            await pilot.press("L")
            line = app.query_one(CommandLine)
            assert line.value == f"fit_one_cycle 5 lr={pane.lr_find.suggestion:.2e}"
            line.value = ""
            await type_line(pilot, "fit 1000")
            await until(pilot, lambda: s.runner.train_iter >= 3)
            await type_line(pilot, "set lr=0.003")
            await until(pilot, lambda: len(pane.markers) == 1)
            m = pane.markers[0]
            assert m.text == "set lr=0.003" and m.x >= 3
            await pilot.pause(2.5)
            assert "1 set lr=0.003 (epoch" in _screen(app)
            # A burst while training: every key typed and every pasted line must arrive, in order.
            typed = [f"set wd=0.0{i}" for i in range(1, 8)]
            for t in typed:
                await burst(pilot, "colon", *t, "enter")
            pasted = ["set mom=0.91", "set mom=0.92", "set mom=0.93"]
            app.query_one(CommandLine).focus()
            app.query_one(CommandLine).post_message(_paste(":" + "\n".join(pasted) + "\n"))
            want = ["set lr=0.003", *typed, *pasted]
            await until(pilot, lambda: all(w in seen for w in want), 120, lambda: f"applied so far: {seen}")
            assert [t for t in seen if t in want] == want
            await burst(pilot, "escape", "s", "y")
            await until(pilot, lambda: s.state == "idle" and s.jobs.wait_idle(0))
            await pilot.press("P")
            await until(pilot, lambda: list(s.dir.glob("screenshot-*.svg")), 10)
        history = (s.dir / "repl_history").read_text()
        assert "+set lr=0.003" in history and "+set mom=0.93" in history
        again = build_app(s, images="halfcell")
        async with again.run_test(size=SIZE) as pilot:
            line = again.query_one(CommandLine)
            line.focus()
            await pilot.press("up")
            assert line.value == "set mom=0.93"
    finally:
        done.set()
        reader.join()
        sub.close()
        s.close()


def _paste(text: str):
    from textual import events

    return events.Paste(text)


async def test_heat_map_draws_each_layer_on_its_own_range(short_dir):
    """Batch-norm outputs (recorded before their ReLU) are half negative: their heat map spans both sides of zero
    (axis labels -R, 0, R), with every value counted; the ReLU's keeps 0..10. Locally and on an attached console."""
    s = _session(short_dir, epochs=1)
    home = short_dir / "home"
    server = ControlServer(s, control_socket_path(home, s.name)).start()
    remote = RemoteSession(control_socket_path(home, s.name))
    try:
        assert s.submit("fit 1").ok and s.jobs.wait_idle(120)
        lo, hi = s.telemetry_snapshot().hist_ranges["0.1"]
        assert lo == -hi > -100 and s.telemetry_snapshot().hist_ranges["0.2"] == (0.0, 10.0)
        counts = s.telemetry_snapshot().heatmap("0.1")[-1]
        assert sum(counts[:20]) > 0.3 * sum(counts)  # the negative half is counted
        for session in (s, remote):
            app = build_app(session, images="halfcell")
            async with app.run_test(size=SIZE) as pilot:
                await pilot.press("2")
                pane = app.query_one("#pane-telemetry")
                await until(pilot, lambda p=pane: p.snapshot is not None, 20)
                shown = {}
                for layer in ("0.1", "0.2"):  # the first block's batch norm, then its ReLU
                    pane.selected_layer = layer
                    pane._show_heatmap()
                    await pilot.pause()
                    heat = app.query_one("#heatmap")
                    lines = [line.text for line in (heat.render_line(y) for y in range(heat.size.height))]
                    shown[layer] = (str(app.query_one("#heatmap-title").render()), lines)
                title, lines = shown["0.1"]
                assert f"bins {lo:.2f}..{hi:.2f}" in title and "not drawn" not in title, title
                axis = [ln.split("┤")[0].strip() for ln in lines]
                assert axis[0] == f"{hi:.4g}" and axis[-1] == f"{lo:.4g}" and "0" in axis[1:-1], axis
                title, lines = shown["0.2"]
                assert "bins 0.00..10.00" in title and "not drawn" not in title, title
                assert lines[0].split("┤")[0].strip() == "10" and lines[-1].split("┤")[0].strip() == "0"
    finally:
        remote.close()
        server.close()
        s.close()


async def test_data_pane_labels_samples_as_text_and_fills_its_width(short_dir):
    """Over the socket too: the sample grid's labels are terminal text; a wider pane puts more samples per row."""
    s = _session(short_dir, epochs=1)
    home = short_dir / "home"
    server = ControlServer(s, control_socket_path(home, s.name)).start()
    remote = RemoteSession(control_socket_path(home, s.name))
    try:
        for size, at_least in (((80, 24), 2), ((160, 40), 5)):
            app = build_app(remote, images="halfcell")
            async with app.run_test(size=size) as pilot:
                await pilot.press("4")
                grid = app.query_one("#data-samples")
                await until(pilot, lambda g=grid: bool(g.labels_shown), 60)
                await pilot.pause()
                assert set(grid.labels_shown) <= {"red", "blue"} and len(grid.labels_shown) == 16
                text = _screen(app)
                assert "red" in text and "blue" in text
                first_row = str(grid.query(".sample-labels").first().render()).split()
                assert len(first_row) >= at_least, (size, first_row)
    finally:
        remote.close()
        server.close()
        s.close()


async def test_changes_applied_before_attach_are_marked(tmp_path):
    """A console opened on a run already changed mid-fit shows those changes as markers too (from the journal)."""
    s = _session(tmp_path)
    try:
        assert s.submit("fit 1000").ok
        _wait(lambda: s.runner.train_iter >= 3)
        assert s.submit("set lr=0.004").ok
        _wait(lambda: s.runner.hyper("lr") == [0.004])
        assert s.submit("pause").ok
        _wait(lambda: s.state == "paused")
        s.persist.writer.flush()
        app = build_app(s, images="halfcell")
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(TrainingPane)
            await until(pilot, lambda: len(pane.markers) == 1, 20)
            assert pane.markers[0].text == "set lr=0.004" and pane.markers[0].x >= 3
    finally:
        s.close()


async def test_journal_diff_shows_differences_and_marked_runs_are_charted(tmp_path):
    """Two real runs (lr 1e-2 vs 3e-2): the diff lists the config line and metrics that differ, not two records."""
    data = make_image_folder(tmp_path / "img", n_train=24)
    home = tmp_path / "home"
    sessions = []
    try:
        for name, lr in (("a", "1e-2"), ("b", "3e-2")):
            cfg = tiny_config(data, name=name, epochs=2).replace("lr = 1e-2", f"lr = {lr}")
            s = Session(parse_config(cfg), home)
            sessions.append(s)
            assert s.submit("fit 2").ok and s.jobs.wait_idle(120)
            s.persist.writer.flush()
        app = build_app(sessions[-1], images="halfcell")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            pane = app.query_one(JournalPane)
            await until(pilot, lambda: len(pane.results) == 2, 20)
            pane.query_one("#journal-results").focus()
            await pilot.press("m", "down", "m")
            await until(pilot, lambda: len(pane.chart_runs) == 2, 20)
            assert all(len(rows) == 2 for rows in pane.chart_runs.values())
            assert pane.query_one("#journal-chart").display
            await pilot.press("d")
            await pilot.pause()
            detail = str(pane.query_one("#journal-detail").render())
            assert "- lr = 0.03" in detail or "-lr = 0.03" in detail or "lr = 0.03" in detail, detail
            assert "final metrics:" in detail and "valid_loss:" in detail and "->" in detail
            assert "env" not in detail and "seed = 3" not in detail  # not two full records
            assert len(detail.splitlines()) < 40, detail
    finally:
        for s in sessions:
            s.close()


def test_attached_session_opens_the_journal_once_its_file_exists(short_dir):
    """A console attached before the sessions directory has a journal finds it later (it was None for good)."""
    from labcon.session.journal import Journal
    from tests.fakes import FakeSession

    home = short_dir / "home"
    path = control_socket_path(home, "fresh")
    server = ControlServer(FakeSession(), path, follow=False).start()
    remote = RemoteSession(path)
    try:
        assert not (home / "journal.db").exists() and remote.journal is None
        Journal(home / "journal.db").close()  # what the session's first run does
        assert remote.journal is not None and remote.journal.search("") == []
    finally:
        remote.close()
        server.close()
