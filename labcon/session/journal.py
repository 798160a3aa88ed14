"""The experiment journal: runs, events, metrics and tags in SQLite (WAL), searchable with FTS5."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labcon.errors import LabconError
from labcon.session import journal_env
from labcon.session.journal_files import create_private, db_problem, recovery
from labcon.session.journal_read import JournalError, JournalReads
from labcon.session.journal_schema import configure, migrate
from labcon.session.journal_values import config_params, to_float, to_json
from labcon.session.paths import JOURNAL_FILE, validate_session_name
from labcon.session.query import EVENT_KINDS, STATUSES


class Journal(JournalReads):
    """The journal at `path` (a journal.db file or the sessions directory that holds it)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        p = Path(path)
        if p.is_dir():
            p = p / JOURNAL_FILE
        try:
            create_private(p)
        except LabconError as e:
            raise JournalError(str(e)) from None
        self.path = p
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(p, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            configure(self._conn, int(timeout * 1000))
            migrate(self._conn)
        except sqlite3.OperationalError as e:  # locked or unreadable: the file is not damaged
            raise JournalError(db_problem(p, e, "opening")) from e
        except sqlite3.DatabaseError as e:
            raise JournalError(f"cannot open the journal {p}: {e}. {recovery(p)}") from e

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls become savepoints so one bad item rolls back alone."""
        with self._lock:
            sp = f"sp{self._depth}" if self._depth else None
            try:
                self._conn.execute(f"SAVEPOINT {sp}" if sp else "BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as e:  # another process holds the write lock past busy_timeout
                raise JournalError(db_problem(self.path, e, "write")) from e
            self._depth += 1
            try:
                yield self._conn
            except BaseException as e:
                self._depth -= 1
                self._conn.execute(f"ROLLBACK TO {sp}" if sp else "ROLLBACK")
                if sp:
                    self._conn.execute(f"RELEASE {sp}")
                if isinstance(e, sqlite3.DatabaseError):
                    raise JournalError(db_problem(self.path, e, "write")) from e
                raise
            self._depth -= 1
            try:
                self._conn.execute(f"RELEASE {sp}" if sp else "COMMIT")
            except sqlite3.DatabaseError as e:
                if self._conn.in_transaction and not sp:  # leave no half transaction for the next write
                    self._conn.execute("ROLLBACK")
                raise JournalError(db_problem(self.path, e, "write")) from e

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as e:
                raise JournalError(db_problem(self.path, e, "read")) from e

    def _check_run(self, conn: sqlite3.Connection, run_id: int) -> int:
        rid = int(run_id)
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (rid,)).fetchone() is None:
            raise JournalError(f"no run {rid} in the journal {self.path}: see `labcon journal search`")
        return rid

    # -- writing ----------------------------------------------------------------------------------

    def start_run(
        self,
        session: str,
        config_text: str,
        seed: int | None,
        parent_id: int | None = None,
        tags: Iterable[str] = (),
        env: Mapping[str, Any] | None = None,
        *,
        code_version: str | None = None,
        pid: int | None = None,
        previous_id: int | None = None,
    ) -> int:
        """Record a new run (status 'running') and return its id.

        `parent_id`: the run this one replays or branches from; `previous_id`: the session's run before this
        one (a new fit in the same session starts a new run that continues from where that one ended).
        """
        validate_session_name(session)
        env = dict(journal_env.environment() if env is None else env)
        version = journal_env.code_version() if code_version is None else code_version
        with self.transaction() as conn:
            for linked in (parent_id, previous_id):
                if linked is not None:
                    self._check_run(conn, linked)
            cur = conn.execute(
                "INSERT INTO runs (session, parent_id, previous_id, config_text, seed, code_version, env_json, "
                "host, pid, started, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                (
                    session,
                    parent_id,
                    previous_id,
                    config_text,
                    seed,
                    version,
                    to_json(env),
                    journal_env.hostname(),  # recover_stale asks this host, whatever env says
                    os.getpid() if pid is None else pid,
                    time.time(),
                ),
            )
            run_id = int(cur.lastrowid or 0)
            params = config_params(config_text, seed)
            conn.executemany(
                "INSERT INTO params (run_id, name, value) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in params.items()],
            )
            self._insert_tags(conn, run_id, tags)
        return run_id

    def log_event(
        self,
        run_id: int,
        kind: str,
        text: str,
        epoch: int | None = None,
        iteration: int | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        when: float | None = None,
    ) -> int:
        """Append an event (command, note, error, cancel or info) to a run; returns the event id."""
        if kind not in EVENT_KINDS:
            raise JournalError(f"unknown event kind {kind!r}: use one of {', '.join(EVENT_KINDS)}")
        with self.transaction() as conn:
            rid = self._check_run(conn, run_id)
            cur = conn.execute(
                "INSERT INTO events (run_id, kind, text, epoch, iteration, time, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    kind,
                    str(text),
                    epoch,
                    iteration,
                    time.time() if when is None else when,
                    None if data is None else to_json(data),
                ),
            )
            return int(cur.lastrowid or 0)

    def add_note(self, run_id: int, text: str) -> int:
        """Attach a free-text note to a run (searchable); returns the event id."""
        if not str(text).strip():
            raise JournalError('empty note: give the note text, e.g. labcon journal note 12 "lr too high"')
        return self.log_event(run_id, "note", text)

    def log_epoch(self, run_id: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """Store one epoch's metrics (re-logging an epoch, e.g. after a resume, replaces it)."""
        rows = [(int(run_id), int(epoch), str(k), to_float(v)) for k, v in metrics.items()]
        with self.transaction() as conn:
            self._check_run(conn, run_id)
            conn.executemany("INSERT OR REPLACE INTO epoch_metrics VALUES (?, ?, ?, ?)", rows)

    def log_batches(self, run_id: int, rows: Iterable[tuple[int, Mapping[str, float]]]) -> None:
        """Store sampled per-batch metrics: rows of (iteration, {name: value})."""
        flat = [
            (int(run_id), int(it), str(k), to_float(v)) for it, metrics in rows for k, v in metrics.items()
        ]
        with self.transaction() as conn:
            self._check_run(conn, run_id)
            conn.executemany("INSERT OR REPLACE INTO batch_metrics VALUES (?, ?, ?, ?)", flat)

    def end_run(
        self,
        run_id: int,
        status: str,
        final_metrics: Mapping[str, float] | None = None,
        train_seconds: float | None = None,
    ) -> None:
        """Close a run with its status (done, stopped, failed, crashed) and final metrics.

        `train_seconds` (the training time of the fit segment that just ended) adds to the run's duration.
        """
        if status not in STATUSES or status == "running":
            raise JournalError(f"unknown final status {status!r}: use one of done, stopped, failed, crashed")
        metrics = {str(k): to_float(v) for k, v in (final_metrics or {}).items()}
        with self.transaction() as conn:
            rid = self._check_run(conn, run_id)
            if conn.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()[0] == "done":
                raise JournalError(f"run {rid} is finished; its record is never rewritten")
            conn.execute(
                "UPDATE runs SET status = ?, ended = ?, final_metrics = ?, "
                "train_time = CASE WHEN ? IS NULL THEN train_time ELSE ifnull(train_time, 0) + ? END WHERE id = ?",
                (status, time.time(), to_json(metrics), train_seconds, train_seconds, rid),
            )
            conn.execute("DELETE FROM run_metrics WHERE run_id = ?", (rid,))
            conn.executemany(
                "INSERT INTO run_metrics VALUES (?, ?, ?)",
                [(rid, k, v) for k, v in metrics.items() if v is not None],
            )

    def reopen_run(self, run_id: int) -> None:
        """A stopped, failed or crashed run trains again (a resumed fit continues its own run): 'running'.

        A finished run ('done') is a record and never reopened: train more in a new run.
        """
        with self.transaction() as conn:
            rid = self._check_run(conn, run_id)
            status = conn.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()[0]
            if status == "done":
                raise JournalError(f"run {rid} is finished; a new fit starts a new run")
            conn.execute(
                "UPDATE runs SET status = 'running', ended = NULL, pid = ? WHERE id = ?", (os.getpid(), rid)
            )

    def add_tags(self, run_id: int, tags: Iterable[str]) -> None:
        """Tag a run (case-insensitive; adding a tag twice is harmless)."""
        with self.transaction() as conn:
            self._insert_tags(conn, self._check_run(conn, run_id), tags)

    def _insert_tags(self, conn: sqlite3.Connection, run_id: int, tags: Iterable[str]) -> None:
        if isinstance(tags, str):
            tags = [tags]
        clean = []
        for tag in tags:
            t = str(tag).strip()
            if not t or len(t) > 100 or any(c.isspace() for c in t):
                raise JournalError(f"invalid tag {tag!r}: use 1-100 characters without spaces, e.g. mixup")
            clean.append((run_id, t))
        conn.executemany("INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)", clean)

    def recover_stale(self, pid_alive: Callable[[int], bool] | None = None) -> list[int]:
        """Mark this host's runs still 'running' whose process is gone as 'crashed'; returns their ids."""
        alive = pid_alive or journal_env.pid_alive
        host = journal_env.hostname()
        rows = self._rows("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", (host,))
        stale = [int(r["id"]) for r in rows if r["pid"] is None or not alive(int(r["pid"]))]
        if stale:
            with self.transaction() as conn:
                for rid in stale:
                    last = conn.execute("SELECT max(time) FROM events WHERE run_id = ?", (rid,)).fetchone()[0]
                    conn.execute(
                        "UPDATE runs SET status = 'crashed', ended = ? WHERE id = ? AND status = 'running'",
                        (last if last is not None else time.time(), rid),
                    )
        return stale

    def check(self) -> list[str]:
        """Integrity problems found by SQLite and the FTS index (empty when healthy)."""
        problems = [r[0] for r in self._rows("PRAGMA integrity_check") if r[0] != "ok"]
        try:
            with self._lock:
                self._conn.execute("INSERT INTO search_fts(search_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as e:
            problems.append(f"search index: {e}")
        return problems

    def quick_check(self) -> None:
        """Raise JournalError (with the ways to recover) when SQLite finds the file damaged."""
        try:
            with self._lock:
                found = self._conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as e:
            found = str(e)
        if found != "ok":
            raise JournalError(f"the journal {self.path} is damaged ({found}). {recovery(self.path)}")

    def has_run(self, run_id: int) -> bool:
        """Whether run `run_id` is in the journal."""
        return bool(self._rows("SELECT 1 FROM runs WHERE id = ?", (int(run_id),)))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
