"""What a session writes: journal rows (batched, off the training thread) and checkpoints (atomic)."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labcon.commands import grammar as C
from labcon.commands.apply import apply_runner_command
from labcon.core.distributed import unwrap_model
from labcon.errors import CheckpointError, LabconError
from labcon.session.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from labcon.session.config import Config, DataConfig
from labcon.session.deviation import Branch, describe, epoch_deltas
from labcon.session.fitplan import FitPlan
from labcon.session.messages import Log

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
        self._pending: list[_Pending] = []
        self.structural: list[str] = []  # epoch-level commands applied so far (re-applied on resume)
        self._writer: JournalWriter | None = None
        self._journal: Journal | None = None
        self._batches_logged = 0
        self.ckpt_dir = session.dir / "checkpoints"
        if self.enabled:
            session.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            cfg = session.dir / "session.toml"
            if not cfg.exists():
                tmp = cfg.with_suffix(".toml.tmp")
                tmp.write_text(portable_config(session.config).replace(name=session.name).to_toml())
                tmp.replace(cfg)

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
        self.run_open = True
        pending, self._pending = self._pending, []
        for p in pending:
            self.writer.put_event(self.run_id, p.kind, p.text, p.epoch, p.iteration, p.data, when=p.when)
        return self.run_id

    def continue_run(self) -> int | None:
        """The interrupted fit's own run trains again (status back to running); a new run if it has none."""
        if self.writer is None:
            return None
        if self.run_id is None:
            return self.begin_run()
        self.writer.put_reopen(self.run_id)
        self.run_open = True
        return self.run_id

    def _event(self, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        if self.writer is None:
            return
        r = self.s.runner
        if self.run_open:
            self.writer.put_event(self.run_id, kind, text, r.epoch, r.train_iter, data)
        else:
            self._pending.append(_Pending(kind, text, r.epoch, r.train_iter, data, time.time()))

    def log_command(self, text: str, point: str, reply: str | None = None) -> None:
        """Journal an applied command at (epoch, train_iter) with where it was applied (for replay)."""
        self._event("command", text, {"point": point, "reply": reply} if reply else {"point": point})

    def log(self, kind: str, text: str) -> None:
        """Journal an error, info or cancel event."""
        self._event(kind, text)

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
        new = rec.losses[self._batches_logged :]
        start = r.train_iter - len(new)
        rows = [
            (start + i, {"loss": v}) for i, v in enumerate(new) if (start + i) % 10 == 0 and math.isfinite(v)
        ]
        self.writer.put_batches(self.run_id, rows)
        self._batches_logged = len(rec.losses)

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
            "plan": self.plan.to_state() if self.plan is not None else {},
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
        """Load the newest complete checkpoint into the freshly built session (None if there is none)."""
        if not self.ckpt_dir.is_dir() or not any(self.ckpt_dir.glob("ckpt-*.pt")):
            return None
        state, path, warnings = load_latest(self.ckpt_dir)
        for w in warnings:
            self.s.publish(Log(level="warning", text=w))
        self.load_state(state, path)
        return path

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        """Apply a checkpoint's state to the runner (structural commands first, then the tensors)."""
        if state.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} has checkpoint format {state.get('format')!r}; this labcon reads {FORMAT}"
            )
        r = self.s.runner
        for text in state.get("structural", []):
            apply_runner_command(C.parse(text), r)
        self.structural = list(state.get("structural", []))
        if r.opt is None:
            r.create_opt()
        try:
            r.model.load_state_dict(state["model"])
            r.opt.load_state_dict(state["opt"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{path} does not fit this session's model/optimizer ({e}); was session.toml edited after saving? "
                "Start a new session name, or restore the config the checkpoint was made with."
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
        run_id = int(state.get("run_id", -1))
        self.run_id = run_id if run_id >= 0 else None
        self._pending = [_Pending(**p) for p in state.get("pending", [])]
        self._batches_logged = len(r.recorder.losses)

    def close(self) -> None:
        """Flush and close the journal connections."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
