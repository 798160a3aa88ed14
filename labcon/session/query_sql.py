"""Compiling a parsed journal query (see labcon.session.query) into a parameterised SQL condition."""

from __future__ import annotations

from collections.abc import Callable

from labcon.session.query_ast import OPS, And, Compare, Field, Node, Not, Or, Text

# Search docs get ids run_id * DOC_SPAN + n, so a doc's run is its FTS rowid >> DOC_SHIFT (no table lookup).
DOC_SHIFT = 24
DOC_SPAN = 1 << DOC_SHIFT


def fts_string(node: Text) -> str:
    """The FTS5 MATCH expression for one free-text node: always a quoted string, so user text is never syntax."""
    quoted = '"' + node.text.replace('"', '""') + '"'
    return quoted + " *" if node.prefix else quoted


DenseFn = Callable[[str], bool]


def compile_node(
    node: Node, params: list[object], alias: str = "r", dense: DenseFn | None = None, positive: bool = True
) -> str:
    """SQL condition on runs table alias `alias` for `node`; appends the values to `params`.

    `dense(fts)` says whether a free-text match is common across runs: then (outside NOT) it is tested
    per candidate run through the FTS rowid range, so `ORDER BY id DESC LIMIT n` stops early instead
    of collecting tens of thousands of matching docs first.
    """
    rid = f"{alias}.id"
    if isinstance(node, And):
        # Cheap filters first: SQLite tests AND terms left to right, so per-run FTS probes see fewer rows.
        items = sorted(node.items, key=lambda n: isinstance(n, Text | Or | Not))
        return "(" + " AND ".join(compile_node(n, params, alias, dense, positive) for n in items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(compile_node(n, params, alias, dense, positive) for n in node.items) + ")"
    if isinstance(node, Not):
        return "(NOT " + compile_node(node.item, params, alias, dense, not positive) + ")"
    if isinstance(node, Text):
        fts = fts_string(node)
        params.append(fts)
        if positive and dense is not None and dense(fts):
            return (
                f"EXISTS (SELECT 1 FROM search_fts WHERE search_fts MATCH ? "
                f"AND rowid >= {rid} * {DOC_SPAN} AND rowid < ({rid} + 1) * {DOC_SPAN})"
            )
        return f"{rid} IN (SELECT rowid >> {DOC_SHIFT} FROM search_fts WHERE search_fts MATCH ?)"
    if isinstance(node, Compare):
        op = OPS[node.op]  # from a fixed table, never user text
        params.extend([node.name, node.value, node.name, node.value])
        return (
            f"{rid} IN (SELECT run_id FROM params WHERE name = ? AND value {op} ? "
            f"UNION SELECT run_id FROM run_metrics WHERE name = ? AND value {op} ?)"
        )
    return _compile_field(node, params, alias)


def _compile_field(node: Field, params: list[object], alias: str) -> str:
    name, value = node.name, node.value
    params.append(value)
    if name == "status":
        return f"{alias}.status = ?"
    if name == "tag":
        return f"{alias}.id IN (SELECT run_id FROM tags WHERE tag = ?)"
    if name == "session":
        return f"{alias}.session GLOB ?" if "*" in str(value) else f"{alias}.session = ?"
    if name == "run":
        return f"{alias}.id = ?"
    if name == "parent":
        return f"{alias}.parent_id = ?"
    if name == "previous":
        return f"{alias}.previous_id = ?"
    if name == "since":
        return f"{alias}.started >= ?"
    if name == "until":
        return f"{alias}.started < ?"
    if name == "has":
        return f"{alias}.id IN (SELECT run_id FROM events WHERE kind = ?)"
    raise AssertionError(f"unhandled field {name}")
