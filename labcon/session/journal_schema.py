"""The journal's SQLite schema as a list of migrations, applied in order on open (PRAGMA user_version)."""

from __future__ import annotations

import sqlite3

from labcon.errors import LabconError
from labcon.session.query import DOC_SPAN, EVENT_KINDS, STATUSES


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Next free search-doc id inside run R's id range [R * DOC_SPAN, (R + 1) * DOC_SPAN).
_NEXT_DOC = (
    "(SELECT ifnull(max(id), {r} * {span}) + 1 FROM search_docs "
    "WHERE id >= {r} * {span} AND id < ({r} + 1) * {span})"
)


def _next_doc(ref: str) -> str:
    return _NEXT_DOC.format(r=ref, span=DOC_SPAN)


_V1: tuple[str, ...] = (
    f"""CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        session TEXT NOT NULL,
        parent_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        config_text TEXT NOT NULL DEFAULT '',
        seed INTEGER,
        code_version TEXT NOT NULL DEFAULT '',
        env_json TEXT NOT NULL DEFAULT '{{}}',
        host TEXT NOT NULL DEFAULT '',
        pid INTEGER,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL DEFAULT 'running' CHECK (status IN {_in(STATUSES)}),
        final_metrics TEXT NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE INDEX runs_session ON runs(session)",
    "CREATE INDEX runs_status ON runs(status)",
    "CREATE INDEX runs_started ON runs(started)",
    f"""CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN {_in(EVENT_KINDS)}),
        text TEXT NOT NULL,
        epoch INTEGER,
        iteration INTEGER,
        time REAL NOT NULL,
        data TEXT
    )""",
    "CREATE INDEX events_run ON events(run_id)",
    "CREATE INDEX events_kind ON events(kind, run_id)",
    """CREATE TABLE epoch_metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
        PRIMARY KEY (run_id, epoch, name)
    ) WITHOUT ROWID""",
    """CREATE TABLE batch_metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        iteration INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
        PRIMARY KEY (run_id, iteration, name)
    ) WITHOUT ROWID""",
    """CREATE TABLE tags (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        tag TEXT NOT NULL COLLATE NOCASE,
        PRIMARY KEY (run_id, tag)
    ) WITHOUT ROWID""",
    "CREATE INDEX tags_tag ON tags(tag, run_id)",
    # Numeric config values (lr, wd, bs, epochs, seed, ...) and final metrics, indexed for `lr>1e-3`.
    """CREATE TABLE params (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID""",
    "CREATE INDEX params_name ON params(name, value)",
    """CREATE TABLE run_metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID""",
    "CREATE INDEX run_metrics_name ON run_metrics(name, value)",
    # What full-text search sees: one row per config, tag, note and command, kept in sync by triggers.
    """CREATE TABLE search_docs (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ref_id INTEGER,
        text TEXT NOT NULL
    )""",
    "CREATE INDEX search_docs_ref ON search_docs(ref_id) WHERE ref_id IS NOT NULL",
    """CREATE VIRTUAL TABLE search_fts USING fts5(
        text, content='search_docs', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN
        INSERT INTO search_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER search_docs_ad AFTER DELETE ON search_docs BEGIN
        INSERT INTO search_fts(search_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER search_docs_au AFTER UPDATE ON search_docs BEGIN
        INSERT INTO search_fts(search_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO search_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    f"""CREATE TRIGGER runs_ai AFTER INSERT ON runs BEGIN
        INSERT INTO search_docs(id, run_id, kind, text)
        VALUES ({_next_doc("new.id")}, new.id, 'config', new.config_text);
    END""",
    f"""CREATE TRIGGER runs_au AFTER UPDATE OF config_text ON runs BEGIN
        UPDATE search_docs SET text = new.config_text
        WHERE id >= new.id * {DOC_SPAN} AND id < (new.id + 1) * {DOC_SPAN} AND kind = 'config';
    END""",
    f"""CREATE TRIGGER runs_ad AFTER DELETE ON runs BEGIN
        DELETE FROM search_docs WHERE id >= old.id * {DOC_SPAN} AND id < (old.id + 1) * {DOC_SPAN};
    END""",
    f"""CREATE TRIGGER events_ai AFTER INSERT ON events WHEN new.kind IN ('command', 'note') BEGIN
        INSERT INTO search_docs(id, run_id, kind, ref_id, text)
        VALUES ({_next_doc("new.run_id")}, new.run_id, new.kind, new.id, new.text);
    END""",
    """CREATE TRIGGER events_ad AFTER DELETE ON events WHEN old.kind IN ('command', 'note') BEGIN
        DELETE FROM search_docs WHERE ref_id = old.id AND kind = old.kind;
    END""",
    """CREATE TRIGGER events_au AFTER UPDATE OF text ON events WHEN new.kind IN ('command', 'note') BEGIN
        UPDATE search_docs SET text = new.text WHERE ref_id = new.id AND kind = new.kind;
    END""",
    f"""CREATE TRIGGER tags_ai AFTER INSERT ON tags BEGIN
        INSERT INTO search_docs(id, run_id, kind, text)
        VALUES ({_next_doc("new.run_id")}, new.run_id, 'tag', new.tag);
    END""",
    f"""CREATE TRIGGER tags_ad AFTER DELETE ON tags BEGIN
        DELETE FROM search_docs WHERE id >= old.run_id * {DOC_SPAN} AND id < (old.run_id + 1) * {DOC_SPAN}
            AND kind = 'tag' AND text = old.tag COLLATE NOCASE;
    END""",
)

# Runs are records: each fit is a run, linked to the session's previous one; a run's duration is its training
# time (idle and paused time between and inside fits left out; NULL for runs written before this version).
_V2: tuple[str, ...] = (
    "ALTER TABLE runs ADD COLUMN previous_id INTEGER REFERENCES runs(id) ON DELETE SET NULL",
    "ALTER TABLE runs ADD COLUMN train_time REAL",
    "CREATE INDEX runs_previous ON runs(previous_id)",
)

# Each entry takes the schema from version i to i + 1; append new migrations, never edit old ones.
MIGRATIONS: list[tuple[str, ...]] = [_V1, _V2]
SCHEMA_VERSION = len(MIGRATIONS)


def configure(conn: sqlite3.Connection, timeout_ms: int = 10_000) -> None:
    """Per-connection settings: WAL (readers never block the writer), waits on locks, foreign keys."""
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL in WAL mode: a commit survives a killed process (not a power cut), and commits stay cheap.
    conn.execute("PRAGMA synchronous = NORMAL")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")


def migrate(conn: sqlite3.Connection, migrations: list[tuple[str, ...]] | None = None) -> int:
    """Bring the schema up to date inside one write transaction; returns the version now in use."""
    steps = MIGRATIONS if migrations is None else migrations
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == len(steps):
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(steps):
            raise LabconError(
                f"the journal's schema version {version} is newer than this labcon understands "
                f"({len(steps)}): upgrade labcon"
            )
        for i in range(version, len(steps)):
            for statement in steps[i]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {i + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(steps)
