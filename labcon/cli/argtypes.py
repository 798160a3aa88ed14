"""argparse `type=` converters that refuse out-of-range option values while the command line is parsed.

argparse prints "argument --NAME: MESSAGE" and exits 2; each MESSAGE says what is allowed and what was given.
(Hyper-parameter flags such as --lr use labcon.core.hypers.parse_cli_hyper, which applies the config's rules.)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def at_least(minimum: int, what: str = "a whole number") -> Callable[[str], int]:
    """A whole number >= `minimum` (e.g. --limit, --nproc, --size)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} of {minimum} or more, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what} of {minimum} or more, got {value}")
        return value

    convert.__name__ = "whole number"  # argparse names the type in its own messages
    return convert


def seconds(zero: str | None = None) -> Callable[[str], float]:
    """A finite number of seconds, > 0; or >= 0 when `zero` says what 0 means (e.g. "every update")."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        low = "0 or more" if zero else "more than 0"
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            means = f" (0: {zero})" if zero else ""
            raise argparse.ArgumentTypeError(f"must be a number of seconds, {low}{means}; got '{text}'")
        return value

    convert.__name__ = "seconds"
    return convert


def session_name(text: str) -> str:
    """A session name that is safe as a folder (the rule the sessions directory enforces)."""
    from labcon.errors import LabconError
    from labcon.session.paths import validate_session_name

    try:
        return validate_session_name(text)
    except LabconError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
