"""Tab completion, derived from the command registry (each class says what its words and values may be)."""

from __future__ import annotations

import inspect
from collections.abc import Collection
from typing import Any

from labcon.commands.base import CommandContext
from labcon.commands.lex import split_unquoted, tokenize, unquote
from labcon.commands.registry import COMMAND_NAMES, SUBCOMMANDS, lookup
from labcon.errors import CommandError


def params_of(obj: Any, skip: Collection[str] = ("self", "params")) -> list[str]:
    """Keyword parameter names of a callable (options of an optimizer factory or a callback class)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds and p.name not in skip]


def complete(text_before_cursor: str, ctx: CommandContext | None = None) -> list[str]:
    """Candidates for the word being typed (whole words: commands, sub-words, names, 'lr=' ...), no repeats."""
    return list(dict.fromkeys(_candidates(text_before_cursor, ctx)))


def _candidates(text: str, ctx: CommandContext | None) -> list[str]:
    try:
        tokens = tokenize(text)
    except CommandError:
        return []
    partial = "" if not text or text[-1].isspace() else (tokens.pop() if tokens else "")
    words = [unquote(t)[0] for t in tokens]
    if not words:
        return [c for c in COMMAND_NAMES if c.startswith(partial)]
    top = words[0]
    if top not in COMMAND_NAMES:
        return []
    if top == "help":
        pool = list(COMMAND_NAMES) if len(words) == 1 else list(SUBCOMMANDS.get(words[1], ()))
        return [c for c in pool if c.startswith(partial)] if len(words) <= 2 else []
    if top in SUBCOMMANDS:
        if len(words) == 1:
            return [c for c in SUBCOMMANDS[top] if c.startswith(partial)]
        cls, args = lookup(f"{top} {words[1]}"), words[2:]
    else:
        cls, args = lookup(top), words[1:]
    if cls is None or cls.raw_rest:
        return []
    positional = [w for w in args if "=" not in w]
    used = {w.split("=", 1)[0] for w in args if "=" in w}
    if "=" in partial:
        name, _, val = partial.partition("=")
        head, _, last = val.rpartition(",")
        prefix = f"{name}={head}," if head else f"{name}="
        taken = split_unquoted(head, ",")
        return [prefix + v for v in cls.complete_value(name, ctx) if v.startswith(last) and v not in taken]
    out: list[str] = []
    if not positional:
        out += [c for c in cls.complete_words(ctx) if c.startswith(partial)]
    names = cls.complete_options(positional, ctx)
    out += [f"{o}=" for o in names if o not in used and o.startswith(partial)]
    return out


def apply_completion(text: str, candidates: list[str]) -> str:
    """`text` with its last word completed to the candidates' common prefix (a space after a unique word).

    After a space the word being typed is empty: the text is kept and the prefix appended (it used to be
    replaced, so Tab after `set ` emptied the line).
    """
    if not candidates:
        return text
    cut = len(text) if not text or text[-1].isspace() else len(text) - len(text.split()[-1])
    prefix = candidates[0]
    for c in candidates[1:]:
        while not c.startswith(prefix):
            prefix = prefix[:-1]
    done = len(candidates) == 1 and not prefix.endswith("=")
    return text[:cut] + prefix + (" " if done else "")
