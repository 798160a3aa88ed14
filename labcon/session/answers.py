"""Commands answered at once without touching training: help, status, listings, notes, journal queries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from labcon.commands import grammar as C
from labcon.commands.apply import RUNNER_COMMANDS, apply_runner_command
from labcon.session.api import Reply

if TYPE_CHECKING:
    from labcon.session.session import Session


def format_status(st: dict) -> str:
    """A session status as a few readable lines."""
    hy = "  ".join(f"{k}={','.join(f'{v:.3g}' for v in vals)}" for k, vals in st["hypers"].items())
    lines = [
        f"session {st['name']}: {st['state']}  epoch {st['epoch']}  batch {st['iter']}/{st['n_iter']}  "
        f"iteration {st['train_iter']}  run {st['run_id']}",
        f"device {st['device']}  model {st['model']}  opt {st['opt']}  {hy}",
        f"callbacks: {', '.join(st['cbs'])}",
    ]
    if st.get("last_error"):
        lines.append(f"last error: {st['last_error']}")
    return "\n".join(lines)


def answer(s: Session, cmd: C.Command) -> Reply:
    """The reply to a read-only or immediate command."""
    if isinstance(cmd, C.Help):
        return Reply(True, C.help_text(cmd.topic))
    if isinstance(cmd, C.Status):
        st = s.status()
        return Reply(True, format_status(st), data=st)
    if isinstance(cmd, RUNNER_COMMANDS):
        return Reply(True, apply_runner_command(cmd, s.runner))
    if isinstance(cmd, C.Replay):
        from labcon.session.replay_process import launch_replay

        return launch_replay(s, cmd)
    if isinstance(cmd, C.DataSummary):
        return Reply(True, s.data_summary())
    if isinstance(cmd, C.Note):
        s.persist.ensure_run()
        if s.persist.writer is None:
            return Reply(False, "this session keeps no journal")
        s.persist.writer.put_note(s.persist.run_id, cmd.message)
        s.persist.writer.flush()
        return Reply(True, f"noted on run {s.persist.run_id}")
    if isinstance(cmd, C.Journal):
        if s.persist.writer is not None:
            s.persist.writer.flush()
        rows = s.journal.search(cmd.query, limit=20)
        if not rows:
            return Reply(True, f"no runs match {cmd.query!r}", data={"runs": []})
        lines = [_run_line(r) for r in rows]
        return Reply(True, "\n".join(lines), data={"runs": rows})
    return Reply(False, f"'{cmd.text}' is not answered here")


def _run_line(r: dict) -> str:
    metrics = r.get("final_metrics") or {}
    shown = "  ".join(f"{k} {v:.4f}" for k, v in list(metrics.items())[:3] if isinstance(v, (int, float)))
    return f"run {r.get('id')}  {r.get('session')}  {r.get('status')}  {shown}"
