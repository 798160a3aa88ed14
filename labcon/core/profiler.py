"""Profiler: where a training step's time goes (data loading and its stages, forward, loss, backward,
optimizer step, each callback's events), with each part's share and the profiler's own measured cost."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labcon.core.events import STEP_EVENTS, Callback, CancelFitException, CancelValidateException
from labcon.core.timing import InputMeter, clock_for

if TYPE_CHECKING:
    from labcon.core.runner import Runner

# The batch-level events the profiler puts marks around (the others do not happen per step).
BATCH_EVENTS = STEP_EVENTS
# Loop phases: the work between the end of one event and the start of the next.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("forward", "before_batch", "after_pred"),
    ("loss", "after_pred", "after_loss"),
    ("backward", "before_backward", "after_backward"),
    ("optimizer step", "before_step", "after_step"),
)


class _Timed:
    """One callback's event method, timed; keeps `__self__` so errors and `show_loop` name the callback."""

    __slots__ = ("__self__", "_fn", "_prof", "_key")

    def __init__(self, fn: Callable[[], Any], prof: Profiler, event: str):
        self.__self__, self._fn, self._prof = fn.__self__, fn, prof  # type: ignore[attr-defined]
        self._key = f"{self.__self__.name}.{event}"

    def __call__(self) -> None:
        p = self._prof
        if not p._on:
            self._fn()
            return
        a = p.clock.mark()
        self._fn()
        p._cb_marks.append((self._key, a, p.clock.mark()))


class _Edge:
    """The start or the end of one event's callbacks (the loop's phases lie between these)."""

    __slots__ = ("__self__", "_event", "_end")

    def __init__(self, prof: Profiler, event: str, end: bool):
        self.__self__, self._event, self._end = prof, event, end

    def __call__(self) -> None:
        self.__self__._edge(self._event, self._end)


