"""Hooks pane: the module tree with the hooks on each module, their latest stats; add/remove at any time."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Tree

from labcon.session.messages import CommandApplied
from labcon.tui.bridge import UpdateBatch
from labcon.tui.fmt import fmt_num
from labcon.tui.pane import Pane


class ModuleTree(Tree[str]):
    """A Tree where space keeps its console meaning (pause/resume) instead of toggling a node."""

    BINDINGS = [Binding("space", "app.toggle_pause", "Pause", show=False)]


class HooksPane(Pane):
    """Tree of modules (with hook counts) | hooks of the selected subtree + the module's latest statistics."""

    BINDINGS = [
        Binding("a", "add_hook", "Add hook"),
        Binding("x,delete", "remove_hook", "Remove hook"),
    ]

    def __init__(self, session: Any, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.selected = ""
        self.hooks: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield ModuleTree("model", id="module-tree")
        with Vertical(id="hooks-side"):
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
        if any(isinstance(e, CommandApplied) and e.text.startswith("hook") for e in update.events):
            self.mark_dirty()
        elif update.telemetry_iter is not None and self.shown:
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
        counts: dict[str, int] = {}
        for h in self.hooks:
            counts[h["module"]] = counts.get(h["module"], 0) + 1
        nodes: dict[str, Any] = {"": tree.root}
        for path in paths:
            parts = path.split(".")
            for i in range(len(parts)):
                key = ".".join(parts[: i + 1])
                if key not in nodes:
                    n = counts.get(key, 0)
                    label = Text(parts[i])
                    if n:
                        label.append(f"  {n} hook{'s' if n != 1 else ''}", style="bold cyan")
                    nodes[key] = nodes[".".join(parts[:i])].add(label, data=key, expand=True)
        tree.root.expand()
        self._show_hooks()

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        """Show the hooks of the highlighted module's subtree."""
        self.selected = event.node.data or ""
        self._show_hooks()

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
        snap = self.safe(self.session.telemetry_snapshot)
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
