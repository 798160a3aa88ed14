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

    def __getitem__(self, key: int | tuple[int, ...]) -> tuple[Any, ...]:
        """(x uint8, label, None) or (None, index, error); a key (i, seed, True) from a timed pass adds a
        fourth element, the item's seconds per stage (read, decode, item tfms)."""
        if isinstance(key, tuple):
            if len(key) == 3:
                marks = [time.perf_counter()]
                return (
                    *self._get(key[0], key[1], marks),
                    dict(zip(ITEM_STAGES, _diffs(marks), strict=False)),
                )
            i, seed = key
        else:
            i, seed = key, key
        return self._get(i, seed, None)

    def _get(
        self, i: int, seed: int, marks: list[float] | None
    ) -> tuple[torch.Tensor | None, Any, str | None]:
        try:
            return (
                self.pipeline(self.items[i], random.Random(seed), self.train, marks=marks),
                self.labels[i],
                None,
            )
        except TransformError as e:
            return None, i, _FATAL + str(e)  # not the file's fault: stops the run even with skip_bad
        except DataError as e:
            return None, i, str(e)


# Stages timed inside the loader (in the worker processes when there are workers) while the profiler runs.
ITEM_STAGES: tuple[str, ...] = ("read", "decode", "item tfms")
WORKER_STAGES: tuple[str, ...] = (*ITEM_STAGES, "collate")


def _diffs(marks: list[float]) -> list[float]:
    # A file that fails stops the marks early: its item has only the stages it reached.
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def collate(samples: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Stack good samples (uint8) and labels (int64); carry bad-file messages to the main process, and, in a
    timed pass, the batch's seconds per stage (`stages`: summed over its items, plus collate itself)."""
    timed = len(samples[0]) == 4
    t0 = time.perf_counter() if timed else 0.0
    out = _collate(samples)
    if timed:
        st = dict.fromkeys(WORKER_STAGES, 0.0)
        for s in samples:
            for k, v in s[3].items():
                st[k] += v
        st["collate"] = time.perf_counter() - t0
        out["stages"] = st
    return out


def _collate(samples: list[tuple[Any, ...]]) -> dict[str, Any]:
    good = [(s[0], s[1]) for s in samples if s[2] is None]
    bad = [s[2] for s in samples if s[2] is not None]
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
        # While the profiler runs: keys become (index, seed, True), asking the dataset to time its stages.
        self.timed = False

    def generator(self, stream: int = 0) -> torch.Generator:
        """A CPU generator seeded by (seed, epoch, stream)."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 7 + stream)

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        if self.timed:
            return iter([(i, seed, True) for i, seed in self._keys()])
        return iter(self._keys())

    def _keys(self) -> list[tuple[int, int]]:
        if not self.shuffle:
            return [(i, i) for i in range(self.rank, self.n, self.world_size)]
        g = self.generator()
        perm = torch.randperm(self.n, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (self.n,), generator=g).tolist()
        total = len(self) * self.world_size
        perm = (perm * math.ceil(total / max(self.n, 1)))[:total]  # pad by wrapping, like DistributedSampler
        return [(i, seeds[i]) for i in perm[self.rank :: self.world_size]]


# What a batch goes through, as seen from the training process: getting the collated batch (with workers, the
# wait for them), the transfer, the batch transforms. Host clock: on a GPU the transfer and batch transforms are
# queued, not finished, when timed.
STAGES: tuple[str, ...] = ("read, decode, item tfms, collate", "transfer", "batch tfms")
WAIT = "wait for workers"
# Timed without workers the first stage is split (the rest: the DataLoader's own work around the stages).
REST = "loader (rest)"


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
        # Host seconds spent in each stage in this process, and (timed, with workers) inside the workers, summed
        # since the loader was made or `time_stages` was called (the profiler reads differences).
        self.stage_seconds: dict[str, float] = {}
        self.worker_seconds: dict[str, float] | None = None
        self.time_stages(False)

    def time_stages(self, on: bool) -> None:
        """Time read / decode / item tfms / collate per batch where they run (in the workers, carried back with
        the batch) from the next pass on; off: only the three stages seen from this process (no per-item cost)."""
        self.sampler.timed = on
        first = (WAIT,) if self.num_workers > 0 else (*WORKER_STAGES, REST) if on else STAGES[:1]
        self.stage_seconds = dict.fromkeys((*first, *STAGES[1:]), 0.0)
        self.worker_seconds = dict.fromkeys(WORKER_STAGES, 0.0) if on and self.num_workers > 0 else None

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
        now = time.perf_counter
        first = WAIT if self.num_workers > 0 else STAGES[0]
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
                st = self.stage_seconds  # replaced when the timing is switched
                if "stages" in b:
                    self._add_stages(b["stages"], t1 - t0, first)
                else:
                    st[first] += t1 - t0
                st[STAGES[1]] += t2 - t1
                st[STAGES[2]] += t3 - t2
                yield x, y
        finally:
            self.sampler.epoch += 1 if self.shuffle else 0

    def _add_stages(self, stages: dict[str, float], got: float, first: str) -> None:
        """A timed batch: its stage times go to the workers' sums, or, in this process, split what it took."""
        st, ws = self.stage_seconds, self.worker_seconds
        if ws is None and REST not in st:  # switched off while this pass still had timed batches on the way
            st[first] += got
            return
        if ws is not None:
            st[WAIT] += got
            for k, v in stages.items():
                ws[k] += v
            return
        for k, v in stages.items():
            st[k] += v
        st[REST] += max(0.0, got - sum(stages.values()))

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
