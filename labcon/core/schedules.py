"""Annealing schedules: callables of progress p in [0, 1] that can describe, rescale and re-span themselves.

`sched_lin`/`sched_cos`/`sched_exp`/`sched_no` and `combine_scheds` are the course's functions; they
return small objects instead of lambdas so that a live change (`set lr=X` mid-fit) can rescale the rest
of a schedule keeping its shape, `show sched` can print the plan, and `parse_sched` reads the text form
used by the `sched` command and the `[train.schedule]` config table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Schedule = Callable[[float], float]

ANNEALERS: tuple[str, ...] = ("lin", "cos", "exp", "no")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


@dataclass(frozen=True)
class Anneal:
    """One annealer from start to end: lin, cos (flat at both ends), exp (both > 0) or no (constant start)."""

    kind: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if self.kind not in ANNEALERS:
            raise ValueError(f"unknown annealer '{self.kind}'; use one of {', '.join(ANNEALERS)}")
        if self.kind == "exp" and (self.start <= 0 or self.end <= 0):
            raise ValueError(f"sched_exp needs positive start and end, got {self.start} and {self.end}")

    def __call__(self, p: float) -> float:
        s, e = self.start, self.end
        if self.kind == "lin":
            return s + p * (e - s)
        if self.kind == "cos":
            return s + (1 + math.cos(math.pi * (1 - p))) * (e - s) / 2
        if self.kind == "exp":
            return s * (e / s) ** p
        return s

    def scaled(self, k: float) -> Anneal:
        """The same shape with every value multiplied by k (each annealer is linear in its end points)."""
        return Anneal(self.kind, self.start * k, self.end * k)

    def describe(self) -> str:
        """'cos 0.001 -> 1e-08' or 'no 0.001'."""
        return (
            f"no {_fmt(self.start)}"
            if self.kind == "no"
            else f"{self.kind} {_fmt(self.start)} -> {_fmt(self.end)}"
        )

    @property
    def text(self) -> str:
        """The form parse_sched reads back."""
        return f"no:{self.start!r}" if self.kind == "no" else f"{self.kind}:{self.start!r}:{self.end!r}"


def sched_lin(start: float, end: float) -> Anneal:
    """Linear from start to end."""
    return Anneal("lin", start, end)


def sched_cos(start: float, end: float) -> Anneal:
    """Cosine from start to end (flat at both ends)."""
    return Anneal("cos", start, end)


def sched_exp(start: float, end: float) -> Anneal:
    """Exponential from start to end (both must be > 0)."""
    return Anneal("exp", start, end)


def sched_no(start: float, end: float = 0.0) -> Anneal:
    """Constant at start (end ignored)."""
    return Anneal("no", start, start)


@dataclass(frozen=True)
class Combined:
    """Each schedule over its fraction of training (pcts positive, summing to 1)."""

    pcts: tuple[float, ...]
    scheds: tuple[Schedule, ...]

    def __post_init__(self) -> None:
        if len(self.pcts) != len(self.scheds) or not self.pcts:
            raise ValueError("combine_scheds needs one fraction per schedule")
        if any(p <= 0 for p in self.pcts) or abs(sum(self.pcts) - 1) > 1e-6:
            raise ValueError(f"combine_scheds fractions must be positive and sum to 1, got {list(self.pcts)}")

    def __call__(self, pos: float) -> float:
        pos = min(max(pos, 0.0), 1.0)
        lo = 0.0
        # The last segment owns p = 1 (the original indexed past the end there).
        for i, (pct, s) in enumerate(zip(self.pcts, self.scheds, strict=True)):
            hi = lo + pct
            if pos < hi or i == len(self.pcts) - 1:
                return s(min((pos - lo) / pct, 1.0))
            lo = hi
        raise AssertionError("unreachable")

    def scaled(self, k: float) -> Combined:
        """Every part scaled by k."""
        return Combined(self.pcts, tuple(scaled(s, k) for s in self.scheds))

    def describe(self) -> str:
        """'cos 4e-05 -> 0.001 (0-25%), cos 0.001 -> 1e-08 (25-100%)'."""
        out, lo = [], 0.0
        for pct, s in zip(self.pcts, self.scheds, strict=True):
            out.append(f"{describe(s)} ({lo * 100:.0f}-{(lo + pct) * 100:.0f}%)")
            lo += pct
        return ", ".join(out)

    @property
    def text(self) -> str:
        """The form parse_sched reads back."""
        return ",".join(
            f"{getattr(s, 'text', '?')}@{p!r}" for p, s in zip(self.pcts, self.scheds, strict=True)
        )


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Schedule]) -> Combined:
    """Run each schedule over its fraction of training; pcts must be positive and sum to 1."""
    return Combined(tuple(float(p) for p in pcts), tuple(scheds))


@dataclass(frozen=True)
class Remainder:
    """A schedule spread over the part of a fit that is left after position `p0` (a change made mid-fit)."""

    sched: Schedule
    p0: float

    def __call__(self, p: float) -> float:
        if self.p0 >= 1.0:
            return self.sched(1.0)
        return self.sched(min(max((p - self.p0) / (1.0 - self.p0), 0.0), 1.0))

    def scaled(self, k: float) -> Remainder:
        """The same schedule scaled by k."""
        return Remainder(scaled(self.sched, k), self.p0)

    def describe(self) -> str:
        """The schedule, and from where in the fit it runs."""
        return f"{describe(self.sched)} over the rest of the fit from {self.p0 * 100:.0f}%"


@dataclass(frozen=True)
class Scaled:
    """Any schedule times a constant (for plain functions that cannot rescale themselves)."""

    sched: Schedule
    k: float

    def __call__(self, p: float) -> float:
        return self.k * self.sched(p)

    def scaled(self, k: float) -> Scaled:
        """Scaled again."""
        return Scaled(self.sched, self.k * k)

    def describe(self) -> str:
        """The inner schedule and the factor."""
        return f"{self.k:.3g} x ({describe(self.sched)})"


def scaled(s: Schedule, k: float) -> Schedule:
    """s with every value multiplied by k, keeping its shape (and its description)."""
    method = getattr(s, "scaled", None)
    return method(k) if callable(method) else Scaled(s, k)


def describe(s: Schedule) -> str:
    """One line describing a schedule (its own words, or its values at 0, 50 and 100 %)."""
    method = getattr(s, "describe", None)
    if callable(method):
        return str(method())
    return f"custom {_fmt(s(0.0))} .. {_fmt(s(0.5))} .. {_fmt(s(1.0))}"


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


def parse_sched(text: str | Sequence[str] | float) -> Schedule:
    """A schedule from its text form: `1e-3` (constant), `cos:1e-3:1e-6`, `no:0.9`, or parts with fractions
    `lin:1e-5:1e-3@0.3,cos:1e-3:1e-6` (a part without @F takes what is left). ValueError names the problem."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return sched_no(float(text))
    parts = list(text) if isinstance(text, (list, tuple)) else str(text).split(",")
    parts = [str(p).strip() for p in parts]
    if not parts or any(not p for p in parts):
        raise ValueError(f"empty schedule {text!r}; write e.g. cos:1e-3:1e-6")
    anneals: list[Anneal] = []
    pcts: list[float | None] = []
    for part in parts:
        body, at, pct = part.partition("@")
        pcts.append(_float(pct, part) if at else None)
        anneals.append(_anneal(body))
    if len(anneals) == 1 and pcts[0] is None:
        return anneals[0]
    given = sum(p for p in pcts if p is not None)
    missing = [i for i, p in enumerate(pcts) if p is None]
    if len(missing) > 1:
        raise ValueError(f"schedule {text!r}: give a fraction (@F) to every part but one")
    if missing:
        pcts[missing[0]] = 1.0 - given
    return combine_scheds([p for p in pcts if p is not None], anneals)


def _anneal(body: str) -> Anneal:
    fields = body.split(":")
    if len(fields) == 1:
        return sched_no(_float(fields[0], body))
    kind = fields[0]
    if kind not in ANNEALERS:
        raise ValueError(f"unknown annealer '{kind}' in '{body}'; use one of {', '.join(ANNEALERS)}")
    if kind == "no":
        if len(fields) != 2:
            raise ValueError(f"'{body}': write no:VALUE")
        return sched_no(_float(fields[1], body))
    if len(fields) != 3:
        raise ValueError(f"'{body}': write {kind}:START:END (e.g. {kind}:1e-3:1e-5)")
    return Anneal(kind, _float(fields[1], body), _float(fields[2], body))


def _float(s: str, where: str) -> float:
    try:
        f = float(s)
    except ValueError:
        raise ValueError(f"'{s}' in '{where}' is not a number") from None
    if not math.isfinite(f):
        raise ValueError(f"'{s}' in '{where}' is not a finite number")
    return f
