"""Talking to a live session over its control socket: ControlClient (requests, messages) and RemoteSession."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labcon.data.text_show import TextBatchView
from labcon.errors import LabconError
from labcon.remote.connection import MAX_LINE
from labcon.remote.server import check_socket_path
from labcon.remote.wire import RemoteTelemetrySnapshot, image_from_b64
from labcon.session.api import JournalView, Reply, SnapshotContext
from labcon.session.messages import LIVE_STATES, Message, message_from_dict

_CLOSED = object()
# Reports of per-layer history sent with each telemetry read (the console's sparklines show 12).
TELEMETRY_TAIL = 16


def not_listening(path: Path, reason: str) -> str:
    """Why nothing answers on a session's control socket, and what to do: it depends on whether the session
    is training without a socket, saved but not running, or not there at all."""
    from labcon.session.safety import lock_holder

    folder, name = path.parent, path.parent.name
    holder = lock_holder(folder)
    if holder is not None:
        return (
            f"session '{name}' is held by {holder}, which serves no control socket: it is starting (try again "
            "in a moment) or was started with --no-socket, and then cannot be attached: wait for it to end "
            f"(`labcon journal show {name}` shows its epochs so far) or stop that process"
        )
    if (folder / "session.toml").is_file():
        return (
            f"session '{name}' is saved but not running (nothing listens on {path}: {reason}); open it with "
            f"`labcon open {name}`, or serve it for send/attach with `labcon serve {name}`"
        )
    return (
        f"no session '{name}' in {folder.parent} (nothing listens on {path}: {reason}); start one with "
        f"`labcon run ... --session {name}`, or check the name and --sessions-dir"
    )


class ControlClient:
    """One connection to a control socket: `request(op, **kw)` waits for the matching reply."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0):
        self.path, self.timeout = Path(path), timeout
        check_socket_path(self.path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            self._sock.close()
            raise LabconError(not_listening(self.path, e.strerror or str(e))) from None
        except OSError as e:
            self._sock.close()
            raise LabconError(f"cannot connect to {self.path}: {e}") from None
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._messages: queue.Queue[Any] = queue.Queue()
        self._subscribed = False
        self.closed = False
        self.refusal: str | None = None  # why the server closed the connection, when it said so
        self._reader = threading.Thread(target=self._read_loop, name="labcon-client-read", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        f = self._sock.makefile("rb")
        try:
            for line in f:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(d, dict):
                    continue
                if d.get("type") == "reply":
                    with self._lock:
                        waiter = self._pending.pop(d.get("id"), None) if d.get("id") is not None else None
                    if waiter is not None:
                        waiter.put(d)
                    elif d.get("closing"):
                        # The server's last words before it closes this connection (too many clients, idle).
                        self.refusal = str(d.get("text", "")) or None
                else:
                    self._messages.put(d)
        except (OSError, ValueError):
            pass
        finally:
            self.closed = True
            with self._lock:
                waiters, self._pending = list(self._pending.values()), {}
            for w in waiters:
                w.put(
                    {"type": "reply", "ok": False, "text": self.refusal or "", "data": None, "_closed": True}
                )
            self._messages.put(_CLOSED)

    def request(self, op: str, **kw: Any) -> dict[str, Any]:
        """Send one request and return the server's reply dict (ok, text, data)."""
        if self.closed:
            why = f"the session closed it: {self.refusal}" if self.refusal else "the session ended?"
            raise LabconError(f"connection to {self.path} is closed ({why})")
        rid = next(self._ids)
        waiter: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
        with self._lock:
            self._pending[rid] = waiter
        line = json.dumps({"id": rid, "op": op, **kw}).encode() + b"\n"
        if len(line) > MAX_LINE:
            with self._lock:
                self._pending.pop(rid, None)
            raise LabconError(f"'{op}' request is {len(line)} bytes, over the {MAX_LINE} a session accepts")
        try:
            with self._send_lock:
                self._sock.sendall(line)
        except OSError as e:
            with self._lock:
                self._pending.pop(rid, None)
            self._reader.join(1.0)  # the server may have said why it closed before our request reached it
            if self.refusal:
                raise LabconError(
                    f"the session closed the connection before answering '{op}': {self.refusal}"
                ) from None
            raise LabconError(f"lost the connection to {self.path}: {e}") from None
        try:
            reply = waiter.get(timeout=self.timeout)
        except queue.Empty:
            with self._lock:
                self._pending.pop(rid, None)
            raise LabconError(f"no reply to '{op}' from {self.path} within {self.timeout:g}s") from None
        if reply.get("_closed"):
            why = f": {reply['text']}" if reply.get("text") else ""
            raise LabconError(f"the session closed the connection before answering '{op}'{why}")
        return reply

    def submit(self, text: str) -> Reply:
        """Submit a command line; the session's Reply."""
        r = self.request("submit", text=text)
        return Reply(bool(r.get("ok")), str(r.get("text", "")), r.get("data"))

    def subscribe(self) -> None:
        """Ask the server to push every session message to this connection."""
        if not self._subscribed:
            r = self.request("subscribe")
            if not r.get("ok"):
                raise LabconError(f"subscribe refused: {r.get('text')}")
            self._subscribed = True

    def get_message(self, timeout: float | None = None) -> Message | None:
        """The next session message (None on timeout or when the connection is closed)."""
        return self._next(timeout)[0]

    def _next(self, timeout: float | None) -> tuple[Message | None, bool]:
        """(message or None, whether the connection has ended and everything before that was read)."""
        while True:
            try:
                d = self._messages.get(timeout=timeout)
            except queue.Empty:
                return None, False
            if d is _CLOSED:
                self._messages.put(_CLOSED)  # stay closed for later callers
                return None, True
            try:
                return message_from_dict(d), False
            except (ValueError, TypeError):
                continue  # a newer server's message type: skip it

    def messages(self) -> Iterator[Message]:
        """Iterate over session messages until the connection closes (subscribes first)."""
        self.subscribe()
        while True:
            msg, ended = self._next(timeout=0.5)
            if ended:
                return
            if msg is not None:
                yield msg

    def close(self) -> None:
        """Close the connection (the session keeps running)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self.closed = True

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteSubscription:
    """A Subscription over its own socket connection: `get(timeout)` -> Message or None; `close()`."""

    def __init__(self, path: Path):
        self._client = ControlClient(path)
        self._client.subscribe()

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after `timeout` seconds (or once the session has gone)."""
        return self._client.get_message(timeout=timeout)

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._client.closed

    def close(self) -> None:
        """Stop receiving."""
        self._client.close()


def _local_journal(home: Path) -> JournalView | None:
    """The sessions directory's journal, read directly (SQLite WAL lets a reader in beside the running writer).

    The socket lives in sessions/<name>/, so the console on the same machine reads journal.db next to it, as
    `labcon journal` does; None while there is no journal there or it cannot be opened (the pane says so).
    """
    from labcon.session.journal import Journal, JournalError
    from labcon.session.paths import JOURNAL_FILE

    if not (home / JOURNAL_FILE).is_file():
        return None
    try:
        return Journal(home)
    except JournalError:
        return None


class RemoteSession:
    """The Session protocol over a control socket, so the console and REPL can attach to a headless run."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0):
        self.path = Path(path)
        self._client = ControlClient(self.path, timeout=timeout)
        self._subs: list[RemoteSubscription] = []
        self._journal: JournalView | None = None
        self._closed = False

    remote = True  # the run lives in the serving process

    @property
    def journal(self) -> JournalView | None:
        """The local journal beside the session folder, opened once it exists (a fresh directory has none at
        first: the first fit creates it)."""
        if self._journal is None and not self._closed:
            self._journal = _local_journal(self.path.parent.parent)
        return self._journal

    @property
    def folder(self) -> Path:
        """The session's folder: the one its socket lives in."""
        return self.path.parent

    @property
    def name(self) -> str:
        """The session name (its folder)."""
        return self.path.parent.name

    def _data(self, op: str, **kw: Any) -> Any:
        r = self._client.request(op, **kw)
        if not r.get("ok"):
            raise LabconError(str(r.get("text")))
        return r.get("data")

    def submit(self, text: str) -> Reply:
        """Submit a command line; returns the session's Reply (ok, text, data)."""
        return self._client.submit(text)

    def subscribe(self) -> RemoteSubscription:
        """A new subscription to the session's messages (its own connection)."""
        sub = RemoteSubscription(self.path)
        self._subs.append(sub)
        return sub

    def status(self) -> dict[str, Any]:
        """The session's status snapshot."""
        return self._data("status")

    def history(self) -> list[dict[str, Any]]:
        """Epoch rows."""
        return self._data("history")

    def batch_history(self) -> dict[str, list[float]]:
        """Per-batch losses, smoothed losses, lrs and moms."""
        return self._data("batch_history")

    def hooks_table(self) -> list[dict[str, Any]]:
        """Installed hooks."""
        return self._data("hooks")

    def module_paths(self) -> list[str]:
        """Every module path of the model."""
        return list(self._data("module_paths"))

    def model_summary(self) -> dict[str, Any]:
        """Per-module output shape, parameters and multiply-adds (the session computes it)."""
        return dict(self._data("model_summary"))

    def schedule_plan(self) -> dict[str, Any] | None:
        """The running fit's planned schedules, or None."""
        return self._data("schedule_plan")

    def data_summary(self) -> str:
        """Description of the session's data."""
        return str(self._data("data_summary"))

    def profile_report(self) -> dict[str, Any] | None:
        """The session's latest profile's figures, or None."""
        return self._data("profile")

    def sample_batch_image(self, augment: bool = True) -> Any:
        """A grid image (PIL) of training samples, drawn by the session and sent as PNG."""
        return image_from_b64(self._data("sample_batch", augment=augment)["png"])

    def text_batch(self, draw: int = 0) -> TextBatchView | None:
        """A decoded training batch of a text session (None for image data), drawn by the session."""
        d = self._data("text_batch", draw=draw)
        return None if d is None else TextBatchView.from_dict(d)

    def telemetry_snapshot(self) -> RemoteTelemetrySnapshot | None:
        """Latest telemetry, or None when there is none.

        It carries the last TELEMETRY_TAIL reports per layer; a layer's full history and heat map are fetched when
        first read (the whole history of every layer was ~130 kB and ~13 ms per read after an hour of training).
        """
        d = self._data("telemetry", tail=TELEMETRY_TAIL)
        if d is None:
            return None

        def fetch(layer: str) -> dict[str, Any]:
            return self._data("telemetry", layers=[layer], heatmap=True) or {}

        return RemoteTelemetrySnapshot(d, fetch)

    def context(self) -> SnapshotContext:
        """Validation and completion context read from the session's snapshots."""
        return SnapshotContext(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Poll the session's status until no fit is live; False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.status().get("state") in LIVE_STATES:
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.1)
        return True

    def detach(self) -> None:
        """Disconnect this front end; training carries on in the headless session."""
        self.close()

    def close(self) -> None:
        """Close every connection this object opened."""
        for s in self._subs:
            s.close()
        self._subs.clear()
        self._client.close()
        self._closed = True
        if self._journal is not None:
            self._journal.close()  # type: ignore[attr-defined]
            self._journal = None
