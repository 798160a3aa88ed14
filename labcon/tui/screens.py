"""Modal screens: the help screen and the quit question."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

KEYS_HELP = """\
keys
  1-6        panes: Training, Telemetry, Hooks, Data, Journal, Console (also ctrl+p palette)
  space      pause / resume the run
  s          stop the run at the next batch (asks first)
  ctrl+s     save a checkpoint
  :          focus the command line (Tab completes, up/down history, Esc leaves)
  /          filter the Journal pane's runs (elsewhere: the command line)
  P          save a screenshot (SVG) into the session folder
  ?          this help
  q          quit (asks when a run is live)
pane keys
  Telemetry  up/down choose the layer whose histogram is shown
  Hooks      a add a hook on the module, x remove the selected hook (while paused; asks first)
  Data       r redraw the sample batch with new augmentations
  Training   L puts lr_find's suggested lr into `fit_one_cycle 5 lr=...`
  Journal    / filter, enter show a run, m mark (marked runs are charted), c chart metric,
             d diff the last two marked, R replay
"""


class HelpScreen(ModalScreen[None]):
    """Keys and the command language's help text."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, commands_help: str = "") -> None:
        super().__init__()
        self.commands_help = commands_help

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(KEYS_HELP, markup=False)
            if self.commands_help:
                yield Static(self.commands_help, markup=False)
            yield Label("esc closes")

    def action_dismiss(self) -> None:
        """Close the help."""
        self.dismiss(None)


class QuitScreen(ModalScreen[str]):
    """Asked on quit while a run is live: stop it, keep it running headless, or cancel."""

    BINDINGS = [
        Binding("escape,c", "choose('cancel')", "Cancel"),
        Binding("s", "choose('stop')", "Stop"),
        Binding("h", "choose('detach')", "Headless"),
    ]

    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box"):
            yield Label(f"A run is {self.state}. What should happen to it?")
            with Horizontal(id="quit-buttons"):
                yield Button("Stop it and quit (s)", id="stop", variant="error")
                yield Button("Keep running headless (h)", id="detach", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button's id."""
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        """Answer from a key."""
        self.dismiss(choice)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question before a key does something that cannot be undone (y: yes; n / esc / enter: no).

    Only `y` says yes, and `No` has the focus: a command typed after a stray `s` (its Enter included) must not
    stop the run.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(self.question)
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n / esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Answer from a key."""
        self.dismiss(yes)
