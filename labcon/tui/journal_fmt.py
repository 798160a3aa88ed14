"""How the Journal pane shows runs: table columns, readable times, a run's record, and what differs between two."""

from __future__ import annotations

import time
from typing import Any

from labcon.tui.fmt import fmt_duration, fmt_num

# What a narrow table keeps first: which run, how it ended, how good it was; then when and how long.
_PREFERRED = ("id", "run_id", "name", "status")
_LATER = ("session", "started", "duration", "epochs", "lr")
# Columns that are never shown in the results table (long text or nested values).
_HIDDEN = frozenset(
    ("config", "env", "final_metrics", "tags", "params", "note", "host", "pid", "code_version")
)
TIME_KEYS = frozenset(("started", "ended", "created", "finished", "time"))
DURATION_KEYS = frozenset(("duration", "took"))


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    """The final-metric names found in `rows` (valid_loss first), in first-seen order."""
    names: list[str] = []
    for r in rows:
        fm = r.get("final_metrics")
        if isinstance(fm, dict):
            names += [k for k in fm if k not in names and k != "epoch"]
    # valid_loss, then the metrics the run was judged by, then train_loss and the epoch time.
    return sorted(names, key=lambda k: (k != "valid_loss", k in ("train_loss", "time"), names.index(k)))


def columns(rows: list[dict[str, Any]], max_cols: int) -> tuple[list[str], int]:
    """(columns to show, how many more there were): the run's own fields, then its final metrics."""
    keys: list[str] = []
    for r in rows:
        keys += [
            k for k, v in r.items() if k not in keys and k not in _HIDDEN and not isinstance(v, dict | list)
        ]
    keys = [k for k in keys if any(r.get(k) is not None for r in rows)] or keys
    metrics = [m for m in metric_names(rows) if m not in keys]
    ordered = [k for k in _PREFERRED if k in keys] + metrics[:2] + [k for k in _LATER if k in keys]
    ordered += metrics[2:] + [k for k in keys if k not in ordered]
    return ordered[:max_cols], max(0, len(ordered) - max_cols)


def value(row: dict[str, Any], key: str) -> Any:
    """A run's field, or its final metric `key`."""
    if key in row:
        return row[key]
    fm = row.get("final_metrics")
    return fm.get(key) if isinstance(fm, dict) else None


def cell(key: str, v: Any) -> str:
    """One value for the table: epoch-second times as dates, durations as m:ss, numbers short."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        if key in TIME_KEYS and v > 1e8:
            return time.strftime("%m-%d %H:%M", time.localtime(v))  # the detail shows the full date
        if key in DURATION_KEYS:
            return fmt_duration(float(v))
    return fmt_num(v)


def _detail_value(key: str, v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool) and key in TIME_KEYS and v > 1e8:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))
    return cell(key, v)


def format_record(d: Any, indent: str = "") -> str:
    """A run record as indented 'key: value' lines (times readable, pairs as 'a -> b', text blocks indented)."""
    if not isinstance(d, dict):
        return f"{indent}{d}"
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            if v:
                lines.append(f"{indent}{k}:")
                lines.append(format_record(v, indent + "  "))
        elif isinstance(v, tuple | list) and len(v) == 2 and not isinstance(v[0], dict):
            lines.append(f"{indent}{k}: {fmt_num(v[0])} -> {fmt_num(v[1])}")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"{indent}{k}: ({len(v)})")
            lines += [f"{indent}  " + ", ".join(f"{a}={cell(a, b)}" for a, b in row.items()) for row in v]
        elif isinstance(v, list):
            lines.append(f"{indent}{k}: {', '.join(map(str, v)) or '-'}")
        elif isinstance(v, str) and "\n" in v:
            lines.append(f"{indent}{k}:")
            lines += [f"{indent}  {line}" for line in v.rstrip().splitlines()]
        else:
            lines.append(f"{indent}{k}: {_detail_value(k, v)}")
    return "\n".join(lines)


def format_branch(events: list[dict[str, Any]]) -> str:
    """A branch's journaled deviation (its info events with `deltas`) in lines short enough for the detail box of
    an 80-column console: where it branched and with what, then per epoch after the branch point each metric
    minus the parent's (valid_loss first); '' for a run that is no branch."""
    out = []
    for e in events:
        d = e.get("data") or {}
        if not (isinstance(d, dict) and isinstance(d.get("deltas"), list) and "parent" in d):
            continue
        out += [
            f"branch of run {d['parent']}",
            f"after epoch {d.get('after_epoch')} with:",
            f"  {d.get('then')}",
        ]
        out.append("minus parent:")
        for row in d["deltas"]:
            out.append(f" epoch {row.get('epoch')}")
            names = sorted((k for k in row if k != "epoch"), key=lambda k: k != "valid_loss")
            values = [f"  {k} {row[k]:+.3g}" for k in names if isinstance(row[k], int | float)]
            out += values or ["  no common metrics"]
    return "\n".join(out)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) or (fmt_num(a) == fmt_num(b))
    except Exception:  # noqa: BLE001 - odd values compare as different
        return False


