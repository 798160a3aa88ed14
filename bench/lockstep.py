"""Lockstep timing: a raw PyTorch step runs next to each framework step, on its own copy of the model.

The framework reads its batches from a `Lockstep` iterable. Each time the framework asks for the next batch,
its previous step has finished (every callback event included): the iterable records that step's time, and
runs and times one hand-written step on the same batch, before the framework's step on even batches and after
it on odd ones. Both sides see the same machine state batch by batch, so drift from other processes on a shared
machine hits them equally, and neither side is always the one that runs second.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


def raw_step_fn(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_func: Callable[..., torch.Tensor],
    amp: torch.dtype | None = None,
    prep: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[Batch], None]:
    """One hand-written training step (forward, loss, backward, step, zero_grad) as a function of a batch."""
    dev = next(model.parameters()).device
    model.train()
    kept: list[torch.Tensor] = []

    def step(batch: Batch) -> None:
        xb, yb = batch
        if prep is not None:
            xb = prep(xb)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        kept.append(loss.detach())  # what a real loop keeps for its log (no host sync)
        if len(kept) > 64:
            torch.stack(kept).cpu()
            kept.clear()

    return step


class Lockstep:
    """An iterable of batches that runs (and times) `raw_step` on each batch before yielding it."""

    def __init__(self, batches: list[Batch], raw_step: Callable[[Batch], None], clock: str = "wall"):
        self.batches, self.raw_step = batches, raw_step
        # "cpu": this process's CPU time, far less disturbed by other processes on a shared machine (CPU only).
        self._now = time.process_time if clock == "cpu" else time.perf_counter
        self.raw: list[float] = []
        self.framework: list[float] = []
        cuda = batches and batches[0][0].is_cuda
        self._sync = torch.cuda.synchronize if cuda else (lambda: None)

    def __len__(self) -> int:
        return len(self.batches)

    def _drop_unpaired(self) -> None:
        # A framework that stops after len(self) batches (Lightning) never asks for the next one, so its last
        # step of a pass is not timed: drop that batch's raw time, keeping the two lists paired batch by batch.
        del self.raw[len(self.framework) :]

    def _run_raw(self, b: Batch) -> None:
        self._sync()
        t = self._now()
        self.raw_step(b)
        self._sync()
        self.raw.append(self._now() - t)

    def __iter__(self) -> Iterator[Batch]:
        self._drop_unpaired()
        last: float | None = None
        after: Batch | None = None  # a batch whose raw step runs after the framework's step on it
        for k, b in enumerate(self.batches):
            self._sync()
            t = self._now()
            if last is not None:
                self.framework.append(t - last)
            if after is not None:
                self._run_raw(after)
            # The raw step runs before the framework's on even batches and after it on odd ones: whichever
            # of two back-to-back steps runs second was measured ~2 % faster on long CPU steps (a raw loop in the
            # framework's seat read 1.024), and alternating cancels that order effect.
            if k % 2 == 0:
                self._run_raw(b)
                after = None
            else:
                after = b
            last = self._now()
            yield b
        self._sync()  # the framework asked for one more batch: its last step has ended
        if last is not None:
            self.framework.append(self._now() - last)
        if after is not None:
            self._run_raw(after)

    def reset(self) -> None:
        """Forget the timings (after a warm-up round)."""
        self.raw, self.framework = [], []

    def ratio(self) -> float:
        """Raw time over framework time, summed over every step (1.0: no framework cost)."""
        self._drop_unpaired()
        return sum(self.raw) / sum(self.framework)

    def step_ratio(self) -> float:
        """Ratio of totals over the step pairs (raw and framework on the same batch) where neither step took
        over twice its median: robust to a step another process on the machine slowed down, while a cost the
        framework pays on some steps only (Telemetry's sampled and report batches) still counts in full."""
        self._drop_unpaired()
        mr, mf = statistics.median(self.raw), statistics.median(self.framework)
        pairs = [
            (r, f) for r, f in zip(self.raw, self.framework, strict=False) if r <= 2 * mr and f <= 2 * mf
        ]
        return sum(r for r, _ in pairs) / sum(f for _, f in pairs)

    def summary(self) -> dict[str, Any]:
        """Plain figures: steps, medians per step (ms), the median per-step overhead (ms), the trimmed ratio and
        the plain ratio of totals."""
        self._drop_unpaired()
        return {
            "steps": len(self.framework),
            "raw_ms_median": round(1e3 * statistics.median(self.raw), 3),
            "framework_ms_median": round(1e3 * statistics.median(self.framework), 3),
            # The framework's own cost per step, batch by batch (what a ratio hides when steps are long).
            "overhead_ms_median": round(
                1e3 * statistics.median(f - r for r, f in zip(self.raw, self.framework, strict=False)), 3
            ),
            "ratio_trimmed": round(self.step_ratio(), 4),
            "ratio_of_totals": round(self.ratio(), 4),
        }


def twin(model: nn.Module, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """Two identical copies of model on device: one for the framework, one for the raw loop."""
    return copy.deepcopy(model).to(device), copy.deepcopy(model).to(device)
