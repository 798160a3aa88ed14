"""Guards around the step: non-finite loss, gradient clipping, gradient accumulation."""

from __future__ import annotations

from collections.abc import Callable

import torch

from labcon.core.callbacks.basics import find_bs
from labcon.core.distributed import all_reduce_sum
from labcon.core.events import Callback, CancelBatchException, CancelFitException, CancelStepException


class NonFiniteLossError(CancelFitException):
    """The loss became NaN or infinite; the message says where."""


class NaNGuard(Callback):
    """Stops the fit (or pauses, via `on_nan`) when the loss becomes NaN/inf.

    On the CPU every batch is checked before its backward pass, so the weights are never touched by a
    non-finite loss. On an accelerator a device-side flag is read every `every` batches, so
    training never waits on the host; the message then names the batch window. Under torch.distributed the
    flag is summed over ranks at each check, so every rank stops (or pauses) at the same batch: a rank that
    skipped its backward alone would leave the others waiting in DDP's all-reduce.
    """

    order = 5
    run_in_probe = False
    run_valid = False  # only training losses reach a backward pass
    cb_name = "nan_guard"

    def __init__(self, every: int | None = None, on_nan: Callable[[str], None] | None = None):
        self.every, self.on_nan = every, on_nan

    def before_fit(self) -> None:
        r = self.runner
        self._every = self.every or (1 if r.device.type == "cpu" else 16)
        self._flag = torch.zeros((), dtype=torch.bool, device=r.device)
        self._since = r.train_iter
        self._collective = torch.distributed.is_available() and torch.distributed.is_initialized()

    def after_loss(self) -> None:
        r = self.runner
        self._flag |= ~torch.isfinite(r.loss.detach()).all()
        if (r.train_iter + 1 - self._since) >= self._every:
            # The check happens at the same train_iter on every rank, so the collective lines up.
            bad = all_reduce_sum(self._flag.to(torch.int32)) > 0 if self._collective else self._flag
            if bool(bad):
                first = self._since if self._every > 1 else r.train_iter
                where = (
                    f"iteration {r.train_iter}" if self._every == 1 else f"iterations {first}-{r.train_iter}"
                )
                msg = (
                    f"loss became non-finite at epoch {r.epoch}, {where}; "
                    "lower the lr, add gradient clipping, or use bf16 instead of fp16"
                )
                self._flag.zero_()
                if self.on_nan is not None:
                    self.on_nan(msg)
                    # Skip this batch's backward and step; the handler decides what happens next.
                    raise CancelBatchException()
                raise NonFiniteLossError(msg)
            self._since = r.train_iter + 1


class GradientClip(Callback):
    """Clip the global gradient norm to max_norm before each step (after fp16 unscaling)."""

    order = 20

    def __init__(self, max_norm: float = 1.0):
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm = max_norm

    def before_step(self) -> None:
        # foreach + no error_if_nonfinite: stays on the device, no host sync.
        torch.nn.utils.clip_grad_norm_(self.runner.model.parameters(), self.max_norm, foreach=True)


class GradientAccumulation(Callback):
    """Accumulate gradients over n_acc samples before stepping; the loss is scaled so results equal one big batch."""

    order = 10
    run_valid = False

    def __init__(self, n_acc: int = 64):
        if n_acc < 1:
            raise ValueError(f"n_acc must be >= 1, got {n_acc}")
        self.n_acc = n_acc

    def before_train(self) -> None:
        self.count = 0
        self.runner.opt.zero_grad(set_to_none=True)

    def after_loss(self) -> None:
        r = self.runner
        bs = find_bs(r.yb)
        self.count += bs
        r.loss_grad = r.loss_grad * (bs / self.n_acc)

    def before_step(self) -> None:
        if self.count < self.n_acc:
            raise CancelStepException()
        self.count = 0
