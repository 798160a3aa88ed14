"""What a command is: one class declares its name, when it applies, help, options, parser, validation,
completion, whether replay re-applies it and how it is applied (see docs/ARCHITECTURE.md, "Adding a command").

Every list the rest of labcon needs (the parser table, help, completion, the session's dispatch, the
replay rules, the console's words) is derived from the classes registered with `@command`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from labcon.commands.lex import Value, is_key, split_unquoted, unquote, value
from labcon.core.hypers import HyperParamError, check_hyper
from labcon.errors import CommandError
from labcon.fmt import did_you_mean

# When a command takes effect: read-only/immediate, at a batch boundary, at an epoch boundary,
# or (starting work) only when nothing is running.
WHEN_VALUES: tuple[str, ...] = ("now", "batch", "epoch", "idle")

Opts = tuple[tuple[str, Value], ...]


class CommandContext(Protocol):
    """What validation and completion need to know about the live session."""

    @property
    def callbacks_available(self) -> Collection[str]:
        """Registry names `cb add` accepts."""
        ...

    @property
    def callbacks_installed(self) -> Collection[str]:
        """Names of the callbacks installed now."""
        ...

    @property
    def callbacks_fixed(self) -> Collection[str]:
        """Installed callbacks that are part of the loop (cannot be removed)."""
        ...

    @property
    def optimizer_names(self) -> Collection[str]:
        """Names `opt` accepts."""
        ...

    @property
    def hyper_names(self) -> Collection[str]:
        """Hyper-parameters of the current optimizer's param groups."""
        ...

    @property
    def n_groups(self) -> int:
        """Number of param groups."""
        ...

    @property
    def module_paths(self) -> Collection[str]:
        """Module paths of the model ('' is the model itself)."""
        ...

    @property
    def hook_ids(self) -> Collection[int]:
        """Ids of the installed hooks."""
        ...

    @property
    def scheduled(self) -> Collection[str]:
        """Hyper-parameters a schedule sets every batch (of the running fit, or of every fit when idle)."""
        ...

    @property
    def state(self) -> str:
        """idle | running | paused | stopping."""
        ...


@dataclass
class StaticContext:
    """A CommandContext from plain values (tests, and sessions that snapshot their state)."""

    callbacks_available: Collection[str] = ()
    callbacks_installed: Collection[str] = ()
    callbacks_fixed: Collection[str] = ()
    optimizer_names: Collection[str] = ("adam", "sgd", "lamb")
    hyper_names: Collection[str] = ("lr", "mom", "sqr_mom", "eps", "wd")
    n_groups: int = 1
    module_paths: Collection[str] = ()
    hook_ids: Collection[int] = ()
    scheduled: Collection[str] = ()
    state: str = "idle"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A command's result when it carries data for front ends as well as text (status, journal search)."""

    text: str
    data: dict[str, Any] | None = None


class CommandHost(Protocol):
    """What a command acts on: the Runner, plus the session operations a few commands need."""

    runner: Any

    def pause(self) -> str:
        """Pause at this batch boundary (checkpoint included)."""
        ...

    def resume(self) -> str:
        """Leave the paused state."""
        ...

    def stop(self) -> str:
        """Ask the fit to stop at the next batch boundary."""
        ...

    def save(self, label: str | None) -> str:
        """Write a checkpoint; returns its path as text."""
        ...

    def note(self, text: str) -> str:
        """Write a note into the journal."""
        ...

    def search_journal(self, query: str) -> Answer:
        """Journal search results."""
        ...

    def status(self) -> dict[str, Any]:
        """The session status snapshot."""
        ...

    def data_summary(self) -> str:
        """The data's stage-by-stage report."""
        ...

    def replay(self, run: str) -> Answer:
        """Start a replay of a journaled run (its own session process); where to find it."""

    def interrupted_fit(self) -> tuple[list[dict[str, Any]], float] | None:
        """The schedule changes list and position of a stopped fit that can continue, or None."""
        ...


def need(cond: bool, msg: str) -> None:
    """Raise CommandError(msg) unless cond."""
    if not cond:
        raise CommandError(msg)


