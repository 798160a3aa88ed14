"""Where texts come from: a CSV column, a folder of .txt files, or one large .txt file (language models).

Every reader returns `TextItem`s that remember where each text came from (file and row), so every
later error can name it. Bad input is refused with the row, column or file and the fix.
"""

from __future__ import annotations

import csv
import io
import random
import re
from dataclasses import dataclass
from pathlib import Path

from labcon.errors import DataError

_TRUE, _FALSE = {"true", "1", "yes", "valid"}, {"false", "0", "no", "train", ""}


@dataclass(frozen=True)
class TextItem:
    """One text, its label (or None), whether it is in the validation set, and where it came from."""

    text: str
    label: str | None
    is_valid: bool | None
    where: str


def read_utf8(path: Path) -> str:
    """A file's text; non-UTF-8 bytes are an error naming the file, line and byte offset."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} (byte {e.start}) is not valid UTF-8 ({raw[e.start : e.start + 1]!r}); "
            "re-save the file as UTF-8"
        ) from None


def _flag(value: str, where: str, col: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise DataError(
        f"{where}: column {col!r} holds {value!r}; use True/False (or 1/0) to mark validation rows"
    )


class CsvSource:
    """Texts from `text_col` of a CSV file; labels from `label_col`, the split from `valid_col` (optional)."""

    def __init__(
        self,
        file: str | Path,
        text_col: str = "text",
        label_col: str | None = None,
        valid_col: str | None = None,
    ):
        self.file, self.text_col, self.label_col, self.valid_col = Path(file), text_col, label_col, valid_col

    def __call__(self) -> list[TextItem]:
        if not self.file.is_file():
            raise DataError(f"CSV file {self.file} does not exist — check data.path")
        reader = csv.DictReader(io.StringIO(read_utf8(self.file), newline=""))
        cols = reader.fieldnames or []
        for role, col in (("text", self.text_col), ("label", self.label_col), ("valid", self.valid_col)):
            if col is not None and col not in cols:
                raise DataError(
                    f"{self.file} has no column {col!r} (the {role} column); columns: {', '.join(cols) or '(none)'}"
                )
        items = []
        for row in reader:
            where = f"{self.file.name} row {reader.line_num}"
            text = row.get(self.text_col)
            if text is None or not text.strip():
                raise DataError(
                    f"{where}: column {self.text_col!r} is empty; remove the row or fill in its text"
                )
            label = None
            if self.label_col is not None:
                label = (row.get(self.label_col) or "").strip()
                if not label:
                    raise DataError(
                        f"{where}: label column {self.label_col!r} is empty; give every row a label"
                    )
            valid = _flag(row.get(self.valid_col) or "", where, self.valid_col) if self.valid_col else None
            items.append(TextItem(text, label, valid, where))
        if not items:
            raise DataError(f"{self.file} has a header but no rows")
        return items

    def __repr__(self) -> str:
        return f"CsvSource({self.file.name}, text_col={self.text_col!r}, label_col={self.label_col!r})"


class FolderSource:
    """Every .txt file under a folder; label = parent folder; split by top folders train/valid when present."""

    def __init__(self, path: str | Path, train: str = "train", valid: str = "valid", labels: bool = True):
        self.path, self.train, self.valid, self.labels = Path(path), train, valid, labels

    def __call__(self) -> list[TextItem]:
        if not self.path.is_dir():
            raise DataError(f"folder {self.path} does not exist — check data.path")
        files = sorted(
            p
            for p in self.path.rglob("*.txt")
            if not any(s.startswith(".") for s in p.relative_to(self.path).parts)
        )
        if not files:
            raise DataError(f"no .txt files under {self.path}")
        split = (self.path / self.train).is_dir() and (self.path / self.valid).is_dir()
        items = []
        for f in files:
            rel = f.relative_to(self.path)
            text = read_utf8(f)
            if not text.strip():
                raise DataError(f"file {f} is empty; remove it or give it text")
            valid = None
            if split and rel.parts[0] in (self.train, self.valid):
                valid = rel.parts[0] == self.valid
            label = f.parent.name if self.labels else None
            if self.labels and (f.parent == self.path or (split and len(rel.parts) < 3)):
                raise DataError(f"file {f} is not inside a class folder; put texts in <split>/<class>/*.txt")
            items.append(TextItem(text, label, valid, f"file {rel}"))
        return items

    def __repr__(self) -> str:
        return f"FolderSource({self.path.name})"


class FileSource:
    """One large .txt file for a language model: documents are paragraphs (split at blank lines)."""

    def __init__(self, file: str | Path):
        self.file = Path(file)

    def __call__(self) -> list[TextItem]:
        if not self.file.is_file():
            raise DataError(f"text file {self.file} does not exist — check data.path")
        text = read_utf8(self.file)
        items, line = [], 1
        for part in re.split(r"(\n\s*\n)", text):
            if part.strip() and not re.fullmatch(r"\n\s*\n", part):
                items.append(TextItem(part, None, None, f"{self.file.name} line {line}"))
            line += part.count("\n")
        if not items:
            raise DataError(f"text file {self.file} is empty")
        return items

    def __repr__(self) -> str:
        return f"FileSource({self.file.name})"


def split_flags(items: list[TextItem], valid_pct: float, seed: int) -> list[bool]:
    """Validation flags: the source's own where it has them, else a seeded random `valid_pct`."""
    if all(it.is_valid is not None for it in items):
        return [bool(it.is_valid) for it in items]
    if any(it.is_valid is not None for it in items):
        raise DataError("only some texts say whether they are validation texts; mark all of them or none")
    rng = random.Random(seed)
    idx = list(range(len(items)))
    rng.shuffle(idx)
    n_valid = max(1, round(len(items) * valid_pct))
    chosen = set(idx[:n_valid])
    return [i in chosen for i in range(len(items))]
