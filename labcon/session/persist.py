"""What a session writes: journal rows (batched, off the training thread) and checkpoints (atomic)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labcon.commands.apply import apply_runner_command
from labcon.core.distributed import unwrap_model
from labcon.errors import CheckpointError, LabconError
from labcon.session.checkpoint import rng_state, save_checkpoint, set_rng_state
from labcon.session.config import Config, DataConfig
from labcon.session.deviation import Branch, describe, epoch_deltas
from labcon.session.fitplan import FitPlan
from labcon.session.safety import SessionLock, check_private, private_dir

if TYPE_CHECKING:
    from labcon.session.journal import Journal
    from labcon.session.journal_writer import JournalWriter
    from labcon.session.session import Session

FORMAT = 1
_LABEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def portable_config(config: Config) -> Config:
    """The config with a relative data path made absolute: session.toml lives in another folder than the
    config file it came from, and relative paths are read relative to the file that holds them."""
    path = config.data.raw.get("path")
    if not isinstance(path, str) or Path(path).is_absolute():
        return config
    absolute = str((Path(config.base_dir) / path).resolve())
    return config.replace(data=DataConfig({**config.data.raw, "path": absolute}))


@dataclass(frozen=True)
class _Pending:
    """An event that happened between runs; it is journaled into the next run (it sets that run up)."""

    kind: str
    text: str
    epoch: int
    iteration: int
    data: dict[str, Any] | None
    when: float


class Persistence:
    """Journal and checkpoints of one session; only rank 0 of a distributed run writes.

    Runs are records: each fit is a run (linked to the session's previous run), open while it trains. A
    finished run is never written to again except for notes and tags; commands applied between fits belong
    to the next run. A stopped or failed fit that is resumed continues (reopens) its own run.
    """

    def __init__(self, session: Session, journal: bool = True):
        self.s = session
        self.enabled = journal
        self.run_id: int | None = None  # the open run, or the last one (notes attach to it)
        self.run_open = False
        self.parent_id: int | None = None  # the run a replay session replays
        self.branch: Branch | None = None  # set when a replay branches: its deviation is journaled
        self.plan: FitPlan | None = None
        self.sched_edits: list[dict[str, Any]] = []  # the live fit's schedule changes (its scheduler appends)
        self._pending: list[_Pending] = []
        self.structural: list[str] = []  # epoch-level commands applied so far (re-applied on resume)
        self._writer: JournalWriter | None = None
        self._journal: Journal | None = None
        self._batches_logged = 0
        self.ckpt_dir = session.dir / "checkpoints"
        self.restored_from: Path | None = None  # the checkpoint the session was resumed from
        self.notices: list[str] = []  # what the restore had to say (front ends that attach later print it)
        self._lock: SessionLock | None = None
        if self.enabled:
            private_dir(session.home, "sessions folder")  # first: mkdir gives parents default modes
            self._lock = SessionLock(private_dir(session.dir, "session folder"), session.name)
            try:
                self._open_session(session)
            except BaseException:
                self.close()  # lets go of the lock and the journal
                raise

    def _open_session(self, session: Session) -> None:
        """Check the journal, then write session.toml (private) and mark runs whose process died."""
        journal_file = session.home / "journal.db"
        check_private(journal_file, "journal")
        have_journal = journal_file.exists()  # a new one is created with the first run, not now
        if have_journal:
            self.journal.quick_check()  # a damaged journal is said now, not as a thread traceback mid-fit
        cfg = session.dir / "session.toml"
        check_private(cfg, "session config")
        if not cfg.exists():
            tmp = cfg.with_suffix(".toml.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(portable_config(session.config).replace(name=session.name).to_toml())
            tmp.replace(cfg)
        # Runs whose process died (kill -9, power loss) are marked now, not left 'running' forever.
        for rid in self.journal.recover_stale() if have_journal else ():
            self.notices.append(f"run {rid} was left 'running' by a process that died; marked crashed")

    # ----- journal ------------------------------------------------------------------------------------
    @property
    def writer(self) -> JournalWriter | None:
        """The background journal writer (opened on first use)."""
        if self._writer is None and self.enabled:
            from labcon.session.journal_writer import JournalWriter

            self._writer = JournalWriter(self.s.home / "journal.db", batch_every=1)
        return self._writer

    @property
    def journal(self) -> Journal:
        """A reader connection to the journal."""
        if self._journal is None:
            from labcon.session.journal import Journal

            self.s.home.mkdir(parents=True, exist_ok=True)
            self._journal = Journal(self.s.home / "journal.db")
        return self._journal

    def begin_run(self) -> int | None:
        """A new run for the fit starting now, linked to the session's previous run; the events applied
        since that one ended (idle commands that set this fit up) are journaled into it."""
        if self.writer is None:
            return None
        self.run_id = self.writer.start_run(
            self.s.name,
            self.s.config.replace(name=self.s.name).to_toml(),
            self.s.config.seed,
            self.parent_id,
            previous_id=self.run_id,
        )
        return self._open()

    def continue_run(self) -> int | None:
        """The interrupted fit's own run trains again (status back to running); a new run if it has none."""
        if self.writer is None:
            return None
        if self.run_id is None:
            return self.begin_run()
        self.writer.put_reopen(self.run_id)
        return self._open()

    def _open(self) -> int | None:
        """The run takes the events that happened since the last one ended (they set this fit up)."""
        self.run_open = True
        pending, self._pending = self._pending, []
        for p in pending:
            self.writer.put_event(self.run_id, p.kind, p.text, p.epoch, p.iteration, p.data, when=p.when)
        return self.run_id

    def _event(self, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        """Into the open run; between runs a command waits for the next run (it sets that fit up), while a
        report (error, info) annotates the last run, as a note would (its metrics and status stay)."""
        if self.writer is None:
            return
        r = self.s.runner
        if self.run_open or (kind != "command" and self.run_id is not None):
            self.writer.put_event(self.run_id, kind, text, r.epoch, r.train_iter, data)
        else:
            self._pending.append(_Pending(kind, text, r.epoch, r.train_iter, data, time.time()))

    def log_command(
        self, text: str, point: str, reply: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        """Journal an applied command at (epoch, train_iter) with where it was applied (for replay)."""
        data: dict[str, Any] = {"point": point, "reply": reply} if reply else {"point": point}
        data.update(extra or {})
        self._event("command", text, data)

    def log(self, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        """Journal an error, info or cancel event (with plain-valued `data`, e.g. a profile's figures)."""
        self._event(kind, text, data)

    def note(self, text: str) -> int:
        """Attach a note to the open run, or to the last one (a finished run takes notes); its id."""
        if self.writer is None:
            raise LabconError("this session keeps no journal")
        if self.run_id is None:
            raise LabconError("no run yet: notes attach to a run; start a fit first (e.g. fit_one_cycle 3)")
        self.writer.put_note(self.run_id, text)
        self.writer.flush()
        return self.run_id

    def log_epoch(self, row: dict[str, float]) -> None:
        """Journal one epoch row and a sample of the batch losses since the last one."""
        if self.writer is None or not self.run_open:
            return
        clean = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, float) and math.isfinite(v)}
        self.writer.put_epoch(self.run_id, int(row["epoch"]), clean)
        rec, r = self.s.runner.recorder, self.s.runner
        new = rec.losses_since(self._batches_logged)
        start = r.train_iter - len(new)
        rows = [
            (start + i, {"loss": v}) for i, v in enumerate(new) if (start + i) % 10 == 0 and math.isfinite(v)
        ]
        self.writer.put_batches(self.run_id, rows)
        self._batches_logged = rec.recorded

    def live_plan(self) -> FitPlan | None:
        """The current fit's plan with the schedule changes made so far (what a checkpoint stores)."""
        if self.plan is None:
            return None
        return dataclasses.replace(self.plan, sched_edits=tuple(dict(e) for e in self.sched_edits))

    def run_rows(self) -> list[dict[str, Any]]:
        """The epoch rows of the current fit's run (from where its plan started)."""
        start = self.plan.start_epoch if self.plan is not None else 0
        return [dict(r) for r in self.s.runner.recorder.rows if int(r.get("epoch", -1)) >= start]

    def fit_ended(self, status: str, reason: str, train_seconds: float) -> None:
        """Close the fit's run: status, this run's last epoch metrics, its training time."""
        if self.writer is None or not self.run_open:
            return
        if reason and status != "done":
            self.log("cancel" if status == "stopped" else "error", reason)
        rows = self.run_rows()
        if self.branch is not None:
            self._log_branch(rows)
        last = rows[-1] if rows else {}
        final = {
            k: v
            for k, v in last.items()
            if k not in ("epoch", "time") and isinstance(v, float) and math.isfinite(v)
        }
        self.writer.put_end_run(self.run_id, status, final, train_seconds)
        self.run_open = False
        self.writer.flush()

    def _log_branch(self, rows: list[dict[str, Any]]) -> None:
        """A branch's deviation from its parent after the branch point, journaled on the branch's run."""
        b = self.branch
        deltas = epoch_deltas(b.parent_rows, rows, after=b.after_epoch)
        if not deltas:
            return
        text = f"branch of run {b.parent_run} after epoch {b.after_epoch} ('{b.then}'), minus parent: {describe(deltas)}"
        data = {"parent": b.parent_run, "after_epoch": b.after_epoch, "then": b.then, "deltas": deltas}
        self._event("info", text, data)

    # ----- checkpoints -------------------------------------------------------------------------------
    def state(self, mid_epoch: bool) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, RNG, counters, history, plan."""
        r = self.s.runner
        if r.opt is None:
            r.create_opt()
        cbs = {c.name: c.state_dict() for c in r.cbs if c.name != "recorder"}
        return {
            "format": FORMAT,
            "epoch": r.epoch if mid_epoch else r.epoch + 1 if r.in_fit else r.epoch,
            "skip": r.iter if mid_epoch and r.in_fit and r.training else 0,
            "train_iter": r.train_iter,
            "model": unwrap_model(r.model).state_dict(),
            "opt": r.opt.state_dict(),
            "rng": rng_state(),
            "recorder": r.recorder.state_dict(),
            "callbacks": {k: v for k, v in cbs.items() if v},
            "plan": self.live_plan().to_state() if self.plan is not None else {},
            "structural": list(self.structural),
            "run_id": -1 if self.run_id is None else self.run_id,
            # Commands applied since the last run ended travel with the state they changed, into the next run.
            "pending": [dataclasses.asdict(p) for p in self._pending],
        }

    def save(self, mid_epoch: bool, label: str | None = None) -> Path | None:
        """Write a checkpoint (and, with a label, a named copy under saved/)."""
        if not self.enabled:
            return None
        if self._writer is not None:
            # Once per checkpoint (not per step): a checkpoint then never runs ahead of its journal rows.
            self._writer.flush()
        state = self.state(mid_epoch)
        path = save_checkpoint(self.ckpt_dir, state, keep=2)
        if label:
            if not _LABEL.match(label):
                raise LabconError(
                    f"save name {label!r} may use letters, digits, '.', '_' and '-' (64 at most)"
                )
            path = save_checkpoint(self.s.dir / "saved" / label, state, keep=1)
        return path

    def restore(self) -> Path | None:
        """Load the newest checkpoint that loads and fits into the freshly built session (None if there is none)."""
        from labcon.session.restore import restore_latest

        return restore_latest(self)

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        """Apply a checkpoint's state to the runner (structural commands first, then the tensors)."""
        if "format" not in state:
            raise CheckpointError(
                f"{path} is not a labcon checkpoint (it holds {', '.join(map(str, list(state)[:6]))}; a labcon "
                "checkpoint holds the model, optimizer, counters and plan of a session)"
            )
        if state["format"] != FORMAT:
            raise CheckpointError(
                f"{path} has checkpoint format {state['format']!r}; this labcon reads {FORMAT}"
            )
        from labcon.session.restore import structural_commands

        r = self.s.runner
        # Vetted first (all of them), so a refused command leaves the model untouched.
        for cmd in structural_commands(self, list(state.get("structural", [])), path.name):
            apply_runner_command(cmd, r)
        self.structural = list(state.get("structural", []))
        if r.opt is None:
            r.create_opt()
        try:
            r.model.load_state_dict(state["model"])
            r.opt.load_state_dict(state["opt"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{path} does not fit this session's model/optimizer ({_mismatch(e)}); was session.toml edited "
                "after saving? Restore the config the checkpoint was made with, or start a new session name"
            ) from None
        r.recorder.load_state_dict(state["recorder"])
        for name, cb_state in state.get("callbacks", {}).items():
            cb = r.cb(name)
            if cb is not None:
                cb.load_state_dict(cb_state)
        r.epoch, r.train_iter, r.skip_batches = (
            int(state["epoch"]),
            int(state["train_iter"]),
            int(state["skip"]),
        )
        set_rng_state(state["rng"])
        self.plan = FitPlan.from_state(state.get("plan"))
        self.sched_edits = list(self.plan.sched_edits) if self.plan is not None else []
        run_id = int(state.get("run_id", -1))
        self.run_id = run_id if run_id >= 0 else None
        if self.run_id is not None and self.enabled and not self.journal.has_run(self.run_id):
            self.notices.append(
                f"the journal has no run {self.run_id} (journal.db was deleted or replaced); training from "
                f"{path.name} goes on as a new run"
            )
            self.run_id = None
        elif (
            self.run_id is not None
            and self.plan is not None
            and self.plan.remaining(r.epoch) > 0
            and self.enabled
            and self.journal.get_run(self.run_id)["status"] == "done"
        ):
            # An older checkpoint of a run that finished (its last one did not load): that run is a record, never
            # continued; the session holds this checkpoint's weights and trains on in a new run.
            self.notices.append(
                f"run {self.run_id} finished, so its fit is not continued from {path.name} (epoch {r.epoch}): "
                "the session holds that checkpoint's weights, and a new fit starts a new run"
            )
            self.plan, self.sched_edits = None, []
        self._pending = [_Pending(**p) for p in state.get("pending", [])]
        self._batches_logged = r.recorder.recorded

    def close(self) -> None:
        """Flush and close the journal connections."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _mismatch(e: BaseException) -> str:
    """torch's load_state_dict error in one line: its first two differences and how many more."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    details = [x for x in lines[1:] if x]
    if len(details) <= 2:
        return "; ".join(lines) or type(e).__name__
    return f"{lines[0]} {details[0]}; {details[1]}; and {len(details) - 2} more"
