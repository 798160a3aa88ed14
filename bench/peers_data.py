"""Image pipelines side by side: labcon's DataBlock loader vs torchvision's ImageFolder + DataLoader and fastai's
DataBlock loaders, the same images, augmentation, batch size and workers, passes interleaved in one process.

Every loader yields normalised float 128 px training batches (RandomResizedCrop scale 0.08-1, ratio 3/4-4/3,
then a horizontal flip, ImageNet statistics) on the CPU, shuffled, `--workers` worker processes each:
- labcon: its DataBlock (uint8 from the workers, one fused normalise in the main process);
- torchvision: ImageFolder + `transforms` (PIL crop/resize/flip, ToTensor, Normalize in the worker), the
  recipe of torchvision's ImageNet example;
- torchvision-v2: ImageFolder decoding with `torchvision.io.decode_image`, `transforms.v2` on uint8 tensors,
  uint8 batches normalised in the main process (the faster modern recipe);
- fastai: `DataBlock(ImageBlock, CategoryBlock)` with RandomResizedCrop + FlipItem item transforms, its
  IntToFloatTensor + Normalize batch transforms.
Optional dependencies (torchvision, fastai): one that is missing is skipped with a note. Not run in CI.
Usage: python bench/peers.py --pipeline [--data DIR] [--n 2560] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_throughput import run_labcon  # noqa: E402

from labcon.data import DataBlock, Flip, GrandparentSplitter, Normalize, ParentLabeller, RandomResizedCrop

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Pass = Callable[[], float]


def images_per_s(
    batches: Iterable[Any], to_float: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> float:
    """Images/s of one pass over `batches` (to_float: the main-process step that makes normalised floats)."""
    t = time.perf_counter()
    n = 0
    for x, _ in batches:
        if to_float is not None:
            x = to_float(x)
        n += len(x)
    return n / (time.perf_counter() - t)


def torchvision_pass(root: Path, items: list[Path], bs: int, workers: int, v2: bool) -> Pass:
    """ImageFolder over the training folder, restricted to `items`, in a shuffled DataLoader."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, io, transforms

    if v2:
        from torchvision.transforms import v2 as T

        tfm = T.Compose([T.RandomResizedCrop(128, antialias=True), T.RandomHorizontalFlip()])
        ds = datasets.ImageFolder(
            str(root / "train"),
            transform=tfm,
            loader=lambda p: io.decode_image(p, mode=io.ImageReadMode.RGB),
        )
        mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(STD).view(1, 3, 1, 1) * 255

        def to_float(x: torch.Tensor) -> torch.Tensor:
            return (x.float() - mean) / std

    else:
        tfm = transforms.Compose(
            [
                transforms.RandomResizedCrop(128),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )
        ds = datasets.ImageFolder(str(root / "train"), transform=tfm)
        to_float = None
    index = {Path(p): i for i, (p, _) in enumerate(ds.samples)}
    sub = Subset(ds, [index[p] for p in items])
    dl = DataLoader(sub, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True)
    return lambda: images_per_s(dl, to_float)


def fastai_pass(root: Path, items: list[Path], bs: int, workers: int) -> Pass:
    """fastai's DataBlock over `items` plus one validation image (its splitter wants both sides)."""
    from fastai.vision.all import (
        CategoryBlock,
        FlipItem,
        ImageBlock,
        imagenet_stats,
        parent_label,
    )
    from fastai.vision.all import DataBlock as FastDataBlock
    from fastai.vision.all import GrandparentSplitter as FastSplitter
    from fastai.vision.all import Normalize as FastNormalize
    from fastai.vision.all import RandomResizedCrop as FastRRC

    valid = next((root / "val").rglob("*.JPEG"))
    block = FastDataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=lambda _p: [*items, valid],
        splitter=FastSplitter("train", "val"),
        get_y=parent_label,
        item_tfms=[FastRRC(128, min_scale=0.08), FlipItem(0.5)],
        batch_tfms=[FastNormalize.from_stats(*imagenet_stats)],
    )
    dls = block.dataloaders(root, bs=bs, num_workers=workers, device=torch.device("cpu"))
    return lambda: images_per_s(dls.train)


def labcon_pass(root: Path, items: list[Path], bs: int, workers: int) -> Pass:
    """labcon's DataBlock training loader over the same subset (bench/data_throughput.py)."""
    block = DataBlock(
        splitter=GrandparentSplitter("train", "val"),
        labeller=ParentLabeller(),
        item_tfms=[RandomResizedCrop(128), Flip()],
        batch_tfms=[Normalize.imagenet()],
    )
    subset = set(items)
    return lambda: run_labcon(block, root, subset, bs, workers)


def run_pipelines(root: Path, n: int, bs: int, workers: int, rounds: int) -> dict[str, Any]:
    """Median images/s per loader over `rounds` interleaved passes, and each peer's ratio to labcon."""
    torch.set_num_threads(1)
    files = sorted((root / "train").rglob("*.JPEG"))
    if len(files) < n:
        sys.exit(
            f"{root}/train has {len(files)} JPEGs, fewer than --n {n}: pass --data (imagenette2-160) or a smaller --n"
        )
    items = random.Random(0).sample(files, n)
    out: dict[str, Any] = {"bench": "image pipelines", "images_per_pass": n, "bs": bs, "workers": workers}
    makers: dict[str, Callable[[], Pass]] = {
        "labcon": lambda: labcon_pass(root, items, bs, workers),
        "torchvision": lambda: torchvision_pass(root, items, bs, workers, v2=False),
        "torchvision-v2": lambda: torchvision_pass(root, items, bs, workers, v2=True),
        "fastai": lambda: fastai_pass(root, items, bs, workers),
    }
    passes: dict[str, Pass] = {}
    for name, make in makers.items():
        try:
            passes[name] = make()
        except ImportError as e:
            out[name] = {"skipped": f"{e.name or e} is not installed"}
    res: dict[str, list[float]] = {k: [] for k in passes}
    for r in range(rounds):
        order = list(passes) if r % 2 == 0 else list(reversed(passes))
        for k in order:
            res[k].append(passes[k]())
        print(
            f"round {r}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in res.items()),
            file=sys.stderr,
            flush=True,
        )
    for k, v in res.items():
        med = statistics.median(v)
        out[k] = {"img_per_s": [round(x) for x in v], "median": round(med)}
        if k != "labcon":
            out[k]["labcon_over_peer"] = round(statistics.median(res["labcon"]) / med, 3)
            wins = sum(a > b for a, b in zip(res["labcon"], v, strict=True))
            out[k]["labcon_ahead_in_rounds"] = f"{wins}/{len(v)}"
    return out
