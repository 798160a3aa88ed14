"""Shared pieces of the benchmarks: synthetic batches already on the device."""

from __future__ import annotations

import torch


def make_batches(
    n: int, bs: int, shape: tuple[int, ...], device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n random (x, y) batches of 10 classes, generated once so every timed run sees the same data."""
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(bs, *shape, generator=g).to(device), torch.randint(0, 10, (bs,), generator=g).to(device))
        for _ in range(n)
    ]
