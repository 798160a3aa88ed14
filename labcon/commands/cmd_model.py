"""Commands on the model and its callbacks: cb add/rm/list, norm, hooks, hook add/rm, telemetry, show loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from labcon.commands.base import (
    Args,
    Command,
    CommandContext,
    CommandHost,
    Opts,
    command,
    need,
    suggest,
    whole,
)
from labcon.commands.lex import fmt_opts, fmt_path, split_unquoted, unquote
from labcon.errors import CommandError

NORM_KINDS: tuple[str, ...] = ("batch", "running", "layer", "group", "instance")
HOOK_KINDS: tuple[str, ...] = ("forward", "backward")
USER_HOOK_OWNER = "console"


def _check_modules(paths: Sequence[str], ctx: CommandContext) -> None:
    known = list(ctx.module_paths)
    shown = [k for k in known if k][:30]
    for p in paths:
        need(p in known, suggest(p, shown, "module path") + (" ..." if len(known) > 31 else ""))


def _module_words(ctx: CommandContext | None) -> list[str]:
    return [p for p in ctx.module_paths if p] if ctx else []


@command
@dataclass(frozen=True)
class CbAdd(Command):
    """Install a callback by registry name, or a user class as path/to/file.py:ClassName."""

    name: ClassVar[str] = "cb add"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "cb add NAME|path/to/file.py:ClassName [key=value...]"
    summary: ClassVar[str] = "install a callback from the registry, or your own class from a file"
    options: ClassVar[tuple[str, ...] | None] = None
    example: ClassVar[str] = "cb add mixup alpha=0.4"
    replay: ClassVar[bool] = True
    cb: str
    opts: Opts = ()

    @property
    def is_path(self) -> bool:
        """Whether cb names a user file (path.py:ClassName) rather than a registry name."""
        return ":" in self.cb

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options as keyword arguments of the callback's constructor."""
        return dict(self.opts)

    @property
    def text(self) -> str:
        return f"cb add {fmt_path(self.cb)}" + fmt_opts(self.opts)

    @classmethod
    def parse(cls, a: Args) -> Command:
        name = a.one("a callback name or path/to/file.py:ClassName")
        if ":" in name:
            path, _, cname = name.rpartition(":")
            if not path.endswith(".py") or not cname.isidentifier():
                raise CommandError(f"'{name}' is not path/to/file.py:ClassName")
        return cls(name, a.allow(None))

    def check(self, ctx: CommandContext) -> None:
        if self.is_path:
            path = Path(self.cb.rpartition(":")[0]).expanduser()
            need(path.is_file(), f"no file '{path}' for cb add; give path/to/file.py:ClassName")
            return
        names = sorted(ctx.callbacks_available)
        need(self.cb in names, suggest(self.cb, names, "callback"))
        need(
            self.cb not in ctx.callbacks_installed,
            f"callback '{self.cb}' is already installed; cb rm {self.cb} first",
        )

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.apply import build_callback

        runner = host.runner
        cb = build_callback(self.cb, self.kwargs)
        if runner.cb(cb.name) is not None:
            raise CommandError(f"callback '{cb.name}' is already installed; cb rm {cb.name} first")
        runner.add_cbs([cb])
        started = ""
        if runner.in_fit and callable(getattr(cb, "before_fit", None)):
            # Joining a fit that already began: let the callback set itself up as if the fit started now.
            try:
                cb.before_fit()
            except Exception as e:
                runner.remove_cbs([cb])
                raise CommandError(f"callback '{cb.name}' failed to start: {type(e).__name__}: {e}") from e
            started = " (joined the running fit)"
        return f"added callback {cb.name} (order {cb.order}){started}"

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        if ctx is not None:
            return sorted(ctx.callbacks_available)
        from labcon.core.callbacks.registry import CALLBACKS

        return sorted(CALLBACKS)

    @classmethod
    def complete_options(cls, words: list[str], ctx: CommandContext | None) -> list[str]:
        from labcon.commands.completion import params_of
        from labcon.core.callbacks.registry import CALLBACKS

        found = CALLBACKS.get(words[0]) if words else None
        return params_of(found) if found else []


