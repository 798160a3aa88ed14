"""The one place numbers and durations become text (console panes, REPL, headless lines, CLI tables, replies)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


def fmt_num(x: object, digits: int = 4) -> str:
    """A metric in a short, aligned form ('0.1234', '1.2e-05', 'nan'); ints as they are, None as ''."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{max(1, digits - 2)}e}"
    return f"{x:.{digits}f}"


def fmt_value(x: object) -> str:
    """A setting as a person would type it ('0.003', '1e-05', '0.9'): hyper-parameters, learning rates."""
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def fmt_duration(seconds: float | None) -> str:
    """Seconds as 'm:ss' or 'h:mm:ss'; '--' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_row(row: dict[str, float]) -> str:
    """One epoch row as `epoch 3  train_loss 0.4123  valid_loss 0.3920  accuracy 0.8812  time 0:12`."""
    parts = []
    for k, v in row.items():
        if k == "epoch":
            parts.append(f"epoch {int(v)}")
        elif k == "time":
            parts.append(f"time {fmt_duration(v)}")
        else:
            parts.append(f"{k} {fmt_num(v)}")
    return "  ".join(parts)


def fmt_count(n: int) -> str:
    """A count in a short form: 1234567 -> '1.23M', 13824 -> '13.8k' (parameters, multiply-adds)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def did_you_mean(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> str:
    """ "; did you mean 'x'?" (several: 'x', 'y') when `word` is close to some of `choices`; else ""."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
