"""Callbacks every Runner has: train/eval switching and device placement."""

from __future__ import annotations

from typing import Any

import torch

from labcon.core.events import Callback


def to_device(b: Any, device: torch.device) -> Any:
    """Move a tensor, or tensors nested in tuples/lists/dicts, to device (non-blocking)."""
    if isinstance(b, torch.Tensor):
        return b.to(device, non_blocking=True)
    if isinstance(b, (list, tuple)):
        return type(b)(to_device(o, device) for o in b)
    if isinstance(b, dict):
        return {k: to_device(v, device) for k, v in b.items()}
    return b


def find_bs(b: Any) -> int:
    """Batch size of a tensor or of the first tensor nested in b."""
    if isinstance(b, torch.Tensor):
        return b.shape[0] if b.ndim else 1
    if isinstance(b, (list, tuple)) and b:
        return find_bs(b[0])
    if isinstance(b, dict) and b:
        return find_bs(next(iter(b.values())))
    raise TypeError(f"cannot find a batch size in {type(b).__name__}")


class TrainEvalCallback(Callback):
    """Switches train/eval mode and keeps the iteration counters and fit progress."""

    removable = False
    order = -20

    def before_fit(self) -> None:
        self.runner.model.train()

    def before_train(self) -> None:
        r = self.runner
        r.model.train()
        r.training = True
        r.pct_train = (r.train_iter - r._fit_start_iter) / r._fit_total_iters

    def after_batch(self) -> None:
        r = self.runner
        if r.training:
            r.train_iter += 1
            r.pct_train = min(1.0, (r.train_iter - r._fit_start_iter) / r._fit_total_iters)

    def before_validate(self) -> None:
        self.runner.model.eval()
        self.runner.training = False

    def after_fit(self) -> None:
        self.runner.training = False


class DeviceCallback(Callback):
    """Puts batches on the runner's device (loaders that can do it themselves are told once per fit)."""

    removable = False
    order = -15

    def before_fit(self) -> None:
        r = self.runner
        r.model.to(r.device)
        if hasattr(r.dls, "to"):
            r.dls.to(r.device)

    def before_epoch(self) -> None:
        # Loaders whose order is a function of (seed, epoch) stay in step with the runner, also after a resume.
        set_epoch = getattr(self.runner.dls.train, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.runner.epoch)

    def before_batch(self) -> None:
        r = self.runner
        r.xb = to_device(r.xb, r.device)
        r.yb = to_device(r.yb, r.device)
