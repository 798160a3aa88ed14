"""Refuse session files another user could have written (as ssh does with its keys); create ours private."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from labcon.errors import LabconError


class UnsafePathError(LabconError):
    """A session folder or file is owned by another user or writable by group/others."""


def check_private(path: Path, what: str) -> None:
    """Raise UnsafePathError when `path` (if it exists) is not ours or is writable by group/others.

    A folder another user can write to lets them plant a checkpoint or a config that we would then load."""
    try:
        st = path.stat()  # a link is judged by what it points to (a sessions folder on another disk is fine)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UnsafePathError(f"cannot inspect the {what} {path}: {e.strerror or e}") from None
    uid = os.getuid()
    if st.st_uid != uid:
        raise UnsafePathError(
            f"the {what} {path} belongs to user id {st.st_uid}, not to you (uid {uid}); labcon refuses to use "
            f"session files another user could have planted. If it is yours, `chown -R {_user()} {path}`; "
            "otherwise use your own sessions folder (--sessions-dir)"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(
            f"the {what} {path} is writable by {'group and others' if st.st_mode & stat.S_IWOTH else 'its group'}"
            f" (mode {stat.S_IMODE(st.st_mode):o}), so another user could plant files in it; make it private "
            f"with `chmod go-w {path}` (or `chmod 700` for a folder, `chmod 600` for a file)"
        )


def check_session_files(home: Path, name: str) -> None:
    """Everything a resume reads before it trusts it: the sessions folder, the session's folder, its config,
    its checkpoints folder and the journal (which holds the hashes of user code)."""
    if home.exists() and not home.is_dir():
        raise LabconError(
            f"the sessions folder {home} is a file, not a folder; move it away or choose another --sessions-dir"
        )
    d = home / name
    for path, what in (
        (home, "sessions folder"),
        (home / "journal.db", "journal"),
        (d, "session folder"),
        (d / "session.toml", "session config"),
        (d / "checkpoints", "checkpoints folder"),
        (d / "saved", "saved checkpoints folder"),
    ):
        check_private(path, what)


def private_dir(path: Path, what: str) -> Path:
    """Create `path` (and parents) as 0700 when missing; refuse it when it is unsafe; a clear error on failure."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise LabconError(
            f"the {what} {path} exists and is a file, not a folder; move it away or choose another "
            "--sessions-dir"
        ) from None
    except OSError as e:
        raise LabconError(
            f"cannot create the {what} {path}: {e.strerror or e}; choose a folder you can write to "
            "(--sessions-dir or $LABCON_HOME)"
        ) from None
    if not path.is_dir():
        raise LabconError(f"the {what} {path} is not a folder; move it away or choose another --sessions-dir")
    check_private(path, what)
    return path


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


class SessionLock:
    """One process per session (whatever its socket setting): an exclusive lock on sessions/<name>/lock.

    The kernel drops the lock when the process dies (even by kill -9), so a stale lock file never blocks."""

    def __init__(self, directory: Path, name: str):
        import fcntl

        self.path = directory / "lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if (directory / "control.sock").exists():
                how = f"`labcon attach {name}` to work with it, or stop that process first"
            else:  # no socket to attach to: advising attach would only lead to another error
                how = (
                    "It serves no control socket (started with --no-socket), so it cannot be attached: wait "
                    "for it to end, or stop that process first"
                )
            raise LabconError(
                f"session '{name}' is in use by {holder}: one process trains a session at a time (its "
                f"checkpoints and journal rows have one writer). {how}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let another process open the session (idempotent)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the record says who holds it: nobody, from now on (see lock_holder)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def lock_holder(directory: Path) -> str | None:
    """Who holds the session lock in `directory` ("process N"), or None when no live process does.

    Read from the lock file's record, never by taking the lock: a probe would, for an instant, make a session
    starting at that moment fail with 'in use'. The record outlives its process, so the process is checked."""
    try:
        text = (directory / "lock").read_text(errors="replace").strip()
    except OSError:
        return None
    m = re.fullmatch(r"process (\d+)", text)
    if m is None:
        return None
    try:
        os.kill(int(m.group(1)), 0)  # signal 0: is it alive
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return text
