"""Commands about the session itself: status, help, data summary, save, note, journal, replay."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar

from labcon.commands.base import Answer, Args, Command, CommandHost, command, suggest
from labcon.commands.lex import fmt_path, unquote
from labcon.errors import CommandError
from labcon.fmt import fmt_value

_LABEL_OK = frozenset("-_.")


def format_status(st: dict[str, Any]) -> str:
    """A session status as a few readable lines."""
    hy = "  ".join(f"{k}={','.join(fmt_value(v) for v in vals)}" for k, vals in st["hypers"].items())
    lines = [
        f"session {st['name']}: {st['state']}  epoch {st['epoch']}  batch {st['iter']}/{st['n_iter']}  "
        f"iteration {st['train_iter']}  run {st['run_id']}",
        f"device {st['device']}  model {st['model']}  opt {st['opt']}  {hy}",
        f"callbacks: {', '.join(st['cbs'])}",
    ]
    lines += [f"built: {note}" for note in st.get("built", [])]
    if st.get("last_error"):
        lines.append(f"last error: {st['last_error']}")
    return "\n".join(lines)


@command
@dataclass(frozen=True)
class Status(Command):
    """Show the session's state, position, optimizer and hyper-parameters."""

    name: ClassVar[str] = "status"
    usage: ClassVar[str] = "status"
    summary: ClassVar[str] = "state, position, optimizer, hyper-parameters and callbacks"

    def apply(self, host: CommandHost) -> Answer:
        st = host.status()
        return Answer(format_status(st), st)


@command
@dataclass(frozen=True)
class DataSummary(Command):
    """Describe the data: sizes, classes, transforms."""

    name: ClassVar[str] = "data summary"
    usage: ClassVar[str] = "data summary"
    summary: ClassVar[str] = "describe the data: sizes, classes, transforms"

    def apply(self, host: CommandHost) -> str:
        return host.data_summary()


@command
@dataclass(frozen=True)
class Save(Command):
    """Save a checkpoint (optionally named: letters, digits, - _ . only, so it is a safe file name)."""

    name: ClassVar[str] = "save"
    when: ClassVar[str] = "batch"
    usage: ClassVar[str] = "save [NAME]"
    summary: ClassVar[str] = "save a checkpoint (optionally named with ASCII letters, digits, - _ .)"
    example: ClassVar[str] = "save before-swap"
    label: str | None = None

    @property
    def text(self) -> str:
        return "save" if self.label is None else f"save {fmt_path(self.label)}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        words = a.positional(0, 1)
        a.allow(())
        if not words:
            return cls()
        label = words[0]
        bad = sorted({ch for ch in label if not (ch.isascii() and (ch.isalnum() or ch in _LABEL_OK))})
        if not label or bad or label.startswith("."):
            shown = ", ".join(
                repr(ch) if unicodedata.category(ch)[0] != "C" else f"U+{ord(ch):04X}" for ch in bad
            )
            raise CommandError(
                f"checkpoint name '{label}' can only use ASCII letters, digits, '-', '_' and '.' (not first)"
                + (f"; found {shown}" if shown else "")
                + "; e.g. save before-swap"
            )
        if len(label) > 64:
            raise CommandError(f"checkpoint name is {len(label)} characters long; keep it to 64")
        return cls(label)

    def apply(self, host: CommandHost) -> str:
        return host.save(self.label)


@command
@dataclass(frozen=True)
class Note(Command):
    """Write a note into the journal (the rest of the line, verbatim)."""

    name: ClassVar[str] = "note"
    usage: ClassVar[str] = "note TEXT..."
    summary: ClassVar[str] = "write a note into the journal"
    example: ClassVar[str] = "note lr too high after epoch 3"
    raw_rest: ClassVar[bool] = True
    message: str

    @property
    def text(self) -> str:
        return f"note {self.message}"

    @classmethod
    def from_rest(cls, rest: str) -> Command:
        return cls(rest)

    def apply(self, host: CommandHost) -> str:
        return host.note(self.message)


@command
@dataclass(frozen=True)
class SearchJournal(Command):
    """Search the journal (the rest of the line is the query)."""

    name: ClassVar[str] = "journal"
    usage: ClassVar[str] = "journal QUERY..."
    summary: ClassVar[str] = "search the journal: runs, notes, commands"
    example: ClassVar[str] = "journal mixup"
    raw_rest: ClassVar[bool] = True
    query: str

    @property
    def text(self) -> str:
        return f"journal {self.query}"

    @classmethod
    def from_rest(cls, rest: str) -> Command:
        return cls(rest)

    def apply(self, host: CommandHost) -> Answer:
        return host.search_journal(self.query)


@command
@dataclass(frozen=True)
class Replay(Command):
    """Re-run a past run from the journal with its commands at the same (epoch, iteration)."""

    name: ClassVar[str] = "replay"
    when: ClassVar[str] = "now"  # starts its own session process: this session's state does not matter
    usage: ClassVar[str] = "replay RUN"
    summary: ClassVar[str] = (
        "re-run a past run (its own session process) with its commands at the same points"
    )
    example: ClassVar[str] = "replay 12"
    run: str

    @property
    def text(self) -> str:
        return f"replay {fmt_path(self.run)}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        run = a.one("a run id (see journal)")
        a.allow(())
        return cls(run)

    def apply(self, host: CommandHost) -> Answer:
        return host.replay(self.run)


@command
@dataclass(frozen=True)
class Help(Command):
    """Help on all commands, or on one (e.g. help cb add)."""

    name: ClassVar[str] = "help"
    usage: ClassVar[str] = "help [COMMAND]"
    summary: ClassVar[str] = "this list, or help on one command"
    example: ClassVar[str] = "help cb add"
    topic: str | None = None

    @property
    def text(self) -> str:
        return "help" if self.topic is None else f"help {self.topic}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        from labcon.commands.registry import COMMAND_NAMES, SUBCOMMANDS, lookup

        a.allow(())
        words = [unquote(p)[0] for p in a.pos]
        if not " ".join(words).strip():
            return cls()
        topic = " ".join(" ".join(words).split())
        if lookup(topic) is None and topic not in SUBCOMMANDS:
            if words[0] in SUBCOMMANDS and len(words) == 2:
                raise CommandError(suggest(words[1], SUBCOMMANDS[words[0]], f"{words[0]} sub-command"))
            raise CommandError(suggest(topic, COMMAND_NAMES, "command"))
        return cls(topic)

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.registry import help_text

        return help_text(self.topic)

    @classmethod
    def complete_words(cls, ctx: Any) -> list[str]:
        from labcon.commands.registry import COMMAND_NAMES

        return list(COMMAND_NAMES)
