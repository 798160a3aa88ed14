"""Where the fit is: the one place the status bar and the Training pane's bars read epoch / batch counters from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labcon.session.messages import FitStarted, Progress


@dataclass
class FitPlan:
    """The fit under way: epochs [start_epoch, start_epoch + n) and its `total` training batches from start_iter."""

    start_epoch: int
    n: int
    start_iter: int
    total: int

    @classmethod
    def from_status(cls, d: Any) -> FitPlan | None:
        """The plan in session.status()['fit'] (None when there is none or it is malformed)."""
        if not isinstance(d, dict):
            return None
        try:
            return cls(int(d["start_epoch"]), int(d["n"]), int(d["start_iter"]), int(d["total"]))
        except (KeyError, TypeError, ValueError):
            return None


class FitPosition:
    """Global epoch, phase and batch counters plus the fit plan, fed by status reads and Progress messages.

    Every counter shown on screen comes from here, so the status bar and the fit bar never disagree: `epoch k/n`
    always counts epochs of the current fit (1-based), the fit's fraction counts its training batches.
    """

    def __init__(self) -> None:
        self.state = "idle"
        self.epoch = 0  # global epoch index (0-based) the runner is in
        self.phase = "train"
        self.iter = 0  # batches done in this phase
        self.n_iter = 0
        self.train_iter = 0
        self.plan: FitPlan | None = None
        self.eta_fit: float | None = None

    def set_status(self, st: dict[str, Any]) -> None:
        """Take a session.status() snapshot (its counters are the runner's, read at one moment)."""
        self.state = str(st.get("state", self.state))
        self.epoch = int(st.get("epoch", 0) or 0)
        self.train_iter = int(st.get("train_iter", 0) or 0)
        self.plan = FitPlan.from_status(st.get("fit"))
        if self.state == "idle":
            self.iter = self.n_iter = 0
        else:
            # status() reads the runner's 0-based index of the batch under way; Progress counts batches done.
            self.n_iter = int(st.get("n_iter", 0) or 0)
            self.iter = min(self.n_iter, int(st.get("iter", 0) or 0))

    def fit_started(self, ev: FitStarted) -> None:
        """A fit (or the rest of a resumed one) began; keeps a resumed fit's own start when it is known."""
        p = self.plan
        if p is None or p.start_epoch + p.n != ev.epoch_start + ev.n_epochs:  # not the rest of the known plan
            self.plan = FitPlan(
                ev.epoch_start, ev.n_epochs, self.train_iter, ev.n_epochs * max(1, ev.n_train)
            )
        self.epoch = ev.epoch_start
        self.iter, self.n_iter = 0, ev.n_train
        self.phase = "train"
        self.eta_fit = None

    def progress(self, p: Progress) -> None:
        """Take the newest Progress."""
        self.epoch, self.phase, self.iter, self.n_iter = p.epoch, p.phase, p.iter, p.n_iter
        self.train_iter = p.train_iter
        if p.phase == "train" or self.eta_fit is None:
            # The valid phase reports no fit ETA (0): keep the last training one instead of claiming "done".
            self.eta_fit = p.eta_fit
        if self.plan is not None and not (
            self.plan.start_epoch <= p.epoch < self.plan.start_epoch + self.plan.n
        ):
            self.plan = None  # a Progress from outside the plan we knew: a newer fit we have not heard of yet

    # -- what is shown ------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """A fit is under way (running, paused or stopping)."""
        return self.state in ("running", "paused", "stopping")

    @property
    def fit_epoch(self) -> tuple[int, int] | None:
        """(k, n): the fit's k-th epoch of n (1-based), or None outside a fit."""
        if self.plan is None:
            return None
        k = self.epoch - self.plan.start_epoch + 1
        return max(1, min(self.plan.n, k)), self.plan.n

    @property
    def fit_fraction(self) -> float:
        """0..1: the fit's training batches done (a validation phase counts as the end of its epoch)."""
        if self.plan is None or self.plan.total <= 0:
            return 0.0
        return min(1.0, max(0.0, (self.train_iter - self.plan.start_iter) / self.plan.total))

    @property
    def epoch_fraction(self) -> float:
        """0..1 of the current phase's batches."""
        return min(1.0, self.iter / self.n_iter) if self.n_iter else 0.0

    def epoch_text(self) -> str:
        """'epoch 2/3' within the live fit, else 'epochs done N'."""
        fe = self.fit_epoch
        if fe is not None and self.live:
            return f"epoch {fe[0]}/{fe[1]}"
        if self.live:
            return f"epoch {self.epoch + 1}"  # a fit whose plan this console has not seen: no made-up total
        return f"epochs done {self.epoch_done()}"

    def batch_text(self) -> str:
        """'train 12/40' (valid phases say so)."""
        if not self.live or not self.n_iter:
            return ""
        return f"{self.phase} {min(self.iter, self.n_iter)}/{self.n_iter}"

    def epoch_done(self) -> int:
        """Epochs completed by the session so far (the runner's global epoch counter once idle)."""
        return self.epoch


__all__ = ["FitPlan", "FitPosition"]
