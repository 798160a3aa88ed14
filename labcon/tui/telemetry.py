"""Telemetry pane: per-layer mean / std / near-zero with sparklines, flags, and a layer's histogram heat map."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from labcon.core.telemetry_history import LayerStats
from labcon.tui.bridge import UpdateBatch
from labcon.tui.fmt import fmt_num, sparkline
from labcon.tui.heatmap import Heatmap
from labcon.tui.pane import Pane

_FLAG_STYLE = {"dead": "bold blue", "exploding": "bold red"}
# A layer with at least this share of its values outside the histogram's range gets a note under the title.
OUTSIDE_NOTE = 0.05
# A layer with at least this share of its values near zero is taken as clamped at zero (ReLU-like), not negative.
CLAMPED_AT_ZERO = 0.2
SPARK_WIDTH = 12  # reports per sparkline


class TelemetryPane(Pane):
    """Layer table (select a row to show its heat map) and the heat map."""

    def __init__(self, session: Any, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.selected_layer: str | None = None
        self.snapshot: Any = None
        self._layers: list[str] = []

    def compose(self) -> ComposeResult:
        yield Label("telemetry: waiting for the first report", id="telemetry-info")
        yield DataTable(id="layer-table", cursor_type="row", zebra_stripes=True)
        with Vertical(id="heatmap-box"):
            yield Label("", id="heatmap-title")
            yield Heatmap(id="heatmap")

    def on_mount(self) -> None:
        table = self.query_one("#layer-table", DataTable)
        for col in ("layer", "mean", "std", "near 0", "mean ~", "std ~", "near 0 ~", "flag"):
            table.add_column(col, key=col)
        self.mark_dirty()

    def apply(self, update: UpdateBatch) -> None:
        if update.telemetry_iter is not None:
            self.mark_dirty()

    def redraw(self) -> None:
        snap = self.safe(self.session.telemetry_snapshot)
        self.snapshot = snap
        info = self.query_one("#telemetry-info", Label)
        if snap is None:
            info.update("telemetry: no report yet (it is on by default; `telemetry on` enables it)")
            return
        layers = list(snap.layers)
        flags = dict(snap.flags)
        flagged = ", ".join(f"{k} {v}" for k, v in flags.items()) or "none"
        info.update(Text(f"telemetry at batch {snap.train_iter}: {len(layers)} layers, flagged: {flagged}"))
        table = self.query_one("#layer-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for name in layers:
            table.add_row(*self._cells(snap, name, flags.get(name)), key=name)
        self._layers = layers
        if layers:
            if self.selected_layer not in layers:
                self.selected_layer = next((n for n in layers if n in flags), layers[0])
            table.move_cursor(
                row=layers.index(self.selected_layer) if cursor is None else min(cursor, len(layers) - 1)
            )
        self._show_heatmap()

    def _cells(self, snap: Any, name: str, flag: str | None) -> list[Any]:
        st = snap.latest.get(name)
        hist = snap.history_tail(name, SPARK_WIDTH)
        style = _FLAG_STYLE.get(flag or "", "")
        cells: list[Any] = [Text(name, style=style)]
        for key in ("mean", "std", "near_zero"):
            v = getattr(st, key, float("nan")) if st is not None else float("nan")
            cells.append(fmt_num(100 * v, 1) + "%" if key == "near_zero" else fmt_num(v, 3))
        for key in ("mean", "std", "near_zero"):
            cells.append(Text(sparkline(list(hist.get(key, [])), SPARK_WIDTH), style=style or "cyan"))
        cells.append(Text(flag or "", style=style))
        return cells

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the highlighted layer's heat map."""
        if event.data_table.id != "layer-table" or event.row_key.value is None:
            return
        if event.row_key.value != self.selected_layer:
            self.selected_layer = str(event.row_key.value)
            self._show_heatmap()

    def _show_heatmap(self) -> None:
        snap = self.snapshot
        title = self.query_one("#heatmap-title", Label)
        if snap is None or self.selected_layer is None:
            return
        grid = self.safe(snap.heatmap, self.selected_layer, default=None)
        n = len(grid) if grid is not None else 0
        flag = snap.flags.get(self.selected_layer)
        rng = snap.hist_ranges.get(self.selected_layer)
        bins = f"bins {fmt_num(rng[0], 2)}..{fmt_num(rng[1], 2)}" if rng is not None else "no range yet"
        text = Text(
            f"histogram of {self.selected_layer}: {n} reports (time ->), {bins} (bottom..top), log counts"
        )
        if flag:
            text.append(f"  {flag}", style=_FLAG_STYLE.get(flag, ""))
        outside = outside_share(snap.latest.get(self.selected_layer), *rng) if rng is not None else 0.0
        if outside >= OUTSIDE_NOTE:
            # Each layer's range is fixed (by its kind, or from its first sampled values); activations that grew
            # past it are not counted: say how many, never drop them silently.
            text.append(
                f"\n~{100 * outside:.0f}% of this layer's values lie outside {fmt_num(rng[0], 2)}..{fmt_num(rng[1], 2)} "
                "(estimated from its mean/std) and are not drawn",
                style="bold yellow",
            )
        title.update(text)
        self.query_one("#heatmap", Heatmap).set_grid(grid, rng)


def outside_share(stats: LayerStats | None, lo: float, hi: float) -> float:
    """The share of a layer's values outside lo..hi, estimated from its mean and std as a normal distribution."""
    if stats is None:
        return 0.0
    mean, std, near_zero = stats.mean, stats.std, stats.near_zero
    if not (math.isfinite(mean) and math.isfinite(std)):
        return 0.0
    if std <= 0:
        return 0.0 if lo <= mean <= hi else 1.0

    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf((x - mean) / (std * math.sqrt(2.0))))

    below = cdf(lo)
    if lo <= 0.0 and math.isfinite(near_zero) and near_zero >= CLAMPED_AT_ZERO:
        below = (
            0.0  # values piled up at zero: a ReLU-like output, clamped into the range, not spread below it
        )
    return max(0.0, min(1.0, below + (1.0 - cdf(hi))))
