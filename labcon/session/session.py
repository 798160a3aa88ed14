"""Session: config + data + model + runner + journal + command queue; the unit every front end talks to."""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch

from labcon.commands import grammar as C
from labcon.commands.apply import RunnerContext, apply_command
from labcon.commands.usercode import code_sha256
from labcon.core.events import CancelFitException
from labcon.errors import CommandError, LabconError
from labcon.session.build import build
from labcon.session.bus import Bus, Reply, Subscription
from labcon.session.config import Config, load_config, parse_config
from labcon.session.control import SessionBridge, SessionControl
from labcon.session.fitjobs import FitJobs
from labcon.session.messages import (
    CommandApplied,
    CommandFailed,
    Log,
    Message,
    StateChanged,
    TelemetryUpdated,
)
from labcon.session.paths import (
    DEFAULT_SESSION,
    config_file,
    no_such_session,
    sessions_home,
    validate_session_name,
)
from labcon.session.persist import Persistence, portable_config
from labcon.session.safety import check_session_files


class Session:
    """A named experiment: build it from a Config, drive it with submit(text), watch it with subscribe()."""

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
        # Consent to re-run user callback files named by checkpoints and journals (--trust-code).
        self.trust_code = trust_code
        self.home = sessions_home(home)
        self.dir = self.home / self.name
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        built = build(config, rank=rank, world_size=world_size, device=device)
        self.block, self.dls, self.runner = built.block, built.dls, built.runner
        guard = self.runner.cb("nan_guard")
        if guard is not None:
            guard.on_nan = self._on_nan
        self.runner.add_cbs([SessionControl(self), SessionBridge(self)])
        if world_size > 1:
            from labcon.core.distributed import DistributedCallback

            self.runner.add_cbs([DistributedCallback()])
        self.bus = Bus()
        self.state = "idle"
        self.last_error: str | None = None
        self.last_profile: Any = None  # the latest `profile` result (labcon.core.profiler.ProfileReport)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._batch_q: deque[C.Command] = deque()
        self._epoch_q: deque[C.Command] = deque()
        self._stop_requested = False
        self._tel_seen = -1
        self.replay_batch: dict[int, list[C.Command]] = {}
        self.replay_epoch: dict[int, list[C.Command]] = {}
        self.until_epoch: int | None = None
        self.until_reached = False
        self.persist = Persistence(self, journal=journal and self.is_main)
        self.jobs = FitJobs(self)

    # ----- construction -----------------------------------------------------------------------------
    @classmethod
    def open_or_create(
        cls,
        target: str | os.PathLike[str] | None = None,
        sessions_dir: str | os.PathLike[str] | None = None,
        **kw: Any,
    ) -> Session:
        """A session from a config file, an existing session's name (resumed), or the built-in default."""
        home = sessions_home(sessions_dir)
        if target is None:
            target = DEFAULT_SESSION
        path = config_file(target)
        if path is not None:
            return cls.from_config(load_config(path), home, **kw)
        name = validate_session_name(str(target))
        if (home / name / "session.toml").is_file():
            return cls.resume(name, home, **kw)
        if name == DEFAULT_SESSION:
            return cls(
                parse_config("", source="<built-in defaults>").replace(name=DEFAULT_SESSION), home, **kw
            )
        raise no_such_session(name, str(target), home)

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
        with self._lock:
            if self.state == "idle":
                if isinstance(cmd, (C.Pause, C.Resume, C.Stop)):
                    return Reply(False, f"'{cmd.text}': nothing is running")
                return Reply(True, self.apply(cmd, point="idle"))
            if isinstance(cmd, C.Resume) and self.state == "running":
                pending = [c for c in self._batch_q if isinstance(c, C.Pause)]
                if not pending:
                    return Reply(False, "nothing to resume: the session is running")
                self._batch_q = deque(c for c in self._batch_q if not isinstance(c, C.Pause))
                return Reply(True, "pause cancelled before it took effect")
            if cmd.when == "epoch" and self.state != "paused":
                self._epoch_q.append(cmd)
                return Reply(True, f"queued: '{cmd.text}' applies at the end of this epoch{note}")
            self._batch_q.append(cmd)
            self._wake.notify_all()
        return Reply(True, f"queued: '{cmd.text}' applies at the next batch{note}")

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

    def _set_state(self, state: str, reason: str = "") -> None:
        with self._lock:
            self.state = state
            self._wake.notify_all()
        self.publish(StateChanged(state=state, reason=reason))

    def _apply_safely(self, cmd: C.Command, point: str) -> None:
        try:
            self.apply(cmd, point)
        except (LabconError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            self.publish(CommandFailed(text=cmd.text, error=str(e)))
            self.persist.log("error", f"{cmd.text}: {e}")

    def _apply_all(self, cmds: Iterable[C.Command], point: str) -> None:
        for cmd in cmds:
            self._apply_safely(cmd, point)

    def _take(self, q: deque[C.Command]) -> list[C.Command]:
        """The queued commands to apply now. Distributed, only what rank 0 broadcast counts (on every rank),
        so a command that lands between the broadcast and the apply waits for the next one on all ranks."""
        if self.world_size > 1:
            return self.jobs.sync_ranks(q)
        if not q:
            return []  # the common case, every batch: no lock, no copy
        with self._lock:
            cmds = list(q)
            q.clear()
        return cmds

    def _batch_point(self) -> None:
        """Called before every training batch: replayed and queued commands, pause, stop."""
        r = self.runner
        self._apply_all(self.replay_batch.pop(r.train_iter, ()), "batch")
        self._apply_all(self._take(self._batch_q), "batch")
        while True:
            with self._lock:
                if self.state != "paused" or self._stop_requested:
                    break
                self._wake.wait(0.2)
            # Paused ranks all loop here, so rank 0's `resume` / `stop` reaches the others the same way.
            self._apply_all(self._take(self._batch_q), "batch")
        if self._stop_requested:
            self._stop_requested = False
            self.persist.save(mid_epoch=True)
            raise CancelFitException("stopped by user")

    def _epoch_point(self) -> None:
        """Called after every epoch (row journaled): epoch-level swaps, then the checkpoint."""
        r = self.runner
        self._apply_all(self.replay_epoch.pop(r.epoch, ()), "epoch")
        self._apply_all(self._take(self._epoch_q), "epoch")
        self.persist.save(mid_epoch=False)
        if self.until_epoch is not None and r.epoch + 1 >= self.until_epoch:
            self.until_reached = True
            raise CancelFitException(f"replay reached epoch {self.until_epoch}")

    def _on_nan(self, message: str) -> None:
        """NaN guard hook: pause (a person can lower the lr and resume) instead of stopping."""
        self.last_error = message
        self.publish(Log(level="error", text=message))
        self.persist.log("error", message)
        self._set_state("paused", message)

    def _check_telemetry(self) -> None:
        tel = self.runner.cb("telemetry")  # looked up each time: the `telemetry` command adds and removes it
        it = getattr(tel, "_last_iter", None) if tel is not None else None
        if it is not None and it != self._tel_seen:
            self._tel_seen = it
            self.publish(TelemetryUpdated(train_iter=int(it)))

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

    def telemetry_snapshot(self) -> Any:
        """Host-side telemetry, or None when telemetry is off."""
        tel = self.runner.cb("telemetry")
        return tel.snapshot() if tel is not None else None

    def hooks_table(self) -> list[dict[str, Any]]:
        """Every installed hook: id, module, kind, owner, scope."""
        return self.runner.hooks.table()

    def data_summary(self) -> str:
        """The DataBlock's stage-by-stage report."""
        return self.block.summary()

    def sample_batch_image(self, augment: bool = True) -> Any:
        """A grid image (PIL) of training samples with labels."""
        return self.block.show_batch(augment=augment)

    @property
    def journal(self) -> Any:
        """The journal (reader side)."""
        return self.persist.journal

    # ----- lifecycle --------------------------------------------------------------------------------
    def start_fit(self, epochs: int | None = None, lr: float | None = None) -> Reply:
        """Start the fit the config describes (schedule, epochs, lr), optionally overridden."""
        t = self.config.train
        # `is None`, not `or`: an explicit 0 must reach validation and be refused, never replaced.
        n = t.epochs if epochs is None else epochs
        lr = t.lr if lr is None else lr
        policy = dict(t.schedule).get("policy", "constant") if isinstance(t.schedule, tuple) else t.schedule
        kind = "fit_one_cycle" if policy == "one_cycle" else "fit"
        return self.submit(f"{kind} {n} lr={lr!r}")

    def resume_fit(self) -> bool:
        """Continue an interrupted fit from its checkpoint; False when the last fit had finished."""
        plan = self.persist.plan
        if not plan or plan["start_epoch"] + plan["n"] <= self.runner.epoch:
            return False
        self.jobs.put(dict(plan))
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until all queued work is done; False on timeout."""
        return self.jobs.wait_idle(timeout)

    def detach(self) -> None:
        """Front end leaves; training continues (headless sessions keep serving their socket)."""

    def close(self) -> None:
        """Stop work, flush the journal, end the run."""
        self.jobs.shutdown()
        self.persist.close()
        closer = getattr(self.dls, "close", None)
        if callable(closer):
            closer()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _fit_span(plan: dict[str, Any] | None) -> dict[str, int] | None:
    """The plan's epochs and training batches as plain ints (None when no fit is planned)."""
    if not plan:
        return None
    return {k: int(plan[k]) for k in ("start_epoch", "n", "start_iter", "total") if k in plan}
