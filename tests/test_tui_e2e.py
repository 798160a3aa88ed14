"""End to end in a real terminal: tmux runs the console on a live FakeSession, we type and read the screen."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def _wait_for(session: str, needle: str, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if needle in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; screen was:\n{screen}")


def _start(cmd: str) -> str:
    """A detached 100x30 tmux session running `cmd`; its name."""
    session = f"labcon-e2e-{uuid.uuid4().hex[:8]}"
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd)
    return session


def _escape(session: str) -> None:
    # A lone Esc: keys sent right after it would be read as alt+key.
    _tmux("send-keys", "-t", session, "Escape")
    time.sleep(0.3)


def test_console_in_tmux(tmp_path: Path):
    log = tmp_path / "out.txt"
    session = _start(f"cd {ROOT} && {sys.executable} tests/fake_console.py {log}; sleep 30")
    try:
        screen = _wait_for(session, "1 Training")
        assert "running" in screen
        _wait_for(session, "ETA")  # live progress arrives through the pump
        _tmux("send-keys", "-t", session, "space")
        _wait_for(session, "● paused")
        # One burst, as a fast typist or a paste delivers it: every key after ':' must reach the command
        # line (a deferred focus once let 's' stop the run and '2' switch panes).
        _tmux("send-keys", "-t", session, "-l", ":set lr=0.02")
        _tmux("send-keys", "-t", session, "Enter")
        _escape(session)
        # Applied: numbered in the plots' change legend (the status bar's lr then follows the rescaled schedule,
        # so its value depends on when the fake's next batches run).
        _wait_for(session, "set lr=0.02 (epoch")
        _tmux("send-keys", "-t", session, "2")
        _wait_for(session, "layers.1.conv2 dead")
        _tmux("send-keys", "-t", session, "6")
        _wait_for(session, "› set lr=0.02")
        _tmux("send-keys", "-t", session, "q")
        _wait_for(session, "What should happen to it?")
        _escape(session)  # cancel
        _tmux("send-keys", "-t", session, "space")  # resume
        _wait_for(session, "● running")
        _tmux("send-keys", "-t", session, "q")
        _wait_for(session, "What should happen to it?")
        _tmux("send-keys", "-t", session, "h")  # keep running headless
        end = time.monotonic() + 15
        while time.monotonic() < end and "exited" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.2)
        out = (
            log.read_text()
            if log.exists()
            else "no output; screen:\n" + _tmux("capture-pane", "-p", "-t", session)
        )
        assert "received=['pause', 'set lr=0.02', 'resume']" in out, out[-2000:]
        assert "detached=True" in out
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_labcon_in_tmux(tmp_path: Path):
    """The real `labcon`: its session process starts, trains one epoch from the console, and quitting ends it."""
    home = tmp_path / "sessions"
    session = _start(
        f"cd {ROOT} && {sys.executable} -m labcon --sessions-dir {home}; echo LABCON-EXIT=$?; sleep 60"
    )
    try:
        _wait_for(session, "1 Training", timeout=120)
        _wait_for(session, "● idle", timeout=60)
        _tmux("send-keys", "-t", session, "-l", ":fit 1")
        _tmux("send-keys", "-t", session, "Enter")
        _escape(session)
        _tmux("send-keys", "-t", session, "6")
        _wait_for(session, "fit done", timeout=180)
        _tmux("send-keys", "-t", session, "q")  # idle: quits at once, and the session process is shut down
        screen = _wait_for(session, "LABCON-EXIT=", timeout=120)
        assert "LABCON-EXIT=0" in screen, screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert not (home / "default" / "control.sock").exists()  # the child is gone and cleaned up
    log = (home / "default" / "serve.log").read_text()
    assert "applied 'fit 1'" in log and "fit done" in log, log
    assert (home / "default" / "checkpoints").is_dir() and (home / "journal.db").is_file()


def _type_line(session: str, text: str) -> None:
    """':' + text + Enter as one burst (the priority ':' focuses the command line first), then leave the line."""
    _tmux("send-keys", "-t", session, "-l", f":{text}")
    _tmux("send-keys", "-t", session, "Enter")
    _escape(session)


def test_live_loop_in_tmux(tmp_path: Path):
    """The loop a new user lives, on the real `labcon` in a fresh directory: open -> fit_one_cycle 3 -> set lr
    mid-fit (numbered marker and legend) -> the Journal pane lists the run without reopening -> R replays it."""
    from tests.helpers import make_image_folder, tiny_config

    work = tmp_path / "fresh"
    work.mkdir()
    # Small pictures, enough of them that a fit lasts long enough to change it mid-way on a busy machine.
    data = make_image_folder(tmp_path / "img", n_train=160, size=16)
    (work / "loop.toml").write_text(tiny_config(data, name="loop", epochs=3))
    session = _start(
        f"cd {work} && PYTHONPATH={ROOT} {sys.executable} -m labcon open loop.toml; echo LABCON-EXIT=$?; sleep 60"
    )
    try:
        _tmux("resize-window", "-t", session, "-x", "120", "-y", "36")
        screen = _wait_for(session, "● idle", timeout=180)
        assert "fit_one_cycle 5" in screen  # the first screen suggests a first command
        _type_line(session, "fit_one_cycle 3")
        _wait_for(session, "● running", timeout=60)
        _wait_for(
            session, "epoch 1/3", timeout=120
        )  # the fit's own epochs, in the status bar and the fit bar
        _type_line(session, "set lr=1e-3")
        screen = _wait_for(session, "1 set lr=0.001 (epoch", timeout=120)  # the legend under the plots
        assert "changes" in screen
        _tmux("send-keys", "-t", session, "5")
        screen = _wait_for(session, "running", timeout=30)  # the run, listed while it trains
        assert "e+09" not in screen
        _tmux("send-keys", "-t", session, "1")
        _wait_for(session, "epochs done 3", timeout=300)
        _tmux("send-keys", "-t", session, "5")
        end = time.monotonic() + 60  # the run's row says done (the status bar's "epochs done" is not it)
        while not re.search(r"^\s*1\s+done\s", _tmux("capture-pane", "-p", "-t", session), re.M):
            assert time.monotonic() < end, _tmux("capture-pane", "-p", "-t", session)
            time.sleep(0.3)
        _tmux("send-keys", "-t", session, "R")
        _tmux("send-keys", "-t", session, "6")
        # What R starts is the session's answer to `replay 1`; the console must send it and show the answer.
        _wait_for(session, "› replay 1", timeout=30)
        screen = _wait_for(session, "replay", timeout=60)
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
        time.sleep(1)
        subprocess.run(["tmux", "send-keys", "-t", session, "s"], capture_output=True)
        time.sleep(5)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_no_typed_or_pasted_command_is_lost_while_training(tmp_path: Path):
    """Bursts of typed commands and a bracketed multi-line paste, sent while a fit trains: every one is applied,
    in order (a paste used to keep only its first line)."""
    from tests.helpers import make_image_folder, tiny_config

    work = tmp_path / "fresh"
    work.mkdir()
    data = make_image_folder(tmp_path / "img", n_train=160, size=16)
    extra = 'schedule = "constant"\n'
    (work / "busy.toml").write_text(tiny_config(data, name="busy", epochs=1000, extra=extra))
    session = _start(f"cd {work} && PYTHONPATH={ROOT} {sys.executable} -m labcon open busy.toml; sleep 60")
    try:
        _wait_for(session, "● idle", timeout=180)
        _type_line(session, "fit 1000")
        _wait_for(session, "● running", timeout=60)
        typed = [f"set wd=0.0{i}" for i in range(1, 10)]
        for text in typed:  # no pause between commands: as fast as tmux delivers keys
            _tmux("send-keys", "-t", session, "-l", f":{text}")
            _tmux("send-keys", "-t", session, "Enter")
        pasted = [f"set mom=0.9{i}" for i in range(1, 6)]
        _tmux("set-buffer", "-b", "lc", "\n".join(pasted) + "\n")
        _tmux("send-keys", "-t", session, "-l", ":")
        _tmux("paste-buffer", "-p", "-b", "lc", "-t", session)  # -p: bracketed, as a terminal pastes
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
            _tmux("capture-pane", "-p", "-t", session),
        )
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], capture_output=True)
        time.sleep(0.5)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
        time.sleep(1)
        subprocess.run(["tmux", "send-keys", "-t", session, "s"], capture_output=True)
        time.sleep(5)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
