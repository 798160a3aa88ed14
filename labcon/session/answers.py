"""How commands reach a Session: the CommandHost it offers them, and the replies to immediate commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labcon.commands import grammar as C
from labcon.commands.apply import apply_command
from labcon.commands.base import Answer
from labcon.commands.cmd_session import format_status
from labcon.errors import CommandError, LabconError
from labcon.fmt import fmt_num
from labcon.session.api import Reply

if TYPE_CHECKING:
    from labcon.session.session import Session

__all__ = ["SessionHost", "answer", "format_status"]


class SessionHost:
    """The CommandHost a Session gives commands: its Runner and the session-level operations."""

    def __init__(self, session: Session):
        self.s = session
        self.runner = session.runner

    def pause(self) -> str:
        """Pause at this batch boundary, with a checkpoint."""
        s = self.s
        s.run_state.set_state("paused", "paused by command")
        s.persist.save(mid_epoch=True)
        return f"paused at epoch {s.runner.epoch}, batch {s.runner.iter}"

    def resume(self) -> str:
        """Back to running."""
        self.s.run_state.set_state("running")
        return "resumed"

    def stop(self) -> str:
        """Ask the fit to stop at the next batch boundary."""
        self.s.run_state.request_stop()
        return "stopping at the next batch"

    def save(self, label: str | None) -> str:
        """A checkpoint now (mid-epoch while a fit runs)."""
        return f"saved {self.s.persist.save(mid_epoch=self.s.state != 'idle', label=label)}"

    def note(self, text: str) -> str:
        """A note on the current run, or the last one (a finished run takes notes)."""
        try:
            return f"noted on run {self.s.persist.note(text)}"
        except LabconError as e:
            raise CommandError(str(e)) from None

    def search_journal(self, query: str) -> C.Answer:
        """Runs matching a journal query."""
        if self.s.persist.writer is not None:
            self.s.persist.writer.flush()
        rows = self.s.journal.search(query, limit=20)
        if not rows:
            return C.Answer(f"no runs match {query!r}", {"runs": []})
        return C.Answer("\n".join(_run_line(r) for r in rows), {"runs": rows})

    def status(self) -> dict[str, Any]:
        """The session's status snapshot."""
        return self.s.status()

    def data_summary(self) -> str:
        """The data report."""
        return self.s.data_summary()

    def replay(self, run: str) -> Answer:
        """Start the replay of a journaled run in its own session process."""
        from labcon.session.replay_process import launch_replay

        return launch_replay(self.s, run)

    def interrupted_fit(self) -> tuple[list[dict[str, Any]], float] | None:
        """The stopped fit's schedule changes (kept in its plan) and where it stopped, if it can continue."""
        persist, r = self.s.persist, self.runner
        plan = persist.plan
        if plan is None or plan.remaining(r.epoch) < 1:
            return None
        # The live list: a `set` appends to it, and the continued fit starts from it (Persistence.live_plan).
        return persist.sched_edits, (r.train_iter - plan.start_iter) / max(1, plan.total)


def answer(s: Session, cmd: C.Command) -> Reply:
    """The reply to a read-only or immediate command."""
    out = apply_command(cmd, SessionHost(s))
    return Reply(True, out.text, data=out.data)


def _run_line(r: dict) -> str:
    metrics = r.get("final_metrics") or {}
    shown = "  ".join(
        f"{k} {fmt_num(v)}" for k, v in list(metrics.items())[:3] if isinstance(v, (int, float))
    )
    return f"run {r.get('id')}  {r.get('session')}  {r.get('status')}  {shown}"
