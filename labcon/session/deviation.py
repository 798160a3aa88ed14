"""How far one run's epoch metrics are from another's: before a branch point (replay) and after it (branch)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_NOT_METRICS = ("epoch", "time")


@dataclass(frozen=True)
class Branch:
    """A replay that branched: from `parent_run` after `after_epoch` epochs, with the command `then`."""

    parent_run: int
    after_epoch: int
    then: str
    parent_rows: tuple[dict[str, Any], ...] = ()


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def max_deviation(original: Iterable[dict[str, Any]], replayed: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Largest absolute difference per metric over the epochs both runs have."""
    out: dict[str, float] = {}
    for row in epoch_deltas(original, replayed):
        for k, d in row.items():
            if k != "epoch":
                out[k] = max(out.get(k, 0.0), abs(d))
    return out


def epoch_deltas(
    parent: Iterable[dict[str, Any]], rows: Iterable[dict[str, Any]], after: int = 0
) -> list[dict[str, Any]]:
    """Per epoch (from `after` on) that both have: {'epoch': e, metric: value - parent's value}."""
    by_epoch = {int(r["epoch"]): r for r in parent}
    out = []
    for row in sorted(rows, key=lambda r: int(r["epoch"])):
        ep = int(row["epoch"])
        orig = by_epoch.get(ep)
        if ep < after or orig is None:
            continue
        deltas = {
            k: float(v) - float(orig[k])
            for k, v in row.items()
            if k not in _NOT_METRICS and _number(v) and _number(orig.get(k))
        }
        out.append({"epoch": ep, **deltas})
    return out


def describe(deltas: list[dict[str, Any]]) -> str:
    """One readable line: 'epoch 1: valid_loss +0.0123 accuracy -0.05; epoch 2: ...'."""
    parts = []
    for row in deltas:
        values = " ".join(f"{k} {v:+.4g}" for k, v in row.items() if k != "epoch")
        parts.append(f"epoch {row['epoch']}: {values or 'no common metrics'}")
    return "; ".join(parts) or "no epochs to compare"
