"""A callback's options checked against its constructor before it is built: names, and values by type hint."""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from labcon.errors import CommandError
from labcon.fmt import did_you_mean


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` (from a command line or a TOML file) is acceptable for the type hint `hint`."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is os.PathLike or origin is os.PathLike:
        return isinstance(value, (str, os.PathLike))
    if hint in (list, tuple) or origin in (list, tuple, Sequence):
        return isinstance(value, (list, tuple))
    return True  # a hint this check does not model (a callable, a class): the constructor judges


def _describe(hint: Any) -> str:
    """A type hint in words: 'a whole number', 'a number or none' ..."""
    words = {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        os.PathLike: "a path",
    }
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        parts = [_describe(h) for h in typing.get_args(hint) if h is not type(None)]
        return " or ".join(parts) + (" (or left out)" if type(None) in typing.get_args(hint) else "")
    return words.get(
        hint,
        "a list"
        if typing.get_origin(hint) in (list, tuple, Sequence)
        else getattr(hint, "__name__", str(hint)),
    )


def check_options(label: str, cls: type | Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Refuse unknown option names and values of the wrong type for `cls`'s constructor (CommandError)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    options = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for name in kwargs:
        if name not in options and not takes_any:
            raise CommandError(
                f"callback '{label}' has no option '{name}'{did_you_mean(name, options) or ';'} "
                f"options: {', '.join(options) or 'none'}"
            )
    try:
        hints = typing.get_type_hints(cls.__init__ if isinstance(cls, type) else cls)
    except Exception:  # noqa: BLE001 - a user's class may have hints that cannot be resolved: names only
        return
    for name, value in kwargs.items():
        hint = hints.get(name)
        if hint is not None and not _fits(value, hint):
            raise CommandError(f"callback '{label}': {name} must be {_describe(hint)}, got {value!r}")
