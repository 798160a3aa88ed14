"""ParamScheduler: schedule any hyper-parameter of any param group; the one-cycle policy; live changes to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from labcon.core.events import Callback
from labcon.core.hypers import SCHEDULABLE, HyperParamError, check_hyper, per_group
from labcon.core.optim import set_hyper
from labcon.core.schedules import (
    Remainder,
    Schedule,
    describe,
    one_cycle_scheds,
    parse_sched,
    scaled,
    sched_no,
)

if TYPE_CHECKING:
    from labcon.core.runner import Runner

# Points at which a schedule's values are checked against the hyper-parameter's range.
_CHECK_POINTS = tuple(i / 100 for i in range(101))


def check_schedule(name: str, sched: Schedule) -> None:
    """Every value the schedule takes (sampled at 101 points) must be valid for `name` (HyperParamError)."""
    for p in _CHECK_POINTS:
        v = sched(p)
        if not (name == "lr" and v == 0):  # annealing down to 0 is a schedule, not a mistake
            try:
                check_hyper(name, v)
            except HyperParamError as e:
                raise HyperParamError(f"{e} (where the schedule is at {p:.0%} of the fit)") from None


def check_schedule_text(name: str, text: Any) -> str:
    """The text of a valid schedule for `name` (a [train.schedule] value); ValueError names the problem."""
    if name not in SCHEDULABLE:
        raise ValueError(f"'{name}' cannot be scheduled; schedulable: {', '.join(SCHEDULABLE)}")
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f'expected a schedule such as "cos:1e-3:1e-5" or a number, got {text!r}')
    check_schedule(name, parse_sched(text if isinstance(text, str) else float(text)))
    return str(text)


# Schedule changes as plain records (a ParamScheduler's `edits`, a stopped fit's plan): built only here, read
# back by ParamScheduler.apply_edit.
def rescale_edit(name: str, values: Sequence[float], pos: float, group: int | None) -> dict[str, Any]:
    """The record of `rescale`."""
    return {"op": "rescale", "name": name, "values": [float(v) for v in values], "pos": pos, "group": group}


def replace_edit(name: str, text: str, pos: float) -> dict[str, Any]:
    """The record of `replace`."""
    return {"op": "replace", "name": name, "text": text, "pos": pos}


def fix_edit(name: str, value: float, group: int, n: int) -> dict[str, Any]:
    """The record of `fix`."""
    return {"op": "fix", "name": name, "value": float(value), "group": group, "n": n}


def drop_edit(name: str) -> dict[str, Any]:
    """The record of `drop`."""
    return {"op": "drop", "name": name}


class ParamScheduler(Callback):
    """Sets hyper-parameters from schedules before every training batch.

    `scheds` maps a hyper-parameter name (lr, mom, sqr_mom, wd, eps, ... or `dropout`, which sets
    every nn.Dropout's p) to one schedule, or a list with one schedule per param group.
    A live `set` rescales the rest of a schedule (`rescale`), `sched` replaces it (`replace`) and
    `set ... fixed` drops it (`drop`, `fix`): the scheduler never silently overwrites a change.

    Each change is recorded as plain data in `edits` (a list the caller may own, e.g. a fit plan that is
    checkpointed); a scheduler given earlier edits re-applies them when the fit starts, so a resumed fit
    keeps the changes made before it was interrupted.
    """

    order = 1
    removable = (
        False  # `sched NAME=off` stops one schedule; removing the scheduler mid-fit would break the fit
    )

    def __init__(
        self, scheds: dict[str, Schedule | Sequence[Schedule]], edits: list[dict[str, Any]] | None = None
    ):
        self.scheds = dict(scheds)
        self.edits: list[dict[str, Any]] = edits if edits is not None else []
        self._n_groups = 0
        self._dropouts: list[nn.Module] = []

    def before_fit(self) -> None:
        n_groups = len(self.runner.opt.param_groups)
        for name, s in self.scheds.items():
            if isinstance(s, (list, tuple)) and len(s) != n_groups:
                raise ValueError(f"schedule for '{name}' has {len(s)} entries for {n_groups} param groups")
        self._n_groups = n_groups
        earlier = list(self.edits)
        self.edits.clear()
        for e in earlier:  # each re-applied change records itself again
            self.apply_edit(e)
        self.before_epoch()
        self.set_now(self.runner.pct_train)

    def before_epoch(self) -> None:
        # Layers are swapped only between epochs, so the dropout layers a schedule sets are found once here.
        self._dropouts = [
            m for m in self.runner.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)
        ]

    def _follow_groups(self, n: int) -> None:
        """Per-group schedules after the optimizer was rebuilt with n groups (freeze/unfreeze on a one-group
        optimizer): like the new groups' hyper-parameters, every group takes the old last group's schedule."""
        for name, s in self.scheds.items():
            if isinstance(s, (list, tuple)) and len(s) != n:
                self.scheds[name] = s[-1]
        self._n_groups = n

    def apply_edit(self, e: dict[str, Any]) -> None:
        """Re-apply one recorded change."""
        op = e["op"]
        if op == "rescale":
            self.rescale(e["name"], e["values"], e["pos"], e.get("group"))
        elif op == "replace":
            self.replace(e["name"], e["text"], e["pos"])
        elif op == "fix":
            self.fix(e["name"], e["value"], e["group"], e["n"])
        elif op == "drop":
            self.drop(e["name"])
        else:
            raise ValueError(f"unknown schedule change {op!r}")

    def before_batch(self) -> None:
        if self.runner.training:
            self.set_now(self.runner.pct_train)

    def set_now(self, pos: float) -> None:
        """Set every scheduled hyper-parameter to its value at `pos` (a change then holds from this batch on)."""
        groups = self.runner.opt.param_groups
        if len(groups) != self._n_groups:
            self._follow_groups(len(groups))
        for name, s in self.scheds.items():
            if name == "dropout":
                value = (s[0] if isinstance(s, (list, tuple)) else s)(pos)
                for m in self._dropouts:
                    m.p = value
                continue
            for i, g in enumerate(groups):
                f = s[i] if isinstance(s, (list, tuple)) else s
                set_hyper(g, name, f(pos))

    # ----- live changes --------------------------------------------------------------------------------
    def per_group(self, name: str, n: int) -> list[Schedule]:
        """The schedule of `name` as one entry per param group."""
        s = self.scheds[name]
        return list(s) if isinstance(s, (list, tuple)) else [s] * n

    def rescale(self, name: str, values: Sequence[float], pos: float, group: int | None = None) -> list[bool]:
        """Scale the schedule of `name` so its value at `pos` becomes values[i] in each group (or only in
        `group`); the shape is kept. Returns, per group, whether it could be rescaled (a schedule at 0
        there cannot: that group's schedule is replaced by the constant instead)."""
        if name not in self.scheds:  # a change recorded for a fit that turned out not to schedule it
            return []
        n = len(values)
        per = self.per_group(name, n)
        done = []
        for i, (s, v) in enumerate(zip(per, values, strict=True)):
            if group is not None and i != group % n:
                done.append(True)
                continue
            now = s(pos)
            if now != 0 and (v == 0 or (now > 0) == (v > 0)):
                per[i] = scaled(s, v / now)
                done.append(True)
            else:
                per[i] = Remainder(lambda p, v=v: v, pos)
                done.append(False)
        self.scheds[name] = per if any(x != per[0] for x in per) else per[0]
        self.edits.append(rescale_edit(name, values, pos, group))
        return done

    def replace(self, name: str, sched: str, pos: float) -> None:
        """Run the schedule written `sched` (parse_sched's text) over the rest of the fit from `pos`."""
        s = parse_sched(sched)
        self.scheds[name] = Remainder(s, pos) if pos > 0 else s
        self.edits.append(replace_edit(name, sched, pos))

    def fix(self, name: str, value: float, group: int, n: int) -> None:
        """Hold `name` at `value` in one param group (of n); the others keep their schedule."""
        if name not in self.scheds:
            return
        per = self.per_group(name, n)
        per[group] = sched_no(value)
        self.scheds[name] = per
        self.edits.append(fix_edit(name, value, group, n))

    def drop(self, name: str) -> bool:
        """Stop scheduling `name` (its value stays where it is); False if it was not scheduled."""
        self.edits.append(drop_edit(name))
        return self.scheds.pop(name, None) is not None

    def describe(self) -> list[str]:
        """One line per scheduled hyper-parameter (per group when the groups differ)."""
        lines = []
        for name, s in self.scheds.items():
            if isinstance(s, (list, tuple)):
                texts = [describe(x) for x in s]
                if len(set(texts)) == 1:
                    lines.append(f"{name}: {texts[0]}")
                else:
                    lines += [f"{name} (group {i}): {t}" for i, t in enumerate(texts)]
            else:
                lines.append(f"{name}: {describe(s)}")
        return lines


def one_cycle(
    runner: Runner,
    lr_max: float | Sequence[float] | None = None,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    edits: list[dict[str, Any]] | None = None,
) -> ParamScheduler:
    """A ParamScheduler for the one-cycle policy (lr_max per param group allowed; default runner.lr).

    Schedules the runner keeps for every fit (`runner.schedules`: config `[train.schedule]` or `sched`
    while idle) run alongside for the hyper-parameters the policy does not set (wd, eps, dropout ...).
    """
    if runner.opt is None:
        runner.create_opt()
    n = len(runner.opt.param_groups)
    lr_max = runner.lr if lr_max is None else lr_max
    lrs = per_group(lr_max, n, "lr_max values")
    for lr in lrs:
        check_hyper("lr", lr)
    cycles = [one_cycle_scheds(lr, pct_start, div, div_final, moms) for lr in lrs]
    scheds: dict[str, Any] = {k: v for k, v in runner.schedules.items() if k not in ("lr", "mom")}
    scheds["lr"] = [c["lr"] for c in cycles]
    has_mom = all(any(k in g for k in ("mom", "momentum", "betas")) for g in runner.opt.param_groups)
    if has_mom:
        scheds["mom"] = [c["mom"] for c in cycles]
    return ParamScheduler(scheds, edits)


def active_scheduler(runner: Any) -> ParamScheduler | None:
    """The ParamScheduler of the running fit, if any."""
    return next((c for c in runner.cbs if isinstance(c, ParamScheduler)), None)
