"""TARGET: one function (labcon/session/target.py) says what every subcommand's argument names."""

from __future__ import annotations

from pathlib import Path

import pytest

from labcon.errors import LabconError
from labcon.remote.spawn import session_name_for
from labcon.session.target import resolve_target
from tests.helpers import make_image_folder, tiny_config


def test_each_kind_of_target(tmp_path: Path) -> None:
    home = tmp_path / "sessions"
    assert resolve_target(None, home).kind == "default" and resolve_target(None, home).name == "default"
    cfg = tmp_path / "exp.toml"
    data = make_image_folder(tmp_path / "imgs")
    cfg.write_text(tiny_config(data, name="exp"))
    t = resolve_target(str(cfg), home)
    assert (t.kind, t.name, t.path) == ("config", "exp", cfg) and t.config is not None
    t = resolve_target("mnist_tiny", home)
    assert (t.kind, t.name) == ("preset", "mnist_tiny") and t.config.data.raw == {"preset": "mnist_tiny"}
    (home / "saved").mkdir(parents=True)
    (home / "saved" / "session.toml").write_text('name = "saved"\n')
    t = resolve_target("saved", home)
    assert (t.kind, t.name, t.config) == ("session", "saved", None) and t.argument == "saved"
    t = resolve_target(str(data), home)
    assert (t.kind, t.name) == ("folder", "imgs") and t.argument == str(data.resolve())
    assert t.config.data.raw["splitter"] == {"kind": "grandparent", "train": "train", "valid": "valid"}


def test_open_takes_what_run_takes(tmp_path: Path) -> None:
    """`labcon open mnist_tiny` names the same session `labcon run mnist_tiny` trains (it was refused)."""
    assert (
        session_name_for("mnist_tiny", tmp_path)
        == resolve_target("mnist_tiny", tmp_path).name
        == "mnist_tiny"
    )


def test_bad_targets_name_every_kind(tmp_path: Path) -> None:
    with pytest.raises(
        LabconError, match="is not a config file, a preset .* a session under .* or a data folder"
    ):
        resolve_target("nope", tmp_path)
    with pytest.raises(LabconError, match="does not exist"):
        resolve_target(str(tmp_path / "missing.toml"), tmp_path)
