"""Text batches: one token stream in bptt windows for language models; sort-ish padded batches for classifiers.

Orders and window lengths are functions of (seed, epoch), like the image loader's, so a resumed run
sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from labcon.data.loaders import DataLoaders, EpochPosition
from labcon.errors import DataError


def _gen(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 7 + stream)


class _EpochLoader:
    """Shared epoch/device bookkeeping (the interface DataLoaders and the session rely on)."""

    def __init__(self, shuffle: bool, seed: int, device: torch.device | str | None):
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (and so the order) of the next pass."""
        self.epoch = int(epoch)

    def to(self, device: torch.device | str) -> _EpochLoader:
        """Send batches to `device`."""
        self.device = torch.device(device)
        return self

    def state_dict(self) -> dict[str, int]:
        """Next epoch and seed."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a position saved by `state_dict`."""
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def close(self) -> None:
        """Nothing to shut down (batches are made in this process)."""


class LMLoader(_EpochLoader):
    """Documents (shuffled each training epoch) joined into one stream viewed as (bs, n); yields bptt windows.

    Training windows have random lengths as in AWD-LSTM: bptt (or bptt/2 one time in 20), then
    normal(that, 5), at least 5. The target is the input shifted by one token.
    """

    def __init__(
        self,
        docs: Sequence[np.ndarray],
        bs: int = 64,
        bptt: int = 70,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        super().__init__(shuffle, seed, device)
        self.docs, self.bs, self.bptt = list(docs), bs, bptt
        self.n_tokens = int(sum(len(d) for d in self.docs))
        self.n = self.n_tokens // bs
        if self.n < 2:
            raise DataError(
                f"{self.n_tokens} tokens are too few for bs={bs} language-model rows; lower bs or add text"
            )
        self._windows_for: tuple[int, list[int]] | None = None

    def windows(self) -> list[int]:
        """The window lengths of this epoch's pass."""
        if self._windows_for is not None and self._windows_for[0] == self.epoch:
            return self._windows_for[1]
        out, i, last = [], 0, self.n - 1
        if self.shuffle:
            g = _gen(self.seed, self.epoch, 1)
            while i < last:
                base = self.bptt if torch.rand((), generator=g).item() < 0.95 else self.bptt / 2
                sl = max(5, int(base + 5 * torch.randn((), generator=g).item()))
                sl = min(sl, last - i)
                out.append(sl)
                i += sl
        else:
            out = [min(self.bptt, last - j) for j in range(0, last, self.bptt)]
        self._windows_for = (self.epoch, out)
        return out

    def stream(self) -> torch.Tensor:
        """This epoch's (bs, n) token matrix."""
        order = (
            torch.randperm(len(self.docs), generator=_gen(self.seed, self.epoch, 0)).tolist()
            if self.shuffle
            else range(len(self.docs))
        )
        flat = np.concatenate([self.docs[i] for i in order])[: self.n * self.bs]
        return torch.from_numpy(flat.astype(np.int64)).view(self.bs, self.n)

    def __len__(self) -> int:
        return len(self.windows())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = self.stream().to(self.device)
        i = 0
        try:
            for sl in self.windows():
                yield data[:, i : i + sl], data[:, i + 1 : i + 1 + sl]
                i += sl
        finally:
            self.epoch += 1 if self.shuffle else 0

    def __repr__(self) -> str:
        return f"LMLoader({self.n_tokens} tokens, bs={self.bs}, bptt={self.bptt}, {len(self)} batches)"


def sortish_order(lengths: Sequence[int], bs: int, g: torch.Generator) -> list[int]:
    """Random mega-batches (50 batches each) sorted by length, longest batch first, the rest shuffled."""
    n = len(lengths)
    idx = torch.randperm(n, generator=g).tolist()
    mega = bs * 50
    srt = [i for k in range(0, n, mega) for i in sorted(idx[k : k + mega], key=lambda j: -lengths[j])]
    batches = [srt[k : k + bs] for k in range(0, n, bs)]
    longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
    batches[0], batches[longest] = batches[longest], batches[0]
    rest = [batches[1 + int(j)] for j in torch.randperm(len(batches) - 1, generator=g).tolist()]
    return [i for b in [batches[0], *rest] for i in b]


def pad_collate(docs: Sequence[np.ndarray], pad_idx: int, pad_first: bool = True) -> torch.Tensor:
    """(bs, longest) int64, padded with pad_idx before each text (pad-first) or after it."""
    width = max(len(d) for d in docs)
    out = torch.full((len(docs), width), pad_idx, dtype=torch.int64)
    for r, d in enumerate(docs):
        t = torch.from_numpy(d.astype(np.int64))
        if pad_first:
            out[r, width - len(d) :] = t
        else:
            out[r, : len(d)] = t
    return out


class ClsLoader(_EpochLoader):
    """Padded (x, y) batches: sort-ish order when training, longest first when validating.

    Padding goes first (as the course does), so the last time step of every row is a real token and
    the classifier can read its final hidden state directly; the model masks pad positions when pooling.
    """

    def __init__(
        self,
        docs: Sequence[np.ndarray],
        labels: Sequence[int],
        bs: int = 64,
        pad_idx: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        pad_first: bool = True,
    ):
        super().__init__(shuffle, seed, device)
        self.docs, self.labels, self.bs, self.pad_idx, self.pad_first = (
            list(docs),
            list(labels),
            bs,
            pad_idx,
            pad_first,
        )
        self.lengths = [len(d) for d in self.docs]

    def order(self) -> list[int]:
        """This pass's item order."""
        if self.shuffle:
            return sortish_order(self.lengths, self.bs, _gen(self.seed, self.epoch, 0))
        return sorted(range(len(self.docs)), key=lambda i: -self.lengths[i])

    def __len__(self) -> int:
        return math.ceil(len(self.docs) / self.bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        try:
            for k in range(0, len(order), self.bs):
                b = order[k : k + self.bs]
                x = pad_collate([self.docs[i] for i in b], self.pad_idx, self.pad_first)
                y = torch.tensor([self.labels[i] for i in b], dtype=torch.int64)
                yield x.to(self.device), y.to(self.device)
        finally:
            self.epoch += 1 if self.shuffle else 0

    def __repr__(self) -> str:
        return f"ClsLoader({len(self.docs)} texts, bs={self.bs}, {len(self)} batches)"


class TextDataLoaders(EpochPosition, DataLoaders):
    """Train/valid text loaders with the token `vocab`, class names (`classes`) and `c` outputs."""

    def __init__(
        self, train: Any, valid: Any, vocab: Any, kind: str, classes: Sequence[str] = (), block: Any = None
    ):
        super().__init__(train, valid)
        self.vocab, self.kind, self.classes, self.block = vocab, kind, list(classes), block

    @property
    def c(self) -> int:
        """Model outputs: the number of classes, or the vocab size for a language model."""
        return len(self.classes) if self.kind == "text_cls" else len(self.vocab)

    def close(self) -> None:
        """Nothing to shut down."""
