"""The "colorful dimension": a layer's activation histogram over time, drawn with half blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from labcon.fmt import fmt_value

# A viridis-like ramp: dark (few values) -> yellow (many).
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def ramp(v: float) -> tuple[int, int, int]:
    """Colour of a value in 0..1 on the ramp."""
    v = min(1.0, max(0.0, v)) * (len(_RAMP) - 1)
    i = min(int(v), len(_RAMP) - 2)
    f = v - i
    a, b = _RAMP[i], _RAMP[i + 1]
    return (round(a[0] + (b[0] - a[0]) * f), round(a[1] + (b[1] - a[1]) * f), round(a[2] + (b[2] - a[2]) * f))


def resample(grid: Sequence[Sequence[float]], n_time: int, n_bins: int) -> list[list[float]]:
    """log1p counts of `grid` (rows = time, cols = bins) on an n_bins x n_time raster (row 0 = highest bin)."""
    t_len, b_len = len(grid), len(grid[0]) if grid else 0
    if not t_len or not b_len or n_time <= 0 or n_bins <= 0:
        return []
    out = []
    for r in range(n_bins):
        b = b_len - 1 - min(b_len - 1, r * b_len // n_bins)
        row = []
        for c in range(n_time):
            t = min(t_len - 1, c * t_len // n_time)
            v = float(grid[t][b])
            row.append(math.log1p(v) if math.isfinite(v) and v > 0 else 0.0)
        out.append(row)
    return out


# Colour levels: 64 steps of the ramp are indistinguishable from exact colours in a terminal, and let the
# styles be cached and equal neighbours merged into one segment (per-cell styles made a 120x15 map ~100 ms).
LEVELS = 64
NO_DATA = "no histogram yet"


@lru_cache(maxsize=LEVELS * LEVELS)
def _cell_style(up: int, lo: int) -> Style:
    top = LEVELS - 1
    return Style(color=Color.from_rgb(*ramp(up / top)), bgcolor=Color.from_rgb(*ramp(lo / top)))


def heatmap_rows(grid: Sequence[Sequence[float]], width: int, height: int) -> list[list[Segment]]:
    """One list of segments per terminal row: half blocks, 2 bins per row, log counts scaled to the brightest."""
    cells = resample(grid, width, height * 2)
    if not cells:
        return []
    top = max((max(r) for r in cells), default=0.0) or 1.0
    scale = (LEVELS - 1) / top
    rows = []
    for r in range(0, len(cells) - 1, 2):
        up_row, lo_row = cells[r], cells[r + 1]
        segs: list[Segment] = []
        run, prev = 0, None
        for c in range(width):
            key = (round(up_row[c] * scale), round(lo_row[c] * scale))
            if key != prev and run:
                segs.append(Segment("▀" * run, _cell_style(*prev)))  # type: ignore[misc]
                run = 0
            prev = key
            run += 1
        if run:
            segs.append(Segment("▀" * run, _cell_style(*prev)))  # type: ignore[misc]
        rows.append(segs)
    return rows


def render_heatmap(grid: Sequence[Sequence[float]], width: int, height: int) -> Text:
    """The heat map as Text (half blocks, 2 bins per row), or a note when there is no data."""
    rows = heatmap_rows(grid, width, height)
    if not rows:
        return Text(NO_DATA, style="dim")
    text = Text()
    for i, segs in enumerate(rows):
        for seg in segs:
            text.append(seg.text, seg.style)
        if i + 1 < len(rows):
            text.append("\n")
    return text


def axis_labels(lo: float, hi: float, height: int) -> list[str]:
    """The value axis beside a map of `height` rows: `hi` on the top row, `lo` on the bottom one and 0 on its
    row when the range spans zero (row y shows bins from hi - y/height of the range down); blank elsewhere."""
    labels = [""] * max(0, height)
    if height <= 0 or not lo < hi:
        return labels
    labels[0] = fmt_value(hi)
    if height > 1:
        labels[-1] = fmt_value(lo)
    if lo < 0 < hi and height > 2:
        y = min(height - 1, int((hi - 0.0) / (hi - lo) * height))
        if not labels[y]:
            labels[y] = "0"
    return labels


class Heatmap(Widget):
    """Shows `grid` (rows = time, cols = histogram bins) scaled to the widget's size, with the bins' value axis
    (`axis` = (low, high)) down its left side."""

    DEFAULT_CSS = """
    Heatmap { height: 1fr; width: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.grid: list[list[float]] = []
        self.axis: tuple[float, float] | None = None
        self._strips: tuple[tuple[int, int], list[Strip]] | None = None

    def set_grid(
        self, grid: Sequence[Sequence[float]] | None, axis: tuple[float, float] | None = None
    ) -> None:
        """Replace the data (any 2-d sequence, numpy arrays included) and the bins' range (low, high)."""
        self.grid = [list(map(float, row)) for row in grid] if grid is not None else []
        self.axis = axis
        self._strips = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """One row of the map (rows are built once per grid and size)."""
        size = (self.size.width, self.size.height)
        if self._strips is None or self._strips[0] != size:
            self._strips = (size, self._build(*size))
        strips = self._strips[1]
        return strips[y] if y < len(strips) else Strip.blank(size[0])

    def _build(self, width: int, height: int) -> list[Strip]:
        labels = axis_labels(*self.axis, height) if self.axis is not None and self.grid else []
        gutter = min(max((len(t) for t in labels), default=0), 10)
        gutter = gutter + 1 if gutter and gutter + 8 <= width else 0  # a narrow pane keeps the map
        rows = heatmap_rows(self.grid, width - gutter, height)
        if not rows and self.grid == []:
            return [Strip([Segment(NO_DATA[:width], Style(dim=True))]).adjust_cell_length(width)]
        style = Style(dim=True)
        strips = []
        for y, r in enumerate(rows):
            head = [Segment(labels[y][: gutter - 1].rjust(gutter - 1) + "┤", style)] if gutter else []
            strips.append(Strip(head + r).adjust_cell_length(width))
        return strips
