"""Typed, frozen command objects; each knows its canonical text and when it may be applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from labcon.commands.lex import Value, fmt_opts, fmt_path, fmt_value

# When a command takes effect: read-only/immediate, at a batch boundary, at an epoch boundary,
# or (starting work) only when nothing is running.
WHEN_VALUES: tuple[str, ...] = ("now", "batch", "epoch", "idle")
NORM_KINDS: tuple[str, ...] = ("batch", "running", "layer", "group", "instance")
HOOK_KINDS: tuple[str, ...] = ("forward", "backward")

Opts = tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class Command:
    """Base class of every parsed command."""

    name: ClassVar[str] = ""
    when: ClassVar[str] = "now"

    @property
    def text(self) -> str:
        """Canonical, re-parseable form of the command."""
        return self.name


def _kwargs(opts: Opts) -> dict[str, Any]:
    return dict(opts)


@dataclass(frozen=True)
class Fit(Command):
    """Train for n more epochs."""

    name: ClassVar[str] = "fit"
    when: ClassVar[str] = "idle"
    n: int

    @property
    def text(self) -> str:
        return f"fit {self.n}"


@dataclass(frozen=True)
class FitOneCycle(Command):
    """Train n epochs with the one-cycle policy (lr: peak lr, one per param group allowed)."""

    name: ClassVar[str] = "fit_one_cycle"
    when: ClassVar[str] = "idle"
    n: int
    lr: float | tuple[float, ...] | None = None
    pct_start: float | None = None

    @property
    def text(self) -> str:
        s = f"fit_one_cycle {self.n}"
        if self.lr is not None:
            s += f" lr={fmt_value(self.lr)}"
        if self.pct_start is not None:
            s += f" pct_start={fmt_value(self.pct_start)}"
        return s


@dataclass(frozen=True)
class LrFind(Command):
    """Run the learning-rate range test (model and optimizer restored afterwards)."""

    name: ClassVar[str] = "lr_find"
    when: ClassVar[str] = "idle"
    opts: Opts = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options as keyword arguments (start_lr, end_lr, num_it)."""
        return _kwargs(self.opts)

    @property
    def text(self) -> str:
        return "lr_find" + fmt_opts(self.opts)


@dataclass(frozen=True)
class Pause(Command):
    """Pause training at the next batch boundary."""

    name: ClassVar[str] = "pause"
    when: ClassVar[str] = "batch"


@dataclass(frozen=True)
class Resume(Command):
    """Resume paused training."""

    name: ClassVar[str] = "resume"
    when: ClassVar[str] = "batch"


@dataclass(frozen=True)
class Stop(Command):
    """Stop the running fit at the next batch boundary."""

    name: ClassVar[str] = "stop"
    when: ClassVar[str] = "batch"


@dataclass(frozen=True)
class Set(Command):
    """Set hyper-parameters (all param groups, or one with group=K; a list gives one value per group)."""

    name: ClassVar[str] = "set"
    when: ClassVar[str] = "batch"
    values: tuple[tuple[str, float | tuple[float, ...]], ...]
    group: int | None = None

    @property
    def text(self) -> str:
        s = "set" + fmt_opts(self.values)  # type: ignore[arg-type]
        return s if self.group is None else f"{s} group={self.group}"


@dataclass(frozen=True)
class Opt(Command):
    """Swap the optimizer (adam, sgd, lamb, ...) carrying matching state and current hypers."""

    name: ClassVar[str] = "opt"
    when: ClassVar[str] = "epoch"
    opt: str
    opts: Opts = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options as keyword arguments of the optimizer factory."""
        return _kwargs(self.opts)

    @property
    def text(self) -> str:
        return f"opt {fmt_path(self.opt)}" + fmt_opts(self.opts)


@dataclass(frozen=True)
class CbAdd(Command):
    """Install a callback by registry name, or a user class as path/to/file.py:ClassName."""

    name: ClassVar[str] = "cb add"
    when: ClassVar[str] = "epoch"
    cb: str
    opts: Opts = ()

    @property
    def is_path(self) -> bool:
        """Whether cb names a user file (path.py:ClassName) rather than a registry name."""
        return ":" in self.cb

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options as keyword arguments of the callback's constructor."""
        return _kwargs(self.opts)

    @property
    def text(self) -> str:
        return f"cb add {fmt_path(self.cb)}" + fmt_opts(self.opts)


@dataclass(frozen=True)
class CbRm(Command):
    """Remove an installed callback by name."""

    name: ClassVar[str] = "cb rm"
    when: ClassVar[str] = "epoch"
    cb: str

    @property
    def text(self) -> str:
        return f"cb rm {fmt_path(self.cb)}"


