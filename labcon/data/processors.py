"""Processors: set up on the training labels only, then applied to every split."""

from __future__ import annotations

from collections.abc import Sequence


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


def _natural(s: str) -> tuple[int, int | str]:
    # "2" before "10" for numeric class names like MNIST's folders.
    return (0, int(s)) if s.isdigit() else (1, s)
