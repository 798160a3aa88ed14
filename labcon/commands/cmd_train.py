"""Commands that start or steer training: fit, fit_one_cycle, lr_find, profile, pause, resume, stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from labcon.commands.base import (
    Args,
    Command,
    CommandContext,
    CommandHost,
    Opts,
    command,
    hyper,
    need,
    number,
    whole,
)
from labcon.commands.lex import fmt_opts
from labcon.commands.spread import GroupValue, check_groups, fmt_group_value, group_value, per_group
from labcon.core.hypers import HyperParamError, check_lr_range
from labcon.errors import CommandError


def _epochs(a: Args) -> int:
    n = whole(a.one("a number of epochs"), "number of epochs", a.key, lo=1)
    return int(hyper("epochs", n))


def _lr_plan(lr: GroupValue | None, n_groups: int) -> float | list[float] | None:
    if lr is None:
        return None
    vals = per_group(lr, n_groups)
    return vals[0] if len(set(vals)) == 1 and not isinstance(lr, tuple) else list(vals)


class _FitLr:
    """The lr option of `fit` and `fit_one_cycle`: checked against the param groups, planned per group."""

    lr: GroupValue | None

    def check(self, ctx: CommandContext) -> None:
        if self.lr is not None:
            check_groups("lr", self.lr, ctx.n_groups)

    def lr_plan(self, n_groups: int) -> float | list[float] | None:
        """The (peak) lr to start with, one or one per group; None for the configured one."""
        return _lr_plan(self.lr, n_groups)


@command
@dataclass(frozen=True)
class Fit(_FitLr, Command):
    """Train for n more epochs, at the configured lr (or lr=) and the session's schedules."""

    name: ClassVar[str] = "fit"
    when: ClassVar[str] = "idle"
    usage: ClassVar[str] = "fit N [lr=F|a,b|lo..hi]"
    summary: ClassVar[str] = "train N more epochs at the configured lr (not what a previous schedule left)"
    options: ClassVar[tuple[str, ...] | None] = ("lr",)
    example: ClassVar[str] = "fit 3 lr=1e-3"
    replay: ClassVar[bool] = True
    n: int
    lr: GroupValue | None = None

    @property
    def text(self) -> str:
        return f"fit {self.n}" + ("" if self.lr is None else f" lr={fmt_group_value(self.lr)}")

    @classmethod
    def parse(cls, a: Args) -> Command:
        n = _epochs(a)
        opts = dict(a.allow(cls.options))
        return cls(n, group_value(opts["lr"], "lr") if "lr" in opts else None)


@command
@dataclass(frozen=True)
class FitOneCycle(_FitLr, Command):
    """Train n epochs with the one-cycle policy (lr: peak lr, one per param group allowed)."""

    name: ClassVar[str] = "fit_one_cycle"
    when: ClassVar[str] = "idle"
    usage: ClassVar[str] = "fit_one_cycle N [lr=MAX|a,b|lo..hi] [pct_start=F]"
    summary: ClassVar[str] = (
        "train N epochs with the one-cycle lr/momentum policy (lr=a,b or lo..hi: one peak per group)"
    )
    options: ClassVar[tuple[str, ...] | None] = ("lr", "pct_start")
    example: ClassVar[str] = "fit_one_cycle 5 lr=3e-3"
    replay: ClassVar[bool] = True
    n: int
    lr: GroupValue | None = None
    pct_start: float | None = None

    @property
    def text(self) -> str:
        s = f"fit_one_cycle {self.n}"
        if self.lr is not None:
            s += f" lr={fmt_group_value(self.lr)}"
        if self.pct_start is not None:
            s += f" pct_start={self.pct_start!r}"
        return s

    @classmethod
    def parse(cls, a: Args) -> Command:
        n = _epochs(a)
        opts = dict(a.allow(cls.options))
        lr = group_value(opts["lr"], "lr") if "lr" in opts else None
        pct = opts.get("pct_start")
        if pct is not None:
            pct = number(pct, "pct_start")
            if isinstance(pct, tuple):
                raise CommandError(f"pct_start must be one number between 0 and 1, got {pct}")
            try:
                hyper("pct_start", pct)
            except CommandError:
                raise CommandError(f"pct_start must be one number between 0 and 1, got {pct}") from None
        return cls(n, lr, pct)


