"""Journal pane: search with the journal's query language, results, run detail, diff of two runs, replay."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Static
from textual_plotext import PlotextPlot

from labcon.session.api import JournalView
from labcon.session.messages import EpochEnded, FitEnded, FitStarted
from labcon.tui.bridge import UpdateBatch
from labcon.tui.journal_fmt import cell, columns, format_branch, format_diff, format_record, value
from labcon.tui.pane import Pane
from labcon.tui.plots import int_ticks

# Runs marked at once: the overlay chart draws them all, `d` diffs the last two.
MAX_MARKED = 4
_RUN_EVENTS = (FitStarted, FitEnded, EpochEnded)
# Runs of other processes (a replay R started, a branch from a shell, another session) send this console no
# messages: while shown, the pane looks at the journal this often and redraws when its rows changed.
POLL_SECONDS = 2.0


class JournalPane(Pane):
    """Search box -> results -> detail; `/` filters, `m` marks runs (charted together), `d` diffs, `R` replays."""

    BINDINGS = [
        Binding("m", "mark", "Mark"),
        Binding("d", "diff", "Diff marked"),
        Binding("c", "next_metric", "Chart metric"),
        Binding("R", "replay", "Replay"),
    ]

    def __init__(self, session: Any, journal: Any = None, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self._journal = (
            journal  # injected (tests); otherwise the session's, read each time (it may appear later)
        )
        self.results: list[dict[str, Any]] = []
        self.marked: list[Any] = []
        self.current: Any = None
        self.query_text = ""
        self.chart_metric = "valid_loss"
        self.chart_runs: dict[Any, list[dict[str, Any]]] = {}
        self._cols: list[str] = []
        self._more = 0  # columns that did not fit

    @property
    def journal(self) -> JournalView | None:
        """The journal searched: the injected one, else the session's (None until the journal file exists)."""
        return self._journal if self._journal is not None else self.session.journal

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder='/ filter runs: mixup status:done lr>1e-3 NOT "label smoothing"', id="journal-query"
        )
        with Horizontal(id="journal-body"):
            yield DataTable(id="journal-results", cursor_type="row", zebra_stripes=True)
            with Vertical(id="journal-side"):
                with VerticalScroll(id="journal-detail-box"):
                    yield Static("no runs yet: they appear here as soon as a fit starts", id="journal-detail")
                chart = PlotextPlot(id="journal-chart")
                chart.display = False
                yield chart
                with Horizontal(id="journal-buttons"):
                    yield Button("Mark m", id="journal-mark", compact=True)
                    yield Button("Diff d", id="journal-diff", compact=True)
                    yield Button("Replay R", id="journal-replay", compact=True, variant="warning")

    def on_mount(self) -> None:
        self.set_interval(POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        if self.shown and self.journal is not None:
            self._search(self.query_text, False, True, True)

    def apply(self, update: UpdateBatch) -> None:
        """A run started, ended or finished an epoch: search again (now if shown, else when shown)."""
        if any(isinstance(e, _RUN_EVENTS) for e in update.events):
            if self.marked:
                self.chart_runs.clear()  # a marked run may be the live one
            self.mark_dirty()

    def redraw(self) -> None:
        self.search(self.query_text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Run the query and move to the results."""
        if event.input.id == "journal-query":
            event.stop()
            self.search(event.value, focus_results=True)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the query is typed (an unfinished query's error waits for Enter)."""
        if event.input.id == "journal-query":
            event.stop()
            self.search(event.value, quiet=True)

    def focus_search(self) -> None:
        """`/`: put the cursor in the filter box."""
        self.screen.set_focus(self.query_one("#journal-query", Input))

    def search(self, query: str, focus_results: bool = False, quiet: bool = False) -> None:
        """Search the journal in a worker (SQLite may take a moment); results land in the table."""
        self.query_text = query.strip()
        if self.journal is None:
            self._detail("no journal yet: runs appear here as soon as the first fit starts")
            return
        self._search(self.query_text, focus_results, quiet)

    @work(thread=True, exclusive=True, group="journal-search")
    def _search(self, query: str, focus_results: bool, quiet: bool, polled: bool = False) -> None:
        try:
            rows, err = list(self.journal.search(query)), None
        except Exception as e:  # noqa: BLE001 - a bad query must show its message, not crash
            rows, err = [], str(e)
        self.app.call_from_thread(self._show_results, query, rows, err, focus_results, quiet, polled)

    def _show_results(
        self,
        query: str,
        rows: list[dict[str, Any]],
        err: str | None,
        focus_results: bool,
        quiet: bool,
        polled: bool = False,
    ) -> None:
        if query != self.query_text:
            return  # typed on since: a newer search is on its way
        if polled and (err is not None or rows == self.results):
            return  # nothing new: leave the table (and its cursor) alone
        if err is not None:
            if not quiet:
                self._detail(f"query error: {err}", style="red")
                self.app.notify(f"journal query: {err}", severity="error", markup=False)
            return
        table = self.query_one("#journal-results", DataTable)
        cursor = table.cursor_row
        self.results = rows
        width = table.size.width or 60
        self._cols, more = columns(rows, max(3, (width - 6) // 10))
        table.clear(columns=True)
        table.add_column(" ", key="mark")
        for c in self._cols:
            table.add_column(c.replace("_", " "), key=c)
        self._more = more
        if more:
            table.add_column(f"+{more}", key="more")  # columns left out at this width: enter shows them all
        for i, r in enumerate(rows):
            table.add_row(*self._cells(r), key=str(i))
        if rows:
            table.move_cursor(row=min(cursor or 0, len(rows) - 1))
        head = f"{len(rows)} run(s)" + (f" for {query!r}" if query else "")
        if more:
            head += f" ({more} more column(s): enter shows a run in full)"
        if self.current is None or not rows:
            self._detail(head)
        if focus_results and rows:
            table.focus()

    def _cells(self, r: dict[str, Any]) -> list[str]:
        mark = str(self.marked.index(self._run_id(r)) + 1) if self._run_id(r) in self.marked else ""
        return [mark] + [cell(c, value(r, c)) for c in self._cols] + (["…"] if self._more else [])

    @staticmethod
    def _run_id(r: dict[str, Any]) -> Any:
        return r.get("id", r.get("run_id"))

    def _highlighted(self) -> dict[str, Any] | None:
        table = self.query_one("#journal-results", DataTable)
        if not self.results or table.cursor_row is None or table.cursor_row >= len(self.results):
            return None
        return self.results[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Show the selected run's full record."""
        if event.data_table.id == "journal-results":
            self.show_run(self._highlighted())

    def show_run(self, row: dict[str, Any] | None) -> None:
        """Detail of one run (journal.get_run)."""
        if row is None:
            return
        self.current = self._run_id(row)
        try:
            rec = self.journal.get_run(self.current)
            branch = format_branch(self.journal.events(self.current, kinds=["info"]))
        except Exception as e:  # noqa: BLE001 - a journal error must show, not crash
            self._detail(str(e), style="red")
            return
        # A branch leads with how far it went from its parent: what it was made to show.
        self._detail(f"run {self.current}", "\n".join(t for t in (branch, format_record(rec)) if t))

    def action_mark(self) -> None:
        """Mark / unmark the highlighted run: marked runs are charted together; `d` diffs the last two."""
        row = self._highlighted()
        if row is None:
            return
        rid = self._run_id(row)
        if rid in self.marked:
            self.marked.remove(rid)
        else:
            self.marked = (self.marked + [rid])[-MAX_MARKED:]
        table = self.query_one("#journal-results", DataTable)
        for i, r in enumerate(self.results):
            table.update_cell(str(i), "mark", self._cells(r)[0])
        self._detail(
            f"marked: {', '.join(map(str, self.marked)) or 'none'} (d: diff the last two; c: chart metric)"
        )
        self._chart()

    def action_next_metric(self) -> None:
        """Chart the next metric the marked runs recorded."""
        names = sorted({k for rows in self.chart_runs.values() for r in rows for k in r if k != "epoch"})
        if names:
            i = names.index(self.chart_metric) if self.chart_metric in names else -1
            self.chart_metric = names[(i + 1) % len(names)]
        self._chart()

    def _chart(self) -> None:
        """Overlay the marked runs' per-epoch curves of the chosen metric (their epochs read in a worker)."""
        missing = [r for r in self.marked if r not in self.chart_runs]
        if missing and self.journal is not None:
            self._load_epochs(missing)
            return
        colours = ("cyan", "orange", "green", "magenta")
        series, xs = [], []
        for i, rid in enumerate(self.marked):
            rows = self.chart_runs.get(rid, [])
            xs.append([float(r.get("epoch", j)) for j, r in enumerate(rows)])
            series.append(
                (f"run {rid}", [float(r.get(self.chart_metric, float("nan"))) for r in rows], colours[i % 4])
            )
        plot = self.query_one("#journal-chart", PlotextPlot)
        plot.display = bool(series)  # the detail gets the room until runs are marked
        plot.plt.clear_data()
        plot.plt.clear_figure()
        if not series:
            plot.refresh()
            return
        # Each run has its own epochs: draw them one by one on the same axes.
        plt = plot.plt
        plt.title(f"{self.chart_metric} per epoch (c: next metric)")
        plt.xlabel("epoch")
        for (label, ys, colour), x in zip(series, xs, strict=True):
            pts = [(a, b) for a, b in zip(x, ys, strict=False) if b == b]
            if pts:
                plt.plot(
                    [p[0] for p in pts], [p[1] for p in pts], label=label, color=colour, marker="braille"
                )
        lo = min((min(x) for x in xs if x), default=0.0)
        hi = max((max(x) for x in xs if x), default=0.0)
        ticks = int_ticks(lo, hi)
        if ticks:
            plt.xticks(ticks, [str(t) for t in ticks])
        plot.refresh()

    @work(thread=True, exclusive=True, group="journal-chart")
    def _load_epochs(self, run_ids: list[Any]) -> None:
        loaded = {}
        for rid in run_ids:
            try:
                loaded[rid] = list(self.journal.epochs(rid))
            except Exception:  # noqa: BLE001 - a run without epochs is charted empty
                loaded[rid] = []
        self.app.call_from_thread(self._epochs_loaded, loaded)

    def _epochs_loaded(self, loaded: dict[Any, list[dict[str, Any]]]) -> None:
        self.chart_runs.update(loaded)
        self._chart()

    def action_diff(self) -> None:
        """Diff the last two marked runs: only what differs."""
        if len(self.marked) < 2:
            self.app.notify("mark two runs with m first", severity="warning", markup=False)
            return
        a, b = self.marked[-2:]
        try:
            d = self.journal.diff(a, b)
        except Exception as e:  # noqa: BLE001 - a journal error must show, not crash
            self._detail(str(e), style="red")
            return
        self._detail(f"diff run {a} -> run {b}", format_diff(d))

    def action_replay(self) -> None:
        """Replay the highlighted (or last shown) run through the session."""
        row = self._highlighted()
        rid = self._run_id(row) if row is not None else self.current
        if rid is None:
            self.app.notify("select a run to replay", severity="warning", markup=False)
            return
        self.app.run_command(f"replay {rid}")  # type: ignore[attr-defined]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The three buttons mirror m / d / R."""
        actions = {
            "journal-mark": self.action_mark,
            "journal-diff": self.action_diff,
            "journal-replay": self.action_replay,
        }
        if event.button.id in actions:
            event.stop()
            actions[event.button.id]()

    def _detail(self, head: str, body: str = "", style: str = "") -> None:
        # Text, not markup: records hold user text that may contain '[' .
        text = Text(head, style=style or ("bold" if body else ""))
        if body:
            text.append("\n" + body)
        self.query_one("#journal-detail", Static).update(text)
