"""The running fit's planned schedules, drawn as dim guide lines in the Training pane's lr and mom plots.

The plan comes from the session (`schedule_plan()`, the scheduler `show sched` describes) once per change: when a
fit starts (asked again at its first batches, since the scheduler exists only once the fit runs), after an applied
change (`set lr=` rescales it, `sched` replaces it) and at attach. Its x values are worked out once per plan, so a
plot redraw only hands them to plotext.
"""

from __future__ import annotations

from typing import Any

# Dim enough to read as "what is coming" beside the bright values seen so far.
PLAN_COLOUR = (95, 95, 135)
# A live fit whose scheduler is not up yet is asked again at its next updates, this many times at most.
MAX_TRIES = 10


class PlanGuide:
    """The last plan the session gave, as (xs, ys) per hyper-parameter, and whether a new one is due."""

    def __init__(self) -> None:
        self.lines: dict[str, tuple[list[float], list[float]]] = {}
        self.due = True  # ask the session at the next chance (attach)
        self.fetching = False
        self.tries = 0
        self.version = 0  # bumps when the drawn plan changes (tests and redraw checks read it)

    def want(self) -> None:
        """A fit started or a change was applied: ask again."""
        self.due, self.tries = True, 0

    def take(self, plan: dict[str, Any] | None, live: bool) -> bool:
        """Keep a plan the session returned; True when what is drawn changes. A live fit without a plan yet (its
        scheduler starts with the fit) stays due; an idle session keeps the finished fit's plan on show."""
        self.fetching = False
        self.tries += 1
        if plan is None:
            self.due = live and self.tries < MAX_TRIES
            return False
        self.due = False
        start, total = float(plan["start_iter"]), float(plan["total"])
        lines = {}
        for name, ys in plan.get("series", {}).items():
            n = max(2, len(ys))
            lines[name] = ([start + total * i / (n - 1) for i in range(len(ys))], [float(y) for y in ys])
        if lines == self.lines:
            return False
        self.lines = lines
        self.version += 1
        return True

    def guide(self, name: str) -> list[tuple[str, list[float], list[float], Any]]:
        """The guide line of `name` for plots.draw (none when the plan does not schedule it)."""
        line = self.lines.get(name)
        return [("plan", line[0], line[1], PLAN_COLOUR)] if line else []
