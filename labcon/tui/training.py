"""Training pane: epoch table, progress with ETA for epoch and fit, live plots of loss, lr, mom, metrics."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from labcon.session.messages import EpochEnded, FitStarted, Progress
from labcon.tui.bridge import BATCH_HISTORY_CAP, UpdateBatch
from labcon.tui.fmt import downsample, finite_pairs, fmt_duration, fmt_num, progress_line
from labcon.tui.pane import Pane

_SERIES = ("losses", "smooth_losses", "lrs", "moms")
_NOT_METRICS = ("epoch", "train_loss", "valid_loss", "time")
# Plots are the costliest thing on screen (plotext is pure Python); a redraw every 2 s looks live and leaves the
# interpreter to the training thread (they share one GIL).
PLOT_INTERVAL_S = 2.0


class TrainingPane(Pane):
    """Epoch table + progress + four live plots."""

    def __init__(self, session: Any, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.rows: list[dict[str, Any]] = []
        self.batches: dict[str, list[float]] = {k: [] for k in _SERIES}
        self.start_iter = 0
        self.progress: Progress | None = None
        self.fit_total: tuple[int, int] | None = None  # (epoch_start, n_epochs)
        self._columns: list[str] = []
        self._stale = False
        self._metric_rows_drawn = -1
        self._rows_in_table = 0  # rows of self.rows already in the epoch table
        self._bars: dict[str, Static] = {}
        self._last_plot = 0.0

    def compose(self) -> ComposeResult:
        with Vertical(id="progress-box"):
            yield Static("", id="epoch-progress", classes="progress-row")
            yield Static("", id="fit-progress", classes="progress-row")
        with Vertical(id="training-body"):
            yield DataTable(id="epoch-table", cursor_type="row", zebra_stripes=True)
            with Grid(id="plots"):
                yield PlotextPlot(id="plot-loss")
                yield PlotextPlot(id="plot-lr")
                yield PlotextPlot(id="plot-mom")
                yield PlotextPlot(id="plot-metrics")

    def on_mount(self) -> None:
        self.rows = list(self.safe(self.session.history, default=[]) or [])
        bh = self.safe(self.session.batch_history, default={}) or {}
        self.batches = {k: list(bh.get(k, []))[-BATCH_HISTORY_CAP:] for k in _SERIES}
        st = self.safe(self.session.status, default={}) or {}
        self.start_iter = max(0, int(st.get("train_iter", 0) or 0) - len(self.batches["losses"]))
        if st.get("n_epochs"):
            self.fit_total = (0, int(st["n_epochs"]))
        self._fill_table()
        self._show_progress_from_status(st)
        self.mark_dirty()
        self._stale = False
        self.set_interval(PLOT_INTERVAL_S / 2, self._redraw_if_stale)

    def _redraw_if_stale(self) -> None:
        # The console's throttle stretches the plot interval too when rendering is expensive on this machine.
        every = PLOT_INTERVAL_S * self.app.throttle.slowdown  # type: ignore[attr-defined]
        now = time.monotonic()
        if self._stale and now - self._last_plot >= every - 1e-3:
            self._stale = False
            self._last_plot = now
            self.mark_dirty()

    # -- updates ----------------------------------------------------------------------------------
    def apply(self, update: UpdateBatch) -> None:
        for ev in update.events:
            if isinstance(ev, EpochEnded):
                self.rows.append({"epoch": ev.epoch, **ev.row})
                self._stale = True
            elif isinstance(ev, FitStarted):
                self.fit_total = (ev.epoch_start, ev.n_epochs)
        if self.shown:
            self._sync_table()  # hidden: on_show adds the new rows at once (each add re-laid out the table)
        if update.batch_stats is not None:
            bs = update.batch_stats
            if not self.batches["losses"]:
                self.start_iter = bs.start_iter
            for key in _SERIES:
                self.batches[key].extend(getattr(bs, key))
            extra = len(self.batches["losses"]) - BATCH_HISTORY_CAP
            if extra > 0:
                self.start_iter += extra
                for key in _SERIES:
                    del self.batches[key][:extra]
            self._stale = True
        if update.progress is not None:
            self.progress = update.progress
            self._show_progress(update.progress)

    def _bar(self, wid: str, label: str, frac: float, info: str) -> None:
        # layout=False: a fixed one-line widget; a layout pass 5 times a second would steal the trainer's CPU.
        if wid not in self._bars:
            self._bars[wid] = self.query_one(wid, Static)
        bar = self._bars[wid]
        bar.update(progress_line(label, frac, info, bar.size.width or 80), layout=False)

    def _show_progress(self, p: Progress) -> None:
        self._bar(
            "#epoch-progress",
            "epoch",
            p.iter / p.n_iter if p.n_iter else 0.0,
            f"{p.epoch} {p.phase} {p.iter}/{p.n_iter}  ETA {fmt_duration(p.eta_epoch)}",
        )
        total = p.elapsed + p.eta_fit
        n = f"/{self.fit_total[0] + self.fit_total[1]}" if self.fit_total else ""
        self._bar(
            "#fit-progress",
            "fit",
            p.elapsed / total if total > 0 else 0.0,
            f"epoch {p.epoch + 1}{n}  {fmt_duration(p.elapsed)} < ETA {fmt_duration(p.eta_fit)}",
        )

    def _show_progress_from_status(self, st: dict[str, Any]) -> None:
        n_iter, it = int(st.get("n_iter", 0) or 0), int(st.get("iter", 0) or 0)
        epoch, n_epochs = int(st.get("epoch", 0) or 0), int(st.get("n_epochs", 0) or 0)
        self._bar(
            "#epoch-progress", "epoch", it / n_iter if n_iter else 0.0, f"{epoch} {it}/{n_iter}  ETA --"
        )
        self._bar(
            "#fit-progress", "fit", epoch / n_epochs if n_epochs else 0.0, f"epoch {epoch}/{n_epochs}  ETA --"
        )

    # -- table ------------------------------------------------------------------------------------
    def _fill_table(self) -> None:
        table = self.query_one("#epoch-table", DataTable)
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        ordered = [k for k in _NOT_METRICS[:3] if k in keys] + [k for k in keys if k not in _NOT_METRICS]
        self._columns = ordered + (["time"] if "time" in keys else [])
        table.clear(columns=True)
        for col in self._columns:
            table.add_column(col.replace("_", " "), key=col)
        for row in self.rows:
            table.add_row(*self._cells(row))
        self._rows_in_table = len(self.rows)
        if self.rows:
            table.move_cursor(row=len(self.rows) - 1)

    def on_show(self) -> None:
        """Bring the epoch table up to date, then redraw the plots if they changed."""
        self._sync_table()
        super().on_show()

    def _sync_table(self) -> None:
        new = self.rows[self._rows_in_table :]
        if not new:
            return
        if not self._columns or any(k not in self._columns for row in new for k in row):
            self._fill_table()
            return
        table = self.query_one("#epoch-table", DataTable)
        for row in new:
            table.add_row(*self._cells(row))
        self._rows_in_table = len(self.rows)
        table.move_cursor(row=len(self.rows) - 1)

    def _cells(self, row: dict[str, Any]) -> list[str]:
        return [fmt_duration(row.get(c)) if c == "time" else fmt_num(row.get(c)) for c in self._columns]

    # -- plots ------------------------------------------------------------------------------------
    def redraw(self) -> None:
        n = len(self.batches["losses"])
        xs = list(range(self.start_iter, self.start_iter + n))
        self._plot(
            "#plot-loss",
            "loss",
            [("raw", self.batches["losses"], "gray"), ("smooth", self.batches["smooth_losses"], "orange")],
            xs,
        )
        self._plot("#plot-lr", "lr", [("lr", self.batches["lrs"], "cyan")], xs)
        self._plot("#plot-mom", "momentum", [("mom", self.batches["moms"], "magenta")], xs)
        metrics = [k for k in self._columns if k not in _NOT_METRICS or k == "valid_loss"]
        ex = [float(r.get("epoch", i)) for i, r in enumerate(self.rows)]
        colours = ("green", "blue", "yellow", "red")
        series = [
            (m, [float(r.get(m, float("nan"))) for r in self.rows], colours[i % 4])
            for i, m in enumerate(metrics[:4])
        ]
        if len(self.rows) != self._metric_rows_drawn:  # epoch-level data: redraw only when a row arrives
            self._metric_rows_drawn = len(self.rows)
            self._plot("#plot-metrics", "metrics / epoch", series, ex)

    def _plot(
        self, wid: str, title: str, series: list[tuple[str, list[float], str]], xs: list[float]
    ) -> None:
        plot = self.query_one(wid, PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        # plotext's cost grows with the points it draws: about one point per column is all a braille line shows
        # (400 points cost 18 ms per plot, 60 cost 6 ms).
        n = max(32, plot.size.width)
        for label, ys, colour in series:
            px, py = finite_pairs(*downsample(xs[-len(ys) :] if ys else [], ys, n))
            if py:
                plt.plot(px, py, label=label if len(series) > 1 else None, color=colour, marker="braille")
        plot.refresh()