@command
@dataclass(frozen=True)
class LrFind(Command):
    """Run the learning-rate range test (model and optimizer restored afterwards)."""

    name: ClassVar[str] = "lr_find"
    when: ClassVar[str] = "idle"
    replay: ClassVar[bool] = True
    usage: ClassVar[str] = "lr_find [start_lr=F] [end_lr=F] [num_it=N]"
    summary: ClassVar[str] = "learning-rate range test; model and optimizer are restored afterwards"
    options: ClassVar[tuple[str, ...] | None] = ("start_lr", "end_lr", "num_it")
    example: ClassVar[str] = "lr_find"
    opts: Opts = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options as keyword arguments (start_lr, end_lr, num_it)."""
        return dict(self.opts)

    @property
    def text(self) -> str:
        return "lr_find" + fmt_opts(self.opts)

    @classmethod
    def parse(cls, a: Args) -> Command:
        a.positional(0, 0)
        opts = a.allow(cls.options)
        out = []
        for k, v in opts:
            if k == "num_it":
                if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                    raise CommandError(f"num_it must be a whole number >= 2, got {v}")
                out.append((k, v))
                continue
            f = number(v, k)
            if isinstance(f, tuple) or f <= 0:
                raise CommandError(f"{k} must be one positive number, got {v}")
            out.append((k, hyper(k, f)))
        kw = dict(out)
        try:  # the defaults are the runner's (1e-7 .. 10): the range must still go up
            check_lr_range(float(kw.get("start_lr", 1e-7)), float(kw.get("end_lr", 10.0)))
        except HyperParamError as e:
            raise CommandError(f"{e} (lr_find sweeps from start_lr up to end_lr)") from None
        return cls(tuple(out))


@command
@dataclass(frozen=True)
class Profile(Command):
    """Time n training steps part by part (model, optimizer and counters restored afterwards)."""

    name: ClassVar[str] = "profile"
    when: ClassVar[str] = "idle"
    usage: ClassVar[str] = "profile [N]"
    summary: ClassVar[str] = (
        "time N training steps (default 20): data, forward, loss, backward, optimizer step and each callback, "
        "with shares; model and optimizer are restored afterwards"
    )
    example: ClassVar[str] = "profile 20"
    n: int = 20  # not replayed (the default): it puts everything back, so there is nothing to repeat

    @property
    def text(self) -> str:
        return f"profile {self.n}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        pos = a.positional(0, 1)
        a.allow(())
        return cls(whole(pos[0], "number of steps", a.key, lo=1)) if pos else cls()


@command
@dataclass(frozen=True)
class Pause(Command):
    """Pause training at the next batch boundary."""

    name: ClassVar[str] = "pause"
    when: ClassVar[str] = "batch"
    usage: ClassVar[str] = "pause"
    summary: ClassVar[str] = "pause training at the next batch boundary"

    def check(self, ctx: CommandContext) -> None:
        need(ctx.state == "running", f"nothing to pause: the session is {ctx.state}")

    def apply(self, host: CommandHost) -> str:
        return host.pause()


@command
@dataclass(frozen=True)
class Resume(Command):
    """Resume paused training."""

    name: ClassVar[str] = "resume"
    when: ClassVar[str] = "batch"
    usage: ClassVar[str] = "resume"
    summary: ClassVar[str] = "resume paused training"

    def check(self, ctx: CommandContext) -> None:
        # While running, a resume may still cancel a pause that has not reached its batch boundary yet.
        need(ctx.state in ("paused", "running"), f"nothing to resume: the session is {ctx.state}")

    def apply(self, host: CommandHost) -> str:
        return host.resume()


@command
@dataclass(frozen=True)
class Stop(Command):
    """Stop the running fit at the next batch boundary."""

    name: ClassVar[str] = "stop"
    when: ClassVar[str] = "batch"
    replay: ClassVar[bool] = True
    usage: ClassVar[str] = "stop"
    summary: ClassVar[str] = "stop the running fit at the next batch boundary"

    def check(self, ctx: CommandContext) -> None:
        need(ctx.state in ("running", "paused"), f"nothing to stop: the session is {ctx.state}")

    def apply(self, host: CommandHost) -> str:
        return host.stop()
