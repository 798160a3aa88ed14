"""End to end in a real terminal: tmux runs the console on a live FakeSession, we type and read the screen."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tmux import (
    capture,
    end_session,
    escape,
    keys,
    quit_console,
    start,
    tmux,
    type_line,
    wait_for,
    wait_for_row,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def test_console_in_tmux(tmp_path: Path):
    log = tmp_path / "out.txt"
    session = start(f"cd {ROOT} && {sys.executable} tests/fake_console.py {log}; sleep 30")
    try:
        screen = wait_for(session, "1 Training")
        assert "running" in screen
        wait_for(session, "ETA")  # live progress arrives through the pump
        keys(session, "space")
        wait_for(session, "● paused")
        # One burst, as a fast typist or a paste delivers it: every key after ':' must reach the command
        # line (a deferred focus once let 's' stop the run and '2' switch panes).
        tmux("send-keys", "-t", session, "-l", ":set lr=0.02")
        keys(session, "Enter")
        escape(session)
        # Applied: numbered in the plots' change legend (the status bar's lr then follows the rescaled schedule,
        # so its value depends on when the fake's next batches run).
        wait_for(session, "set lr=0.02 (epoch")
        keys(session, "2")
        wait_for(session, "layers.1.conv2 dead")
        keys(session, "6")
        wait_for(session, "› set lr=0.02")
        keys(session, "q")
        wait_for(session, "What should happen to it?")
        escape(session)  # cancel
        keys(session, "space")  # resume
        wait_for(session, "● running")
        keys(session, "q")
        wait_for(session, "What should happen to it?")
        keys(session, "h")  # keep running headless
        end = time.monotonic() + 15
        while time.monotonic() < end and "exited" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.2)
        out = log.read_text() if log.exists() else "no output; screen:\n" + capture(session)
        assert "received=['pause', 'set lr=0.02', 'resume']" in out, out[-2000:]
        assert "detached=True" in out
    finally:
        end_session(session)


def test_labcon_in_tmux(tmp_path: Path):
    """The real `labcon`: its session process starts, trains one epoch from the console, and quitting ends it."""
    home = tmp_path / "sessions"
    session = start(
        f"cd {ROOT} && {sys.executable} -m labcon --sessions-dir {home}; echo LABCON-EXIT=$?; sleep 60"
    )
    try:
        wait_for(session, "1 Training", timeout=120)
        wait_for(session, "● idle", timeout=60)
        tmux("send-keys", "-t", session, "-l", ":fit 1")
        keys(session, "Enter")
        escape(session)
        keys(session, "6")
        wait_for(session, "fit done", timeout=180)
        keys(session, "q")  # idle: quits at once, and the session process is shut down
        screen = wait_for(session, "LABCON-EXIT=", timeout=120)
        assert "LABCON-EXIT=0" in screen, screen
    finally:
        end_session(session)
    assert not (home / "default" / "control.sock").exists()  # the child is gone and cleaned up
    log = (home / "default" / "serve.log").read_text()
    assert "applied 'fit 1'" in log and "fit done" in log, log
    assert (home / "default" / "checkpoints").is_dir() and (home / "journal.db").is_file()


def _journal_rows(work: Path) -> list[dict]:
    """`labcon journal search --json` in `work` (the user's directory): every run, newest first."""
    out = subprocess.run(
        [sys.executable, "-m", "labcon", "journal", "search", "--json"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_live_loop_in_tmux(tmp_path: Path):
    """The loop a new user lives, on the real `labcon` in a fresh directory: open -> fit_one_cycle 3 -> set lr
    mid-fit (numbered marker and legend) -> the Journal pane lists the run without reopening -> R replays it (its
    run appears in the pane and in `labcon journal`, done) -> a branch with a higher lr from a shell beside it
    trains on to the parent's 3 epochs, and the pane shows its per-epoch deviation from the parent, not zero."""
    from tests.helpers import make_image_folder, tiny_config

    work = tmp_path / "fresh"
    work.mkdir()
    # Small pictures, enough of them that a fit lasts long enough to change it mid-way on a busy machine.
    data = make_image_folder(tmp_path / "img", n_train=160, size=16)
    (work / "loop.toml").write_text(tiny_config(data, name="loop", epochs=3))
    session = start(
        f"cd {work} && PYTHONPATH={ROOT} {sys.executable} -m labcon open loop.toml; echo LABCON-EXIT=$?; sleep 60"
    )
    branch = ""
    try:
        tmux("resize-window", "-t", session, "-x", "120", "-y", "36")
        screen = wait_for(session, "● idle", timeout=180)
        assert "fit_one_cycle 5" in screen  # the first screen suggests a first command
        type_line(session, "fit_one_cycle 3")
        wait_for(session, "● running", timeout=60)
        wait_for(session, "epoch 1/3", timeout=120)  # the fit's own epochs, in the status bar and the fit bar
        type_line(session, "set lr=1e-3")
        screen = wait_for(session, "1 set lr=0.001 (epoch", timeout=120)  # the legend under the plots
        assert "changes" in screen
        keys(session, "5")
        screen = wait_for(session, "running", timeout=30)  # the run, listed while it trains
        assert "e+09" not in screen
        keys(session, "1")
        wait_for(session, "epochs done 3", timeout=300)
        keys(session, "5")
        # The run's row says done (the status bar's "epochs done" is not it).
        wait_for_row(session, r"^\s*1\s+done\s", timeout=60)
        keys(session, "R")
        keys(session, "6")
        # What R starts is the session's answer to `replay 1`; the console must send it and show the answer.
        wait_for(session, "› replay 1", timeout=30)
        screen = wait_for(session, "as session 'loop-replay1'", timeout=60)
        assert "Traceback" not in screen
        # Meanwhile a branch, as a user types it in a shell beside the console (the console's `replay` takes a
        # run only): run 1's first epoch replayed, then a 30x higher lr, trained on to run 1's 3 epochs. Its own
        # tmux session: a second window would resize the console's to tmux's default size.
        branch = start(
            f"cd {work} && PYTHONPATH={ROOT} {sys.executable} -m labcon replay 1 --until 1 --then 'set lr=3e-2' "
            "--session loop-branch; echo BRANCH-EXIT=$?; sleep 120"
        )
        tmux("resize-window", "-t", branch, "-x", "160", "-y", "40")
        end = time.monotonic() + 400
        out = ""
        while "BRANCH-EXIT=" not in out:
            assert time.monotonic() < end, out
            time.sleep(1)
            out = tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", branch)
        assert "BRANCH-EXIT=0" in out, out
        found = re.search(r"replay of run 1 -> run (\d+)", out)
        assert found and "branch after epoch 1 with 'set lr=0.03', 3 epoch(s) trained" in out, out
        branch_run = int(found.group(1))
        # R's replay: its run (id from `labcon journal`) appears in the Journal pane, which it sends nothing, and
        # ends done there.
        end = time.monotonic() + 120
        while not (replays := [r for r in _journal_rows(work) if r["session"] == "loop-replay1"]):
            assert time.monotonic() < end, "R's replay never journaled a run"
            time.sleep(2)
        keys(session, "5")
        wait_for_row(session, rf"^\s*{replays[0]['id']}\s+done\s", timeout=400)
        runs = {r["id"]: r for r in _journal_rows(work)}
        replays = [r for r in runs.values() if r["session"] == "loop-replay1"]
        assert [r["status"] for r in replays] == ["done"] and replays[0]["parent_id"] == 1, replays
        assert runs[branch_run]["status"] == "done" and runs[branch_run]["parent_id"] == 1
        # The branch in the pane: filtered to its run, Enter shows how far it went from its parent, per epoch.
        keys(session, "/")
        tmux("send-keys", "-t", session, "-l", f"run:{branch_run}")
        keys(session, "Enter")
        rows = r"^\s*(\d+)\s+(?:done|running|stopped|failed|crashed)\s"
        end = time.monotonic() + 60
        screen = capture(session)
        while re.findall(rows, screen, re.M) != [str(branch_run)]:
            assert time.monotonic() < end, screen
            time.sleep(0.3)
            screen = capture(session)
        # Enter on the row (the results take the focus once shown; an Enter that beat it re-ran the search).
        end = time.monotonic() + 60
        while "minus parent:" not in screen:
            assert time.monotonic() < end, screen
            keys(session, "Enter")
            for _ in range(20):
                time.sleep(0.3)
                screen = capture(session)
                if "minus parent:" in screen:
                    break
        assert "branch of run 1" in screen and "after epoch 1 with:" in screen and "set lr=0.03" in screen
        # From the branch point to the parent's length, every metric, not all zero.
        block = screen.split("minus parent:")[1]
        assert re.search(r"epoch 1\b.*\n.*valid_loss [+-]", block) and re.search(r"epoch 2\b", block), screen
        values = [float(v) for v in re.findall(r"(?:loss|accuracy) ([+-][0-9.]+(?:e[+-]?\d+)?)", block)]
        assert len(values) == 6 and any(v != 0 for v in values), screen  # 3 metrics x 2 epochs
        assert "Traceback" not in screen
    finally:
        quit_console(session)
        if branch:
            end_session(branch)


def test_no_typed_or_pasted_command_is_lost_while_training(tmp_path: Path):
    """Bursts of typed commands and a bracketed multi-line paste, sent while a fit trains: every one is applied,
    in order (a paste used to keep only its first line)."""
    from tests.helpers import make_image_folder, tiny_config

    work = tmp_path / "fresh"
    work.mkdir()
    data = make_image_folder(tmp_path / "img", n_train=160, size=16)
    extra = 'schedule = "constant"\n'
    (work / "busy.toml").write_text(tiny_config(data, name="busy", epochs=1000, extra=extra))
    session = start(f"cd {work} && PYTHONPATH={ROOT} {sys.executable} -m labcon open busy.toml; sleep 60")
    try:
        wait_for(session, "● idle", timeout=180)
        type_line(session, "fit 1000")
        wait_for(session, "● running", timeout=60)
        typed = [f"set wd=0.0{i}" for i in range(1, 10)]
        for text in typed:  # no pause between commands: as fast as tmux delivers keys
            tmux("send-keys", "-t", session, "-l", f":{text}")
            keys(session, "Enter")
        pasted = [f"set mom=0.9{i}" for i in range(1, 6)]
        tmux("set-buffer", "-b", "lc", "\n".join(pasted) + "\n")
        tmux("send-keys", "-t", session, "-l", ":")
        tmux("paste-buffer", "-p", "-b", "lc", "-t", session)  # -p: bracketed, as a terminal pastes
        log = work / "sessions" / "busy" / "serve.log"
        want = [*typed, *pasted]
        end = time.monotonic() + 120
        applied: list[str] = []
        while time.monotonic() < end:
            text = log.read_text() if log.exists() else ""
            applied = [ln.split("'")[1] for ln in text.splitlines() if ln.startswith("applied '")]
            if all(w in applied for w in want):
                break
            time.sleep(0.5)
        assert [a for a in applied if a in want] == want, (
            applied,
            capture(session),
        )
    finally:
        quit_console(session)
