"""Hooks pane: the module tree with the hooks on each module and each module's summary (output shape, parameters,
multiply-adds), their latest stats; add/remove hooks at any time."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static, Tree

from labcon.fmt import fmt_count
from labcon.session.messages import CommandApplied, FitEnded
from labcon.tui.bridge import UpdateBatch
from labcon.tui.fmt import fmt_num
from labcon.tui.pane import Pane

# Commands after which the module tree or its counts may differ (fine_tune's fits freeze and unfreeze groups).
_MODEL_CHANGES = ("norm", "model", "cb", "freeze", "unfreeze", "unfreeze_to", "fine_tune")


def shape_text(shape: list[int]) -> str:
    """[16, 8, 8] -> '16x8x8' (per item; '-' for a module that did not run)."""
    return "x".join(str(d) for d in shape) if shape else "-"


class ModuleTree(Tree[str]):
    """A Tree where space keeps its console meaning (pause/resume) instead of toggling a node."""

    BINDINGS = [Binding("space", "app.toggle_pause", "Pause", show=False)]


class HooksPane(Pane):
    """Tree of modules (with hook counts) | hooks of the selected subtree + the module's latest statistics."""

    DEFAULT_CSS = "#module-summary { width: 1fr; height: auto; }"  # wraps at 80 columns instead of cropping
    BINDINGS = [
        Binding("a", "add_hook", "Add hook"),
        Binding("x,delete", "remove_hook", "Remove hook"),
    ]

    def __init__(self, session: Any, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.selected = ""
        self.hooks: list[dict[str, Any]] = []
        self.summary: dict[str, dict[str, Any]] = {}  # path -> model_summary row
        self.summary_items = 0
        self.summary_error = ""
        self._summary_due = True  # fetched when the pane is shown, once per model change
        self._tree_nodes: dict[str, Any] = {}
        # The last telemetry read, kept until a new report arrives: each read is a round trip to the session
        # process on the UI thread, and showing the pane must not wait for the busy trainer.
        self._snap: Any = None
        self._snap_stale = True

    def compose(self) -> ComposeResult:
        yield ModuleTree("model", id="module-tree")
        with Vertical(id="hooks-side"):
            yield Static("", id="module-summary")
            yield Label("", id="hooks-title")
            yield DataTable(id="hooks-table", cursor_type="row", zebra_stripes=True)
            yield Label("", id="module-stats")
            yield Label("a add a hook here · x remove the selected hook (at the next batch)", classes="hint")

    def on_mount(self) -> None:
        table = self.query_one("#hooks-table", DataTable)
        for col in ("id", "module", "kind", "owner", "scope"):
            table.add_column(col, key=col)
        self.mark_dirty()

    def apply(self, update: UpdateBatch) -> None:
        words = [(e.text.split() or [""])[0] for e in update.events if isinstance(e, CommandApplied)]
        if any(isinstance(e, FitEnded) for e in update.events) or any(w in _MODEL_CHANGES for w in words):
            self._summary_due = True
            self.mark_dirty()
        elif "hook" in words:
            self.mark_dirty()
        if update.telemetry_iter is not None:
            self._snap_stale = True
            if self.shown:
                self._show_stats()  # hidden: on_show refreshes them (a hidden label update still costs a layout pass)

    def on_show(self) -> None:
        """Rebuild if hooks changed meanwhile, else just bring the module's stats up to date."""
        if self.dirty:
            super().on_show()
        else:
            self._show_stats()

    def redraw(self) -> None:
        self.hooks = list(self.safe(self.session.hooks_table, default=[]) or [])
        paths = [p for p in self.safe(self.session.module_paths, default=[]) or [] if p]
        tree = self.query_one("#module-tree", ModuleTree)
        tree.clear()
        tree.root.data = ""
        nodes: dict[str, Any] = {"": tree.root}
        for path in paths:
            parts = path.split(".")
            for i in range(len(parts)):
                key = ".".join(parts[: i + 1])
                if key not in nodes:
                    nodes[key] = nodes[".".join(parts[:i])].add(parts[i], data=key, expand=True)
        tree.root.expand()
        self._tree_nodes = nodes
        self._label_nodes()
        self._show_hooks()
        if self._summary_due:
            self._summary_due = False
            self._fetch_summary()

    @work(thread=True, exclusive=True, group="model-summary")
    def _fetch_summary(self) -> None:
        """Off the UI thread: a live fit computes it at its next batch (a round trip over the socket)."""
        try:
            data, error = self.session.model_summary(), ""
        except Exception as e:  # noqa: BLE001 - shown in the pane; the tree and hooks stay usable
            data, error = None, str(e)
        self.app.call_from_thread(self._take_summary, data, error)

    def _take_summary(self, data: dict[str, Any] | None, error: str) -> None:
        self.summary_error = error
        if data is not None:
            self.summary = {r["path"]: r for r in data["rows"]}
            self.summary_items = int(data.get("batch", 0))
        self._label_nodes()
        self._show_summary()

    def _label_nodes(self) -> None:
        """Each node: its name, hooks count, and (dim) output shape and parameters from the summary."""
        counts: dict[str, int] = {}
        for h in self.hooks:
            counts[h["module"]] = counts.get(h["module"], 0) + 1
        for key, node in self._tree_nodes.items():
            row = self.summary.get(key)
            label = Text(key.rsplit(".", 1)[-1] if key else "model")
            if row is not None:
                params = f" {fmt_count(row['params'])}p" if row["params"] else ""
                label.append(f" {shape_text(row['shape'])}{params}", style="dim")
            n = counts.get(key, 0)
            if n:
                label.append(f"  {n} hook{'s' if n != 1 else ''}", style="bold cyan")
            node.set_label(label)

    def _show_summary(self) -> None:
        """The selected module's shape, parameters and multiply-adds per item, and the model's totals."""
        label = self.query_one("#module-summary", Static)
        if self.summary_error:
            label.update(Text(f"summary: {self.summary_error}", style="red"))
            return
        row, total = self.summary.get(self.selected), self.summary.get("")
        if total is None:
            label.update(Text("summary: computing (one forward of two items)...", style="dim"))
            return
        text = Text(no_wrap=False)
        if row is not None and self.selected:
            text.append(f"{self.selected} ", style="bold")
            text.append(f"{row['kind']}: out {shape_text(row['shape'])}, {row['params']:,} params")
            if row["trainable"] != row["params"]:
                text.append(f" ({row['trainable']:,} trainable)")
            share = row["macs"] / total["macs"] if total["macs"] else 0.0
            text.append(f", {fmt_count(row['macs'])} MACs/item ({100 * share:.0f}%)\n")
        text.append("model: ", style="bold")
        text.append(f"{total['params']:,} params ({total['trainable']:,} trainable), ")
        text.append(f"{fmt_count(total['macs'])} MACs/item, out {shape_text(total['shape'])}")
        label.update(text)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        """Show the hooks of the highlighted module's subtree."""
        self.selected = event.node.data or ""
        self._show_hooks()
        self._show_summary()

    def _show_hooks(self) -> None:
        sel = self.selected
        rows = [h for h in self.hooks if not sel or h["module"] == sel or h["module"].startswith(sel + ".")]
        table = self.query_one("#hooks-table", DataTable)
        table.clear()
        for h in rows:
            table.add_row(
                str(h["id"]),
                h["module"],
                h["kind"],
                str(h.get("owner", "")),
                str(h.get("scope", "")),
                key=str(h["id"]),
            )
        where = sel or "the whole model"
        self.query_one("#hooks-title", Label).update(
            f"{len(rows)} hook(s) on {where} ({len(self.hooks)} in all)"
        )
        self._show_stats()

    def _show_stats(self) -> None:
        if self.selected and self._snap_stale:  # nothing selected: nothing to read
            self._snap, self._snap_stale = self.safe(self.session.telemetry_snapshot), False
        snap = self._snap
        st = snap.latest.get(self.selected) if snap is not None and self.selected else None
        label = self.query_one("#module-stats", Label)
        if st is None:
            label.update("latest stats: select a module with telemetry")
            return
        label.update(
            Text(
                f"latest stats of {self.selected}: mean {fmt_num(st.mean, 3)}  std {fmt_num(st.std, 3)}  "
                f"near-zero {fmt_num(100 * st.near_zero, 1)}%  grad norm {fmt_num(st.grad_norm, 3)}  "
                f"update/param {fmt_num(st.update_ratio, 2)}"
            )
        )

    def action_add_hook(self) -> None:
        """Prefill the command line with `hook add MODULE` (applied at the next batch, also while training)."""
        module = self.selected or "MODULE_PATH"
        self.app.prefill_command(f"hook add {module} kind=forward")  # type: ignore[attr-defined]

    def action_remove_hook(self) -> None:
        """Remove the hook highlighted in the hooks table."""
        table = self.query_one("#hooks-table", DataTable)
        if table.row_count == 0:
            return
        hook_id = table.get_row_at(table.cursor_row)[0]
        self.app.confirm(f"Remove hook {hook_id}?", f"hook rm {hook_id}")  # type: ignore[attr-defined]
