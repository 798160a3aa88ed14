"""Driving a real terminal for the end-to-end scenarios: tmux runs a command, we type and read the screen."""

from __future__ import annotations

import re
import subprocess
import time
import uuid


def tmux(*args: str) -> str:
    """Run one tmux command; its stdout."""
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def capture(session: str) -> str:
    """What the session's window shows now."""
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, needle: str, timeout: float = 20.0) -> str:
    """The screen once `needle` is on it (AssertionError with the last screen after `timeout` s)."""
    end = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < end:
        shown = capture(session)
        if needle in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; screen was:\n{shown}")


def wait_for_row(session: str, pattern: str, timeout: float) -> str:
    """The screen once a line of it matches `pattern` (a regex, per line)."""
    end = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < end:
        shown = capture(session)
        if re.search(pattern, shown, re.M):
            return shown
        time.sleep(0.3)
    raise AssertionError(f"no line matched {pattern!r}; screen was:\n{shown}")


def start(cmd: str, width: int = 100, height: int = 30) -> str:
    """A detached tmux session running `cmd`; its name."""
    session = f"labcon-e2e-{uuid.uuid4().hex[:8]}"
    tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), cmd)
    return session


def keys(session: str, *names: str) -> None:
    """Send tmux key names (`Enter`, `space`, `5`)."""
    tmux("send-keys", "-t", session, *names)


def escape(session: str) -> None:
    """A lone Esc: keys sent right after it would be read as alt+key."""
    keys(session, "Escape")
    time.sleep(0.3)


def type_line(session: str, text: str) -> None:
    """':' + text + Enter as one burst (the priority ':' focuses the command line first), then leave the line."""
    tmux("send-keys", "-t", session, "-l", f":{text}")
    keys(session, "Enter")
    escape(session)


def quit_console(session: str) -> None:
    """Ask the console to quit, stopping a live fit, then end the tmux session."""
    for key, pause in (("Escape", 0.5), ("q", 1.0), ("s", 5.0)):
        subprocess.run(["tmux", "send-keys", "-t", session, key], capture_output=True)
        time.sleep(pause)
    end_session(session)


def end_session(session: str) -> None:
    """End the tmux session (and what runs in it); quiet if it has ended already."""
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
