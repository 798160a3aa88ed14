"""The image loader behind a DataBlock: uint8 batches from workers, floats only on the device.

The training order comes from a torch.Generator seeded by (seed, epoch) — like DistributedSampler —
so a resumed run sees the same order; with world_size > 1 each rank takes its shard of one
permutation. Each item's augmentation is seeded from the same generator, so it is reproducible too.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from labcon.data.augment import BatchPipeline
from labcon.data.loaders import DataLoaders, EpochPosition
from labcon.data.transforms import ItemPipeline, TransformError
from labcon.errors import DataError

# Marks an error record that is the config's fault (a transform), not a bad file's.
_FATAL = "fatal: "


class ImageDataset(Dataset):
    """(path, label) items decoded by an ItemPipeline; a bad file yields an error record, not a crash."""

    def __init__(self, items: Sequence[Path], labels: Sequence[int], pipeline: ItemPipeline, train: bool):
        self.items, self.labels, self.pipeline, self.train = list(items), list(labels), pipeline, train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor | None, Any, str | None]:
        i, seed = key if isinstance(key, tuple) else (key, key)
        try:
            return self.pipeline(self.items[i], random.Random(seed), self.train), self.labels[i], None
        except TransformError as e:
            return None, i, _FATAL + str(e)  # not the file's fault: stops the run even with skip_bad
        except DataError as e:
            return None, i, str(e)


def collate(samples: list[tuple[torch.Tensor | None, int, str | None]]) -> dict[str, Any]:
    """Stack good samples (uint8) and labels (int64); carry bad-file messages to the main process."""
    good = [(x, y) for x, y, err in samples if err is None]
    bad = [err for _, _, err in samples if err is not None]
    out: dict[str, Any] = {"x": None, "y": None, "bad": bad, "fatal": None}
    fatal = [err for err in bad if err.startswith(_FATAL)]
    if fatal:
        out["fatal"] = fatal[0][len(_FATAL) :]
        return out
    if good:
        shapes = {tuple(x.shape) for x, _ in good}
        if len(shapes) > 1:
            a, b = sorted(shapes)[:2]
            out["fatal"] = (
                f"images in one batch have different sizes {a[1]}x{a[2]} and {b[1]}x{b[2]} — add a resize item "
                "transform (e.g. size = 64 in [data], or item_tfms=[Resize(64)])"
            )
            return out
        out["x"] = default_collate([x for x, _ in good])
        ys = [y for _, y in good]
        # Multi-label items carry multi-hot float vectors; single-label ones class indices.
        out["y"] = (
            torch.stack(ys).float()
            if isinstance(ys[0], torch.Tensor)
            else torch.tensor(ys, dtype=torch.int64)
        )
    return out


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) for one rank; the order is a function of (seed, epoch)."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.n, self.shuffle, self.seed, self.rank, self.world_size = n, shuffle, seed, rank, world_size
        self.epoch = 0

    def generator(self, stream: int = 0) -> torch.Generator:
        """A CPU generator seeded by (seed, epoch, stream)."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 7 + stream)

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if not self.shuffle:
            return iter([(i, i) for i in range(self.rank, self.n, self.world_size)])
        g = self.generator()
        perm = torch.randperm(self.n, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (self.n,), generator=g).tolist()
        total = len(self) * self.world_size
        perm = (perm * math.ceil(total / max(self.n, 1)))[:total]  # pad by wrapping, like DistributedSampler
        return iter([(i, seeds[i]) for i in perm[self.rank :: self.world_size]])


# What a batch goes through, as seen from the training process (with workers, the first stage is the wait
# for them). Host clock: on a GPU the transfer and batch transforms are queued, not finished, when timed.
STAGES: tuple[str, ...] = ("read, decode, item tfms, collate", "transfer", "batch tfms")


