"""Data pane: the DataBlock summary stage by stage and a batch of sample images (re-drawable with new augments)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

# Imported at module load on purpose: textual-image queries the terminal's cell size, impossible once Textual runs.
from textual_image.widget import HalfcellImage
from textual_image.widget import Image as AutoImage

from labcon.tui.pane import Pane


class DataPane(Pane):
    """Summary text | sample batch image; `r` redraws the batch with new augmentations."""

    BINDINGS = [Binding("r", "resample", "New augments")]

    def __init__(self, session: Any, images: str = "auto", **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self._image_cls = HalfcellImage if images == "halfcell" else AutoImage
        self.n_draws = 0
        self._summary: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="data-summary-box"):
            yield Static("summarising the data block ...", id="data-summary")
        with Vertical(id="data-image-box"):
            yield Label("sample batch (r: redraw with new augments)", id="data-image-title")
            yield self._image_cls(None, id="data-image")

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
        self.query_one("#data-image", self._image_cls).image = img
        title.update(f"sample batch #{self.n_draws} (r: redraw with new augments)")
