"""A callback's options are checked when it is added (config [[callbacks]] or `cb add`), not when a fit
first needs them; what it writes stays in its session's folder."""

from __future__ import annotations

import os
import stat

import pytest

from labcon.errors import ConfigError
from labcon.session.config import parse_config
from labcon.session.session import Session
from tests.helpers import tiny_config, tiny_session


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ('name = "early_stopping"\npatience = "abc"', "patience must be a whole number, got 'abc'"),
        ('name = "early_stopping"\npatience = -1', "patience must be a whole number of epochs >= 0"),
        ('name = "reduce_lr_on_plateau"\nfactor = "abc"', "factor must be a number, got 'abc'"),
        ('name = "reduce_lr_on_plateau"\nfactor = 0.5', "factor must be > 1"),
        ('name = "mixup"\nalpha = "abc"', "alpha must be a number, got 'abc'"),
        ('name = "save_best"\nmonitor = "nosuch"', "save_best cannot monitor 'nosuch'"),
        ('name = "save_best"\nmonitr = "valid_loss"', "has no option 'monitr'; did you mean 'monitor'?"),
    ],
)
def test_bad_callback_options_in_a_config_are_refused_when_it_is_read(data, tmp_path, option, said):
    cfg = parse_config(tiny_config(data, "cbo", 1, telemetry=False) + f"[[callbacks]]\n{option}\n")
    with pytest.raises(ConfigError, match="callbacks") as e:
        Session(cfg, tmp_path, journal=False)
    assert said in str(e.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("cb add early_stopping patience=abc", "patience must be a whole number, got 'abc'"),
        ("cb add mixup alpha=abc", "alpha must be a number, got 'abc'"),
        ("cb add gradient_clip max_norm=abc", "max_norm must be a number, got 'abc'"),
        (
            "cb add save_best monitor=nosuch",
            "cannot monitor 'nosuch'; epoch rows have train_loss, valid_loss",
        ),
    ],
)
def test_bad_callback_options_in_cb_add_are_refused_with_nothing_installed(data, tmp_path, text, said):
    s = tiny_session(data, tmp_path, journal=False)
    try:
        before = [c.name for c in s.runner.cbs]
        reply = s.submit(text)
        assert not reply.ok and said in reply.text, reply.text
        assert [c.name for c in s.runner.cbs] == before
    finally:
        s.close()


def test_save_best_writes_privately_into_its_session_folder(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory must stay clean: two sessions would share best.pt
    cfg = parse_config(tiny_config(data, "sb", 1, telemetry=False) + '[[callbacks]]\nname = "save_best"\n')
    s = Session(cfg, tmp_path / "home")
    try:
        assert s.submit("fit 1").ok
        assert s.wait(120) and s.last_error is None
        best = tmp_path / "home" / "sb" / "best.pt"
        assert best.is_file() and not (tmp_path / "best.pt").exists()
        assert stat.S_IMODE(os.stat(best).st_mode) == 0o600
    finally:
        s.close()
