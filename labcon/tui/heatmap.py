"""The "colorful dimension": a layer's activation histogram over time, drawn with half blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

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


def render_heatmap(grid: Sequence[Sequence[float]], width: int, height: int) -> Text:
    """Half-block text, 2 bins per row, log-scaled and normalised to the brightest cell."""
    cells = resample(grid, width, height * 2)
    if not cells:
        return Text("no histogram yet", style="dim")
    top = max((max(r) for r in cells), default=0.0) or 1.0
    text = Text()
    for r in range(0, len(cells) - 1, 2):
        for c in range(width):
            up, lo = ramp(cells[r][c] / top), ramp(cells[r + 1][c] / top)
            text.append("▀", Style(color=Color.from_rgb(*up), bgcolor=Color.from_rgb(*lo)))
        if r + 2 < len(cells):
            text.append("\n")
    return text


class Heatmap(Widget):
    """Shows `grid` (rows = time, cols = histogram bins) scaled to the widget's size."""

    DEFAULT_CSS = """
    Heatmap { height: 1fr; width: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.grid: list[list[float]] = []

    def set_grid(self, grid: Sequence[Sequence[float]] | None) -> None:
        """Replace the data (any 2-d sequence, numpy arrays included)."""
        self.grid = [list(map(float, row)) for row in grid] if grid is not None else []
        self.refresh()

    def render(self) -> RenderResult:
        return render_heatmap(self.grid, self.size.width, self.size.height)
