"""Tokenising and value conversion for the command language (shell-like, never eval'd)."""

from __future__ import annotations

import math
import re

from labcon.errors import CommandError

# A plain value of a key=value option: comma lists become tuples.
Value = int | float | bool | str | tuple["Value", ...]

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_BARE = re.compile(r"[A-Za-z0-9_./:@+\-]+", re.ASCII)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def tokenize(text: str) -> list[str]:
    """Split on whitespace, keeping quotes in the raw tokens ("..." with \\ escapes, or '...')."""
    tokens: list[str] = []
    cur: list[str] = []
    i, n = 0, len(text)
    in_token = False
    while i < n:
        ch = text[i]
        if ch.isspace():
            if in_token:
                tokens.append("".join(cur))
                cur, in_token = [], False
            i += 1
            continue
        in_token = True
        if ch in "\"'":
            j = _quote_end(text, i)
            cur.append(text[i : j + 1])
            i = j + 1
            continue
        cur.append(ch)
        i += 1
    if in_token:
        tokens.append("".join(cur))
    return tokens


def _quote_end(text: str, start: int) -> int:
    """Index of the quote closing the one at `start`; CommandError when it is never closed."""
    q = text[start]
    i = start + 1
    while i < len(text):
        if q == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == q:
            return i
        i += 1
    raise CommandError(f"unterminated {q} quote at column {start + 1}; close it or remove it")


def split_unquoted(raw: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split a raw token on `sep` characters that are outside quotes."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch in "\"'":
            j = _quote_end(raw, i)
            cur.append(raw[i : j + 1])
            i = j + 1
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unquote(raw: str) -> tuple[str, bool]:
    """Remove quotes from a raw token; returns (text, whether any part was quoted)."""
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch in "\"'":
            quoted = True
            j = _quote_end(raw, i)
            body = raw[i + 1 : j]
            out.append(re.sub(r"\\(.)", r"\1", body, flags=re.S) if ch == '"' else body)
            i = j + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out), quoted


def scalar(raw: str) -> Value:
    """Convert one raw (unlisted) value: int, float, true/false, else a string (quoted = always string)."""
    text, quoted = unquote(raw)
    if quoted:
        return text
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        f = float(text)
        if not math.isfinite(f):
            raise CommandError(f"number {text} is out of range")
        return f
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text


def value(raw: str) -> Value:
    """Convert a raw option value; an unquoted comma makes a tuple ('a,' is a one-item tuple)."""
    parts = split_unquoted(raw, ",")
    if len(parts) == 1:
        if raw == "":
            raise CommandError("missing value after '='; write key=value")
        return scalar(raw)
    if parts[-1] == "" and len(parts) == 2 and parts[0] != "":
        return (scalar(parts[0]),)
    if any(p == "" for p in parts):
        raise CommandError(f"empty item in list {raw!r}; write items separated by single commas (a,b,c)")
    return tuple(scalar(p) for p in parts)


def is_key(text: str) -> bool:
    """Whether text is a valid option name."""
    return bool(_KEY.fullmatch(text))


def quote(s: str) -> str:
    """Double-quoted form of s that tokenize + unquote turn back into s."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fmt_str(s: str) -> str:
    """A string as a token that converts back to the same string (bare when safe)."""
    if _BARE.fullmatch(s) and not isinstance(scalar(s), (int, float, bool)):
        return s
    return quote(s)


def fmt_path(s: str) -> str:
    """A word that is always read as text (module paths): bare when it has no special characters."""
    return s if _BARE.fullmatch(s) else quote(s)


def fmt_value(v: Value) -> str:
    """Canonical text of a value, re-parseable by `value`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        if any(isinstance(x, tuple) for x in v) or not v:
            raise CommandError("lists cannot be empty or nested")
        items = [fmt_value(x) for x in v]
        return items[0] + "," if len(items) == 1 else ",".join(items)
    return fmt_str(v)


def fmt_opts(opts: tuple[tuple[str, Value], ...]) -> str:
    """Canonical ' key=value' text of options (with a leading space when there are any)."""
    return "".join(f" {k}={fmt_value(v)}" for k, v in opts)
