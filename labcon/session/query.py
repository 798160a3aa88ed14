"""The journal's query language: parse text into a tree, compile the tree into parameterised SQL.

Grammar (AND binds tighter than OR; juxtaposition means AND; keywords are upper case):

    query   := or?
    or      := and ("OR" and)*
    and     := unary ("AND"? unary)*
    unary   := ("NOT" | "-") unary | atom          (-word, -tag:x, -"a phrase": a leading minus excludes)
    atom    := "(" or ")" | WORD | WORD* | "PHRASE" | FIELD:VALUE | FIELD:"VALUE" | NAME OP NUMBER

Free text matches a run when any of its notes, commands, config text or tags contains it.
Comparisons (`lr>1e-3`, `valid_acc>=0.9`) test final metrics and numeric config values.

The node types live in query_ast and the SQL compiler in query_sql; both are re-exported here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from labcon.session.query_ast import (
    EVENT_KINDS,
    FIELDS,
    OPS,
    STATUSES,
    And,
    Compare,
    Field,
    Node,
    Not,
    Or,
    QueryError,
    Text,
)
from labcon.session.query_sql import DOC_SHIFT, DOC_SPAN, DenseFn, compile_node, fts_string

__all__ = [
    "DOC_SHIFT",
    "DOC_SPAN",
    "EVENT_KINDS",
    "FIELDS",
    "MAX_DEPTH",
    "MAX_QUERY",
    "OPS",
    "STATUSES",
    "And",
    "Compare",
    "DenseFn",
    "Field",
    "Node",
    "Not",
    "Or",
    "QueryError",
    "Text",
    "Token",
    "compile_node",
    "compile_query",
    "fts_string",
    "parse_query",
]

MAX_QUERY = 2000
MAX_DEPTH = 64

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_OP_CHARS = "<>=!"
_STOP = ' \t\r\n\f\v()"' + _OP_CHARS
_HELP = 'e.g. mixup AND NOT "label smoothing" status:done tag:baseline lr>1e-3 since:2026-11-01'


@dataclass(frozen=True)
class Token:
    """One lexical token: kind (LP, RP, AND, OR, NOT, ATOM, EOF), 1-based column and width, and its node."""

    kind: str
    col: int
    width: int
    text: str
    node: Node | None = None


def _fail(query: str, col: int, message: str, hint: str = "") -> QueryError:
    shown = "".join(" " if c.isspace() else c for c in query)
    tail = f"\n{hint}" if hint else ""
    return QueryError(f"{message} at column {col}\n  {shown}\n  {' ' * (col - 1)}^{tail}")


class _Lexer:
    def __init__(self, query: str) -> None:
        self.q = query
        self.i = 0

    def error(self, pos: int, message: str, hint: str = "") -> QueryError:
        return _fail(self.q, pos + 1, message, hint)

    def quoted(self) -> str:
        start = self.i
        end = self.q.find('"', start + 1)
        if end < 0:
            raise self.error(start, "unterminated quote", 'close the phrase with a second "')
        self.i = end + 1
        return self.q[start + 1 : end]

    def word(self) -> str:
        start = self.i
        while self.i < len(self.q) and self.q[self.i] not in _STOP:
            self.i += 1
        return self.q[start : self.i]

    def skip_space(self) -> None:
        while self.i < len(self.q) and self.q[self.i].isspace():
            self.i += 1

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        q = self.q
        while True:
            self.skip_space()
            if self.i >= len(q):
                out.append(Token("EOF", len(q) + 1, 1, "end of query"))
                return out
            start, c = self.i, q[self.i]
            if c in "()":
                self.i += 1
                out.append(Token("LP" if c == "(" else "RP", start + 1, 1, c))
            elif c == '"':
                text = self.quoted()
                out.append(
                    Token("ATOM", start + 1, self.i - start, q[start : self.i], self.text(text, start))
                )
            elif c == "-" and start + 1 < len(q) and q[start + 1] not in " \t\r\n\f\v)-":
                # -word excludes, as in web search: the same as NOT word (it used to be dropped silently).
                self.i += 1
                out.append(Token("NOT", start + 1, 1, "-"))
            elif c in _OP_CHARS:
                raise self.error(
                    start, f"unexpected {c!r}", "comparisons look like lr>1e-3 or valid_acc>=0.9"
                )
            else:
                out.append(self.atom(start))

    def atom(self, start: int) -> Token:
        word = self.word()
        if ":" in word:
            return self.field(start, word)
        after_word = self.i
        self.skip_space()
        if self.i < len(self.q) and self.q[self.i] in _OP_CHARS and _IDENT.fullmatch(word):
            return self.compare(start, word)
        self.i = after_word
        if word in ("AND", "OR", "NOT"):
            return Token(word, start + 1, len(word), word)
        prefix = len(word) > 1 and word.endswith("*")
        node = self.text(word[:-1] if prefix else word, start, prefix=prefix)
        return Token("ATOM", start + 1, len(word), word, node)

    def text(self, text: str, start: int, prefix: bool = False) -> Text:
        phrase = self.q[start] == '"'
        if not any(ch.isalnum() for ch in text):
            what = (
                "empty phrase"
                if phrase and not text.strip()
                else f"search term {text!r} has no letters or digits"
            )
            raise self.error(start, what, _HELP)
        if not phrase and text.startswith("-"):
            # '--x' would search for x (the tokenizer drops the minus signs): say what exclusion looks like.
            raise self.error(
                start, f"search term {text!r} starts with '-'", "exclude a term with -word or NOT word"
            )
        return Text(text, phrase=phrase, prefix=prefix)

    def field(self, start: int, word: str) -> Token:
        name, _, value = word.partition(":")
        key = name.lower()
        if key not in FIELDS:
            raise self.error(
                start, f"unknown field {name!r}", "fields: " + ", ".join(f"{f}:" for f in FIELDS)
            )
        vstart = start + len(name) + 1
        if not value and self.i < len(self.q) and self.q[self.i] == '"' and self.i == vstart:
            value = self.quoted()
        if not value.strip():
            raise self.error(vstart, f"missing value after '{name}:'", _HELP)
        node = Field(key, self.field_value(key, value, vstart))
        return Token("ATOM", start + 1, self.i - start, self.q[start : self.i], node)

    def field_value(self, key: str, value: str, pos: int) -> str | int | float:
        if key == "status":
            if value.lower() not in STATUSES:
                raise self.error(pos, f"unknown status {value!r}", "statuses: " + ", ".join(STATUSES))
            return value.lower()
        if key == "has":
            if value.lower() not in EVENT_KINDS:
                raise self.error(pos, f"unknown event kind {value!r}", "kinds: " + ", ".join(EVENT_KINDS))
            return value.lower()
        if key in ("run", "parent", "previous"):
            if not value.isdigit() or not value.isascii() or len(value) > 18:
                raise self.error(pos, f"expected a run id after '{key}:', got {value!r}", "e.g. run:12")
            return int(value)
        if key in ("since", "until"):
            return self.date(key, value, pos)
        return value

    def date(self, key: str, value: str, pos: int) -> float:
        try:
            when = dt.datetime.fromisoformat(value)
            if when.tzinfo is None:
                when = when.astimezone()  # a bare date/time means the user's local time
            if key == "until" and len(value) <= 10:
                when += dt.timedelta(days=1)  # until:DAY includes that whole day
            return when.timestamp()
        except (ValueError, OverflowError, OSError):
            hint = "e.g. since:2026-11-01 or until:2026-11-01T18:00"
            raise self.error(pos, f"expected a date after '{key}:', got {value!r}", hint) from None

    def compare(self, start: int, name: str) -> Token:
        op_start = self.i
        while self.i < len(self.q) and self.q[self.i] in _OP_CHARS:
            self.i += 1
        op = self.q[op_start : self.i]
        if op not in OPS:
            raise self.error(op_start, f"unknown operator {op!r}", "use one of > >= < <= = !=")
        self.skip_space()
        vstart = self.i
        raw = self.word()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not raw or math.isnan(value):
            got = f", got {raw!r}" if raw else ""
            raise self.error(vstart, f"expected a number after '{name}{op}'{got}", "e.g. lr>1e-3")
        node = Compare(name, OPS[op], value)
        return Token("ATOM", start + 1, self.i - start, self.q[start : self.i], node)


class _Parser:
    def __init__(self, query: str, tokens: list[Token]) -> None:
        self.q = query
        self.toks = tokens
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.pos]

    def error(self, tok: Token, message: str, hint: str = "") -> QueryError:
        return _fail(self.q, tok.col, message, hint)

    def unexpected(self, tok: Token, after: Token | None = None) -> QueryError:
        if tok.kind == "EOF":
            what = f"query ends after {after.text!r}" if after else "query ends too early"
            return self.error(tok, what, "add a search term or filter")
        if tok.kind == "RP":
            return self.error(tok, "unexpected ')'", "remove it or add the matching '('")
        return self.error(tok, f"unexpected {tok.text!r}", _HELP)

    def parse(self) -> Node | None:
        if self.tok.kind == "EOF":
            return None
        node = self.or_()
        if self.tok.kind != "EOF":
            raise self.unexpected(self.tok)
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.tok.kind == "OR":
            op = self.tok
            self.pos += 1
            items.append(self.and_(op))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self, after: Token | None = None) -> Node:
        items = [self.unary(after)]
        while self.tok.kind in ("AND", "NOT", "ATOM", "LP"):
            op = None
            if self.tok.kind == "AND":
                op = self.tok
                self.pos += 1
            items.append(self.unary(op))
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, after: Token | None = None) -> Node:
        tok = self.tok
        if tok.kind == "NOT":
            self.pos += 1
            self.enter(tok)
            item = self.unary(tok)
            self.depth -= 1
            return Not(item)
        if tok.kind == "ATOM":
            self.pos += 1
            assert tok.node is not None
            return tok.node
        if tok.kind == "LP":
            self.pos += 1
            self.enter(tok)
            if self.tok.kind == "RP":
                raise self.error(self.tok, "empty parentheses", "put a search term or filter inside ( )")
            node = self.or_()
            if self.tok.kind != "RP":
                if self.tok.kind == "EOF":
                    raise self.error(tok, "unclosed '('", "add the missing ')'")
                raise self.unexpected(self.tok)
            self.pos += 1
            self.depth -= 1
            return node
        raise self.unexpected(tok, after)

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(tok, f"query nests deeper than {MAX_DEPTH} levels")


def parse_query(query: str) -> Node | None:
    """Parse a journal query into a tree (None for an empty query, which matches every run)."""
    if len(query) > MAX_QUERY:
        raise QueryError(f"query is {len(query)} characters long; the limit is {MAX_QUERY}")
    if "\x00" in query:
        raise _fail(query.replace("\x00", " "), query.index("\x00") + 1, "NUL character in query")
    tokens = _Lexer(query).tokens()
    return _Parser(query, tokens).parse()


def compile_query(query: str, alias: str = "r", dense: DenseFn | None = None) -> tuple[str, list[object]]:
    """Parse `query` and return (SQL condition on runs alias `alias`, parameters); '1' for an empty query."""
    node = parse_query(query)
    params: list[object] = []
    if node is None:
        return "1", params
    return compile_node(node, params, alias, dense), params
