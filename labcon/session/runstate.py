"""The session's run state, owned in one place: state, command queues, pause/stop, replay schedule, training time.

The control callbacks, the fit jobs and the session's command routing are all handed this object; none of
them reaches into another's private attributes. One lock guards the state and the queues.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from labcon.commands import grammar as C
from labcon.session.messages import Message, StateChanged

STATES: tuple[str, ...] = ("idle", "running", "paused", "stopping")


@dataclass
class ReplaySchedule:
    """Commands a replay re-applies at the batch (train_iter) or epoch end where they were first applied,
    and the epoch a replay stops at (`until`)."""

    batch: dict[int, list[C.Command]] = field(default_factory=dict)
    epoch: dict[int, list[C.Command]] = field(default_factory=dict)
    until: int | None = None
    until_reached: bool = False


class TrainClock:
    """Seconds spent training: runs while a fit is running, not while it is paused or the session idles."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._total = 0.0

    def start(self) -> None:
        """A fit segment begins (counting from zero)."""
        self._total, self._since = 0.0, time.monotonic()

    def pause(self) -> None:
        """Stop counting (paused)."""
        if self._since is not None:
            self._total += time.monotonic() - self._since
            self._since = None

    def resume(self) -> None:
        """Count again (running)."""
        if self._since is None:
            self._since = time.monotonic()

    def seconds(self) -> float:
        """Training seconds so far in this segment."""
        return self._total + (time.monotonic() - self._since if self._since is not None else 0.0)


class RunState:
    """State (idle|running|paused|stopping), the batch and epoch command queues, and stop requests."""

    def __init__(self, publish: Callable[[Message], None], world_size: int = 1, is_main: bool = True):
        self._publish = publish
        self.world_size, self.is_main = world_size, is_main
        self.lock = threading.RLock()
        self._wake = threading.Condition(self.lock)
        self._state = "idle"
        self._batch_q: deque[C.Command] = deque()
        self._epoch_q: deque[C.Command] = deque()
        self._stop = False
        # Reads that must run the model (the console's summary): on the training thread between batches.
        self._calls: deque[Callable[[], None]] = deque()
        self.replay = ReplaySchedule()
        self.clock = TrainClock()

    @property
    def state(self) -> str:
        """The current state."""
        return self._state

    def set_state(self, state: str, reason: str = "") -> None:
        """Change state, wake waiters, tell subscribers; the training clock follows (paused time is not counted)."""
        with self.lock:
            self._state = state
            self._wake.notify_all()
        if state == "paused":
            self.clock.pause()
        elif state == "running":
            self.clock.resume()
        self._publish(StateChanged(state=state, reason=reason))

    def begin(self, reason: str) -> bool:
        """idle -> running at once (so `pause` right after `fit` works); False when work is already going on."""
        with self.lock:
            if self._state != "idle":
                return False
        self.set_state("running", reason)
        return True

    # ----- queued commands ---------------------------------------------------------------------------
    def queue(self, cmd: C.Command, note: str = "") -> tuple[bool, str]:
        """Queue a command for the next safe point of a live fit; (accepted, reply text ending with `note`)."""
        with self.lock:
            if isinstance(cmd, C.Resume) and self._state == "running":
                if not any(isinstance(c, C.Pause) for c in self._batch_q):
                    return False, "nothing to resume: the session is running"
                self._batch_q = deque(c for c in self._batch_q if not isinstance(c, C.Pause))
                return True, "pause cancelled before it took effect"
            if cmd.when == "epoch" and self._state != "paused":
                self._epoch_q.append(cmd)
                return True, f"queued: '{cmd.text}' applies at the end of this epoch{note}"
            self._batch_q.append(cmd)
            self._wake.notify_all()
        return True, f"queued: '{cmd.text}' applies at the next batch{note}"

    def take_batch(self) -> list[C.Command]:
        """The commands queued for this batch boundary (taken off the queue)."""
        return self._take(self._batch_q)

    def take_epoch(self) -> list[C.Command]:
        """The commands queued for this epoch's end (taken off the queue)."""
        return self._take(self._epoch_q)

    def _take(self, q: deque[C.Command]) -> list[C.Command]:
        """Distributed, only what rank 0 broadcast counts (on every rank), so a command that lands between the
        broadcast and the apply waits for the next one on all ranks."""
        if self.world_size > 1:
            return self._sync_ranks(q)
        if not q:
            return []  # the common case, every batch: no lock, no copy
        with self.lock:
            cmds = list(q)
            q.clear()
        return cmds

    def _sync_ranks(self, q: deque[C.Command]) -> list[C.Command]:
        from labcon.core.distributed import broadcast_texts

        mine = None
        if self.is_main:
            with self.lock:
                mine = [c.text for c in q]
                q.clear()
        return [C.parse(t) for t in broadcast_texts(mine)]

    def leftovers(self, keep_stop: bool = False) -> list[C.Command]:
        """At the end of a job: the queued commands no safe point took (taken off the queues); a stop request
        nobody took is forgotten (unless `keep_stop`: the session is closing), so neither reaches the next job."""
        with self.lock:
            left = [*self._batch_q, *self._epoch_q]
            self._batch_q.clear()
            self._epoch_q.clear()
            self._stop = self._stop and keep_stop
        return left

    # ----- reads at a safe point --------------------------------------------------------------------
    def call_at_batch(self, fn: Callable[[], None]) -> None:
        """Run `fn` at the next batch boundary of a live fit (or by `run_calls_if_idle` when there is none)."""
        with self.lock:
            self._calls.append(fn)
            self._wake.notify_all()

    def drop_call(self, fn: Callable[[], None]) -> None:
        """Forget a call that has not run (its caller stopped waiting)."""
        with self.lock:
            if fn in self._calls:
                self._calls.remove(fn)

    def run_calls(self) -> None:
        """Run the waiting calls (the training thread, at a batch boundary: nothing else touches the model)."""
        if not self._calls:
            return  # the common case, every batch: no lock
        with self.lock:
            fns = list(self._calls)
            self._calls.clear()
        for fn in fns:
            fn()

    def run_calls_if_idle(self) -> None:
        """Run the waiting calls on this thread when no fit is live; the lock keeps a fit from starting meanwhile."""
        with self.lock:
            if self._state == "idle":
                self.run_calls()

    # ----- pause and stop ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the live fit to stop at its next batch boundary."""
        with self.lock:
            self._stop = True
            self._wake.notify_all()

    def take_stop(self) -> bool:
        """Whether a stop was requested (and forget the request)."""
        with self.lock:
            stop, self._stop = self._stop, False
        return stop

    def wait_paused(self, timeout: float = 0.2) -> bool:
        """Block (up to timeout) while paused; False once running again or asked to stop."""
        with self.lock:
            if self._state != "paused" or self._stop:
                return False
            self._wake.wait(timeout)
        return True
