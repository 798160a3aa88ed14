"""Imagenette at 128 px with a plain course recipe: how close does it get to the leaderboard?

Recipe: xresnet18 (or --arch xresnet34/50), Adam with decoupled weight decay, one-cycle (warm-up 0.25),
label-smoothing cross-entropy (eps 0.1), RandomResizedCrop(scale 0.35-1) + flip on uint8 items and an
affine warp + normalisation on the device; bf16 autocast on CUDA. Public reference (fastai/imagenette
leaderboard, 128 px, 5 epochs): 85.8 % top-1 with xresnet50 and extras.
Prints per-epoch validation accuracy, epoch time and training images/s, then a JSON line.

Usage: python bench/imagenette.py [--data ../shared/data/imagenette2-160] [--epochs 5] [--arch xresnet18]
       [--bs 64] [--lr 3e-3] [--wd 1e-2] [--mixup 0] [--workers 8] [--device auto]
       [--subset N (N train / N//4 valid images per class: a smoke run)] [--max-batches K]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from labcon import Callback, Runner
from labcon.core.callbacks.mixup import Mixup
from labcon.core.callbacks.precision import MixedPrecision
from labcon.core.events import CancelTrainException, CancelValidateException
from labcon.core.losses import LabelSmoothingCrossEntropy
from labcon.core.metrics import accuracy
from labcon.core.optim import Adam
from labcon.core.runner import default_device
from labcon.data.datasets import imagenette_block
from labcon.nn import xresnet

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette2-160"


class Timer(Callback):
    """Training time and images per epoch (validation excluded), and an optional cap on batches."""

    order = 55

    def __init__(self, max_batches: int | None = None):
        self.max_batches = max_batches
        self.rows: list[dict[str, float]] = []

    def before_train(self) -> None:
        self.t0, self.n = time.perf_counter(), 0

    def after_batch(self) -> None:
        if self.runner.training:
            self.n += len(self.runner.yb)
        if self.max_batches and self.runner.iter + 1 >= self.max_batches:
            raise CancelTrainException() if self.runner.training else CancelValidateException()

    def after_train(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = time.perf_counter() - self.t0
        self.rows.append({"train_s": dt, "images": self.n, "images_per_s": self.n / dt})


def subset_tree(src: Path, per_class: int, dst: Path) -> Path:
    """train/val folders of symlinks to the first per_class (val: per_class // 4) images of each class."""
    for split, n in (("train", per_class), ("val", max(1, per_class // 4))):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            d = dst / split / cls.name
            d.mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                os.symlink(f, d / f.name)
    return dst


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--arch", default="xresnet18", choices=("xresnet18", "xresnet34", "xresnet50"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=1e-2)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--mixup", type=float, default=0.0, help="Beta(a, a) parameter; 0 = off")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--subset", type=int, default=0)
    ap.add_argument("--max-batches", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        sys.exit(f"no Imagenette at {a.data}; pass --data PATH (imagenette2-160 layout: train/ and val/)")
    torch.manual_seed(a.seed)
    dev = default_device() if a.device == "auto" else torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = subset_tree(a.data, a.subset, Path(tmp) / "subset") if a.subset else a.data
        block = imagenette_block(path, size=a.size, bs=a.bs)
        dls = block.dataloaders(num_workers=a.workers, seed=a.seed)
        model = getattr(xresnet, a.arch)(c_in=3, n_out=dls.c)
        timer = Timer(a.max_batches or None)
        cbs: list[Callback] = [timer]
        if dev.type == "cuda":
            cbs.append(MixedPrecision("bf16"))
        if a.mixup > 0:
            cbs.append(Mixup(a.mixup))

        def opt_func(params: Any, lr: float) -> torch.optim.Optimizer:
            return Adam(params, lr=lr, wd=a.wd)

        runner = Runner(
            model,
            dls,
            loss_func=LabelSmoothingCrossEntropy(a.smoothing),
            opt_func=opt_func,
            lr=a.lr,
            cbs=cbs,
            metrics=[accuracy],
            device=dev,
        )
        n_train = len(dls.train.dataset) if hasattr(dls.train, "dataset") else 0
        print(
            f"{a.arch} {a.size}px bs {a.bs} lr {a.lr} wd {a.wd} smoothing {a.smoothing} mixup {a.mixup} "
            f"on {dev}; {dls.c} classes, train batches {len(dls.train)}, valid batches {len(dls.valid)}"
        )
        t0 = time.perf_counter()
        runner.fit_one_cycle(a.epochs, lr_max=a.lr, pct_start=0.25)
        total = time.perf_counter() - t0
        dls.close()
    rows = runner.recorder.rows
    for r, t in zip(rows, timer.rows, strict=False):
        print(
            f"epoch {r['epoch']}: valid accuracy {r['accuracy']:.4f}  valid loss {r['valid_loss']:.4f}  "
            f"epoch {r['time']:.1f} s  train {t['images_per_s']:.0f} images/s"
        )
    out = {
        "arch": a.arch,
        "size": a.size,
        "epochs": a.epochs,
        "device": str(dev),
        "subset": a.subset,
        "n_train": n_train,
        "accuracy": rows[-1]["accuracy"] if rows else None,
        "epoch_s": [round(r["time"], 2) for r in rows],
        "images_per_s": [round(t["images_per_s"], 1) for t in timer.rows],
        "total_s": round(total, 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
