"""Message fan-out to front ends: bounded per-subscriber queues that never block training."""

from __future__ import annotations

import queue
import threading

from labcon.session.messages import Message


class BusSubscription:
    """A Subscription (labcon/session/api.py) on a local Bus; when full, the oldest message goes."""

    def __init__(self, bus: Bus, maxsize: int = 2000):
        self._bus = bus
        self._q: queue.Queue[Message] = queue.Queue(maxsize)
        self.dropped = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether close() was called (a local bus itself never goes away)."""
        return self._closed

    def put(self, msg: Message) -> None:
        """Deliver (called by the bus); drops the oldest message rather than block the trainer."""
        while True:
            try:
                self._q.put_nowait(msg)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after timeout seconds."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[Message]:
        """Everything queued now (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop receiving."""
        self._closed = True
        self._bus.unsubscribe(self)


class Bus:
    """Publishes each message to every subscriber."""

    def __init__(self) -> None:
        self._subs: list[BusSubscription] = []
        self._lock = threading.Lock()

    def subscribe(self) -> BusSubscription:
        """A new subscription that sees messages from now on."""
        sub = BusSubscription(self)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: BusSubscription) -> None:
        """Remove a subscription (idempotent)."""
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def publish(self, msg: Message) -> None:
        """Send msg to every subscriber (never blocks)."""
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.put(msg)
