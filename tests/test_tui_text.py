"""The console on real text sessions: the Data pane's text batch (LM and classifier, local and attached), perplexity
on the Training pane and telemetry on the LSTM layers."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from labcon.remote.client import RemoteSession
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.config import parse_config
from labcon.session.session import Session
from labcon.tui.app import build_app
from labcon.tui.data import DataPane
from labcon.tui.telemetry import TelemetryPane
from labcon.tui.textbatch import PAD_STYLE, SPECIAL_STYLE, TextBatch, render_batch
from tests.helpers import write_labelled_texts
from tests.pilot import screen_text, until

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # On a shared 2-core box OpenMP spin-waiting makes two threads cost several times the CPU of one here.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def texts() -> Iterator[Path]:
    """Labelled reviews of different lengths (so classifier batches are padded), some words in capitals."""
    d = Path(tempfile.mkdtemp(prefix="lctui", dir="/tmp"))
    yield write_labelled_texts(d, 60)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))  # short: a socket path has at most 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _session(texts: Path, kind: str, home: Path) -> Session:
    cfg = f"""
name = "{kind}"
seed = 1
[data]
kind = "{kind}"
path = "{texts}"
valid_col = "is_valid"
min_freq = 1
bs = 8
bptt = 10
num_workers = 0
[model]
arch = "awd_lstm"
emb_sz = 16
n_hid = 24
n_layers = 2
[train]
epochs = 2
lr = 1e-2
device = "cpu"
[telemetry]
every = 2
"""
    return Session(parse_config(cfg), home)


def _styled(widget: TextBatch, style: str) -> set[str]:
    """The pieces of the shown batch drawn in `style`."""
    assert widget.view is not None
    text = render_batch(widget.view)
    return {text.plain[s.start : s.end] for s in text.spans if str(s.style) == style}


async def _show_data(pilot, app) -> TextBatch:
    await pilot.press("4")
    widget = app.query_one(TextBatch)
    await until(pilot, lambda: widget.view is not None)
    await app.workers.wait_for_complete()
    await pilot.pause()
    return widget


async def test_lm_batch_perplexity_and_lstm_telemetry(texts: Path, home: Path) -> None:
    s = _session(texts, "text_lm", home)
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=SIZE) as pilot:
            widget = await _show_data(pilot, app)
            assert app.query_one("#data-text-box").display and not app.query_one("#data-image-box").display
            view = widget.view
            assert view is not None and view.kind == "text_lm" and view.draw == 0
            screen = screen_text(app)
            assert "language model" in screen and "shifted one token left" in screen
            x, y = s.dls.one_batch()
            vocab = s.dls.vocab
            first = " ".join(vocab.decode(x[0].tolist()))
            assert first[:40] in screen.replace("\n", " ") or first[:40] in render_batch(view).plain
            assert f"-> {vocab.itos[int(y[0, -1])]}" in render_batch(view).plain  # each row's next token
            assert {"xxmaj", "xxup"} <= _styled(widget, SPECIAL_STYLE)  # special tokens stand out
            assert "the" not in _styled(widget, SPECIAL_STYLE)
            await pilot.press("r")
            await until(pilot, lambda: widget.view is not None and widget.view.draw == 1)
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert "draw #2" in screen_text(app)
            assert "r Another batch" in screen_text(app) and "New augments" not in screen_text(app)
            # Train: the Training pane shows perplexity, the Telemetry pane the LSTM layers.
            assert s.submit("fit 2").ok
            assert s.wait(300)
            await pilot.press("1")
            await until(pilot, lambda: "perplexity" in screen_text(app), 20)
            ppl = s.history()[-1]["perplexity"]
            assert math.isfinite(ppl) and ppl > 1
            await pilot.press("2")
            pane = app.query_one(TelemetryPane)
            await until(pilot, lambda: pane.snapshot is not None and pane.snapshot.layers, 20)
            snap = pane.snapshot
            rnns = [layer for layer in snap.layers if layer.startswith("encoder.rnns")]
            assert rnns, snap.layers
            for layer in rnns:  # activations of every report; gradients of the report batches
                st = snap.latest[layer]
                assert math.isfinite(st.mean) and st.std > 0, (layer, st)
                assert any(math.isfinite(g) and g > 0 for g in snap.history(layer)["grad_norm"]), layer
            assert rnns[0] in screen_text(app)
    finally:
        s.close()


@pytest.mark.parametrize("attached", [False, True], ids=["local", "attached"])
async def test_classifier_batch_labels_and_padding(texts: Path, home: Path, attached: bool) -> None:
    local = _session(texts, "text_cls", home)
    s, server = local, None
    if attached:
        server = ControlServer(local, control_socket_path(home, local.name)).start()
        s = RemoteSession(server.path)
    app = build_app(s, images="halfcell")
    try:
        async with app.run_test(size=SIZE) as pilot:
            widget = await _show_data(pilot, app)
            view = widget.view
            assert view is not None and view.kind == "text_cls" and view.pad_first
            assert view == local.text_batch(0)  # what the session drew, also over the socket
            screen = screen_text(app)
            assert "pad-first" in screen and ("[pos]" in screen or "[neg]" in screen)
            padded = [r for r in view.rows if r.n_pad]
            assert padded, "the first batch has rows of different lengths"
            assert f"xxpad x{padded[0].n_pad}" in _styled(widget, PAD_STYLE)  # padding folded and dimmed
            assert all("xxpad" not in r.tokens for r in view.rows)
            assert "xxbos" in _styled(widget, SPECIAL_STYLE)
            assert f"len {view.rows[0].length} pad {view.rows[0].n_pad}" in screen
            await pilot.press("r")
            await until(pilot, lambda: widget.view is not None and widget.view.draw == 1)
            assert app.query_one(DataPane).n_draws == 2
    finally:
        if server is not None:
            s.close()
            server.close()
        local.close()