@dataclass(frozen=True)
class Command:
    """Base class of every command: the class variables and methods below are its whole declaration."""

    name: ClassVar[str] = ""  # "fit", or "cb add" for a sub-command
    when: ClassVar[str] = "now"  # see WHEN_VALUES
    usage: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...] | None] = ()  # key= options (None: any)
    example: ClassVar[str] = ""
    replay: ClassVar[bool] = False  # re-applied when a run is replayed (it changed the experiment)
    raw_rest: ClassVar[bool] = False  # takes the rest of the line verbatim (note, journal)

    @property
    def text(self) -> str:
        """Canonical, re-parseable form of the command."""
        return self.name

    @classmethod
    def parse(cls, a: Args) -> Command:
        """Build the command from its words (default: no words, no options)."""
        a.positional(0, 0)
        a.allow(())
        return cls()

    @classmethod
    def from_rest(cls, rest: str) -> Command:
        """Build a raw_rest command from the rest of the line."""
        raise NotImplementedError

    def check(self, ctx: CommandContext) -> None:
        """Refuse (CommandError) what the live session cannot do; default: nothing to check."""

    def queued_note(self, ctx: CommandContext) -> str:
        """Words added to the 'queued' reply saying what will happen (e.g. a schedule rescaled)."""
        return ""

    def apply(self, host: CommandHost) -> str | Answer:
        """Do it; returns the reply (raise CommandError to refuse)."""
        raise CommandError(f"'{self.name}' is handled by the session, not applied to a runner")

    # ----- completion ----------------------------------------------------------------------------------
    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        """Candidates for the first positional word."""
        return []

    @classmethod
    def complete_options(cls, words: list[str], ctx: CommandContext | None) -> list[str]:
        """Option names (without '=') offered after the given positional words."""
        return list(cls.options or ())

    @classmethod
    def complete_value(cls, option: str, ctx: CommandContext | None) -> list[str]:
        """Candidates for the value of `option=`."""
        return []


REGISTRY: dict[str, type[Command]] = {}


def command(cls: type[Command]) -> type[Command]:
    """Class decorator: register a command (its `name` must be new)."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"command name {cls.name!r} is empty or registered twice")
    if cls.when not in WHEN_VALUES:
        raise ValueError(f"{cls.__name__}.when must be one of {WHEN_VALUES}")
    REGISTRY[cls.name] = cls
    return cls


class Args:
    """Positional and key=value arguments of one command, consumed by its parser."""

    def __init__(self, key: str, raws: list[str]):
        self.key = key
        self.pos: list[str] = []
        self.opts: list[tuple[str, Value]] = []
        self.raw: dict[str, str] = {}
        for raw in raws:
            parts = split_unquoted(raw, "=", maxsplit=1)
            if len(parts) == 2:
                k, quoted = unquote(parts[0])
                if quoted or not is_key(k):
                    raise CommandError(
                        f"bad option name {parts[0]!r} in {key}; write name=value ({usage(key)})"
                    )
                if any(k == o for o, _ in self.opts):
                    raise CommandError(f"option '{k}' given twice in {key}")
                self.raw[k] = parts[1]
                self.opts.append((k, value(parts[1])))
            else:
                self.pos.append(raw)

    def positional(self, lo: int, hi: int) -> list[str]:
        """The positional words (unquoted), checking there are between lo and hi of them."""
        n = len(self.pos)
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise CommandError(f"{self.key} takes {want} word(s), got {n}: {usage(self.key)}")
        return [unquote(p)[0] for p in self.pos]

    def one(self, what: str) -> str:
        """The single positional word; 'KEY needs WHAT' when it is missing."""
        if not self.pos:
            raise CommandError(f"{self.key} needs {what} ({usage(self.key)})")
        return self.positional(1, 1)[0]

    def allow(self, names: Sequence[str] | None) -> Opts:
        """The options, checking each name is allowed (None: any name)."""
        if names is not None:
            for k, _ in self.opts:
                if k not in names:
                    valid = ", ".join(f"{n}=" for n in names) or "none"
                    raise CommandError(f"unknown option '{k}' for {self.key}; valid: {valid}")
        return tuple(self.opts)


def usage(key: str) -> str:
    """'usage: ...' of a registered command."""
    return "usage: " + REGISTRY[key].usage


def whole(word: str, what: str, key: str, lo: int | None = None) -> int:
    """A whole number from a word (CommandError naming `what` otherwise)."""
    try:
        n = int(word)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, got '{word}': {usage(key)}") from None
    if lo is not None and n < lo:
        raise CommandError(f"{what} must be at least {lo}, got {n}")
    return n


def number(v: Value, what: str) -> float | tuple[float, ...]:
    """A float, or a tuple of floats (one per param group)."""
    items = v if isinstance(v, tuple) else (v,)
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise CommandError(f"{what} must be a number (e.g. 1e-3) or a list of numbers, got '{x}'")
    out = tuple(float(x) for x in items)
    return out if isinstance(v, tuple) else out[0]


def hyper(name: str, v: Any) -> Any:
    """check_hyper for each value, as a CommandError (one line, the value quoted as typed)."""
    try:
        for x in v if isinstance(v, tuple) else (v,):
            check_hyper(name, x)
    except HyperParamError as e:
        raise CommandError(str(e)) from None
    return v


def suggest(word: str, choices: Sequence[str], what: str) -> str:
    """One-line 'unknown X; did you mean Y? available: ...' message."""
    hint = did_you_mean(word, choices) or ";"
    avail = ", ".join(choices) if choices else "(none)"
    label = "commands" if what == "command" else "available"
    return f"unknown {what} '{word}'{hint} {label}: {avail}"
