"""The config's vocabulary and one typed check per field: what `[model]`, `[train]` and `[telemetry]` accept."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from labcon.core.callbacks.schedule import check_schedule_text
from labcon.core.hypers import RULES, HyperParamError, check_hyper
from labcon.errors import ConfigError
from labcon.fmt import did_you_mean
from labcon.session.toml_io import KeyPath, _line_of, dump_value

ARCHS = ("simple_cnn", "xresnet18", "xresnet34", "xresnet50", "awd_lstm")
NORMS = ("batch", "running", "layer", "group", "instance")
INITS = ("kaiming", "lsuv", "default")
OPTS = ("adam", "sgd", "lamb")
SCHEDULES = ("one_cycle", "constant")
LOSSES = ("cross_entropy", "label_smoothing", "bce")


def _splitter_names() -> tuple[str, ...]:
    """Every registered splitter (models outside labcon.nn register theirs in SPLITTERS)."""
    from labcon.nn.transfer import SPLITTERS

    return tuple(SPLITTERS)


PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_CHANNELS = (16, 32, 64, 64)
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def suggest(key: str, valid: Any, label: str = "") -> str:
    """'; did you mean X?' (and the valid names when a label is given) for an unknown key."""
    hint = did_you_mean(key, valid)
    if label:
        hint += f"{' ' if hint else '; '}{label}: {', '.join(valid)}"
    return hint


def show_value(v: Any) -> str:
    """A TOML value as an error message shows it."""
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return f"an array {dump_value(v)}" if len(repr(v)) < 40 else "an array"
    return repr(v)


class Validator:
    """Type and range checks that raise ConfigError naming the key path, file and line."""

    def __init__(self, source: str, lines: dict[KeyPath, int]):
        self.source, self.lines = source, lines

    def fail(self, path: KeyPath, problem: str) -> None:
        name = ".".join(str(p) for p in path)
        line = _line_of(self.lines, path)
        raise ConfigError(
            f"{name} at {self.source}:{line}: {problem}" if line else f"{name} in {self.source}: {problem}"
        )

    def keys(self, table: dict[str, Any], path: KeyPath, valid: Any) -> None:
        for key in table:
            if key not in valid:
                line = _line_of(self.lines, (*path, key))
                where = f"[{'.'.join(map(str, path))}]" if path else "the top level"
                at = f" at {self.source}:{line}" if line else f" in {self.source}"
                raise ConfigError(f"unknown key {key!r} in {where}{at}{suggest(key, valid, 'valid keys')}")

    def table(self, v: Any, path: KeyPath) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(path, f"expected a table [{'.'.join(map(str, path))}], got {show_value(v)}")
        return v

    def num(
        self, v: Any, path: KeyPath, gt: float | None = None, ge: float | None = None, le: float | None = None
    ) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.fail(path, f"expected a number, got {show_value(v)}")
        bounds = [
            (gt, ">", v > gt if gt is not None else True),
            (ge, ">=", v >= ge if ge is not None else True),
        ]
        bounds.append((le, "<=", v <= le if le is not None else True))
        if not math.isfinite(v) or not all(ok for _, _, ok in bounds):
            rng = " and ".join(f"{op} {b}" for b, op, _ in bounds if b is not None) or "finite"
            self.fail(path, f"must be {rng}, got {v!r}")
        return float(v)

    def hyper(self, v: Any, path: KeyPath) -> Any:
        """A hyper-parameter, checked by the one rule set every entry point uses (labcon/core/hypers.py)."""
        name = str(path[-1])
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.fail(path, f"expected a number, got {show_value(v)}")
        try:
            return check_hyper(name, v if RULES[name].whole else float(v))
        except HyperParamError as e:
            self.fail(path, str(e).removeprefix(f"{name} "))

    def schedule(self, v: Any, path: KeyPath) -> str | tuple[tuple[str, str], ...]:
        """`schedule = "one_cycle"`, or a [train.schedule] table of NAME = "SCHEDULE" (policy = ... optional)."""
        if not isinstance(v, dict):
            return self.choice(v, path, SCHEDULES)
        out = []
        for name, text in v.items():
            if name == "policy":
                out.append((name, self.choice(text, (*path, name), SCHEDULES)))
                continue
            try:
                out.append((name, check_schedule_text(name, text)))
            except (ValueError, TypeError) as e:
                self.fail((*path, name), f'{e}; write e.g. {name} = "cos:1e-3:1e-5"')
        return tuple(out)

    def int_(self, v: Any, path: KeyPath, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, f"expected a whole number, got {show_value(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(path, f"must be {f'>= {lo}' if hi is None else f'between {lo} and {hi}'}, got {v}")
        return v

    def str_(self, v: Any, path: KeyPath) -> str:
        if not isinstance(v, str):
            self.fail(path, f"expected a string, got {show_value(v)}")
        return v

    def choice(self, v: Any, path: KeyPath, choices: tuple[str, ...]) -> str:
        if self.str_(v, path) not in choices:
            self.fail(path, f"{v!r} is not valid{suggest(v, choices, 'expected one of')}")
        return v

    def str_list(self, v: Any, path: KeyPath) -> tuple[str, ...]:
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            self.fail(path, f"expected an array of strings, got {show_value(v)}")
        return tuple(v)

    def int_list(self, v: Any, path: KeyPath) -> tuple[int, ...]:
        if not (isinstance(v, list | tuple) and v and all(type(x) is int and x > 0 for x in v)):
            self.fail(
                path,
                f"expected a non-empty array of positive whole numbers like [16, 32, 64], got {show_value(v)}",
            )
        return tuple(v)

    def device(self, v: Any, path: KeyPath) -> str:
        if not _DEVICE_RE.match(self.str_(v, path)):
            self.fail(path, f'{v!r} is not a device; use "auto", "cpu", "cuda" or "cuda:N"')
        return v

    def bool_(self, v: Any, path: KeyPath) -> bool:
        if not isinstance(v, bool):
            self.fail(path, f"expected true or false, got {show_value(v)}")
        return v


_Check = Callable[[Validator, Any, KeyPath], Any]
# One checker per field of each section; each returns the field's typed value or raises ConfigError.
FIELDS: dict[str, dict[str, _Check]] = {
    "model": {
        "arch": lambda v, x, p: v.choice(x, p, ARCHS),
        "norm": lambda v, x, p: v.choice(x, p, NORMS),
        "init": lambda v, x, p: v.choice(x, p, INITS),
        "channels": lambda v, x, p: v.int_list(x, p),
        "groups": lambda v, x, p: v.int_(x, p, lo=1),
        "leak": lambda v, x, p: v.num(x, p, ge=0, le=1),
        "sub": lambda v, x, p: v.num(x, p),
        "maxv": lambda v, x, p: v.num(x, p, gt=0),
        "splitter": lambda v, x, p: v.choice(x, p, _splitter_names()),
        "body": lambda v, x, p: v.str_(x, p),
        "head_dropout": lambda v, x, p: v.num(x, p, ge=0, le=0.99),
        "emb_sz": lambda v, x, p: v.int_(x, p, lo=1),
        "n_hid": lambda v, x, p: v.int_(x, p, lo=1),
        "n_layers": lambda v, x, p: v.int_(x, p, lo=1),
        "drop_mult": lambda v, x, p: v.num(x, p, ge=0, le=2),
        "encoder": lambda v, x, p: v.str_(x, p),
    },
    "train": {
        "epochs": lambda v, x, p: v.hyper(v.int_(x, p), p),
        "lr": lambda v, x, p: v.hyper(x, p),
        "opt": lambda v, x, p: v.choice(x, p, OPTS),
        "wd": lambda v, x, p: v.hyper(x, p),
        "mom": lambda v, x, p: v.hyper(x, p),
        "schedule": lambda v, x, p: v.schedule(x, p),
        "loss": lambda v, x, p: v.choice(x, p, LOSSES),
        "smoothing": lambda v, x, p: v.num(x, p, ge=0, le=0.99),
        "metrics": lambda v, x, p: v.str_list(x, p),
        "precision": lambda v, x, p: v.choice(x, p, PRECISIONS),
        "grad_clip": lambda v, x, p: v.num(x, p, gt=0),
        "grad_accum": lambda v, x, p: v.int_(x, p, lo=1),
        "device": lambda v, x, p: v.device(x, p),
        "channels_last": lambda v, x, p: v.bool_(x, p),
        "compile": lambda v, x, p: v.bool_(x, p),
    },
    "telemetry": {
        "enabled": lambda v, x, p: v.bool_(x, p),
        "every": lambda v, x, p: v.int_(x, p, lo=1),
        "sample_every": lambda v, x, p: v.int_(x, p, lo=1),
        "layers": lambda v, x, p: v.str_list(x, p),
    },
}
