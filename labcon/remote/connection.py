"""One client connection of the control socket: its reader (requests, line limits, idle timeout) and its
writer (replies first, then published messages; a client that does not read is dropped, never waited for)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import select
import socket
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from labcon.errors import LabconError
from labcon.remote.wire import jsonable

if TYPE_CHECKING:
    from labcon.remote.server import ControlServer

_log = logging.getLogger("labcon.remote.server")

MAX_LINE = 64 * 1024
# A client that does not read: once this much is waiting for it (replies + messages), it is disconnected.
MAX_QUEUED_BYTES = 16 * 1024 * 1024
# The "id" at the head of a request line, recovered from a line too long to parse so its reply matches.
_HEAD_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,64}")\s*[,}]')


class Connection:
    """One connection: a reader thread (requests) and a writer thread (replies first, then messages)."""

    def __init__(self, server: ControlServer, sock: socket.socket, queue_size: int):
        self.server, self.sock = server, sock
        self.subscribed = False
        self.dropped = 0
        self._replies: deque[bytes] = deque()
        self._events: deque[tuple[bool, bytes]] = deque()  # (is_progress, line)
        self._queue_size = queue_size
        self._queued_bytes = 0
        self.active = False  # made a valid request: no longer subject to the idle timeout
        self._cond = threading.Condition()
        self._closed = False
        self._ending = False  # close once the queued replies are written (a refusal's last words)

    def start(self, reading: bool = True) -> None:
        """Serve the connection; without `reading` only queued replies go out (a refused client)."""
        if reading:
            threading.Thread(target=self._read_loop, name="labcon-ctl-read", daemon=True).start()
        threading.Thread(target=self._write_loop, name="labcon-ctl-write", daemon=True).start()

    def end_after_replies(self) -> None:
        """Close the connection as soon as the replies queued so far are sent."""
        with self._cond:
            self._ending = True
            self._cond.notify()

    # ----- outgoing -------------------------------------------------------------------------------
    def reply(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, default=jsonable).encode() + b"\n"
        with self._cond:
            if self._queued_bytes + len(line) > MAX_QUEUED_BYTES:
                overflow = True
            else:
                overflow = False
                self._replies.append(line)
                self._queued_bytes += len(line)
                self._cond.notify()
        if overflow:
            self.close()  # it sends requests but never reads the replies: its memory would be ours

    def push(self, line: bytes, is_progress: bool) -> None:
        with self._cond:
            while self._events and (
                len(self._events) >= self._queue_size or self._queued_bytes + len(line) > MAX_QUEUED_BYTES
            ):
                victim = next((i for i, (p, _) in enumerate(self._events) if p), 0)
                self._queued_bytes -= len(self._events[victim][1])
                del self._events[victim]
                self.dropped += 1
            self._events.append((is_progress, line))
            self._queued_bytes += len(line)
            self._cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._replies and not self._events and not self._closed and not self._ending:
                    self._cond.wait()
                if self._closed:
                    return
                if self._ending and not self._replies:
                    break
                line = self._replies.popleft() if self._replies else self._events.popleft()[1]
                self._queued_bytes -= len(line)
            try:
                self.sock.sendall(line)
            except OSError:
                break
        self.close()

    # ----- incoming -------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        buf = b""
        skipping = False  # inside an oversized line: discard until its newline
        try:
            while not self._closed:
                if not self.active:
                    try:
                        ready, _, _ = select.select([self.sock], [], [], self.server.idle_timeout)
                    except (OSError, ValueError):
                        break
                    if not ready:
                        self.reply(closing_reply("no request since connecting; closing this idle connection"))
                        self.end_after_replies()
                        return
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if skipping:
                        skipping = False
                        continue
                    if len(line) > MAX_LINE:
                        self._too_long(line)
                        continue
                    self._handle_line(line)
                if len(buf) > MAX_LINE:
                    if not skipping:
                        self._too_long(buf)
                    skipping, buf = True, b""
        finally:
            if not self._ending:  # an ending connection is closed by its writer, after its last reply
                self.close()

    def _too_long(self, head: bytes) -> None:
        m = _HEAD_ID.match(head[:200])
        rid = json.loads(m.group(1)) if m else None  # the client waits for this id: answer it, not None
        self.reply(
            error_reply(rid, f"request over {MAX_LINE} bytes; dropped (send one JSON object per line)")
        )

    def _handle_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            self.reply(error_reply(None, f"malformed JSON ({e}); dropped"))
            return
        except RecursionError:
            self.reply(
                error_reply(None, "JSON nested too deeply; dropped (a request is one flat JSON object)")
            )
            return
        if not isinstance(req, dict):
            self.reply(error_reply(None, 'a request must be a JSON object like {"id": 1, "op": "status"}'))
            return
        rid = req.get("id")
        op = req.get("op")
        if op not in self.server.ops:
            self.reply(error_reply(rid, f"unknown op {op!r}; ops: {', '.join(self.server.ops)}"))
            return
        self.active = True
        try:
            self.reply(self.server.dispatch(self, rid, op, req))
        except LabconError as e:
            self.reply(error_reply(rid, str(e)))
        except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
            # A fault of labcon's, not of the request: its traceback goes to the serving process's log.
            _log.exception("internal error answering %r", op)
            self.reply(error_reply(rid, f"internal error in {op}: {type(e).__name__}: {e}"))

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.server._forget(self)


def error_reply(rid: Any, text: str) -> dict[str, Any]:
    return {"id": rid, "type": "reply", "ok": False, "text": text, "data": None}


def closing_reply(text: str) -> dict[str, Any]:
    """The server's last words on a connection it is about to close (the client keeps them as the reason)."""
    return {**error_reply(None, text), "closing": True}


def ok_reply(rid: Any, text: str = "", data: Any = None) -> dict[str, Any]:
    return {"id": rid, "type": "reply", "ok": True, "text": text, "data": data}
