"""RunnerContext: what command validation and completion see of a live Runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labcon.core.hypers import TORCH_NAMES


class RunnerContext:
    """A CommandContext read from a live Runner (for validation and completion)."""

    def __init__(self, runner: Any, state: str | Callable[[], str] = "idle"):
        self.runner = runner
        self._state = state

    @property
    def state(self) -> str:
        """The session state (a fixed string or read from a callable)."""
        return self._state() if callable(self._state) else self._state

    @property
    def callbacks_available(self) -> list[str]:
        """Registry names."""
        from labcon.core.callbacks.registry import CALLBACKS

        return sorted(CALLBACKS)

    @property
    def callbacks_installed(self) -> list[str]:
        """Names of installed callbacks."""
        return [c.name for c in self.runner.cbs]

    @property
    def callbacks_fixed(self) -> list[str]:
        """Installed callbacks that cannot be removed (the loop's own machinery)."""
        return [c.name for c in self.runner.cbs if not getattr(c, "removable", True)]

    @property
    def scheduled(self) -> list[str]:
        """Hyper-parameters a schedule sets (the running fit's scheduler, else the runner's schedules)."""
        from labcon.core.callbacks.schedule import active_scheduler

        sched = active_scheduler(self.runner) if self.runner.in_fit else None
        return list(sched.scheds if sched is not None else self.runner.schedules)

    @property
    def optimizer_names(self) -> list[str]:
        """Names in labcon.core.optim.OPTIMIZERS."""
        from labcon.core.optim import OPTIMIZERS

        return sorted(OPTIMIZERS)

    @property
    def hyper_names(self) -> list[str]:
        """Numeric hyper-parameters of the optimizer's first param group (torch names mapped to labcon's)."""
        opt = self.runner.opt
        if opt is None:
            return ["lr", "mom", "sqr_mom", "eps", "wd"]
        g = opt.param_groups[0]
        names = [
            TORCH_NAMES.get(k, k)
            for k, v in g.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        if "betas" in g:
            names += ["mom", "sqr_mom"]
        return sorted(set(names))

    @property
    def n_groups(self) -> int:
        """Number of param groups (from the splitter before the optimizer exists)."""
        r = self.runner
        if r.opt is not None:
            return len(r.opt.param_groups)
        splitter = getattr(r, "splitter", None)
        return len(splitter(r.model)) if splitter else 1

    @property
    def module_paths(self) -> list[str]:
        """Module paths of the model."""
        return [n for n, _ in self.runner.model.named_modules()]

    @property
    def hook_ids(self) -> list[int]:
        """Installed hook ids."""
        return [r["id"] for r in self.runner.hooks.table()]
