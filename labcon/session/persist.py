"""What a session writes: journal rows (batched, off the training thread) and checkpoints (atomic)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labcon.commands.apply import apply_runner_command
from labcon.core.distributed import unwrap_model
from labcon.errors import CheckpointError, LabconError
from labcon.session.checkpoint import rng_state, save_checkpoint, set_rng_state
from labcon.session.config import Config, DataConfig
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


class Persistence:
    """Journal and checkpoints of one session; only rank 0 of a distributed run writes."""

    def __init__(self, session: Session, journal: bool = True):
        self.s = session
        self.enabled = journal
        self.run_id: int | None = None
        self.parent_id: int | None = None
        self.plan: dict[str, Any] | None = None
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
                self._open(session)
            except BaseException:
                self.close()  # lets go of the lock and the journal
                raise

    def _open(self, session: Session) -> None:
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

    def ensure_run(self) -> int | None:
        """The journal run for this session (started on first need); None where no journal is written (a rank
        other than 0 knows the run id from the checkpoint, but has no writer)."""
        if self.writer is None:
            return None
        if self.run_id is None:
            self.run_id = self.writer.start_run(
                self.s.name,
                self.s.config.replace(name=self.s.name).to_toml(),
                self.s.config.seed,
                self.parent_id,
            )
        return self.run_id

    def log_command(
        self, text: str, point: str, reply: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        """Journal an applied command at (epoch, train_iter) with where it was applied (for replay)."""
        if self.ensure_run() is None:
            return
        r = self.s.runner
        data = {"point": point, "reply": reply} if reply else {"point": point}
        data.update(extra or {})
        self.writer.put_event(self.run_id, "command", text, r.epoch, r.train_iter, data)

    def log(self, kind: str, text: str) -> None:
        """Journal an error, info or cancel event."""
        if self.ensure_run() is not None:
            r = self.s.runner
            self.writer.put_event(self.run_id, kind, text, r.epoch, r.train_iter)

    def log_epoch(self, row: dict[str, float]) -> None:
        """Journal one epoch row and a sample of the batch losses since the last one."""
        if self.ensure_run() is None:
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

    def fit_ended(self, status: str, reason: str) -> None:
        """Journal the end of a fit with the last epoch's metrics, and checkpoint where it stopped."""
        if self.writer is None or self.run_id is None:
            return
        if reason and status != "done":
            self.log("cancel" if status == "stopped" else "error", reason)
        last = self.s.runner.recorder.last_row or {}
        final = {k: v for k, v in last.items() if k not in ("epoch", "time") and math.isfinite(v)}
        self.writer.put_end_run(self.run_id, status, final)
        self.writer.flush()

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
            "plan": dict(self.plan or {}),
            "structural": list(self.structural),
            "run_id": -1 if self.run_id is None else self.run_id,
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
        if state.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} has checkpoint format {state.get('format')!r}; this labcon reads {FORMAT}"
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
        self.plan = dict(state["plan"]) or None
        run_id = int(state.get("run_id", -1))
        self.run_id = run_id if run_id >= 0 else None
        if self.run_id is not None and self.enabled and not self.journal.has_run(self.run_id):
            self.notices.append(
                f"the journal has no run {self.run_id} (journal.db was deleted or replaced); training from "
                f"{path.name} goes on as a new run"
            )
            self.run_id = None
        self._batches_logged = len(r.recorder.losses)

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
