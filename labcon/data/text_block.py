"""TextBlock: read -> split -> tokenise (cached, process pool) -> numericalise -> LM or classifier loaders.

    block = TextBlock("text_cls", CsvSource("texts.csv", "text", label_col="label", valid_col="is_valid"))
    dls = block.dataloaders()

The vocab is built from the training texts only (or given: a classifier reuses its language model's),
and `vocab_file` keeps it beside the session so a resumed run numericalises exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from labcon.data.processors import Category
from labcon.data.text_loaders import ClsLoader, LMLoader, TextDataLoaders
from labcon.data.text_sources import TextItem, split_flags
from labcon.data.text_tokenize import Tokenizer, split_doc
from labcon.data.text_vocab import Vocab
from labcon.errors import DataError

KINDS = ("text_lm", "text_cls")


@dataclass
class TextPrepared:
    """Texts after split, tokenisation and numericalisation."""

    items: list[TextItem]
    valid: list[bool]
    docs: list[str]  # tokenised (SEP-joined), in item order
    ids: list[np.ndarray]
    vocab: Vocab
    classes: list[str]
    labels: list[int | None]
    from_cache: bool

    def split(self, valid: bool) -> list[int]:
        """Item indices of one side of the split."""
        return [i for i, v in enumerate(self.valid) if v == valid]


class TextBlock:
    """A text pipeline for a language model ('text_lm') or a classifier ('text_cls')."""

    def __init__(
        self,
        kind: str,
        source: Callable[[], list[TextItem]],
        lang: str = "en",
        max_vocab: int = 60000,
        min_freq: int = 2,
        bs: int = 64,
        bptt: int = 70,
        max_len: int = 4096,
        valid_pct: float = 0.2,
        seed: int = 0,
        num_workers: int = 1,
        cache_dir: str | Path | None = None,
        vocab: Vocab | None = None,
        vocab_file: str | Path | None = None,
    ):
        if kind not in KINDS:
            raise DataError(f"unknown text kind {kind!r}; use one of {', '.join(KINDS)}")
        self.kind, self.source, self.lang = kind, source, lang
        self.max_vocab, self.min_freq, self.bs, self.bptt, self.max_len = (
            max_vocab,
            min_freq,
            bs,
            bptt,
            max_len,
        )
        self.valid_pct, self.seed, self.num_workers = valid_pct, seed, num_workers
        self.cache_dir, self.vocab = cache_dir, vocab
        self.vocab_file = Path(vocab_file) if vocab_file is not None else None
        self._prepared: TextPrepared | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer this block uses (its cache lives in cache_dir)."""
        return Tokenizer(self.lang, max(1, self.num_workers), self.cache_dir)

    def check(self) -> TextPrepared:
        """Read, split, tokenise and numericalise once; every problem is a DataError naming row or file."""
        if self._prepared is not None:
            return self._prepared
        items = self.source()
        valid = split_flags(items, self.valid_pct, self.seed)
        if all(valid) or not any(valid):
            side = "training" if all(valid) else "validation"
            raise DataError(
                f"the split left no {side} texts ({len(items)} texts); check the valid column or valid_pct"
            )
        tok = self.tokenizer
        docs = tok([it.text for it in items])
        vocab = self._vocab(docs, valid)
        ids = [vocab.numericalize(d) for d in docs]
        classes: list[str] = []
        labels: list[int | None] = [None] * len(items)
        if self.kind == "text_cls":
            classes, labels = self._labels(items, valid)
            for it, a in zip(items, ids, strict=True):
                if len(a) > self.max_len:
                    raise DataError(
                        f"{it.where}: text is {len(a)} tokens, more than max_len = {self.max_len} for one batch row; "
                        "raise data.max_len (memory allowing) or shorten the text"
                    )
        self._prepared = TextPrepared(items, valid, docs, ids, vocab, classes, labels, tok.last_from_cache)
        return self._prepared

    def _vocab(self, docs: list[str], valid: list[bool]) -> Vocab:
        if self.vocab is not None:
            return self.vocab
        if self.vocab_file is not None and self.vocab_file.is_file():
            self.vocab = Vocab.load(self.vocab_file)
            return self.vocab
        self.vocab = Vocab.build(
            (d for d, v in zip(docs, valid, strict=True) if not v), self.max_vocab, self.min_freq
        )
        if self.vocab_file is not None:
            self.vocab.save(self.vocab_file)
        return self.vocab

    def _labels(self, items: list[TextItem], valid: list[bool]) -> tuple[list[str], list[int | None]]:
        missing = next((it for it in items if it.label is None), None)
        if missing is not None:
            raise DataError(f"{missing.where}: no label; a classifier needs a label column or class folders")
        train_labels = [it.label for it, v in zip(items, valid, strict=True) if not v]
        cat = Category()
        cat.setup(train_labels)  # type: ignore[arg-type]
        if len(cat.vocab or []) < 2:
            raise DataError(
                f"the label column has one class ({(cat.vocab or ['?'])[0]!r}) in the training texts; "
                "a classifier needs at least two"
            )
        labels = [cat.encode(it.label) for it in items]  # type: ignore[arg-type]
        unseen = [it for it, lab in zip(items, labels, strict=True) if lab is None]
        if unseen:
            raise DataError(
                f"{unseen[0].where}: label {unseen[0].label!r} is only in the validation texts "
                f"({len(unseen)} texts); give the training texts that class too"
            )
        return list(cat.vocab or []), labels

    def dataloaders(
        self,
        seed: int | None = None,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> TextDataLoaders:
        """Train/valid loaders of the block's kind."""
        if world_size > 1:
            raise DataError("text data does not support distributed training yet; run on one process")
        prep = self.check()
        seed = self.seed if seed is None else seed
        tr, va = prep.split(False), prep.split(True)
        if self.kind == "text_lm":
            train: Any = LMLoader([prep.ids[i] for i in tr], self.bs, self.bptt, True, seed)
            valid: Any = LMLoader([prep.ids[i] for i in va], self.bs, self.bptt, False, seed)
        else:
            lab = prep.labels
            pad = prep.vocab.pad
            train = ClsLoader([prep.ids[i] for i in tr], [lab[i] for i in tr], self.bs, pad, True, seed)
            valid = ClsLoader([prep.ids[i] for i in va], [lab[i] for i in va], self.bs, pad, False, seed)
        dls = TextDataLoaders(train, valid, prep.vocab, self.kind, prep.classes, block=self)
        if device is not None:
            dls.to(device)
        return dls

    def summary(self, n: int = 3, width: int = 100) -> str:
        """A text report: counts, split, vocab, then a few texts raw -> tokens -> ids -> decoded."""
        prep = self.check()
        n_tok = sum(len(a) for a in prep.ids)
        n_unk = sum(int((a == prep.vocab.unk).sum()) for a in prep.ids)
        tr, va = prep.split(False), prep.split(True)
        out = [
            f"TextBlock summary — {self.kind}, {self.source!r}",
            f"1. read       {len(prep.items)} texts; train {len(tr)}, valid {len(va)}",
            f"2. tokenise   spaCy blank {self.lang!r} + rules: {n_tok} tokens"
            + (" (from the cache)" if prep.from_cache else ""),
            f"3. vocab      {len(prep.vocab)} tokens (max_vocab {self.max_vocab}, min_freq {self.min_freq}); "
            f"xxunk {n_unk / max(1, n_tok):.1%} of tokens",
        ]
        if self.kind == "text_cls":
            out.append(f"4. labels     {len(prep.classes)} classes: {', '.join(prep.classes[:12])}")
            out.append(
                f"5. batches    bs={self.bs}, sort-ish, pad-first with xxpad (id {prep.vocab.pad}), max_len {self.max_len}"
            )
        else:
            out.append(
                f"4. batches    bs={self.bs}, bptt~{self.bptt}: stream of {sum(len(prep.ids[i]) for i in tr)} training tokens"
            )
        for k in tr[:n]:
            it, toks, ids = prep.items[k], split_doc(prep.docs[k]), prep.ids[k]
            out.append(f"-- {it.where}" + (f" [{it.label}]" if it.label is not None else ""))
            out.append(f"   raw      {_clip(repr(it.text), width)}")
            out.append(f"   tokens   {_clip(' '.join(repr(t) if t.isspace() else t for t in toks), width)}")
            out.append(f"   ids      {_clip(' '.join(map(str, ids[:40].tolist())), width)}")
            out.append(f"   decoded  {_clip(prep.vocab.textify(ids[:60]), width)}")
        out.append(
            f"-- a training batch (first rows; pad = xxpad count, {'pad-first' if self.kind == 'text_cls' else 'no padding'}):"
        )
        out += [f"   {row}" for row in self.batch_rows(6, width=width)]
        return "\n".join(out)

    def batch_rows(self, n: int = 8, valid: bool = False, width: int = 120) -> list[str]:
        """The first rows of a batch decoded back to tokens (padding shown as a count), with labels."""
        dls = self.dataloaders()
        x, y = dls.one_batch(valid)
        vocab, rows = dls.vocab, []
        for k in range(min(n, x.shape[0])):
            ids = x[k].tolist()
            n_pad = len(ids) - len([i for i in ids if i != vocab.pad])
            label = dls.classes[int(y[k])] if self.kind == "text_cls" else "next: " + vocab.itos[int(y[k][0])]
            body = vocab.textify(i for i in ids if i != vocab.pad)
            rows.append(_clip(f"[{label}] len {len(ids) - n_pad} pad {n_pad} | {body}", width))
        return rows

    def show_batch(self, n: int = 8, augment: bool = True, path: Any = None) -> Image.Image:
        """An image of decoded batch rows (training batch; validation when augment is False)."""
        rows = self.batch_rows(n, valid=not augment)
        img = Image.new("RGB", (8 * 122, 16 * len(rows) + 8), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for k, row in enumerate(rows):
            draw.text((4, 4 + 16 * k), row, fill=(0, 0, 0))
        return img

    def __repr__(self) -> str:
        return f"TextBlock({self.kind!r}, {self.source!r}, bs={self.bs})"


def _clip(s: str, width: int) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 3] + "..."
