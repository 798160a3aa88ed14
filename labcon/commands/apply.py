"""Applying commands: to a session's host or to a bare Runner, and the helpers commands share
(callbacks from the registry or a user file, activation-stats hooks).

Called by the session's control callback at a safe point (see each command's `when`). Every function
returns the one-line reply (multi-line only for tables) or raises CommandError.
"""

from __future__ import annotations

from typing import Any

import torch

from labcon.commands.apply_context import RunnerContext
from labcon.commands.apply_opt import swap_optimizer
from labcon.commands.base import Answer, Command
from labcon.commands.options import check_options
from labcon.commands.usercode import load_callback_class
from labcon.core.events import Callback
from labcon.errors import CommandError, LabconError

__all__ = [
    "ActivationStats",
    "RunnerHost",
    "apply_command",
    "RunnerContext",
    "apply_runner_command",
    "build_callback",
    "load_callback_class",
    "swap_optimizer",
]


class RunnerHost:
    """A CommandHost with only a Runner (tests, checkpoint restore): session-level commands are refused."""

    def __init__(self, runner: Any):
        self.runner = runner

    def _refuse(self, what: str) -> Any:
        raise CommandError(f"'{what}' needs a session, not only a runner")

    def pause(self) -> str:
        """Refused."""
        return self._refuse("pause")

    def resume(self) -> str:
        """Refused."""
        return self._refuse("resume")

    def stop(self) -> str:
        """Refused."""
        return self._refuse("stop")

    def save(self, label: str | None) -> str:
        """Refused."""
        return self._refuse("save")

    def note(self, text: str) -> str:
        """Refused."""
        return self._refuse("note")

    def search_journal(self, query: str) -> Answer:
        """Refused."""
        return self._refuse("journal")

    def status(self) -> dict[str, Any]:
        """Refused."""
        return self._refuse("status")

    def data_summary(self) -> str:
        """Refused."""
        return self._refuse("data summary")

    def interrupted_fit(self) -> None:
        """A bare runner keeps no fit plan."""
        return None


def apply_command(cmd: Command, host: Any) -> Answer:
    """Apply any command to a host (a session's, or a RunnerHost); library errors become one-line CommandErrors."""
    try:
        out = cmd.apply(host)
    except CommandError:
        raise
    except (LabconError, ValueError, KeyError, IndexError, TypeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise CommandError(f"{cmd.text}: {msg}") from e
    return out if isinstance(out, Answer) else Answer(out)


def apply_runner_command(cmd: Command, runner: Any) -> str:
    """Apply a runner-level command to `runner`; returns the reply text or raises CommandError."""
    return apply_command(cmd, RunnerHost(runner)).text


# ----- callbacks ----------------------------------------------------------------------------------


def _registry() -> dict[str, type[Callback]]:
    from labcon.core.callbacks.registry import CALLBACKS

    return CALLBACKS


def build_callback(name: str, kwargs: dict[str, Any], sha256: str | None = None) -> Callback:
    """Construct a callback from a registry name or `file.py:Class` (pinned to `sha256` when given),
    checking kwargs against its signature."""
    if ":" in name:
        cls = load_callback_class(name, sha256)
    else:
        reg = _registry()
        if name not in reg:
            from labcon.commands.base import suggest

            raise CommandError(suggest(name, sorted(reg), "callback"))
        cls = reg[name]
    label = name.rpartition(":")[2]
    if isinstance(kwargs.get("layers"), str):  # `cb add telemetry layers=body.0`: one layer is a list of one
        kwargs = {**kwargs, "layers": [kwargs["layers"]]}
    check_options(label, cls, kwargs)
    kwargs = {k: list(v) if isinstance(v, tuple) and k == "layers" else v for k, v in kwargs.items()}
    try:
        cb = cls(**kwargs)
    except (LabconError, ValueError, TypeError) as e:
        raise CommandError(f"cannot create callback '{label}': {e}") from e
    return cb


def check_removable(cb: Any, runner: Any) -> None:
    """Refuse to remove the loop's own machinery (train/eval, device, recorder, session control)."""
    if not getattr(cb, "removable", True):
        removable = [c.name for c in runner.cbs if getattr(c, "removable", True)]
        raise CommandError(
            f"'{cb.name}' is part of the training loop and cannot be removed; "
            f"removable: {', '.join(removable) or 'none'}"
        )


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
