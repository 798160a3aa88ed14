"""Commands on the model and its callbacks: cb add/rm/list, norm, show loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
)
from labcon.commands.lex import fmt_opts, fmt_path
from labcon.errors import CommandError

NORM_KINDS: tuple[str, ...] = ("batch", "running", "layer", "group", "instance")


def check_modules(paths: Sequence[str], ctx: CommandContext) -> None:
    """Each path must be a module of the model (CommandError with the closest one otherwise)."""
    known = list(ctx.module_paths)
    shown = [k for k in known if k][:30]
    for p in paths:
        need(p in known, suggest(p, shown, "module path") + (" ..." if len(known) > 31 else ""))


def module_words(ctx: CommandContext | None) -> list[str]:
    """Module paths offered by completion."""
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
    # For a user file: the SHA-256 its bytes must have (set when first applied, and from the journal on
    # resume/replay); not part of the command's text.
    sha256: str | None = field(default=None, compare=False)

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
        cb = build_callback(self.cb, self.kwargs, self.sha256)
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
        from labcon.nn.norms import NORM_TYPES, swap_norm

        runner = host.runner
        before = sorted({type(m).__name__ for m in runner.model.modules() if isinstance(m, NORM_TYPES)})
        n = swap_norm(runner.model, self.kind, opt=runner.opt, **self.kwargs)
        after = sorted({type(m).__name__ for m in runner.model.modules() if isinstance(m, NORM_TYPES)})
        moved = runner.hooks.refresh()
        if n == 0:
            return "no normalisation layers to swap"
        extra = f"; re-attached {moved} hook(s)" if moved else ""
        text = f"swapped {n} normalisation layer(s) to {self.kind} (were {', '.join(before)}){extra}"
        if before != after and getattr(runner, "train_iter", 0) > 0:
            # Only the scale and shift carry over: the new kind normalises differently, so what the trained
            # layers learnt about their statistics is gone, and the loss usually jumps before it recovers.
            text += (
                "; the new layers start untrained (only their scale/shift were carried over): "
                "expect the loss to rise for a while"
            )
        return text

    @classmethod
    def complete_words(cls, ctx: CommandContext | None) -> list[str]:
        return list(NORM_KINDS)


@command
@dataclass(frozen=True)
class ShowLoop(Command):
    """Show which callbacks run at each training event."""

    name: ClassVar[str] = "show loop"
    usage: ClassVar[str] = "show loop"
    summary: ClassVar[str] = "which callbacks run at each training event, in order"

    def apply(self, host: CommandHost) -> str:
        return host.runner.show_loop()
