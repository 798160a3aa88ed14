"""The session's worker thread: runs fits, LR finds and replays one after another, never on the UI's thread."""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labcon.commands import grammar as C
from labcon.core.distributed import PEER_TIMEOUT_ENV, lost_peer
from labcon.core.events import CallbackError
from labcon.errors import LabconError
from labcon.session.api import Reply
from labcon.session.fitplan import FitPlan, plan_for
from labcon.session.journal import JournalError
from labcon.session.messages import (
    CommandApplied,
    CommandFailed,
    FitEnded,
    FitStarted,
    Log,
    LrFound,
    Profiled,
)
from labcon.session.runstate import RunState

if TYPE_CHECKING:
    from labcon.session.session import Session


@dataclass(frozen=True)
class ReplayJob:
    """A command of a replayed run, applied between fits as it was originally (skipped after --until)."""

    cmd: C.Command


@dataclass(frozen=True)
class BranchJob:
    """A replay's --then command that starts work (e.g. `fit 2`): run once the replayed part has stopped."""

    cmd: C.Command


class FitJobs:
    """A queue of 'idle' commands (fit, fit_one_cycle, lr_find, plan continuation) and the thread that runs them.

    It is handed the session's RunState (state, pause/stop, training clock) and the function that applies a
    command at a safe point; it reads the session's runner and journal (persist) and publishes on its bus.
    """

    def __init__(self, session: Session, run_state: RunState, apply: Callable[[C.Command, str], None]):
        self.s = session
        self.run_state = run_state
        self._apply = apply
        self._q: queue.Queue[Any] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._closing = False

    # ----- submitting --------------------------------------------------------------------------------
    def submit(self, cmd: C.Command) -> Reply:
        """Queue a fit-like command; the reply says whether it starts now or after the current work."""
        busy = not self._idle.is_set()
        if not busy:
            # Running from now on (not from when the worker picks it up), so `pause` right after `fit` works.
            self.run_state.set_state("running", f"starting '{cmd.text}'")
        self.put(cmd)
        return Reply(
            True, f"queued after the current fit: '{cmd.text}'" if busy else f"started: '{cmd.text}'"
        )

    def put(self, job: Any) -> None:
        """Queue a job: a Command, a FitPlan to continue, a ReplayJob or a BranchJob."""
        self._idle.clear()
        self._q.put(job)
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name=f"labcon-train-{self.s.name}", daemon=True
            )
            self._thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running."""
        return self._idle.wait(timeout)

    def shutdown(self) -> None:
        """Stop the current fit and the thread."""
        self._closing = True
        if not self._idle.is_set():
            self.run_state.request_stop()
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)

    # ----- running -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None or self._closing:
                self._idle.set()
                return
            try:
                # The thread outlives any job: a failure the job's own boundary missed is said, and the
                # session goes back to idle instead of staying 'running' with nobody to run its queue.
                if self._guarded("the job", lambda job=job: self._run(job)) is not None:
                    self.run_state.set_state("idle", self.s.last_error or "")
                self._settle(job)
            finally:
                if self._q.empty():
                    self._idle.set()

    def _run(self, job: Any) -> None:
        s = self.s
        if isinstance(job, ReplayJob):
            if self.run_state.replay.until_reached:
                return
            if job.cmd.when != "idle":
                self._apply(job.cmd, "idle")
                return
            job = job.cmd
        if isinstance(job, BranchJob):
            self.run_state.replay.until = None
            # The replayed part is over: the branch command starts like a typed one.
            self.run_state.set_state("idle")
            reply = s.dispatch(job.cmd)
            # The reply says what will happen (e.g. a schedule rescaled): --then users see it like typed ones.
            s.publish(Log(level="info" if reply.ok else "error", text=f"{job.cmd.text}: {reply.text}"))
            return
        if isinstance(job, C.LrFind):
            self._lr_find(job)
        elif isinstance(job, C.Profile):
            self._profile(job)
        elif isinstance(job, FitPlan):
            self._fit(job, new_run=False)
        elif isinstance(job, C.FineTune):
            self._fine_tune(job)
        elif isinstance(job, (C.Fit, C.FitOneCycle)):
            self._fit(self._plan_for(job), new_run=True)
        else:
            s.publish(Log(level="error", text=f"{job!r} cannot run as a fit job"))
            self.run_state.set_state("idle")

    def _plan_for(self, cmd: C.Fit | C.FitOneCycle) -> FitPlan:
        r = self.s.runner
        n_train = len(r.dls.train) if hasattr(r.dls.train, "__len__") else 0
        return plan_for(cmd, r.epoch, r.train_iter, n_train, len(r.hyper("lr")))

    def _fine_tune(self, cmd: Any) -> None:
        """fastai's fine_tune: freeze, one-cycle at lr (long warm-up), unfreeze, one-cycle at lr/2 spread
        geometrically over the param groups (lr/200 for the first, lr/2 for the head).

        Runs as the commands it stands for, each journaled (each fit its own run), so a replay repeats them.
        """
        lr = cmd.lr if cmd.lr is not None else self.s.config.train.lr
        for step in cmd.steps(lr):
            if step.when == "idle":
                if self._fit(self._plan_for(step), new_run=True) != "done":
                    return
            else:
                self._apply(step, "idle")
        self._fit(self._plan_for(cmd.last_fit(lr)), new_run=True)

    def _fit(self, plan: FitPlan, new_run: bool) -> str:
        """Train a plan (a new fit is a new run; a continued one continues its own); 'done', 'stopped' or 'failed'."""
        s, r, run = self.s, self.s.runner, self.run_state
        remaining = plan.remaining(r.epoch)
        if remaining < 1:
            run.set_state("idle")
            return "done"
        if new_run:
            s.persist.begin_run()
            s.persist.log_command(plan.text, "idle")
            s.publish(CommandApplied(text=plan.text, epoch=r.epoch, iter=r.train_iter, reply="started"))
        else:
            s.persist.continue_run()
        s.persist.plan = plan  # only now: a fit whose run could not begin leaves no plan to resume
        n_valid = len(r.dls.valid) if hasattr(r.dls.valid, "__len__") else 0
        s.publish(FitStarted(s.persist.run_id or 0, r.epoch, remaining, plan.n_train, n_valid))
        run.clock.start()
        run.set_state("running")
        span = (plan.start_iter, plan.total)
        # Live schedule changes (set, sched) are recorded with the plan, so a continued fit keeps them.
        edits = s.persist.sched_edits = [dict(e) for e in plan.sched_edits]

        def train() -> None:
            if plan.kind == "fit_one_cycle":
                kw = {"pct_start": plan.pct_start} if plan.pct_start is not None else {}
                r.fit_one_cycle(remaining, lr_max=plan.lr_list(), span=span, sched_edits=edits, **kw)
            else:
                # A new `fit` starts from the configured lr (or its lr=), not what a schedule left behind;
                # a continued plan keeps the optimizer's restored values.
                lr = (plan.lr_list() if plan.lr is not None else r.lr) if new_run else None
                r.fit(remaining, span=span, lr=lr, sched_edits=edits)

        failure = self._guarded("training", train)
        if failure is not None:
            status, reason = "failed", failure
        elif r.stop_reason is not None:
            status, reason = "stopped", r.stop_reason
        else:
            status, reason = "done", ""
        self._guarded(
            "recording the fit's end in the journal",
            lambda: s.persist.fit_ended(status, reason, run.clock.seconds()),
        )
        # A stopped or failed fit keeps its plan so `resume` can finish it; its schedule changes stay live in
        # persist.sched_edits (a `set` while stopped adds to them) until it continues.
        s.persist.plan = None if status == "done" else plan
        run.set_state("idle", reason)
        s.publish(FitEnded(status=status, reason=reason))
        return status

    def _settle(self, job: Any) -> None:
        """Commands queued for a safe point the ended job never reached (typed during a fit's last validation, or
        during lr_find / profile, which have none): pause, resume and stop are said not to apply; the rest apply
        now, at the idle point, as if typed a moment later. None is carried into the next job. Under the run
        state's lock, as a command typed while idle is applied, so the two never interleave."""
        run = self.run_state
        with run.lock:
            left = run.leftovers(keep_stop=self._closing)
            if not left:
                return
            name = getattr(getattr(job, "cmd", job), "text", "the job")
            for cmd in left:
                if isinstance(cmd, (C.Pause, C.Resume, C.Stop)) or self.s.world_size > 1:
                    error = f"'{cmd.text}' did not apply: '{name}' ended before it reached a batch"
                    self.s.publish(CommandFailed(text=cmd.text, error=error))
                else:
                    self._apply(cmd, "idle")

    def _lost_peer(self) -> str:
        """One line for a collective that timed out or lost its peer; rank 0 checkpoints where training stood."""
        from labcon.core.distributed import peer_timeout

        s, r = self.s, self.s.runner
        line = (
            f"lost a peer: another rank did not answer within {peer_timeout():g} s (hung, stopped or killed; "
            f"${PEER_TIMEOUT_ENV} sets the wait)"
        )
        if not (s.is_main and r.training):
            return line + "; training stopped at the last checkpoint"
        try:
            # Mid-batch: the step of batch r.iter did not happen, so the weights are those after batch r.iter - 1.
            s.persist.save(mid_epoch=True)
        except Exception as e:  # noqa: BLE001 - the report must still go out
            return line + f"; training stopped, and the checkpoint failed ({type(e).__name__}: {e})"
        return (
            line
            + f"; training stopped with a checkpoint at epoch {r.epoch}, batch {r.iter} (labcon resume {s.name})"
        )

    def _lr_find(self, cmd: C.LrFind) -> None:
        s = self.s

        def find() -> None:
            res = s.runner.lr_find(**cmd.kwargs)
            text = f"lr_find: suggested lr {res.suggestion:.2e} (valley {res.valley:.2e}, steepest {res.steepest:.2e})"
            s.last_lr_find = res
            s.publish(LrFound(res.lrs, res.losses, res.suggestion, res.valley, res.steepest))
            s.publish(Log(level="info", text=text))
            s.persist.log_command(cmd.text, "idle", reply=text)

        self._probe("lr_find", find)

    def _profile(self, cmd: C.Profile) -> None:
        from labcon.core.profiler import run_profile
        from labcon.progress import ProgressReporter
        from labcon.session.control import SessionBridge, SessionControl

        s = self.s

        def profile() -> None:
            # The front ends' callbacks sit out: the profile is of the training step, and is not a fit to show.
            front = [
                c for c in s.runner.cbs if isinstance(c, (SessionControl, SessionBridge, ProgressReporter))
            ]
            rep = run_profile(s.runner, cmd.n, sit_out=front)
            s.last_profile = rep
            text = f"{cmd.text}:\n{rep.table()}"
            s.publish(Log(level="info", text=text))
            s.publish(Profiled(rep.as_dict()))
            s.persist.log_command(
                cmd.text, "idle", reply=f"{rep.bound}-bound, {1e3 * rep.step_s:.2f} ms/step"
            )
            s.persist.log("info", text, data={"profile": rep.as_dict()})

        self._probe("profile", profile)

    def _probe(self, what: str, work: Callable[[], None]) -> None:
        """A short job that is not a fit (lr_find, profile): running while it works, idle after, whatever happens."""
        self.run_state.set_state("running", what)
        try:
            self._guarded(what, work)
        finally:
            self.run_state.set_state("idle")

    def _guarded(self, what: str, work: Callable[[], None]) -> str | None:
        """Run `work` at the worker's boundary; a failure becomes one line (returned, kept as last_error, said
        on the bus) and its traceback goes to the journal. None when it succeeded."""
        s = self.s
        try:
            work()
            return None
        except Exception as e:  # noqa: BLE001 - the worker's boundary: a failure ends this job, not the session
            reason = str(e) if isinstance(e, (CallbackError, LabconError)) else f"{type(e).__name__}: {e}"
            if s.world_size > 1 and lost_peer(e):
                reason = self._lost_peer()
            s.last_error = reason
            s.publish(Log(level="error", text=f"{what} failed: {reason}"))
            with contextlib.suppress(JournalError):  # the journal may be what failed; the bus has said it
                s.persist.log("error", f"{what} failed: {reason}\n{traceback.format_exc(limit=8)}")
            return reason
