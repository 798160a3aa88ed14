"""One validation of hyper-parameters (lr, mom, wd, eps, betas, epochs, ...), shared by every way in.

The config reader, the CLI flags, the command language and the optimizers built from Python all call
`check_hyper`, so a value is refused with the same words wherever it comes from. Rules follow
torch.optim where it has one (betas in [0, 1), eps and wd >= 0) and are stricter where a value can
only be a mistake (lr = 0 trains nothing; lr above 100 diverges at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from labcon.errors import LabconError


class HyperParamError(LabconError, ValueError):
    """A hyper-parameter value is out of its range (a ValueError, as torch.optim raises)."""


@dataclass(frozen=True)
class Rule:
    """The range of one hyper-parameter: bounds (open or closed), whole number or not, and an example."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    whole: bool = False
    example: str = ""

    def describe(self) -> str:
        """'a number > 0 and <= 100' and the like."""
        kind = "a whole number" if self.whole else "a number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_num(self.hi)}")
        return kind + (" " + " and ".join(parts) if parts else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# Aliases used by torch.optim map onto the same rule.
RULES: dict[str, Rule] = {
    "lr": Rule(0.0, 100.0, lo_open=True, example="1e-3"),
    "mom": Rule(0.0, 1.0, hi_open=True, example="0.9"),
    "sqr_mom": Rule(0.0, 1.0, hi_open=True, example="0.99"),
    "wd": Rule(0.0, 10.0, example="1e-2"),
    "eps": Rule(0.0, 1.0, example="1e-5"),
    "epochs": Rule(1, 100_000, whole=True, example="5"),
    "pct_start": Rule(0.0, 1.0, lo_open=True, hi_open=True, example="0.25"),
    "start_lr": Rule(0.0, 1e3, lo_open=True, example="1e-7"),
    "end_lr": Rule(0.0, 1e3, lo_open=True, example="10"),
    "num_it": Rule(2, 1_000_000, whole=True, example="100"),
    "grad_clip": Rule(0.0, None, lo_open=True, example="1.0"),
    "dropout": Rule(0.0, 1.0, hi_open=True, example="0.1"),
}
# torch.optim's names for labcon's hyper-parameters (param groups of torch optimizers use them).
TORCH_NAMES: dict[str, str] = {"momentum": "mom", "weight_decay": "wd"}
ALIASES: dict[str, str] = {**TORCH_NAMES, "n_epochs": "epochs", "n": "epochs"}
# Hyper-parameters that can live in an optimizer's param groups (what `set` and `sched` accept).
OPT_HYPERS: tuple[str, ...] = ("lr", "mom", "sqr_mom", "wd", "eps")
# What a schedule may set (`sched`, [train.schedule]): the optimizer's hyper-parameters and dropout's p.
SCHEDULABLE: tuple[str, ...] = (*OPT_HYPERS, "dropout")


def _show(value: Any) -> str:
    """The value as the user wrote it, quoted when it is text (the quotes are kept in every message)."""
    if isinstance(value, str):
        return f"'{value}'"
    text = repr(value) if isinstance(value, float) else str(value)
    return text[:-2] if text.endswith(".0") else text


def check_hyper(name: str, value: Any, allow_zero: bool = False) -> Any:
    """`value` if it is valid for hyper-parameter `name` (a float, or an int for whole ones); else HyperParamError.

    Unknown names pass unchanged (optimizers may take options this module does not know). `allow_zero`
    accepts 0 where the rule excludes it (an optimizer built from Python with lr=0, as torch.optim allows).
    """
    rule = RULES.get(ALIASES.get(name, name))
    if rule is None:
        return value
    if allow_zero and rule.lo == 0 and rule.lo_open:
        rule = Rule(rule.lo, rule.hi, False, rule.hi_open, rule.whole, rule.example)
    example = f" (e.g. {name}={rule.example})" if rule.example else ""
    want = rule.describe()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HyperParamError(f"{name} must be {want}{example}, got {_show(value)}")
    if rule.whole and not (isinstance(value, int) or float(value).is_integer()):
        raise HyperParamError(f"{name} must be {want}{example}, got {_show(value)}")
    f = float(value)
    if not math.isfinite(f):
        raise HyperParamError(f"{name} must be {want}{example}, got {value}")
    bad_lo = rule.lo is not None and (f <= rule.lo if rule.lo_open else f < rule.lo)
    bad_hi = rule.hi is not None and (f >= rule.hi if rule.hi_open else f > rule.hi)
    if bad_lo or bad_hi:
        raise HyperParamError(f"{name} must be {want}{example}, got {_show(value)}")
    return int(f) if rule.whole else value


def check_hypers(values: dict[str, Any], allow_zero: bool = False) -> dict[str, Any]:
    """check_hyper on each item (lists and tuples item by item; `betas` as (mom, sqr_mom))."""
    for name, v in values.items():
        if name == "betas" and isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise HyperParamError(f"betas must be two numbers (mom, sqr_mom), got {v!r}")
            check_hyper("mom", v[0])
            check_hyper("sqr_mom", v[1])
        elif isinstance(v, (list, tuple)):
            for x in v:
                check_hyper(name, x, allow_zero)
        else:
            check_hyper(name, v, allow_zero)
    return values


def per_group(value: Any, n: int, what: str = "learning rates") -> list[Any]:
    """One value per param group: a single value for all n, or a list of exactly n (ValueError otherwise)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"got {len(values)} {what} for {n} param groups")
    return values


def check_lr_range(start_lr: float, end_lr: float) -> None:
    """An lr range test must go up: start_lr < end_lr."""
    check_hyper("start_lr", start_lr)
    check_hyper("end_lr", end_lr)
    if not start_lr < end_lr:
        raise HyperParamError(
            f"start_lr must be below end_lr, got start_lr={start_lr:g} and end_lr={end_lr:g}"
        )


def parse_cli_hyper(name: str) -> Any:
    """An argparse `type=` for a hyper-parameter flag: converts and checks (`--lr -1` exits non-zero)."""
    import argparse

    whole = RULES[ALIASES.get(name, name)].whole

    def convert(text: str) -> Any:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got '{text}'") from None
        try:
            return check_hyper(name, value)
        except HyperParamError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name  # argparse names the type in its messages
    return convert