def format_diff(d: dict[str, Any]) -> str:
    """Only what differs between two runs (the journal's diff payload); anything else in generic form."""
    if not (isinstance(d.get("a"), dict) and isinstance(d.get("config"), dict) and "unified" in d["config"]):
        return format_record(d)
    ra, rb = d["a"], d["b"]
    out = [f"a = run {ra.get('id')} ({ra.get('session')}, {ra.get('status')})"]
    out.append(f"b = run {rb.get('id')} ({rb.get('session')}, {rb.get('status')})")
    for k in ("status", "seed", "parent_id", "code_version"):
        if not _same(ra.get(k), rb.get(k)):
            out.append(f"{k}: {fmt_num(ra.get(k))} -> {fmt_num(rb.get(k))}")
    unified = [
        ln
        for ln in str(d["config"]["unified"]).splitlines()
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]
    out.append("config: " + ("same" if not unified else ""))
    out += [f"  {ln}" for ln in unified]
    params = d.get("params") or []
    if params:
        out.append("params:")
        out += [f"  {p['name']}: {fmt_num(p['a'])} -> {fmt_num(p['b'])}" for p in params]
    cmds = [c for c in d.get("commands") or [] if c.get("a") != c.get("b")]
    out.append("commands: " + ("same" if not cmds else ""))
    for c in cmds:
        at = f"epoch {c.get('epoch')} batch {c.get('iteration')}"
        out.append(f"  {at}: a {'; '.join(c['a']) or '-'} | b {'; '.join(c['b']) or '-'}")
    metrics = [m for m in d.get("metrics") or [] if not _same(m.get("a"), m.get("b"))]
    out.append("final metrics: " + ("same" if not metrics else ""))
    out += [_metric_line(m) for m in metrics]
    epochs = []
    for e in d.get("epochs") or []:
        # An epoch's wall time always differs: only the metrics say whether the runs did.
        diffs = [
            m for m in e.get("metrics") or [] if m.get("name") != "time" and not _same(m.get("a"), m.get("b"))
        ]
        if diffs:
            epochs.append(
                f"  epoch {e.get('epoch')}: " + "  ".join(_metric_line(m, "").strip() for m in diffs)
            )
    out.append("epochs: " + ("same" if not epochs else f"{len(epochs)} differ"))
    return "\n".join(out + epochs)


def _metric_line(m: dict[str, Any], indent: str = "  ") -> str:
    delta = m.get("delta")
    tail = f" ({delta:+.4g})" if isinstance(delta, int | float) else ""
    return f"{indent}{m.get('name')}: {fmt_num(m.get('a'))} -> {fmt_num(m.get('b'))}{tail}"


__all__ = ["cell", "columns", "format_branch", "format_diff", "format_record", "metric_names", "value"]
