"""`labcon open [CONFIG|SESSION]`: the console on a session (no argument: the built-in dataset's default)."""

from __future__ import annotations

import argparse
from typing import Any

from labcon.errors import LabconError


def register(subparsers: Any) -> None:
    """Add the `open` subcommand."""
    p = subparsers.add_parser(
        "open",
        help="open the lab console on a session (default: the built-in dataset's default session)",
        description="Open the lab console. TARGET is a session CONFIG.toml or the name of a saved session.",
    )
    p.add_argument(
        "target", nargs="?", default=None, metavar="CONFIG|SESSION", help="config file or session name"
    )
    p.set_defaults(func=open_console)


def open_console(args: argparse.Namespace) -> int:
    """Open (or create) the session and serve its control socket while the console runs.

    A session that is already live elsewhere is attached to instead of being opened twice.
    """
    from labcon.control.server import ControlServer, control_socket_path, server_is_live
    from labcon.session.paths import sessions_home
    from labcon.session.session import DEFAULT_SESSION, Session
    from labcon.tui.app import run_console

    home = sessions_home(getattr(args, "sessions_dir", None))
    name = args.target or DEFAULT_SESSION
    if "/" not in name and not name.endswith(".toml"):
        sock = control_socket_path(home, name)
        if server_is_live(sock):
            from labcon.control.client import RemoteSession

            remote = RemoteSession(sock)
            try:
                run_console(remote)
            finally:
                remote.close()
            return 0
    session = Session.open_or_create(args.target, sessions_dir=home)
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
