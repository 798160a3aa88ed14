"""Sample images as a grid of cells with their labels as terminal text, laid out to the pane's width."""

from __future__ import annotations

import re
from typing import Any

from PIL import Image
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

_LAYOUT = re.compile(r"cols=(\d+) cell=(\d+)x(\d+) pad=(\d+) text=(\d+)")
# Terminal cells per sample: wide enough for a readable half-block picture and most labels.
CELL_COLS = 12
MIN_CELL_COLS = 6


def cut_cells(img: Any) -> list[tuple[Image.Image, str]] | None:
    """The (picture, label) of every sample in a grid from `show_batch`; None for an image without that layout."""
    info = getattr(img, "info", {}) or {}
    m = _LAYOUT.fullmatch(str(info.get("layout", "")))
    labels = str(info.get("labels", "")).split("\t") if info.get("labels") else []
    if m is None or not labels:
        return None
    cols, cw, ch, pad, text_h = (int(g) for g in m.groups())
    out = []
    for k, label in enumerate(labels):
        r, c = divmod(k, cols)
        left, top = pad + c * (cw + pad), pad + r * (ch + text_h + pad)
        if left + cw > img.width or top + ch > img.height:
            return None  # not the layout it claims: show the image as it is
        out.append((img.crop((left, top, left + cw, top + ch)).convert("RGB"), label))
    return out


def fit_columns(width: int, n: int) -> tuple[int, int]:
    """(samples per row, terminal columns per sample) for a pane `width` cells wide."""
    cell = CELL_COLS if width >= 4 * (CELL_COLS + 1) else max(MIN_CELL_COLS, width // 4 - 1)
    cols = max(1, min(n, width // (cell + 1)))
    return cols, cell


def label_row(labels: list[str], cell: int) -> Text:
    """Labels under their pictures: each centred in its cell's width, cut with '…' when longer."""
    text = Text(no_wrap=True)
    for label in labels:
        shown = label if len(label) <= cell else label[: cell - 1] + "…"
        text.append(shown.center(cell) + " ", style="bold")
    return text


class SampleGrid(VerticalScroll):
    """Rows of sample pictures (one image widget per row) with a row of labels under each."""

    def __init__(self, image_cls: type[Widget], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._image_cls = image_cls
        self.cells: list[tuple[Image.Image, str]] = []
        self.labels_shown: list[str] = []

    def show(self, cells: list[tuple[Image.Image, str]]) -> None:
        """Lay `cells` out to the current width (called again when the pane is resized)."""
        self.cells = cells
        self.remove_children()
        if not cells:
            return
        width = max(MIN_CELL_COLS + 1, (self.size.width or 61) - 1)  # one column for the scroll bar
        cols, cell = fit_columns(width, len(cells))
        cw, ch = cells[0][0].size
        gap = max(1, cw // cell)  # one terminal column between pictures, in pixels
        rows: list[Widget] = []
        self.labels_shown = []
        for start in range(0, len(cells), cols):
            chunk = cells[start : start + cols]
            strip = Image.new("RGB", (len(chunk) * (cw + gap), ch), (0, 0, 0))
            for i, (pic, _) in enumerate(chunk):
                strip.paste(pic, (i * (cw + gap), 0))
            picture = self._image_cls(strip)
            # Half blocks: one column is one pixel across and a row two pixels down, so a square cell is
            # `cell` columns by cell/2 rows.
            picture.styles.width = len(chunk) * (cell + 1)
            picture.styles.height = max(2, round(cell * ch / cw / 2))
            rows.append(picture)
            names = [label for _, label in chunk]
            self.labels_shown += names
            rows.append(Static(label_row(names, cell), classes="sample-labels"))
        self.mount_all(rows)
