"""The dihedral transform: 8 distinct symmetries, PIL (uint8 items) and device batches agree, config reach."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from labcon.data.dihedral import BatchDihedral, Dihedral, dihedral_pil, dihedral_tensor
from labcon.errors import ConfigError, DataError


def _img(h: int = 5, w: int = 5) -> Image.Image:
    a = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    return Image.fromarray(a)


def test_eight_distinct_symmetries_and_tensor_matches_pil() -> None:
    img = _img()
    outs = [np.asarray(dihedral_pil(img, k)) for k in range(8)]
    assert len({o.tobytes() for o in outs}) == 8  # all different
    assert all(o.dtype == np.uint8 for o in outs)
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    for k in range(8):
        assert torch.equal(dihedral_tensor(t, k), torch.from_numpy(outs[k].copy()).permute(2, 0, 1)), k
    # Symmetry 1 is a quarter turn counter-clockwise; 4 mirrors left-right.
    assert np.array_equal(outs[1], np.rot90(np.asarray(img)))
    assert np.array_equal(outs[4], np.asarray(img)[:, ::-1])


def test_item_transform_random_choice_and_p() -> None:
    img = _img()
    rng = random.Random(0)
    seen = {np.asarray(Dihedral(p=1.0)(img, rng)).tobytes() for _ in range(200)}
    assert len(seen) == 8
    assert Dihedral(p=0.0)(img, rng) is img
    rect = _img(4, 6)
    assert all(Dihedral(p=1.0)(rect, rng).size == rect.size for _ in range(50))
    with pytest.raises(DataError, match="between 0 and 1"):
        Dihedral(p=2)


def test_batch_transform_on_device_batches() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).reshape(64, 3, 4, 4)
    y = BatchDihedral(p=1.0)(x, g)
    # Every image is one of the 8 symmetries of itself, and several different ones were used.
    ks = []
    for i in range(64):
        k = next(k for k in range(8) if torch.equal(y[i], dihedral_tensor(x[i], k)))
        ks.append(k)
    assert len(set(ks)) >= 6
    u8 = torch.randint(0, 255, (8, 3, 4, 6), dtype=torch.uint8)
    out = BatchDihedral(p=1.0)(u8, g)
    assert out.dtype == torch.uint8 and out.shape == u8.shape  # non-square: shape-keeping symmetries
    assert torch.equal(BatchDihedral(p=0.0)(x, g), x)


def test_dihedral_from_config(tmp_path) -> None:
    from labcon.data.block import DataBlock

    block = DataBlock.from_config(
        {
            "preset": "shapes",
            "item_tfms": [{"kind": "dihedral", "p": 0.5}],
            "batch_tfms": ["dihedral", "normalize"],
        },
        tmp_path,
    )
    assert any(isinstance(t, Dihedral) for t in block.item_tfms)
    assert any(isinstance(t, BatchDihedral) for t in block.batch_tfms)
    with pytest.raises(ConfigError, match="dihedral"):
        DataBlock.from_config({"preset": "shapes", "item_tfms": [{"kind": "dihedral", "q": 1}]}, tmp_path)