class ImageLoader:
    """Iterates (x float on device, y int64 on device); `.to(device)`, `set_epoch`, `state_dict`."""

    def __init__(
        self,
        dataset: ImageDataset,
        bs: int,
        batch_tfms: BatchPipeline,
        shuffle: bool,
        num_workers: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
    ):
        self.dataset, self.bs, self.batch_tfms, self.shuffle = dataset, bs, batch_tfms, shuffle
        self.num_workers, self.skip_bad = num_workers, skip_bad
        self.sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size)
        self.drop_last = shuffle and len(self.sampler) >= bs
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.skipped: list[str] = []
        self._dl: DataLoader | None = None
        # Host seconds spent in each stage, summed since the loader was made (the profiler reads differences).
        self.stage_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use."""
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (and so the order) of the next pass."""
        self.sampler.epoch = int(epoch)

    def to(self, device: torch.device | str) -> ImageLoader:
        """Send batches to `device`; batch transforms run there."""
        device = torch.device(device)
        if (device.type == "cuda") != (self.device.type == "cuda"):
            self._dl = None  # pin_memory depends on the target
        self.device = device
        return self

    def state_dict(self) -> dict[str, int]:
        """The position to resume from: next epoch and seed."""
        return {"epoch": self.sampler.epoch, "seed": self.sampler.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a position saved by `state_dict`."""
        self.sampler.epoch, self.sampler.seed = int(state["epoch"]), int(state["seed"])

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def _loader(self) -> DataLoader:
        if self._dl is None:
            pin = self.device.type == "cuda" and torch.cuda.is_available()
            self._dl = DataLoader(
                self.dataset,
                batch_size=self.bs,
                sampler=self.sampler,
                collate_fn=collate,
                num_workers=self.num_workers,
                pin_memory=pin,
                drop_last=self.drop_last,
                # Forking fresh workers every pass cost 15-30 ms per loader per epoch (more in a big process
                # like the console's); the sampler runs in this process, so set_epoch still reorders.
                persistent_workers=self.num_workers > 0,
            )
        return self._dl

    def close(self) -> None:
        """Shut down the worker processes (they are restarted on the next pass)."""
        self._dl = None

    def raw_batches(self) -> Iterator[dict[str, Any]]:
        """The collated uint8 batches (on the host) of the next pass, bad-file checks applied."""
        dl = self._loader()
        self.skipped = []
        for b in dl:
            if b["fatal"]:
                raise DataError(b["fatal"])
            if b["bad"]:
                if not self.skip_bad:
                    raise DataError(b["bad"][0])
                self.skipped.extend(b["bad"])
            if b["x"] is not None:
                yield b
        if self.skipped:
            warnings.warn(
                f"skipped {len(self.skipped)} bad image(s) in this pass; first: {self.skipped[0]}",
                stacklevel=3,
            )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = self.sampler.generator(stream=1)
        nb = self.device.type == "cuda"
        st, now = self.stage_seconds, time.perf_counter
        raw = self.raw_batches()
        try:
            while True:
                t0 = now()
                b = next(raw, None)
                if b is None:
                    break
                t1 = now()
                x = b["x"].to(self.device, non_blocking=nb)
                y = b["y"].to(self.device, non_blocking=nb)
                t2 = now()
                x = self.batch_tfms(x, self.shuffle, gen)
                t3 = now()
                st[STAGES[0]] += t1 - t0
                st[STAGES[1]] += t2 - t1
                st[STAGES[2]] += t3 - t2
                yield x, y
        finally:
            self.sampler.epoch += 1 if self.shuffle else 0

    def __repr__(self) -> str:
        return f"ImageLoader({len(self.dataset)} items, bs={self.bs}, {len(self)} batches)"


class BlockDataLoaders(EpochPosition, DataLoaders):
    """DataLoaders built by a DataBlock: adds `vocab`, `c`, `set_epoch` and resumable `state_dict`."""

    def __init__(
        self,
        train: ImageLoader,
        valid: ImageLoader,
        vocab: Sequence[str],
        device: torch.device | str | None = None,
        block: Any = None,
    ):
        super().__init__(train, valid, device)
        self.vocab, self.block = list(vocab), block
        if device is not None:
            self.to(device)

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.vocab)

    @property
    def multi_label(self) -> bool:
        """Whether targets are label sets (multi-hot), from a labeller with a delimiter."""
        return bool(getattr(getattr(self.block, "processors", [None])[0], "multi", False))

    def close(self) -> None:
        """Shut down the loaders' worker processes."""
        self.train.close()
        self.valid.close()

    def one_batch(self, valid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch of a pass (train pass does not advance the epoch)."""
        dl = self.valid if valid else self.train
        ep = dl.epoch
        it = iter(dl)
        try:
            return next(it)
        finally:
            it.close()
            dl.set_epoch(ep)
