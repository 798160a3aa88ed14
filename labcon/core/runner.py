"""The Runner: a training loop whose every stage is visible to, and changeable by, callbacks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labcon.core.cbhost import CallbackHost
from labcon.core.events import (
    BATCH_EVENTS,
    CANCEL_EXCEPTIONS,
    EVENTS,
    TRAIN_EVENTS,
    VALID_EVENTS,
    Callback,
    CallbackError,
    CancelFitException,
)
from labcon.core.hooks import HookRegistry
from labcon.core.hypers import check_hyper, per_group
from labcon.core.losses import cross_entropy
from labcon.core.optim import Adam, get_hyper, set_hyper
from labcon.core.timing import InputMeter

_CONTROL_FLOW = tuple(CANCEL_EXCEPTIONS.values())


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class Runner(CallbackHost):
    """Fits a model on `dls` (.train/.valid iterables of (x, y)) with callbacks at every event."""

    def __init__(
        self,
        model: nn.Module,
        dls: Any,
        loss_func: Callable[..., torch.Tensor] = cross_entropy,
        opt_func: Callable[..., torch.optim.Optimizer] = Adam,
        lr: float | Sequence[float] = 1e-3,
        cbs: Iterable[Callback] = (),
        metrics: Iterable[Callable[..., torch.Tensor]] = (),
        device: torch.device | str | None = None,
        splitter: Callable[[nn.Module], list[list[nn.Parameter]]] | None = None,
        default_cbs: bool = True,
    ):
        from labcon.core.callbacks.basics import DeviceCallback, TrainEvalCallback
        from labcon.core.callbacks.recorder import Recorder

        self.device = torch.device(device) if device is not None else default_device()
        self.model, self.dls, self.loss_func, self.opt_func = model.to(self.device), dls, loss_func, opt_func
        self.lr, self.splitter, self.metrics = lr, splitter, list(metrics)
        # Where callbacks put the files they write (SaveBest's model): a session sets its own folder.
        self.path = Path(".")
        self.opt: torch.optim.Optimizer | None = None
        # Schedules every fit runs (config [train.schedule], `sched` while idle); fit_one_cycle keeps lr/mom.
        self.schedules: dict[str, Any] = {}
        self.hooks = HookRegistry(model)
        self.cbs: list[Callback] = []
        self._table_train: dict[str, list[Callable[[], Any]]] = {}
        self._table_valid: dict[str, list[Callable[[], Any]]] = {}
        self.epoch, self.n_epochs, self.train_iter, self.pct_train = 0, 0, 0, 0.0
        self.iter, self.n_iter, self.training, self.probing, self.in_fit = 0, 0, False, False, False
        self.xb: Any = None
        self.yb: Any = None
        self.pred: Any = None
        self.loss: Any = None
        self.loss_grad: Any = None
        self.step_fn: Callable[[], Any] = self._opt_step
        self._fit_start_iter, self._fit_total_iters = 0, 1
        self._epoch_complete = False
        self.skip_batches = 0  # training batches of the next epoch already done (mid-epoch resume)
        self.stop_reason: str | None = None  # why the last fit was cancelled (None: it ran to the end)
        self.data_time = 0.0  # seconds the last batch took to come out of the loader
        self.input_meter = InputMeter()  # input-bound vs compute-bound, from the same two clock readings
        # Maps (event, bound methods) to what the loop calls: the profiler times every callback this way, at
        # no cost to the loop when unset (the table is rebuilt, not checked per call).
        self._event_wrapper: Callable[[str, list[Callable[[], Any]]], list[Callable[[], Any]]] | None = None
        self.recorder = Recorder()
        if default_cbs:
            self.add_cbs([TrainEvalCallback(), DeviceCallback(), self.recorder])
        self.add_cbs(cbs)

    def _rebuild(self) -> None:
        """Precompute, per event, the bound methods to call: the hot loop then does no lookups."""
        self.cbs.sort(key=lambda c: c.order)
        active = [c for c in self.cbs if c.run_in_probe or not self.probing]

        def table(phase: str) -> dict[str, list[Callable[[], Any]]]:
            def runs(c: Callback, e: str) -> bool:
                if e in TRAIN_EVENTS or (e in BATCH_EVENTS and phase == "train"):
                    return c.run_train
                if e in VALID_EVENTS or (e in BATCH_EVENTS and phase == "valid"):
                    return c.run_valid
                return True

            return {
                e: [getattr(c, e) for c in active if callable(getattr(c, e, None)) and runs(c, e)]
                for e in EVENTS
            }

        # Batch events pick the table of the running phase; the others are the same in both.
        train, valid = table("train"), table("valid")
        if self._event_wrapper is not None:
            train = {e: self._event_wrapper(e, ms) for e, ms in train.items()}
            valid = {e: self._event_wrapper(e, ms) for e, ms in valid.items()}
        self._table_train, self._table_valid = train, valid

    def set_event_wrapper(
        self, wrapper: Callable[[str, list[Callable[[], Any]]], list[Callable[[], Any]]] | None
    ) -> None:
        """Route every event's callback list through `wrapper(event, methods)` (None: back to plain calls).
        Each returned callable needs a `__self__` (the Callback named in errors and in `show_loop`)."""
        self._event_wrapper = wrapper
        self._rebuild()

    def __call__(self, event: str) -> None:
        table = self._table_train if self.training or event in TRAIN_EVENTS else self._table_valid
        if event in VALID_EVENTS:
            table = self._table_valid
        for method in table[event]:
            try:
                method()
            except _CONTROL_FLOW:
                raise
            except (CallbackError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise CallbackError(method.__self__.name, event, e) from e

    def show_loop(self) -> str:
        """The nested loop as the course prints it, with the callbacks that run at each event, in order."""
        from labcon.core.loopview import loop_text

        return loop_text(self._table_train, self._table_valid)

    # ----- the loop ---------------------------------------------------------------------------------
    def _with_events(self, f: Callable[[], None], level: str) -> None:
        try:
            self(f"before_{level}")
            f()
        except CANCEL_EXCEPTIONS[level]:
            self(f"after_cancel_{level}")
        self(f"after_{level}")

    def _opt_step(self) -> None:
        self.opt.step()

    def _backward(self) -> None:
        self.loss_grad.backward()

    def _step(self) -> None:
        self.step_fn()
        self.opt.zero_grad(set_to_none=True)

    def _do_one_batch(self) -> None:
        self.pred = self.model(self.xb)
        self("after_pred")
        self.loss = self.loss_func(self.pred, self.yb)
        self.loss_grad = self.loss
        self("after_loss")
        if not self.training:
            return
        self._with_events(self._backward, "backward")
        self._with_events(self._step, "step")

    def _one_batch(self, i: int, batch: Any) -> None:
        self.iter = i
        self.xb, self.yb = batch
        self._with_events(self._do_one_batch, "batch")

    def _all_batches(self, dl: Iterable[Any]) -> None:
        self.n_iter = len(dl) if hasattr(dl, "__len__") else 0
        skip, self.skip_batches = (self.skip_batches, 0) if self.training else (0, self.skip_batches)
        meter = self.input_meter if self.training else None
        now = time.perf_counter
        it = iter(dl)
        i = 0
        while True:
            t0 = now()
            try:
                batch = next(it)
            except StopIteration:
                break
            t1 = now()
            self.data_time = t1 - t0
            # Resuming mid-epoch: the first `skip` batches are drawn (so later random streams line up), not trained.
            if i >= skip:
                self._one_batch(i, batch)
                if meter is not None:
                    meter.add(t1 - t0, now() - t1)
            i += 1

    def _do_train(self) -> None:
        self._all_batches(self.dls.train)

    def _do_validate(self) -> None:
        with torch.no_grad():
            self._all_batches(self.dls.valid)

    def _do_epoch(self) -> None:
        self._with_events(self._do_train, "train")
        self._with_events(self._do_validate, "validate")
        self._epoch_complete = True

    def _do_fit(self) -> None:
        for _ in range(self.n_epochs):
            self._epoch_complete = False
            try:
                self._with_events(self._do_epoch, "epoch")
            except BaseException:
                # A fit stopped in after_epoch still completed that epoch; one stopped mid-train did not.
                if self._epoch_complete:
                    self.epoch += 1
                raise
            self.epoch += 1

    def create_opt(self) -> torch.optim.Optimizer:
        """Build the optimizer from opt_func over the splitter's param groups (per-group lrs allowed)."""
        groups = self.splitter(self.model) if self.splitter else [list(self.model.parameters())]
        lrs = per_group(self.lr, len(groups))
        self.opt = self.opt_func([{"params": list(g)} for g in groups], lr=lrs[-1])
        for g, lr in zip(self.opt.param_groups, lrs, strict=True):
            g["lr"] = lr
        from labcon.nn.norms import NORM_TYPES  # torch's norm layers and labcon's own

        keep = {id(p) for m in self.model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}
        if hasattr(self.opt, "keep_trainable"):
            self.opt.keep_trainable = keep
        return self.opt

    def fit(
        self,
        n_epochs: int,
        cbs: Iterable[Callback] = (),
        reset_opt: bool = False,
        span: tuple[int, int] | None = None,
        lr: float | Sequence[float] | None = None,
        sched_edits: list[dict[str, Any]] | None = None,
    ) -> None:
        """Train for n_epochs more epochs (cbs are installed for this fit only).

        `span` = (start_iter, total_iters) continues the schedule of an interrupted fit (resume).
        `lr` (one, or one per param group) is set before the fit starts; `runner.schedules` run in a
        ParamScheduler unless one comes in `cbs`; `sched_edits` are its recorded live changes (kept in
        the caller's list, re-applied when an interrupted fit continues).
        """
        from labcon.core.callbacks.schedule import ParamScheduler

        check_hyper("epochs", n_epochs)
        if self.in_fit:
            raise RuntimeError("fit called while a fit is running")
        if self.opt is None or reset_opt:
            self.create_opt()
        if lr is not None:
            for i, x in enumerate(per_group(lr, len(self.opt.param_groups))):
                self.set_hyper("lr", check_hyper("lr", x), i)
        cbs = list(cbs)
        if not any(isinstance(c, ParamScheduler) for c in cbs):
            # Always one scheduler per fit (maybe empty), so a `sched` given mid-fit has one to change.
            # A probe (lr_find) drives the lr itself: the session's schedules sit it out.
            cbs.append(ParamScheduler({} if self.probing else dict(self.schedules), sched_edits))
        self.n_epochs = n_epochs
        n_train = len(self.dls.train) if hasattr(self.dls.train, "__len__") else 0
        self._fit_start_iter, self._fit_total_iters = span or (self.train_iter, max(1, n_epochs * n_train))
        self.pct_train = (self.train_iter - self._fit_start_iter) / self._fit_total_iters
        with self.added_cbs(cbs):
            self.in_fit = True
            try:
                self._fit_with_cleanup()
            finally:
                # Whatever happened, no fit-scoped hook survives the fit.
                self.in_fit = False
                self.hooks.remove_scope("fit")

    def _fit_with_cleanup(self) -> None:
        """before_fit / epochs / after_fit, where after_fit also runs when the fit crashes."""
        after_done = False
        self.stop_reason = None
        try:
            try:
                self("before_fit")
                self._do_fit()
            except CancelFitException as e:
                self.stop_reason = str(e) or "cancelled"
                self("after_cancel_fit")
            after_done = True
            self("after_fit")
        except BaseException as err:
            if not after_done:
                # Cleanup (hooks, autocast, progress) must run; keep the original error in front.
                try:
                    self("after_fit")
                except Exception as cleanup_err:  # noqa: BLE001 - reported on the original error
                    err.add_note(f"after_fit also failed during cleanup: {cleanup_err}")
            raise

    def fit_one_cycle(
        self,
        n_epochs: int,
        lr_max: float | Sequence[float] | None = None,
        pct_start: float = 0.25,
        span: tuple[int, int] | None = None,
        sched_edits: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        """Fit with the one-cycle lr and momentum policy (lr_max per group allowed)."""
        from labcon.core.callbacks.schedule import one_cycle

        sched = one_cycle(self, lr_max, pct_start=pct_start, edits=sched_edits, **kwargs)
        self.fit(n_epochs, cbs=[sched], span=span)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100) -> Any:
        """Run the LR range test; model and optimizer are restored afterwards. Returns an LRFindResult."""
        from labcon.core.callbacks.lr_finder import run_lr_find

        return run_lr_find(self, start_lr, end_lr, num_it)

    @contextlib.contextmanager
    def probe(self) -> Iterator[None]:
        """Mark a short diagnostic fit: callbacks with run_in_probe=False sit it out, epoch counters kept."""
        saved = (self.epoch, self.train_iter, self.probing)
        self.probing = True
        self._rebuild()
        try:
            yield
        finally:
            self.epoch, self.train_iter, self.probing = saved
            self._rebuild()

    # ----- hyper-parameters -------------------------------------------------------------------------
    def hyper(self, name: str) -> list[Any]:
        """A hyper-parameter's value in each param group."""
        if self.opt is None:
            self.create_opt()
        try:
            return [get_hyper(g, name) for g in self.opt.param_groups]
        except KeyError:
            known = sorted({k for g in self.opt.param_groups for k in g if k != "params"})
            raise KeyError(f"optimizer has no hyper-parameter '{name}'; it has: {', '.join(known)}") from None

    def set_hyper(self, name: str, value: Any, group: int | None = None) -> None:
        """Set a hyper-parameter in one param group (or all when group is None)."""
        if self.opt is None:
            self.create_opt()
        groups = self.opt.param_groups
        if group is not None and not -len(groups) <= group < len(groups):
            raise IndexError(f"param group {group} does not exist; there are {len(groups)}")
        self.hyper(name)  # raises a clear error for an unknown name
        check_hyper(name, value, allow_zero=True)  # as torch.optim would refuse it (negative lr, mom >= 1)
        for i, g in enumerate(groups):
            if group is None or i == group % len(groups):
                set_hyper(g, name, value)
