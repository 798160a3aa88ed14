"""Recorder: per-batch lr/mom/loss and per-epoch losses, metrics and time — without per-batch host syncs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from labcon.core.callbacks.basics import find_bs
from labcon.core.events import Callback
from labcon.core.optim import get_hyper


def epoch_columns(metrics: Iterable[Any]) -> list[str]:
    """Column names of the epoch rows a Recorder writes for these metrics, in order."""
    names = [getattr(m, "__name__", type(m).__name__) for m in metrics]
    return ["epoch", "train_loss", "valid_loss", *names, "time"]


class Recorder(Callback):
    """Records training history; batch losses stay on the device and reach the host every `flush_every`."""

    removable = False
    order = 50
    run_in_probe = False

    def __init__(self, beta: float = 0.98, flush_every: int | None = None, max_batches: int = 200_000):
        self.beta, self.flush_every, self.max_batches = beta, flush_every, max_batches
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[list[float]] = []  # per batch, one value per param group
        self.moms: list[list[float]] = []
        self.rows: list[dict[str, float]] = []  # one per epoch
        self.n_flushes = 0
        self.nonfinite_at: int | None = None  # train_iter of the first non-finite loss seen
        self._avg, self._count = 0.0, 0
        self._thinned = 0  # leading history entries that stand for more than one batch
        # Reduces on-device [sum, count] accumulators across processes (set by the DDP callback).
        self.reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._pending: list[torch.Tensor] = []
        self._pending_bs: list[int] = []
        self._epoch_start = 0.0

    @property
    def recorded(self) -> int:
        """Batch losses recorded so far: never decreases (len(losses) does, once a long history is thinned)."""
        return self._count

    def fresh(self, mark: int) -> int:
        """How many of the batches recorded after `mark` (an earlier `recorded`) sit, one per batch, at the
        end of the history lists (all of them unless a thinning since has merged some)."""
        return max(0, min(self._count - mark, len(self.losses) - self._thinned))

    def losses_since(self, mark: int) -> list[float]:
        """The batch losses recorded after `mark` (an earlier `recorded`), as fresh() counts them."""
        k = self.fresh(mark)
        return self.losses[len(self.losses) - k :] if k else []

    @property
    def metric_names(self) -> list[str]:
        """Column names of an epoch row, in order."""
        return epoch_columns(self.runner.metrics)

    def before_fit(self) -> None:
        if self.flush_every is None:
            # One transfer per several steps (on an accelerator each one is a sync; on CPU it still costs a stack).
            self.flush_every = 8 if self.runner.device.type == "cpu" else 25

    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()

    def before_train(self) -> None:
        # Summed on the host at flush time: the losses come over anyway, so no per-batch kernels for this.
        self._train_sum, self._train_n = 0.0, 0

    def before_validate(self) -> None:
        self._flush()
        self._valid_sums = torch.zeros(1 + len(self.runner.metrics), device=self.runner.device)
        self._valid_n = 0

    def after_batch(self) -> None:
        r = self.runner
        loss = r.loss.detach()
        bs = find_bs(r.yb)
        if r.training:
            groups = r.opt.param_groups
            self.lrs.append([g["lr"] for g in groups])
            self.moms.append([_mom(g) for g in groups])
            self._pending.append(loss)
            self._pending_bs.append(bs)
            if len(self._pending) >= self.flush_every:
                self._flush()
        else:
            vals = [loss.float(), *(m(r.pred, r.yb).detach().float() for m in r.metrics)]
            self._valid_sums += torch.stack(vals) * bs
            self._valid_n += bs

    def _flush(self) -> None:
        """Copy pending batch losses to the host in one transfer and update the smoothed loss."""
        if not self._pending:
            return
        vals = torch.stack(self._pending).float().cpu().tolist()
        for v, bs in zip(vals, self._pending_bs, strict=True):
            self._train_sum += v * bs
            self._train_n += bs
        self._pending_bs.clear()
        # TrainEval (order -20) has already counted the last batch, so it is train_iter - 1.
        start = self.runner.train_iter - len(vals)
        self._pending.clear()
        for i, v in enumerate(vals):
            if not math.isfinite(v) and self.nonfinite_at is None:
                self.nonfinite_at = start + i
            self._count += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * v
            self.losses.append(v)
            self.smooth_losses.append(self._avg / (1 - self.beta**self._count))
        self.n_flushes += 1
        self._bound()

    def _bound(self) -> None:
        """Keep memory bounded on very long runs by halving the oldest half of the batch history."""
        if len(self.losses) <= self.max_batches:
            return
        half = len(self.losses) // 2
        for seq in (self.losses, self.smooth_losses, self.lrs, self.moms):
            seq[:half] = seq[:half:2]
        self._thinned = (half + 1) // 2  # the head no longer holds one entry per batch

    def after_train(self) -> None:
        self._flush()

    def after_validate(self) -> None:
        r = self.runner
        host = torch.tensor(
            [self._train_sum, self._valid_n, self._train_n], device=r.device, dtype=torch.float32
        )
        acc = torch.cat([host[:1], self._valid_sums, host[1:]])
        if self.reduce_fn is not None:
            acc = self.reduce_fn(acc)
        *sums, n_valid, n_train = acc.cpu().tolist()
        row: dict[str, float] = {"epoch": r.epoch}
        row["train_loss"] = sums[0] / n_train if n_train else math.nan
        names = ["valid_loss", *self.metric_names[3:-1]]
        for name, s in zip(names, sums[1:], strict=True):
            row[name] = s / n_valid if n_valid else math.nan
        for m, name in zip(r.metrics, names[1:], strict=True):
            finalize = getattr(m, "finalize", None)  # e.g. perplexity = exp(mean cross-entropy)
            if finalize is not None and math.isfinite(row[name]):
                row[name] = finalize(row[name])
        row["time"] = time.perf_counter() - self._epoch_start
        self.rows.append(row)

    def after_fit(self) -> None:
        self._flush()

    @property
    def last_row(self) -> dict[str, float] | None:
        """The latest epoch row, or None before the first epoch ends."""
        return self.rows[-1] if self.rows else None

    def state_dict(self) -> dict[str, Any]:
        """Host-side history (plain lists) for checkpoints."""
        return {
            "losses": list(self.losses),
            "smooth_losses": list(self.smooth_losses),
            "lrs": [list(x) for x in self.lrs],
            "moms": [list(x) for x in self.moms],
            "rows": [dict(r) for r in self.rows],
            "avg": self._avg,
            "count": self._count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore history saved by state_dict."""
        self.losses, self.smooth_losses = list(state["losses"]), list(state["smooth_losses"])
        self.lrs, self.moms = [list(x) for x in state["lrs"]], [list(x) for x in state["moms"]]
        self.rows = [dict(r) for r in state["rows"]]
        self._avg, self._count = float(state["avg"]), int(state["count"])


def _mom(group: dict[str, Any]) -> float:
    try:
        return float(get_hyper(group, "mom"))
    except KeyError:
        return math.nan
