"""Bad input: each case gives a DataError naming the file, or with skip_bad=True a counted warning."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labcon.data import DataBlock, GrandparentSplitter, ParentLabeller, Resize
from labcon.errors import DataError


def _good(d: Path, n: int, mode: str = "RGB") -> None:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).convert(mode).save(d / f"g{i}.png")


def _tree(root: Path) -> Path:
    _good(root / "train" / "a", 4)
    _good(root / "train" / "b", 4)
    _good(root / "valid" / "a", 2)
    _good(root / "valid" / "b", 2)
    return root


def _block(skip_bad: bool = False, resize: bool = True) -> DataBlock:
    return DataBlock(
        splitter=GrandparentSplitter(),
        labeller=ParentLabeller(),
        item_tfms=[Resize(8)] if resize else [],
        bs=4,
        skip_bad=skip_bad,
    )


def _count_valid(dls: object) -> int:
    return sum(len(y) for _, y in dls.valid)  # type: ignore[attr-defined]


def _corrupt(p: Path) -> None:
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)


def _truncated(p: Path) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        p.with_suffix(".jpg")
    )
    data = p.with_suffix(".jpg").read_bytes()
    p.with_suffix(".jpg").unlink()
    p.write_bytes(data[: len(data) // 2])


def _not_image(p: Path) -> None:
    p.write_text("this is a text file with an image extension\n")


CASES = {
    "corrupt": ("bad.png", _corrupt, "corrupt or truncated image data"),
    "truncated": ("trunc.jpg", _truncated, "truncated"),
    "not_image": ("notes.png", _not_image, "not an image PIL can read"),
    "non_ascii_corrupt": ("ünï 猫.png", _not_image, "not an image"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_raises_naming_it_or_is_skipped_with_warning(tmp_path: Path, case: str) -> None:
    name, make, why = CASES[case]
    _tree(tmp_path)
    bad = tmp_path / "valid" / "a" / name
    make(bad)
    dls = _block().dataloaders(tmp_path)
    with pytest.raises(DataError) as e:
        _count_valid(dls)
    assert str(bad) in str(e.value) and why in str(e.value) and "skip_bad=True" in str(e.value)
    dls = _block(skip_bad=True).dataloaders(tmp_path, num_workers=2)
    with pytest.warns(UserWarning, match=r"skipped 1 bad image\(s\)"):
        n = _count_valid(dls)
    assert n == 4  # 5 validation items, one skipped


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    _tree(tmp_path)
    p = tmp_path / "valid" / "a" / "g0.png"
    p.chmod(0)
    try:
        with pytest.raises(DataError, match=rf"cannot read image {p}: permission denied"):
            list(_block().dataloaders(tmp_path).valid)
    finally:
        p.chmod(0o644)


def test_mixed_modes_become_rgb(tmp_path: Path) -> None:
    _tree(tmp_path)
    d = tmp_path / "train" / "a"
    Image.new("L", (10, 10), 77).save(d / "grey.png")
    Image.new("RGBA", (10, 10), (1, 2, 3, 255)).save(d / "rgba.png")
    Image.new("CMYK", (10, 10), (0, 255, 0, 0)).save(d / "cmyk.jpg")
    Image.new("P", (10, 10), 5).save(d / "pal.gif")
    Image.new("I;16", (10, 10), 1000).save(d / "deep.png")
    dls = _block().dataloaders(tmp_path, bs=13)
    xb = dls.train.raw_batches().__next__()["x"]
    assert xb.shape == (13, 3, 8, 8) and xb.dtype == torch.uint8


def test_different_sizes_without_resize_is_named(tmp_path: Path) -> None:
    _tree(tmp_path)
    Image.new("RGB", (20, 14)).save(tmp_path / "train" / "a" / "big.png")
    with pytest.raises(DataError, match="different sizes 10x10 and 14x20 — add a resize item transform"):
        list(_block(resize=False).dataloaders(tmp_path, bs=16).train)


def test_empty_class_folder(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(
        DataError, match=r"class folder\(s\) contain no images: .*train/c — add images or remove"
    ):
        _block().dataloaders(tmp_path)
    with pytest.warns(UserWarning, match="contain no images.*skipped"):
        dls = _block(skip_bad=True).dataloaders(tmp_path)
    assert dls.vocab == ["a", "b"]


def test_non_ascii_names_work(tmp_path: Path) -> None:
    _good(tmp_path / "train" / "chat noir 猫", 4)
    _good(tmp_path / "train" / "ölçek", 4)
    _good(tmp_path / "valid" / "chat noir 猫", 1)
    _good(tmp_path / "valid" / "ölçek", 1)
    shutil.move(tmp_path / "train" / "ölçek" / "g0.png", tmp_path / "train" / "ölçek" / "ğüş ✓.png")
    dls = _block().dataloaders(tmp_path)
    assert dls.vocab == ["chat noir 猫", "ölçek"]
    assert sum(len(y) for _, y in dls.train) == 8
