"""Callbacks that watch an epoch metric: early stopping, save-best, reduce-lr-on-plateau."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from labcon.core.callbacks.recorder import epoch_columns
from labcon.core.callbacks.schedule import active_scheduler
from labcon.core.distributed import unwrap_model
from labcon.core.events import Callback, CancelFitException
from labcon.fmt import did_you_mean


def _patience(n: int) -> int:
    """A patience in epochs: a whole number >= 0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"patience must be a whole number of epochs >= 0, got {n!r}")
    return n


class _Monitor(Callback):
    """Tracks the best value of `monitor` (an epoch-row column) and whether it improved."""

    order = 60
    run_in_probe = False

    def __init__(self, monitor: str = "valid_loss", comp: str | None = None, min_delta: float = 0.0):
        if comp is None:
            comp = "min" if "loss" in monitor or "error" in monitor else "max"
        if comp not in ("min", "max"):
            raise ValueError(f"comp must be 'min' or 'max', got {comp!r}")
        if not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.monitor, self.comp, self.min_delta = monitor, comp, min_delta
        self.best = math.inf if comp == "min" else -math.inf
        self.wait = 0

    def check_runner(self, runner: Any) -> None:
        names = [n for n in epoch_columns(runner.metrics) if n not in ("epoch", "time")]
        if self.monitor not in names:
            raise ValueError(
                f"{self.name} cannot monitor '{self.monitor}'{did_you_mean(self.monitor, names) or ';'} "
                f"epoch rows have {', '.join(names)}"
            )

    def _value(self) -> float:
        row = self.runner.recorder.last_row or {}
        if self.monitor not in row:
            raise KeyError(
                f"cannot monitor '{self.monitor}': epoch rows have {', '.join(row) or 'nothing yet'}"
            )
        return row[self.monitor]

    def _improved(self) -> bool:
        v = self._value()
        better = v < self.best - self.min_delta if self.comp == "min" else v > self.best + self.min_delta
        if better:
            self.best, self.wait = v, 0
        else:
            self.wait += 1
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])


class EarlyStopping(_Monitor):
    """Stop the fit when `monitor` has not improved for `patience` epochs."""

    def __init__(
        self, monitor: str = "valid_loss", comp: str | None = None, min_delta: float = 0.0, patience: int = 1
    ):
        super().__init__(monitor, comp, min_delta)
        self.patience = _patience(patience)

    def after_epoch(self) -> None:
        if not self._improved() and self.wait >= self.patience:
            raise CancelFitException(
                f"early stopping: no improvement in {self.monitor} for {self.wait} epochs"
            )


class SaveBest(_Monitor):
    """Save the model's weights whenever `monitor` improves: to `path`, relative to runner.path (a session's
    folder), written privately (0600) and atomically (temp file, then rename)."""

    def __init__(
        self, monitor: str = "valid_loss", comp: str | None = None, path: str | os.PathLike = "best.pt"
    ):
        super().__init__(monitor, comp)
        self.path = Path(path)
        self.saved_epoch: int | None = None

    @property
    def target(self) -> Path:
        """Where the weights go: `path`, under runner.path when relative."""
        return self.path if self.path.is_absolute() else Path(self.runner.path) / self.path

    def after_epoch(self) -> None:
        if self._improved():
            target = self.target
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                torch.save(unwrap_model(self.runner.model).state_dict(), f)
            os.replace(tmp, target)
            self.saved_epoch = self.runner.epoch


class ReduceLROnPlateau(_Monitor):
    """Divide every group's lr by `factor` when `monitor` stalls for `patience` epochs."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: str | None = None,
        min_delta: float = 0.0,
        patience: int = 1,
        factor: float = 10.0,
        min_lr: float = 0.0,
    ):
        super().__init__(monitor, comp, min_delta)
        if not factor > 1:
            raise ValueError(f"factor must be > 1 (the lr is divided by it), got {factor!r}")
        if not min_lr >= 0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr!r}")
        self.patience, self.factor, self.min_lr = _patience(patience), factor, min_lr

    def after_epoch(self) -> None:
        if not self._improved() and self.wait >= self.patience:
            r, groups = self.runner, self.runner.opt.param_groups
            sched = active_scheduler(r)
            if sched is not None and "lr" in sched.scheds:
                # A scheduled lr would be set back at the next batch: scale the rest of its schedule instead.
                now = [s(r.pct_train) for s in sched.per_group("lr", len(groups))]
                sched.rescale("lr", [max(v / self.factor, self.min_lr) for v in now], r.pct_train)
            else:
                for g in groups:
                    g["lr"] = max(g["lr"] / self.factor, self.min_lr)
            self.wait = 0
