"""Item getters, splitters and labellers: the first three steps of a DataBlock.

Each splitter and labeller has `check(path, items) -> list[str]` returning problems in plain words
(empty when fine), so a DataBlock can name the wrong part before anything is decoded.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from labcon.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
)


def get_files(
    path: str | Path,
    extensions: Iterable[str] | None = IMAGE_EXTENSIONS,
    recurse: bool = True,
    folders: Sequence[str] | None = None,
) -> list[Path]:
    """Files under `path` (sorted, hidden ones skipped) whose suffix is in `extensions` (None: all)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"folder {root} does not exist — check the data path")
    exts = (
        None
        if extensions is None
        else {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    )
    out: list[Path] = []
    starts = [root / f for f in folders] if folders else [root]
    stack = [s for s in starts if s.is_dir()]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=True):
                    if recurse:
                        stack.append(Path(e.path))
                elif exts is None or os.path.splitext(e.name)[1].lower() in exts:
                    out.append(Path(e.path))
    out.sort()
    return out


class FileGetter:
    """Callable item getter: `get_files(path, extensions)`; the DataBlock default for images."""

    def __init__(
        self, extensions: Iterable[str] | None = IMAGE_EXTENSIONS, folders: Sequence[str] | None = None
    ):
        self.extensions = tuple(extensions) if extensions is not None else None
        self.folders = folders

    def __call__(self, path: Path) -> list[Path]:
        return get_files(path, self.extensions, folders=self.folders)

    def __repr__(self) -> str:
        return f"FileGetter(extensions={len(self.extensions or ())} kinds)"


def _subdirs(path: Path) -> list[str]:
    return (
        sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
        if path.is_dir()
        else []
    )


class Splitter:
    """Base: `split(items, path) -> (train_idx, valid_idx)`."""

    name = "splitter"

    def check(self, path: Path, items: Sequence[Path]) -> list[str]:
        """Problems with this splitter for this folder (none by default)."""
        return []

    def __call__(self, items: Sequence[Path], path: Path) -> tuple[list[int], list[int]]:
        raise NotImplementedError


class GrandparentSplitter(Splitter):
    """Split by the folder two levels up: path/train/<class>/x.png vs path/valid/<class>/x.png."""

    name = "grandparent"

    def __init__(self, train: str = "train", valid: str = "valid"):
        self.train, self.valid = train, valid

    def check(self, path: Path, items: Sequence[Path]) -> list[str]:
        present = _subdirs(path)
        return [p for role in ("train", "valid") if (p := self.role_problem(role, path, present))]

    def role_problem(self, role: str, path: Path, present: list[str] | None = None) -> str | None:
        """Why the `role` ('train' or 'valid') folder is missing, with a guess at the right name."""
        present = _subdirs(path) if present is None else present
        want = getattr(self, role)
        if want in present:
            return None
        others = [p for p in present if p not in (self.train, self.valid)]
        looks = (
            ("val", "valid", "validation", "test", "testing", "dev")
            if role == "valid"
            else ("train", "training")
        )
        guess = [p for p in others if p.lower() in looks] or others
        hint = f" — set {role}='{guess[0]}'" if guess else ""
        return (
            f"splitter 'grandparent' found no '{want}' folder under {path}; "
            f"folders present: {', '.join(present) or '(none)'}{hint}"
        )

    def __call__(self, items: Sequence[Path], path: Path) -> tuple[list[int], list[int]]:
        tr, va = [], []
        for i, p in enumerate(items):
            g = p.parent.parent.name
            if g == self.train:
                tr.append(i)
            elif g == self.valid:
                va.append(i)
        return tr, va

    def __repr__(self) -> str:
        return f"GrandparentSplitter(train={self.train!r}, valid={self.valid!r})"


class RandomSplitter(Splitter):
    """A seeded random split: `valid_pct` of the items go to validation."""

    name = "random"

    def __init__(self, valid_pct: float = 0.2, seed: int = 0):
        if not 0 < valid_pct < 1:
            raise DataError(f"RandomSplitter valid_pct must be between 0 and 1, got {valid_pct}")
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: Sequence[Path], path: Path) -> tuple[list[int], list[int]]:
        idx = list(range(len(items)))
        random.Random(self.seed).shuffle(idx)
        cut = int(round(self.valid_pct * len(idx)))
        return sorted(idx[cut:]), sorted(idx[:cut])

    def __repr__(self) -> str:
        return f"RandomSplitter(valid_pct={self.valid_pct}, seed={self.seed})"


class FuncSplitter(Splitter):
    """Items for which `func(path) -> bool` is true go to validation."""

    name = "function"

    def __init__(self, func: Callable[[Path], bool]):
        self.func = func

    def __call__(self, items: Sequence[Path], path: Path) -> tuple[list[int], list[int]]:
        tr, va = [], []
        for i, p in enumerate(items):
            (va if self.func(p) else tr).append(i)
        return tr, va

    def __repr__(self) -> str:
        return f"FuncSplitter({getattr(self.func, '__name__', self.func)!r})"


