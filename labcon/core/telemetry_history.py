"""Host side of telemetry: a bounded history of reports and the immutable snapshot front ends read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labcon.errors import LabconError
from labcon.fmt import did_you_mean

# Per-layer scalar columns of a report row; the histogram bins follow them.
FIELDS: tuple[str, ...] = ("mean", "std", "near_zero", "grad_norm", "update_ratio")
N_FIELDS = len(FIELDS)


@dataclass(frozen=True)
class LayerStats:
    """One layer's latest statistics (nan when unknown)."""

    mean: float
    std: float
    near_zero: float
    grad_norm: float
    update_ratio: float


class History:
    """Report rows (time, layer, FIELDS + bins) in a fixed host buffer; when full, the older half is merged
    pairwise so memory stays bounded and old data gets coarser instead of disappearing."""

    def __init__(self, layers: list[str], n_bins: int, horizon: int):
        if horizon < 4:
            raise LabconError(f"telemetry horizon must be at least 4 reports, got {horizon}")
        self.layers, self.n_bins, self.horizon = list(layers), n_bins, horizon
        self.rows = np.zeros((horizon, len(layers), N_FIELDS + n_bins), dtype=np.float32)
        self.iters = np.zeros(horizon, dtype=np.int64)
        self.weights = np.zeros(horizon, dtype=np.float64)
        # Each layer's histogram range (low, high), fixed for the history's life so its rows stay comparable;
        # nan until the layer's range is chosen (by its kind, or from its first sampled values).
        self.ranges = np.full((len(layers), 2), np.nan, dtype=np.float64)
        self.n = 0

    def append(self, it: int, row: np.ndarray) -> None:
        """Add one report row of shape (layers, FIELDS + bins) taken at training iteration `it`."""
        if self.n == self.horizon:
            self._compact()
        self.rows[self.n], self.iters[self.n], self.weights[self.n] = row, it, 1.0
        self.n += 1

    def _compact(self) -> None:
        k = (self.n // 2) // 2 * 2  # an even number of the oldest rows, merged in pairs
        if k < 2:
            return
        old = self.rows[:k].reshape(k // 2, 2, *self.rows.shape[1:]).astype(np.float64)
        w = self.weights[:k].reshape(k // 2, 2)
        wb = np.broadcast_to(w[:, :, None, None], old.shape)
        valid = ~np.isnan(old)
        wsum = (wb * valid).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            merged = np.where(valid, old * wb, 0.0).sum(1) / wsum
        keep = self.n - k
        half = k // 2
        self.rows[:half] = merged.astype(np.float32)
        self.rows[half : half + keep] = self.rows[k : self.n]
        self.iters[:half] = self.iters[1:k:2]
        self.iters[half : half + keep] = self.iters[k : self.n]
        self.weights[:half] = w.sum(1)
        self.weights[half : half + keep] = self.weights[k : self.n]
        self.n = half + keep

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values (safe for torch.load(weights_only=True))."""
        return {
            "layers": list(self.layers),
            "n_bins": self.n_bins,
            "horizon": self.horizon,
            "rows": torch.from_numpy(self.rows[: self.n].copy()),
            "iters": torch.from_numpy(self.iters[: self.n].copy()),
            "weights": torch.from_numpy(self.weights[: self.n].copy()),
            "ranges": torch.from_numpy(self.ranges.copy()),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], horizon: int | None = None) -> History:
        """Rebuild a History from `state_dict()` output (compacting if it exceeds `horizon`).

        A state saved before ranges were per layer has one `hist_range` that every layer's rows were binned on."""
        h = cls(state["layers"], int(state["n_bins"]), int(horizon or state["horizon"]))
        if "ranges" in state:
            h.ranges[:] = state["ranges"].numpy()
        elif "hist_range" in state:
            h.ranges[:] = [float(v) for v in state["hist_range"]]
        rows, iters, weights = state["rows"].numpy(), state["iters"].numpy(), state["weights"].numpy()
        for r, it, w in zip(rows, iters, weights, strict=True):
            h.append(int(it), r)
            h.weights[h.n - 1] = w
        return h


@dataclass(frozen=True)
class TelemetrySnapshot:
    """Immutable host-side copy of the telemetry, for front ends and the journal (no live tensors)."""

    train_iter: int
    layers: tuple[str, ...]
    latest: dict[str, LayerStats]
    hist_ranges: dict[str, tuple[float, float]]  # layer -> (low, high) of its histogram bins (once chosen)
    flags: dict[str, str]
    _iters: np.ndarray = field(repr=False)
    _rows: np.ndarray = field(repr=False)

    @property
    def n_reports(self) -> int:
        """How many history rows there are (after down-sampling of old ones)."""
        return len(self._iters)

    def _index(self, layer: str) -> int:
        if layer in self.layers:
            return self.layers.index(layer)
        hint = did_you_mean(layer, self.layers, n=3, cutoff=0.5)
        raise LabconError(f"telemetry has no layer {layer!r}{hint} Recorded layers: {', '.join(self.layers)}")

    def history(self, layer: str) -> dict[str, list[float]]:
        """Per-report series for one layer: iters, mean, std, near_zero, grad_norm, update_ratio."""
        return self._series(layer, 0)

    def history_tail(self, layer: str, n: int) -> dict[str, list[float]]:
        """The last `n` reports of `history(layer)` (sparklines need no more; remote consoles fetch no more)."""
        return self._series(layer, max(0, self.n_reports - n))

    def _series(self, layer: str, start: int) -> dict[str, list[float]]:
        i = self._index(layer)
        out: dict[str, list[float]] = {"iters": [int(x) for x in self._iters[start:]]}
        for j, name in enumerate(FIELDS):
            out[name] = self._rows[start:, i, j].astype(float).tolist()
        return out

    def heatmap(self, layer: str) -> list[list[float]]:
        """Rows = reports (oldest first), columns = histogram bins: mean counts per sampled batch."""
        i = self._index(layer)
        return self._rows[:, i, N_FIELDS:].astype(float).tolist()


def flag_layers(
    latest: dict[str, LayerStats],
    dead_frac: float,
    explode_std: float,
    nonfinite: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """'dead' when near-zero fraction >= dead_frac; 'exploding' when std/grad are huge or not finite.

    `nonfinite` names layers that were measured but produced nan (nan alone otherwise means unknown).
    """
    flags: dict[str, str] = {}
    for name, s in latest.items():
        if name in nonfinite:
            flags[name] = "exploding"
            continue
        bad = [v for v in (s.mean, s.std, s.grad_norm) if not math.isnan(v)]
        if any(math.isinf(v) for v in bad) or (not math.isnan(s.std) and s.std > explode_std):
            flags[name] = "exploding"
        elif not math.isnan(s.near_zero) and s.near_zero >= dead_frac:
            flags[name] = "dead"
    return flags


def make_snapshot(
    hist: History,
    train_iter: int,
    dead_frac: float,
    explode_std: float,
    nonfinite: frozenset[str] = frozenset(),
) -> TelemetrySnapshot:
    """Copy the history into an immutable snapshot (arrays are copies marked read-only)."""
    rows, iters = hist.rows[: hist.n].copy(), hist.iters[: hist.n].copy()
    rows.flags.writeable = False
    iters.flags.writeable = False
    latest: dict[str, LayerStats] = {}
    if hist.n:
        last = rows[-1, :, :N_FIELDS].astype(np.float64)
        # Gradient norm and update ratio are measured on report batches only, so a fit's closing (partial)
        # report has none: the latest of those is the last one measured, not "unknown".
        for j in (FIELDS.index("grad_norm"), FIELDS.index("update_ratio")):
            for i in range(len(hist.layers)):
                measured = np.flatnonzero(~np.isnan(rows[:, i, j]))
                last[i, j] = rows[measured[-1], i, j] if measured.size else np.nan
        for i, name in enumerate(hist.layers):
            latest[name] = LayerStats(*(float(v) for v in last[i]))
    return TelemetrySnapshot(
        train_iter=train_iter,
        layers=tuple(hist.layers),
        latest=latest,
        hist_ranges={
            name: (float(lo), float(hi))
            for name, (lo, hi) in zip(hist.layers, hist.ranges, strict=True)
            if np.isfinite(lo) and np.isfinite(hi)
        },
        flags=flag_layers(latest, dead_frac, explode_std, nonfinite),
        _iters=iters,
        _rows=rows,
    )
