"""Commands that watch training: hooks, hook add/rm, telemetry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from labcon.commands.base import Args, Command, CommandContext, CommandHost, command, need, whole
from labcon.commands.cmd_model import check_modules, module_words
from labcon.commands.lex import fmt_path, split_unquoted, unquote
from labcon.errors import CommandError

HOOK_KINDS: tuple[str, ...] = ("forward", "backward")
USER_HOOK_OWNER = "console"


def _retraced(host: CommandHost) -> str:
    """What a hook change costs a compiled model (its graphs are traced again with the hooks it has now)."""
    from labcon.core.callbacks.speed import retrace

    return "; the compiled model is traced again at its next batch" if retrace(host.runner.model) else ""


@command
@dataclass(frozen=True)
class ListHooks(Command):
    """List installed hooks."""

    name: ClassVar[str] = "hooks"
    usage: ClassVar[str] = "hooks"
    summary: ClassVar[str] = "list installed hooks (id, module, kind, owner, scope)"

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.apply import ActivationStats

        runner = host.runner
        rows = runner.hooks.table()
        if not rows:
            return "no hooks installed (hook add MODULE_PATH)"
        fns = {h.id: h.fn for h in runner.hooks}
        lines = [f"{'id':>4}  {'module':<24} {'kind':<8} {'owner':<10} {'scope':<8} stats"]
        for r in rows:
            fn = fns.get(r["id"])
            stats = fn.summary() if isinstance(fn, ActivationStats) else ""
            lines.append(
                f"{r['id']:>4}  {r['module'] or '(model)':<24} {r['kind']:<8} {r['owner']:<10} {r['scope']:<8} {stats}"
            )
        return "\n".join(lines)


@command
@dataclass(frozen=True)
class HookAdd(Command):
    """Add an activation-stats hook on a module (by module path)."""

    name: ClassVar[str] = "hook add"
    when: ClassVar[str] = "batch"
    replay: ClassVar[bool] = True
    usage: ClassVar[str] = "hook add MODULE_PATH [kind=forward|backward]"
    summary: ClassVar[str] = "record activation (or gradient) mean/std of a module until removed"
    options: ClassVar[tuple[str, ...] | None] = ("kind",)
    example: ClassVar[str] = "hook add layers.0 kind=forward"
    module: str
    kind: str = "forward"

    @property
    def text(self) -> str:
        return f"hook add {fmt_path(self.module)} kind={self.kind}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        module = a.one("a module path (e.g. layers.0.conv)")
        kind = dict(a.allow(cls.options)).get("kind", "forward")
        if kind not in HOOK_KINDS:
            raise CommandError(f"hook kind must be forward or backward, got '{kind}'")
        return cls(module, str(kind))

    def check(self, ctx: CommandContext) -> None:
        check_modules([self.module], ctx)

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.apply import ActivationStats

        hook = host.runner.hooks.add(
            self.module, self.kind, ActivationStats(), owner=USER_HOOK_OWNER, scope="session"
        )
        where = self.module or "(model)"
        return f"hook {hook.id}: {self.kind} stats on {where} (hook rm {hook.id} to remove){_retraced(host)}"

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return module_words(ctx)

    @classmethod
    def complete_value(cls, option: str, ctx: CommandContext | None) -> list[str]:
        return list(HOOK_KINDS) if option == "kind" else []


@command
@dataclass(frozen=True)
class HookRm(Command):
    """Remove a hook by id."""

    name: ClassVar[str] = "hook rm"
    when: ClassVar[str] = "batch"
    replay: ClassVar[bool] = True
    usage: ClassVar[str] = "hook rm ID"
    summary: ClassVar[str] = "remove a hook by id (see hooks)"
    example: ClassVar[str] = "hook rm 3"
    id: int

    @property
    def text(self) -> str:
        return f"hook rm {self.id}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        hid = a.one("a hook id (see hooks)")
        a.allow(())
        return cls(whole(hid, "hook id", cls.name, lo=0))

    def check(self, ctx: CommandContext) -> None:
        ids = sorted(ctx.hook_ids)
        need(self.id in ids, f"no hook with id {self.id}; hooks: {', '.join(map(str, ids)) or '(none)'}")

    def apply(self, host: CommandHost) -> str:
        host.runner.hooks.remove(self.id)
        return f"removed hook {self.id}{_retraced(host)}"

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return [str(i) for i in sorted(ctx.hook_ids)] if ctx else []


@command
@dataclass(frozen=True)
class SetTelemetry(Command):
    """Configure telemetry: report every K batches, which layers, on or off (bare: show settings)."""

    name: ClassVar[str] = "telemetry"
    when: ClassVar[str] = "batch"
    replay: ClassVar[bool] = True
    usage: ClassVar[str] = "telemetry [every=K] [layers=a,b] [on|off]"
    summary: ClassVar[str] = (
        "configure telemetry: report every K batches, which module paths, on or off; bare: show settings"
    )
    options: ClassVar[tuple[str, ...] | None] = ("every", "layers")
    example: ClassVar[str] = "telemetry every=20 layers=0,1 on"
    every: int | None = None
    layers: tuple[str, ...] | None = None
    on: bool | None = None

    @property
    def text(self) -> str:
        s = "telemetry"
        if self.every is not None:
            s += f" every={self.every}"
        if self.layers is not None:
            s += " layers=" + ",".join(fmt_path(x) for x in self.layers)
        if self.on is not None:
            s += " on" if self.on else " off"
        return s

    @classmethod
    def parse(cls, a: Args) -> Command:
        words = a.positional(0, 1)
        opts = dict(a.allow(cls.options))
        on = None
        if words:
            if words[0] not in ("on", "off"):
                raise CommandError(f"telemetry takes on or off, got '{words[0]}': usage: {cls.usage}")
            on = words[0] == "on"
        every = opts.get("every")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise CommandError(f"every must be a whole number >= 1, got '{every}'")
        layers = None
        if "layers" in a.raw:
            # Module paths stay text ('1.10' is not the number 1.1): split the raw value ourselves.
            items = split_unquoted(a.raw["layers"], ",")
            if items[-1] == "" and len(items) > 1:
                items.pop()
            layers = tuple(unquote(x)[0] for x in items)
            if any(x == "" for x in layers):
                raise CommandError("layers must be module paths separated by commas (e.g. layers=0,1.conv)")
        return cls(every, layers, on)

    def check(self, ctx: CommandContext) -> None:
        if self.layers:
            check_modules(self.layers, ctx)

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.telemetry_cmd import apply_telemetry

        return apply_telemetry(self, host.runner)

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return ["on", "off"]

    @classmethod
    def complete_value(cls, option: str, ctx: CommandContext | None) -> list[str]:
        return module_words(ctx) if option == "layers" else []
