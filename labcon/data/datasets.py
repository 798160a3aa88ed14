"""The built-in "shapes" dataset (generated offline by code) and presets for common folder layouts.

`ensure_builtin()` draws 8 classes of shapes (random colour, position, size, rotation, noisy
background) at 32x32 and writes them once as data/shapes/{train,valid}/<class>/*.png. Generation is
deterministic (same bytes every time) and takes a few seconds.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from labcon.data.augment import Affine, Normalize
from labcon.data.block import DataBlock
from labcon.data.items import GrandparentSplitter, ParentLabeller
from labcon.data.transforms import Flip, RandomResizedCrop, Resize
from labcon.errors import DataError

SHAPES = ("circle", "ring", "square", "triangle", "cross", "star", "crescent", "bar")
SHAPES_VERSION = "2"  # bump whenever the generator changes what it draws
_MARKER = ".labcon-builtin"
_N = {"train": 250, "valid": 75}
_CANVAS, _SIZE = 64, 32  # draw at 2x, downsample for smooth edges


def data_root(root: str | Path | None = None) -> Path:
    """Where datasets live: `root`, else $LABCON_DATA, else ./data (relative to the working directory)."""
    if root is not None:
        return Path(root)
    env = os.environ.get("LABCON_DATA")
    return Path(env) if env else Path.cwd() / "data"


def make_data_root(base: Path) -> Path:
    """Create the data folder `base` if needed; a DataError naming it and the fix when that is impossible."""
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        # FileExistsError here means `base` (or a folder above it) is a file.
        reason = (
            "it (or a folder above it) is a file"
            if isinstance(e, (FileExistsError, NotADirectoryError))
            else e.strerror
        )
        raise DataError(
            f"cannot use {base} as the data folder: {reason or e}; point --root or LABCON_DATA at a folder "
            "you can write"
        ) from None
    return base


def _poly(
    cx: float, cy: float, r: float, ang: float, pts: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    c, s = math.cos(ang), math.sin(ang)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _regular(n: int, inner: float | None = None) -> list[tuple[float, float]]:
    out = []
    for k in range(n * (2 if inner else 1)):
        rad = inner if inner and k % 2 else 1.0
        a = 2 * math.pi * k / (n * (2 if inner else 1)) - math.pi / 2
        out.append((rad * math.cos(a), rad * math.sin(a)))
    return out


def _bar(w: float) -> list[tuple[float, float]]:
    return [(-1, -w), (1, -w), (1, w), (-1, w)]


def draw_shape(kind: str, rng: np.random.Generator) -> Image.Image:
    """One 32x32 RGB image of `kind` with random colour, position, size, rotation and noise."""
    # Random colours, but the shape is always the brighter one, so a small net learns in seconds.
    bg = rng.integers(0, 110, 3)
    fg = rng.integers(150, 256, 3)
    canvas = Image.new("RGB", (_CANVAS, _CANVAS), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(canvas)
    r = float(rng.uniform(12, 26))
    cx, cy = (float(rng.uniform(r, _CANVAS - r)) for _ in range(2))
    ang = float(rng.uniform(0, 2 * math.pi))
    col = tuple(int(v) for v in fg)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        d.ellipse(box, fill=col)
    elif kind == "ring":
        d.ellipse(box, outline=col, width=max(3, int(r / 3)))
    elif kind == "square":
        d.polygon(
            _poly(cx, cy, r, ang, [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)]), fill=col
        )
    elif kind == "triangle":
        d.polygon(_poly(cx, cy, r, ang, _regular(3)), fill=col)
    elif kind == "cross":
        d.polygon(_poly(cx, cy, r, ang, _bar(0.25)), fill=col)
        d.polygon(_poly(cx, cy, r, ang + math.pi / 2, _bar(0.25)), fill=col)
    elif kind == "star":
        d.polygon(_poly(cx, cy, r, ang, _regular(5, inner=0.42)), fill=col)
    elif kind == "crescent":
        d.ellipse(box, fill=col)
        ox, oy = cx + 0.45 * r * math.cos(ang), cy + 0.45 * r * math.sin(ang)
        d.ellipse(
            (ox - 0.85 * r, oy - 0.85 * r, ox + 0.85 * r, oy + 0.85 * r), fill=tuple(int(v) for v in bg)
        )
    elif kind == "bar":
        d.polygon(_poly(cx, cy, r, ang, _bar(0.18)), fill=col)
    else:
        raise DataError(f"unknown shape {kind!r}; known: {', '.join(SHAPES)}")
    small = np.asarray(canvas.resize((_SIZE, _SIZE), Image.BOX), dtype=np.float32)
    noise = rng.normal(0, 10, small.shape).astype(np.float32)
    return Image.fromarray(np.clip(small + noise, 0, 255).astype(np.uint8), "RGB")


def _generate(dest: Path, seed: int) -> None:
    for s_id, (split, n) in enumerate(_N.items()):
        for c_id, kind in enumerate(SHAPES):
            folder = dest / split / kind
            folder.mkdir(parents=True)
            for i in range(n):
                rng = np.random.default_rng([seed, s_id, c_id, i])
                draw_shape(kind, rng).save(folder / f"{kind}_{i:04d}.png", optimize=False, compress_level=1)
    (dest / _MARKER).write_text(f"labcon built-in dataset shapes, version {SHAPES_VERSION}, seed {seed}\n")


def ensure_builtin(root: str | Path | None = None) -> Path:
    """Path of the built-in shapes dataset under the data root, generating it on first use."""
    base = data_root(root)
    dest = base / "shapes"
    stale: Path | None = None
    if dest.is_dir():
        if not (dest / _MARKER).is_file():
            raise DataError(
                f"{dest} exists but was not made by labcon — move it away, or set LABCON_DATA elsewhere"
            )
        if f"version {SHAPES_VERSION}," in (dest / _MARKER).read_text():
            return dest
        # Made by an older generator (labcon's own files): regenerate rather than train on different data.
        stale = dest
    tmp = Path(tempfile.mkdtemp(prefix=".shapes-", dir=make_data_root(base)))
    try:
        _generate(tmp / "shapes", seed=0)
        if stale is not None:
            os.rename(stale, tmp / "stale")
        try:
            os.rename(tmp / "shapes", dest)
        except OSError:
            if not (dest / _MARKER).is_file():  # another process may have won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def builtin_block(size: int = 32, bs: int = 64, root: str | Path | None = None) -> DataBlock:
    """The default DataBlock: the built-in shapes dataset (generated on first use)."""
    return DataBlock(
        path=ensure_builtin(root),
        splitter=GrandparentSplitter("train", "valid"),
        labeller=ParentLabeller(),
        item_tfms=[Resize(size), Flip()],
        batch_tfms=[Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))],
        bs=bs,
    )


def mnist_tiny_block(path: str | Path | None = None, size: int = 28, bs: int = 64) -> DataBlock:
    """mnist_tiny-style layout: train/<digit>/*.png, valid/<digit>/*.png (grey, made 3-channel)."""
    return DataBlock(
        path=Path(path) if path else data_root() / "mnist_tiny",
        splitter=GrandparentSplitter("train", "valid"),
        labeller=ParentLabeller(),
        item_tfms=[Resize(size)],
        batch_tfms=[Normalize((0.13,) * 3, (0.31,) * 3)],
        bs=bs,
    )


def imagenette_block(
    path: str | Path | None = None, size: int = 128, bs: int = 64, folder: str = "imagenette2-160"
) -> DataBlock:
    """Imagenette/Imagewoof layout: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG, with the standard augmentation."""
    return DataBlock(
        path=Path(path) if path else data_root() / folder,
        splitter=GrandparentSplitter("train", "val"),
        labeller=ParentLabeller(),
        item_tfms=[RandomResizedCrop(size, scale=(0.35, 1.0)), Flip()],
        batch_tfms=[Affine(flip=False), Normalize.imagenet()],
        bs=bs,
    )


def _imagewoof(path: str | Path | None = None, size: int = 128, bs: int = 64) -> DataBlock:
    return imagenette_block(path, size, bs, folder="imagewoof2-160")


def _shapes(path: str | Path | None = None, size: int = 32, bs: int = 64) -> DataBlock:
    block = builtin_block(size, bs)
    if path is not None:
        block.path = Path(path)
    return block


PRESETS: dict[str, tuple[Callable[..., DataBlock], int]] = {
    "shapes": (_shapes, 32),
    "mnist_tiny": (mnist_tiny_block, 28),
    "imagenette": (imagenette_block, 128),
    "imagewoof": (_imagewoof, 128),
}


def preset_block(
    name: str, path: str | Path | None = None, size: int | None = None, bs: int = 64
) -> DataBlock:
    """A DataBlock for a named preset layout ('shapes', 'mnist_tiny', 'imagenette', 'imagewoof')."""
    if name not in PRESETS:
        raise DataError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    fn, default_size = PRESETS[name]
    return fn(path, size or default_size, bs)
