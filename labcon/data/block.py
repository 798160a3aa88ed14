"""DataBlock: a declarative image pipeline that checks itself and names the wrong part in plain words.

    block = DataBlock(
        splitter=GrandparentSplitter(train="train", valid="valid"),
        labeller=ParentLabeller(),
        item_tfms=[RandomResizedCrop(128), Flip()],
        batch_tfms=[Affine(), Normalize.imagenet()],
        bs=64,
    )
    dls = block.dataloaders("data/imagenette2-160", num_workers=2)

Parts may be given by keyword in any order, or positionally (each is recognised by its type).
Steps always run in one order: get items -> split -> label -> categorise (vocab from the
training split only) -> item transforms (workers, uint8) -> collate -> batch transforms (device).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from labcon.data.augment import BatchPipeline, BatchTransform
from labcon.data.imageloader import BlockDataLoaders, ImageDataset, ImageLoader
from labcon.data.items import FileGetter, Labeller, Splitter
from labcon.data.processors import Category, MultiCategory
from labcon.data.transforms import ItemPipeline, ItemTransform
from labcon.errors import DataError

_PART_TYPES: tuple[tuple[type, str], ...] = (
    (Splitter, "splitter"),
    (Labeller, "labeller"),
    (ItemTransform, "item_tfms"),
    (BatchTransform, "batch_tfms"),
    (Category, "processors"),
    (FileGetter, "get_items"),
)


@dataclass
class Prepared:
    """The block's items after split, label and categorise (what workers will decode)."""

    path: Path
    n_items: int
    train_items: list[Path]
    train_labels: list[Any]  # int class indices, or multi-hot float tensors (MultiCategory)
    valid_items: list[Path]
    valid_labels: list[Any]
    vocab: list[str]
    valid_only: dict[str, int]


