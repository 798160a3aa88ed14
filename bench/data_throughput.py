"""Images/s: labcon's DataBlock pipeline vs a plain PIL + torch DataLoader, same workers, alternating.

    python bench/data_throughput.py [--data ../shared/data/imagenette2-160] [--workers 2] [--n 2560]

Both produce normalised float 128 px training batches (RandomResizedCrop scale 0.08-1 + flip) on
the CPU "device". The reference decodes the full image, converts to RGB, crops, resizes and makes a
float tensor in the worker (the usual torchvision-style recipe); labcon decodes JPEGs at reduced
size when the crop allows it, crops inside the resize, ships uint8 and makes floats on the device.
A second reference ('ref-uint8') also ships uint8, to separate the two effects.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcon.data import DataBlock, Flip, GrandparentSplitter, Normalize, ParentLabeller, RandomResizedCrop  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def rrc_box(w: int, h: int, rng: random.Random) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop box (scale 0.08-1, ratio 3/4-4/3)."""
    for _ in range(10):
        area = w * h * rng.uniform(0.08, 1.0)
        ar = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = math.sqrt(area * ar), math.sqrt(area / ar)
        if cw <= w and ch <= h:
            x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            return (x, y, x + cw, y + ch)
    return (0, 0, w, h)


class RefDataset(Dataset):
    """The plain recipe: open, convert RGB, crop, resize, flip, to tensor (float or uint8)."""

    def __init__(self, items: list[Path], labels: list[int], as_float: bool):
        self.items, self.labels, self.as_float = items, labels, as_float

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = random.Random(i)
        img = Image.open(self.items[i]).convert("RGB")
        img = img.crop(tuple(round(v) for v in rrc_box(*img.size, rng))).resize((128, 128), Image.BILINEAR)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)
        if self.as_float:
            x = (x.float() / 255 - MEAN) / STD
        return x, self.labels[i]


def run_ref(ds: RefDataset, bs: int, workers: int) -> float:
    """Images/s of one pass of the reference loader (uint8 variant normalises in the main process)."""
    t = time.perf_counter()
    n = 0
    for x, _ in DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True):
        if x.dtype == torch.uint8:
            x = (x.float() / 255 - MEAN) / STD
        n += len(x)
    return n / (time.perf_counter() - t)


def run_labcon(block: DataBlock, path: Path, items: set[Path], bs: int, workers: int) -> float:
    """Images/s of one pass of labcon's training loader over the same subset."""
    prep = block.check(path)
    keep = [(p, y) for p, y in zip(prep.train_items, prep.train_labels, strict=True) if p in items]
    prep.train_items, prep.train_labels = [p for p, _ in keep], [y for _, y in keep]
    dls = block.dataloaders(path, bs=bs, num_workers=workers)
    t = time.perf_counter()
    n = 0
    for x, _ in dls.train:
        n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/imagenette2-160")
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=2560, help="images per pass")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    path = Path(a.data)
    torch.set_num_threads(1)
    block = DataBlock(
        splitter=GrandparentSplitter("train", "val"),
        labeller=ParentLabeller(),
        item_tfms=[RandomResizedCrop(128), Flip()],
        batch_tfms=[Normalize.imagenet()],
    )
    prep = block.check(path)
    idx = random.Random(0).sample(range(len(prep.train_items)), a.n)
    items = [prep.train_items[i] for i in idx]
    labels = [prep.train_labels[i] for i in idx]
    subset = set(items)
    ref_f, ref_u = RefDataset(items, labels, True), RefDataset(items, labels, False)
    res: dict[str, list[float]] = {"labcon": [], "ref-float": [], "ref-uint8": []}
    for r in range(a.rounds):
        res["ref-float"].append(run_ref(ref_f, a.bs, a.workers))
        res["labcon"].append(run_labcon(block, path, subset, a.bs, a.workers))
        res["ref-uint8"].append(run_ref(ref_u, a.bs, a.workers))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in res.items()), flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    print(
        f"median img/s ({a.workers} workers, {a.n} images/pass, bs {a.bs}, 128 px RandomResizedCrop + flip):"
    )
    for k, v in med.items():
        print(f"  {k:<10} {v:8.0f}")
    print(f"ratio labcon / ref-float: {med['labcon'] / med['ref-float']:.2f}x")
    print(f"ratio labcon / ref-uint8: {med['labcon'] / med['ref-uint8']:.2f}x")


if __name__ == "__main__":
    main()
