"""`labcon open [CONFIG|SESSION]`: the console on a session (no argument: the built-in dataset's default)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labcon.cli.run import add_trust_code
from labcon.errors import LabconError


def register(subparsers: Any) -> None:
    """Add the `open` subcommand."""
    p = subparsers.add_parser(
        "open",
        help="open the lab console on a session (default: the built-in dataset's default session)",
        description="Open the lab console. TARGET is a CONFIG.toml, a dataset preset (shapes, mnist_tiny, "
        "imagenette, imagewoof), the name of a saved session or a data folder. "
        "The session trains in its own process (`labcon serve`) and the console attaches to it; a session "
        "that is already live is attached to.",
    )
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="TARGET",
        help="config file, preset, saved session or data folder",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="train in the console's own process (slower training: they share one interpreter)",
    )
    add_trust_code(p)
    p.set_defaults(func=open_console)


def _say(text: str) -> None:
    print(f"labcon: {text}", file=sys.stderr, flush=True)


def terminal_problem() -> str | None:
    """Why the full-screen console cannot draw on this terminal (a pty reporting 0 columns or rows), or None."""
    import os

    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return None  # not a terminal: the console's own driver decides
    if size.columns < 1 or size.lines < 1:
        return (
            f"this terminal reports {size.columns} columns and {size.lines} rows, so the console cannot draw"
        )
    return None


def open_console(args: argparse.Namespace) -> int:
    """Start (or find) the session's process and run the console attached to it."""
    problem = terminal_problem()
    if problem:
        raise LabconError(
            f"{problem}; resize it (e.g. `stty cols 120 rows 40`), or use `labcon repl` or `labcon run`"
        )
    from labcon.remote.server import control_socket_path, server_is_live
    from labcon.remote.spawn import session_name_for, spawn_session
    from labcon.session.paths import sessions_home

    home = sessions_home(getattr(args, "sessions_dir", None))
    name = session_name_for(args.target, home)
    sock = control_socket_path(home, name)
    if server_is_live(sock):  # never open one session twice: its checkpoints and journal have one writer
        _attach(sock)
        return 0
    if args.in_process:
        return _open_in_process(args.target, home, args.trust_code)
    _say(f"starting session '{name}' in its own process (log: {sock.parent / 'serve.log'})")
    child = spawn_session(
        args.target, home, trust_code=args.trust_code, on_line=lambda line: _say(f"  {line}")
    )
    _say("opening the console ...")
    try:
        detached = _attach(sock)
    except BaseException:
        _end_child(child, crashed=True)
        raise
    if detached:
        _say(
            f"session '{name}' keeps training in process {child.pid}; `labcon attach {name}` to come back "
            f"(log: {child.log})"
        )
        return 0
    return _end_child(child, crashed=False)


def _attach(sock: Path) -> bool:
    """The console on the session served at `sock`; True when the user left the run going."""
    from labcon.remote.client import RemoteSession
    from labcon.tui.app import run_console

    remote = RemoteSession(sock)
    try:
        return run_console(remote)
    finally:
        remote.close()


def _end_child(child: Any, crashed: bool) -> int:
    """Shut the session process down (a live fit stops with a checkpoint), or leave a live fit going after a crash."""
    if crashed and child.proc.poll() is None and _is_live(child.socket):
        _say(f"the console failed; session '{child.name}' keeps training (`labcon attach {child.name}`)")
        return 1
    code = child.proc.poll()
    if code is None:
        _say(f"closing session '{child.name}'")
        code = child.shutdown()
    if code != 0:
        raise LabconError(
            f"the session process for '{child.name}' ended with exit code {code}; last lines of {child.log}:\n"
            f"{child.log_tail()}"
        )
    return 0


def _is_live(sock: Path) -> bool:
    from labcon.remote.client import ControlClient

    try:
        with ControlClient(sock, timeout=5.0) as c:
            state = (c.request("status").get("data") or {}).get("state")
    except LabconError:
        return False
    from labcon.session.messages import LIVE_STATES

    return state in LIVE_STATES


def _open_in_process(target: str | None, home: Path, trust_code: bool = False) -> int:
    """The console and the training in this process (serving the control socket while it runs)."""
    from labcon.remote.server import ControlServer, control_socket_path
    from labcon.session.session import Session
    from labcon.tui.app import run_console

    session = Session.open_or_create(target, sessions_dir=home, trust_code=trust_code)
    try:
        server = ControlServer(session, control_socket_path(session.home, session.name)).start()
    except LabconError:
        server = None  # e.g. a socket path too long for this system: the console works without it
    try:
        run_console(session)
    finally:
        if server is not None:
            server.close()
        session.close()
    return 0
