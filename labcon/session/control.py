"""The two callbacks a Session installs: the command point (pause/apply) and the bridge (messages, journal, saves)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from labcon.commands import grammar as C
from labcon.core.events import Callback, CancelFitException
from labcon.session.messages import BatchStats, EpochEnded, Message, Progress, TelemetryUpdated
from labcon.session.runstate import RunState

if TYPE_CHECKING:
    from labcon.session.persist import Persistence

Apply = Callable[[C.Command, str], None]


class SessionControl(Callback):
    """The safe points: applies replayed and queued commands, blocks while paused, stops on request."""

    removable = False
    order = -30  # before anything touches the batch
    run_in_probe = False

    def __init__(self, run_state: RunState, apply: Apply, persist: Persistence):
        self.run_state, self.apply, self.persist = run_state, apply, persist

    def _apply_all(self, cmds: Iterable[C.Command], point: str) -> None:
        for cmd in cmds:
            self.apply(cmd, point)

    def before_batch(self) -> None:
        if self.runner.training:
            self.batch_point()

    def batch_point(self) -> None:
        """Before every training batch: replayed and queued commands, pause, stop."""
        run = self.run_state
        self._apply_all(run.replay.batch.pop(self.runner.train_iter, ()), "batch")
        self._apply_all(run.take_batch(), "batch")
        run.run_calls()
        while run.wait_paused():
            # Paused ranks all loop here, so rank 0's `resume` / `stop` reaches the others the same way.
            self._apply_all(run.take_batch(), "batch")
            run.run_calls()
        if run.take_stop():
            self.persist.save(mid_epoch=True)
            raise CancelFitException("stopped by user")

    def epoch_point(self) -> None:
        """After every epoch (row journaled): epoch-level commands, then the checkpoint, then a replay's end."""
        r, replay = self.runner, self.run_state.replay
        self._apply_all(replay.epoch.pop(r.epoch, ()), "epoch")
        self._apply_all(self.run_state.take_epoch(), "epoch")
        self.persist.save(mid_epoch=False)
        if replay.until is not None and r.epoch + 1 >= replay.until:
            replay.until_reached = True
            raise CancelFitException(f"replay reached epoch {replay.until}")


class SessionBridge(Callback):
    """Turns training events into messages, journal rows and checkpoints (host values only)."""

    removable = False
    order = 90  # after the Recorder (50) and Telemetry (60) so their host copies are fresh
    run_in_probe = False
    min_interval = 0.1  # seconds between Progress messages (the UI merges further)

    def __init__(self, publish: Callable[[Message], None], persist: Persistence, control: SessionControl):
        self.publish, self.persist, self.control = publish, persist, control
        self._sent = 0
        self._last = 0.0
        self._tel_seen = -1

    def before_fit(self) -> None:
        self._t_fit = time.perf_counter()
        self._sent = self.runner.recorder.recorded

    def before_epoch(self) -> None:
        self._t_epoch = time.perf_counter()

    def after_batch(self) -> None:
        now = time.perf_counter()
        r = self.runner
        last = r.iter + 1 == r.n_iter
        if now - self._last < self.min_interval and not last:
            return
        self._last = now
        rec = r.recorder
        # Counted by `recorded`, not len(losses): a long history is thinned, and its length then shrinks.
        new = rec.fresh(self._sent)
        if new > 0:
            self.publish(
                BatchStats(
                    start_iter=r.train_iter - new,
                    losses=tuple(rec.losses[-new:]),
                    smooth_losses=tuple(rec.smooth_losses[-new:]),
                    lrs=tuple(x[-1] for x in rec.lrs[-new:]),
                    moms=tuple(x[-1] for x in rec.moms[-new:]),
                )
            )
            self._sent = rec.recorded
        done = r.iter + 1
        elapsed = now - self._t_epoch
        per = elapsed / max(1, done)
        left_fit = (r._fit_total_iters - (r.train_iter - r._fit_start_iter)) * per if r.training else 0.0
        self.publish(
            Progress(
                epoch=r.epoch,
                phase="train" if r.training else "valid",
                iter=done,
                n_iter=r.n_iter,
                train_iter=r.train_iter,
                loss=rec.losses[-1] if rec.losses else float("nan"),
                smooth_loss=rec.smooth_losses[-1] if rec.smooth_losses else float("nan"),
                lrs=tuple(g["lr"] for g in r.opt.param_groups),
                moms=tuple(rec.moms[-1]) if rec.moms else (),
                elapsed=now - self._t_fit,
                eta_epoch=(r.n_iter - done) * per if r.training else 0.0,
                eta_fit=max(0.0, left_fit),
            )
        )
        self._check_telemetry()

    def _check_telemetry(self) -> None:
        tel = self.runner.cb("telemetry")  # looked up each time: the `telemetry` command adds and removes it
        it = getattr(tel, "_last_iter", None) if tel is not None else None
        if it is not None and it != self._tel_seen:
            self._tel_seen = it
            self.publish(TelemetryUpdated(train_iter=int(it)))

    def after_epoch(self) -> None:
        row = self.runner.recorder.last_row
        if row is not None and row.get("epoch") == self.runner.epoch:
            self.persist.log_epoch(dict(row))
            self.publish(EpochEnded(epoch=self.runner.epoch, row=dict(row)))
        self.control.epoch_point()
