"""The console shows a profile (table and bars in the Console pane, also to a console that attaches later, over
the socket too) and, in the status bar, whether a live run is input- or compute-bound."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labcon.remote.client import RemoteSession
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.config import parse_config
from labcon.session.session import Session
from labcon.tui.app import build_app
from labcon.tui.console import ConsolePane
from labcon.tui.profile import bar, profile_text
from tests.fakes import FakeSession
from tests.helpers import make_image_folder, tiny_config
from tests.pilot import screen_text, type_line, until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def data() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lcprof", dir="/tmp"))  # short: a socket path has at most 107 bytes
    yield make_image_folder(d / "img")
    shutil.rmtree(d, ignore_errors=True)


def _shown_rows(app) -> list[str]:
    """Screen lines that are profile rows: a part, its ms/step, its share and a bar."""
    return [ln for ln in screen_text(app).splitlines() if _ROW.match(ln)]


_ROW = re.compile(r"^\S.*\s\d+\.\d{3}\s+\d+\.\d%  [█▏▎▍▌▋▊▉]")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_profile_3_on_a_real_session_shows_its_table_and_bars(data: Path, tmp_path: Path, size) -> None:
    s = Session(parse_config(tiny_config(data, name="pr", epochs=1)), tmp_path / "home")
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=size) as pilot:
            await pilot.press("6")
            pane = app.query_one(ConsolePane)
            assert pane.profile is None and not app.query_one("#profile-box").display  # no profile yet
            await pilot.press("colon", *"profile 3", "enter")
            await until(pilot, lambda: pane.profile is not None)
            await pilot.pause()
            report = pane.profile
            assert report["n_steps"] == 3 and report == s.profile_report()
            assert app.query_one("#profile-box").display
            text = screen_text(app)
            assert "profile of 3 steps" in text and "ms/step" in text and "share of the step" in text
            rows = _shown_rows(app)
            assert len(rows) >= (5 if size[1] < 30 else 15), text  # the largest parts at least, in view
            top = max(report["parts"], key=lambda p: p["share"])
            assert top["part"][:12] in rows[0] and f"{100 * top['share']:.1f}%" in rows[0]  # largest first
            assert rows[0].count("█") >= max(r.count("█") for r in rows)  # and the longest bar
            assert all(len(line) <= size[0] for line in text.splitlines())
            if size[0] >= 110:  # beside the log, which keeps its width
                assert app.query_one("#profile-box").region.x > app.query_one("#console-log").region.x
    finally:
        s.close()


async def test_a_console_attaching_later_over_the_socket_shows_the_last_profile(data: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))
    s = Session(parse_config(tiny_config(data, name="pa", epochs=1)), home)
    server = ControlServer(s, control_socket_path(home, s.name)).start()
    remote = RemoteSession(server.path)
    try:
        assert s.submit("profile 2").ok and s.wait(120)
        app = build_app(remote, images="halfcell")
        async with app.run_test(size=(100, 30)) as pilot:
            pane = app.query_one(ConsolePane)
            await until(pilot, lambda: pane.profile is not None)
            assert pane.profile == s.last_profile.as_dict()
            await pilot.press("6")
            await pilot.pause()
            assert "profile of 2 steps" in screen_text(app) and _shown_rows(app)
    finally:
        remote.close()
        server.close()
        s.close()
        shutil.rmtree(home, ignore_errors=True)


async def test_status_bar_says_input_bound_in_a_warning_colour() -> None:
    fake = FakeSession(state="running")
    app = build_app(fake, images="halfcell")

    def top() -> str:
        return screen_text(app).splitlines()[0]

    try:
        async with app.run_test(size=(100, 30)) as pilot:
            assert "bound" not in top()  # no reading yet: nothing claimed
            fake.input_share = 0.634  # the status bar re-reads the status while a fit is live
            await until(pilot, lambda: "input-bound 63%" in top(), 20)
            rendered = app.status_bar.render()
            (span,) = [sp for sp in rendered.spans if rendered.plain[sp.start : sp.end] == "input-bound 63%"]
            assert "yellow" in str(span.style)
            fake.input_share = 0.05
            await until(pilot, lambda: "compute-bound (data 5%)" in top(), 20)
            fake.state = "idle"
            app.refresh_status()
            await pilot.pause()
            assert "bound" not in top()  # only while a fit is live
    finally:
        fake.close()


async def test_status_bar_follows_a_real_fit_s_input_meter(data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(data, name="pb", epochs=1000, extra='schedule = "constant"\n')
    s = Session(parse_config(cfg), tmp_path / "home")
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await type_line(pilot, "fit 1000")
            # The meter reads after 20 training batches; the status bar re-reads the status while a fit runs.
            await until(pilot, lambda: s.status()["bound"] is not None)
            # The reading may flip between input and compute while the fit runs: wait for the bar to agree with
            # the session at one moment, which a bar that never followed the session could not do.
            await until(pilot, lambda: f"{s.status()['bound']}-bound" in screen_text(app).splitlines()[0])
            s.submit("stop")
            await until(pilot, lambda: s.state == "idle")
    finally:
        s.close()


def test_profile_text_fits_the_width_and_bars_scale() -> None:
    assert bar(1.0, 10) == "█" * 10 and bar(0.0, 10) == "" and bar(0.55, 10) == "█████▌"
    assert bar(float("nan"), 10) == ""
    rep = {
        "n_steps": 5, "step_ms": 10.0, "overhead_ms": 0.01, "overhead_share": 0.001, "clock": "cuda",
        "input_share": 0.6, "bound": "input", "workers": 2, "notes": ["a note"],
        "parts": [{"part": "forward", "ms": 2.0, "share": 0.2}, {"part": "data: wait for workers", "ms": 6.0,
                  "share": 0.6}, {"part": "cb a_very_long_callback_name.after_batch_event", "ms": 2.0, "share": 0.2}],
        "worker_parts": [{"part": "decode", "ms": 30.0, "share": 3.0}],
    }  # fmt: skip
    for width in (40, 80, 120):
        lines = profile_text(rep, width).plain.splitlines()
        # The table fits; at 40 columns the summary lines are cut by the view (no wrap), not the rows.
        assert all(len(ln) <= width for ln in (lines if width >= 80 else lines[2:7])), (width, lines)
        assert "input-bound (data wait 60%)" in lines[0] and "clock cuda" in lines[1]
        assert lines[3].startswith("data: wait for") and "60.0%" in lines[3]  # largest first
        assert "inside the 2 loader workers" in "\n".join(lines) and lines[-1] == "a note"
    assert "no profile yet" in profile_text(None, 80).plain
