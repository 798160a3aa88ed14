"""The line console: prompt-toolkit prompt with history, completion and help; training runs behind it.

Progress and metrics print above the prompt (a reader thread on `session.subscribe()` under
patch_stdout) and the bottom toolbar shows the live position, so the prompt stays responsive.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from labcon.commands.grammar import Help, complete, help_text, parse
from labcon.errors import CommandError
from labcon.session.api import POLL_S, SessionAPI, Subscription
from labcon.session.describe import describe, describe_progress
from labcon.session.messages import (
    LIVE_STATES,
    FitEnded,
    Message,
    Progress,
)

QUIT_WORDS = ("quit", "exit")
PROMPT = "labcon> "


def format_progress(p: Progress) -> str:
    """The toolbar's and the periodic progress line."""
    return describe_progress(p)


def format_message(msg: Message) -> str | None:
    """The line printed above the prompt for a session message (None: not printed; progress is throttled)."""
    return None if isinstance(msg, Progress) else describe(msg)


class CommandCompleter(Completer):
    """Tab completion from labcon.commands.grammar.complete."""

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        """Complete the word before the cursor."""
        before = document.text_before_cursor
        word = "" if not before or before[-1].isspace() else before.split()[-1]
        for cand in complete(before, self.ctx):
            yield Completion(cand, start_position=-len(word))


class Repl:
    """The REPL loop around one session; `run()` returns when the user quits."""

    def __init__(
        self,
        session: SessionAPI,
        history: History,
        *,
        printer: Callable[[str], None] = print,
        errors: Callable[[str], None] | None = None,
        progress_interval: float = 5.0,
        **prompt_kwargs: Any,
    ):
        self.session, self.printer, self.progress_interval = session, printer, progress_interval
        self.errors = errors or printer  # where refusals go (stderr when reading a pipe)
        self.latest: Progress | None = None
        self._stop = threading.Event()
        self._last_progress_print = 0.0
        self._history, self._prompt_kwargs = history, prompt_kwargs
        self._prompt: PromptSession[str] | None = None

    @property
    def prompt(self) -> PromptSession[str]:
        """The prompt-toolkit session, made on first use: reading a pipe never creates one (it warns when
        its input is not a terminal)."""
        if self._prompt is None:
            self._prompt = PromptSession(
                history=self._history,
                completer=CommandCompleter(self.session.context()),
                bottom_toolbar=self.toolbar,
                refresh_interval=0.5,
                **self._prompt_kwargs,
            )
        return self._prompt

    def toolbar(self) -> str:
        """Live position for the bottom toolbar."""
        return format_progress(self.latest) if self.latest is not None else "idle - type help, Tab completes"

    def _follow(self, sub: Subscription) -> None:
        try:
            while not self._stop.is_set():
                msg = sub.get(timeout=POLL_S)
                if msg is not None:
                    self.show(msg)
        finally:
            sub.close()

    def show(self, msg: Message) -> None:
        """Print a session message above the prompt (progress at most every progress_interval seconds)."""
        if isinstance(msg, Progress):
            self.latest = msg
            now = time.monotonic()
            if self.progress_interval > 0 and now - self._last_progress_print >= self.progress_interval:
                self._last_progress_print = now
                self.printer(format_progress(msg))
            return
        if isinstance(msg, FitEnded):
            self.latest = None
        line = format_message(msg)
        if line is not None:
            self.printer(line)

    def handle(self, text: str, where: str = "") -> bool:
        """Run one line: help locally, everything else through session.submit; False when it was refused.
        `where` ("line 3: ") goes before an error, to say which input line it is about."""
        try:
            cmd = parse(text)
        except CommandError as e:
            self.errors(f"error: {where}{e}")
            return False
        if isinstance(cmd, Help):
            try:
                self.printer(help_text(cmd.topic))
            except CommandError as e:
                self.errors(f"error: {where}{e}")
                return False
            return True
        try:
            reply = self.session.submit(text)
        except Exception as e:  # noqa: BLE001 - a failed submit is reported, the prompt stays
            self.errors(f"error: {where}{type(e).__name__}: {e}")
            return False
        if not reply.ok:
            self.errors(f"error: {where}{reply.text}")
            return False
        self.printer(reply.text)
        return True

    def _live(self) -> bool:
        try:
            return self.session.status().get("state", "idle") in LIVE_STATES
        except Exception:  # noqa: BLE001 - a gone session is not live
            return False

    def confirm_quit(self) -> bool:
        """Whether to leave; asks first when a local run is live (a remote one keeps running)."""
        if self.session.remote or not self._live():
            return True
        try:
            answer = self.prompt.prompt("training is running; stop it and quit? [y/N] ", bottom_toolbar=None)
        except (EOFError, KeyboardInterrupt):
            return False
        if answer.strip().lower() not in ("y", "yes"):
            return False
        self.printer(self.session.submit("stop").text)
        return True

    def run(self) -> None:
        """Prompt until quit / exit / Ctrl-D."""
        sub = self.session.subscribe()
        reader = threading.Thread(target=self._follow, args=(sub,), name="labcon-repl-follow", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    line = self.prompt.prompt(PROMPT)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    if self.confirm_quit():
                        break
                    continue
                line = line.strip()
                if not line:
                    continue
                if line in QUIT_WORDS:
                    if self.confirm_quit():
                        break
                    continue
                self.handle(line)
        finally:
            self._stop.set()
            reader.join(timeout=2.0)

    def run_lines(self, lines: Iterable[str]) -> int:
        """Run commands read from a pipe or file, in order, without a prompt; returns how many were refused.

        At the end of the input (or `quit`) a local fit still running is waited for, as `labcon run` does."""
        sub = self.session.subscribe()
        reader = threading.Thread(target=self._follow, args=(sub,), name="labcon-repl-follow", daemon=True)
        reader.start()
        refused = 0
        try:
            for number, raw in enumerate(lines, 1):
                line = raw.strip()
                if line in QUIT_WORDS:
                    break
                if line and not self.handle(line, where=f"line {number}: "):
                    refused += 1
            if not self.session.remote and self._live():
                self.printer("end of input: waiting for the running fit to end (Ctrl-C stops it)")
                self.session.wait()
        finally:
            self._stop.set()
            reader.join(timeout=2.0)
        return refused


def _say(stream: Any) -> Callable[[str], None]:
    def say(text: str) -> None:
        # Flushed line by line: replies and errors (stdout, stderr) stay in order when both reach one terminal.
        print(text, file=stream, flush=True)

    return say


def run_repl(session: SessionAPI, history_path: str | Path | None, **kwargs: Any) -> int:
    """Run the REPL on `session` (local or RemoteSession) with history kept in `history_path`; the exit
    status: 0, or 1 when commands read from a pipe (stdin not a terminal) were refused."""
    if "input" not in kwargs and not sys.stdin.isatty():
        repl = Repl(session, InMemoryHistory(), printer=_say(sys.stdout), errors=_say(sys.stderr), **kwargs)
        try:
            return 1 if repl.run_lines(sys.stdin) else 0
        finally:
            if session.remote:
                session.detach()
    if history_path is not None:
        Path(history_path).parent.mkdir(parents=True, exist_ok=True)
        history: History = FileHistory(str(history_path))
    else:
        history = InMemoryHistory()
    repl = Repl(session, history, **kwargs)
    try:
        if kwargs.get("output") is None:
            with patch_stdout(raw=True):
                repl.run()
        else:  # a given output (e.g. DummyOutput in tests) is not a terminal to patch
            repl.run()
    finally:
        if session.remote:
            session.detach()
    return 0
