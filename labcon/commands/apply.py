"""Applying parsed commands that act on a Runner directly (set, opt, cb, norm, hooks, telemetry, show loop).

Called by the session's control callback at a safe point (see each command's `when`). Every function
returns the one-line reply (multi-line only for tables) or raises CommandError.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from labcon.commands.apply_context import RunnerContext
from labcon.commands.apply_opt import swap_optimizer
from labcon.commands.apply_transfer import apply_freeze, apply_summary
from labcon.commands.defs import (
    CbAdd,
    CbList,
    CbRm,
    Command,
    Freeze,
    HookAdd,
    HookRm,
    Hooks,
    Norm,
    Opt,
    Set,
    ShowLoop,
    Summary,
    Telemetry,
    Unfreeze,
    UnfreezeTo,
)
from labcon.core.events import Callback
from labcon.errors import CommandError, LabconError

__all__ = [
    "ActivationStats",
    "RunnerContext",
    "apply_runner_command",
    "build_callback",
    "load_callback_class",
    "swap_optimizer",
]

RUNNER_COMMANDS: tuple[type[Command], ...] = (
    Set,
    Opt,
    CbAdd,
    CbRm,
    CbList,
    Norm,
    Hooks,
    HookAdd,
    HookRm,
    Telemetry,
    ShowLoop,
    Freeze,
    Unfreeze,
    UnfreezeTo,
    Summary,
)
USER_HOOK_OWNER = "console"


def apply_runner_command(cmd: Command, runner: Any) -> str:
    """Apply a runner-level command to `runner`; returns the reply text or raises CommandError."""
    handler = _HANDLERS.get(type(cmd))
    if handler is None:
        raise CommandError(f"'{cmd.name}' is handled by the session, not applied to a runner")
    try:
        return handler(cmd, runner)
    except CommandError:
        raise
    except (LabconError, ValueError, KeyError, IndexError, TypeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise CommandError(f"{cmd.text}: {msg}") from e


# ----- set ----------------------------------------------------------------------------------------


def _set(cmd: Set, runner: Any) -> str:
    parts = []
    for name, _v in cmd.values:
        runner.hyper(name)  # unknown names fail before anything changes
    for name, v in cmd.values:
        if isinstance(v, tuple):
            n = len(runner.opt.param_groups)
            if len(v) != n:
                raise CommandError(f"{name} has {len(v)} values for {n} param group(s); give one per group")
            for i, x in enumerate(v):
                runner.set_hyper(name, x, i)
        else:
            runner.set_hyper(name, v, cmd.group)
        parts.append(f"{name}={_fmt_list(runner.hyper(name))}")
    where = "" if cmd.group is None else f" (group {cmd.group})"
    reply = f"set {' '.join(parts)}{where}"
    scheduled = [n for n, _ in cmd.values if _scheduler_for(runner, n)]
    if scheduled and getattr(runner, "in_fit", False):
        reply += f"; note: a schedule also sets {', '.join(scheduled)} every batch of this fit"
    return reply


def _fmt_list(vals: list[Any]) -> str:
    out = [f"{v:g}" if isinstance(v, float) else str(v) for v in vals]
    return out[0] if len(set(out)) == 1 else "[" + ", ".join(out) + "]"


def _scheduler_for(runner: Any, name: str) -> bool:
    return any(name in getattr(cb, "scheds", {}) for cb in runner.cbs)


# ----- callbacks ----------------------------------------------------------------------------------


def load_callback_class(spec: str) -> type[Callback]:
    """Load `ClassName` from `path/to/file.py:ClassName` (runs that file: only for the user's own code)."""
    path_s, _, cls_name = spec.rpartition(":")
    if not path_s or not cls_name:
        raise CommandError(f"'{spec}' is not path/to/file.py:ClassName")
    path = Path(path_s).expanduser().resolve()
    if path.suffix != ".py":
        raise CommandError(f"'{path_s}' is not a .py file; give path/to/file.py:ClassName")
    if not path.is_file():
        raise CommandError(f"no file '{path_s}'; give path/to/file.py:ClassName")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    mod_name = f"labcon_user_callbacks.{path.stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise CommandError(f"cannot load '{path_s}' as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    # Registered before running so dataclasses/pickling inside the file can find their module.
    sys.modules[mod_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise CommandError(f"error loading '{path_s}': {type(e).__name__}: {e}") from e
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = sorted(
            n
            for n, o in vars(module).items()
            if isinstance(o, type) and issubclass(o, Callback) and o is not Callback
        )
        raise CommandError(
            f"no class '{cls_name}' in '{path_s}'; callbacks defined there: {', '.join(found) or '(none)'}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Callback)):
        raise CommandError(f"'{cls_name}' in '{path_s}' is not a Callback; subclass labcon.Callback")
    return cls


def _registry() -> dict[str, type[Callback]]:
    from labcon.core.callbacks.registry import CALLBACKS

    return CALLBACKS


def build_callback(name: str, kwargs: dict[str, Any]) -> Callback:
    """Construct a callback from a registry name or `file.py:Class`, checking kwargs against its signature."""
    if ":" in name:
        cls = load_callback_class(name)
    else:
        reg = _registry()
        if name not in reg:
            from labcon.commands.spec import suggest

            raise CommandError(suggest(name, sorted(reg), "callback"))
        cls = reg[name]
    label = name.rpartition(":")[2]
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as e:
            valid = [
                f"{p.name}="
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            raise CommandError(
                f"bad options for callback '{label}': {e}; valid: {', '.join(valid) or 'none'}"
            ) from e
    kwargs = {k: list(v) if isinstance(v, tuple) and k == "layers" else v for k, v in kwargs.items()}
    try:
        cb = cls(**kwargs)
    except (LabconError, ValueError, TypeError) as e:
        raise CommandError(f"cannot create callback '{label}': {e}") from e
    return cb


def _cb_add(cmd: CbAdd, runner: Any) -> str:
    cb = build_callback(cmd.cb, cmd.kwargs)
    if runner.cb(cb.name) is not None:
        raise CommandError(f"callback '{cb.name}' is already installed; cb rm {cb.name} first")
    runner.add_cbs([cb])
    started = ""
    if getattr(runner, "in_fit", False) and callable(getattr(cb, "before_fit", None)):
        # Joining a fit that already began: let the callback set itself up as if the fit started now.
        try:
            cb.before_fit()
        except Exception as e:
            runner.remove_cbs([cb])
            raise CommandError(f"callback '{cb.name}' failed to start: {type(e).__name__}: {e}") from e
        started = " (joined the running fit)"
    return f"added callback {cb.name} (order {cb.order}){started}"


def check_removable(cb: Any, runner: Any) -> None:
    """Refuse to remove the loop's own machinery (train/eval, device, recorder, session control)."""
    if not getattr(cb, "removable", True):
        removable = [c.name for c in runner.cbs if getattr(c, "removable", True)]
        raise CommandError(
            f"'{cb.name}' is part of the training loop and cannot be removed; "
            f"removable: {', '.join(removable) or 'none'}"
        )


def _cb_rm(cmd: CbRm, runner: Any) -> str:
    cb = runner.cb(cmd.cb)
    if cb is None:
        from labcon.commands.spec import suggest

        raise CommandError(suggest(cmd.cb, [c.name for c in runner.cbs], "installed callback"))
    check_removable(cb, runner)
    if getattr(runner, "in_fit", False) and callable(getattr(cb, "after_fit", None)):
        # Leaving mid-fit: the callback's own cleanup (restore step_fn, remove hooks, ...) runs now.
        cb.after_fit()
    runner.remove_cbs([cb])
    return f"removed callback {cmd.cb}"


def _cb_list(cmd: CbList, runner: Any) -> str:
    return "callbacks: " + ", ".join(f"{c.name}({c.order})" for c in runner.cbs)


# ----- norm, hooks, telemetry, show loop ------------------------------------------------------------


def _norm(cmd: Norm, runner: Any) -> str:
    from labcon.nn.norms import swap_norm

    n = swap_norm(runner.model, cmd.kind, opt=runner.opt, **cmd.kwargs)
    moved = runner.hooks.refresh() if hasattr(runner.hooks, "refresh") else 0
    if n == 0:
        return "no normalisation layers to swap"
    extra = f"; re-attached {moved} hook(s)" if moved else ""
    return f"swapped {n} normalisation layer(s) to {cmd.kind}{extra}"


class ActivationStats:
    """A console hook: keeps the latest output (or grad-output) mean and std on the device, no host sync."""

    def __init__(self) -> None:
        self.calls = 0
        self._stats: torch.Tensor | None = None

    def __call__(self, module: torch.nn.Module, inp: Any, out: Any) -> None:
        t = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
            return
        t = t.detach().float()
        self._stats = torch.stack([t.mean(), t.std(unbiased=False)])
        self.calls += 1

    def summary(self) -> str:
        """'mean=.. std=.. (n calls)' (one host transfer, only when asked)."""
        if self._stats is None:
            return "no calls yet"
        mean, std = self._stats.tolist()
        return f"mean={mean:.4g} std={std:.4g} ({self.calls} calls)"


def _hooks(cmd: Hooks, runner: Any) -> str:
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


def _hook_add(cmd: HookAdd, runner: Any) -> str:
    hook = runner.hooks.add(cmd.module, cmd.kind, ActivationStats(), owner=USER_HOOK_OWNER, scope="session")
    return f"hook {hook.id}: {cmd.kind} stats on {cmd.module or '(model)'} (hook rm {hook.id} to remove)"


def _hook_rm(cmd: HookRm, runner: Any) -> str:
    runner.hooks.remove(cmd.id)
    return f"removed hook {cmd.id}"


def _telemetry(cmd: Telemetry, runner: Any) -> str:
    from labcon.core.telemetry import OWNER
    from labcon.core.telemetry import Telemetry as TelemetryCb

    tel = next((c for c in runner.cbs if isinstance(c, TelemetryCb)), None)
    in_fit = getattr(runner, "in_fit", False)
    if cmd.on is False:
        if tel is None:
            return "telemetry is already off"
        runner.remove_cbs([tel])
        runner.hooks.remove_owner(OWNER)
        return "telemetry off"
    if tel is None:
        if cmd.on is None and cmd.every is None and cmd.layers is None:
            return "telemetry is off (telemetry on to start it)"
        kwargs: dict[str, Any] = {}
        if cmd.every is not None:
            kwargs["every"] = cmd.every
        if cmd.layers is not None:
            kwargs["layers"] = list(cmd.layers)
        tel = TelemetryCb(**kwargs)
        if in_fit:
            tel.select_layers(runner.model)  # bad module paths fail before anything is installed
        runner.add_cbs([tel])
        if in_fit:
            tel.before_fit()
        return "telemetry on: " + _tel_settings(tel, runner)
    if cmd.every is not None:
        tel.every = cmd.every
    if cmd.layers is not None:
        old = tel.layer_spec
        tel.layer_spec = list(cmd.layers)
        try:
            tel.select_layers(runner.model)
        except LabconError:
            tel.layer_spec = old
            raise
        if in_fit:
            tel.before_fit()  # re-select and re-hook now rather than at the next fit
    return "telemetry on: " + _tel_settings(tel, runner)


def _tel_settings(tel: Any, runner: Any) -> str:
    layers = tel.layers or tel.select_layers(runner.model)
    shown = ", ".join(layers[:6]) + (f" ... ({len(layers)} layers)" if len(layers) > 6 else "")
    return f"every={tel.every} layers={shown or '(none)'}"


def _show_loop(cmd: ShowLoop, runner: Any) -> str:
    return runner.show_loop()


def _opt(cmd: Opt, runner: Any) -> str:
    return swap_optimizer(runner, cmd.opt, **cmd.kwargs)


_HANDLERS: dict[type[Command], Callable[[Any, Any], str]] = {
    Set: _set,
    Opt: _opt,
    CbAdd: _cb_add,
    CbRm: _cb_rm,
    CbList: _cb_list,
    Norm: _norm,
    Hooks: _hooks,
    HookAdd: _hook_add,
    HookRm: _hook_rm,
    Telemetry: _telemetry,
    ShowLoop: _show_loop,
    Freeze: apply_freeze,
    Unfreeze: apply_freeze,
    UnfreezeTo: apply_freeze,
    Summary: apply_summary,
}
