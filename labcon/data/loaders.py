"""DataLoaders: the train/valid pair the Runner iterates over."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class DataLoaders:
    """A train and a valid iterable of (x, y) batches; wraps plain torch DataLoaders."""

    def __init__(self, train: Iterable[Any], valid: Iterable[Any], device: torch.device | str | None = None):
        self.train, self.valid = train, valid
        self.device = torch.device(device) if device is not None else None

    def to(self, device: torch.device | str) -> DataLoaders:
        """Remember the device batches should land on (loaders that support it move there)."""
        self.device = torch.device(device)
        for dl in (self.train, self.valid):
            if hasattr(dl, "to") and not isinstance(dl, torch.utils.data.DataLoader):
                dl.to(self.device)
        return self

    def __repr__(self) -> str:
        def n(dl: Any) -> str:
            return str(len(dl)) if hasattr(dl, "__len__") else "?"

        return f"DataLoaders(train={n(self.train)} batches, valid={n(self.valid)} batches)"


class EpochPosition:
    """Loader position for checkpoints, kept by the training loader (validation always starts at epoch 0), and
    a first batch that leaves it where it was."""

    train: Any
    valid: Any

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch of the next training pass (its order and augmentation)."""
        self.train.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """Loader position (epoch, seed) for checkpoints."""
        return self.train.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the loader position from a checkpoint."""
        self.train.load_state_dict(state)
        self.valid.load_state_dict({**state, "epoch": 0})

    def one_batch(self, valid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch of a pass, without advancing the loader's epoch."""
        dl = self.valid if valid else self.train
        ep = dl.epoch
        it = iter(dl)
        try:
            return next(it)
        finally:
            it.close()
            dl.set_epoch(ep)
