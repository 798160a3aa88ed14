"""Item transforms on uint8 images (PIL), run in DataLoader workers, and the decode pipeline.

Transforms run in a fixed order whatever order they were declared in (`order`): crop/resize first
(JPEGs are decoded at reduced size with `Image.draft` when the crop allows it, and cropping happens
inside the resize), then make-RGB on the small image, then warps and flips. Random transforms
(`random = True`) only run on the training split; crops fall back to a centre crop on validation.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from labcon.data.tfm_base import Transform
from labcon.errors import DataError

Box = tuple[float, float, float, float]
Trace = Callable[[str, Any], None]


class ItemTransform(Transform):
    """Base of transforms on one uint8 PIL image; `order` fixes where it runs."""

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        return img


class CropTransform(ItemTransform):
    """A transform that picks a box of the source and resizes it; runs first, inside decoding."""

    order = 10
    size: tuple[int, int]

    def plan(self, wh: tuple[int, int], rng: random.Random, train: bool) -> tuple[Box, tuple[int, int]]:
        """The source box (left, top, right, bottom) and the output (w, h)."""
        raise NotImplementedError


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    w, h = size
    return (int(w), int(h))


def _centre_box(w: int, h: int, out_w: int, out_h: int) -> Box:
    # Largest box of the output's aspect ratio, centred.
    r = out_w / out_h
    bw, bh = (w, w / r) if w / h <= r else (h * r, h)
    left, top = (w - bw) / 2, (h - bh) / 2
    return (left, top, left + bw, top + bh)


class Resize(CropTransform):
    """Resize to `size`: method 'crop' (centre crop to the aspect ratio first) or 'squish'."""

    def __init__(self, size: int | Sequence[int], method: str = "crop"):
        if method not in ("crop", "squish"):
            raise DataError(f"Resize method must be 'crop' or 'squish', got {method!r}")
        self.size, self.method = _pair(size), method

    def plan(self, wh: tuple[int, int], rng: random.Random, train: bool) -> tuple[Box, tuple[int, int]]:
        w, h = wh
        if self.method == "squish":
            return (0.0, 0.0, float(w), float(h)), self.size
        return _centre_box(w, h, *self.size), self.size


class RandomResizedCrop(CropTransform):
    """Random area (scale of the image) and aspect ratio crop, resized to `size`; centre crop on valid."""

    random = True

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        val_method: str = "crop",
    ):
        self.size, self.scale, self.ratio, self.val_method = (
            _pair(size),
            tuple(scale),
            tuple(ratio),
            val_method,
        )

    def plan(self, wh: tuple[int, int], rng: random.Random, train: bool) -> tuple[Box, tuple[int, int]]:
        w, h = wh
        if not train:
            return Resize(self.size, self.val_method).plan(wh, rng, train)
        area = w * h
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            ar = math.exp(rng.uniform(*log_r))
            cw, ch = math.sqrt(target * ar), math.sqrt(target / ar)
            if cw <= w and ch <= h:
                left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
                return (left, top, left + cw, top + ch), self.size
        return _centre_box(w, h, *self.size), self.size


class MakeRGB(ItemTransform):
    """Grey, RGBA (on white), CMYK, palette and 16-bit images become 3-channel RGB."""

    order = 15

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> Image.Image:
        return to_rgb(img)


class Flip(ItemTransform):
    """Horizontal flip with probability `p` (training only)."""

    order = 30
    random = True

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < self.p else img


class Perspective(ItemTransform):
    """Random perspective warp: each corner moves by up to `magnitude` of the side (training only)."""

    order = 20
    random = True

    def __init__(self, magnitude: float = 0.2, p: float = 0.75):
        self.magnitude, self.p = magnitude, p

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() >= self.p:
            return img
        w, h = img.size
        dst = [(0, 0), (w, 0), (w, h), (0, h)]
        m = self.magnitude
        src = [(x + rng.uniform(-m, m) * w, y + rng.uniform(-m, m) * h) for x, y in dst]
        return img.transform(
            (w, h), Image.Transform.PERSPECTIVE, _perspective_coeffs(dst, src), Image.BILINEAR
        )


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    # PIL maps each output pixel (x, y) to the input via 8 coefficients; solve from 4 point pairs.
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array([c for uv in src for c in uv], dtype=np.float64)
    return np.linalg.solve(np.array(a, dtype=np.float64), b).tolist()


def _prepare_mode(img: Image.Image) -> Image.Image:
    # Modes PIL cannot resize smoothly become L / RGB / RGBA before the crop.
    m = img.mode
    if m in ("L", "RGB", "RGBA", "CMYK"):
        return img
    if m == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if m in ("LA", "PA", "La", "RGBa"):
        return img.convert("RGBA")
    if m.startswith("I") or m == "F":
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        return Image.fromarray((a * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 3-channel RGB (transparent areas composited on white)."""
    img = _prepare_mode(img)
    if img.mode == "RGB":
        return img
    if img.mode == "RGBA":
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    return img.convert("RGB")


