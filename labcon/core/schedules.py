"""Annealing schedules: functions of progress p in [0, 1], and their combination."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Schedule = Callable[[float], float]


def sched_lin(start: float, end: float) -> Schedule:
    """Linear from start to end."""
    return lambda p: start + p * (end - start)


def sched_cos(start: float, end: float) -> Schedule:
    """Cosine from start to end (flat at both ends)."""
    return lambda p: start + (1 + math.cos(math.pi * (1 - p))) * (end - start) / 2


def sched_exp(start: float, end: float) -> Schedule:
    """Exponential from start to end (both must be > 0)."""
    if start <= 0 or end <= 0:
        raise ValueError(f"sched_exp needs positive start and end, got {start} and {end}")
    return lambda p: start * (end / start) ** p


def sched_no(start: float, end: float = 0.0) -> Schedule:
    """Constant at start (end ignored)."""
    return lambda p: start


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Schedule]) -> Schedule:
    """Run each schedule over its fraction of training; pcts must be positive and sum to 1."""
    if len(pcts) != len(scheds) or not pcts:
        raise ValueError("combine_scheds needs one fraction per schedule")
    if any(p <= 0 for p in pcts) or abs(sum(pcts) - 1) > 1e-6:
        raise ValueError(f"combine_scheds fractions must be positive and sum to 1, got {list(pcts)}")
    bounds = [0.0]
    for p in pcts:
        bounds.append(bounds[-1] + p)

    def _inner(pos: float) -> float:
        pos = min(max(pos, 0.0), 1.0)
        # The last segment owns p = 1 (the original indexed past the end there).
        idx = len(scheds) - 1
        for i in range(len(scheds)):
            if pos < bounds[i + 1]:
                idx = i
                break
        width = bounds[idx + 1] - bounds[idx]
        return scheds[idx](min((pos - bounds[idx]) / width, 1.0))

    return _inner


def one_cycle_scheds(
    lr_max: float,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
) -> dict[str, Schedule]:
    """The one-cycle policy: lr warm-up lr_max/div -> lr_max then down to lr_max/div_final; momentum inverse."""
    pcts = [pct_start, 1 - pct_start]
    return {
        "lr": combine_scheds(pcts, [sched_cos(lr_max / div, lr_max), sched_cos(lr_max, lr_max / div_final)]),
        "mom": combine_scheds(pcts, [sched_cos(moms[0], moms[1]), sched_cos(moms[1], moms[2])]),
    }
