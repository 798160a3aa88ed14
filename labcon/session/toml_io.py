"""TOML text machinery for session configs: the key-path -> line locator and a small TOML writer."""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from typing import Any

KeyPath = tuple[str | int, ...]


def _split_path(key_path: str) -> KeyPath:
    parts: list[str | int] = []
    for tok in re.findall(r"\[(\d+)\]|([^.\[\]]+)", key_path):
        parts.append(int(tok[0]) if tok[0] else (int(tok[1]) if tok[1].isdigit() else tok[1]))
    return tuple(parts)


def _line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


class _Locator:
    """Maps key paths to the line they are defined on, by scanning (already valid) TOML text."""

    def __init__(self, text: str):
        self.s, self.i, self.line = text, 0, 1
        self.lines: dict[KeyPath, int] = {}
        self.aot: dict[KeyPath, int] = {}  # array-of-tables path -> index of its current element

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while self._skip(newlines=True) < len(self.s):
            if self.s[self.i] == "[":
                table = self._header()
            else:
                self._keyval(table)
        return self.lines

    def _skip(self, newlines: bool) -> int:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
            elif c in " \t\r" or (newlines and c == "\n"):
                self.line += c == "\n"
                self.i += 1
            else:
                break
        return self.i

    def _header(self) -> KeyPath:
        aot = self.s.startswith("[[", self.i)
        line = self.line
        self.i += 2 if aot else 1
        keys = self._key()
        self.i += 2 if aot else 1
        resolved: list[str | int] = []
        for n, k in enumerate(keys):
            resolved.append(k)
            if tuple(resolved) in self.aot and not (aot and n == len(keys) - 1):
                resolved.append(self.aot[tuple(resolved)])
        path = tuple(resolved)
        if aot:
            self.lines.setdefault(path, line)
            self.aot[path] = self.aot.get(path, -1) + 1
            path = (*path, self.aot[path])
        self.lines.setdefault(path, line)
        return path

    def _key(self) -> list[str]:
        keys = []
        while True:
            self._skip(newlines=False)
            c = self.s[self.i]
            if c in "\"'":
                start = self.i
                self._string()
                keys.append(tomllib.loads("k = " + self.s[start : self.i])["k"])
            else:
                m = re.compile(r"[A-Za-z0-9_-]+").match(self.s, self.i)
                if not m:
                    raise ValueError(f"bad key at line {self.line}")
                keys.append(m.group())
                self.i = m.end()
            self._skip(newlines=False)
            if self.s[self.i] != ".":
                return keys
            self.i += 1

    def _keyval(self, table: KeyPath) -> None:
        line = self.line
        keys = self._key()
        self.i += 1  # '='
        self._skip(newlines=False)
        for n in range(1, len(keys) + 1):
            self.lines.setdefault((*table, *keys[:n]), line)
        self._value((*table, *keys))

    def _value(self, path: KeyPath) -> None:
        s, c = self.s, self.s[self.i]
        if c in "\"'":
            self._string()
        elif c in "[{":
            close, n = ("]" if c == "[" else "}"), 0
            self.i += 1
            while self._skip(newlines=True) < len(s) and s[self.i] != close:
                if s[self.i] == ",":
                    self.i += 1
                elif c == "[":
                    self.lines.setdefault((*path, n), self.line)
                    self._value((*path, n))
                    n += 1
                else:
                    self._keyval(path)
            self.i += 1
        else:
            while self.i < len(s) and s[self.i] not in ",]}\n#":
                self.i += 1

    def _string(self) -> None:
        s, q = self.s, self.s[self.i]
        triple = s.startswith(q * 3, self.i)
        self.i += 3 if triple else 1
        while not s.startswith(q * (3 if triple else 1), self.i):
            if s[self.i] == "\\" and q == '"':
                self.i += 1
            self.line += s[self.i] == "\n"
            self.i += 1
        self.i += 3 if triple else 1
        while triple and self.i < len(s) and s[self.i] == q:
            self.i += 1  # up to two quotes may close a multi-line string right after the content


def dump_toml(d: dict[str, Any]) -> str:
    """Write a nested dict (TOML's value types) as TOML text; tables become [headers]."""
    out: list[str] = []
    _emit(out, (), d, "")
    return "\n".join(out).lstrip("\n") + "\n"


def _emit(out: list[str], path: tuple[str, ...], d: dict[str, Any], header: str) -> None:
    if header:
        out += ["", header]
    nested = []
    for k, v in d.items():
        if v is None:
            continue  # TOML has no null: absent means default
        if isinstance(v, dict) or (isinstance(v, list | tuple) and v and all(isinstance(x, dict) for x in v)):
            nested.append((k, v))
        else:
            out.append(f"{_dump_key(k)} = {dump_value(v)}")
    for k, v in nested:
        name = ".".join(_dump_key(x) for x in (*path, k))
        if isinstance(v, dict):
            _emit(out, (*path, k), v, f"[{name}]")
        else:
            for item in v:
                _emit(out, (*path, k), item, f"[[{name}]]")


def _dump_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _dump_str(k)


def _dump_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dump_value(v: Any) -> str:
    """One TOML value (string, number, bool, date/time, array, inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _dump_str(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(dump_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{_dump_key(k)} = {dump_value(x)}" for k, x in v.items() if x is not None) + "}"
        )
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")
