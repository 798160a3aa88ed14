"""`labcon journal search|show|diff|note|export`: the experiment journal from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from labcon.cli.argtypes import at_least
from labcon.errors import LabconError
from labcon.fmt import fmt_duration, fmt_num
from labcon.session.journal import Journal
from labcon.session.paths import journal_path

QUERY_HELP = """\
Runs matching a query, newest first. Terms are ANDed; use OR, NOT and (...) to combine them; -TERM is NOT TERM.

  WORD, WORD*, "a phrase"   free text in a run's notes, commands, config and tags
  NAME>NUMBER               a final metric or numeric config value: lr>1e-3, valid_loss<0.4, accuracy>=0.9 (operators > >= < <= = !=; quote them for the shell)
  status:S                  running, done, stopped, failed or crashed
  tag:T                     runs tagged T
  session:NAME              runs of a session (NAME may use * as a wildcard)
  run:ID, parent:ID         one run; the runs branched (replayed) from run ID
  previous:ID               the run its session trained next, after run ID (every fit is a run)
  since:DATE, until:DATE    started on/after or before a date (YYYY-MM-DD)
  has:KIND                  runs with an event of a kind: command, note, error, cancel or info

examples:
  labcon journal search mixup status:done 'lr>1e-3'
  labcon journal search 'NOT tag:baseline' since:2026-11-01
  labcon journal search -- mixup -cutout     (-- ends the options, so -cutout is a query word)
