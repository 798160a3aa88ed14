"""Validation of parsed commands against a live session, and tab completion."""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from labcon.commands.defs import (
    HOOK_KINDS,
    NORM_KINDS,
    CbAdd,
    CbRm,
    Command,
    FitOneCycle,
    HookAdd,
    HookRm,
    Opt,
    Pause,
    Resume,
    Set,
    Stop,
    Telemetry,
)
from labcon.commands.lex import split_unquoted, tokenize, unquote
from labcon.commands.spec import COMMAND_NAMES, SPECS, SUBCOMMANDS, suggest
from labcon.errors import CommandError


class CommandContext(Protocol):
    """What validation and completion need to know about the live session."""

    @property
    def callbacks_available(self) -> Collection[str]:
        """Registry names `cb add` accepts."""
        ...

    @property
    def callbacks_installed(self) -> Collection[str]:
        """Names of the callbacks installed now."""
        ...

    @property
    def optimizer_names(self) -> Collection[str]:
        """Names `opt` accepts."""
        ...

    @property
    def hyper_names(self) -> Collection[str]:
        """Hyper-parameters of the current optimizer's param groups."""
        ...

    @property
    def n_groups(self) -> int:
        """Number of param groups."""
        ...

    @property
    def module_paths(self) -> Collection[str]:
        """Module paths of the model ('' is the model itself)."""
        ...

    @property
    def hook_ids(self) -> Collection[int]:
        """Ids of the installed hooks."""
        ...

    @property
    def state(self) -> str:
        """idle | running | paused | stopping."""
        ...


@dataclass
class StaticContext:
    """A CommandContext from plain values (tests, and sessions that snapshot their state)."""

    callbacks_available: Collection[str] = ()
    callbacks_installed: Collection[str] = ()
    optimizer_names: Collection[str] = ("adam", "sgd", "lamb")
    hyper_names: Collection[str] = ("lr", "mom", "sqr_mom", "eps", "wd")
    n_groups: int = 1
    module_paths: Collection[str] = ()
    hook_ids: Collection[int] = ()
    state: str = "idle"
    extra: dict[str, Any] = field(default_factory=dict)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise CommandError(msg)


def validate(cmd: Command, ctx: CommandContext) -> Command:
    """Check a parsed command against the live session; returns it, or raises CommandError (one line)."""
    state = ctx.state
    if cmd.when == "idle":
        _need(
            state == "idle", f"cannot start '{cmd.name}' while the session is {state}; stop it first or wait"
        )
    if isinstance(cmd, Pause):
        _need(state == "running", f"nothing to pause: the session is {state}")
    elif isinstance(cmd, Resume):
        # While running, a resume may still cancel a pause that has not reached its batch boundary yet.
        _need(state in ("paused", "running"), f"nothing to resume: the session is {state}")
    elif isinstance(cmd, Stop):
        _need(state in ("running", "paused"), f"nothing to stop: the session is {state}")
    elif isinstance(cmd, Set):
        _check_set(cmd, ctx)
    elif isinstance(cmd, FitOneCycle) and isinstance(cmd.lr, tuple):
        _need(len(cmd.lr) == ctx.n_groups, f"lr has {len(cmd.lr)} values for {ctx.n_groups} param group(s)")
    elif isinstance(cmd, Opt):
        names = sorted(ctx.optimizer_names)
        _need(cmd.opt in names, suggest(cmd.opt, names, "optimizer"))
    elif isinstance(cmd, CbAdd):
        _check_cb_add(cmd, ctx)
    elif isinstance(cmd, CbRm):
        names = sorted(ctx.callbacks_installed)
        _need(cmd.cb in names, suggest(cmd.cb, names, "installed callback"))
    elif isinstance(cmd, HookAdd):
        _check_modules([cmd.module], ctx)
    elif isinstance(cmd, HookRm):
        ids = sorted(ctx.hook_ids)
        _need(cmd.id in ids, f"no hook with id {cmd.id}; hooks: {', '.join(map(str, ids)) or '(none)'}")
    elif isinstance(cmd, Telemetry) and cmd.layers:
        _check_modules(cmd.layers, ctx)
    return cmd


def _check_set(cmd: Set, ctx: CommandContext) -> None:
    names = sorted(ctx.hyper_names)
    n = ctx.n_groups
    for k, v in cmd.values:
        _need(k in names, suggest(k, names, "hyper-parameter"))
        vals = v if isinstance(v, tuple) else (v,)
        _need(all(math.isfinite(x) and x >= 0 for x in vals), f"{k} must be a finite number >= 0, got {v}")
        if isinstance(v, tuple):
            _need(len(v) == n, f"{k} has {len(v)} values for {n} param group(s); give one per group")
    if cmd.group is not None:
        _need(-n <= cmd.group < n, f"param group {cmd.group} does not exist; groups are 0..{n - 1}")


