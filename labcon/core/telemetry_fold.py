"""Telemetry's device side: fold the sampled activation subsets of every layer into per-layer moments, near-zero
counts and histograms (each layer binned on its own range) with a fixed handful of kernels and no host sync."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class IndexCache:
    """Device copies of small host tuples (segment lengths, layer indices), so the steady state makes no
    host->device copies; bounded, since varying batch shapes (e.g. text) give varying layouts."""

    def __init__(self, device: torch.device | None):
        self.device = device
        self._cache: dict[Any, Tensor] = {}

    def _put(self, key: Any, make: Any) -> Tensor:
        t = self._cache.get(key)
        if t is None:
            if len(self._cache) > 256:
                self._cache.clear()
            t = self._cache[key] = make()
        return t

    def tensor(self, key: tuple[Any, ...], dtype: torch.dtype) -> Tensor:
        """`key` as a device tensor of `dtype`."""
        return self._put((key, dtype), lambda: torch.tensor(key, device=self.device, dtype=dtype))

    def segments(self, idx: tuple[int, ...], sizes: tuple[int, ...]) -> Tensor:
        """Layer index of every element of the concatenated subsets."""

        def make() -> Tensor:
            ids = torch.tensor(idx, dtype=torch.long).repeat_interleave(torch.tensor(sizes))
            return ids.to(self.device)

        return self._put(("seg", idx, sizes), make)


def per_layer_norm(
    tensors: list[Tensor], owners: tuple[int, ...], n_layers: int, cache: IndexCache, one_dtype: bool
) -> Tensor:
    """The L2 norm of each layer's tensors together (`owners[k]`: the layer of `tensors[k]`), in one pass."""
    norms = torch._foreach_norm(tensors)
    norms = torch.stack(norms if one_dtype else [t.float() for t in norms])
    sq = torch.zeros(n_layers, device=norms.device).index_add_(
        0, cache.tensor(owners, torch.long), norms * norms
    )
    return sq.sqrt()


def data_ranges(x: Tensor, lengths: Tensor, index: Tensor, n_layers: int, default_hi: float) -> Tensor:
    """(n_layers, 2) ranges read from the data: (0, R) for a layer with no negative value, else (-R, R), where R
    is the power of two at or above twice the largest |value| (headroom for activations that grow in training);
    `default_hi` for a layer whose values are all zero or not finite. Computed on the device (no sync)."""
    amax = torch.segment_reduce(x.abs(), "max", lengths=lengths, unsafe=True)
    amin = torch.segment_reduce(x, "min", lengths=lengths, unsafe=True)
    top = torch.zeros(n_layers, device=x.device).scatter_reduce_(0, index, amax, "amax", include_self=False)
    low = torch.zeros(n_layers, device=x.device).scatter_reduce_(0, index, amin, "amin", include_self=False)
    ok = torch.isfinite(top) & (top > 0)
    r = torch.where(ok, torch.exp2(torch.ceil(torch.log2((2 * top).clamp_min(1e-30)))), default_hi)
    lo = torch.where(low >= 0, torch.zeros_like(r), -r)
    return torch.stack([lo, r], 1)


def fold(
    subs: list[Tensor],
    idx: tuple[int, ...],
    sizes: tuple[int, ...],
    cache: IndexCache,
    out: tuple[Tensor, Tensor, Tensor, Tensor],
    near_zero: float,
    new_ranges: tuple[int, ...] = (),
    default_hi: float = 10.0,
) -> None:
    """Add the pending subsets (part k: `sizes[k]` values of layer `idx[k]`) into `out` = (acc, nz, hist, ranges):
    per layer, sums of each part's mean and std, near-zero counts, counts per bin of the layer's range.

    `new_ranges`: layers whose range is fixed now, from these values (before they are binned)."""
    acc, nz, hist, ranges = out
    x = torch.cat(subs) if len(subs) > 1 else subs[0]
    lengths, index = cache.tensor(sizes, torch.long), cache.tensor(idx, torch.long)
    n = cache.tensor(sizes, torch.float32)
    # unsafe=True: the lengths are ours and valid; the checks would cost two host syncs on a GPU.
    s1 = torch.segment_reduce(x, "sum", lengths=lengths, unsafe=True)
    s2 = torch.segment_reduce(x * x, "sum", lengths=lengths, unsafe=True)
    nzc = torch.segment_reduce((x.abs() < near_zero).float(), "sum", lengths=lengths, unsafe=True)
    mean = s1 / n
    # Per layer and batch: mean and std of that batch, summed here and averaged at the report.
    std = ((s2 - s1 * mean) / (n - 1).clamp_min(1)).clamp_min(0).sqrt()
    acc.index_add_(0, index, torch.stack([mean, std], 1))
    nz.index_add_(0, index, nzc)
    if new_ranges:
        new = cache.tensor(new_ranges, torch.long)
        got = data_ranges(x, lengths, index, len(ranges), default_hi)
        ranges.index_copy_(0, new, got.index_select(0, new))
    n_bins = hist.shape[1]
    # Every element gets its layer's (low, high, bins per unit): one gather, then the same few fused ops as
    # with a single range for all layers.
    per_layer = torch.cat([ranges, (n_bins / (ranges[:, 1] - ranges[:, 0])).unsqueeze(1)], 1)
    seg = cache.segments(idx, sizes)
    lo, hi, scale = per_layer.index_select(0, seg).unbind(1)
    valid = (x >= lo) & (x <= hi)  # torch.histc semantics: hi falls in the last bin, nan nowhere
    b = ((x - lo) * scale).floor_().clamp_(0, n_bins - 1)
    b = torch.where(valid, b, 0).long() + seg * n_bins
    hist.view(-1).index_add_(0, b, valid.float())
