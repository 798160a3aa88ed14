"""The console's session process: `labcon open` trains in a `labcon serve` child and attaches to its socket.

Training and the console then never share an interpreter (GIL, garbage collector: an in-process console once cost
~7 % of the trainer's steps, see bench/RESULTS.md), a console that crashes or loses its terminal leaves the run
going, and "keep running headless" simply leaves the child be.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labcon.errors import LabconError
from labcon.remote.client import ControlClient
from labcon.remote.server import control_socket_path, server_is_live
from labcon.session.replay_process import start_detached

# How long a new session process may take to import torch, build its data and start serving.
START_TIMEOUT_S = 180.0
# How long the child gets to stop a live fit (at the next batch, checkpoint saved) and close after `shutdown`.
SHUTDOWN_TIMEOUT_S = 180.0
LOG_NAME = "serve.log"
LOG_TAIL_LINES = 15


def session_name_for(target: str | None, home: Path) -> str:
    """The name of the session `labcon open TARGET` opens, checked here before a child process imports torch, so
    a typo fails at once."""
    from labcon.session.target import resolve_target

    return resolve_target(target, home).name


@dataclass
class SessionProcess:
    """A running `labcon serve` child: its process, socket and log."""

    proc: subprocess.Popen[bytes]
    name: str
    socket: Path
    log: Path
    log_start: int = 0

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        """The last `n` lines this child wrote to its log."""
        try:
            with self.log.open("rb") as f:
                f.seek(self.log_start)
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            return f"(cannot read {self.log}: {e.strerror})"
        return "\n".join(lines[-n:])

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        """Ask the child to end (a live fit stops at the next batch with a checkpoint); wait; its exit code."""
        if self.proc.poll() is None:
            try:
                with ControlClient(self.socket, timeout=10.0) as c:
                    c.request("shutdown")
            except LabconError:
                self.proc.terminate()  # SIGTERM takes the same graceful path
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise LabconError(
                    f"the session process {self.pid} did not end within {timeout:g}s and was killed; "
                    f"its last checkpoint is kept (`labcon resume {self.name}`); log: {self.log}"
                ) from None
        return int(self.proc.returncode)


def spawn_session(
    target: str | None,
    home: Path,
    *,
    timeout: float = START_TIMEOUT_S,
    idle_exit: float | None = None,
    trust_code: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> SessionProcess:
    """Start `labcon serve TARGET` in its own process group and wait until its control socket answers.

    A child that exits first raises LabconError with the end of its log (its own clear error message).
    `on_line` gets each line the child logs while starting (what it is doing: a silent wait looked like a hang).
    """
    from labcon.session.target import resolve_target

    t = resolve_target(target, home)
    name = t.name
    sock = control_socket_path(home, name)
    if server_is_live(sock):
        raise LabconError(f"session '{name}' is already served on {sock}; attach with `labcon attach {name}`")
    log = sock.parent / LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    args = ["serve", *([t.argument] if t.argument is not None else [])]
    if idle_exit is not None:
        args += ["--idle-exit", str(idle_exit)]
    if trust_code:
        args += ["--trust-code"]
    proc = start_detached(home, args, log, f"serve {name}")
    child = SessionProcess(proc, name, sock, log, start)
    try:
        _wait_until_served(child, timeout, on_line)
    except BaseException:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        raise
    return child


def _wait_until_served(
    child: SessionProcess, timeout: float, on_line: Callable[[str], None] | None = None
) -> None:
    end = time.monotonic() + timeout
    pos = child.log_start
    while not server_is_live(child.socket):
        if on_line is not None:
            pos = _relay_log(child.log, pos, on_line)
        code = child.proc.poll()
        if code is not None:
            raise LabconError(
                f"the session process for '{child.name}' ended (exit code {code}) before serving:\n"
                f"{child.log_tail()}\n(full log: {child.log})"
            )
        if time.monotonic() > end:
            raise LabconError(
                f"the session process for '{child.name}' did not serve {child.socket} within {timeout:g}s; "
                f"last lines of {child.log}:\n{child.log_tail()}"
            )
        time.sleep(0.1)
    if on_line is not None:
        _relay_log(child.log, pos, on_line)


def _relay_log(log: Path, pos: int, on_line: Callable[[str], None]) -> int:
    """Hand the complete lines written to `log` after byte `pos` to `on_line`; the new position."""
    try:
        with log.open("rb") as f:
            f.seek(pos)
            data = f.read()
    except OSError:
        return pos
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        if line.strip() and not line.startswith("--- labcon serve"):
            on_line(line)
    return pos + end
