"""The lab console: a thin Textual App that wires the panes to a session (submit, subscribe, snapshots)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Label, TabbedContent, TabPane

from labcon.session.api import Reply, SessionAPI
from labcon.session.messages import (
    LIVE_STATES,
    CommandApplied,
    CommandFailed,
    FitEnded,
    FitStarted,
    Log,
    StateChanged,
)
from labcon.tui.actions import ConsoleActions
from labcon.tui.bridge import CommandSender, ConnectionLost, UpdateBatch, pump
from labcon.tui.budget import MAX_UPDATES_PER_S, Throttle, UiBudget
from labcon.tui.commandline import CommandLine, Completions, PastedLines, load_help
from labcon.tui.history import HISTORY_FILE, append_history, load_history
from labcon.tui.hooks import HooksPane
from labcon.tui.keyhints import KeyHints
from labcon.tui.pane import Pane
from labcon.tui.panes import PANES, ConsolePane, make_pane
from labcon.tui.position import FitPosition
from labcon.tui.statusbar import StatusBar
from labcon.tui.training import is_change

_STATUS_EVENTS = (StateChanged, FitStarted, FitEnded, CommandApplied)


# An error repeated within this many seconds (the reply and the message of one refusal) is shown once.
ERROR_DEDUP_S = 5.0
# Seconds over which the console measures its own CPU use to adapt its update rate.
BUDGET_WINDOW_S = 2.0
# While a fit runs, the status is re-read this often (its input-/compute-bound reading moves between events).
STATUS_EVERY_S = 2.0


class SessionUpdate(Message):
    """A merged batch of session messages (posted from the pump thread)."""

    def __init__(self, batch: UpdateBatch) -> None:
        super().__init__()
        self.batch = batch


class CommandDone(Message):
    """The session answered a command (posted from the sender thread)."""

    def __init__(self, text: str, reply: Reply) -> None:
        super().__init__()
        self.text, self.reply = text, reply


class LabconApp(ConsoleActions):
    """Six panes over one session; the UI only reads snapshots and messages, never tensors."""

    CSS_PATH = "app.tcss"
    TITLE = "labcon"
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/resume"),
        Binding("s", "stop", "Stop"),
        Binding("P", "screenshot_to_session", "Screenshot"),
        Binding("ctrl+s", "save", "Save"),
        *(
            Binding(str(i + 1), f"show_pane('{pid}')", title, show=False)
            for i, (pid, title) in enumerate(PANES)
        ),
        # Priority: checked when the key arrives, before the keys typed after it are routed, so a fast
        # ":set lr=0.02" (or a paste) lands in the command line instead of firing s/space/2 shortcuts.
        Binding("colon", "focus_command", "Command", priority=True),
        # Leaving the command line is decided when Esc arrives, like ':' entering it: the keys after it
        # (a pane key) are routed by the focus at that moment.
        Binding("escape", "leave_command", "Leave", show=False, priority=True),
        Binding("slash", "slash", "Filter", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("q", "request_quit", "Quit"),
    ]

    def __init__(
        self,
        session: SessionAPI,
        journal: Any = None,
        images: str = "auto",
        max_rate: float = MAX_UPDATES_PER_S,
    ):
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # The tab underline's 0.3 s slide repainted the whole screen ~18 times per pane switch: on two
            # busy cores that alone put key-to-screen p95 near 100 ms. $TEXTUAL_ANIMATIONS still chooses.
            self.animation_level = "none"
        self.session = session
        self.journal = journal
        self.images = images
        self.throttle = Throttle(max_rate)
        self._budget: UiBudget | None = None
        self.n_updates = 0
        self.detached = False
        self.session_lost = False  # an attached session's process went away
        self._stop = threading.Event()
        self._sub: Any = None
        self._pump: threading.Thread | None = None
        self.sender = CommandSender(session, lambda t, r: self.post_message(CommandDone(t, r)))
        self._help_text = load_help()
        self._main: Screen | None = None
        self._panes: list[Pane] = []
        self._status: StatusBar | None = None
        self._recent_errors: dict[str, float] = {}  # error text -> when shown (each error is shown once)
        self.history_path: Path | None = None  # the session folder's command history (shared with the REPL)
        self.position = FitPosition()  # the fit's counters, shared by the status bar and the fit bars

    # -- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(self.position, id="status")
        with TabbedContent(id="panes", initial="training"):
            for i, (pid, title) in enumerate(PANES):
                with TabPane(f"{i + 1} {title}", id=pid):
                    yield make_pane(pid, self.session, self.journal, self.images, self.position)
        with Horizontal(id="command-row"):
            yield Label("›", id="prompt")
            yield CommandLine(
                placeholder="command: try fit_one_cycle 5 or lr_find (: focuses, Tab completes, help)",
                id="command",
            )
        yield KeyHints(id="keys")

    @property
    def main(self) -> Screen:
        """The screen holding the panes (not a modal on top of it)."""
        return self._main if self._main is not None else self.screen

    @property
    def panes(self) -> list[Pane]:
        """Every pane widget (looked up once: a DOM query per update cost ~5 ms of the trainer's CPU)."""
        if not self._panes:
            self._panes = list(self.main.query(Pane))
        return self._panes

    @property
    def status_bar(self) -> StatusBar:
        """The one-line status at the top."""
        if self._status is None:
            self._status = self.main.query_one(StatusBar)
        return self._status

    @property
    def console_pane(self) -> ConsolePane:
        """The console pane (its log collects every reply and error)."""
        return self.main.query_one(ConsolePane)

    # -- life cycle -------------------------------------------------------------------------------
    def on_mount(self) -> None:
        # Modal screens (help, quit) sit on top later; updates must still find the main screen's widgets.
        self._main = self.screen
        folder = self.session.folder
        self.history_path = folder / HISTORY_FILE if folder.is_dir() else None
        if self.history_path is not None:
            self.main.query_one(CommandLine).load(load_history(self.history_path))
        self.refresh_status()
        self.sender.start()
        self._sub = self.session.subscribe()
        self._pump = threading.Thread(
            target=pump,
            args=(self._sub, lambda b: self.post_message(SessionUpdate(b)), self._stop, self.throttle),
            name="labcon-tui-pump",
            daemon=True,
        )
        self._pump.start()
        self._budget = UiBudget(self.throttle)
        self.set_interval(BUDGET_WINDOW_S, self._budget.check)
        self.set_interval(STATUS_EVERY_S, self._poll_status)
        self.call_after_refresh(self._budget.freeze_gc)

    async def action_quit(self) -> None:
        """Stop the pump before the widgets go."""
        self._stop.set()
        await super().action_quit()

    def on_unmount(self) -> None:
        if self._budget is not None:
            self._budget.restore_gc()
        self._stop.set()
        if self._pump is not None:
            self._pump.join(1.0)
        if self._sub is not None:
            self._sub.close()
        self.sender.close()

    # -- session traffic --------------------------------------------------------------------------
    def on_session_update(self, message: SessionUpdate) -> None:
        """Hand a merged update to every pane; errors become notifications."""
        if self._stop.is_set() or self._main is None or not self._main.is_attached:
            return  # not started yet or shutting down: the widgets are not there
        try:
            self._apply_update(message.batch)
        except NoMatches:
            return  # the screen was torn down while this update was in flight

    def _apply_update(self, batch: UpdateBatch) -> None:
        self.n_updates += 1
        for ev in batch.events:
            if isinstance(ev, FitStarted):
                self.position.fit_started(ev)
        if batch.progress is not None:
            self.position.progress(batch.progress)
        if any(isinstance(e, _STATUS_EVENTS) for e in batch.events) and not self.session_lost:
            self.refresh_status()  # before the panes: they draw the position it updates
        for pane in self.panes:
            try:
                pane.apply(batch)
            except Exception as e:  # noqa: BLE001 - one pane's bug must not take the console down
                self.notify(f"{type(pane).__name__}: {e}", severity="error", markup=False)
        if batch.progress is not None:
            self.status_bar.set_progress(batch.progress)
        for ev in batch.events:
            if isinstance(ev, ConnectionLost):
                self.session_lost = True
                self.status_bar.set_status({**self.status_bar.status, "state": "lost"})
                self.notify(ev.text, title="session lost", severity="error", markup=False, timeout=30)
            elif isinstance(ev, CommandApplied) and is_change(ev.text):
                # Wherever the user is looking: the Training pane numbers it on the plots, this says it now.
                self.notify(ev.reply or "applied", title=f"applied: {ev.text}", markup=False, timeout=4)
            elif isinstance(ev, CommandFailed):
                self._error(ev.text, ev.error)
            elif isinstance(ev, Log) and ev.level == "error":
                self._error("error", ev.text, log=False)  # the console pane already logs it
            elif isinstance(ev, FitEnded) and ev.status == "failed":
                self._error("fit failed", ev.reason or "the fit failed", log=False)

    def refresh_status(self) -> None:
        """Re-read session.status() into the status bar."""
        if self.session_lost:
            return
        try:
            st = self.session.status()
        except Exception as e:  # noqa: BLE001 - a status bug must not crash the console
            self.notify(f"status: {e}", severity="error", markup=False)
            return
        self.position.set_status(st)
        self.status_bar.set_status(st)

    def _poll_status(self) -> None:
        """Only the input meter's reading: the counters move with the messages, which redraw the status bar and
        the fit bars together (taking them from here too would let the two disagree for a moment)."""
        if self.session_lost or self.status_bar.status.get("state") not in LIVE_STATES:
            return
        try:
            st = self.session.status()
        except Exception as e:  # noqa: BLE001 - as refresh_status: a status bug must not crash the console
            self.notify(f"status: {e}", severity="error", markup=False)
            return
        self.status_bar.set_bound(st)

    def run_command(self, text: str) -> None:
        """Echo `text` in the console and submit it (help is answered locally from the grammar)."""
        text = text.strip()
        if not text:
            return
        self.console_pane.write(f"› {text}", "bold")
        words = text.split()
        if words[0] == "help":
            try:
                self.console_pane.write(self._help_text(" ".join(words[1:]) or None))
            except Exception as e:  # noqa: BLE001 - unknown topic etc.: show the message
                self._error(text, str(e))
            return
        self.sender.submit(text)

    def on_command_done(self, message: CommandDone) -> None:
        """Show the session's reply; a refusal is an error in the console and a notification."""
        r = message.reply
        if r.ok:
            self.console_pane.write(r.text or "ok")
        else:
            self._error(message.text, r.text)
        if message.text.startswith("hook"):
            self.main.query_one(HooksPane).mark_dirty()
        self.refresh_status()

    def _error(self, text: str, error: str, log: bool = True) -> None:
        """Show an error once: a refused command arrives both as the reply and as a CommandFailed message, a
        failed fit as an error log line and a FitEnded; whichever comes second is dropped."""
        now = time.monotonic()
        self._recent_errors = {k: t for k, t in self._recent_errors.items() if now - t < ERROR_DEDUP_S}
        if any(k in error or error in k for k in self._recent_errors):
            return
        self._recent_errors[error] = now
        if log:
            self.console_pane.write(
                f"error: {error}" if text in error else f"error: {text}: {error}", "bold red"
            )
        self.notify(error, title=text, severity="error", markup=False)

    def on_input_submitted(self, event: CommandLine.Submitted) -> None:
        """Enter on the command line."""
        if isinstance(event.input, CommandLine):
            self.submit_line(event.input, event.value, clear=False)  # the line cleared itself on Enter

    def on_pasted_lines(self, message: PastedLines) -> None:
        """Each whole pasted line runs as if typed and entered."""
        for text in message.lines:
            self.submit_line(message.line, text, clear=False)

    def submit_line(self, line: Input, text: str, clear: bool = True) -> None:
        """Run a line typed or pasted into the command line, remembering it (on disk too)."""
        if isinstance(line, CommandLine) and line.remember(text) and self.history_path is not None:
            err = append_history(self.history_path, text.strip())
            if err is not None:
                self.history_path = None  # say it once
                self.notify(err, severity="warning", markup=False)
        if clear:
            line.value = ""
        self.run_command(text)

    def on_completions(self, message: Completions) -> None:
        """Several completions: list them in the console."""
        self.console_pane.write("  ".join(message.candidates), "dim")

    def prefill_command(self, text: str) -> None:
        """Put `text` on the command line and focus it (the user completes and presses Enter)."""
        line = self.main.query_one(CommandLine)
        line.value = text
        line.cursor_position = len(text)
        self.main.set_focus(line)


def build_app(session: SessionAPI, journal: Any = None, *, images: str = "auto") -> LabconApp:
    """The console for `session` (tests inject a fake session and a temp journal; images='halfcell' is deterministic)."""
    return LabconApp(session, journal=journal, images=images)


def follow_the_terminal_size() -> None:
    """Forget COLUMNS and LINES when the terminal itself can tell its size.

    Textual sizes the screen with shutil.get_terminal_size(), which believes those variables first: an exported or
    inherited COLUMNS=80 (GNU readline sets both in programs that load it) pinned the console at 80x24 in a
    larger window and through every resize."""
    try:
        os.get_terminal_size(sys.__stdout__.fileno())
    except (AttributeError, OSError, ValueError):
        return  # no terminal to ask: the variables are all there is
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


def run_console(session: SessionAPI) -> bool:
    """Run the console in this terminal until the user quits; True when they chose to keep the run going.

    An in-process session kept running is waited for here (the terminal stays with it); a remote one is not.
    """
    follow_the_terminal_size()
    app = build_app(session)
    # Python's default GIL switch interval (5 ms) is kept: 1 ms cost the trainer ~5 % of its steps in
    # bench/console_overhead.py --session and did not shorten key-to-screen latency once rendering got cheap.
    app.run()
    if app.detached and not session.remote:
        print("labcon: the run continues headless; Ctrl-C stops it", file=sys.stderr)
        session.wait()
    return app.detached


__all__ = ["LabconApp", "build_app", "follow_the_terminal_size", "run_console"]
