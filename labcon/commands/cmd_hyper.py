"""Commands on hyper-parameters and their schedules: set, sched, show sched, opt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from labcon.commands.base import Args, Command, CommandContext, CommandHost, Opts, command, need, suggest
from labcon.commands.lex import fmt_opts, fmt_path
from labcon.commands.spread import GroupValue, check_groups, fmt_group_value, group_value, per_group
from labcon.core.hypers import OPT_HYPERS, SCHEDULABLE, HyperParamError
from labcon.errors import CommandError

SCHED_NAMES = SCHEDULABLE


def _fmt_list(vals: list[Any]) -> str:
    out = [f"{v:g}" if isinstance(v, float) else str(v) for v in vals]
    return out[0] if len(set(out)) == 1 else "[" + ", ".join(out) + "]"


@command
@dataclass(frozen=True)
class Set(Command):
    """Set hyper-parameters; a scheduled one has the rest of its schedule rescaled (or fixed, with `fixed`)."""

    name: ClassVar[str] = "set"
    when: ClassVar[str] = "batch"
    usage: ClassVar[str] = "set NAME=VALUE... [group=K] [fixed]"
    summary: ClassVar[str] = (
        "set lr, wd, mom, sqr_mom, eps (all groups, group K, a,b per group or lo..hi); a scheduled one has "
        "the rest of its schedule rescaled to the new value, `fixed` holds it constant instead"
    )
    options: ClassVar[tuple[str, ...] | None] = (*OPT_HYPERS, "group")
    example: ClassVar[str] = "set lr=1e-3 wd=0.01"
    replay: ClassVar[bool] = True
    values: tuple[tuple[str, GroupValue], ...]
    group: int | None = None
    fixed: bool = False

    @property
    def text(self) -> str:
        s = "set" + "".join(f" {k}={fmt_group_value(v)}" for k, v in self.values)
        s += "" if self.group is None else f" group={self.group}"
        return s + (" fixed" if self.fixed else "")

    @classmethod
    def parse(cls, a: Args) -> Command:
        words = a.positional(0, 1)
        if words and words[0] != "fixed":
            raise CommandError(f"set takes name=value options and the word fixed, got '{words[0]}'")
        group, values = None, []
        for k, v in a.allow(None):
            if k == "group":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise CommandError(f"group must be a whole number (param group index), got '{v}'")
                group = v
            else:  # names the optimizer does not have are refused by check (it knows the optimizer)
                values.append((k, group_value(v, k)))
        if not values:
            raise CommandError(f"set needs at least one name=value: usage: {cls.usage}")
        if group is not None and any(not isinstance(v, float) for _, v in values):
            raise CommandError(
                "give either group=K with one value, or a list of values (one per group), not both"
            )
        return cls(tuple(values), group, bool(words))

    def check(self, ctx: CommandContext) -> None:
        names = sorted(ctx.hyper_names)
        n = ctx.n_groups
        for k, v in self.values:
            need(k in names, suggest(k, names, "hyper-parameter"))
            check_groups(k, v, n)
        if self.group is not None:
            need(-n <= self.group < n, f"param group {self.group} does not exist; groups are 0..{n - 1}")

    @classmethod
    def complete_options(cls, words: list[str], ctx: CommandContext | None) -> list[str]:
        return [*sorted(ctx.hyper_names if ctx else OPT_HYPERS), "group"]

    def queued_note(self, ctx: CommandContext) -> str:
        sched = [k for k, _ in self.values if k in ctx.scheduled]
        if not sched:
            return ""
        names = ", ".join(sched)
        if self.fixed:
            return f"; {names}: schedule replaced by this constant for the rest of the fit"
        return f"; {names}: the rest of the schedule is rescaled so it is this value now (shape kept; add 'fixed' to hold it constant)"

    def apply(self, host: CommandHost) -> str:
        from labcon.core.callbacks.schedule import active_scheduler

        r = host.runner
        for name, _ in self.values:
            r.hyper(name)  # unknown names fail before anything changes
        n = len(r.opt.param_groups)
        sched = active_scheduler(r) if r.in_fit else None
        pos = r.pct_train if sched is not None else 0.0
        parts, notes = [], []
        for name, v in self.values:
            check_groups(name, v, n)
            vals = per_group(v, n)
            if self.group is not None:
                full = list(r.hyper(name))
                full[self.group % n] = vals[0]
                vals = tuple(full)
            for i, x in enumerate(vals):
                r.set_hyper(name, x, i)
            notes.append(self._reschedule(r, sched, name, vals, pos))
            if not r.in_fit:
                notes.append(self._for_stopped_fit(host, name, vals))
            if name == "lr" and not r.in_fit:
                r.lr = vals[0] if len(set(vals)) == 1 else list(vals)  # what the next `fit` starts from
                notes.append("; later fits start from this lr")
            parts.append(f"{name}={_fmt_list(r.hyper(name))}")
        where = "" if self.group is None else f" (group {self.group})"
        return f"set {' '.join(parts)}{where}" + "".join(x for x in notes if x)

    def _for_stopped_fit(self, host: CommandHost, name: str, vals: tuple[float, ...]) -> str:
        """Idle with a stopped fit that can continue: record the change in its plan, so that fit keeps it."""
        from labcon.core.callbacks.schedule import drop_edit, fix_edit, rescale_edit

        pending = host.interrupted_fit()
        if pending is None:
            return ""
        edits, pos = pending
        group = None if self.group is None else self.group % len(vals)
        if self.fixed and group is not None:
            edits.append(fix_edit(name, vals[group], group, len(vals)))
        elif self.fixed:
            edits.append(drop_edit(name))
        else:
            edits.append(rescale_edit(name, vals, pos, group))
        how = "holds it" if self.fixed else "is rescaled to it"
        return f"; the stopped fit's {name} schedule {how} when it continues"

    def _reschedule(self, r: Any, sched: Any, name: str, vals: tuple[float, ...], pos: float) -> str:
        """Keep a schedule from overwriting the new value: rescale it, or drop it (`fixed`)."""
        from labcon.core.callbacks.schedule import ParamScheduler

        target = sched if sched is not None and name in sched.scheds else None
        if target is None and name in r.schedules:  # idle: the schedule every later fit runs
            target = ParamScheduler(r.schedules)
        if target is None:
            return ""
        group = None if self.group is None else self.group % len(vals)
        if self.fixed and group is not None:  # only that group's schedule becomes the constant
            target.fix(name, vals[group], group, len(vals))
            if target is not sched:
                r.schedules[name] = target.scheds[name]
            return f"; {name} fixed in group {group}: the other groups keep their schedule"
        if self.fixed:
            target.drop(name)
            if target is not sched:
                r.schedules.pop(name, None)
            return f"; {name} fixed: no longer scheduled" + (" in this fit" if sched is not None else "")
        done = target.rescale(name, vals, pos, group)
        if target is not sched:
            r.schedules[name] = target.scheds[name]
        when = "the rest of this fit's" if sched is not None else "every later fit's"
        if all(done):
            return f"; {when} {name} schedule rescaled to it (shape kept)"
        return f"; {when} {name} schedule was at 0 in some group: held constant there instead"


def _parse_scheds(a: Args) -> tuple[tuple[str, str], ...]:
    """name=SCHEDULE pairs from the raw text (schedules are text: cos:1e-3:1e-6, a@0.3,b ...)."""
    from labcon.commands.lex import unquote
    from labcon.core.callbacks.schedule import check_schedule
    from labcon.core.schedules import parse_sched

    out = []
    for k, _ in a.allow(None):
        if k not in SCHED_NAMES:
            raise CommandError(suggest(k, list(SCHED_NAMES), "schedulable hyper-parameter"))
        raw = unquote(a.raw[k])[0]
        if raw != "off":
            try:
                check_schedule(k, parse_sched(raw))
            except HyperParamError as e:
                raise CommandError(f"schedule {k}={raw}: {e}") from None
            except ValueError as e:
                raise CommandError(
                    f"bad schedule {k}={raw}: {e}; write e.g. {k}=cos:1e-3:1e-6 ({Sched.usage})"
                ) from None
        out.append((k, raw))
    if not out:
        raise CommandError(f"sched needs at least one name=SCHEDULE: usage: {Sched.usage}")
    return tuple(out)


@command
@dataclass(frozen=True)
class Sched(Command):
    """Replace the schedule of hyper-parameters (rest of the running fit, or every later fit when idle)."""

    name: ClassVar[str] = "sched"
    when: ClassVar[str] = "batch"
    usage: ClassVar[str] = (
        "sched NAME=SCHEDULE... (SCHEDULE: 1e-3 | cos:1e-3:1e-6 | lin:a:b@0.3,cos:b:c | off)"
    )
    summary: ClassVar[str] = (
        "schedule lr, mom, sqr_mom, wd, eps or dropout with lin/cos/exp/no annealers (parts @fraction): over the "
        "rest of the running fit, or every later fit when idle; off stops scheduling it"
    )
    options: ClassVar[tuple[str, ...] | None] = SCHED_NAMES
    example: ClassVar[str] = "sched lr=lin:1e-4:1e-3@0.3,cos:1e-3:1e-6 wd=1e-2"
    replay: ClassVar[bool] = True
    scheds: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        return "sched" + "".join(f" {k}={fmt_path(v)}" for k, v in self.scheds)

    @classmethod
    def parse(cls, a: Args) -> Command:
        a.positional(0, 0)
        return cls(_parse_scheds(a))

    def check(self, ctx: CommandContext) -> None:
        names = set(ctx.hyper_names) | {"dropout"}
        for k, _ in self.scheds:
            need(k in names, suggest(k, sorted(names), "hyper-parameter"))

    def queued_note(self, ctx: CommandContext) -> str:
        return "; it runs over the rest of this fit" if ctx.state != "idle" else ""

    @classmethod
    def complete_value(cls, option: str, ctx: CommandContext | None) -> list[str]:
        return ["cos:", "lin:", "exp:", "no:", "off"]

    def apply(self, host: CommandHost) -> str:
        from labcon.core.callbacks.schedule import active_scheduler, drop_edit, replace_edit
        from labcon.core.schedules import describe, parse_sched

        r = host.runner
        sched = active_scheduler(r) if r.in_fit else None
        out = []
        for name, raw in self.scheds:
            if name != "dropout":
                r.hyper(name)
            if raw == "off":
                gone = sched.drop(name) if sched is not None else r.schedules.pop(name, None) is not None
                pending = host.interrupted_fit() if sched is None else None
                if pending is not None:
                    pending[0].append(drop_edit(name))
                out.append(f"{name}: not scheduled{'' if gone else ' (it was not)'}")
                continue
            s = parse_sched(raw)
            if sched is not None:
                sched.replace(name, raw, r.pct_train)
                sched.set_now(r.pct_train)
                out.append(f"{name}: {describe(s)} over the rest of this fit")
            else:
                r.schedules[name] = s
                out.append(f"{name}: {describe(s)} in every later fit (fit_one_cycle keeps its own lr, mom)")
                pending = host.interrupted_fit()
                if pending is not None:  # and over the rest of the stopped fit, when it continues
                    pending[0].append(replace_edit(name, raw, pending[1]))
                    out[-1] += " and in the rest of the stopped fit"
        return "sched " + "; ".join(out)


@command
@dataclass(frozen=True)
class ShowSched(Command):
    """Print the schedules of the running fit, or of every later fit."""

    name: ClassVar[str] = "show sched"
    usage: ClassVar[str] = "show sched"
    summary: ClassVar[str] = (
        "the hyper-parameter schedules (running fit, or every later fit) and current values"
    )

    def apply(self, host: CommandHost) -> str:
        from labcon.core.callbacks.schedule import ParamScheduler, active_scheduler

        r = host.runner
        sched = active_scheduler(r) if r.in_fit else None
        lines = []
        if sched is not None:
            lines.append(f"schedules of the running fit (at {r.pct_train * 100:.0f}%):")
            lines += ["  " + x for x in sched.describe()] or ["  (none)"]
        lines.append("schedules every later fit runs (fit_one_cycle sets its own lr, mom):")
        lines += ["  " + x for x in ParamScheduler(r.schedules).describe()] or ["  (none)"]
        now = []
        for h in OPT_HYPERS:
            try:
                now.append(f"{h}={_fmt_list(r.hyper(h))}")
            except KeyError:
                continue
        lines.append("now: " + " ".join(now))
        return "\n".join(lines)


@command
@dataclass(frozen=True)
class Opt(Command):
    """Swap the optimizer (adam, sgd, lamb, ...) carrying matching state and current hypers."""

    name: ClassVar[str] = "opt"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "opt NAME [key=value...]"
    summary: ClassVar[str] = (
        "swap the optimizer (adam, sgd, lamb) at the next epoch, carrying matching state and hypers"
    )
    options: ClassVar[tuple[str, ...] | None] = None
    example: ClassVar[str] = "opt sgd mom=0.9"
    replay: ClassVar[bool] = True
    opt: str
    opts: Opts = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options as keyword arguments of the optimizer factory."""
        return dict(self.opts)

    @property
    def text(self) -> str:
        return f"opt {fmt_path(self.opt)}" + fmt_opts(self.opts)

    @classmethod
    def parse(cls, a: Args) -> Command:
        from labcon.commands.base import hyper

        name = a.one("an optimizer name (adam, sgd, lamb)")
        opts = a.allow(None)
        for k, v in opts:
            hyper(k, v)
        return cls(name.lower(), opts)

    def check(self, ctx: CommandContext) -> None:
        names = sorted(ctx.optimizer_names)
        need(self.opt in names, suggest(self.opt, names, "optimizer"))

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.apply_opt import swap_optimizer

        return swap_optimizer(host.runner, self.opt, **self.kwargs)

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        if ctx is not None:
            return sorted(ctx.optimizer_names)
        from labcon.core.optim import OPTIMIZERS

        return sorted(OPTIMIZERS)

    @classmethod
    def complete_options(cls, words: list[str], ctx: CommandContext | None) -> list[str]:
        from labcon.commands.completion import params_of
        from labcon.core.optim import OPTIMIZERS

        f = OPTIMIZERS.get(words[0]) if words else None
        return params_of(f) if f else []