def _check_cb_add(cmd: CbAdd, ctx: CommandContext) -> None:
    if cmd.is_path:
        path = Path(cmd.cb.rpartition(":")[0]).expanduser()
        _need(path.is_file(), f"no file '{path}' for cb add; give path/to/file.py:ClassName")
        return
    names = sorted(ctx.callbacks_available)
    _need(cmd.cb in names, suggest(cmd.cb, names, "callback"))
    _need(
        cmd.cb not in ctx.callbacks_installed,
        f"callback '{cmd.cb}' is already installed; cb rm {cmd.cb} first",
    )


def _check_modules(paths: Sequence[str], ctx: CommandContext) -> None:
    known = list(ctx.module_paths)
    shown = [k for k in known if k][:30]
    for p in paths:
        _need(p in known, suggest(p, shown, "module path") + (" ..." if len(known) > 31 else ""))


# ----- completion -------------------------------------------------------------------------------


def _registry_names() -> list[str]:
    try:
        from labcon.core.callbacks.registry import CALLBACKS
    except ImportError:
        return []
    return sorted(CALLBACKS)


def _optimizer_names() -> list[str]:
    try:
        from labcon.core.optim import OPTIMIZERS
    except ImportError:
        return []
    return sorted(OPTIMIZERS)


def _params_of(obj: Any, skip: Collection[str] = ("self", "params")) -> list[str]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds and p.name not in skip]


def _option_names(key: str, words: list[str], ctx: CommandContext | None) -> list[str]:
    if key == "set":
        return [*(sorted(ctx.hyper_names) if ctx else SPECS["set"].options or ()), "group"]
    if key == "opt" and words:
        from labcon.core.optim import OPTIMIZERS

        f = OPTIMIZERS.get(words[0])
        return _params_of(f) if f else []
    if key == "cb add" and words:
        try:
            from labcon.core.callbacks.registry import CALLBACKS
        except ImportError:
            return []
        cls = CALLBACKS.get(words[0])
        return _params_of(cls) if cls else []
    return list(SPECS[key].options or ())


def _positional(key: str, ctx: CommandContext | None) -> list[str]:
    if key == "opt":
        return sorted(ctx.optimizer_names) if ctx else _optimizer_names()
    if key == "cb add":
        return sorted(ctx.callbacks_available) if ctx else _registry_names()
    if key == "cb rm":
        return sorted(ctx.callbacks_installed) if ctx else []
    if key == "norm":
        return list(NORM_KINDS)
    if key == "hook add":
        return [p for p in ctx.module_paths if p] if ctx else []
    if key == "hook rm":
        return [str(i) for i in sorted(ctx.hook_ids)] if ctx else []
    if key == "telemetry":
        return ["on", "off"]
    return []


def _values(name: str, ctx: CommandContext | None) -> list[str]:
    if name == "kind":
        return list(HOOK_KINDS)
    if name == "layers" and ctx:
        return [p for p in ctx.module_paths if p]
    return []


def complete(text_before_cursor: str, ctx: CommandContext | None = None) -> list[str]:
    """Candidates for the word being typed (whole words: commands, sub-words, names, 'lr=' ...)."""
    try:
        tokens = tokenize(text_before_cursor)
    except CommandError:
        return []
    if not text_before_cursor or text_before_cursor[-1].isspace():
        partial = ""
    else:
        partial = tokens.pop() if tokens else ""
    words = [unquote(t)[0] for t in tokens]
    if not words:
        return [c for c in COMMAND_NAMES if c.startswith(partial)]
    top = words[0]
    if top in ("note", "journal", "replay", "save") or top not in COMMAND_NAMES:
        return []
    if top == "help":
        pool = list(COMMAND_NAMES) if len(words) == 1 else list(SUBCOMMANDS.get(words[1], ()))
        return [c for c in pool if c.startswith(partial)] if len(words) <= 2 else []
    if top in SUBCOMMANDS:
        if len(words) == 1:
            return [c for c in SUBCOMMANDS[top] if c.startswith(partial)]
        key, args = f"{top} {words[1]}", words[2:]
        if key not in SPECS:
            return []
    else:
        key, args = top, words[1:]
    positional = [w for w in args if "=" not in w]
    used = {w.split("=", 1)[0] for w in args if "=" in w}
    if "=" in partial:
        name, _, val = partial.partition("=")
        head, _, last = val.rpartition(",")
        prefix = f"{name}={head}," if head else f"{name}="
        return [
            prefix + v
            for v in _values(name, ctx)
            if v.startswith(last) and v not in split_unquoted(head, ",")
        ]
    out: list[str] = []
    if not positional:
        out += [c for c in _positional(key, ctx) if c.startswith(partial)]
    out += [f"{o}=" for o in _option_names(key, positional, ctx) if o not in used and o.startswith(partial)]
    return out
