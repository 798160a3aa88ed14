"""Batch transforms on the model's device: one composed affine (flip/rotate/zoom/warp) and normalise.

Batches arrive as uint8; `BatchPipeline` turns them into float in [0, 1] on the device, then runs
the transforms in `order`. Random transforms run on the training split only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from labcon.data.tfm_base import Transform
from labcon.errors import DataError

IMAGENET_STATS: tuple[tuple[float, ...], tuple[float, ...]] = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class BatchTransform(Transform):
    """Base of transforms on a float (N, C, H, W) batch on the device."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return x


def _u(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


class Affine(BatchTransform):
    """Flip, rotate, zoom and shear composed into one matrix per image, one grid_sample (reflection)."""

    order = 10
    random = True

    def __init__(
        self,
        flip: bool = True,
        max_rotate: float = 10.0,
        max_zoom: float = 1.1,
        max_warp: float = 0.2,
        p_affine: float = 0.75,
    ):
        if max_zoom < 1:
            raise DataError(f"Affine max_zoom must be >= 1 (1 = no zoom), got {max_zoom}")
        self.flip, self.max_rotate, self.max_zoom, self.max_warp, self.p_affine = (
            flip,
            max_rotate,
            max_zoom,
            max_warp,
            p_affine,
        )

    def matrices(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 2, 3) float64 matrices mapping output coords to input coords (affine_grid's theta)."""
        on = (torch.rand(n, generator=gen, dtype=torch.float64) < self.p_affine).double()
        ang = _u(gen, n, -self.max_rotate, self.max_rotate) * math.pi / 180 * on
        zoom = 1 + (_u(gen, n, 1, self.max_zoom) - 1) * on
        shear = _u(gen, n, -self.max_warp, self.max_warp) * on
        flip = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
        if not self.flip:
            flip = torch.ones(n, dtype=torch.float64)
        s = 1 / zoom
        # Translation keeps the zoomed window inside the image.
        tx, ty = (_u(gen, n, -1, 1) * (1 - s), _u(gen, n, -1, 1) * (1 - s))
        c, si = torch.cos(ang), torch.sin(ang)
        m = torch.zeros(n, 2, 3, dtype=torch.float64)
        # R @ [[1, shear], [0, 1]] @ diag(s * flip, s)
        m[:, 0, 0] = c * s * flip
        m[:, 0, 1] = (c * shear - si) * s
        m[:, 1, 0] = si * s * flip
        m[:, 1, 1] = (si * shear + c) * s
        m[:, 0, 2], m[:, 1, 2] = tx, ty
        return m

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        theta = self.matrices(x.shape[0], gen).to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Normalize(BatchTransform):
    """(x - mean) / std per channel; `Normalize.imagenet()` for ImageNet statistics."""

    order = 90

    def __init__(self, mean: Sequence[float] = IMAGENET_STATS[0], std: Sequence[float] = IMAGENET_STATS[1]):
        if len(mean) != len(std):
            raise DataError(f"Normalize mean has {len(mean)} values but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise DataError(f"Normalize std must be positive, got {list(std)}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._cache: dict[tuple[Any, Any], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def imagenet(cls) -> Normalize:
        """ImageNet channel statistics."""
        return cls(*IMAGENET_STATS)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if x.shape[1] != len(self.mean):
            raise DataError(
                f"Normalize has {len(self.mean)} channel stats but the batch has {x.shape[1]} channels"
            )
        key = (x.device, x.dtype)
        if key not in self._cache:
            shape = (1, -1, 1, 1)
            self._cache[key] = (
                torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape),
                torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape),
            )
        mean, std = self._cache[key]
        return (x - mean) / std

    def from_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a uint8 batch in one fused float pass: x * 1/(255 std) - mean/std."""
        if x.shape[1] != len(self.mean):
            raise DataError(
                f"Normalize has {len(self.mean)} channel stats but the batch has {x.shape[1]} channels"
            )
        key = (x.device, "u8")
        if key not in self._cache:
            shape = (1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device, dtype=torch.float32).view(shape)
            mean = torch.tensor(self.mean, device=x.device, dtype=torch.float32).view(shape)
            self._cache[key] = (1 / (255 * std), -mean / std)
        scale, shift = self._cache[key]
        return x.float().mul_(scale).add_(shift)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class BatchPipeline:
    """uint8 batch -> float [0, 1] on its device -> batch transforms in order."""

    def __init__(self, tfms: Iterable[BatchTransform] = ()):
        self.tfms = sorted(tfms, key=lambda t: t.order)

    def __call__(
        self,
        x: torch.Tensor,
        train: bool,
        gen: torch.Generator,
        trace: Callable[[str, Any], None] | None = None,
    ) -> torch.Tensor:
        active = [t for t in self.tfms if train or not t.random]
        if x.dtype == torch.uint8 and trace is None and active and isinstance(active[0], Normalize):
            # Fast path: uint8 -> normalised float in one pass (same numbers up to rounding).
            x, active = active[0].from_uint8(x), active[1:]
        else:
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            if trace:
                trace("to float [0, 1]", x)
        for t in active:
            x = t(x, gen)
            if trace:
                trace(repr(t), x)
        return x

    def __repr__(self) -> str:
        return f"BatchPipeline({self.tfms})"
