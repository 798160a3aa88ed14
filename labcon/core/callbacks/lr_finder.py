"""LR range test: exponentially growing lr, stop on divergence, restore model and optimizer."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labcon.core.events import Callback, CancelFitException, CancelValidateException

if TYPE_CHECKING:
    from labcon.core.runner import Runner


@dataclass(frozen=True)
class LRFindResult:
    """Learning rates tried, smoothed losses seen, and the suggested lrs."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    valley: float
    steepest: float

    @property
    def suggestion(self) -> float:
        """The lr to use: the valley point (robust), falling back to the steepest descent."""
        return self.valley if math.isfinite(self.valley) else self.steepest


class LRFinder(Callback):
    """Drives the lr from start_lr to end_lr exponentially over num_it batches."""

    order = 1

    def __init__(
        self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True
    ):
        if not 0 < start_lr < end_lr:
            raise ValueError(f"lr_find needs 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def before_fit(self) -> None:
        self.best, self.avg, self.n = math.inf, 0.0, 0

    def before_batch(self) -> None:
        if not self.runner.training:
            return
        lr = self.start_lr * (self.end_lr / self.start_lr) ** (self.n / max(1, self.num_it - 1))
        for g in self.runner.opt.param_groups:
            g["lr"] = lr
        self.lrs.append(lr)

    def after_batch(self) -> None:
        if not self.runner.training:
            return
        # A probe: one host sync per batch is acceptable here.
        loss = float(self.runner.loss.detach().float())
        self.n += 1
        self.avg = 0.98 * self.avg + 0.02 * loss
        smooth = self.avg / (1 - 0.98**self.n)
        self.losses.append(smooth)
        self.best = min(self.best, smooth)
        if self.n >= self.num_it or (self.stop_div and (not math.isfinite(smooth) or smooth > 4 * self.best)):
            raise CancelFitException("lr_find done")

    def before_validate(self) -> None:
        raise CancelValidateException()


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(valley, steepest): valley = middle of the longest descending stretch; steepest = min gradient."""
    pts = [(lr, lo) for lr, lo in zip(lrs, losses, strict=False) if math.isfinite(lo)]
    if len(pts) < 3:
        return math.nan, math.nan
    xs = [math.log10(p[0]) for p in pts]
    ys = [p[1] for p in pts]
    grads = [(ys[i + 1] - ys[i - 1]) / (xs[i + 1] - xs[i - 1]) for i in range(1, len(ys) - 1)]
    steepest = pts[1 + min(range(len(grads)), key=grads.__getitem__)][0]
    # Longest run ending at the loss minimum where the loss decreases (fastai's "valley").
    n = len(ys)
    run = [1] * n
    for i in range(1, n):
        for j in range(i):
            if ys[i] < ys[j] and run[j] + 1 > run[i]:
                run[i] = run[j] + 1
    end = max(range(n), key=run.__getitem__)
    start = end - run[end] + 1
    sections = (end - start) / 4
    idx = int(start + (end - start) / 2 + sections)
    valley = pts[min(idx, n - 1)][0]
    return valley, steepest


def run_lr_find(runner: Runner, start_lr: float, end_lr: float, num_it: int) -> LRFindResult:
    """Run the range test on `runner` and put model and optimizer back as they were."""
    if runner.opt is None:
        runner.create_opt()
    model_state = copy.deepcopy(runner.model.state_dict())
    opt_state = copy.deepcopy(runner.opt.state_dict())
    finder = LRFinder(start_lr, end_lr, num_it)
    n_train = len(runner.dls.train) if hasattr(runner.dls.train, "__len__") else num_it
    epochs = max(1, math.ceil(num_it / max(1, n_train)))
    try:
        with runner.probe():
            runner.fit(epochs, cbs=[finder])
    finally:
        runner.model.load_state_dict(model_state)
        runner.opt.load_state_dict(opt_state)
    valley, steepest = suggest(finder.lrs, finder.losses)
    return LRFindResult(tuple(finder.lrs), tuple(finder.losses), valley, steepest)
