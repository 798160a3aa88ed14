"""A text batch in the Data pane: each row decoded, special tokens highlighted, padding folded into one dim run."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from labcon.data.text_show import TextBatchView, TextRow

SPECIAL_STYLE = "bold magenta"
PAD_STYLE = "dim"
LABEL_STYLE = "bold cyan"
META_STYLE = "dim cyan"


def _token(tok: str) -> str:
    # Whitespace tokens (newlines, runs of spaces) would vanish or break the row: show them escaped.
    return repr(tok)[1:-1] if not tok or tok.isspace() else tok


def render_row(row: TextRow, k: int, view: TextBatchView) -> Text:
    """One row: number, label or next token, length, padding, then the tokens."""
    out = Text(f"{k:>2} ", style=META_STYLE)
    if row.label is not None:
        out.append(f"[{row.label}] ", style=LABEL_STYLE)
    out.append(f"len {row.length}", style=META_STYLE)
    if view.kind == "text_cls":
        out.append(f" pad {row.n_pad}", style=META_STYLE)
    out.append(" | ")
    body = Text()
    if row.n_pad and view.pad_first:
        body.append(f"xxpad x{row.n_pad}", style=PAD_STYLE)
        body.append(" ")
    specials = set(view.specials)
    for i, tok in enumerate(row.tokens):
        if i:
            body.append(" ")
        body.append(_token(tok), style=SPECIAL_STYLE if tok in specials else "")
    if len(row.tokens) < row.length:
        body.append(f" ... (+{row.length - len(row.tokens)} tokens)", style=META_STYLE)
    if row.n_pad and not view.pad_first:
        body.append(f" xxpad x{row.n_pad}", style=PAD_STYLE)
    if row.next_token is not None:
        body.append("  -> ", style=META_STYLE)
        body.append(_token(row.next_token), style=LABEL_STYLE)
    return out + body


def render_batch(view: TextBatchView) -> Text:
    """The whole batch: a header saying what the rows are, then one block per row."""
    rows, width = view.shape
    if view.kind == "text_lm":
        what = (
            f"language model: {rows} rows x {width} tokens of one stream; the target is each row shifted "
            "one token left (-> its next token)"
        )
    else:
        what = f"classifier: {rows} texts padded to {width} tokens, " + (
            "pad-first" if view.pad_first else "pad-last"
        )
    out = Text(f"batch {view.index + 1}/{view.n_batches}: {what}\n", style=META_STYLE)
    legend = Text("special tokens ", style=META_STYLE)
    legend.append(" ".join(t for t in view.specials if t != "xxpad"), style=SPECIAL_STYLE)
    legend.append("  padding ", style=META_STYLE)
    legend.append("xxpad xN", style=PAD_STYLE)
    out.append_text(legend)
    for k, row in enumerate(view.rows):
        out.append("\n")
        out.append_text(render_row(row, k, view))
    if len(view.rows) < rows:
        out.append(f"\n({len(view.rows)} of {rows} rows shown)", style=META_STYLE)
    return out


class TextBatch(Static):
    """Shows a TextBatchView (`show`); the Data pane asks the session for a new one on `r`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.view: TextBatchView | None = None

    def show(self, view: TextBatchView) -> None:
        """Draw `view`."""
        self.view = view
        self.update(render_batch(view))
