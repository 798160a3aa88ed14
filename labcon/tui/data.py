"""Data pane: the DataBlock summary stage by stage and a sample batch: images (re-drawable with new augments), or
for text sessions the decoded token rows (another batch on each redraw)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.events import Resize
from textual.widgets import Label, Static

# Imported at module load on purpose: textual-image queries the terminal's cell size, impossible once Textual runs.
from textual_image.widget import HalfcellImage
from textual_image.widget import Image as AutoImage

from labcon.data.text_show import TextBatchView
from labcon.tui.pane import Pane
from labcon.tui.samples import SampleGrid, cut_cells
from labcon.tui.textbatch import TextBatch


class DataPane(Pane):
    """Summary text | sample batch (images, or decoded text rows); `r` redraws the batch (new augments / batch)."""

    # One key, two words: the key line says what `r` does for this session's data (check_action hides the other).
    BINDINGS = [Binding("r", "resample", "New augments"), Binding("r", "next_text_batch", "Another batch")]

    def __init__(self, session: Any, images: str = "auto", **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self._image_cls = HalfcellImage if images == "halfcell" else AutoImage
        self.n_draws = 0
        self._summary: str | None = None
        self._grid_width = 0
        self._text: bool | None = None  # a text session? (known after the first draw)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="data-summary-box"):
            yield Static("summarising the data block ...", id="data-summary")
        with Vertical(id="data-image-box"):
            yield Label("sample batch (r: redraw with new augments)", id="data-image-title")
            yield self._image_cls(None, id="data-image")
            # Samples with their labels as text (readable over SSH / tmux, where the drawn labels are a blur).
            grid = SampleGrid(self._image_cls, id="data-samples")
            grid.display = False
            yield grid
        with VerticalScroll(id="data-text-box") as box:
            box.display = False
            yield Label("text batch", id="data-text-title")
            yield TextBatch(id="data-text")

    def redraw(self) -> None:
        if self._summary is None:
            self._summarise()  # once: it scans the folder and walks a sample through every stage
        if self.n_draws == 0:
            self.action_resample()

    @work(thread=True, exclusive=True, group="data-summary")
    def _summarise(self) -> None:
        try:
            text, failed = self.session.data_summary(), False
        except Exception as e:  # noqa: BLE001 - a data error must show up, not kill the console
            text, failed = f"data summary failed: {type(e).__name__}: {e}", True
        self.app.call_from_thread(self._show_summary, text, failed)

    def _show_summary(self, text: str, failed: bool) -> None:
        self._summary = text
        self.query_one("#data-summary", Static).update(Text(text))
        if failed:
            self.app.notify(text, severity="error", markup=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`resample` for image data, `next_text_batch` for text (False: off and hidden from the key line)."""
        if action in ("resample", "next_text_batch"):
            return (action == "next_text_batch") == bool(self._text)
        return True

    def action_next_text_batch(self) -> None:
        """Draw another text batch."""
        self.action_resample()

    def action_resample(self) -> None:
        """Ask the session for a new batch: new augments, or another text batch (in a worker: it may take a moment)."""
        self.n_draws += 1
        title = "#data-text-title" if self._text else "#data-image-title"
        self.query_one(title, Label).update("sample batch: drawing ...")
        self._sample(self.n_draws)

    @work(thread=True, exclusive=True, group="data-sample")
    def _sample(self, draw: int) -> None:
        if self._text is not False:
            try:
                view, err = self.session.text_batch(draw - 1), None
            except Exception as e:  # noqa: BLE001 - a data error must show up, not kill the console
                view, err = None, f"{type(e).__name__}: {e}"
            if view is not None or err is not None:
                self.app.call_from_thread(self._show_text, view, err)
                return
            self._text = False  # image data: draw images from now on
        augment = draw > 1
        try:
            img, err = self.session.sample_batch_image(augment=augment), None
        except Exception as e:  # noqa: BLE001 - a data error must show up, not kill the console
            img, err = None, f"{type(e).__name__}: {e}"
        self.app.call_from_thread(self._show, img, err)

    def _show(self, img: Any, err: str | None) -> None:
        title = self.query_one("#data-image-title", Label)
        if err is not None:
            title.update(Text(f"sample batch: {err}"))
            self.app.notify(err, severity="error", markup=False)
            return
        cells = cut_cells(img)
        picture, grid = self.query_one("#data-image", self._image_cls), self.query_one(SampleGrid)
        picture.display, grid.display = cells is None, cells is not None
        if cells is None:
            picture.image = img
        else:
            grid.cells = cells
            self._grid_width = -1
            self.call_after_refresh(self._relayout)  # once shown: its width is known after a layout pass
        title.update(f"sample batch #{self.n_draws} (r: redraw with new augments)")

    def _show_text(self, view: TextBatchView | None, err: str | None) -> None:
        if not self._text:
            self._text = True
            self.refresh_bindings()
        self.query_one("#data-image-box").display = False
        self.query_one("#data-text-box").display = True
        title = self.query_one("#data-text-title", Label)
        if view is None:
            title.update(Text(f"text batch: {err}"))
            self.app.notify(str(err), severity="error", markup=False)
            return
        self.query_one(TextBatch).show(view)
        title.update(f"text batch, draw #{self.n_draws} (r: draw another batch)")

    def on_resize(self, event: Resize) -> None:
        """Lay the samples out again for the new width."""
        grid = self.query_one(SampleGrid)
        if grid.cells and grid.display:
            self.call_after_refresh(self._relayout)

    def _relayout(self) -> None:
        grid = self.query_one(SampleGrid)
        if grid.size.width != self._grid_width:
            self._grid_width = grid.size.width
            grid.show(grid.cells)
