"""The `[data]` table of a text session -> TextBlock. Errors start with the dotted key path.

[data]
kind = "text_lm"            # or "text_cls"
preset = "pydoc"            # pydoc (built in: Python's own docstrings) | imdb_sample (path = its folder)
path = "data/texts.csv"     # a .csv file, a folder holding texts.csv, a folder of .txt files, or one .txt file
text_col = "text"           # CSV columns (label_col only for text_cls; valid_col optional)
label_col = "label"
valid_col = "is_valid"
valid_pct = 0.2             # when the source does not mark validation texts
lang = "en"                 # spaCy blank language
max_vocab = 60000
min_freq = 2
bs = 64
bptt = 70                   # language models: mean window length
max_len = 4096              # classifiers: longest text (tokens) one batch row may hold
num_workers = 2             # tokeniser processes
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labcon.data.text_block import KINDS, TextBlock
from labcon.data.text_sources import CsvSource, FileSource, FolderSource
from labcon.errors import ConfigError

TEXT_KEYS = (
    "kind",
    "preset",
    "path",
    "text_col",
    "label_col",
    "valid_col",
    "valid_pct",
    "lang",
    "max_vocab",
    "min_freq",
    "bs",
    "bptt",
    "max_len",
    "num_workers",
)
TEXT_PRESETS = ("pydoc", "imdb_sample")
_INTS = {"max_vocab": 8, "min_freq": 1, "bs": 1, "bptt": 2, "max_len": 1, "num_workers": 0}
_STRS = ("text_col", "label_col", "valid_col", "lang")


def _err(key: str, msg: str) -> ConfigError:
    return ConfigError(f"{key}: {msg}")


def text_block_from_config(
    table: dict[str, Any],
    base_dir: Path,
    seed: int = 0,
    cache_dir: Path | None = None,
    vocab_file: Path | None = None,
) -> TextBlock:
    """Build a TextBlock from a `[data]` table with kind = text_lm | text_cls."""
    from labcon.data.datasets import data_root

    for k in table:
        if k not in TEXT_KEYS:
            raise _err(f"data.{k}", f"unknown key for text data; known keys: {', '.join(TEXT_KEYS)}")
    kind = table["kind"]
    if kind not in KINDS:
        raise _err("data.kind", f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    kw: dict[str, Any] = {}
    for k, lo in _INTS.items():
        v = table.get(k)
        if v is not None:
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise _err(f"data.{k}", f"must be a whole number >= {lo}, got {v!r}")
            kw[k] = v
    for k in _STRS:
        v = table.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            raise _err(f"data.{k}", f"must be a non-empty string, got {v!r}")
    vp = table.get("valid_pct", 0.2)
    if isinstance(vp, bool) or not isinstance(vp, int | float) or not 0 < vp < 1:
        raise _err("data.valid_pct", f"must be a number between 0 and 1, got {vp!r}")
    preset, path = table.get("preset"), table.get("path")
    if path is not None and not isinstance(path, str):
        raise _err("data.path", f"must be a string, got {path!r}")
    full = None if path is None else (Path(path) if Path(path).is_absolute() else Path(base_dir) / path)
    cols = {"text_col": "text", "label_col": "label" if kind == "text_cls" else None, "valid_col": None}
    if preset is not None:
        if preset not in TEXT_PRESETS:
            raise _err("data.preset", f"unknown text preset {preset!r}; presets: {', '.join(TEXT_PRESETS)}")
        if preset == "pydoc" and full is None:
            from labcon.data.text_datasets import ensure_pydoc

            full = ensure_pydoc()
        elif full is None:
            full = data_root() / preset
        cols = {
            "text_col": "text",
            "label_col": "label" if kind == "text_cls" else None,
            "valid_col": "is_valid",
        }
    if full is None:
        raise _err("data.path", 'missing: set path = "<texts.csv | folder | corpus.txt>" or preset = "pydoc"')
    cols.update({k: table[k] for k in ("text_col", "label_col", "valid_col") if k in table})
    if full.is_dir() and (full / "texts.csv").is_file():
        full = full / "texts.csv"
    if full.suffix.lower() == ".csv":
        source: Any = CsvSource(full, **cols)
    elif full.is_dir():
        source = FolderSource(full, labels=kind == "text_cls")
    elif full.suffix.lower() == ".txt" or full.is_file():
        if kind == "text_cls":
            raise _err(
                "data.path", f"{full} is one text file; a classifier needs a CSV with labels or class folders"
            )
        source = FileSource(full)
    else:
        raise _err(
            "data.path", f"{full} does not exist" + (f" — put the {preset} data there" if preset else "")
        )
    if not full.exists():
        raise _err(
            "data.path", f"{full} does not exist" + (f" — put the {preset} data there" if preset else "")
        )
    return TextBlock(
        kind,
        source,
        lang=table.get("lang", "en"),
        valid_pct=float(vp),
        seed=seed,
        cache_dir=cache_dir,
        vocab_file=vocab_file,
        **kw,
    )
