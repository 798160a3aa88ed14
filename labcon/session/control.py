"""The two callbacks a Session installs: the command point (pause/apply) and the bridge (messages, journal, saves)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from labcon.core.events import Callback
from labcon.session.messages import BatchStats, EpochEnded, Progress

if TYPE_CHECKING:
    from labcon.session.session import Session


class SessionControl(Callback):
    """Applies queued commands at safe points and blocks while the session is paused."""

    removable = False
    order = -30  # before anything touches the batch
    run_in_probe = False

    def __init__(self, session: Session):
        self.session = session

    def before_batch(self) -> None:
        if self.runner.training:
            self.session._batch_point()


class SessionBridge(Callback):
    """Turns training events into messages, journal rows and checkpoints (host values only)."""

    removable = False
    order = 90  # after the Recorder (50) and Telemetry (60) so their host copies are fresh
    run_in_probe = False
    min_interval = 0.1  # seconds between Progress messages (the UI merges further)

    def __init__(self, session: Session):
        self.session = session
        self._sent = 0
        self._last = 0.0

    def before_fit(self) -> None:
        self._t_fit = time.perf_counter()
        self._sent = len(self.runner.recorder.losses)

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
        new = len(rec.losses) - self._sent
        if new > 0:
            self.session.publish(
                BatchStats(
                    start_iter=r.train_iter - new,
                    losses=tuple(rec.losses[-new:]),
                    smooth_losses=tuple(rec.smooth_losses[-new:]),
                    lrs=tuple(x[-1] for x in rec.lrs[-new:]),
                    moms=tuple(x[-1] for x in rec.moms[-new:]),
                )
            )
            self._sent = len(rec.losses)
        done = r.iter + 1
        elapsed = now - self._t_epoch
        per = elapsed / max(1, done)
        left_fit = (r._fit_total_iters - (r.train_iter - r._fit_start_iter)) * per if r.training else 0.0
        self.session.publish(
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
        self.session._check_telemetry()

    def after_epoch(self) -> None:
        row = self.runner.recorder.last_row
        if row is not None and row.get("epoch") == self.runner.epoch:
            self.session.persist.log_epoch(dict(row))
            self.session.publish(EpochEnded(epoch=self.runner.epoch, row=dict(row)))
        self.session._epoch_point()
