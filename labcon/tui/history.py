"""The command line's history on disk: the session folder's file the REPL keeps too, in the same format."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from labcon.session.paths import HISTORY_FILE

# Lines read back at start-up (the newest are kept).
MAX_LOADED = 1000


def load_history(path: Path) -> list[str]:
    """Entries of a prompt-toolkit FileHistory file, oldest first ('+'-prefixed lines, '#' comments)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    entries: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("+"):
            lines.append(line[1:])
        elif lines:
            entries.append("\n".join(lines))
            lines = []
    if lines:
        entries.append("\n".join(lines))
    return entries[-MAX_LOADED:]


def append_history(path: Path, entry: str) -> str | None:
    """Append one entry as prompt-toolkit does; the error text when the file cannot be written, else None."""
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(f"\n# {dt.datetime.now()}\n")
            f.writelines(f"+{line}\n" for line in entry.split("\n"))
    except OSError as e:
        return f"cannot save the command history to {path}: {e}"
    return None


__all__ = ["HISTORY_FILE", "append_history", "load_history"]
