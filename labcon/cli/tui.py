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
    """Open (or create) the session, run the console, close the session when the console ends."""
    try:
        from labcon.session.session import Session
    except ImportError as e:
        raise LabconError(
            f"the session layer is not available ({e}); the console needs labcon.session.session"
        ) from e
    from labcon.tui.app import run_console

    session = Session.open_or_create(args.target, sessions_dir=getattr(args, "sessions_dir", None))
    try:
        run_console(session)
    finally:
        closer = getattr(session, "close", None)
        if callable(closer):
            closer()
    return 0
