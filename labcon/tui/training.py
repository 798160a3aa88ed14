"""Training pane: progress for epoch and fit, speed and last metrics, epoch table, live plots with change markers."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.events import Resize
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from labcon.session.messages import CommandApplied, EpochEnded, FitStarted, LrFound, Progress
from labcon.tui.bridge import BATCH_HISTORY_CAP, UpdateBatch
from labcon.tui.fmt import fmt_duration, fmt_num, progress_line
from labcon.tui.pane import Pane
from labcon.tui.plots import Marker, draw, draw_lr_find
from labcon.tui.position import FitPosition
from labcon.tui.schedplan import PlanGuide

_SERIES = ("losses", "smooth_losses", "lrs", "moms")
_NOT_METRICS = ("epoch", "train_loss", "valid_loss", "time")
# Commands that start, stop or describe work rather than change the training: no marker on the plots.
_NOT_CHANGES = frozenset(
    ("fit", "fit_one_cycle", "lr_find", "pause", "resume", "stop", "save", "note", "show", "status", "help")
)
# Plots are the costliest thing on screen (plotext is pure Python); a redraw every 2 s looks live and leaves the
# interpreter to the training thread (they share one GIL).
PLOT_INTERVAL_S = 2.0
# Narrower than this, the pane shows two plots (loss, lr) instead of four: each stays readable at 80x24.
WIDE_MIN_COLS = 110
FIRST_STEPS = (
    "no run yet: try `fit_one_cycle 5` (: focuses the command line), or `lr_find` first to pick an lr"
)


def is_change(text: str) -> bool:
    """Whether an applied command changes the training (and so gets a marker)."""
    words = text.split()
    return bool(words) and words[0] not in _NOT_CHANGES


class TrainingPane(Pane):
    """Progress + epoch table + live plots; applied changes are numbered markers; `L` fits with lr_find's lr."""

    BINDINGS = [Binding("L", "use_lr_find", "Fit with lr_find's lr")]

    def __init__(self, session: Any, position: FitPosition | None = None, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.position = position if position is not None else FitPosition()
        self.rows: list[dict[str, Any]] = []
        self.batches: dict[str, list[float]] = {k: [] for k in _SERIES}
        self.start_iter = 0
        self.progress: Progress | None = None
        self.markers: list[Marker] = []  # x = the global training batch the change took effect at
        self.epoch_markers: list[Marker] = []  # the same changes, x = their epoch (for the metrics plot)
        self.lr_find: LrFound | None = None  # shown in the lr plot until the next fit starts
        self.rate: float | None = None  # training batches per second (smoothed)
        self._rate_at: tuple[float, int] | None = None
        self._columns: list[str] = []
        self._stale = False
        self._metric_rows_drawn = -1
        self._rows_in_table = 0  # rows of self.rows already in the epoch table
        self._bars: dict[str, Static] = {}
        self._last_plot = 0.0
        self.wide = True
        self.plan = PlanGuide()  # the fit's planned lr/mom schedules, drawn dim beside the values so far

    def compose(self) -> ComposeResult:
        with Vertical(id="progress-box"):
            yield Static("", id="epoch-progress", classes="progress-row")
            yield Static("", id="fit-progress", classes="progress-row")
            yield Static("", id="fit-stats", classes="progress-row")
        with Vertical(id="training-body"):
            yield DataTable(id="epoch-table", cursor_type="row", zebra_stripes=True)
            with Grid(id="plots"):
                yield PlotextPlot(id="plot-loss")
                yield PlotextPlot(id="plot-lr")
                yield PlotextPlot(id="plot-mom", classes="wide-only")
                yield PlotextPlot(id="plot-metrics", classes="wide-only")
            legend = Static("", id="changes-legend")
            legend.display = False  # a row of its own only once there is a change to list
            yield legend

    def on_mount(self) -> None:
        self.rows = list(self.safe(self.session.history, default=[]) or [])
        bh = self.safe(self.session.batch_history, default={}) or {}
        self.batches = {k: list(bh.get(k, []))[-BATCH_HISTORY_CAP:] for k in _SERIES}
        st = self.safe(self.session.status, default={}) or {}
        self.position.set_status(st)
        self.start_iter = max(0, int(st.get("train_iter", 0) or 0) - len(self.batches["losses"]))
        self._fill_table()
        self._show_progress()
        self._show_stats()
        if st.get("run_id") is not None:
            self._load_markers(st["run_id"])  # changes applied before this console attached
        self.mark_dirty()
        self._stale = False
        self._fetch_plan()
        self.set_interval(PLOT_INTERVAL_S / 2, self._redraw_if_stale)

    def on_resize(self, event: Resize) -> None:
        """Two plots when narrow, four when wide."""
        wide = event.size.width >= WIDE_MIN_COLS
        if wide != self.wide:
            self.wide = wide
            self.set_class(not wide, "narrow")
            self._stale = True

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
                self.lr_find = None
                self._rate_at, self.rate = None, None
                self.plan.want()
            elif isinstance(ev, CommandApplied) and is_change(ev.text):
                self.add_marker(ev)
                self.plan.want()  # `set lr=` rescales the plan, `sched` replaces part of it
            elif isinstance(ev, LrFound):
                self.lr_find = ev
                self._metric_rows_drawn = -1
                self._stale = True
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
            self._measure_rate(update.progress)
        if self.plan.due and not self.plan.fetching and (update.batch_stats is not None or update.events):
            self._fetch_plan()  # once per change; a fit's scheduler exists once its batches run
        if (update.progress is not None or update.events) and self.shown:
            self._show_progress()  # hidden: on_show draws them (five updates a second for nobody to see)
            self._show_stats()

    def _fetch_plan(self) -> None:
        self.plan.fetching = True
        self._read_plan()

    @work(thread=True, exclusive=True, group="training-plan")
    def _read_plan(self) -> None:
        try:
            plan = self.session.schedule_plan()
        except Exception:  # noqa: BLE001 - no guide line is better than a console error for a read-only extra
            plan = None
        self.app.call_from_thread(self._take_plan, plan)

    def _take_plan(self, plan: dict[str, Any] | None) -> None:
        if self.plan.take(plan, self.position.live):
            self._stale = True

    @work(thread=True, exclusive=True, group="training-markers")
    def _load_markers(self, run_id: Any) -> None:
        journal = self.session.journal
        try:
            events = list(journal.events(run_id, kinds=("command",))) if journal is not None else []
        except Exception:  # noqa: BLE001 - no markers is better than a console error for a read-only extra
            events = []
        applied = [
            CommandApplied(str(e["text"]), int(e["epoch"] or 0), int(e["iteration"] or 0), "")
            for e in events
            if is_change(str(e.get("text", ""))) and e.get("epoch") is not None
        ]
        if applied:
            self.app.call_from_thread(self._add_earlier_markers, applied)

    def _add_earlier_markers(self, applied: list[CommandApplied]) -> None:
        known = {(m.text, m.x) for m in self.markers}
        for ev in applied:
            if (ev.text, float(ev.iter)) not in known:
                self.add_marker(ev)

    def add_marker(self, ev: CommandApplied) -> None:
        """A numbered marker for an applied change, drawn on every plot and listed in the legend."""
        k = len(self.markers) + 1
        self.markers.append(Marker(k, float(ev.iter), ev.text))
        self.epoch_markers.append(Marker(k, float(ev.epoch), ev.text))
        self._metric_rows_drawn = -1
        self._stale = True
        legend = Text(no_wrap=True, overflow="ellipsis")
        legend.append("changes ", style="bold red")
        for m, em in list(zip(self.markers, self.epoch_markers, strict=True))[-6:]:
            legend.append(f" {m.number} ", style="bold red")
            legend.append(f"{m.text} (epoch {int(em.x)} batch {int(m.x)})")
        widget = self.query_one("#changes-legend", Static)
        widget.display = True
        widget.update(legend)

    def _measure_rate(self, p: Progress) -> None:
        now = time.monotonic()
        if self._rate_at is not None and p.phase == "train":
            t0, i0 = self._rate_at
            if p.train_iter > i0 and now > t0:
                r = (p.train_iter - i0) / (now - t0)
                self.rate = r if self.rate is None else 0.7 * self.rate + 0.3 * r
        if p.phase == "train":
            self._rate_at = (now, p.train_iter)

    def _bar(self, wid: str, label: str, frac: float, info: str) -> None:
        # layout=False: a fixed one-line widget; a layout pass 5 times a second would steal the trainer's CPU.
        if wid not in self._bars:
            self._bars[wid] = self.query_one(wid, Static)
        bar = self._bars[wid]
        bar.update(progress_line(label, frac, info, bar.size.width or 80), layout=False)

    def _show_progress(self) -> None:
        pos, p = self.position, self.progress
        eta_epoch = fmt_duration(p.eta_epoch) if p is not None and pos.live else "--"
        self._bar(
            "#epoch-progress", "epoch", pos.epoch_fraction, f"{pos.batch_text() or 'idle'}  ETA {eta_epoch}"
        )
        elapsed = fmt_duration(p.elapsed) if p is not None and pos.live else "--"
        eta = fmt_duration(pos.eta_fit) if pos.live and pos.eta_fit is not None else "--"
        self._bar("#fit-progress", "fit", pos.fit_fraction, f"{pos.epoch_text()}  {elapsed} < ETA {eta}")

    def _show_stats(self) -> None:
        """Speed, smoothed loss and the last epoch's metrics (or a first command when nothing has run)."""
        w = self._bars.get("#fit-stats") or self.query_one("#fit-stats", Static)
        self._bars["#fit-stats"] = w
        text = Text(no_wrap=True, overflow="ellipsis")
        p = self.progress
        if p is None and not self.rows and self.position.train_iter == 0:
            text.append(FIRST_STEPS, style="italic")
        else:
            if self.rate is not None and self.position.live:
                text.append(f"{self.rate:.1f} it/s  ", style="bold")
            if p is not None and math.isfinite(p.smooth_loss):
                text.append(f"loss {fmt_num(p.smooth_loss)}  ")
            if self.rows:
                last = self.rows[-1]
                shown = [k for k in last if k not in ("epoch", "train_loss", "time")]
                text.append(f"epoch {last.get('epoch')}: ", style="dim")
                text.append("  ".join(f"{k} {fmt_num(last[k])}" for k in shown))
        w.update(text, layout=False)

    def action_use_lr_find(self) -> None:
        """Put `fit_one_cycle 5 lr=<suggestion>` on the command line (Enter starts it)."""
        if self.lr_find is None or not math.isfinite(self.lr_find.suggestion):
            self.app.notify("run `lr_find` first: its suggested lr is what L uses", markup=False)
            return
        self.app.prefill_command(f"fit_one_cycle 5 lr={self.lr_find.suggestion:.2e}")  # type: ignore[attr-defined]

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
        """Bring the bars and the epoch table up to date, then redraw the plots if they changed."""
        self._show_progress()
        self._show_stats()
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
        b, marks = self.batches, self.markers
        draw(
            self._plot("#plot-loss"),
            "loss",
            [("raw", b["losses"], "gray"), ("smooth", b["smooth_losses"], "orange")],
            xs,
            xlabel="batch",
            markers=marks,
        )
        if self.lr_find is not None:
            draw_lr_find(self._plot("#plot-lr"), self.lr_find)
        else:
            draw(
                self._plot("#plot-lr"),
                "learning rate",
                [("lr", b["lrs"], "cyan")],
                xs,
                xlabel="batch",
                markers=marks,
                guides=self.plan.guide("lr"),
            )
        if not self.wide:
            return  # the two plots below are hidden
        draw(
            self._plot("#plot-mom"),
            "momentum",
            [("mom", b["moms"], "magenta")],
            xs,
            xlabel="batch",
            markers=marks,
            guides=self.plan.guide("mom"),
        )
        if len(self.rows) != self._metric_rows_drawn:  # epoch-level data: redraw only when a row arrives
            self._metric_rows_drawn = len(self.rows)
            metrics = [k for k in self._columns if k not in _NOT_METRICS or k == "valid_loss"]
            ex = [float(r.get("epoch", i)) for i, r in enumerate(self.rows)]
            colours = ("green", "blue", "yellow", "red")
            series = [
                (m, [float(r.get(m, float("nan"))) for r in self.rows], colours[i % 4])
                for i, m in enumerate(metrics[:4])
            ]
            draw(
                self._plot("#plot-metrics"), "metrics", series, ex, xlabel="epoch", markers=self.epoch_markers
            )

    def _plot(self, wid: str) -> PlotextPlot:
        return self.query_one(wid, PlotextPlot)
