"""Processors: set up on the training labels only, then applied to every split."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Category:
    """Maps string labels to ints; the vocab comes from the training split only (sorted)."""

    def __init__(self, vocab: Sequence[str] | None = None):
        self._given = list(vocab) if vocab is not None else None
        self.vocab: list[str] | None = self._given
        self._o2i: dict[str, int] = {v: i for i, v in enumerate(self.vocab or [])}

    def setup(self, train_labels: Sequence[str]) -> None:
        """Build the vocab from the training labels (unless one was given)."""
        self.vocab = list(self._given) if self._given is not None else sorted(set(train_labels), key=_natural)
        self._o2i = {v: i for i, v in enumerate(self.vocab)}

    def encode(self, label: str) -> int | None:
        """The label's index, or None when the training split never had it."""
        return self._o2i.get(label)

    def decode(self, idx: int) -> str:
        """The label string for an index."""
        return self.vocab[idx] if self.vocab is not None else str(idx)

    def __repr__(self) -> str:
        return f"Category(vocab={len(self.vocab) if self.vocab is not None else 'unset'})"


class MultiCategory(Category):
    """Several labels per item, written in one string split by `delim`: encoded as a multi-hot vector.

    The vocab is every label seen in the training split (sorted); an item whose labels include one the
    training split never had is reported by `encode` returning None.
    """

    multi = True

    def __init__(self, delim: str = " ", vocab: Sequence[str] | None = None):
        super().__init__(vocab)
        self.delim = delim

    def split(self, label: str) -> list[str]:
        """The label set of one item ('' is the empty set)."""
        return [t for t in (x.strip() for x in label.split(self.delim)) if t]

    def setup(self, train_labels: Sequence[str]) -> None:
        """Vocab from the union of the training label sets (unless one was given)."""
        super().setup([t for lab in train_labels for t in self.split(lab)])

    def unknown(self, label: str) -> list[str]:
        """The labels of `label` the vocab does not have."""
        return [t for t in self.split(label) if t not in self._o2i]

    def encode(self, label: str) -> torch.Tensor | None:  # type: ignore[override]
        """Multi-hot float vector over the vocab, or None when a label is not in the vocab."""
        if self.unknown(label):
            return None
        out = torch.zeros(len(self.vocab or []))
        for t in self.split(label):
            out[self._o2i[t]] = 1.0
        return out

    def decode_set(self, y: torch.Tensor) -> list[str]:
        """Label names of a multi-hot (or thresholded) vector."""
        return [self.decode(int(i)) for i in torch.nonzero(y > 0.5).flatten()]

    def __repr__(self) -> str:
        return f"MultiCategory(delim={self.delim!r}, vocab={len(self.vocab) if self.vocab is not None else 'unset'})"


def _natural(s: str) -> tuple[int, int | str]:
    # "2" before "10" for numeric class names like MNIST's folders.
    return (0, int(s)) if s.isdigit() else (1, s)
