"""End to end in a real terminal: changes typed into a live fit on the real `labcon` in a fresh directory — a
callback with a bad option is refused before anything is installed, and `freeze` in the middle of a one-cycle fit
splits the optimizer's param groups while the fit trains on."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import make_image_folder, tiny_config
from tests.tmux import capture, keys, quit_console, start, type_line, wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def test_bad_callback_option_and_freeze_mid_fit_in_tmux(tmp_path: Path):
    work = tmp_path / "fresh"
    work.mkdir()
    data = make_image_folder(tmp_path / "img", n_train=160, size=16)
    (work / "live.toml").write_text(tiny_config(data, name="live", epochs=2, telemetry=False))
    session = start(
        f"cd {work} && PYTHONPATH={ROOT} {sys.executable} -m labcon open live.toml; echo LABCON-EXIT=$?; sleep 60",
        width=120,
        height=36,
    )
    try:
        wait_for(session, "● idle", timeout=180)
        type_line(session, "fit_one_cycle 200")
        wait_for(session, "● running", timeout=60)
        keys(session, "6")  # the Console pane: each command and its reply
        type_line(session, "cb add early_stopping patience=abc")
        wait_for(session, "patience must be a whole number, got 'abc'", timeout=60)
        type_line(session, "freeze")  # applied at the end of this epoch
        shown = wait_for(session, "groups 0..0 of 2 frozen", timeout=120)
        assert "failed" not in shown and "Traceback" not in shown, shown
        wait_for(session, "epoch 1", timeout=120)  # the next epoch trains, on two param groups
        assert "● running" in capture(session)
        type_line(session, "stop")
        shown = wait_for(session, "● idle", timeout=120)
        assert "IndexError" not in shown and "training failed" not in shown, shown
    finally:
        quit_console(session)
