"""DataBlock: checks with plain-words errors, vocab from train only, loaders, resume, shards, config."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labcon.data import (
    Affine,
    BlockDataLoaders,
    DataBlock,
    DataLoaders,
    Flip,
    GrandparentSplitter,
    Normalize,
    ParentLabeller,
    RandomResizedCrop,
    RandomSplitter,
    Resize,
)
from labcon.errors import ConfigError, DataError


def make_tree(root: Path, splits: dict[str, dict[str, int]], size: int = 12) -> Path:
    """root/<split>/<class>/<i>.png, each class a distinct solid colour."""
    for split, classes in splits.items():
        for ci, (cls, n) in enumerate(sorted(classes.items())):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.full((size, size, 3), (ci * 60 % 256, i * 7 % 256, 100), np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _block(**kw: object) -> DataBlock:
    base = dict(splitter=GrandparentSplitter(), labeller=ParentLabeller(), item_tfms=[Resize(8)], bs=4)
    base.update(kw)
    return DataBlock(**base)  # type: ignore[arg-type]


def test_parts_in_any_order_positional_or_keyword(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 3, "b": 3}, "valid": {"a": 2, "b": 2}})
    b1 = DataBlock(Resize(8), ParentLabeller(), Normalize.imagenet(), GrandparentSplitter(), bs=2)
    b2 = DataBlock(
        bs=2,
        batch_tfms=[Normalize.imagenet()],
        item_tfms=[Resize(8)],
        labeller=ParentLabeller(),
        splitter=GrandparentSplitter(),
    )
    d1, d2 = b1.dataloaders(tmp_path), b2.dataloaders(tmp_path)
    x1, y1 = d1.one_batch(valid=True)
    x2, y2 = d2.one_batch(valid=True)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    with pytest.raises(DataError, match="cannot tell which part"):
        DataBlock(42)
    with pytest.raises(DataError, match="two splitters"):
        DataBlock(GrandparentSplitter(), RandomSplitter())


def test_missing_and_misplaced_parts_named_together(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 1}, "valid": {"a": 1}})
    with pytest.raises(DataError) as e:
        DataBlock(item_tfms=[Normalize.imagenet()], batch_tfms=[Flip()], bs=0).dataloaders(tmp_path)
    msg = str(e.value)
    for part in (
        "no splitter",
        "no labeller",
        "item_tfms[0] is Normalize, a batch transform — move it to batch_tfms",
        "batch_tfms[0] is Flip, a item transform — move it to item_tfms",
        "bs must be a positive",
    ):
        assert part in msg, (part, msg)
    with pytest.raises(DataError, match="no data path"):
        _block().dataloaders()


def test_grandparent_missing_folder_message(tmp_path: Path) -> None:
    make_tree(tmp_path, {"training": {"a": 2}, "testing": {"a": 2}})
    with pytest.raises(DataError) as e:
        _block(splitter=GrandparentSplitter("training", "valid")).dataloaders(tmp_path)
    assert str(e.value) == (
        f"splitter 'grandparent' found no 'valid' folder under {tmp_path}; "
        "folders present: testing, training — set valid='testing'"
    )


def test_no_images_found(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="found no image files under .*entries present: readme.txt, train"):
        _block().dataloaders(tmp_path)


def test_vocab_from_train_only_and_valid_only_labels_reported(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"cat": 3, "dog": 3}, "valid": {"cat": 2, "dog": 1, "emu": 2}})
    with pytest.warns(UserWarning, match=r"labels only in the validation set.*'emu' \(2 items\)"):
        dls = _block().dataloaders(tmp_path)
    assert dls.vocab == ["cat", "dog"] and dls.c == 2
    ys = torch.cat([y for _, y in dls.valid])
    assert sorted(ys.tolist()) == [0, 0, 1]
    with pytest.warns(UserWarning, match="labels only in the validation set"):
        assert "labels only in validation (dropped): emu" in _block().summary(tmp_path)


def test_loaders_are_uint8_until_device_and_match_pipeline(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 5, "b": 5}, "valid": {"a": 3, "b": 3}})
    dls = _block(batch_tfms=[Normalize((0.5,) * 3, (0.5,) * 3)]).dataloaders(tmp_path)
    assert isinstance(dls, DataLoaders) and isinstance(dls, BlockDataLoaders)
    raw = next(dls.valid.raw_batches())
    assert raw["x"].dtype == torch.uint8 and raw["x"].shape == (4, 3, 8, 8)
    x, y = next(iter(dls.valid))
    assert x.dtype == torch.float32 and torch.allclose(x, (raw["x"].float() / 255 - 0.5) / 0.5)
    assert torch.equal(y, raw["y"])
    assert len(dls.train) == 2 and len(dls.valid) == 2  # train drops the partial batch; valid keeps it
    assert sum(len(xb) for xb, _ in dls.valid) == 6
    assert dls.to("cpu") is dls and dls.train.device == torch.device("cpu")


def test_epoch_order_is_seeded_and_resumable(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 8, "b": 8}, "valid": {"a": 1, "b": 1}})
    block = _block(item_tfms=[RandomResizedCrop(8), Flip()], batch_tfms=[Affine()])

    def epoch_batches(dls: BlockDataLoaders) -> list[torch.Tensor]:
        return [x for x, _ in dls.train]

    a = block.dataloaders(tmp_path, seed=1)
    e0, e1 = epoch_batches(a), epoch_batches(a)
    assert not all(torch.equal(p, q) for p, q in zip(e0, e1, strict=True))  # epochs differ
    state = a.state_dict()
    assert state == {"epoch": 2, "seed": 1}
    e2 = epoch_batches(a)
    b = block.dataloaders(tmp_path, seed=1, num_workers=2)  # workers do not change the stream
    b.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(epoch_batches(b), e2, strict=True))
    b.set_epoch(0)
    assert all(torch.equal(p, q) for p, q in zip(epoch_batches(b), e0, strict=True))
    c = block.dataloaders(tmp_path, seed=2)
    assert not all(torch.equal(p, q) for p, q in zip(epoch_batches(c), e0, strict=True))


def test_world_size_shards_cover_the_permutation(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 5, "b": 5}, "valid": {"a": 2, "b": 3}})
    block = _block()
    shards = [block.dataloaders(tmp_path, rank=r, world_size=3, seed=4).train.sampler for r in range(3)]
    idx = [[i for i, _ in s] for s in shards]
    assert [len(i) for i in idx] == [4, 4, 4]
    assert set(idx[0]) | set(idx[1]) | set(idx[2]) == set(range(10))
    v = [list(block.dataloaders(tmp_path, rank=r, world_size=2).valid.sampler) for r in range(2)]
    assert sorted(i for s in v for i, _ in s) == list(range(5))
    with pytest.raises(DataError, match="rank must be"):
        block.dataloaders(tmp_path, rank=2, world_size=2)


def test_summary_walks_every_stage(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    s = _block(item_tfms=[Flip(), RandomResizedCrop(8)], batch_tfms=[Affine(), Normalize.imagenet()]).summary(
        tmp_path
    )
    for needle in (
        "1. get items",
        "2. split",
        "train 4, valid 2",
        "3. label",
        "4. categorise",
        "vocab from training: 2",
        "RandomResizedCrop",
        "MakeRGB",
        "Flip",
        "to tensor (uint8 CHW)",
        "shape=(3, 8, 8) dtype=uint8",
        "6. collate",
        "shape=(4, 3, 8, 8)",
        "to float [0, 1]",
        "Affine",
        "Normalize",
        "dtype=float32",
    ):
        assert needle in s, (needle, s)
    lines = s.splitlines()
    assert lines.index(next(ln for ln in lines if "RandomResizedCrop" in ln)) < lines.index(
        next(ln for ln in lines if "Flip(" in ln)
    )
    # Every stage after the split says its time per item.
    timed = [ln for ln in lines if ln.startswith(("   ", "6.", "7."))]
    assert len(timed) >= 8 and all(re.search(r"\d+\.\d{3} ms", ln) for ln in timed), timed


def test_show_batch_grid(tmp_path: Path) -> None:
    make_tree(tmp_path, {"train": {"a": 5, "b": 5}, "valid": {"a": 2, "b": 2}})
    img = _block(batch_tfms=[Affine(), Normalize.imagenet()]).show_batch(n=9, path=tmp_path)
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    assert img.size[0] > 3 * 64 and img.size[1] > 3 * 64
    small = _block().show_batch(n=4, augment=False, path=tmp_path)
    assert small.size[0] < img.size[0]


def test_from_config(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", {"train": {"a": 4, "b": 4}, "valid": {"a": 2, "b": 2}})
    table = {
        "path": "d",
        "splitter": {"kind": "grandparent", "train": "train", "valid": "valid"},
        "labeller": "parent",
        "size": 8,
        "item_tfms": ["flip", {"kind": "random_resized_crop", "scale": [0.5, 1.0]}],
        "batch_tfms": [{"kind": "affine", "max_rotate": 5.0}, {"kind": "normalize", "stats": "imagenet"}],
        "bs": 2,
        "num_workers": 0,
    }
    block = DataBlock.from_config(table, tmp_path)
    x, y = block.dataloaders().one_batch()
    assert x.shape == (2, 3, 8, 8) and block.item_tfms[1].scale == (0.5, 1.0)
    with pytest.raises(
        ConfigError, match=r"^data\.splitter\.valid: splitter 'grandparent' found no 'val' folder"
    ):
        DataBlock.from_config({**table, "splitter": {"kind": "grandparent", "valid": "val"}}, tmp_path)
    bad = {
        "bs": ({**table, "bs": "64"}, r"^data\.bs: must be a whole number"),
        "key": ({**table, "sise": 3}, r"^data\.sise: unknown key"),
        "kind": (
            {**table, "labeller": {"kind": "grandma"}},
            r"^data\.labeller\.kind: unknown kind 'grandma'",
        ),
        "setting": (
            {**table, "item_tfms": [{"kind": "flip", "q": 1}]},
            r"^data\.item_tfms\[0\]\.q: unknown setting",
        ),
        "path": ({**table, "path": "nowhere"}, r"^data\.path: folder .* does not exist"),
        # The missing folder is the problem named, not the splitter a config without one would also lack.
        "path first": ({"path": "nowhere"}, r"^data\.path: folder .* does not exist"),
        "regex": (
            {**table, "labeller": {"kind": "regex", "pattern": "("}},
            r"^data\.labeller: labeller regex",
        ),
        "preset": ({"preset": "cifar"}, r"^data\.preset: unknown preset"),
    }
    for name, (t, pat) in bad.items():
        with pytest.raises(ConfigError, match=pat):
            DataBlock.from_config(t, tmp_path)
            pytest.fail(name)


def test_an_incomplete_download_is_called_that(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCON_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "mnist_tiny").mkdir(parents=True)  # an unpack that stopped before any file
    with pytest.raises(
        ConfigError, match="download looks incomplete: remove .*mnist_tiny and run `labcon data get"
    ):
        DataBlock.from_config({"preset": "mnist_tiny"}, tmp_path)


def test_from_config_preset_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCON_DATA", str(tmp_path / "data"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block = DataBlock.from_config({"preset": "shapes", "bs": 16, "size": 24}, tmp_path)
    assert block.path == tmp_path / "data" / "shapes" and block.bs == 16
    x, _ = block.dataloaders().one_batch()
    assert x.shape == (16, 3, 24, 24)
