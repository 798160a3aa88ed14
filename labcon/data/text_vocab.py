"""Numericalising tokens: a vocab of the most common training tokens, saved as JSON and restored exactly."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from labcon.data.text_tokenize import PAD, SPECIAL_TOKENS, UNK, split_doc
from labcon.errors import DataError

VOCAB_FORMAT = 1


class Vocab:
    """Token <-> id: special tokens first, then tokens by falling count (ties by text) up to max_vocab."""

    def __init__(self, itos: Sequence[str]):
        self.itos = list(itos)
        if len(set(self.itos)) != len(self.itos):
            raise DataError("vocab has duplicate tokens; rebuild it from the texts")
        for t in (UNK, PAD):
            if t not in self.itos:
                raise DataError(f"vocab lacks the special token {t!r}; rebuild it from the texts")
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk, self.pad = self.stoi[UNK], self.stoi[PAD]

    @classmethod
    def build(cls, docs: Iterable[str], max_vocab: int = 60000, min_freq: int = 2) -> Vocab:
        """From tokenised documents (SEP-joined strings); tokens rarer than min_freq map to xxunk."""
        counts: Counter[str] = Counter()
        for d in docs:
            counts.update(split_doc(d))
        for t in SPECIAL_TOKENS:
            counts.pop(t, None)
        common = sorted((kv for kv in counts.items() if kv[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
        keep = max(0, max_vocab - len(SPECIAL_TOKENS))
        return cls([*SPECIAL_TOKENS, *(t for t, _ in common[:keep])])

    def __len__(self) -> int:
        return len(self.itos)

    def numericalize(self, doc: str | Sequence[str]) -> np.ndarray:
        """The ids (int32) of a tokenised document (SEP-joined string or token list)."""
        toks = split_doc(doc) if isinstance(doc, str) else doc
        get, unk = self.stoi.get, self.unk
        return np.fromiter((get(t, unk) for t in toks), dtype=np.int32, count=len(toks))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of a list of ids."""
        return [self.itos[int(i)] for i in ids]

    def textify(self, ids: Iterable[int], sep: str = " ") -> str:
        """Ids back to one readable string of tokens."""
        return sep.join(self.decode(ids))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {"format": VOCAB_FORMAT, "itos": self.itos}

    def save(self, path: str | Path) -> None:
        """Write the vocab as JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vocab-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a vocab written by `save`, with a clear error for a damaged or foreign file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read vocab file {path}: {e}; delete it to rebuild the vocab") from None
        if not isinstance(d, dict) or d.get("format") != VOCAB_FORMAT or not isinstance(d.get("itos"), list):
            raise DataError(f"{path} is not a labcon vocab (format {VOCAB_FORMAT}); delete it to rebuild")
        return cls([str(t) for t in d["itos"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"