"""


def register(subparsers: Any) -> None:
    """Add the `journal` command and its subcommands."""
    p = subparsers.add_parser(
        "journal",
        help="search, show, compare and annotate past runs",
        description="The journal (journal.db in the sessions directory) records every run: config, seed, "
        "commands with the batch they took effect at, epoch metrics, notes. Every fit is a run, linked to its "
        "session's previous run; 'took' is training time. Without a subcommand: the latest runs.",
    )
    p.set_defaults(func=cmd_search, query=[], json=False, limit=20)
    sub = p.add_subparsers(dest="journal_command", metavar="SUBCOMMAND")

    s = sub.add_parser(
        "search",
        help='runs matching a query, e.g. "mixup status:done lr>1e-3"',
        description=QUERY_HELP,
    )
    s.add_argument("query", nargs="*", help="query words (quote comparisons for the shell: 'lr>1e-3')")
    s.add_argument("--json", action="store_true", help="print the runs as JSON")
    s.add_argument(
        "--limit", type=at_least(1), default=50, metavar="N", help="at most this many runs (default 50)"
    )
    s.set_defaults(func=cmd_search)

    sh = sub.add_parser(
        "show",
        help="one run: config, metrics, epochs and its event timeline",
        description="Print one run: ids, status, times, config, final metrics, the metrics of every epoch "
        "and every command, note and error in the order they happened.",
    )
    sh.add_argument("run", help="a run id, or a session name for its latest run")
    sh.add_argument("--json", action="store_true", help="print the run as JSON")
    sh.set_defaults(func=cmd_show)

    d = sub.add_parser(
        "diff",
        help="two runs side by side: config, commands, metrics",
        description="Compare two runs: their configs line by line, their commands by the batch they were "
        "applied at, and final and per-epoch metrics with their differences.",
    )
    d.add_argument("run_a", help="the first run: a run id, or a session name for its latest run")
    d.add_argument("run_b", help="the second run, compared with the first")
    d.add_argument("--json", action="store_true", help="print the comparison as JSON")
    d.set_defaults(func=cmd_diff)

    n = sub.add_parser(
        "note",
        help="attach a note to a run (searchable)",
        description="Add a note to a run; its words become searchable (`labcon journal search WORD`).",
    )
    n.add_argument("run", help="a run id, or a session name for its latest run")
    n.add_argument("text", nargs="+", help="the note")
    n.set_defaults(func=cmd_note)

    e = sub.add_parser(
        "export",
        help="runs as CSV or JSON",
        description="Export runs: CSV has one row per run (tags, parameters, final metrics as columns); JSON "
        "has each run in full with its epochs and events.",
    )
    e.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    e.add_argument("--query", default=None, help="only runs matching this query")
    e.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")
    e.set_defaults(func=cmd_export)


def open_journal(args: argparse.Namespace) -> Journal:
    """The journal under --sessions-dir / $LABCON_HOME / ./sessions; an error if none exists yet."""
    path = journal_path(getattr(args, "sessions_dir", None))
    if not path.exists():
        raise LabconError(
            f"no journal at {path}: run a session first, or point --sessions-dir (or LABCON_HOME) at your sessions"
        )
    journal = Journal(path)
    # Runs whose process died (kill -9) show as crashed here too, not as 'running' forever.
    journal.recover_stale()
    return journal


def cmd_search(args: argparse.Namespace) -> int:
    """Print the runs matching a query."""
    with open_journal(args) as j:
        runs = j.search(" ".join(args.query), limit=args.limit)
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        _emit("no runs match")
        return 0
    rows = [
        [
            str(r["id"]),
            r["session"],
            r["status"],
            _when(r["started"]),
            _duration(r["duration"]),
            ",".join(r["tags"]),
            _metrics(r["final_metrics"]),
        ]
        for r in runs
    ]
    _emit(_table(["run", "session", "status", "started", "took", "tags", "final metrics"], rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one run in full."""
    with open_journal(args) as j:
        run = j.get_run(j.resolve_run(args.run))
        epochs = j.epochs(run["id"])
        events = j.events(run["id"])
    if args.json:
        print(json.dumps({**run, "epochs": epochs, "events": events}, indent=2, default=str))
        return 0
    links = f"  (branched from run {run['parent_id']})" if run["parent_id"] else ""
    links += f"  (continues run {run['previous_id']})" if run["previous_id"] else ""
    _emit(f"run {run['id']}  session {run['session']}  {run['status']}{links}")
    _emit(f"started {_when(run['started'])}  took {_duration(run['duration'])}  seed {run['seed']}")
    env = run["env"]
    _emit(
        f"code {run['code_version']}  python {env.get('python')}  torch {env.get('torch')}  host {run['host']}"
    )
    if run["tags"]:
        _emit("tags: " + ", ".join(run["tags"]))
    if run["final_metrics"]:
        _emit("final: " + _metrics(run["final_metrics"]))
    _emit("\nconfig:")
    _emit("\n".join("  " + line for line in run["config"].splitlines()) or "  (empty)")
    if epochs:
        names = [k for k in epochs[0] if k != "epoch"]
        names += sorted({k for e in epochs for k in e} - set(names) - {"epoch"})
        _emit("\nepochs:")
        _emit(
            _table(["epoch", *names], [[str(e["epoch"]), *(_num(e.get(k)) for k in names)] for e in epochs])
        )
    if events:
        _emit("\nevents:")
        for e in events:
            _emit(f"  {_time(e['time'])}  {_pos(e)}  {e['kind']:<7}  {e['text']}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Print two runs compared: config side by side, command timelines, metrics."""
    with open_journal(args) as j:
        d = j.diff(j.resolve_run(args.run_a), j.resolve_run(args.run_b))
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    a, b = d["a"], d["b"]
    width = max(20, (shutil.get_terminal_size((120, 24)).columns - 5) // 2)
    head_a, head_b = (
        f"run {a['id']} ({a['session']}, {a['status']})",
        f"run {b['id']} ({b['session']}, {b['status']})",
    )
    _emit(f"{_fit(head_a, width)}  |  {head_b}")
    _emit("\nconfig:")
    marks = {"equal": " ", "replace": "|", "delete": "<", "insert": ">"}
    for row in d["config"]["side_by_side"]:
        _emit(f"{_fit(row['a'] or '', width)} {marks[row['op']]}  {row['b'] or ''}".rstrip())
    _emit("\ncommands (epoch:iteration):")
    if not d["commands"]:
        _emit("  (none)")
    for row in d["commands"]:
        where = _pos(row)
        for k in range(max(len(row["a"]), len(row["b"]))):
            left = row["a"][k] if k < len(row["a"]) else ""
            right = row["b"][k] if k < len(row["b"]) else ""
            _emit(
                f"{_fit(where + '  ' + left, width)} {'=' if left == right else '|'}  {where}  {right}".rstrip()
            )
    _emit("\nfinal metrics:")
    rows = [[m["name"], _num(m["a"]), _num(m["b"]), _num(m["delta"], sign=True)] for m in d["metrics"]]
    _emit(_table(["metric", f"run {a['id']}", f"run {b['id']}", "b - a"], rows) if rows else "  (none)")
    if d["params"]:
        _emit("\nchanged config values:")
        rows = [[p["name"], _num(p["a"]), _num(p["b"])] for p in d["params"]]
        _emit(_table(["name", f"run {a['id']}", f"run {b['id']}"], rows))
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    """Attach a note to a run."""
    with open_journal(args) as j:
        rid = j.resolve_run(args.run)
        j.add_note(rid, " ".join(args.text))
    _emit(f"note added to run {rid}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Print (or write) runs as CSV or JSON."""
    with open_journal(args) as j:
        text = j.export(args.format, args.query)
    if args.output:
        _write_output(Path(args.output), text)
        _emit(f"wrote {args.output}")
    else:
        # Data for a file or a pipe stays exact; only a terminal gets control characters shown as escapes.
        shown = text if not sys.stdout.isatty() else None
        if shown is None:
            _emit(text, end="" if text.endswith("\n") else "\n")
        else:
            print(shown, end="" if shown.endswith("\n") else "\n")
    return 0


def _write_output(out: Path, text: str) -> None:
    """Write an export file; a path that cannot be written is a one-line error naming it and the fix."""
    if out.is_dir():
        raise LabconError(f"cannot write {out}: it is a folder; give a file name, e.g. -o {out / 'runs.csv'}")
    if not out.parent.is_dir():
        raise LabconError(
            f"cannot write {out}: folder {out.parent} does not exist; create it or choose another -o/--output"
        )
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise LabconError(f"cannot write {out}: {e.strerror or e}; choose another -o/--output") from None


# -- formatting --------------------------------------------------------------------------------------


def _when(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _time(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def _pos(e: dict[str, Any]) -> str:
    ep = "-" if e["epoch"] is None else str(e["epoch"])
    it = "-" if e["iteration"] is None else str(e["iteration"])
    return f"{ep}:{it}"


def _duration(s: float | None) -> str:
    return "-" if s is None else fmt_duration(s)


def _num(v: Any, sign: bool = False) -> str:
    if v is None:
        return "-"
    text = fmt_num(v)
    return f"+{text}" if sign and isinstance(v, int | float) and v > 0 else text


def _metrics(m: dict[str, Any]) -> str:
    return " ".join(f"{k}={_num(v)}" for k, v in m.items())


def _fit(s: str, width: int) -> str:
    return s[: width - 1] + "…" if len(s) > width else s.ljust(width)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _emit(text: str = "", end: str = "\n") -> None:
    """Print journal text (commands, notes, config values any client could have written) with control
    characters shown as escapes: no escape sequence from the journal reaches the terminal."""
    from labcon.progress import visible

    print(visible(text), end=end)
