"""Two read-only views the console draws from: the model's per-module summary and the running fit's schedule plan.

Both are plain data (they cross the control socket as they are) and are computed once per change, never per
frame: the summary once per model change (a signature of the module tree and trainable counts), the plan when
a front end asks (after a fit starts or a `set`/`sched` changed it).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from torch import nn

from labcon.core.callbacks.schedule import active_scheduler
from labcon.core.distributed import unwrap_model
from labcon.core.summary import module_stats
from labcon.errors import LabconError

if TYPE_CHECKING:
    from labcon.core.runner import Runner
    from labcon.session.fitplan import FitPlan
    from labcon.session.runstate import RunState

# A live fit computes the summary at its next training batch; a front end waits at most this long for it.
SUMMARY_WAIT_S = 20.0  # under the remote client's 30 s reply timeout
# Points of a planned schedule: about one per plot column at 160 columns, so a plot never needs more.
PLAN_POINTS = 161


def _signature(model: nn.Module) -> tuple[Any, ...]:
    """What the summary depends on: the module tree (paths and types) and the parameter counts."""
    params = list(model.parameters())
    return (
        tuple((n, type(m).__name__) for n, m in model.named_modules()),
        sum(p.numel() for p in params),
        sum(p.numel() for p in params if p.requires_grad),
    )


class SummaryView:
    """The model summary as plain rows, cached per model signature; computed where the model may be run: at once
    when the session is idle, else on the training thread at its next batch (or while it waits paused)."""

    def __init__(self, runner: Runner, run_state: RunState):
        self.runner, self.run_state = runner, run_state
        self._cache: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def get(self, timeout: float = SUMMARY_WAIT_S) -> dict[str, Any]:
        """{"batch": items run, "rows": [{path, kind, shape (per item), params, trainable, macs (per item)}]}."""
        box: list[Any] = []
        done = threading.Event()

        def job() -> None:
            try:
                box.append(self._compute())
            except (LabconError, RuntimeError, ValueError, TypeError, IndexError, StopIteration) as e:
                box.append(e)
            finally:
                done.set()

        self.run_state.call_at_batch(job)
        end = time.monotonic() + timeout
        while not done.is_set():
            self.run_state.run_calls_if_idle()  # idle (or the fit ended before its next batch): run it here
            if done.wait(0.2):
                break
            if time.monotonic() > end:
                self.run_state.drop_call(job)
                raise LabconError(
                    f"the model summary waits for the next training batch and none came in {timeout:.0f} s "
                    "(lr_find or profile running?); try again when it ends"
                )
        result = box[0]
        if isinstance(result, Exception):
            raise LabconError(f"model summary failed: {result}") from None
        return result

    def _compute(self) -> dict[str, Any]:
        from labcon.commands.cmd_transfer import summary_batch

        model = unwrap_model(self.runner.model)  # under DDP: the module, run on this rank alone
        sig = _signature(model)
        if self._cache is not None and self._cache[0] == sig:
            return self._cache[1]
        xb = summary_batch(self.runner)
        n = max(1, len(xb))
        rows = [
            {
                "path": s.path,
                "kind": s.kind,
                "shape": list(s.out_shape[1:]),
                "params": s.params,
                "trainable": s.trainable,
                "macs": s.macs // n,
            }
            for s in module_stats(model, xb)
        ]
        data = {"batch": n, "rows": rows}
        self._cache = (sig, data)
        return data


def schedule_plan(runner: Runner, plan: FitPlan | None, points: int = PLAN_POINTS) -> dict[str, Any] | None:
    """The running fit's schedules sampled over the whole fit (the last param group, as the lr/mom history), the
    same scheduler `show sched` describes: {"start_iter", "total", "pos", "series": {name: [value per point]}};
    x of point i is start_iter + total * i / (points - 1). None when no scheduled fit is running."""
    sched = active_scheduler(runner) if runner.in_fit else None
    if sched is None or plan is None:
        return None
    series: dict[str, list[float]] = {}
    for name, s in dict(sched.scheds).items():  # a copy: the training thread may replace an entry meanwhile
        f = s[-1] if isinstance(s, (list, tuple)) else s
        series[name] = [float(f(i / (points - 1))) for i in range(points)]
    return {
        "start_iter": plan.start_iter,
        "total": plan.total,
        "pos": float(runner.pct_train),
        "series": series,
    }