class DataBlock:
    """Items, split, labels, processors, item/batch transforms and batch size, checked before loading."""

    def __init__(
        self,
        *parts: Any,
        get_items: Callable[[Path], list[Path]] | None = None,
        splitter: Splitter | None = None,
        labeller: Labeller | Callable[[Path, Path], str] | None = None,
        processors: Sequence[Category] | None = None,
        item_tfms: Sequence[ItemTransform] = (),
        batch_tfms: Sequence[BatchTransform] = (),
        bs: int = 64,
        path: str | Path | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
    ):
        kw: dict[str, Any] = {
            "item_tfms": list(item_tfms),
            "batch_tfms": list(batch_tfms),
            "processors": None,
        }
        kw.update(get_items=get_items, splitter=splitter, labeller=labeller)
        if processors is not None:
            kw["processors"] = list(processors)
        for p in parts:
            slot = next((name for typ, name in _PART_TYPES if isinstance(p, typ)), None)
            if slot is None:
                raise DataError(
                    f"cannot tell which part {p!r} is; pass it by name, e.g. get_items=..., splitter=..., labeller=..."
                )
            if slot in ("item_tfms", "batch_tfms"):
                kw[slot].append(p)
            elif slot == "processors":
                kw["processors"] = [*(kw["processors"] or []), p]
            elif kw[slot] is not None:
                raise DataError(f"two {slot}s given ({kw[slot]!r} and {p!r}); keep one")
            else:
                kw[slot] = p
        self.get_items = kw["get_items"] or FileGetter()
        self.splitter, self.labeller = kw["splitter"], kw["labeller"]
        self.processors = kw["processors"] if kw["processors"] is not None else [Category()]
        self.item_tfms, self.batch_tfms = kw["item_tfms"], kw["batch_tfms"]
        self.bs, self.num_workers, self.skip_bad = bs, num_workers, skip_bad
        self.path = Path(path) if path is not None else None
        self._prepared: Prepared | None = None

    @classmethod
    def from_config(cls, table: dict[str, Any], base_dir: Path) -> DataBlock:
        """Build from the `[data]` table of a session config (schema in labcon.data.config)."""
        from labcon.data.config import block_from_config

        return block_from_config(table, base_dir)

    # ---- checking -------------------------------------------------------------------------------

    def static_problems(self) -> list[str]:
        """Problems visible without touching the disk (missing or misplaced parts)."""
        probs = []
        if self.splitter is None:
            probs.append(
                "no splitter: add splitter=GrandparentSplitter(train='train', valid='valid') "
                "or RandomSplitter(valid_pct=0.2, seed=0)"
            )
        elif not isinstance(self.splitter, Splitter):
            probs.append(
                f"splitter {self.splitter!r} is not a Splitter; use FuncSplitter(fn) to wrap a function"
            )
        if self.labeller is None:
            probs.append(
                "no labeller: add labeller=ParentLabeller() (label = parent folder name) or RegexLabeller(...)"
            )
        elif not callable(self.labeller):
            probs.append(f"labeller {self.labeller!r} is not callable")
        if not callable(self.get_items):
            probs.append(f"get_items {self.get_items!r} is not callable; use FileGetter(extensions=[...])")
        for name, want, other, other_name in (
            ("item_tfms", ItemTransform, BatchTransform, "batch_tfms"),
            ("batch_tfms", BatchTransform, ItemTransform, "item_tfms"),
        ):
            for i, t in enumerate(getattr(self, name)):
                if isinstance(t, other):
                    probs.append(
                        f"{name}[{i}] is {type(t).__name__}, a {other_name[:-5]} transform — move it to {other_name}"
                    )
                elif not isinstance(t, want):
                    probs.append(
                        f"{name}[{i}] ({t!r}) is not a{'n item' if name == 'item_tfms' else ' batch'} transform"
                    )
        for i, p in enumerate(self.processors):
            if not isinstance(p, Category):
                probs.append(f"processors[{i}] ({p!r}) is not a processor such as Category()")
        if not isinstance(self.bs, int) or isinstance(self.bs, bool) or self.bs < 1:
            probs.append(f"bs must be a positive whole number, got {self.bs!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            probs.append(f"num_workers must be a whole number >= 0, got {self.num_workers!r}")
        return probs

    def check(self, path: str | Path | None = None) -> Prepared:
        """Check every part against the data folder; raise one DataError listing all problems."""
        root = Path(path) if path is not None else self.path
        probs = self.static_problems()
        if root is None:
            probs.append("no data path: pass path=... to DataBlock or dataloaders(path)")
        elif not root.is_dir():
            probs.append(f"data folder {root} does not exist")
        if probs or root is None:
            raise DataError(_join(probs))
        if self._prepared is not None and self._prepared.path == root:
            return self._prepared
        items = self.get_items(root)
        if not items:
            present = sorted(p.name for p in root.iterdir())[:10]
            raise DataError(
                f"get_items found no image files under {root}; entries present: {', '.join(present) or '(empty)'}"
            )
        probs += self.splitter.check(root, items)
        if isinstance(self.labeller, Labeller):
            probs += self.labeller.check(root, items)
        if probs:
            raise DataError(_join(probs))
        self._prepared = self._prepare(root, items)
        return self._prepared

    def _prepare(self, root: Path, items: list[Path]) -> Prepared:
        tr_idx, va_idx = self.splitter(items, root)
        name = getattr(self.splitter, "name", "splitter")
        if not tr_idx or not va_idx:
            empty = "training" if not tr_idx else "validation"
            raise DataError(
                f"splitter '{name}' put no items in the {empty} set ({len(items)} items under {root})"
            )
        empty_dirs = _empty_class_dirs(items)
        if empty_dirs:
            msg = (
                f"{len(empty_dirs)} class folder(s) contain no images: {', '.join(map(str, empty_dirs[:5]))}"
            )
            if not self.skip_bad:
                raise DataError(msg + " — add images or remove the folder (or pass skip_bad=True)")
            warnings.warn(msg + " — skipped", stacklevel=3)
        tr_lab = [str(self.labeller(items[i], root)) for i in tr_idx]
        va_lab = [str(self.labeller(items[i], root)) for i in va_idx]
        cat = self.processors[0]
        delim = getattr(self.labeller, "delim", None)
        if delim and type(cat) is Category:
            # Several labels per row: multi-hot targets over the training labels.
            cat = self.processors[0] = MultiCategory(delim, vocab=cat._given)
        cat.setup(tr_lab)
        vocab = list(cat.vocab or [])
        valid_only: dict[str, int] = {}
        va_items, va_y = [], []
        for i, lab in zip(va_idx, va_lab, strict=True):
            code = cat.encode(lab)
            if code is None:
                for unseen in cat.unknown(lab) if isinstance(cat, MultiCategory) else [lab]:
                    valid_only[unseen] = valid_only.get(unseen, 0) + 1
            else:
                va_items.append(items[i])
                va_y.append(code)
        if valid_only:
            warnings.warn(
                "labels only in the validation set (not in training, so dropped): "
                + ", ".join(f"{k!r} ({v} items)" for k, v in sorted(valid_only.items())),
                stacklevel=3,
            )
        tr_y = [cat.encode(lab) for lab in tr_lab]
        return Prepared(root, len(items), [items[i] for i in tr_idx], tr_y, va_items, va_y, vocab, valid_only)  # type: ignore[arg-type]

    def drop_bad_files(self, path: str | Path | None = None, workers: int | None = None) -> list[Path]:
        """Check every item's file up front (in parallel). Bad ones are dropped when skip_bad (returned, for a
        warning); otherwise one DataError lists them all, instead of one per run mid-epoch."""
        from labcon.data.filecheck import bad_images_error, find_bad_images

        prep = self.check(path)
        everything = prep.train_items + prep.valid_items
        bad = find_bad_images(everything, workers)
        if not bad:
            return []
        if not self.skip_bad:
            raise bad_images_error(bad, len(everything))
        gone = {p for p, _ in bad}

        def keep(items: list[Path], labels: list[int]) -> tuple[list[Path], list[int]]:
            pairs = [(p, y) for p, y in zip(items, labels, strict=True) if p not in gone]
            return [p for p, _ in pairs], [y for _, y in pairs]

        tr, tr_y = keep(prep.train_items, prep.train_labels)
        va, va_y = keep(prep.valid_items, prep.valid_labels)
        if not tr or not va:
            raise DataError(
                f"every {'training' if not tr else 'validation'} image is bad; nothing left to train on"
            )
        self._prepared = dataclasses.replace(
            prep, train_items=tr, train_labels=tr_y, valid_items=va, valid_labels=va_y
        )
        return sorted(gone)

    # ---- loading --------------------------------------------------------------------------------

    def item_pipeline(self) -> ItemPipeline:
        """The item transforms in run order (make-RGB added when absent)."""
        return ItemPipeline(self.item_tfms)

    def batch_pipeline(self) -> BatchPipeline:
        """The batch transforms in run order."""
        return BatchPipeline(self.batch_tfms)

    def dataloaders(
        self,
        path: str | Path | None = None,
        bs: int | None = None,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> BlockDataLoaders:
        """Check, then build train/valid loaders; `.vocab`, `.c`, `.to(device)`, `set_epoch`, `state_dict`."""
        prep = self.check(path)
        bs = self.bs if bs is None else bs
        nw = self.num_workers if num_workers is None else num_workers
        if not isinstance(bs, int) or bs < 1:
            raise DataError(f"bs must be a positive whole number, got {bs!r}")
        pipe, bpipe = self.item_pipeline(), self.batch_pipeline()
        common = dict(num_workers=nw, seed=seed, rank=rank, world_size=world_size, skip_bad=self.skip_bad)
        train = ImageLoader(
            ImageDataset(prep.train_items, prep.train_labels, pipe, True), bs, bpipe, True, **common
        )
        valid = ImageLoader(
            ImageDataset(prep.valid_items, prep.valid_labels, pipe, False), bs, bpipe, False, **common
        )
        return BlockDataLoaders(train, valid, prep.vocab, device=device, block=self)

    def summary(self, path: str | Path | None = None, device: torch.device | str | None = None) -> str:
        """Walk one sample through every stage; a text report of type, shape, dtype and range."""
        from labcon.data.report import summary

        return summary(self, path, device)

    def show_batch(
        self, n: int = 16, augment: bool = True, path: str | Path | None = None, scale: int | None = None
    ) -> Image.Image:
        """A grid image of `n` samples with their labels (`scale`: output pixels per image pixel)."""
        from labcon.data.report import show_batch

        return show_batch(self, n, augment, path, scale=scale)

    def __repr__(self) -> str:
        parts = [
            f"get_items={self.get_items!r}",
            f"splitter={self.splitter!r}",
            f"labeller={self.labeller!r}",
            f"item_tfms={self.item_tfms!r}",
            f"batch_tfms={self.batch_tfms!r}",
            f"bs={self.bs}",
        ]
        return "DataBlock(" + ", ".join(parts) + ")"


def _join(probs: list[str]) -> str:
    if len(probs) == 1:
        return probs[0]
    return f"{len(probs)} problems with the data block:\n" + "\n".join(
        f"  {i}. {p}" for i, p in enumerate(probs, 1)
    )


def _empty_class_dirs(items: Sequence[Path]) -> list[Path]:
    # Siblings of the folders that hold items: class folders that ended up with nothing in them.
    parents = {p.parent for p in items}
    holders = {a for p in parents for a in (p, *p.parents)}
    out = []
    for gp in sorted({p.parent for p in parents}):
        try:
            for d in gp.iterdir():
                if d.is_dir() and not d.name.startswith(".") and d not in holders:
                    out.append(d)
        except OSError:
            continue
    return sorted(out)
