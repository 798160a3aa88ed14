"""The journal query language's vocabulary and parse tree: field names, statuses, operators and nodes."""

from __future__ import annotations

from dataclasses import dataclass

from labcon.errors import LabconError

STATUSES = ("running", "done", "stopped", "failed", "crashed")
EVENT_KINDS = ("command", "note", "error", "cancel", "info")
FIELDS = ("status", "tag", "session", "run", "parent", "previous", "since", "until", "has")
OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "=", "==": "=", "!=": "!="}


class QueryError(LabconError):
    """A journal query is malformed; the message shows the query with a caret under the bad token."""


@dataclass(frozen=True)
class Text:
    """A free-text word (prefix=True for `word*`) or a "quoted phrase"."""

    text: str
    phrase: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class Field:
    """A field filter such as `status:done` or `since:2026-11-01` (value already validated)."""

    name: str
    value: str | int | float


@dataclass(frozen=True)
class Compare:
    """A numeric comparison on a final metric or a config value, e.g. `lr>1e-3`."""

    name: str
    op: str
    value: float


@dataclass(frozen=True)
class Not:
    """Negation of a sub-query."""

    item: Node


@dataclass(frozen=True)
class And:
    """All sub-queries match."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Any sub-query matches."""

    items: tuple[Node, ...]


Node = Text | Field | Compare | Not | And | Or
