"""Per-param-group values: one number, a list (one per group), or a spread `lo..hi` (discriminative lrs)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labcon.commands.base import hyper, number
from labcon.commands.lex import Value, fmt_value
from labcon.errors import CommandError

_SPREAD = re.compile(r"([^.][^\s]*?)\.\.([^\s]+)", re.ASCII)


@dataclass(frozen=True)
class Spread:
    """lo..hi: from lo for the first param group to hi for the last, evenly on a log scale (fastai's slice)."""

    lo: float
    hi: float

    def values(self, n: int) -> tuple[float, ...]:
        """One value per group for n groups (n = 1: hi, the head's value)."""
        if n == 1:
            return (self.hi,)
        step = (self.hi / self.lo) ** (1 / (n - 1))
        return tuple(self.lo * step**i for i in range(n))

    @property
    def text(self) -> str:
        """'1e-05..0.001'."""
        return f"{self.lo!r}..{self.hi!r}"


GroupValue = float | tuple[float, ...] | Spread


def group_value(v: Value, name: str) -> GroupValue:
    """A value for `name` in every group, a list, or a spread; each number checked against its range."""
    if isinstance(v, str):
        m = _SPREAD.fullmatch(v)
        if m is None:
            raise CommandError(
                f"{name} must be a number (e.g. 1e-3), a list (1e-4,1e-3) or lo..hi, got '{v}'"
            )
        try:
            lo, hi = float(m.group(1)), float(m.group(2))
        except ValueError:
            raise CommandError(f"{name}=lo..hi needs two numbers, got '{v}'") from None
        hyper(name, (lo, hi))
        if not lo < hi:
            raise CommandError(f"{name}=lo..hi needs lo < hi, got '{v}'")
        return Spread(lo, hi)
    return hyper(name, number(v, name))


def per_group(v: GroupValue, n: int) -> tuple[float, ...]:
    """The value for each of n groups."""
    if isinstance(v, Spread):
        return v.values(n)
    return v if isinstance(v, tuple) else (v,) * n


def fmt_group_value(v: GroupValue) -> str:
    """Canonical text of a group value."""
    return v.text if isinstance(v, Spread) else fmt_value(v)


def check_groups(name: str, v: GroupValue, n: int) -> None:
    """A list must have one value per group."""
    if isinstance(v, tuple) and len(v) != n:
        raise CommandError(
            f"{name} has {len(v)} values for {n} param group(s); give one per group (or lo..hi)"
        )
