"""The console's key and palette actions (pause, stop, save, panes, help, quit, screenshot, focus keys)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.actions import SkipAction
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.widgets import Input, TabbedContent

from labcon.session.api import SessionAPI
from labcon.session.messages import LIVE_STATES
from labcon.tui.bridge import submit_safely
from labcon.tui.commandline import CommandLine
from labcon.tui.journal import JournalPane
from labcon.tui.panes import FOCUS, PANES
from labcon.tui.screens import ConfirmScreen, HelpScreen, QuitScreen


class ConsoleActions(App[None]):
    """What the console's keys do; LabconApp adds the session traffic (run_command, main, _error, ...)."""

    session: SessionAPI
    session_lost: bool
    detached: bool
    _help_text: Any

    def run_command(self, text: str) -> None:
        """Echo and submit a command (LabconApp)."""
        raise NotImplementedError

    @property
    def main(self) -> Screen:
        """The screen holding the panes (LabconApp)."""
        raise NotImplementedError

    @property
    def console_pane(self) -> Any:
        """The console pane (LabconApp)."""
        raise NotImplementedError

    def _error(self, text: str, error: str, log: bool = True) -> None:
        raise NotImplementedError

    def _state(self) -> str:
        if self.session_lost:
            return "lost"
        try:
            return str(self.session.status().get("state", "idle"))
        except Exception:  # noqa: BLE001 - treat an unreadable status as idle
            return "idle"

    def action_toggle_pause(self) -> None:
        """Pause a running fit, resume a paused one."""
        if self.screen is not self.main:
            return  # a dialog is open: its keys (a typed command's space, s, q) must not act on the run
        state = self._state()
        if state == "running":
            self.run_command("pause")
        elif state == "paused":
            self.run_command("resume")
        else:
            self.notify(f"nothing to pause: the session is {state} (start with `fit N`)", markup=False)

    def action_stop(self) -> None:
        """Stop the live fit, once the user confirms."""
        if self.screen is not self.main:
            return  # a dialog is open: its keys (a typed command's space, s, q) must not act on the run
        state = self._state()
        if state not in LIVE_STATES:
            self.notify(f"nothing to stop: the session is {state}", markup=False)
            return
        self.confirm("Stop the fit at the next batch? (a checkpoint is saved; `resume` continues it)", "stop")

    def confirm(self, question: str, command: str) -> None:
        """Ask `question`; run `command` on yes."""

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_command(command)

        self.push_screen(ConfirmScreen(question), answer)

    def action_screenshot_to_session(self) -> None:
        """Save the screen as SVG into the session folder (or the current folder when there is none)."""
        if self.screen is not self.main:
            return  # a dialog is open: its keys (a typed command's space, s, q) must not act on the run
        folder = self.session.folder if self.session.folder.is_dir() else Path.cwd()
        name = time.strftime("screenshot-%Y%m%d-%H%M%S.svg")
        try:
            path = self.save_screenshot(name, str(folder))
        except OSError as e:
            self._error("screenshot", f"cannot save a screenshot in {folder}: {e}")
            return
        self.console_pane.write(f"screenshot saved: {path}", "dim")
        self.notify(f"saved {path}", title="screenshot", markup=False)

    def action_leave_command(self) -> None:
        """Esc on the command line: give the focus back to the pane (elsewhere Esc does what it did)."""
        if self.screen is not self.main or not isinstance(self.focused, CommandLine):
            raise SkipAction()
        self.main.set_focus(None)

    def action_slash(self) -> None:
        """`/`: filter the runs on the Journal pane; elsewhere focus the command line."""
        if self.screen is not self.main or isinstance(self.focused, Input):
            raise SkipAction()
        if self.main.query_one(TabbedContent).active == "journal":
            self.main.query_one(JournalPane).focus_search()
        else:
            self.action_focus_command()

    def action_save(self) -> None:
        """Save a checkpoint."""
        if self.screen is not self.main:
            return  # a dialog is open: its keys (a typed command's space, s, q) must not act on the run
        self.run_command("save")

    def action_show_pane(self, pid: str) -> None:
        """Switch to a pane."""
        # Shows the pane at once: the switcher sets `display` synchronously.
        self.main.query_one(TabbedContent).active = pid
        # Keys (arrows, pane keys) go to the pane's main table; never to a text box, so 1-6 keep working.
        # Focused in the same step: a deferred focus cost one more full-screen render per switch.
        target = FOCUS.get(pid)
        self.main.set_focus(self.main.query_one(target) if target is not None else None)

    def action_focus_command(self) -> None:
        """Focus the command line (synchronously: Widget.focus() defers and loses the next keys)."""
        if self.screen is not self.main or isinstance(self.focused, Input):
            raise SkipAction()  # a dialog is open, or ':' / '/' is being typed into a text box
        self.main.set_focus(self.main.query_one(CommandLine))

    def action_help(self) -> None:
        """Keys and commands."""
        if self.screen is not self.main:
            return  # a dialog is open: its keys (a typed command's space, s, q) must not act on the run
        self.push_screen(HelpScreen(self._help_text(None)))

    def action_request_quit(self) -> None:
        """Quit; when a run is live, ask whether to stop it, keep it running headless, or stay."""
        if self.screen is not self.main:
            return  # a dialog is open: its keys (a typed command's space, s, q) must not act on the run
        state = self._state()
        if state not in LIVE_STATES:
            self.exit()
            return
        self.push_screen(QuitScreen(state), self._quit_answer)

    def _quit_answer(self, choice: str | None) -> None:
        if choice == "stop":
            r = submit_safely(self.session, "stop")
            if not r.ok:
                self._error("stop", r.text)
                return
            self.exit()
        elif choice == "detach":
            try:
                self.session.detach()
                self.detached = True
            except Exception as e:  # noqa: BLE001 - stay open when detaching failed
                self._error("detach", str(e))
                return
            self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette: panes and run controls, besides Textual's own."""
        yield from super().get_system_commands(screen)
        for i, (pid, title) in enumerate(PANES):
            yield SystemCommand(
                f"Pane: {title}",
                f"show the {title} pane (key {i + 1})",
                lambda p=pid: self.action_show_pane(p),
            )
        yield SystemCommand("Pause / resume", "pause or resume the run (space)", self.action_toggle_pause)
        yield SystemCommand("Stop", "stop the run (s)", self.action_stop)
        yield SystemCommand("Save checkpoint", "save a checkpoint (ctrl+s)", self.action_save)
