"""Transfer-learning and inspection commands: freeze, unfreeze, unfreeze_to, fine_tune, summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from labcon.commands.base import Args, Command, CommandHost, command, hyper, need, number, whole
from labcon.errors import CommandError
from labcon.nn.transfer import SPLITTERS, check_groups, freeze_to


def default_splitter(model: nn.Module) -> Any:
    """The built-in splitter for a model built by labcon (xresnet: 3 groups; others: body and head)."""
    from labcon.nn.xresnet import ResBlock

    if any(isinstance(m, ResBlock) for m in model.modules()):
        return SPLITTERS["xresnet"]
    return SPLITTERS["body_head"]


def param_groups(runner: Any) -> list[list[nn.Parameter]]:
    """The runner's splitter's groups; a one-group optimizer is rebuilt on them (per-param state kept).

    Hyper-parameters of the old optimizer's last group are copied into every new group.
    """
    if runner.splitter is None:
        runner.splitter = default_splitter(runner.model)
    groups = runner.splitter(runner.model)
    check_groups(runner.model, groups)
    old = runner.opt
    if old is None or len(old.param_groups) != len(groups):
        if isinstance(runner.lr, (list, tuple)) and len(runner.lr) != len(groups):
            runner.lr = runner.lr[-1]
        new = runner.create_opt()
        if old is not None:
            hypers = {k: v for k, v in old.param_groups[-1].items() if k != "params"}
            for g in new.param_groups:
                g.update(hypers)
            for p, st in old.state.items():
                new.state[p] = st
    return groups


def _freeze(runner: Any, n: int | None) -> str:
    """freeze_to(n) on the runner's groups (n None: all but the head); a line saying what trains."""
    groups = param_groups(runner)
    if n is not None and n >= len(groups):
        raise CommandError(f"unfreeze_to {n}: there are {len(groups)} param groups (0..{len(groups) - 1})")
    k = freeze_to(runner.model, groups, -1 if n is None else n)
    trainable = sum(p.numel() for p in runner.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in runner.model.parameters())
    if k == 0:
        return f"all {len(groups)} param groups train ({trainable:,} params)"
    return (
        f"groups 0..{k - 1} of {len(groups)} frozen except normalisation layers; "
        f"{trainable:,} of {total:,} params train"
    )


@command
@dataclass(frozen=True)
class Freeze(Command):
    """Train only the head (last param group) and the normalisation layers."""

    name: ClassVar[str] = "freeze"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "freeze"
    summary: ClassVar[str] = "train only the head and the normalisation layers (from the next epoch)"
    replay: ClassVar[bool] = True

    def apply(self, host: CommandHost) -> str:
        return _freeze(host.runner, None)


@command
@dataclass(frozen=True)
class Unfreeze(Command):
    """Train every param group."""

    name: ClassVar[str] = "unfreeze"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "unfreeze"
    summary: ClassVar[str] = "train every param group (from the next epoch)"
    replay: ClassVar[bool] = True

    def apply(self, host: CommandHost) -> str:
        return _freeze(host.runner, 0)


@command
@dataclass(frozen=True)
class UnfreezeTo(Command):
    """Freeze param groups before n (normalisation layers stay trainable), train groups n and after."""

    name: ClassVar[str] = "unfreeze_to"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "unfreeze_to N"
    summary: ClassVar[str] = "freeze param groups before N (normalisation layers stay trainable), train N on"
    example: ClassVar[str] = "unfreeze_to 1"
    replay: ClassVar[bool] = True
    n: int

    @property
    def text(self) -> str:
        return f"unfreeze_to {self.n}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        n = whole(a.one("a param group index"), "param group index", a.key, lo=0)
        a.allow(())
        return cls(n)

    def apply(self, host: CommandHost) -> str:
        return _freeze(host.runner, self.n)


@command
@dataclass(frozen=True)
class FineTune(Command):
    """Frozen one-cycle epoch(s) at lr, then n unfrozen epochs with lrs from lr/200 to lr/2 across groups.

    The session runs it as those commands (freeze, fit_one_cycle, unfreeze, fit_one_cycle), each journaled.
    """

    name: ClassVar[str] = "fine_tune"
    when: ClassVar[str] = "idle"
    usage: ClassVar[str] = "fine_tune N [lr=F] [freeze_epochs=K]"
    summary: ClassVar[str] = (
        "K frozen one-cycle epochs at lr, then N unfrozen ones at lr/200..lr/2 across param groups"
    )
    options: ClassVar[tuple[str, ...] | None] = ("lr", "freeze_epochs")
    example: ClassVar[str] = "fine_tune 3 lr=1e-2"
    n: int
    lr: float | None = None
    freeze_epochs: int = 1

    @property
    def text(self) -> str:
        s = f"fine_tune {self.n}"
        if self.lr is not None:
            s += f" lr={self.lr!r}"
        return s if self.freeze_epochs == 1 else f"{s} freeze_epochs={self.freeze_epochs}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        n = int(hyper("epochs", whole(a.one("a number of epochs"), "number of epochs", a.key, lo=1)))
        opts = dict(a.allow(cls.options))
        lr = number(opts["lr"], "lr") if "lr" in opts else None
        need(
            not isinstance(lr, tuple), "fine_tune's lr is one number (the head's); the body gets lr/200..lr/2"
        )
        if lr is not None:
            hyper("lr", lr)
        k = opts.get("freeze_epochs", 1)
        need(
            not isinstance(k, bool) and isinstance(k, int) and k >= 1,
            f"freeze_epochs must be a whole number >= 1, got {k}",
        )
        return cls(n, lr, int(k))

    def steps(self, lr: float) -> tuple[Command, Command, Command]:
        """The commands before the last fit (whose lrs depend on the number of groups then)."""
        from labcon.commands.cmd_train import FitOneCycle

        return Freeze(), FitOneCycle(self.freeze_epochs, lr, 0.99), Unfreeze()

    def last_fit(self, lr: float) -> Command:
        """The unfrozen one-cycle: lr/200 for the first group up to lr/2 for the head (fastai's rule)."""
        from labcon.commands.cmd_train import FitOneCycle
        from labcon.commands.spread import Spread

        return FitOneCycle(self.n, Spread(lr / 200, lr / 2), 0.3)


@command
@dataclass(frozen=True)
class Summary(Command):
    """Per-layer output shape, parameters and multiply-adds of the model on one batch."""

    name: ClassVar[str] = "summary"
    when: ClassVar[str] = "batch"  # runs a forward pass: on the training thread, between batches
    usage: ClassVar[str] = "summary"
    summary: ClassVar[str] = "per-layer output shape, parameters and multiply-adds on one batch"

    def apply(self, host: CommandHost) -> str:
        from labcon.core.summary import format_summary, model_summary

        runner = host.runner
        xb = summary_batch(runner)
        return format_summary(model_summary(runner.model, xb), runner.model, len(xb))


def summary_batch(runner: Any) -> Any:
    """Two validation items on the runner's device: what a summary runs through the model."""
    dls = runner.dls
    xb = dls.one_batch(valid=True)[0] if hasattr(dls, "one_batch") else next(iter(dls.valid))[0]
    return xb[:2].to(runner.device)
