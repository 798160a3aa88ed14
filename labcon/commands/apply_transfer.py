"""Applying freeze / unfreeze / unfreeze_to and summary to a Runner (transfer learning and model inspection)."""

from __future__ import annotations

from typing import Any

from torch import nn

from labcon.commands.defs import Freeze, Summary, Unfreeze, UnfreezeTo
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


def _describe(runner: Any, groups: list[list[nn.Parameter]], k: int) -> str:
    n = len(groups)
    trainable = sum(p.numel() for p in runner.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in runner.model.parameters())
    if k == 0:
        return f"all {n} param groups train ({trainable:,} params)"
    return (
        f"groups 0..{k - 1} of {n} frozen except normalisation layers; "
        f"{trainable:,} of {total:,} params train"
    )


def apply_freeze(cmd: Freeze | Unfreeze | UnfreezeTo, runner: Any) -> str:
    """freeze: all but the last group; unfreeze: none; unfreeze_to N: groups before N."""
    groups = param_groups(runner)
    if isinstance(cmd, UnfreezeTo) and cmd.n >= len(groups):
        raise CommandError(
            f"unfreeze_to {cmd.n}: there are {len(groups)} param groups (0..{len(groups) - 1})"
        )
    n = -1 if isinstance(cmd, Freeze) else 0 if isinstance(cmd, Unfreeze) else cmd.n
    k = freeze_to(runner.model, groups, n)
    return _describe(runner, groups, k)


def apply_summary(cmd: Summary, runner: Any) -> str:
    """The model_summary table on a few items of one validation batch."""
    from labcon.core.summary import format_summary, model_summary

    dls = runner.dls
    xb = dls.one_batch(valid=True)[0] if hasattr(dls, "one_batch") else next(iter(dls.valid))[0]
    xb = xb[:2]
    xb = xb.to(runner.device)
    rows = model_summary(runner.model, xb)
    return format_summary(rows, runner.model, len(xb))
