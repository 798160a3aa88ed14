"""Plain values for the journal: metrics as floats, JSON without NaN, numeric config values for queries."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from typing import Any


def to_float(value: Any) -> float | None:
    """A metric as a float, or None where it is not finite-representable (NaN)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON text of plain values; NaN becomes null and ±inf a string, so any JSON reader accepts it."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else str(v)
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), default=str, allow_nan=False, indent=indent)


def config_params(config_text: str, seed: int | None = None, aliases: bool = True) -> dict[str, float]:
    """Numeric config values for comparisons: top-level keys and one table deep (`train.lr`), plus the bare
    name (`lr`) where it is unambiguous, so queries can say `lr>1e-3` (aliases=False: each value once)."""
    try:
        raw = tomllib.loads(config_text)
    except (tomllib.TOMLDecodeError, TypeError):
        raw = {}
    out: dict[str, float] = {}
    nested: dict[str, list[float]] = {}

    def number(v: Any) -> float | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return to_float(v)

    for key, value in raw.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                f = number(v)
                if f is not None:
                    out[f"{key}.{sub}"] = f
                    nested.setdefault(sub, []).append(f)
        elif (f := number(value)) is not None:
            out[key] = f
    for name, values in nested.items():
        if aliases and name not in out and len(values) == 1:  # a bare name only when it is unambiguous
            out[name] = values[0]
    if seed is not None:
        out["seed"] = float(seed)  # the seed actually used wins over the file's
    return out


def run_record(row: Mapping[str, Any], tags: list[str]) -> dict[str, Any]:
    """A runs-table row as the dict every reader gets (CLI, Journal pane, export): parsed JSON, tags, duration.

    `duration` is the run's training time (paused and idle time left out); for runs journaled before training
    time was recorded, the wall time from start to end; None while the run is open.
    """
    d = dict(row)
    d["config"] = d.pop("config_text")
    d["env"] = json.loads(d.pop("env_json") or "{}")
    d["final_metrics"] = json.loads(d["final_metrics"] or "{}")
    d["tags"] = tags
    train_time = d.pop("train_time")
    if d["ended"] is None:
        d["duration"] = None
    else:
        d["duration"] = train_time if train_time is not None else d["ended"] - d["started"]
    return d
