"""Background plumbing between a session and the UI: a throttled message pump and a command sender."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from labcon.session.api import Reply, SessionAPI, Subscription
from labcon.session.messages import BatchStats, Log, Message, Progress, TelemetryUpdated
from labcon.tui.budget import Throttle

# A batch holding a rare event goes out this soon after the previous one (so never more than 10 a second).
EVENT_GAP_S = 0.1
# Live plots keep at most this many points per series (older points are dropped).
BATCH_HISTORY_CAP = 5000


@dataclass(frozen=True)
class ConnectionLost(Log):
    """The session's process went away (an attached console's socket closed): the last event a pump posts."""


CONNECTION_LOST = ConnectionLost(
    level="error",
    text="lost the session: its process ended or closed the connection. Its log is serve.log in the session "
    "folder; `labcon open NAME` continues from the last checkpoint.",
)


@dataclass
class UpdateBatch:
    """Everything the session said since the last UI update, merged: only the newest Progress survives."""

    progress: Progress | None = None
    batch_stats: BatchStats | None = None
    telemetry_iter: int | None = None
    events: list[Message] = field(default_factory=list)
    n_messages: int = 0

    def __bool__(self) -> bool:
        return self.n_messages > 0


class Merger:
    """Folds a flood of messages into one UpdateBatch (toolong-style replacement of stale progress)."""

    def __init__(self) -> None:
        self._batch = UpdateBatch()

    def add(self, msg: Message) -> None:
        """Merge one message: Progress replaces, BatchStats concatenate, the rest keep their order."""
        b = self._batch
        b.n_messages += 1
        if isinstance(msg, Progress):
            b.progress = msg
        elif isinstance(msg, BatchStats):
            b.batch_stats = msg if b.batch_stats is None else _concat(b.batch_stats, msg)
        elif isinstance(msg, TelemetryUpdated):
            b.telemetry_iter = msg.train_iter
        else:
            b.events.append(msg)

    def take(self) -> UpdateBatch:
        """The merged batch so far; the merger starts empty again."""
        out, self._batch = self._batch, UpdateBatch()
        return out

    def __bool__(self) -> bool:
        return bool(self._batch)

    @property
    def has_events(self) -> bool:
        """Whether a rare event (not progress, batch stats or a telemetry report) is waiting."""
        return bool(self._batch.events)


def _concat(a: BatchStats, b: BatchStats) -> BatchStats:
    cap = BATCH_HISTORY_CAP

    def tail(x: tuple[float, ...], y: tuple[float, ...]) -> tuple[float, ...]:
        return (x + y)[-cap:]

    n_dropped = max(0, len(a.losses) + len(b.losses) - cap)
    return BatchStats(
        start_iter=a.start_iter + n_dropped,
        losses=tail(a.losses, b.losses),
        smooth_losses=tail(a.smooth_losses, b.smooth_losses),
        lrs=tail(a.lrs, b.lrs),
        moms=tail(a.moms, b.moms),
    )


def pump(
    sub: Subscription,
    post: Callable[[UpdateBatch], None],
    stop: threading.Event,
    throttle: Throttle,
) -> None:
    """Read `sub` until `stop` is set, posting merged batches at the throttle's rate.

    Only the flood (progress, batch stats, telemetry reports) waits for the next slot; a batch holding a rare
    event (state change, epoch end, command applied) goes out at once, so a pause shows without delay.
    """
    merger = Merger()
    last = 0.0
    while not stop.is_set():
        interval = throttle.interval
        now = time.monotonic()
        wait = max(0.0, min(0.05, last + interval - now)) if merger else 0.05
        msg = sub.get(timeout=wait)
        if msg is not None:
            merger.add(msg)
        elif sub.closed and not stop.is_set():
            # A remote session's socket closed: hand over what was read, say so once, and stop pumping.
            while (msg := sub.get(timeout=0)) is not None:
                merger.add(msg)
            merger.add(CONNECTION_LOST)
            post(merger.take())
            return
        now = time.monotonic()
        gap = now - last
        if merger and (gap >= interval or (merger.has_events and gap >= EVENT_GAP_S)):
            post(merger.take())
            last = now


class CommandSender:
    """Submits commands on one background thread, in order, so a slow `save` never blocks the UI."""

    def __init__(self, session: SessionAPI, on_result: Callable[[str, Reply], None]) -> None:
        self._session = session
        self._on_result = on_result
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="labcon-tui-commands", daemon=True)

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def submit(self, text: str) -> None:
        """Queue `text` for session.submit."""
        self._busy = True
        self._queue.put(text)

    @property
    def idle(self) -> bool:
        """True when every queued command has been answered."""
        return not self._busy and self._queue.empty()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread after the commands already queued."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            self._busy = True
            self._on_result(text, submit_safely(self._session, text))
            self._busy = not self._queue.empty()


def submit_safely(session: SessionAPI, text: str) -> Reply:
    """session.submit(text); an exception (a lost connection, a bug) becomes a refusal, never a crash."""
    try:
        return session.submit(text)
    except Exception as e:  # noqa: BLE001 - any failure in a command must reach the console, not kill the UI
        return Reply(False, f"{type(e).__name__}: {e}")
