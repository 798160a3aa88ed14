"""`labcon send`, `labcon attach` and `labcon repl`: steering sessions from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labcon.errors import LabconError
from labcon.session.paths import HISTORY_FILE


def register(subparsers: Any) -> None:
    """Add the send, attach and repl subcommands."""
    p = subparsers.add_parser(
        "send",
        help="send one command to a live session and print the reply (exit 1 when refused)",
        description='Send one command, e.g. labcon send mnist "set lr=1e-3". Exit status 0 ok, 1 refused, 2 error.',
    )
    p.add_argument("name", metavar="NAME", help="session name (its folder under the sessions directory)")
    p.add_argument("command", nargs="+", metavar="COMMAND", help='the command line, e.g. "set lr=1e-3"')
    p.add_argument("--json", action="store_true", help="print the whole reply as JSON (ok, text, data)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply (default 30)")
    p.set_defaults(func=send_command)

    p = subparsers.add_parser(
        "attach",
        help="open the console (or --repl) on a live headless session; detaching leaves it training",
        description="Attach the console (or the line console with --repl) to a session already training "
        "headless (`labcon run`, or a console left with 'keep running'). Quitting with 'keep running' "
        "detaches again and the run continues.",
    )
    p.add_argument("name", metavar="NAME", help="session name")
    p.add_argument("--repl", action="store_true", help="the line console instead of the full-screen one")
    p.set_defaults(func=attach)

    p = subparsers.add_parser(
        "repl",
        help="the line console (prompt, history, tab completion) on a session or config",
        description="Open a session (a CONFIG.toml, a dataset preset, a saved session's name or a data folder) "
        "in the line console. "
        "A session already running headless is attached to instead.",
    )
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="TARGET",
        help="config file, preset, saved session or data folder",
    )
    p.add_argument("--no-serve", action="store_true", help="do not listen on the session's control socket")
    p.set_defaults(func=repl)


def _socket_for(sessions_dir: str | None, name: str) -> Path:
    from labcon.remote.server import control_socket_path
    from labcon.session.paths import sessions_home, validate_session_name

    return control_socket_path(sessions_home(sessions_dir), validate_session_name(name))


def send_command(args: argparse.Namespace) -> int:
    """Print the reply to one command; 0 when accepted, 1 when refused."""
    from labcon.remote.client import ControlClient

    text = " ".join(args.command)
    with ControlClient(
        _socket_for(getattr(args, "sessions_dir", None), args.name), timeout=args.timeout
    ) as c:
        reply = c.submit(text)
    if args.json:
        print(json.dumps(reply.to_dict()))
    else:
        from labcon.progress import visible

        print(visible(reply.text), file=sys.stdout if reply.ok else sys.stderr)
    return 0 if reply.ok else 1


def _run_front_end(session: Any, history: Path, want_repl: bool) -> int:
    from labcon.cli.tui import terminal_problem
    from labcon.repl import run_repl

    problem = None if want_repl else terminal_problem()
    if problem:
        print(f"labcon: {problem}; using the line console", file=sys.stderr)
    if want_repl or problem:
        return run_repl(session, history)
    from labcon.tui.app import run_console

    run_console(session)
    return 0


def attach(args: argparse.Namespace) -> int:
    """Attach a front end to a live session over its control socket."""
    from labcon.remote.client import RemoteSession

    path = _socket_for(getattr(args, "sessions_dir", None), args.name)
    session = RemoteSession(path)
    try:
        return _run_front_end(session, path.parent / HISTORY_FILE, args.repl)
    finally:
        session.close()


def repl(args: argparse.Namespace) -> int:
    """The line console on a local session (serving its control socket), or attached to a live one."""
    from labcon.remote.server import ControlServer, server_is_live
    from labcon.repl import run_repl
    from labcon.session.session import Session
    from labcon.session.target import resolve_target

    sessions_dir = getattr(args, "sessions_dir", None)
    target = args.target
    name = resolve_target(target, sessions_dir).name
    if server_is_live(_socket_for(sessions_dir, name)):
        print(f"labcon: session '{name}' is running elsewhere; attaching", file=sys.stderr)
        args.name, args.repl = name, True
        return attach(args)
    session = Session.open_or_create(target, sessions_dir=sessions_dir)
    server = None
    try:
        if not args.no_serve:
            try:
                server = ControlServer(session, _socket_for(sessions_dir, session.name)).start()
            except LabconError as e:
                print(f"labcon: not serving the control socket: {e}", file=sys.stderr)
        return run_repl(session, Path(session.dir) / HISTORY_FILE)
    finally:
        if server is not None:
            server.close()
        session.close()