@dataclass(frozen=True)
class ProfileReport:
    """Seconds per training step by part (mean over the profiled steps), shares of the step, and the cost
    of profiling itself (per step, and as a share of the step)."""

    n_steps: int
    step_s: float
    rows: tuple[tuple[str, float], ...]  # (part, seconds per step), data first
    overhead_s: float
    clock: str
    input_share: float
    notes: tuple[str, ...] = field(default=())
    # Seconds per batch inside the loader's worker processes (read, decode, item tfms, collate): they run in
    # parallel with the step, so they are not among `rows`; `workers` is how many there are.
    worker_rows: tuple[tuple[str, float], ...] = field(default=())
    workers: int = 0

    @property
    def bound(self) -> str:
        """'input' when waiting for data takes a large share of the step, else 'compute'."""
        return "input" if self.input_share >= InputMeter.INPUT_BOUND else "compute"

    def share(self, seconds: float) -> float:
        """Part of the step time."""
        return seconds / self.step_s if self.step_s > 0 else math.nan

    def table(self) -> str:
        """A plain-text table, largest parts first within the loop, then the totals and overhead."""
        w = max(14, *(len(n) for n, _ in self.rows))
        lines = [f"{'part':<{w}} {'ms/step':>9} {'share':>7}"]
        for name, s in self.rows:
            lines.append(f"{name:<{w}} {1e3 * s:>9.3f} {100 * self.share(s):>6.1f}%")
        lines.append(f"{'step (total)':<{w}} {1e3 * self.step_s:>9.3f} {100.0:>6.1f}%")
        if self.worker_rows:
            lines.append(f"inside the {self.workers} loader workers, per batch (in parallel with the step):")
            for name, s in self.worker_rows:
                lines.append(f"{'  ' + name:<{w}} {1e3 * s:>9.3f} {100 * self.share(s):>6.1f}%")
        lines.append(
            f"profiler overhead {1e3 * self.overhead_s:.3f} ms/step ({100 * self.share(self.overhead_s):.1f}% of "
            f"the step, included above); clock: {self.clock}; {self.n_steps} steps; "
            f"{self.bound}-bound (data wait {100 * self.input_share:.0f}% of the step)"
        )
        lines += list(self.notes)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for the journal and the wire)."""
        return {
            "n_steps": self.n_steps,
            "step_ms": 1e3 * self.step_s,
            "parts": [{"part": n, "ms": 1e3 * s, "share": self.share(s)} for n, s in self.rows],
            "overhead_ms": 1e3 * self.overhead_s,
            "overhead_share": self.share(self.overhead_s),
            "clock": self.clock,
            "input_share": self.input_share,
            "bound": self.bound,
            "worker_parts": [{"part": n, "ms": 1e3 * s, "share": self.share(s)} for n, s in self.worker_rows],
            "workers": self.workers,
            "notes": list(self.notes),
        }


class Profiler(Callback):
    """Times `n_steps` training steps (None: every step of the fit) part by part; `report()` after the fit.
    With `n_steps` set it ends the fit when they are done and skips validation (a probe).
    On a CUDA device the marks are CUDA events (one synchronisation per profiled step)."""

    order = -100  # first in before_fit: it installs the timing before anything else runs

    def __init__(self, n_steps: int | None = None, skip: int = 1):
        if n_steps is not None and n_steps < 1:
            raise ValueError(f"profile needs at least 1 step, got {n_steps}")
        self.n_steps, self.skip = n_steps, skip  # the first `skip` steps warm up (lazy inits), untimed
        self._on = False
        self._totals: dict[str, float] = {}
        self._n = self._seen = 0
        self._cb_marks: list[tuple[str, Any, Any]] = []
        self._edges: dict[tuple[str, bool], Any] = {}

    # ----- wiring ------------------------------------------------------------------------------------
    def _wrap(self, event: str, methods: list[Callable[[], Any]]) -> list[Callable[[], Any]]:
        if event not in BATCH_EVENTS:
            return methods
        return [
            _Edge(self, event, False),
            *(_Timed(m, self, event) for m in methods),
            _Edge(self, event, True),
        ]

    def before_fit(self) -> None:
        r = self.runner
        self.clock = clock_for(r.device)
        self._totals, self._n, self._seen = {}, 0, 0
        dl = r.dls.train
        # A loader that can time its stages where they run (labcon's image loader, in its workers) does so only
        # while the profiler runs: it costs nothing per item otherwise.
        self._time_stages = getattr(dl, "time_stages", None)
        if self._time_stages is not None:
            self._time_stages(True)
        self._stages = getattr(dl, "stage_seconds", None)
        self._worker_stages = getattr(dl, "worker_seconds", None)
        self._n_workers = int(getattr(dl, "num_workers", 0) or 0)
        self._mark_stages()
        r.set_event_wrapper(self._wrap)
        self._per_mark = self._calibrate()

    def after_fit(self) -> None:
        self._on = False
        self.runner.set_event_wrapper(None)
        if self._time_stages is not None:
            self._time_stages(False)

    def before_validate(self) -> None:
        if self.n_steps is not None:
            raise CancelValidateException()

    def _calibrate(self, n: int = 2000) -> float:
        """Seconds one timed callback costs on top of the call itself (two marks and a record), measured."""
        saved = self._cb_marks

        def nop() -> None:
            pass

        plain, timed = (lambda: None), _Timed(_Bound(self, nop), self, "nop")
        self._on = True
        best = math.inf
        for _ in range(3):
            self._cb_marks = []
            t0 = time.perf_counter()
            for _ in range(n):
                plain()
            t1 = time.perf_counter()
            for _ in range(n):
                timed()
            t2 = time.perf_counter()
            best = min(best, ((t2 - t1) - (t1 - t0)) / n)
        self._cb_marks, self._on = saved, False
        return max(best, 0.0)

    # ----- per step ----------------------------------------------------------------------------------
    def _edge(self, event: str, end: bool) -> None:
        r = self.runner
        if event == "before_batch" and not end:
            self._on = r.training and self._seen >= self.skip
            self._cb_marks = []
        if not self._on:
            if event == "after_batch" and end and r.training:
                self._seen += 1
                self._mark_stages()
            return
        self._edges[(event, end)] = self.clock.mark()
        if event == "after_batch" and end:
            self._close_step()

    def _mark_stages(self) -> None:
        # The loader's stage times for the next batch accrue from here (it is fetched before before_batch).
        if self._stages is not None:
            self._stage_start = dict(self._stages)
        if self._worker_stages is not None:
            self._worker_start = dict(self._worker_stages)

    def _close_step(self) -> None:
        r, c, e = self.runner, self.clock, self._edges
        c.resolve()
        t = self._totals
        parts: dict[str, float] = {}
        if self._stages is not None:
            for k, v in self._stages.items():
                parts[f"data: {k}"] = v - self._stage_start.get(k, 0.0)
        else:
            parts["data loading"] = r.data_time
        if self._worker_stages is not None:
            for k, v in self._worker_stages.items():
                t[f"__w{k}"] = t.get(f"__w{k}", 0.0) + v - self._worker_start.get(k, 0.0)
        data = r.data_time
        for name, a, b in PHASES:
            if (a, True) in e and (b, False) in e:
                parts[name] = c.seconds(e[(a, True)], e[(b, False)])
        for key, a, b in self._cb_marks:
            parts[f"cb {key}"] = parts.get(f"cb {key}", 0.0) + c.seconds(a, b)
        batch = c.seconds(e[("before_batch", False)], e[("after_batch", True)])
        loop_parts = sum(v for k, v in parts.items() if not k.startswith("data"))
        parts["loop (dispatch, rest)"] = max(0.0, batch - loop_parts)
        for k, v in parts.items():
            t[k] = t.get(k, 0.0) + v
        t["__step"] = t.get("__step", 0.0) + data + batch
        t["__data"] = t.get("__data", 0.0) + data
        t["__marks"] = t.get("__marks", 0.0) + len(self._cb_marks) + 2 * len(BATCH_EVENTS)
        self._mark_stages()
        self._edges = {}
        self._n += 1
        self._seen += 1
        self._on = False
        if self.n_steps is not None and self._n >= self.n_steps:
            raise CancelFitException("profile done")

    # ----- result ------------------------------------------------------------------------------------
    def report(self) -> ProfileReport:
        """Mean seconds per profiled step by part (raises when no step was profiled)."""
        if not self._n:
            raise ValueError("no training step was profiled (too few batches? the first one is a warm-up)")
        t, n = self._totals, self._n
        step = t["__step"] / n
        data = [(k, v / n) for k, v in t.items() if k.startswith("data")]
        loop = sorted(
            ((k, v / n) for k, v in t.items() if not k.startswith(("data", "__"))), key=lambda kv: -kv[1]
        )
        # Each timed callback and each event edge pays about one calibrated wrapper cost.
        overhead = self._per_mark * t["__marks"] / n
        notes = []
        if self._stages is None:
            notes.append("(the loader exposes no per-stage times: data loading is one figure)")
        work = sum(v for k, v in t.items() if k.startswith("__w")) / n
        if self._worker_stages is not None and self._n_workers:
            notes.append(
                f"the workers do {1e3 * work:.3f} ms of work per batch: {self._n_workers} in parallel make one "
                f"batch per ~{1e3 * work / self._n_workers:.3f} ms against a step of {1e3 * step:.3f} ms"
            )
        return ProfileReport(
            n_steps=n,
            step_s=step,
            rows=tuple(data + loop),
            overhead_s=overhead,
            clock=self.clock.name,
            input_share=(t["__data"] / n) / step if step > 0 else 0.0,
            notes=tuple(notes),
            worker_rows=tuple((k[3:], v / n) for k, v in t.items() if k.startswith("__w")),
            workers=self._n_workers if self._worker_stages is not None else 0,
        )


class _Bound:
    """A no-op that looks like a bound callback method (for calibration)."""

    def __init__(self, owner: Callback, fn: Callable[[], None]):
        self.__self__, self._fn = owner, fn

    def __call__(self) -> None:
        self._fn()


def run_profile(runner: Runner, n_steps: int, sit_out: Iterable[Callback | str] = ()) -> ProfileReport:
    """Profile `n_steps` training steps (after one warm-up step) and put the model, optimizer, counters and
    callback states back as they were; `sit_out`: callbacks left out meanwhile (e.g. front-end ones)."""
    if n_steps < 1:
        raise ValueError(f"profile needs at least 1 step, got {n_steps}")
    if runner.opt is None:
        runner.create_opt()
    model_state = copy.deepcopy(runner.model.state_dict())
    opt_state = copy.deepcopy(runner.opt.state_dict())
    cb_states = {id(c): copy.deepcopy(c.state_dict()) for c in runner.cbs}
    saved = (runner.epoch, runner.train_iter)
    prof = Profiler(n_steps)
    n_train = len(runner.dls.train) if hasattr(runner.dls.train, "__len__") else n_steps + 1
    epochs = max(1, math.ceil((n_steps + prof.skip) / max(1, n_train)))
    try:
        with runner.removed_cbs(list(sit_out)):
            runner.fit(epochs, cbs=[prof])
    finally:
        runner.epoch, runner.train_iter = saved
        runner.model.load_state_dict(model_state)
        runner.opt.load_state_dict(opt_state)
        for c in runner.cbs:
            if id(c) in cb_states and cb_states[id(c)]:
                c.load_state_dict(cb_states[id(c)])
    return prof.report()