@dataclass(frozen=True)
class CbList(Command):
    """List installed callbacks with their order."""

    name: ClassVar[str] = "cb list"


@dataclass(frozen=True)
class Norm(Command):
    """Swap every normalisation layer for another kind (batch, running, layer, group, instance)."""

    name: ClassVar[str] = "norm"
    when: ClassVar[str] = "epoch"
    kind: str
    opts: Opts = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options for the new norm layers (e.g. groups=8)."""
        return _kwargs(self.opts)

    @property
    def text(self) -> str:
        return f"norm {self.kind}" + fmt_opts(self.opts)


@dataclass(frozen=True)
class Hooks(Command):
    """List installed hooks."""

    name: ClassVar[str] = "hooks"


@dataclass(frozen=True)
class HookAdd(Command):
    """Add an activation-stats hook on a module (by module path)."""

    name: ClassVar[str] = "hook add"
    when: ClassVar[str] = "batch"
    module: str
    kind: str = "forward"

    @property
    def text(self) -> str:
        return f"hook add {fmt_path(self.module)} kind={self.kind}"


@dataclass(frozen=True)
class HookRm(Command):
    """Remove a hook by id."""

    name: ClassVar[str] = "hook rm"
    when: ClassVar[str] = "batch"
    id: int

    @property
    def text(self) -> str:
        return f"hook rm {self.id}"


@dataclass(frozen=True)
class Telemetry(Command):
    """Configure telemetry: report every K batches, which layers, on or off (bare: show settings)."""

    name: ClassVar[str] = "telemetry"
    when: ClassVar[str] = "batch"
    every: int | None = None
    layers: tuple[str, ...] | None = None
    on: bool | None = None

    @property
    def text(self) -> str:
        s = "telemetry"
        if self.every is not None:
            s += f" every={self.every}"
        if self.layers is not None:
            s += " layers=" + ",".join(fmt_path(x) for x in self.layers)
        if self.on is not None:
            s += " on" if self.on else " off"
        return s


@dataclass(frozen=True)
class DataSummary(Command):
    """Describe the data: sizes, classes, transforms."""

    name: ClassVar[str] = "data summary"


@dataclass(frozen=True)
class Save(Command):
    """Save a checkpoint (optionally named)."""

    name: ClassVar[str] = "save"
    when: ClassVar[str] = "batch"
    label: str | None = None

    @property
    def text(self) -> str:
        return "save" if self.label is None else f"save {fmt_path(self.label)}"


@dataclass(frozen=True)
class Note(Command):
    """Write a note into the journal (the rest of the line, verbatim)."""

    name: ClassVar[str] = "note"
    message: str

    @property
    def text(self) -> str:
        return f"note {self.message}"


@dataclass(frozen=True)
class Journal(Command):
    """Search the journal (the rest of the line is the query)."""

    name: ClassVar[str] = "journal"
    query: str

    @property
    def text(self) -> str:
        return f"journal {self.query}"


@dataclass(frozen=True)
class Replay(Command):
    """Re-run a past run from the journal with its commands at the same (epoch, iteration)."""

    name: ClassVar[str] = "replay"
    when: ClassVar[str] = "idle"
    run: str

    @property
    def text(self) -> str:
        return f"replay {fmt_path(self.run)}"


@dataclass(frozen=True)
class ShowLoop(Command):
    """Show which callbacks run at each training event."""

    name: ClassVar[str] = "show loop"


@dataclass(frozen=True)
class Status(Command):
    """Show the session's state, position, optimizer and hyper-parameters."""

    name: ClassVar[str] = "status"


@dataclass(frozen=True)
class Help(Command):
    """Help on all commands, or on one (e.g. help cb add)."""

    name: ClassVar[str] = "help"
    topic: str | None = None

    @property
    def text(self) -> str:
        return "help" if self.topic is None else f"help {self.topic}"


@dataclass(frozen=True)
class Profile(Command):
    """Time n training steps part by part (model, optimizer and counters restored afterwards)."""

    name: ClassVar[str] = "profile"
    when: ClassVar[str] = "idle"
    n: int = 20

    @property
    def text(self) -> str:
        return f"profile {self.n}"


COMMAND_CLASSES: tuple[type[Command], ...] = (
    Fit,
    FitOneCycle,
    LrFind,
    Profile,
    Pause,
    Resume,
    Stop,
    Set,
    Opt,
    CbAdd,
    CbRm,
    CbList,
    Norm,
    Hooks,
    HookAdd,
    HookRm,
    Telemetry,
    DataSummary,
    Save,
    Note,
    Journal,
    Replay,
    ShowLoop,
    Status,
    Help,
)
