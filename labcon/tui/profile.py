"""The last `profile N` in the console: a table of the step's parts (ms/step, share) with a bar per part.

It reads the plain figures a session sends (`Profiled` messages, `session.profile_report()` when the console
attaches), never a live profiler.
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

# Bars are drawn in eighths of a cell, so small differences still show.
_EIGHTHS = " ▏▎▍▌▋▊▉"
_MS_W, _SHARE_W = 9, 7  # the ms/step and share columns
_MIN_BAR = 6  # the name column gives way to keep at least this much bar


def bar(fraction: float, width: int) -> str:
    """A horizontal bar `fraction` (0..1) of `width` cells long."""
    if not math.isfinite(fraction) or width <= 0:
        return ""
    # A part that took any time gets at least a sliver, so no row looks like nothing.
    eighths = max(round(max(0.0, min(1.0, fraction)) * width * 8), 1 if fraction > 0 else 0)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _style(part: str) -> str:
    """Colour by kind of part: data loading, callbacks, the loop's own work."""
    if part.startswith("data"):
        return "cyan"
    if part.startswith("cb "):
        return "magenta"
    return "dim" if part.startswith("loop") else "green"


def profile_text(report: dict[str, Any] | None, width: int) -> Text:
    """The report as lines of `width` cells: a summary, then one row per part, largest share first (the parts
    add up to the step), the loader workers' stages (in parallel with the step), and the profiler's notes."""
    if not report:
        return Text("no profile yet: `profile 20` times 20 training steps part by part", style="dim")
    parts = sorted(report.get("parts", []), key=lambda p: -float(p["share"]))
    workers = list(report.get("worker_parts", []))
    names = [str(p["part"]) for p in parts + workers]
    name_w = max(
        8, min(max(len(n) for n in names) + 2 if names else 8, width - _MS_W - _SHARE_W - _MIN_BAR - 2)
    )
    bar_w = max(0, width - name_w - _MS_W - _SHARE_W - 2)
    out = Text(no_wrap=True, overflow="ellipsis")
    bound = report.get("bound", "?")
    out.append(f"profile of {report.get('n_steps', '?')} steps: {float(report['step_ms']):.3f} ms/step, ")
    out.append(
        f"{bound}-bound (data wait {100 * float(report.get('input_share', 0.0)):.0f}%)\n",
        style="bold yellow" if bound == "input" else "bold",
    )
    out.append(
        f"profiler overhead {float(report.get('overhead_ms', 0.0)):.3f} ms/step "
        f"({100 * float(report.get('overhead_share', 0.0)):.1f}%, included); clock {report.get('clock', '?')}\n",
        style="dim",
    )
    head = f"{'part':<{name_w}}{'ms/step':>{_MS_W}}{'share':>{_SHARE_W}}  "
    out.append(head + "share of the step"[:bar_w] + "\n", style="bold")
    _rows(out, parts, name_w, bar_w)
    out.append(f"{'step (total)':<{name_w}}{float(report['step_ms']):>{_MS_W}.3f}{'100.0%':>{_SHARE_W}}\n")
    if workers:
        out.append(
            f"inside the {report.get('workers', '?')} loader workers, per batch (in parallel with the step):\n",
            style="bold",
        )
        _rows(out, workers, name_w, bar_w, style="blue", indent="  ")
    for note in report.get("notes", []):
        out.append(f"{note}\n", style="dim")
    out.rstrip()
    return out


def _rows(
    out: Text, parts: list[dict[str, Any]], name_w: int, bar_w: int, style: str = "", indent: str = ""
) -> None:
    """One line per part; the bars are scaled to the largest share in this group, so they compare within it."""
    top = max((float(p["share"]) for p in parts), default=0.0)
    for p in parts:
        name, share = indent + str(p["part"]), float(p["share"])
        if len(name) > name_w - 1:
            name = name[: name_w - 2] + "…"
        out.append(f"{name:<{name_w}}{float(p['ms']):>{_MS_W}.3f}{100 * share:>{_SHARE_W - 1}.1f}%  ")
        out.append(bar(share / top if top > 0 else 0.0, bar_w), style=style or _style(str(p["part"])))
        out.append("\n")


class ProfileView(Static):
    """The last profile's table and bars, redrawn to the width it has."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.report: dict[str, Any] | None = None

    def show(self, report: dict[str, Any] | None) -> None:
        """Show `report` (a ProfileReport.as_dict(), as the session sends it)."""
        self.report = report
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        self.update(profile_text(self.report, self.content_size.width or 80))


class ProfileBox(VerticalScroll):
    """Holds the ProfileView; hidden until there is a profile, scrolls when the pane is short."""

    def compose(self) -> Any:
        yield ProfileView(id="profile-view")

    def show(self, report: dict[str, Any] | None) -> None:
        """Show `report`, or hide the box when there is none."""
        self.display = bool(report)
        self.query_one(ProfileView).show(report)
