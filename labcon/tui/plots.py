"""Drawing a plotext plot the console's way: titled axes, integer ticks for counts, change markers, few points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textual_plotext import PlotextPlot

from labcon.session.messages import LrFound
from labcon.tui.fmt import downsample, finite_pairs

# A series: (legend label, ys, colour).
Series = tuple[str, Sequence[float], str]
# A guide: (legend label, xs, ys, colour) with its own xs, drawn under the series (e.g. a fit's planned schedule).
Guide = tuple[str, Sequence[float], Sequence[float], Any]
MARKER_COLOUR = "red"


@dataclass(frozen=True)
class Marker:
    """An applied change drawn as a numbered vertical line at `x` (its text is listed in the pane's legend)."""

    number: int
    x: float
    text: str


def int_ticks(lo: float, hi: float, n: int = 5) -> list[int]:
    """About `n` round integer ticks covering lo..hi (batches and epochs are counts: no '12.5' ticks)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    a, b = math.ceil(lo), math.floor(hi)
    if b < a:
        return [a] if abs(hi - lo) < 1 else []
    span = b - a
    raw = max(1.0, span / max(1, n - 1))
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(1, int(step))
    first = a + (-a) % step
    return list(range(first, b + 1, step)) or [a]


def draw(
    plot: PlotextPlot,
    title: str,
    series: Sequence[Series],
    xs: Sequence[float],
    *,
    xlabel: str,
    ylabel: str = "",
    markers: Sequence[Marker] = (),
    int_x: bool = True,
    log_x: bool = False,
    points: Sequence[tuple[float, float, str]] = (),
    guides: Sequence[Guide] = (),
) -> None:
    """Redraw `plot`: each series against the tail of `xs`, `guides` beneath them against their own xs, markers as
    numbered lines, `points` as labelled dots."""
    plt = plot.plt
    plt.clear_data()
    plt.clear_figure()
    plt.title(title)
    plt.xlabel(xlabel)
    if ylabel:
        plt.ylabel(ylabel)
    if log_x:
        plt.xscale("log")
    # plotext's cost grows with the points it draws: about one point per column is all a braille line shows
    # (400 points cost 18 ms per plot, 60 cost 6 ms).
    n = max(32, plot.size.width)
    lo, hi, ymax = math.inf, -math.inf, -math.inf
    legend = len(series) + len(guides) > 1
    lines = [(label, gx, gy, colour) for label, gx, gy, colour in guides]
    lines += [(label, list(xs[-len(ys) :]) if ys else [], ys, colour) for label, ys, colour in series]
    for label, lx, ly, colour in lines:
        px, py = finite_pairs(*downsample(list(lx), list(ly), n))
        if py:
            plt.plot(px, py, label=label if legend else None, color=colour, marker="braille")
            lo, hi, ymax = min(lo, px[0]), max(hi, px[-1]), max(ymax, max(py))
    for x, y, label in points:
        if math.isfinite(x) and math.isfinite(y):
            plt.scatter([x], [y], color=MARKER_COLOUR, marker="x")
            plt.text(label, x, y, color=MARKER_COLOUR)
    if math.isfinite(lo):
        for m in markers:
            if lo <= m.x <= hi:
                plt.vline(m.x, MARKER_COLOUR)
                plt.text(str(m.number), m.x, ymax, color=MARKER_COLOUR)
        if int_x and not log_x:
            ticks = int_ticks(lo, hi)
            if ticks:
                plt.xticks(ticks, [str(t) for t in ticks])
    plot.refresh()


def draw_lr_find(plot: PlotextPlot, lf: LrFound) -> None:
    """lr_find's curve (loss against log lr) with its valley and steepest points."""
    points = [
        (lf.valley, _loss_at(lf, lf.valley), "valley"),
        (lf.steepest, _loss_at(lf, lf.steepest), "steep"),
    ]
    draw(
        plot,
        f"lr_find: suggests {lf.suggestion:.1e} (L uses it)",
        [("loss", lf.losses, "cyan")],
        list(lf.lrs),
        xlabel="lr (log)",
        ylabel="loss",
        log_x=True,
        int_x=False,
        points=points,
    )


def _loss_at(lf: LrFound, lr: float) -> float:
    """The smoothed loss lr_find saw at the tried lr nearest to `lr`."""
    if not lf.lrs or not math.isfinite(lr):
        return math.nan
    i = min(
        range(len(lf.lrs)),
        key=lambda j: abs(math.log(lf.lrs[j]) - math.log(lr)) if lf.lrs[j] > 0 else math.inf,
    )
    return float(lf.losses[i]) if i < len(lf.losses) else math.nan


__all__ = ["MARKER_COLOUR", "Guide", "Marker", "Series", "draw", "draw_lr_find", "int_ticks"]
