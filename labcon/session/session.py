"""Session: config + data + model + runner + journal + command queue; the unit every front end talks to."""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from labcon.commands import grammar as C
from labcon.commands.apply import RunnerContext, apply_command
from labcon.commands.usercode import code_sha256
from labcon.core.allocator import keep_freed_memory
from labcon.core.hypers import check_hyper
from labcon.data.text_show import TextBatchView, sample_text_batch
from labcon.errors import CommandError, LabconError
from labcon.session.api import JournalView, Reply, Subscription, TelemetryView
from labcon.session.build import build
from labcon.session.build_text import is_text, link_text_runs
from labcon.session.bus import Bus
from labcon.session.config import Config, load_config
from labcon.session.control import SessionBridge, SessionControl
from labcon.session.fitjobs import FitJobs
from labcon.session.fitplan import FitPlan
from labcon.session.messages import CommandApplied, CommandFailed, Log, Message
from labcon.session.paths import sessions_home, validate_session_name
from labcon.session.persist import Persistence, portable_config
from labcon.session.runstate import RunState
from labcon.session.safety import check_session_files
from labcon.session.views import SummaryView, schedule_plan


class Session:
    """A named experiment: build it from a Config, drive it with submit(text), watch it with subscribe().

    Implements labcon.session.api.SessionAPI in this process.
    """

    remote = False  # the run lives in this process

    def __init__(
        self,
        config: Config,
        home: str | os.PathLike[str] | None = None,
        name: str | None = None,
        rank: int = 0,
        world_size: int = 1,
        journal: bool = True,
        device: torch.device | None = None,
        trust_code: bool = False,
    ):
        self.name = validate_session_name(name or config.name)
        # A session's process trains: keep the memory each step frees for the next (labcon/core/allocator.py).
        keep_freed_memory()
        # Consent to re-run user callback files named by checkpoints and journals (--trust-code).
        self.trust_code = trust_code
        self.home = sessions_home(home)
        self.dir = self.home / self.name
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        built = build(
            config, rank=rank, world_size=world_size, device=device, home=self.home, session_dir=self.dir
        )
        self.block, self.dls, self.runner = built.block, built.dls, built.runner
        self.runner.path = self.dir  # files callbacks write (SaveBest's best.pt) stay with the session
        self.build_notes = list(built.notes)
        guard = self.runner.cb("nan_guard")
        if guard is not None:
            guard.on_nan = self._on_nan
        self.bus = Bus()
        self.last_error: str | None = None
        self.last_profile: Any = None  # the latest `profile` result (labcon.core.profiler.ProfileReport)
        self._journaled_profile: dict[str, Any] | None | bool = False  # False: not looked up yet
        # One owner of the run state (state, queues, pause/stop); the callbacks and fit jobs are handed it.
        self.run_state = RunState(self.bus.publish, world_size=world_size, is_main=self.is_main)
        self.persist = Persistence(self, journal=journal and self.is_main)
        if is_text(config):
            link_text_runs(self)
        self.jobs = FitJobs(self, self.run_state, self._apply_safely)
        self.summary_view = SummaryView(self.runner, self.run_state)
        self.children: list[subprocess.Popen[bytes]] = []  # replay processes this session started
        control = SessionControl(self.run_state, self._apply_safely, self.persist)
        self.runner.add_cbs([control, SessionBridge(self.bus.publish, self.persist, control)])
        if world_size > 1:
            from labcon.core.distributed import DistributedCallback

            self.runner.add_cbs([DistributedCallback()])

    # ----- construction -----------------------------------------------------------------------------
    @classmethod
    def open_or_create(
        cls,
        target: str | os.PathLike[str] | None = None,
        sessions_dir: str | os.PathLike[str] | None = None,
        **kw: Any,
    ) -> Session:
        """The session TARGET names (labcon/session/target.py): a config file, a preset or a data folder (new, or
        the saved one of the same name and config), a saved session (resumed), or the built-in default."""
        from labcon.session.target import resolve_target

        t = resolve_target(target, sessions_dir)
        if t.config is None:
            return cls.resume(t.name, sessions_dir, **kw)
        return cls.from_config(t.config, sessions_dir, **kw)

    @classmethod
    def from_config(
        cls, config: Config, sessions_dir: str | os.PathLike[str] | None = None, **kw: Any
    ) -> Session:
        """A new session, or the saved one of the same name when its config is the same (never a mix of two)."""
        home = sessions_home(sessions_dir)
        name = validate_session_name(config.name)
        saved = home / name / "session.toml"
        check_session_files(home, name)
        if saved.is_file():
            if load_config(saved).replace(name=name) != portable_config(config).replace(name=name):
                raise LabconError(
                    f"session '{name}' already exists with a different config ({saved}); pass --session NEW_NAME "
                    f"(or set name = ... in the config), or `labcon resume {name}` to continue it as it was"
                )
            return cls.resume(name, home, **kw)
        return cls(config, home, **kw)

    @classmethod
    def resume(cls, name: str, sessions_dir: str | os.PathLike[str] | None = None, **kw: Any) -> Session:
        """Reopen a saved session and restore its latest complete checkpoint."""
        home = sessions_home(sessions_dir)
        name = validate_session_name(name)
        cfg_path = home / name / "session.toml"
        check_session_files(home, name)  # before reading anything another user could have planted
        if not cfg_path.is_file():
            raise LabconError(f"no saved session '{name}' under {home} (missing {cfg_path})")
        session = cls(load_config(cfg_path), home, name=name, **kw)
        try:
            session.persist.restore()
        except BaseException:
            session.close()  # lets go of the session lock and the journal
            raise
        return session

    @property
    def state(self) -> str:
        """idle | running | paused | stopping (owned by the RunState)."""
        return self.run_state.state

    # ----- the front-end protocol -------------------------------------------------------------------
    def subscribe(self) -> Subscription:
        """A queue of messages from now on (several subscribers at once)."""
        return self.bus.subscribe()

    def publish(self, msg: Message) -> None:
        """Send a message to every subscriber."""
        self.bus.publish(msg)

    def context(self) -> RunnerContext:
        """What command validation and completion see of this session."""
        return RunnerContext(self.runner, lambda: self.state)

    def submit(self, text: str) -> Reply:
        """Parse, validate and apply (or queue) one command; never raises for bad input."""
        try:
            cmd = C.validate(C.parse(text), self.context())
            return self.dispatch(cmd)
        except (CommandError, LabconError, ValueError, KeyError, TypeError, IndexError) as e:
            # str(KeyError) adds quotes of its own; other messages keep theirs (got 'abc').
            msg = (e.args[0] if isinstance(e, KeyError) and e.args else str(e)) or type(e).__name__
            self.publish(CommandFailed(text=text, error=msg))
            return Reply(False, msg)

    def dispatch(self, cmd: C.Command) -> Reply:
        """Route a validated command: answer now, queue for a safe point, or start work."""
        if cmd.when == "now":
            return self._answer(cmd)
        if cmd.when == "idle":
            return self.jobs.submit(cmd)
        note = cmd.queued_note(self.context())  # what will happen, said at queue time to every client
        with self.run_state.lock:
            if self.run_state.state == "idle":
                if isinstance(cmd, (C.Pause, C.Resume, C.Stop)):
                    return Reply(False, f"'{cmd.text}': nothing is running")
                return Reply(True, self.apply(cmd, point="idle"))
            return Reply(*self.run_state.queue(cmd, note))

    def _answer(self, cmd: C.Command) -> Reply:
        from labcon.session.answers import answer

        return answer(self, cmd)

    # ----- applying commands (training thread at safe points, or any thread when idle) -----------------
    def apply(self, cmd: C.Command, point: str) -> str:
        """Apply a command now and journal it at (epoch, train_iter)."""
        from labcon.session.answers import SessionHost

        r = self.runner
        extra = None
        if isinstance(cmd, C.CbAdd) and cmd.is_path:
            # Pinned to the bytes hashed now; the journal keeps the hash so a resume can re-run only this code.
            cmd = replace(cmd, sha256=cmd.sha256 or code_sha256(cmd.cb))
            extra = {"sha256": cmd.sha256}
        reply = apply_command(cmd, SessionHost(self)).text
        if cmd.when == "epoch":
            self.persist.structural.append(cmd.text)
        self.persist.log_command(cmd.text, point, extra=extra)
        self.publish(CommandApplied(text=cmd.text, epoch=r.epoch, iter=r.train_iter, reply=reply))
        return reply

    def _apply_safely(self, cmd: C.Command, point: str) -> None:
        try:
            self.apply(cmd, point)
        except (LabconError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            self.publish(CommandFailed(text=cmd.text, error=str(e)))
            self.persist.log("error", f"{cmd.text}: {e}")

    def _on_nan(self, message: str) -> None:
        """NaN guard hook: pause (a person can lower the lr and resume) instead of stopping."""
        self.last_error = message
        self.publish(Log(level="error", text=message))
        self.persist.log("error", message)
        self.run_state.set_state("paused", message)

    # ----- read-only snapshots ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Where the session is (plain values)."""
        r = self.runner
        hypers: dict[str, list[float]] = {}
        if r.opt is not None:
            for h in ("lr", "mom", "wd"):
                try:
                    hypers[h] = [float(v) for v in r.hyper(h)]
                except KeyError:
                    pass
        return {
            "name": self.name,
            "state": self.state,
            "epoch": r.epoch,
            "n_epochs": r.n_epochs,
            "iter": r.iter,
            "n_iter": r.n_iter,
            "train_iter": r.train_iter,
            "run_id": self.persist.run_id,
            "device": str(r.device),
            "model": type(r.model).__name__ + f" ({sum(p.numel() for p in r.model.parameters()):,} params)",
            "opt": getattr(r.opt_func, "__name__", "?"),
            "hypers": hypers,
            "cbs": [c.name for c in r.cbs],
            "built": list(self.build_notes),
            "last_error": self.last_error,
            # The fit under way (or stopped, to be resumed): front ends count its epochs and batches from it.
            "fit": _fit_span(self.persist.plan),
            # From two clock readings the Runner takes per training batch: None until 20 batches have run.
            "bound": r.input_meter.bound,
            "input_share": r.input_meter.share,
        }

    def history(self) -> list[dict[str, float]]:
        """Epoch rows so far."""
        return [dict(x) for x in self.runner.recorder.rows]

    def batch_history(self, limit: int = 5000) -> dict[str, list[float]]:
        """Recent per-batch losses, smoothed losses, lrs and moms (last param group)."""
        rec = self.runner.recorder
        return {
            "losses": list(rec.losses[-limit:]),
            "smooth_losses": list(rec.smooth_losses[-limit:]),
            "lrs": [x[-1] for x in rec.lrs[-limit:]],
            "moms": [x[-1] if x and not math.isnan(x[-1]) else math.nan for x in rec.moms[-limit:]],
        }

    def telemetry_snapshot(self) -> TelemetryView | None:
        """Host-side telemetry, or None when telemetry is off."""
        tel = self.runner.cb("telemetry")
        return tel.snapshot() if tel is not None else None

    def hooks_table(self) -> list[dict[str, Any]]:
        """Every installed hook: id, module, kind, owner, scope."""
        return self.runner.hooks.table()

    @property
    def folder(self) -> Path:
        """The session's folder (checkpoints, logs, command history)."""
        return self.dir

    def module_paths(self) -> list[str]:
        """Every module path of the model ('' is the model itself)."""
        return [n for n, _ in self.runner.model.named_modules()]

    def model_summary(self) -> dict[str, Any]:
        """Per module: output shape, parameters and multiply-adds per item (computed once per model change)."""
        return self.summary_view.get()

    def schedule_plan(self) -> dict[str, Any] | None:
        """The running fit's planned schedules over the whole fit, or None when no fit runs."""
        return schedule_plan(self.runner, self.persist.plan)

    def data_summary(self) -> str:
        """The DataBlock's stage-by-stage report."""
        return self.block.summary()

    def sample_batch_image(self, augment: bool = True) -> Any:
        """A grid image (PIL) of training samples with labels."""
        return self.block.show_batch(augment=augment)

    def profile_report(self) -> dict[str, Any] | None:
        """The latest `profile N`'s figures; in a resumed session, until it profiles, the last one it journaled."""
        if self.last_profile is not None:
            return self.last_profile.as_dict()
        if self._journaled_profile is False:  # looked up once: a console attaching later asks again
            self._journaled_profile = _journaled_profile(self.journal, self.name)
        return self._journaled_profile or None

    def text_batch(self, draw: int = 0) -> TextBatchView | None:
        """A decoded training batch of a text session (draw k: another batch per k); None for image data."""
        return sample_text_batch(self.block, draw) if is_text(self.config) else None

    @property
    def journal(self) -> JournalView | None:
        """The journal (reader side), with every row written so far; None when this session keeps none."""
        if self.persist.writer is None:
            return None
        self.persist.writer.flush()
        return self.persist.journal

    # ----- lifecycle --------------------------------------------------------------------------------
    def start_fit(self, epochs: int | None = None, lr: float | None = None) -> Reply:
        """Start the fit the config describes (schedule, epochs, lr), optionally overridden."""
        t = self.config.train
        # `is None`, not `or`: an explicit 0 must reach validation and be refused, never replaced.
        n = t.epochs if epochs is None else epochs
        lr = t.lr if lr is None else lr
        policy = dict(t.schedule).get("policy", "constant") if isinstance(t.schedule, tuple) else t.schedule
        # A typed command, never text formatted only to be parsed back; checked as a typed one would be.
        fit: C.Command = C.FitOneCycle(n, lr) if policy == "one_cycle" else C.Fit(n, lr)
        try:
            check_hyper("epochs", n)
            check_hyper("lr", lr)
            return self.dispatch(C.validate(fit, self.context()))
        except (CommandError, LabconError, ValueError) as e:
            self.publish(CommandFailed(text=fit.text, error=str(e)))
            return Reply(False, str(e))

    def resume_fit(self) -> bool:
        """Continue an interrupted fit from its checkpoint (in its own run); False when it had finished."""
        plan = self.persist.plan
        if plan is None or plan.remaining(self.runner.epoch) < 1:
            return False
        self.run_state.begin(f"resuming '{plan.text}'")  # running at once, as a typed fit is
        self.jobs.put(self.persist.live_plan())  # with the schedule changes made while it was stopped
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until all queued work is done; False on timeout."""
        return self.jobs.wait_idle(timeout)

    def detach(self) -> None:
        """Front end leaves; training continues (headless sessions keep serving their socket)."""

    def close(self) -> None:
        """Stop work, flush the journal, end the run (replays this session started run on by themselves)."""
        for proc in self.children:
            proc.poll()  # reap the ones that have ended
        self.jobs.shutdown()
        self.persist.close()
        closer = getattr(self.dls, "close", None)
        if callable(closer):
            closer()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _journaled_profile(journal: JournalView | None, name: str, runs: int = 20) -> dict[str, Any] | None:
    """The figures of the newest profile journaled in session `name`'s last `runs` runs (None: none)."""
    if journal is None:
        return None
    try:
        for run in journal.search(f"session:{name}", limit=runs):
            found = [
                e["data"]["profile"]
                for e in journal.events(run["id"], ["info"])
                if "profile" in (e["data"] or {})
            ]
            if found:
                return found[-1]
    except LabconError:
        return None  # an unreadable journal: no profile to show, the session itself is fine
    return None


def _fit_span(plan: FitPlan | None) -> dict[str, int] | None:
    """The plan's epochs and training batches as plain ints (None when no fit is planned)."""
    if plan is None:
        return None
    return {"start_epoch": plan.start_epoch, "n": plan.n, "start_iter": plan.start_iter, "total": plan.total}
