"""ParamScheduler: schedule any hyper-parameter of any param group; the one-cycle policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from labcon.core.events import Callback
from labcon.core.optim import set_hyper
from labcon.core.schedules import Schedule, one_cycle_scheds

if TYPE_CHECKING:
    from labcon.core.runner import Runner


class ParamScheduler(Callback):
    """Sets hyper-parameters from schedules before every training batch.

    `scheds` maps a hyper-parameter name (lr, mom, sqr_mom, wd, eps, ... or `dropout`, which sets
    every nn.Dropout's p) to one schedule, or a list with one schedule per param group.
    """

    order = 1

    def __init__(self, scheds: dict[str, Schedule | Sequence[Schedule]]):
        self.scheds = dict(scheds)

    def before_fit(self) -> None:
        n_groups = len(self.runner.opt.param_groups)
        for name, s in self.scheds.items():
            if isinstance(s, (list, tuple)) and len(s) != n_groups:
                raise ValueError(f"schedule for '{name}' has {len(s)} entries for {n_groups} param groups")
        self._set(0.0)

    def before_batch(self) -> None:
        if self.runner.training:
            self._set(self.runner.pct_train)

    def _set(self, pos: float) -> None:
        groups = self.runner.opt.param_groups
        for name, s in self.scheds.items():
            if name == "dropout":
                value = (s[0] if isinstance(s, (list, tuple)) else s)(pos)
                for m in self.runner.model.modules():
                    if isinstance(m, nn.modules.dropout._DropoutNd):
                        m.p = value
                continue
            for i, g in enumerate(groups):
                f = s[i] if isinstance(s, (list, tuple)) else s
                set_hyper(g, name, f(pos))


def one_cycle(
    runner: Runner,
    lr_max: float | Sequence[float] | None = None,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
) -> ParamScheduler:
    """A ParamScheduler for the one-cycle policy (lr_max per param group allowed; default runner.lr)."""
    if runner.opt is None:
        runner.create_opt()
    n = len(runner.opt.param_groups)
    lr_max = runner.lr if lr_max is None else lr_max
    lrs: list[Any] = list(lr_max) if isinstance(lr_max, (list, tuple)) else [lr_max] * n
    if len(lrs) != n:
        raise ValueError(f"got {len(lrs)} lr_max values for {n} param groups")
    per_group = [one_cycle_scheds(lr, pct_start, div, div_final, moms) for lr in lrs]
    scheds: dict[str, Any] = {"lr": [p["lr"] for p in per_group]}
    has_mom = all(any(k in g for k in ("mom", "momentum", "betas")) for g in runner.opt.param_groups)
    if has_mom:
        scheds["mom"] = [p["mom"] for p in per_group]
    return ParamScheduler(scheds)
