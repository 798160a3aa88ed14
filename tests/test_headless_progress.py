"""The headless printer (`labcon run`) on a real Session: its first progress line already has a loss."""

from __future__ import annotations

import io
import re

from labcon.cli.run import HeadlessPrinter
from labcon.session.config import parse_config
from labcon.session.session import Session
from tests.helpers import make_image_folder, tiny_config


def test_first_progress_line_has_a_real_loss(tmp_path):
    data = make_image_folder(tmp_path / "img", n_train=48)
    s = Session(parse_config(tiny_config(data, name="hp", epochs=1)), tmp_path / "home")
    out = io.StringIO()
    printer = HeadlessPrinter(s, out=out, every=0.0)
    try:
        assert s.submit("fit 1").ok and s.jobs.wait_idle(120)
    finally:
        printer.close()
        s.close()
    lines = [ln for ln in out.getvalue().splitlines() if re.match(r"epoch \d+ batch", ln)]
    assert lines, out.getvalue()
    assert "nan" not in lines[0], lines[:3]
    assert re.search(r"loss \d+\.\d{4}", lines[0]), lines[0]
