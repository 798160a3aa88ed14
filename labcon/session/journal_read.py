"""The journal's read side: runs, events, epochs, batches, lineage, search, diff and export (a Journal mixin)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labcon.errors import LabconError
from labcon.session.journal_values import run_record
from labcon.session.query import DOC_SHIFT, compile_query

_RUN_COLUMNS = (
    "id, session, parent_id, previous_id, config_text, seed, code_version, env_json, host, pid, started, ended, "
    "status, final_metrics, train_time"
)


# A free-text term whose first PROBE_DOCS matches span PROBE_RUNS runs is "dense": probed per run (see query.py).
PROBE_DOCS = 4000
PROBE_RUNS = 400


class JournalError(LabconError):
    """A journal operation failed (unknown run, bad value, database problem)."""


class JournalReads:
    """Queries over the journal's tables; the class that mixes it in provides `path` and `_rows`."""

    path: Path

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    # -- reading (the writer side is journal.Journal) ----------------------------------------------------------------------------------

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run: ids, session, config, seed, code version, env, times, status, final metrics, tags, params."""
        rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise JournalError(
                f"no run {int(run_id)} in the journal {self.path}: see `labcon journal search`"
            )
        tags = [
            r[0] for r in self._rows("SELECT tag FROM tags WHERE run_id = ? ORDER BY tag", (int(run_id),))
        ]
        d = run_record(rows[0], tags)
        d["params"] = {
            r[0]: r[1] for r in self._rows("SELECT name, value FROM params WHERE run_id = ?", (d["id"],))
        }
        return d

    def resolve_run(self, text: str | int) -> int:
        """A run id from `text`: a number is a run id, a session name means that session's latest run."""
        s = str(text).strip()
        if s.isdigit() and s.isascii():
            rid = int(s)
            if self._rows("SELECT 1 FROM runs WHERE id = ?", (rid,)):
                return rid
            raise JournalError(f"no run {rid} in the journal {self.path}: see `labcon journal search`")
        rows = self._rows("SELECT max(id) FROM runs WHERE session = ?", (s,))
        if rows and rows[0][0] is not None:
            return int(rows[0][0])
        raise JournalError(
            f"no run or session named {s!r} in the journal {self.path}: give a run id or a session name "
            "(see `labcon journal search`)"
        )

    def lineage(self, run_id: int) -> list[int]:
        """The run and the session's runs before it, oldest first (each run continues its previous one)."""
        chain, seen = [], set()
        rid: int | None = int(run_id)
        while rid is not None and rid not in seen:
            rows = self._rows("SELECT previous_id FROM runs WHERE id = ?", (rid,))
            if not rows:
                raise JournalError(f"no run {rid} in the journal {self.path}: see `labcon journal search`")
            seen.add(rid)
            chain.append(rid)
            rid = rows[0][0]
        return chain[::-1]

    def code_digests(self, session: str, text: str) -> set[str]:
        """SHA-256s journaled for user-code command `text` (cb add file.py:Class) in any run of `session`."""
        rows = self._rows(
            "SELECT e.data FROM events e JOIN runs r ON r.id = e.run_id "
            "WHERE r.session = ? AND e.kind = 'command' AND e.text = ?",
            (session, text),
        )
        out = set()
        for (data,) in rows:
            digest = json.loads(data or "{}").get("sha256")
            if isinstance(digest, str):
                out.add(digest)
        return out

    def events(self, run_id: int, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """A run's events in order: id, kind, text, epoch, iteration, time, data."""
        sql = "SELECT id, kind, text, epoch, iteration, time, data FROM events WHERE run_id = ?"
        params: list[Any] = [int(run_id)]
        if kinds is not None:
            ks = list(kinds)
            sql += f" AND kind IN ({', '.join('?' * len(ks))})"
            params += ks
        out = []
        for r in self._rows(sql + " ORDER BY id", params):
            d = dict(r)
            d["data"] = json.loads(d["data"]) if d["data"] else None
            out.append(d)
        return out

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """One dict per epoch: {'epoch': n, <metric>: value, ...}."""
        rows = self._rows(
            "SELECT epoch, name, value FROM epoch_metrics WHERE run_id = ? ORDER BY epoch", (int(run_id),)
        )
        out: dict[int, dict[str, Any]] = {}
        for epoch, name, value in rows:
            out.setdefault(epoch, {"epoch": epoch})[name] = value
        return list(out.values())

    def batches(self, run_id: int) -> dict[str, list[tuple[int, float | None]]]:
        """Sampled per-batch metrics: {name: [(iteration, value), ...]}."""
        out: dict[str, list[tuple[int, float | None]]] = {}
        for it, name, value in self._rows(
            "SELECT iteration, name, value FROM batch_metrics WHERE run_id = ? ORDER BY iteration",
            (int(run_id),),
        ):
            out.setdefault(name, []).append((it, value))
        return out

    def _dense(self, fts: str) -> bool:
        """Whether a free-text match is spread over many runs (cheap probe of at most PROBE_DOCS docs)."""
        rows = self._rows(
            f"SELECT rowid >> {DOC_SHIFT} FROM search_fts WHERE search_fts MATCH ? LIMIT {PROBE_DOCS}", (fts,)
        )
        return len(rows) >= PROBE_DOCS and len({r[0] for r in rows}) >= PROBE_RUNS

    def search(self, query: str = "", limit: int = 50) -> list[dict[str, Any]]:
        """Runs matching a query (see labcon.session.query), newest first, as get_run-like dicts."""
        where, params = compile_query(query, dense=self._dense)
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs r WHERE {where} ORDER BY r.id DESC LIMIT ?",
            [*params, max(0, int(limit))],
        )
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        tags: dict[int, list[str]] = {i: [] for i in ids}
        marks = ", ".join("?" * len(ids))
        for rid, tag in self._rows(
            f"SELECT run_id, tag FROM tags WHERE run_id IN ({marks}) ORDER BY tag", ids
        ):
            tags[rid].append(tag)
        return [run_record(r, tags[r["id"]]) for r in rows]

    def count(self, query: str = "") -> int:
        """How many runs match a query."""
        where, params = compile_query(query)
        return int(self._rows(f"SELECT count(*) FROM runs r WHERE {where}", params)[0][0])

    def diff(self, a: int, b: int) -> dict[str, Any]:
        """Two runs compared: config diff, command timelines side by side, metrics and params compared."""
        from labcon.session.journal_report import diff_runs

        return diff_runs(self, a, b)

    def export(self, fmt: str = "csv", query: str | None = None) -> str:
        """Runs matching `query` (all when None) as CSV (one row per run) or JSON (runs with epochs, events)."""
        from labcon.session.journal_report import export_runs

        return export_runs(self, fmt, query)
