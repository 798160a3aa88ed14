"""The registry of commands, and the lists derived from it (names, sub-commands, help).

Each command is one class in a `cmd_*.py` module, registered with `@command`; importing this module
imports them all. Nothing else lists commands: the parser, completion, help, the session's dispatch,
replay and the console's words all read `COMMAND_CLASSES` or `lookup`.
"""

from __future__ import annotations

import importlib

from labcon.commands.base import REGISTRY, Command, suggest
from labcon.errors import CommandError

# Each family module registers its classes on import; this order is the order of help and completion.
FAMILIES: tuple[str, ...] = (
    "cmd_train",
    "cmd_hyper",
    "cmd_model",
    "cmd_watch",
    "cmd_transfer",
    "cmd_session",
    "cmd_text",
)
for _family in FAMILIES:
    importlib.import_module(f"labcon.commands.{_family}")

COMMAND_CLASSES: tuple[type[Command], ...] = tuple(
    sorted(REGISTRY.values(), key=lambda c: FAMILIES.index(c.__module__.rpartition(".")[2]))
)
# Top-level words, and the words that take a sub-command.
COMMAND_NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.name.split()[0] for c in COMMAND_CLASSES))
SUBCOMMANDS: dict[str, tuple[str, ...]] = {}
for _cls in COMMAND_CLASSES:
    if " " in _cls.name:
        _top, _sub = _cls.name.split()
        SUBCOMMANDS[_top] = (*SUBCOMMANDS.get(_top, ()), _sub)
# Replay re-applies these (they changed the experiment); the rest was a person looking or saving.
REPLAYED: tuple[type[Command], ...] = tuple(c for c in COMMAND_CLASSES if c.replay)


def lookup(name: str) -> type[Command] | None:
    """The command class registered under `name` ('set', 'cb add'), or None."""
    return REGISTRY.get(" ".join(name.split()))


_WHEN_TEXT = {
    "now": "runs at once",
    "batch": "applied at the next batch boundary",
    "epoch": "applied at the next epoch boundary",
    "idle": "starts when nothing is running",
}


def help_text(name: str | None = None) -> str:
    """Help on every command (name=None), on one ('set', 'cb add'), or on a group ('cb')."""
    if name is None:
        width = max(len(c.usage) for c in COMMAND_CLASSES)
        lines = [f"  {c.usage:<{width}}  {c.summary}" for c in COMMAND_CLASSES]
        return "commands (help COMMAND for more):\n" + "\n".join(lines)
    name = " ".join(name.split())
    if name in SUBCOMMANDS and name not in REGISTRY:
        return "\n\n".join(help_text(f"{name} {sub}") for sub in SUBCOMMANDS[name])
    cls = REGISTRY.get(name)
    if cls is None:
        raise CommandError(suggest(name, COMMAND_NAMES, "command"))
    lines = [f"usage: {cls.usage}", f"  {cls.summary}", f"  ({_WHEN_TEXT[cls.when]})"]
    if cls.example:
        lines.append(f"  example: {cls.example}")
    return "\n".join(lines)
