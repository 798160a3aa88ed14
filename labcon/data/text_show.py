"""A text batch as plain values for front ends: each row's tokens, length, padding and label or next token.

    view = sample_text_batch(block, draw=3)     # the same (block, draw) gives the same batch
    view.to_dict()                              # JSON-ready (the control socket carries it)

Rows come out of the block's own loaders, so the padding is what training sees (pad-first for classifiers).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labcon.data.text_tokenize import SPECIAL_TOKENS
from labcon.errors import DataError

MAX_ROW_TOKENS = 240  # tokens kept per row: a long review is clipped (its length is still given in full)


@dataclass(frozen=True)
class TextRow:
    """One batch row: its real tokens (padding left out, clipped to MAX_ROW_TOKENS) and what it is trained on."""

    tokens: tuple[str, ...]
    length: int  # real (non-pad) tokens in the row
    n_pad: int  # xxpad tokens in the row (before the text when pad_first)
    label: str | None = None  # classifier: the row's class
    next_token: str | None = None  # language model: the last target token (target = row shifted by one)


@dataclass(frozen=True)
class TextBatchView:
    """A decoded training batch of a text session."""

    kind: str  # text_lm | text_cls
    draw: int  # which draw this is (0 = the first batch of the first epoch)
    index: int  # the batch's position in its epoch
    n_batches: int
    shape: tuple[int, int]  # (rows, tokens per row) of the whole batch
    pad_first: bool
    specials: tuple[str, ...]
    rows: tuple[TextRow, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextBatchView:
        """Rebuild from `to_dict`'s output (e.g. after the control socket)."""
        try:
            rows = tuple(
                TextRow(tuple(r["tokens"]), int(r["length"]), int(r["n_pad"]), r["label"], r["next_token"])
                for r in d["rows"]
            )
            return cls(
                str(d["kind"]),
                int(d["draw"]),
                int(d["index"]),
                int(d["n_batches"]),
                (int(d["shape"][0]), int(d["shape"][1])),
                bool(d["pad_first"]),
                tuple(d["specials"]),
                rows,
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DataError(f"not a text batch: {type(e).__name__}: {e}") from None


def sample_text_batch(block: Any, draw: int = 0, n_rows: int = 8) -> TextBatchView:
    """A training batch of `block` (a TextBlock): draw 0 is the first batch of epoch 0; draw k > 0 a batch picked
    by k from epoch k, so every `r` in the Data pane shows another batch and a draw number repeats its batch."""
    if draw < 0 or n_rows < 1:
        raise DataError(f"draw must be >= 0 and n_rows >= 1, got draw={draw}, n_rows={n_rows}")
    dls = block.dataloaders()
    dl = dls.train
    dl.set_epoch(draw)
    n_batches = len(dl)
    index = 0 if draw == 0 else int(np.random.default_rng([block.seed, draw]).integers(n_batches))
    it = iter(dl)
    try:
        x, y = next(itertools.islice(it, index, None))
    finally:
        it.close()
    vocab, kind = dls.vocab, block.kind
    rows = []
    for k in range(min(n_rows, x.shape[0])):
        ids = x[k].tolist()
        real = [i for i in ids if i != vocab.pad] if kind == "text_cls" else ids
        toks = tuple(vocab.decode(real[:MAX_ROW_TOKENS]))
        if kind == "text_cls":
            rows.append(TextRow(toks, len(real), len(ids) - len(real), label=dls.classes[int(y[k])]))
        else:
            rows.append(TextRow(toks, len(real), 0, next_token=vocab.itos[int(y[k][-1])]))
    return TextBatchView(
        kind,
        draw,
        index,
        n_batches,
        (int(x.shape[0]), int(x.shape[1])),
        kind == "text_cls" and bool(dl.pad_first),
        SPECIAL_TOKENS,
        tuple(rows),
    )
