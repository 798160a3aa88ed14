"""Built-in text corpus that needs no download: the docstrings of Python's own standard library.

`ensure_pydoc()` parses the top-level stdlib modules of the running Python once (with `ast`, nothing is
imported) and writes data/pydoc/texts.csv with columns label (module | class | function: whose
docstring it is), text and is_valid (every fifth docstring). A language model learns from all of it;
a classifier learns to tell a class's docstring from a function's or a module's.
"""

from __future__ import annotations

import ast
import csv
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from labcon.data.datasets import data_root
from labcon.errors import DataError

PYDOC_VERSION = "1"
_MARKER = ".labcon-builtin"
_MIN_WORDS = 8
_KINDS = {
    ast.Module: "module",
    ast.ClassDef: "class",
    ast.FunctionDef: "function",
    ast.AsyncFunctionDef: "function",
}


def stdlib_docstrings(root: Path | None = None) -> list[tuple[str, str]]:
    """(kind, docstring) for every docstring of 8+ words in the top-level stdlib modules, in file order."""
    lib = Path(root or sysconfig.get_paths()["stdlib"])
    out: list[tuple[str, str]] = []
    for f in sorted(lib.glob("*.py")):
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # a file this Python cannot parse is not part of the corpus
        for node in ast.walk(tree):
            kind = _KINDS.get(type(node))
            doc = ast.get_docstring(node) if kind else None
            if doc and len(doc.split()) >= _MIN_WORDS:
                out.append((kind, doc))  # type: ignore[arg-type]
    return out


def ensure_pydoc(root: str | Path | None = None) -> Path:
    """The folder of the built-in corpus (data/pydoc), written on first use (a few seconds)."""
    dest = data_root(root) / "pydoc"
    tag = f"version {PYDOC_VERSION}, python {sys.version_info.major}.{sys.version_info.minor}"
    if dest.is_dir():
        marker = dest / _MARKER
        if not marker.is_file():
            raise DataError(
                f"{dest} exists but was not made by labcon — move it away, or set LABCON_DATA elsewhere"
            )
        if tag in marker.read_text():
            return dest
    docs = stdlib_docstrings()
    if not docs:
        raise DataError("found no docstrings in this Python's standard library; give a data path instead")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pydoc-", dir=dest.parent))
    try:
        with (tmp / "texts.csv").open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["label", "text", "is_valid"])
            for i, (kind, doc) in enumerate(docs):
                w.writerow([kind, doc, i % 5 == 4])
        (tmp / _MARKER).write_text(f"labcon built-in corpus pydoc, {tag}\n")
        if dest.is_dir():
            shutil.rmtree(dest)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / _MARKER).is_file():  # another process may have written it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
