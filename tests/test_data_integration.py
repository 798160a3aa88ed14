"""Integration on the shared datasets (skipped when ../shared/data is absent)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from labcon.data import ColLabeller, DataBlock, GrandparentSplitter, Resize
from labcon.data.datasets import imagenette_block, mnist_tiny_block

pytestmark = pytest.mark.shared_data


def test_mnist_tiny_builds_summarises_and_batches(mnist_tiny: Path) -> None:
    block = mnist_tiny_block(mnist_tiny, bs=32)
    dls = block.dataloaders()
    assert dls.vocab == ["3", "7"] and dls.c == 2
    prep = block.check()
    assert len(prep.train_items) == 709 and len(prep.valid_items) == 699
    x, y = next(iter(dls.valid))
    assert x.shape == (32, 3, 28, 28) and x.dtype == torch.float32
    want = [dls.vocab.index(p.parent.name) for p in prep.valid_items[:32]]
    assert y.tolist() == want
    raw = next(dls.valid.raw_batches())["x"]
    ref = torch.stack(
        [
            torch.from_numpy(__import__("numpy").array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
            for p in prep.valid_items[:32]
        ]
    )
    assert torch.equal(raw, ref)  # 28 px in, 28 px out: exact pixels
    s = block.summary()
    assert "train 709, valid 699" in s and "vocab from training: 2 [3, 7]" in s and "mode=L" in s


def test_mnist_tiny_csv_labels_agree_with_folders(mnist_tiny: Path) -> None:
    block = DataBlock(
        splitter=GrandparentSplitter(), labeller=ColLabeller("labels.csv"), item_tfms=[Resize(28)]
    )
    prep = block.check(mnist_tiny)
    assert [prep.vocab[y] for y in prep.train_labels] == [p.parent.name for p in prep.train_items]


def test_imagenette_builds_and_batches(imagenette: Path) -> None:
    block = imagenette_block(imagenette, size=128, bs=16)
    dls = block.dataloaders()
    prep = block.check()
    assert dls.c == 10 and len(prep.train_items) == 9469 and len(prep.valid_items) == 3925
    x, y = dls.one_batch()
    assert x.shape == (16, 3, 128, 128) and x.dtype == torch.float32 and y.max() < 10
    xv, _ = dls.one_batch(valid=True)
    assert xv.shape == (16, 3, 128, 128)
    s = block.summary()
    assert "RandomResizedCrop" in s and "open (JPEG" in s and "Affine" in s


def test_imagenette_greyscale_images_come_out_rgb(imagenette: Path) -> None:
    files = sorted(imagenette.rglob("*.JPEG"))
    grey = [p for p in files if Image.open(p).mode == "L"]
    assert len(grey) == 242
    block = imagenette_block(imagenette, size=64)
    pipe = block.item_pipeline()
    for p in random.Random(0).sample(grey, 8):
        for train in (True, False):
            x = pipe(p, random.Random(1), train)
            assert x.shape == (3, 64, 64) and x.dtype == torch.uint8
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
