"""Multi-label data: label sets from a CSV column, multi-hot targets, sigmoid/BCE, thresholded accuracy,
and the data summary / show-batch showing label sets, through a real Session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from labcon.data.processors import MultiCategory
from labcon.errors import ConfigError
from labcon.session.build import build
from labcon.session.config import parse_config
from labcon.session.session import Session

SETS = ["red", "blue", "red blue", ""]  # '' : neither colour


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Images whose red and/or blue channel is strong; labels.csv lists the colours present."""
    root = tmp_path_factory.mktemp("ml")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = ["name,tags,is_valid"]
    for i in range(96):
        tags = SETS[i % 4]
        img = rng.integers(0, 90, (16, 16, 3), dtype=np.uint8)
        for word, ch in (("red", 0), ("blue", 2)):
            if word in tags.split():
                img[..., ch] += 150
        Image.fromarray(img).save(root / "images" / f"{i:03d}.png")
        rows.append(f"images/{i:03d}.png,{tags},{'true' if i >= 72 else 'false'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _cfg(data, train: str = 'loss = "bce"\nmetrics = ["accuracy_multi"]', name: str = "ml") -> str:
    return (
        f'name = "{name}"\nseed = 1\n[data]\npath = "{data}"\nsize = 16\nbs = 8\nnum_workers = 0\n'
        'splitter = {kind = "csv", file = "labels.csv", col = "is_valid"}\n'
        'labeller = {kind = "csv", file = "labels.csv", col = "tags", delim = " "}\n'
        f"[model]\nchannels = [8, 16]\n[train]\nepochs = 3\nlr = 1e-2\n{train}\n[telemetry]\nenabled = false\n"
    )


def test_label_sets_become_multi_hot_targets(data) -> None:
    b = build(parse_config(_cfg(data)))
    assert isinstance(b.block.processors[0], MultiCategory)
    assert b.dls.vocab == ["blue", "red"] and b.dls.c == 2 and b.dls.multi_label
    xb, yb = b.dls.one_batch()
    assert yb.dtype == torch.float32 and yb.shape == (8, 2)
    # Items 0..7 in order on the validation loader: red, blue, red blue, none, ...
    _, yv = b.dls.one_batch(valid=True)
    assert yv[:4].tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]


def test_multilabel_session_trains_summary_and_show_batch(data, tmp_path) -> None:
    s = Session(parse_config(_cfg(data)), tmp_path)
    try:
        summary = s.data_summary()
        assert (
            "MultiCategory" in summary
            and "multi-hot" in summary
            and "items per label: blue 36, red 36" in summary
        )
        img = s.sample_batch_image(augment=False)
        assert img.size[0] > 0
        assert s.start_fit().ok and s.wait(180) and s.last_error is None
        hist = s.history()
        assert hist[-1]["accuracy_multi"] >= 0.9, hist
    finally:
        s.close()


def test_multilabel_data_refuses_softmax_loss(data) -> None:
    with pytest.raises(ConfigError, match="multi-label.*loss = 'bce'"):
        build(parse_config(_cfg(data, train="")))
