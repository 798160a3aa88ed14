"""Journal pane: search with the journal's query language, results, run detail, diff of two runs, replay."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Static

from labcon.session.api import JournalView, SessionAPI
from labcon.tui.fmt import fmt_num
from labcon.tui.pane import Pane

# A run's own columns first; the rest of the table is its final metrics (journal rows keep them in final_metrics).
_RUN_COLS = ("id", "session", "status", "started")
_MAX_COLS = 8
_TIME_KEYS = ("started", "ended", "created", "finished", "time")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A journal row with its final metrics as top-level fields (what the table shows)."""
    metrics = row.get("final_metrics") or {}
    return {**{k: v for k, v in row.items() if k != "final_metrics"}, **metrics}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    metrics: list[str] = []
    for r in rows:
        metrics += [k for k in (r.get("final_metrics") or {}) if k not in metrics]
    # The validation loss and the metrics matter most (the table may be cut at the right); the train loss last.
    metrics.sort(key=lambda k: (k != "valid_loss", k == "train_loss"))
    return [*_RUN_COLS, *metrics][:_MAX_COLS]


def _cell(key: str, v: Any) -> str:
    # Journal times are epoch seconds; show them as dates.
    if isinstance(v, int | float) and not isinstance(v, bool) and v > 1e8 and key in _TIME_KEYS:
        return time.strftime("%m-%d %H:%M", time.localtime(v))
    return fmt_num(v)


def format_record(d: Any, indent: str = "") -> str:
    """A run record or a diff as indented 'key: value' lines (pairs as 'a -> b')."""
    if isinstance(d, dict):
        lines = []
        for k, v in d.items():
            if isinstance(v, dict) and v:
                lines.append(f"{indent}{k}:")
                lines.append(format_record(v, indent + "  "))
            elif isinstance(v, tuple | list) and len(v) == 2 and not isinstance(v[0], dict):
                lines.append(f"{indent}{k}: {fmt_num(v[0])} -> {fmt_num(v[1])}")
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"{indent}{k}: ({len(v)})")
                lines += [f"{indent}  " + ", ".join(f"{a}={fmt_num(b)}" for a, b in row.items()) for row in v]
            else:
                lines.append(f"{indent}{k}: {fmt_num(v)}")
        return "\n".join(lines)
    return f"{indent}{d}"


class JournalPane(Pane):
    """Search box -> results table -> detail; `m` marks runs, `d` diffs the two marked, Replay replays."""

    BINDINGS = [
        Binding("m", "mark", "Mark for diff"),
        Binding("d", "diff", "Diff marked"),
        Binding("R", "replay", "Replay"),
    ]

    def __init__(self, session: SessionAPI, journal: JournalView | None = None, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self._journal = journal
        self.results: list[dict[str, Any]] = []
        self.marked: list[Any] = []
        self.current: Any = None
        self._cols: list[str] = []

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder='search runs: mixup status:done lr>1e-3 NOT "label smoothing"', id="journal-query"
        )
        with Horizontal(id="journal-body"):
            yield DataTable(id="journal-results", cursor_type="row", zebra_stripes=True)
            with Vertical(id="journal-side"):
                with VerticalScroll(id="journal-detail-box"):
                    yield Static("enter a query (empty: all runs)", id="journal-detail")
                with Horizontal(id="journal-buttons"):
                    yield Button("Mark m", id="journal-mark", compact=True)
                    yield Button("Diff d", id="journal-diff", compact=True)
                    yield Button("Replay R", id="journal-replay", compact=True, variant="warning")

    @property
    def journal(self) -> JournalView | None:
        """The journal given, else the session's (read each time: an attached console's appears with the first
        run)."""
        return self._journal if self._journal is not None else self.session.journal

    def redraw(self) -> None:
        if not self.results and self.journal is not None:
            self.search("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Run the query."""
        if event.input.id == "journal-query":
            event.stop()
            self.search(event.value)

    def search(self, query: str) -> None:
        """Search the journal in a worker (SQLite may take a moment); results land in the table."""
        if self.journal is None:
            self._detail("no journal for this session")
            return
        self._search(query.strip())

    @work(thread=True, exclusive=True, group="journal-search")
    def _search(self, query: str) -> None:
        journal = self.journal
        assert journal is not None  # search() checked
        try:
            rows, err = list(journal.search(query)), None
        except Exception as e:  # noqa: BLE001 - a bad query must show its message, not crash
            rows, err = [], str(e)
        self.app.call_from_thread(self._show_results, query, rows, err)

    def _show_results(self, query: str, rows: list[dict[str, Any]], err: str | None) -> None:
        if err is not None:
            self._detail(f"query error: {err}", style="red")
            self.app.notify(f"journal query: {err}", severity="error", markup=False)
            return
        self.results = rows
        table = self.query_one("#journal-results", DataTable)
        self._cols = _columns(rows)
        table.clear(columns=True)
        table.add_column(" ", key="mark")
        for c in self._cols:
            table.add_column(c.replace("_", " "), key=c)
        for i, r in enumerate(rows):
            table.add_row(*self._cells(r), key=str(i))
        self._detail(f"{len(rows)} run(s) for {query!r}" if query else f"{len(rows)} run(s)")
        if rows:
            table.focus()

    def _cells(self, r: dict[str, Any]) -> list[str]:
        mark = "*" if self._run_id(r) in self.marked else ""
        flat = _flat(r)
        return [mark] + [_cell(c, flat.get(c)) for c in self._cols]

    @staticmethod
    def _run_id(r: dict[str, Any]) -> Any:
        return r["id"]

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
            rec = self.journal.get_run(self.current)  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001 - a journal error must show, not crash
            self._detail(str(e), style="red")
            return
        self._detail(f"run {self.current}", format_record(rec))

    def action_mark(self) -> None:
        """Mark / unmark the highlighted run (the last two marked are diffed)."""
        row = self._highlighted()
        if row is None:
            return
        rid = self._run_id(row)
        if rid in self.marked:
            self.marked.remove(rid)
        else:
            self.marked = (self.marked + [rid])[-2:]
        table = self.query_one("#journal-results", DataTable)
        for i, r in enumerate(self.results):
            table.update_cell(str(i), "mark", "*" if self._run_id(r) in self.marked else "")
        self._detail(f"marked: {', '.join(map(str, self.marked)) or 'none'} (d: diff the two marked runs)")

    def action_diff(self) -> None:
        """Diff the two marked runs."""
        if len(self.marked) != 2:
            self.app.notify("mark two runs with m first", severity="warning", markup=False)
            return
        a, b = self.marked
        try:
            d = self.journal.diff(a, b)  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001 - a journal error must show, not crash
            self._detail(str(e), style="red")
            return
        self._detail(f"diff run {a} -> run {b}", format_record(d))

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
