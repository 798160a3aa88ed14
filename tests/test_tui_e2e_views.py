"""End to end in a real terminal: the console's views on the real `labcon` in a fresh directory — the schedule
plan, the input/compute meter, the model summary, the data summary's stage times, the profile view, and a text
session's decoded batches."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import make_image_folder, tiny_config, write_labelled_texts
from tests.tmux import capture, keys, quit_console, start, type_line, wait_for, wait_for_row

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def _open(work: Path, config: str) -> str:
    """`labcon open CONFIG` in `work`, in a 120x36 window; the tmux session once the console is idle."""
    # COLUMNS/LINES as a shell that exports them (or a parent that loaded GNU readline) leaves them: the console
    # must size itself from the terminal anyway.
    session = start(
        f"cd {work} && export COLUMNS=80 LINES=24 && PYTHONPATH={ROOT} {sys.executable} -m labcon open {config}; "
        "echo LABCON-EXIT=$?; sleep 60",
        width=120,
        height=36,
    )
    shown = wait_for(session, "● idle", timeout=180)
    lines = shown.rstrip("\n").split("\n")
    assert max(len(ln.rstrip()) for ln in lines) > 100 and "q Quit" in lines[35], shown  # the whole 120x36
    return session


def test_console_views_in_tmux(tmp_path: Path):
    """Image session: while a one-cycle fit runs, the Training pane draws its planned schedule, the status bar says
    whether the run waits on data, and the Hooks pane carries the model summary; the Data pane times each stage per
    item; after the fit, `profile 10` is drawn in the Console pane."""
    work = tmp_path / "fresh"
    work.mkdir()
    data = make_image_folder(tmp_path / "img", n_train=160, size=16)
    (work / "views.toml").write_text(tiny_config(data, name="views", epochs=2))
    session = _open(work, "views.toml")
    try:
        type_line(session, "fit_one_cycle 200")
        wait_for(session, "● running", timeout=60)
        shown = wait_for(session, "plan", timeout=60)  # the dim guide line's legend in the lr/mom plots
        assert "lr" in shown
        # The meter reads after 20 training batches (20 steps of 8 pictures: seconds).
        wait_for_row(session, r"^.*● running.*\b(input-bound \d+%|compute-bound)", timeout=120)
        keys(session, "3")
        shown = wait_for(session, "MACs/item", timeout=60)
        total = re.search(r"model: ([\d,]+) params", shown)
        assert total and int(total.group(1).replace(",", "")) > 0, shown
        keys(session, "4")
        shown = wait_for(session, "time per item", timeout=60)  # the data summary times each stage per item
        assert re.search(r"\d+\.\d+ ms", shown) and "Traceback" not in shown, shown
        type_line(session, "stop")
        wait_for(session, "● idle", timeout=120)
        type_line(session, "profile 10")
        keys(session, "6")
        shown = wait_for(session, "profile of 10 steps", timeout=120)
        wait_for(session, "share of the step", timeout=10)
        assert "forward" in capture(session) and "Traceback" not in shown
    finally:
        quit_console(session)


def test_text_batch_in_tmux(tmp_path: Path):
    """Text session: the Data pane decodes a training batch of the language model (special tokens, the next token
    of each row) and `r` draws another."""
    work = tmp_path / "fresh"
    work.mkdir()
    write_labelled_texts(work, 60)
    (work / "lm.toml").write_text(
        'name = "lm"\nseed = 1\n[data]\nkind = "text_lm"\npath = "texts.csv"\nvalid_col = "is_valid"\n'
        "min_freq = 1\nbs = 8\nbptt = 10\nnum_workers = 0\n"
        '[model]\narch = "awd_lstm"\nemb_sz = 16\nn_hid = 24\nn_layers = 2\n'
        '[train]\nepochs = 1\nlr = 1e-2\ndevice = "cpu"\n'
    )
    session = _open(work, "lm.toml")
    try:
        keys(session, "4")
        shown = wait_for(session, "xxbos", timeout=60)
        assert "language model" in shown and "->" in shown, shown  # each row's next token
        keys(session, "r")
        wait_for(session, "draw #2", timeout=30)
        assert "Traceback" not in capture(session)
    finally:
        quit_console(session)