def _read_csv(file: Path, name_col: str, col: str) -> dict[str, str]:
    if not file.is_file():
        raise DataError(f"CSV file {file} does not exist — check the 'file' setting")
    with open(file, newline="", encoding="utf-8") as f:
        rd = csv.DictReader(f)
        fields = rd.fieldnames or []
        for c in (name_col, col):
            if c not in fields:
                raise DataError(f"CSV {file} has no column '{c}'; columns: {', '.join(fields)}")
        return {row[name_col].replace("\\", "/"): row[col] for row in rd}


class _CsvPart:
    """Shared lookup of a CSV column keyed by the item's path relative to the data folder."""

    def __init__(self, file: str | Path, col: str, name_col: str = "name"):
        self.file, self.col, self.name_col = Path(file), col, name_col
        self._table: dict[str, str] | None = None
        self._base: Path | None = None

    def _lookup(self, p: Path, base: Path) -> str | None:
        if self._table is None or self._base != base:
            f = self.file if self.file.is_absolute() else base / self.file
            self._table, self._base = _read_csv(f, self.name_col, self.col), base
        try:
            key = p.relative_to(base).as_posix()
        except ValueError:
            key = p.as_posix()
        return self._table.get(key, self._table.get(p.name))

    def _csv_check(self, path: Path, items: Sequence[Path]) -> list[str]:
        try:
            missing = [p for p in items if self._lookup(p, path) is None]
        except DataError as e:
            return [str(e)]
        if missing and len(missing) == len(items):
            return [f"no item is listed in column '{self.name_col}' of {self.file}; first item: {missing[0]}"]
        return []


class ColSplitter(Splitter, _CsvPart):
    """Split by a CSV column (true/1/valid -> validation); items not in the CSV are dropped."""

    name = "csv"

    def __init__(self, file: str | Path, col: str = "is_valid", name_col: str = "name"):
        _CsvPart.__init__(self, file, col, name_col)

    def check(self, path: Path, items: Sequence[Path]) -> list[str]:
        return self._csv_check(path, items)

    def __call__(self, items: Sequence[Path], path: Path) -> tuple[list[int], list[int]]:
        tr, va = [], []
        for i, p in enumerate(items):
            v = self._lookup(p, path)
            if v is None:
                continue
            (va if v.strip().lower() in ("1", "true", "yes", "valid") else tr).append(i)
        return tr, va

    def __repr__(self) -> str:
        return f"ColSplitter({str(self.file)!r}, col={self.col!r})"


class Labeller:
    """Base: `label(item, path) -> str`."""

    name = "labeller"

    def check(self, path: Path, items: Sequence[Path]) -> list[str]:
        """Problems with this labeller for these items (none by default)."""
        return []

    def __call__(self, item: Path, path: Path) -> str:
        raise NotImplementedError


class ParentLabeller(Labeller):
    """The label is the name of the item's parent folder."""

    name = "parent"

    def __call__(self, item: Path, path: Path) -> str:
        return item.parent.name

    def __repr__(self) -> str:
        return "ParentLabeller()"


class RegexLabeller(Labeller):
    """The label is the first group of `pattern` searched in the file name (or full path)."""

    name = "regex"

    def __init__(self, pattern: str, match_path: bool = False):
        try:
            self.regex = re.compile(pattern)
        except re.error as e:
            raise DataError(f"labeller regex {pattern!r} is not a valid regular expression: {e}") from None
        if self.regex.groups < 1:
            raise DataError(f"labeller regex {pattern!r} needs a group, e.g. r'^(.+)_\\d+\\.png$'")
        self.pattern, self.match_path = pattern, match_path

    def _target(self, item: Path) -> str:
        return item.as_posix() if self.match_path else item.name

    def check(self, path: Path, items: Sequence[Path]) -> list[str]:
        for p in items[:50]:
            if not self.regex.search(self._target(p)):
                return [f"labeller regex {self.pattern!r} does not match {self._target(p)!r}"]
        return []

    def __call__(self, item: Path, path: Path) -> str:
        m = self.regex.search(self._target(item))
        if not m:
            raise DataError(f"labeller regex {self.pattern!r} does not match {self._target(item)!r}")
        return m.group(1)

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pattern!r})"


class ColLabeller(Labeller, _CsvPart):
    """The label comes from a CSV column, keyed by the item's path relative to the data folder."""

    name = "csv"

    def __init__(
        self, file: str | Path, col: str = "label", name_col: str = "name", delim: str | None = None
    ):
        _CsvPart.__init__(self, file, col, name_col)
        if delim is not None and (not isinstance(delim, str) or not delim):
            raise DataError(f"labeller delim must be a non-empty string (e.g. ' '), got {delim!r}")
        # With a delimiter each row holds several labels: the block then makes multi-hot targets.
        self.delim = delim

    def check(self, path: Path, items: Sequence[Path]) -> list[str]:
        return self._csv_check(path, items)

    def __call__(self, item: Path, path: Path) -> str:
        v = self._lookup(item, path)
        if v is None:
            raise DataError(f"{item} is not listed in {self.file} (column '{self.name_col}')")
        return v

    def __repr__(self) -> str:
        d = "" if self.delim is None else f", delim={self.delim!r}"
        return f"ColLabeller({str(self.file)!r}, col={self.col!r}{d})"


parent_label = ParentLabeller()
