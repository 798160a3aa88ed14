"""get_files, splitters, labellers, Category, item transforms and batch transforms vs references."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from labcon.data import (
    Affine,
    Category,
    ColLabeller,
    ColSplitter,
    Flip,
    FuncSplitter,
    GrandparentSplitter,
    MakeRGB,
    Normalize,
    ParentLabeller,
    RandomResizedCrop,
    RandomSplitter,
    RegexLabeller,
    Resize,
    get_files,
)
from labcon.data.augment import BatchPipeline
from labcon.data.transforms import ItemPipeline, Perspective, to_rgb
from labcon.errors import DataError


def _img(
    path: Path, size: tuple[int, int] = (8, 8), mode: str = "RGB", color: object = (200, 10, 10)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def test_get_files_filters_extensions_and_skips_hidden(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "x.png")
    _img(tmp_path / "a" / "y.JPG")
    _img(tmp_path / "a" / ".hidden.png")
    _img(tmp_path / ".git" / "z.png")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    _img(tmp_path / "b" / "c" / "ünïcødé 猫.png")
    files = get_files(tmp_path)
    names = [p.name for p in files]
    assert files == sorted(files)
    assert set(names) == {"x.png", "y.JPG", "ünïcødé 猫.png"}
    assert [p.name for p in get_files(tmp_path, extensions=[".txt"])] == ["notes.txt"]
    assert len(get_files(tmp_path, recurse=False)) == 0
    assert {p.name for p in get_files(tmp_path, folders=["a"])} == {"x.png", "y.JPG"}
    with pytest.raises(DataError, match="does not exist"):
        get_files(tmp_path / "nope")


def test_splitters(tmp_path: Path) -> None:
    items = [
        tmp_path / s / c / f"{i}.png" for s in ("train", "valid", "test") for c in "ab" for i in range(3)
    ]
    tr, va = GrandparentSplitter()(items, tmp_path)
    assert len(tr) == 6 and len(va) == 6 and all(items[i].parent.parent.name == "valid" for i in va)
    tr, va = RandomSplitter(0.25, seed=3)(items, tmp_path)
    assert len(va) == round(0.25 * 18) and sorted(tr + va) == list(range(18))
    assert RandomSplitter(0.25, seed=3)(items, tmp_path) == (tr, va)
    assert RandomSplitter(0.25, seed=4)(items, tmp_path) != (tr, va)
    tr, va = FuncSplitter(lambda p: p.stem == "0")(items, tmp_path)
    assert len(va) == 6
    (tmp_path / "labels.csv").write_text("name,is_valid,label\ntrain/a/0.png,0,x\ntrain/b/1.png,1,y\n")
    cs = ColSplitter("labels.csv")
    assert cs(items, tmp_path) == ([0], [4])
    assert ColLabeller("labels.csv")(items[4], tmp_path) == "y"
    with pytest.raises(DataError, match="no column 'nope'"):
        ColLabeller("labels.csv", col="nope")(items[0], tmp_path)


def test_grandparent_check_names_folders_and_suggests(tmp_path: Path) -> None:
    for d in ("training", "testing"):
        (tmp_path / d).mkdir()
    probs = GrandparentSplitter("training", "valid").check(tmp_path, [])
    assert len(probs) == 1
    assert "found no 'valid' folder" in probs[0] and "folders present: testing, training" in probs[0]
    assert "set valid='testing'" in probs[0]


def test_labellers(tmp_path: Path) -> None:
    p = tmp_path / "train" / "cat" / "dog_12.png"
    assert ParentLabeller()(p, tmp_path) == "cat"
    assert RegexLabeller(r"^([a-z]+)_\d+")(p, tmp_path) == "dog"
    with pytest.raises(DataError, match="needs a group"):
        RegexLabeller(r"\d+")
    with pytest.raises(DataError, match="not a valid regular expression"):
        RegexLabeller(r"(")
    assert RegexLabeller(r"^(\d+)").check(tmp_path, [p])


def test_category_vocab_sorted_naturally() -> None:
    c = Category()
    c.setup(["10", "2", "7", "2"])
    assert (
        c.vocab == ["2", "7", "10"] and c.encode("10") == 2 and c.encode("3") is None and c.decode(1) == "7"
    )


def test_make_rgb_modes() -> None:
    for mode, color in (
        ("L", 128),
        ("RGBA", (10, 20, 30, 255)),
        ("CMYK", (0, 0, 0, 0)),
        ("P", 3),
        ("1", 1),
        ("I;16", 40000),
        ("LA", (5, 255)),
    ):
        out = to_rgb(Image.new(mode, (4, 4), color))
        assert out.mode == "RGB", mode
    # Fully transparent pixels composite onto white.
    assert to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    assert MakeRGB()(Image.new("L", (3, 3), 9)).getpixel((0, 0)) == (9, 9, 9)


def test_random_resized_crop_boxes_within_scale_and_ratio() -> None:
    t = RandomResizedCrop(32)
    rng = random.Random(0)
    for _ in range(200):
        (lf, tp, r, b), out = t.plan((200, 150), rng, True)
        w, h = r - lf, b - tp
        assert out == (32, 32) and 0 <= lf and r <= 200 + 1e-9 and 0 <= tp and b <= 150 + 1e-9
        frac = w * h / (200 * 150)
        if (w, h) != (150, 150):  # the fallback centre crop
            assert 0.08 - 1e-9 <= frac <= 1 + 1e-9 and 3 / 4 - 1e-6 <= w / h <= 4 / 3 + 1e-6
    box, _ = t.plan((200, 150), rng, False)
    assert box == (25.0, 0.0, 175.0, 150.0)


def test_item_pipeline_order_and_uint8(tmp_path: Path) -> None:
    arr = torch.arange(40 * 30 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(30, 40, 3)
    p = tmp_path / "x.png"
    Image.fromarray(arr.numpy(), "RGB").save(p)
    # Declared out of order; runs crop -> make-RGB -> flip.
    pipe = ItemPipeline([Flip(p=1.0), Resize((40, 30), method="squish")])
    assert [type(t).__name__ for t in pipe.tfms] == ["Resize", "MakeRGB", "Flip"]
    x = pipe(p, random.Random(0), train=True)
    assert x.dtype == torch.uint8 and x.shape == (3, 30, 40)
    assert torch.equal(x, arr.permute(2, 0, 1).flip(-1))
    # Random transforms are off for validation.
    assert torch.equal(pipe(p, random.Random(0), train=False), arr.permute(2, 0, 1))
    y = ItemPipeline([Perspective(0.2, p=1.0), Resize(16)])(p, random.Random(1), train=True)
    assert y.shape == (3, 16, 16)
    with pytest.raises(DataError, match="keep one"):
        ItemPipeline([Resize(8), RandomResizedCrop(8)])


def test_jpeg_draft_decode_matches_full_decode(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (3, 40, 60), generator=g, dtype=torch.uint8)
    big = F.interpolate(small[None].float(), size=(400, 600), mode="bilinear")[0].round().byte()
    p = tmp_path / "big.jpg"
    Image.fromarray(big.permute(1, 2, 0).numpy(), "RGB").save(p, quality=95)
    fast = ItemPipeline([Resize((60, 40), method="squish")])(p, random.Random(0), False).float()
    ref = Image.open(p).convert("RGB").resize((60, 40), Image.BILINEAR)
    ref_t = torch.from_numpy(__import__("numpy").array(ref)).permute(2, 0, 1).float()
    assert (fast - ref_t).abs().mean() < 6  # drafted decode is close to the full-size reference


def test_affine_identity_and_flip_match_torch() -> None:
    x = torch.rand(4, 3, 9, 11)
    none = Affine(flip=False, max_rotate=0, max_zoom=1.0, max_warp=0)
    assert torch.allclose(none(x, torch.Generator().manual_seed(0)), x, atol=1e-5)
    flip_only = Affine(flip=True, max_rotate=0, max_zoom=1.0, max_warp=0)
    g = torch.Generator().manual_seed(5)
    m = flip_only.matrices(4, torch.Generator().manual_seed(5))
    out = flip_only(x, g)
    for i in range(4):
        ref = x[i].flip(-1) if m[i, 0, 0] < 0 else x[i]
        assert torch.allclose(out[i], ref, atol=1e-5)


def test_affine_rotation_matches_reference_grid() -> None:
    x = torch.rand(2, 3, 16, 16)
    aff = Affine(flip=False, max_rotate=30, max_zoom=1.2, max_warp=0.1, p_affine=1.0)
    theta = aff.matrices(2, torch.Generator().manual_seed(1))
    ref = F.grid_sample(
        x,
        F.affine_grid(theta.float(), [2, 3, 16, 16], align_corners=False),
        padding_mode="reflection",
        align_corners=False,
    )
    out = aff(x, torch.Generator().manual_seed(1))
    assert torch.allclose(out, ref, atol=1e-6)
    det = theta[:, :, :2].det()
    assert ((det > 0) & (det <= 1.0 + 1e-9)).all()  # zoom in only, no mirror
    ang = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]).abs() * 180 / math.pi
    assert (ang <= 30 + 1e-6).all()


def test_batch_pipeline_normalises_and_skips_random_on_valid() -> None:
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    bp = BatchPipeline([Normalize((0.5, 0.4, 0.3), (0.2, 0.2, 0.1)), Affine(p_affine=1.0)])
    assert [type(t).__name__ for t in bp.tfms] == ["Affine", "Normalize"]
    out = bp(x, False, torch.Generator())
    ref = (x.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.2, 0.1]
    ).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=1e-6)
    with pytest.raises(DataError, match="std must be positive"):
        Normalize((0,), (0,))