@command
@dataclass(frozen=True)
class CbRm(Command):
    """Remove an installed callback by name."""

    name: ClassVar[str] = "cb rm"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "cb rm NAME"
    summary: ClassVar[str] = "remove an installed callback"
    example: ClassVar[str] = "cb rm mixup"
    replay: ClassVar[bool] = True
    cb: str

    @property
    def text(self) -> str:
        return f"cb rm {fmt_path(self.cb)}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        name = a.one("a callback name (see cb list)")
        a.allow(())
        return cls(name)

    def check(self, ctx: CommandContext) -> None:
        names = sorted(ctx.callbacks_installed)
        need(self.cb in names, suggest(self.cb, names, "installed callback"))
        # Refused now, not at the epoch's end.
        need(
            self.cb not in ctx.callbacks_fixed,
            f"'{self.cb}' is part of the training loop and cannot be removed; "
            f"removable: {', '.join(n for n in names if n not in ctx.callbacks_fixed) or 'none'}",
        )

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.apply import check_removable

        runner = host.runner
        cb = runner.cb(self.cb)
        if cb is None:
            raise CommandError(suggest(self.cb, [c.name for c in runner.cbs], "installed callback"))
        check_removable(cb, runner)
        if runner.in_fit and callable(getattr(cb, "after_fit", None)):
            # Leaving mid-fit: the callback's own cleanup (restore step_fn, remove hooks, ...) runs now.
            cb.after_fit()
        runner.remove_cbs([cb])
        return f"removed callback {self.cb}"

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return sorted(ctx.callbacks_installed) if ctx else []


@command
@dataclass(frozen=True)
class CbList(Command):
    """List installed callbacks with their order."""

    name: ClassVar[str] = "cb list"
    usage: ClassVar[str] = "cb list"
    summary: ClassVar[str] = "list installed callbacks with their order"

    def apply(self, host: CommandHost) -> str:
        return "callbacks: " + ", ".join(f"{c.name}({c.order})" for c in host.runner.cbs)


@command
@dataclass(frozen=True)
class Norm(Command):
    """Swap every normalisation layer for another kind (batch, running, layer, group, instance)."""

    name: ClassVar[str] = "norm"
    when: ClassVar[str] = "epoch"
    usage: ClassVar[str] = "norm batch|running|layer|group|instance [key=value...]"
    summary: ClassVar[str] = "replace every normalisation layer with another kind at the next epoch"
    options: ClassVar[tuple[str, ...] | None] = None
    example: ClassVar[str] = "norm running"
    replay: ClassVar[bool] = True
    kind: str
    opts: Opts = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """Options for the new norm layers (e.g. groups=8)."""
        return dict(self.opts)

    @property
    def text(self) -> str:
        return f"norm {self.kind}" + fmt_opts(self.opts)

    @classmethod
    def parse(cls, a: Args) -> Command:
        kind = a.one("a kind: " + ", ".join(NORM_KINDS))
        if kind not in NORM_KINDS:
            raise CommandError(suggest(kind, NORM_KINDS, "norm kind"))
        return cls(kind, a.allow(None))

    def apply(self, host: CommandHost) -> str:
        from labcon.nn.norms import swap_norm

        runner = host.runner
        n = swap_norm(runner.model, self.kind, opt=runner.opt, **self.kwargs)
        moved = runner.hooks.refresh()
        if n == 0:
            return "no normalisation layers to swap"
        extra = f"; re-attached {moved} hook(s)" if moved else ""
        return f"swapped {n} normalisation layer(s) to {self.kind}{extra}"

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return list(NORM_KINDS)


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
        _check_modules([self.module], ctx)

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.apply import ActivationStats

        hook = host.runner.hooks.add(
            self.module, self.kind, ActivationStats(), owner=USER_HOOK_OWNER, scope="session"
        )
        return (
            f"hook {hook.id}: {self.kind} stats on {self.module or '(model)'} (hook rm {hook.id} to remove)"
        )

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return _module_words(ctx)

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
        return f"removed hook {self.id}"

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
            _check_modules(self.layers, ctx)

    def apply(self, host: CommandHost) -> str:
        from labcon.commands.telemetry_cmd import apply_telemetry

        return apply_telemetry(self, host.runner)

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return ["on", "off"]

    @classmethod
    def complete_value(cls, option: str, ctx: CommandContext | None) -> list[str]:
        return _module_words(ctx) if option == "layers" else []


@command
@dataclass(frozen=True)
class ShowLoop(Command):
    """Show which callbacks run at each training event."""

    name: ClassVar[str] = "show loop"
    usage: ClassVar[str] = "show loop"
    summary: ClassVar[str] = "which callbacks run at each training event, in order"

    def apply(self, host: CommandHost) -> str:
        return host.runner.show_loop()
