"""Where sessions and the journal live on disk, and which session names are safe to use as folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

from labcon.errors import LabconError

JOURNAL_FILE = "journal.db"
# Command history in a session's folder, shared by the REPL and the console (prompt-toolkit's FileHistory format).
HISTORY_FILE = "repl_history"
# The session `labcon` opens with no arguments (on the built-in dataset).
DEFAULT_SESSION = "default"
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
NAME_RULE = "1-64 characters from letters, digits, '.', '_' and '-', starting with a letter or digit (no '/', no '..')"


def sessions_home(arg: str | os.PathLike[str] | None = None) -> Path:
    """The sessions directory: `arg` (--sessions-dir) if given, else $LABCON_HOME, else ./sessions."""
    if arg:
        return expand_user(arg, "--sessions-dir")
    env = os.environ.get("LABCON_HOME")
    if env:
        return expand_user(env, "LABCON_HOME")
    return Path("sessions")


def expand_user(path: str | os.PathLike[str], what: str) -> Path:
    """`path` with a leading ~ or ~user expanded; a LabconError naming `what` when that home is unknown."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory"
        raise LabconError(
            f"{what} is {str(path)!r}, but its '~' names no home directory on this machine (no such user, or "
            "HOME unset); give a full path instead"
        ) from None


def journal_path(arg: str | os.PathLike[str] | None = None) -> Path:
    """The journal database inside the sessions directory chosen by `sessions_home(arg)`."""
    return sessions_home(arg) / JOURNAL_FILE


def validate_session_name(name: str) -> str:
    """Return `name` if it is safe as a folder name under the sessions directory, else raise LabconError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or not name[0].isalnum() or ".." in name:
        raise LabconError(f"invalid session name {name!r}: use {NAME_RULE}")
    return name


def config_file(target: str | os.PathLike[str]) -> Path | None:
    """TARGET as a config file when it names one (a *.toml name or an existing file); None for a session name."""
    path = Path(target)
    if path.suffix != ".toml" and not path.is_file():
        return None
    if not path.is_file():
        raise LabconError(f"config file {path} does not exist")
    return path
