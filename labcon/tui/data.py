"""Data pane: the DataBlock summary stage by stage and a batch of sample images (re-drawable with new augments)."""

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

from labcon.tui.pane import Pane
from labcon.tui.samples import SampleGrid, cut_cells


class DataPane(Pane):
    """Summary text | sample batch image; `r` redraws the batch with new augmentations."""

    BINDINGS = [Binding("r", "resample", "New augments")]

    def __init__(self, session: Any, images: str = "auto", **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self._image_cls = HalfcellImage if images == "halfcell" else AutoImage
        self.n_draws = 0
        self._summary: str | None = None
        self._grid_width = 0

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

    def action_resample(self) -> None:
        """Ask the session for a new augmented batch (in a worker: it may take a moment)."""
        self.n_draws += 1
        self.query_one("#data-image-title", Label).update("sample batch: drawing ...")
        self._sample(self.n_draws > 1)

    @work(thread=True, exclusive=True, group="data-sample")
    def _sample(self, augment: bool) -> None:
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
