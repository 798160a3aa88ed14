"""The control socket: a Unix socket at sessions/<name>/control.sock speaking JSON lines.

Client -> server: `{"id": 1, "op": "submit", "text": "set lr=0.01"}` (ops in OPS).
Server -> client: `{"id": 1, "type": "reply", "ok": true, "text": "...", "data": ...}`, and, after
`subscribe`, every published session message as `msg.to_dict()` (its "type" is the message class).
Slow subscribers never block the publisher: a client's full queue drops its oldest Progress, then oldest message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labcon.errors import LabconError
from labcon.remote.connection import Connection, closing_reply, error_reply, ok_reply
from labcon.remote.wire import answer_data, jsonable
from labcon.session.api import POLL_S, SessionAPI, Subscription
from labcon.session.messages import Message

_log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
MAX_CLIENTS = 32
QUEUE_SIZE = 2048
# A connection that has not made one request within this long is closed, so connections that say nothing cannot
# hold every client slot. A real client (one that made a request) may then stay quiet as long as it likes: a
# REPL waits for its user, a suspended console stops reading (its messages are dropped, never its connection).
IDLE_TIMEOUT_S = 30.0
# Requests answered by one argument-free SessionAPI read (the data ops with fields are in wire.answer_data).
SNAPSHOT_OPS: dict[str, Callable[[SessionAPI], Any]] = {
    "status": lambda h: h.status(),
    "history": lambda h: h.history(),
    "batch_history": lambda h: h.batch_history(),
    "hooks": lambda h: h.hooks_table(),
    "module_paths": lambda h: h.module_paths(),
    "model_summary": lambda h: h.model_summary(),
    "schedule_plan": lambda h: h.schedule_plan(),
    "data_summary": lambda h: h.data_summary(),
    "profile": lambda h: h.profile_report(),
}
OPS: tuple[str, ...] = (
    "submit",
    *SNAPSHOT_OPS,
    "sample_batch",
    "text_batch",
    "telemetry",
    "subscribe",
    "ping",
    "shutdown",
)


def control_socket_path(sessions_home: str | os.PathLike[str], name: str) -> Path:
    """Where session `name` listens: <sessions_home>/<name>/control.sock."""
    return Path(sessions_home) / name / "control.sock"


def check_socket_path(path: Path) -> None:
    """Raise LabconError when `path` is too long for a Unix socket."""
    n = len(os.fsencode(str(path)))
    if n > MAX_SOCKET_PATH:
        raise LabconError(
            f"control socket path is {n} bytes, over the {MAX_SOCKET_PATH} Unix sockets allow: {path}; "
            "use a shorter --sessions-dir (or $LABCON_HOME) or session name"
        )


def server_is_live(path: Path, timeout: float = 0.5) -> bool:
    """Whether something accepts connections on the socket at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


class ControlServer:
    """Serves a session (labcon.session.api.SessionAPI) on a Unix socket; see module doc."""

    ops = OPS  # what a request may ask (its connections check it)

    def __init__(
        self,
        handler: SessionAPI,
        path: str | os.PathLike[str],
        *,
        follow: bool = True,
        queue_size: int = QUEUE_SIZE,
        max_clients: int = MAX_CLIENTS,
        on_shutdown: Callable[[], str] | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ):
        self.handler, self.path = handler, Path(path)
        # Called by the `shutdown` op (the process serving the session decides what ending means); None: refused.
        self.on_shutdown = on_shutdown
        self.follow, self.queue_size, self.max_clients = follow, queue_size, max_clients
        self.idle_timeout = idle_timeout
        self._clients: list[Connection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._threads: list[threading.Thread] = []
        self._sub: Subscription | None = None

    # ----- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ControlServer:
        """Bind (0600 socket in a 0700 directory) and start serving in background threads."""
        check_socket_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise LabconError(f"{self.path} exists and is not a socket; remove it and start again")
            if server_is_live(self.path):
                raise LabconError(f"another labcon is already serving this session on {self.path}")
            self.path.unlink()  # stale: its server died without cleaning up
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except OSError as e:
            sock.close()
            raise LabconError(f"cannot listen on {self.path}: {e}") from e
        sock.settimeout(0.2)
        self._sock, self._inode = sock, self.path.stat().st_ino
        self._spawn(self._accept_loop, "labcon-ctl-accept")
        if self.follow:
            self._sub = self.handler.subscribe()
            self._spawn(self._follow_loop, "labcon-ctl-follow")
        return self

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        """Stop serving, disconnect clients and remove the socket file (if it is still ours)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        if self._sub is not None:
            self._sub.close()
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()

    def __enter__(self) -> ControlServer:
        return self.start() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def n_clients(self) -> int:
        """Connected clients now."""
        with self._lock:
            return len(self._clients)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()  # type: ignore[union-attr]
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            conn.settimeout(None)
            client = Connection(self, conn, self.queue_size)
            with self._lock:
                full = len(self._clients) >= self.max_clients
                if not full:
                    self._clients.append(client)
            # A refused client is never read: it gets one reply saying why, then the connection closes.
            client.start(reading=not full)
            if full:
                client.reply(closing_reply(f"too many clients (max {self.max_clients}); try again later"))
                client.end_after_replies()

    def _follow_loop(self) -> None:
        assert self._sub is not None
        while not self._stop.is_set():
            msg = self._sub.get(timeout=POLL_S)
            if msg is not None:
                self.publish(msg)

    def _forget(self, client: Connection) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    # ----- messages -------------------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        """Send a session message to every subscriber (never blocks on a slow client)."""
        d = message.to_dict()
        line = json.dumps(d, default=jsonable).encode() + b"\n"
        is_progress = d.get("type") == "Progress"
        with self._lock:
            subs = [c for c in self._clients if c.subscribed]
        for c in subs:
            c.push(line, is_progress)

    def dispatch(self, client: Connection, rid: Any, op: str, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (called on the client's reader thread)."""
        h = self.handler
        if op == "ping":
            return ok_reply(rid, "pong")
        if op == "shutdown":
            if self.on_shutdown is None:
                return error_reply(rid, "this process does not take shutdown requests; submit 'stop' instead")
            return ok_reply(rid, self.on_shutdown())
        if op == "subscribe":
            client.subscribed = True
            return ok_reply(rid, "subscribed")
        if op == "submit":
            text = req.get("text")
            if not isinstance(text, str):
                return error_reply(rid, 'submit needs "text": the command line, e.g. "set lr=1e-3"')
            return {"id": rid, "type": "reply", **h.submit(text).to_dict()}
        if op in SNAPSHOT_OPS:
            return ok_reply(rid, data=SNAPSHOT_OPS[op](h))
        text, data = answer_data(h, op, req)  # sample_batch, text_batch, telemetry
        return ok_reply(rid, text, data)
