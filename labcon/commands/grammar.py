"""The one command language of labcon: text -> typed command objects, validation, help and completion.

Used by the TUI console, the REPL, attach, `labcon send` and replay. Nothing is ever eval'd:
text is tokenised shell-style (quotes allowed) and values become ints, floats, bools, strings or
tuples (comma lists). The commands themselves are declared in `cmd_*.py` (see registry.py).
"""

from __future__ import annotations

from labcon.commands.base import (
    WHEN_VALUES,
    Answer,
    Args,
    Command,
    CommandContext,
    CommandHost,
    StaticContext,
    need,
    suggest,
)
from labcon.commands.cmd_hyper import Opt, Sched, Set, ShowSched
from labcon.commands.cmd_model import NORM_KINDS, CbAdd, CbList, CbRm, Norm, ShowLoop
from labcon.commands.cmd_session import DataSummary, Help, Note, Replay, Save, SearchJournal, Status
from labcon.commands.cmd_train import Fit, FitOneCycle, LrFind, Pause, Profile, Resume, Stop
from labcon.commands.cmd_transfer import FineTune, Freeze, Summary, Unfreeze, UnfreezeTo
from labcon.commands.cmd_watch import HOOK_KINDS, HookAdd, HookRm, ListHooks, SetTelemetry
from labcon.commands.completion import apply_completion, complete
from labcon.commands.lex import tokenize, unquote
from labcon.commands.registry import COMMAND_CLASSES, COMMAND_NAMES, REPLAYED, SUBCOMMANDS, help_text, lookup
from labcon.errors import CommandError

__all__ = [
    "COMMAND_CLASSES",
    "COMMAND_NAMES",
    "HOOK_KINDS",
    "NORM_KINDS",
    "REPLAYED",
    "SUBCOMMANDS",
    "WHEN_VALUES",
    "Answer",
    "CbAdd",
    "CbList",
    "CbRm",
    "Command",
    "CommandContext",
    "CommandHost",
    "DataSummary",
    "FineTune",
    "Fit",
    "FitOneCycle",
    "Freeze",
    "Help",
    "HookAdd",
    "HookRm",
    "ListHooks",
    "LrFind",
    "Profile",
    "Norm",
    "Note",
    "Opt",
    "Pause",
    "Replay",
    "Resume",
    "Save",
    "Sched",
    "SearchJournal",
    "Set",
    "SetTelemetry",
    "ShowLoop",
    "ShowSched",
    "StaticContext",
    "Status",
    "Stop",
    "Summary",
    "Unfreeze",
    "UnfreezeTo",
    "apply_completion",
    "check",
    "complete",
    "help_text",
    "lookup",
    "parse",
    "suggest",
    "validate",
]


def parse(text: str) -> Command:
    """Parse one command line into a typed Command; raises CommandError (one line) when it is invalid."""
    try:
        return _parse(text)
    except CommandError as e:
        raise CommandError(one_line(str(e))) from None


def one_line(msg: str) -> str:
    """A message with control characters (a quoted newline the user typed) shown visibly: one line, always."""
    if msg.isprintable():
        return msg
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in msg)


def _parse(text: str) -> Command:
    if not isinstance(text, str):
        raise CommandError(f"a command must be text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise CommandError("empty command; type help for the list of commands")
    head_rest = stripped.split(None, 1)
    cls = lookup(head_rest[0])
    if cls is not None and cls.raw_rest:
        return _raw_rest(cls, head_rest[1] if len(head_rest) > 1 else "")
    tokens = tokenize(stripped)
    word = unquote(tokens[0])[0]
    cls = lookup(word)
    if cls is not None and cls.raw_rest:
        return _raw_rest(cls, " ".join(tokens[1:]))
    if word not in COMMAND_NAMES:
        raise CommandError(suggest(word, COMMAND_NAMES, "command"))
    rest = tokens[1:]
    if word in SUBCOMMANDS:
        subs = SUBCOMMANDS[word]
        if not rest:
            example = lookup(f"{word} {subs[0]}")
            raise CommandError(
                f"{word} needs a sub-command: {', '.join(subs)} (e.g. {example.usage if example else word})"
            )
        sub = unquote(rest[0])[0]
        if sub not in subs:
            raise CommandError(suggest(sub, subs, f"{word} sub-command"))
        word, rest = f"{word} {sub}", rest[1:]
    found = lookup(word)
    assert found is not None  # every word in COMMAND_NAMES/SUBCOMMANDS is registered
    return found.parse(Args(word, rest))


def _raw_rest(cls: type[Command], rest: str) -> Command:
    rest = rest.strip()
    if not rest:
        raise CommandError(f"{cls.name} needs text (usage: {cls.usage})")
    return cls.from_rest(rest)


def validate(cmd: Command, ctx: CommandContext) -> Command:
    """Check a parsed command against the live session; returns it, or raises CommandError (one line)."""
    if cmd.when == "idle":
        need(
            ctx.state == "idle",
            f"cannot start '{cmd.name}' while the session is {ctx.state}; stop it first or wait",
        )
    try:
        cmd.check(ctx)
    except CommandError as e:
        raise CommandError(one_line(str(e))) from None
    return cmd


def check(text: str) -> Command:
    """Parse `text` (no live session needed): for callers that must refuse bad input before any work,
    e.g. `labcon replay --then TEXT` before training starts. Raises CommandError."""
    return parse(text)
