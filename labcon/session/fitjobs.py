"""The session's worker thread: runs fits, LR finds and replays one after another, never on the UI's thread."""

from __future__ import annotations

import queue
import threading
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labcon.commands import grammar as C
from labcon.core.distributed import PEER_TIMEOUT_ENV, lost_peer
from labcon.core.events import CallbackError
from labcon.errors import LabconError
from labcon.session.bus import Reply
from labcon.session.messages import CommandApplied, FitEnded, FitStarted, Log, LrFound

if TYPE_CHECKING:
    from labcon.session.session import Session


@dataclass(frozen=True)
class ReplayJob:
    """A command of a replayed run, applied between fits as it was originally (skipped after --until)."""

    cmd: Any


@dataclass(frozen=True)
class SubmitJob:
    """Submit a command once the work before it is done (replay's --then branch)."""

    text: str


class FitJobs:
    """A queue of 'idle' commands (fit, fit_one_cycle, lr_find, plan continuation) and the thread that runs them."""

    def __init__(self, session: Session):
        self.s = session
        self._q: queue.Queue[Any] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._closing = False

    # ----- submitting --------------------------------------------------------------------------------
    def submit(self, cmd: Any) -> Reply:
        """Queue a fit-like command; the reply says whether it starts now or after the current work."""
        if isinstance(cmd, C.Replay):
            return Reply(
                False, "replay starts a new session: run `labcon replay RUN` (or the Journal pane's replay)"
            )
        busy = not self._idle.is_set()
        if not busy:
            # Running from now on (not from when the worker picks it up), so `pause` right after `fit` works.
            self.s._set_state("running", f"starting '{cmd.text}'")
        self.put(cmd)
        return Reply(
            True, f"queued after the current fit: '{cmd.text}'" if busy else f"started: '{cmd.text}'"
        )

    def put(self, job: Any) -> None:
        """Queue a job (a Command, or a plan dict to continue)."""
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
            with self.s._lock:
                self.s._stop_requested = True
                self.s._wake.notify_all()
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
                self._run(job)
            finally:
                if self._q.empty():
                    self._idle.set()

    def _run(self, job: Any) -> None:
        s, r = self.s, self.s.runner
        if isinstance(job, ReplayJob):
            if s.until_reached:
                return
            if job.cmd.when != "idle":
                s._apply_safely(job.cmd, "idle")
                return
            job = job.cmd
        if isinstance(job, SubmitJob):
            s.until_epoch = None
            s._set_state("idle")  # the replayed part is over: the branch command starts like a typed one
            reply = s.submit(job.text)
            # The reply says what will happen (e.g. a schedule rescaled): --then users see it like typed ones.
            s.publish(Log(level="info" if reply.ok else "error", text=f"{job.text}: {reply.text}"))
            return
        if isinstance(job, C.LrFind):
            self._lr_find(job)
            return
        if isinstance(job, C.Profile):
            self._profile(job)
            return
        plan = job if isinstance(job, dict) else self._plan_for(job)
        if not isinstance(job, dict):
            s.persist.log_command(job.text, "idle")
            s.publish(CommandApplied(text=job.text, epoch=r.epoch, iter=r.train_iter, reply="started"))
        remaining = plan["start_epoch"] + plan["n"] - r.epoch
        if remaining < 1:
            s._set_state("idle")
            return
        s.persist.plan = plan
        s.persist.ensure_run()
        n_valid = len(r.dls.valid) if hasattr(r.dls.valid, "__len__") else 0
        s.publish(FitStarted(s.persist.run_id or 0, r.epoch, remaining, plan["n_train"], n_valid))
        s._set_state("running")
        status, reason = "done", ""
        span = (plan["start_iter"], plan["total"])
        # Live schedule changes (set, sched) are recorded in the plan, so a continued fit keeps them.
        edits = plan.setdefault("sched_edits", [])
        try:
            if plan["kind"] == "fit_one_cycle":
                kw = {"pct_start": plan["pct_start"]} if plan.get("pct_start") is not None else {}
                r.fit_one_cycle(remaining, lr_max=plan.get("lr"), span=span, sched_edits=edits, **kw)
            else:
                # A new `fit` starts from the configured lr (or its lr=), not what a schedule left behind;
                # a continued plan keeps the optimizer's restored values.
                fresh = not isinstance(job, dict)
                lr = (plan.get("lr") if plan.get("lr") is not None else r.lr) if fresh else None
                r.fit(remaining, span=span, lr=lr, sched_edits=edits)
            if r.stop_reason is not None:
                status, reason = "stopped", r.stop_reason
        except Exception as e:  # noqa: BLE001 - the worker's boundary: any failure ends this fit, not the session
            status, reason = (
                "failed",
                f"{type(e).__name__}: {e}" if not isinstance(e, (CallbackError, LabconError)) else str(e),
            )
            if s.world_size > 1 and lost_peer(e):
                reason = self._lost_peer()
            s.last_error = reason
            s.publish(Log(level="error", text=f"training failed: {reason}"))
            s.persist.log("error", f"{reason}\n{traceback.format_exc(limit=8)}")
        if status == "done":
            s.persist.plan = None  # a stopped or failed fit keeps its plan so `resume` can finish it
        s.persist.fit_ended(status, reason)
        s._set_state("idle", reason)
        s.publish(FitEnded(status=status, reason=reason))

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

    def _plan_for(self, cmd: Any) -> dict[str, Any]:
        r = self.s.runner
        n_train = len(r.dls.train) if hasattr(r.dls.train, "__len__") else 0
        plan: dict[str, Any] = {
            "kind": "fit_one_cycle" if isinstance(cmd, C.FitOneCycle) else "fit",
            "n": int(cmd.n),
            "start_epoch": r.epoch,
            "start_iter": r.train_iter,
            "total": max(1, int(cmd.n) * n_train),
            "n_train": n_train,
            "text": cmd.text,
        }
        plan["lr"] = cmd.lr_plan(len(r.hyper("lr")))
        if isinstance(cmd, C.FitOneCycle):
            plan["pct_start"] = cmd.pct_start
        return plan

    def _lr_find(self, cmd: Any) -> None:
        s = self.s
        s._set_state("running", "lr_find")
        try:
            res = s.runner.lr_find(**cmd.kwargs)
            text = f"lr_find: suggested lr {res.suggestion:.2e} (valley {res.valley:.2e}, steepest {res.steepest:.2e})"
            s.last_lr_find = res
            s.publish(LrFound(res.lrs, res.losses, res.suggestion, res.valley, res.steepest))
            s.publish(Log(level="info", text=text))
            s.persist.log_command(cmd.text, "idle", reply=text)
        except Exception as e:  # noqa: BLE001 - the worker's boundary, as in _run
            s.publish(Log(level="error", text=f"lr_find failed: {type(e).__name__}: {e}"))
        finally:
            s._set_state("idle")

    def _profile(self, cmd: Any) -> None:
        from labcon.core.profiler import run_profile
        from labcon.progress import ProgressReporter
        from labcon.session.control import SessionBridge, SessionControl

        s = self.s
        s._set_state("running", "profile")
        try:
            # The front ends' callbacks sit out: the profile is of the training step, and is not a fit to show.
            front = [
                c for c in s.runner.cbs if isinstance(c, (SessionControl, SessionBridge, ProgressReporter))
            ]
            rep = run_profile(s.runner, cmd.n, sit_out=front)
            s.last_profile = rep
            text = f"{cmd.text}:\n{rep.table()}"
            s.publish(Log(level="info", text=text))
            s.persist.log_command(
                cmd.text, "idle", reply=f"{rep.bound}-bound, {1e3 * rep.step_s:.2f} ms/step"
            )
            s.persist.log("info", text, data={"profile": rep.as_dict()})
        except Exception as e:  # noqa: BLE001 - the worker's boundary, as in _run
            s.publish(Log(level="error", text=f"profile failed: {type(e).__name__}: {e}"))
        finally:
            s._set_state("idle")

    def sync_ranks(self, q: Any) -> list[Any]:
        """Distributed: rank 0's queued commands (taken from `q`), parsed on every rank from one broadcast."""
        from labcon.core.distributed import broadcast_texts

        s = self.s
        mine = None
        if s.is_main:
            with s._lock:
                mine = [c.text for c in q]
                q.clear()
        return [C.parse(t) for t in broadcast_texts(mine)]
