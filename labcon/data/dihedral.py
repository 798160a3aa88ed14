"""The dihedral transform: the 8 symmetries of a square (4 rotations, each optionally mirrored).

`Dihedral` works on uint8 PIL items in the workers (a transpose is a byte shuffle, no resampling);
`BatchDihedral` on (N, C, H, W) batches on the device (any dtype), one random symmetry per image.
Symmetry k (0..7): mirror left-right when k >= 4, then rotate by (k % 4) x 90 degrees. Non-square
images only take the 4 symmetries that keep their shape (k in 0, 2, 4, 6).
"""

from __future__ import annotations

import random

import torch
from PIL import Image

from labcon.data.augment import BatchTransform
from labcon.data.transforms import ItemTransform
from labcon.errors import DataError

_T = Image.Transpose
# PIL's transposes for each k: mirror (k >= 4) then rotate counter-clockwise (k % 4) quarter turns.
_PIL_OPS: tuple[tuple[_T, ...], ...] = (
    (),
    (_T.ROTATE_90,),
    (_T.ROTATE_180,),
    (_T.ROTATE_270,),
    (_T.FLIP_LEFT_RIGHT,),
    (_T.FLIP_LEFT_RIGHT, _T.ROTATE_90),
    (_T.FLIP_LEFT_RIGHT, _T.ROTATE_180),
    (_T.FLIP_LEFT_RIGHT, _T.ROTATE_270),
)
_SHAPE_KEEPING = (0, 2, 4, 6)


def _check_p(p: float) -> float:
    if not 0 <= p <= 1:
        raise DataError(f"dihedral p must be between 0 and 1, got {p}")
    return float(p)


def dihedral_pil(img: Image.Image, k: int) -> Image.Image:
    """Symmetry k of a PIL image (mode kept, bytes only moved)."""
    for op in _PIL_OPS[k]:
        img = img.transpose(op)
    return img


def dihedral_tensor(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry k of a (..., H, W) tensor, the same as dihedral_pil on the image it holds."""
    if k >= 4:
        x = x.flip(-1)
    # PIL's ROTATE_90 is counter-clockwise: torch.rot90 with k quarter turns from W towards H axes.
    return torch.rot90(x, k % 4, dims=(-2, -1))


class Dihedral(ItemTransform):
    """With probability p, one of the 8 symmetries at random on the uint8 image (training only)."""

    order = 30
    random = True

    def __init__(self, p: float = 0.5):
        self.p = _check_p(p)

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() >= self.p:
            return img
        ks = range(8) if img.width == img.height else _SHAPE_KEEPING
        return dihedral_pil(img, rng.choice(list(ks)))


class BatchDihedral(BatchTransform):
    """With probability p per image, one of the 8 symmetries at random, on the device (training only)."""

    order = 20  # before the affine warp and normalisation
    random = True

    def __init__(self, p: float = 0.5):
        self.p = _check_p(p)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        square = x.shape[-1] == x.shape[-2]
        choices = torch.arange(8) if square else torch.tensor(_SHAPE_KEEPING)
        ks = choices[torch.randint(0, len(choices), (n,), generator=gen)]
        ks = torch.where(torch.rand(n, generator=gen) < self.p, ks, torch.zeros_like(ks))
        out = x.clone()
        for k in ks.unique().tolist():
            if k == 0:
                continue
            idx = (ks == k).nonzero().flatten().to(x.device)
            out[idx] = dihedral_tensor(x[idx], k)
        return out
