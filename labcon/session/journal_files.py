"""The journal's file on disk: created private, and what to do when it is damaged."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from labcon.errors import LabconError


def create_private(p: Path) -> None:
    """A new journal (and its folder) readable by its owner only: it holds configs, data paths and notes.
    SQLite gives the -wal/-shm files the database file's mode."""
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not p.exists():
            os.close(os.open(p, os.O_RDWR | os.O_CREAT, 0o600))
        elif p.stat().st_uid == os.getuid() and p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)  # an older labcon created it 0644: tighten our own file
    except FileExistsError:
        raise LabconError(f"cannot create the journal in {p.parent}: it is a file, not a folder") from None
    except OSError as e:
        raise LabconError(f"cannot create the journal {p}: {e.strerror or e}") from None


def recovery(p: Path) -> str:
    """What a user can do about a damaged journal (nothing is deleted for them)."""
    return (
        f"To recover: keep a copy and start a fresh journal with `mv {p} {p}.damaged` (checkpoints are kept and "
        f"training continues under new run ids); or restore {p.name} from a backup; `sqlite3 {p}.damaged .recover` "
        "may rescue old rows"
    )


def db_problem(p: Path, e: sqlite3.Error, doing: str) -> str:
    """A database failure while `doing` (e.g. "write") as one sentence; a lock held elsewhere says what to do."""
    text = str(e)
    if "locked" in text or "busy" in text:
        return (
            f"the journal {p} is locked by another process ({text}): wait for it to finish and try again, or "
            f"find it with `fuser {p}`"
        )
    return f"journal {doing} failed ({p}): {text}"
