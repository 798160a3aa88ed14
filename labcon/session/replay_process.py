"""`replay RUN` typed in a console or sent to a session: the replay runs as its own session process.

The same as `labcon replay RUN` on the command line (that command is what the process runs): the replay gets a new
session named after the run, serves its control socket (so `labcon attach NAME` watches it) and logs to
sessions/<name>/replay.log. The session that received the command keeps its own model and state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from labcon.commands.base import Answer
from labcon.errors import CommandError

if TYPE_CHECKING:
    from labcon.session.session import Session

LOG_NAME = "replay.log"


def start_detached(home: Path, args: list[str], log: Path, title: str) -> subprocess.Popen[bytes]:
    """`python -m labcon --sessions-dir HOME ARGS` in its own session (so Ctrl-C or a hang-up in this terminal
    never reaches it), its output appended to `log` after a dated `--- labcon TITLE` line."""
    with log.open("ab") as out:
        out.write(f"--- labcon {title} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        out.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "labcon", "--sessions-dir", str(home), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def replay_name(home: Path, session_name: str, run_id: int) -> str:
    """`<session>-replay<RUN>`, or with -2, -3 ... when a replay of that run already has a folder."""
    base = f"{session_name}-replay{run_id}"
    name, k = base, 1
    while (home / name / "session.toml").exists() or (home / name / LOG_NAME).exists():
        k += 1
        name = f"{base}-{k}"
    return name


def launch_replay(session: Session, run: str) -> Answer:
    """Start `labcon replay RUN --session NAME` in its own process group; the reply says where to find it."""
    writer = session.persist.writer
    if writer is None:
        raise CommandError("this session keeps no journal, so it has no runs to replay")
    writer.flush()  # the run to replay may be this session's own, still being written
    journal = session.journal
    run_id = journal.resolve_run(run)
    info = journal.get_run(run_id)
    home = session.home
    name = replay_name(home, str(info["session"]), run_id)
    log = home / name / LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    proc = start_detached(home, ["replay", str(run_id), "--session", name], log, f"replay {run_id}")
    session.children.append(proc)
    return Answer(
        f"replaying run {run_id} as session '{name}' in process {proc.pid}: `labcon attach {name}` to watch it, "
        f"`labcon journal show {name}` for its run; log {log}",
        {"run": run_id, "session": name, "pid": proc.pid, "log": str(log)},
    )
