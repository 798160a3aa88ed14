"""Journal reports: two runs compared (config, commands, metrics) and runs exported as CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
from typing import TYPE_CHECKING, Any

from labcon.session.journal import JournalError
from labcon.session.journal_values import config_params, to_json

if TYPE_CHECKING:
    from labcon.session.journal import Journal

EXPORT_FORMATS = ("csv", "json")
_RUN_FIELDS = (
    "id",
    "session",
    "parent_id",
    "previous_id",
    "status",
    "seed",
    "code_version",
    "started",
    "ended",
    "duration",
)


def config_side_by_side(a: str, b: str) -> list[dict[str, Any]]:
    """Rows {'op': equal|replace|delete|insert, 'a': line|None, 'b': line|None, 'a_line', 'b_line'}."""
    la, lb = a.splitlines(), b.splitlines()
    rows: list[dict[str, Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, la, lb, autojunk=False).get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            ia, ib = i1 + k, j1 + k
            rows.append(
                {
                    "op": op,
                    "a": la[ia] if ia < i2 else None,
                    "b": lb[ib] if ib < j2 else None,
                    "a_line": ia + 1 if ia < i2 else None,
                    "b_line": ib + 1 if ib < j2 else None,
                }
            )
    return rows


def command_timeline(ea: list[dict[str, Any]], eb: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both runs' commands merged by (epoch, iteration): rows {'epoch', 'iteration', 'a': [..], 'b': [..]}."""

    def key(e: dict[str, Any]) -> tuple[int, int]:
        return (
            e["epoch"] if e["epoch"] is not None else -1,
            e["iteration"] if e["iteration"] is not None else -1,
        )

    slots: dict[tuple[int, int], dict[str, Any]] = {}
    for side, events in (("a", ea), ("b", eb)):
        for e in events:
            row = slots.setdefault(
                key(e), {"epoch": e["epoch"], "iteration": e["iteration"], "a": [], "b": []}
            )
            row[side].append(e["text"])
    return [slots[k] for k in sorted(slots)]


def _compare(ma: dict[str, Any], mb: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(ma) | set(mb)):
        va, vb = ma.get(name), mb.get(name)
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        rows.append({"name": name, "a": va, "b": vb, "delta": delta})
    return rows


def diff_runs(journal: Journal, a: int, b: int) -> dict[str, Any]:
    """The journal.diff() payload: runs, config (side by side + unified), commands, metrics, params, epochs."""
    ra, rb = journal.get_run(a), journal.get_run(b)
    unified = "".join(
        difflib.unified_diff(
            ra["config"].splitlines(keepends=True),
            rb["config"].splitlines(keepends=True),
            fromfile=f"run {ra['id']} ({ra['session']})",
            tofile=f"run {rb['id']} ({rb['session']})",
        )
    )
    cmd_a = journal.events(ra["id"], kinds=("command",))
    cmd_b = journal.events(rb["id"], kinds=("command",))
    epochs_a = {e["epoch"]: e for e in journal.epochs(ra["id"])}
    epochs_b = {e["epoch"]: e for e in journal.epochs(rb["id"])}
    epoch_rows = []
    for ep in sorted(set(epochs_a) | set(epochs_b)):
        xa = {k: v for k, v in epochs_a.get(ep, {}).items() if k != "epoch"}
        xb = {k: v for k, v in epochs_b.get(ep, {}).items() if k != "epoch"}
        epoch_rows.append({"epoch": ep, "metrics": _compare(xa, xb)})
    return {
        "a": ra,
        "b": rb,
        "config": {"side_by_side": config_side_by_side(ra["config"], rb["config"]), "unified": unified},
        "commands": command_timeline(cmd_a, cmd_b),
        "metrics": _compare(ra["final_metrics"], rb["final_metrics"]),
        "params": [p for p in _compare(ra["params"], rb["params"]) if p["a"] != p["b"]],
        "epochs": epoch_rows,
    }


def export_runs(journal: Journal, fmt: str = "csv", query: str | None = None) -> str:
    """CSV: one row per run with tags, params and final metrics as columns. JSON: full runs with epochs/events.

    The runs are the rows `search` gives (the CLI and the Journal pane read the same), each config value once
    under its full name (`train.lr`; the search index's bare aliases such as `lr` are left out).
    """
    if fmt not in EXPORT_FORMATS:
        raise JournalError(f"unknown export format {fmt!r}: use csv or json")
    n = journal.count(query or "")
    runs = journal.search(query or "", limit=n)
    runs.reverse()  # oldest first reads naturally in a spreadsheet or a script
    params = {r["id"]: config_params(r["config"], r["seed"], aliases=False) for r in runs}
    if fmt == "json":
        out = []
        for r in runs:
            full = {**r, "params": params[r["id"]]}
            full["epochs"] = journal.epochs(r["id"])
            full["events"] = journal.events(r["id"])
            out.append(full)
        return to_json(out, indent=2)
    metric_names = sorted({k for r in runs for k in r["final_metrics"]})
    param_names = sorted({k for p in params.values() for k in p})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*_RUN_FIELDS, "tags", *(f"param.{k}" for k in param_names), *metric_names])
    for r in runs:
        writer.writerow(
            [
                *(_iso(r[f]) if f in ("started", "ended") else r[f] for f in _RUN_FIELDS),
                " ".join(r["tags"]),
                *(params[r["id"]].get(k, "") for k in param_names),
                *("" if r["final_metrics"].get(k) is None else r["final_metrics"][k] for k in metric_names),
            ]
        )
    return buf.getvalue()


def _iso(t: float | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
