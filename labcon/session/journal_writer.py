"""Journal writes from training: queued, then committed in batches by a background thread."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from labcon.errors import LabconError
from labcon.session.journal import Journal, JournalError

_CONTROL = ("start", "flush", "close")


class JournalWriter:
    """Own connection on a background thread; `put_*` calls return at once, commits every ~0.5 s or N items.

    `start_run` is synchronous (it returns the new id; once per fit). Failed writes never reach the
    training loop: they are collected and raised by the next `flush()` or `close()`.
    `batch_every=k` keeps only batch rows whose iteration is a multiple of k (sampling).
    """

    def __init__(
        self,
        journal_path: str | os.PathLike[str],
        *,
        interval: float = 0.5,
        max_items: int = 500,
        batch_every: int = 1,
        timeout: float = 30.0,
    ) -> None:
        self.interval = float(interval)
        self.max_items = max(1, int(max_items))
        self.batch_every = max(1, int(batch_every))
        self.timeout = timeout
        self._q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._closed = False
        self.committed = 0  # items written so far (for tests and status displays)
        ready: Future[Journal] = Future()
        self._thread = threading.Thread(
            target=self._loop, args=(journal_path, ready), name="labcon-journal-writer", daemon=True
        )
        self._thread.start()
        ready.result(timeout)  # re-raises if the journal cannot be opened

    # -- the API training code calls --------------------------------------------------------------

    def start_run(
        self,
        session: str,
        config_text: str,
        seed: int | None,
        parent_id: int | None = None,
        tags: Iterable[str] = (),
        env: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> int:
        """Record a new run and return its id (waits for the writer: everything queued before is written first)."""
        fut: Future[int] = Future()
        self._send(("start", fut, (session, config_text, seed, parent_id, tuple(tags), env), kwargs))
        return fut.result(self.timeout)

    def put_event(
        self,
        run_id: int,
        kind: str,
        text: str,
        epoch: int | None = None,
        iteration: int | None = None,
        data: Mapping[str, Any] | None = None,
        when: float | None = None,
    ) -> None:
        """Queue an event; its time is taken now (or `when`), not when it is written."""
        stamp = time.time() if when is None else when
        self._send(("log_event", (run_id, kind, text, epoch, iteration, data), {"when": stamp}))

    def put_note(self, run_id: int, text: str) -> None:
        """Queue a note."""
        self.put_event(run_id, "note", text)

    def put_epoch(self, run_id: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """Queue one epoch's metrics."""
        self._send(("log_epoch", (run_id, epoch, dict(metrics)), {}))

    def put_batches(self, run_id: int, rows: Iterable[tuple[int, Mapping[str, float]]]) -> None:
        """Queue per-batch metrics; rows off the sampling grid (`batch_every`) are dropped here."""
        keep = [(int(it), dict(m)) for it, m in rows if int(it) % self.batch_every == 0]
        if keep:
            self._send(("log_batches", (run_id, keep), {}))

    def put_tags(self, run_id: int, tags: Iterable[str]) -> None:
        """Queue tags for a run."""
        self._send(("add_tags", (run_id, tuple(tags)), {}))

    def put_end_run(
        self,
        run_id: int,
        status: str,
        final_metrics: Mapping[str, float] | None = None,
        train_seconds: float | None = None,
    ) -> None:
        """Queue the end of a run; call flush() or close() to be sure it is on disk."""
        self._send(("end_run", (run_id, status, dict(final_metrics or {}), train_seconds), {}))

    def put_reopen(self, run_id: int) -> None:
        """Queue 'this interrupted run trains again' (status back to running)."""
        self._send(("reopen_run", (run_id,), {}))

    def flush(self) -> None:
        """Write everything queued so far and commit; raises JournalError if any queued write failed."""
        if not self._closed:
            fut: Future[None] = Future()
            self._send(("flush", fut))
            fut.result(self.timeout)
        self._raise_errors()

    def close(self) -> None:
        """Write what is queued, stop the thread and close its connection (idempotent)."""
        if not self._closed:
            fut: Future[None] = Future()
            self._send(("close", fut))
            self._closed = True
            fut.result(self.timeout)
            self._thread.join(self.timeout)
        self._raise_errors()

    @property
    def errors(self) -> list[str]:
        """Messages of failed writes not yet reported by flush()/close()."""
        with self._errors_lock:
            return list(self._errors)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread -------------------------------------------------------------------------------

    def _send(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            raise JournalError("the journal writer is closed")
        self._q.put(item)

    def _raise_errors(self) -> None:
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise JournalError(f"journal writes failed: {errors[0]}{more}")

    def _record(self, message: str) -> None:
        with self._errors_lock:
            if len(self._errors) < 100:
                self._errors.append(message)

    def _loop(self, path: str | os.PathLike[str], ready: Future[Journal]) -> None:
        try:
            journal = Journal(path)
        except BaseException as e:  # report the failure to the constructor, then end the thread
            ready.set_exception(e)
            return
        ready.set_result(journal)
        pending: list[tuple[Any, ...]] = []
        deadline = 0.0
        try:
            while True:
                wait = max(0.0, deadline - time.monotonic()) if pending else None
                try:
                    item = self._q.get(timeout=wait)
                except queue.Empty:
                    self._write(journal, pending)
                    continue
                if item[0] not in _CONTROL:
                    if not pending:
                        deadline = time.monotonic() + self.interval
                    pending.append(item)
                    if len(pending) >= self.max_items:
                        self._write(journal, pending)
                    continue
                self._write(journal, pending)
                fut = item[1]
                if item[0] == "start":
                    try:
                        fut.set_result(journal.start_run(*item[2], **item[3]))
                    except BaseException as e:  # the caller gets it from fut.result()
                        fut.set_exception(e)
                    continue
                fut.set_result(None)
                if item[0] == "close":
                    return
        finally:
            journal.close()

    def _write(self, journal: Journal, pending: list[tuple[Any, ...]]) -> None:
        """One transaction for the batch; each item in a savepoint so a bad one is dropped alone."""
        if not pending:
            return
        written = 0
        try:
            with journal.transaction():
                for name, args, kwargs in pending:
                    try:
                        getattr(journal, name)(*args, **kwargs)
                        written += 1
                    except Exception as e:  # a bad item (unknown run, bad value) must not stop the writer
                        self._record(str(e) if isinstance(e, LabconError) else f"{name}: {e!r}")
            self.committed += written
        except Exception as e:  # e.g. disk full: the batch is lost, training goes on
            self._record(f"batch of {len(pending)} lost: {e}")
        pending.clear()