def bad_reason(e: BaseException) -> str:
    """Why an image failed to decode, in words (for messages that name the file)."""
    if isinstance(e, PermissionError):
        return "permission denied — make the file readable"
    if type(e).__name__ == "UnidentifiedImageError":
        return "not an image PIL can read (wrong extension or corrupt header)"
    if isinstance(e, FileNotFoundError):
        return "file disappeared"
    return f"corrupt or truncated image data ({str(e).strip() or type(e).__name__})"


def _bad(path: Path, e: BaseException) -> DataError:
    return DataError(
        f"cannot read image {path}: {bad_reason(e)} — fix or delete the file, or pass skip_bad=True"
    )


class TransformError(DataError):
    """An item transform failed on an image that decoded fine (its settings are wrong; skipping files won't help)."""


@contextlib.contextmanager
def _blame_file(path: Path) -> Iterator[None]:
    """A decode failure: the file is bad (fix, delete or skip it)."""
    try:
        yield
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise _bad(path, e) from None


@contextlib.contextmanager
def _blame_transform(t: Any, path: Path) -> Iterator[None]:
    """A transform failure on an image that decoded fine: its settings are at fault, not the file."""
    try:
        yield
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a transform is reported as the transform's
        raise TransformError(
            f"item transform {t!r} failed on {path} (the image decoded fine): {type(e).__name__}: {e} — "
            "check its settings in item_tfms"
        ) from None


class ItemPipeline:
    """Decode one file and run the item transforms; returns a uint8 CHW tensor (3 channels)."""

    def __init__(self, tfms: Iterable[ItemTransform] = ()):
        tfms = list(tfms)
        if not any(isinstance(t, MakeRGB) for t in tfms):
            tfms.append(MakeRGB())
        self.tfms = sorted(tfms, key=lambda t: t.order)
        crops = [t for t in self.tfms if isinstance(t, CropTransform)]
        if len(crops) > 1:
            raise DataError(f"item_tfms has {len(crops)} resize/crop transforms ({crops}); keep one")
        self.crop = crops[0] if crops else None

    def __call__(
        self,
        path: Path,
        rng: random.Random,
        train: bool,
        trace: Trace | None = None,
        marks: list[float] | None = None,
    ) -> torch.Tensor:
        """`marks` (the profiler's, only while it times the loader): gets the clock after the file is read,
        after it is decoded and at the end, so read / decode / item tfms can be told apart."""
        img = self._decode(path, rng, train, trace, marks)
        for t in self.tfms:
            if t is self.crop or (t.random and not train):
                continue
            with _blame_transform(t, path):
                img = t(img, rng)
            if trace:
                trace(repr(t), img)
        arr = np.array(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        x = torch.from_numpy(arr).permute(2, 0, 1)
        if trace:
            trace("to tensor (uint8 CHW)", x)
        if marks is not None:
            marks.append(time.perf_counter())
        return x

    def _decode(
        self, path: Path, rng: random.Random, train: bool, trace: Trace | None, marks: list[float] | None
    ) -> Image.Image:
        # Only decoding blames the file; a crop whose settings fail is the config's fault (_blame_transform).
        with _blame_file(path):
            # Timed: the bytes are read first, so reading the file and decoding it are two figures.
            img = Image.open(path if marks is None else _read(path, marks))
        if trace:
            trace(f"open ({img.format}, mode {img.mode})", img)
        if self.crop is None:
            with _blame_file(path):
                img.load()
                img = _prepare_mode(img)
            if marks is not None:
                marks.append(time.perf_counter())
            return img
        w, h = img.size
        with _blame_transform(self.crop, path):
            box, out = self.crop.plan((w, h), rng, train)
        with _blame_file(path):
            if img.format == "JPEG":
                bw, bh = box[2] - box[0], box[3] - box[1]
                scale = max(out[0] / max(bw, 1e-6), out[1] / max(bh, 1e-6))
                if scale < 1:
                    img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
                    sx, sy = img.size[0] / w, img.size[1] / h
                    box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
            img.load()
            img = _prepare_mode(img)
        if marks is not None:
            marks.append(time.perf_counter())  # the crop's resize counts as an item transform
        with _blame_transform(self.crop, path):
            img = img.resize(out, Image.BILINEAR, box=box)
        if trace:
            trace(repr(self.crop), img)
        return img

    def __repr__(self) -> str:
        return f"ItemPipeline({self.tfms})"


def _read(path: Path, marks: list[float]) -> io.BytesIO:
    """The file's bytes in memory, with the clock after reading them in `marks`."""
    data = path.read_bytes()
    marks.append(time.perf_counter())
    return io.BytesIO(data)
