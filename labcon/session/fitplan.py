"""A fit as a typed, frozen plan: what to train and where its schedule starts (checkpoints store it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from labcon.commands import grammar as C
from labcon.errors import CheckpointError

FitKind = Literal["fit", "fit_one_cycle"]
_KINDS: tuple[str, ...] = ("fit", "fit_one_cycle")


@dataclass(frozen=True)
class FitPlan:
    """One fit: its kind and length, where it started (epoch, train_iter) and the schedule's total batches.

    An interrupted fit resumes from the same plan, so its schedule continues where it stopped
    (`Runner.fit(..., span=(start_iter, total))`).
    """

    kind: FitKind
    n: int
    start_epoch: int
    start_iter: int
    total: int
    n_train: int
    text: str
    lr: float | tuple[float, ...] | None = None
    pct_start: float | None = None
    # Live schedule changes (set, sched) made during the fit, as plain data: a continued fit re-applies them.
    sched_edits: tuple[dict[str, Any], ...] = ()

    @property
    def end_epoch(self) -> int:
        """The epoch index this fit ends before (start_epoch + n)."""
        return self.start_epoch + self.n

    def lr_list(self) -> float | list[float] | None:
        """The plan's lr as the runner takes it (a list for one value per param group)."""
        return list(self.lr) if isinstance(self.lr, tuple) else self.lr

    def remaining(self, epoch: int) -> int:
        """Epochs still to train when the runner is at `epoch`."""
        return self.end_epoch - epoch

    def to_state(self) -> dict[str, Any]:
        """Plain values for a checkpoint (weights-only loading accepts lists, not tuples of floats)."""
        d = dataclasses.asdict(self)
        if isinstance(self.lr, tuple):
            d["lr"] = list(self.lr)
        d["sched_edits"] = [dict(e) for e in self.sched_edits]
        return d

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> FitPlan | None:
        """The plan a checkpoint stored (None when it had none)."""
        if not state:
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            kw = {k: v for k, v in state.items() if k in fields}
            if isinstance(kw.get("lr"), list):
                kw["lr"] = tuple(float(x) for x in kw["lr"])
            kw["sched_edits"] = tuple(dict(e) for e in kw.get("sched_edits") or ())
            plan = cls(**kw)
        except TypeError as e:
            raise CheckpointError(f"the checkpoint's fit plan is incomplete ({e}); start a new fit") from None
        if plan.kind not in _KINDS:
            raise CheckpointError(f"the checkpoint's fit plan has an unknown kind {plan.kind!r}")
        return plan


def plan_for(cmd: C.Fit | C.FitOneCycle, epoch: int, train_iter: int, n_train: int, n_groups: int) -> FitPlan:
    """The plan of a fit command started at (epoch, train_iter) with n_train batches per epoch."""
    one_cycle = isinstance(cmd, C.FitOneCycle)
    lr = cmd.lr_plan(n_groups)
    return FitPlan(
        kind="fit_one_cycle" if one_cycle else "fit",
        n=int(cmd.n),
        start_epoch=int(epoch),
        start_iter=int(train_iter),
        total=max(1, int(cmd.n) * n_train),
        n_train=n_train,
        text=cmd.text,
        lr=tuple(lr) if isinstance(lr, list) else lr,
        pct_start=cmd.pct_start if one_cycle else None,
    )
