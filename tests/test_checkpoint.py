"""Checkpoints: atomic writes, pruning, safe loading, truncated-file fallback and RNG state."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labcon.errors import CheckpointError
from labcon.session import checkpoint as ck
from labcon.session.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    load_latest,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _state(epoch: int, train_iter: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return {
        "epoch": epoch,
        "train_iter": train_iter,
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "rng": rng_state(),
        "recorder": {"rows": [{"epoch": 0.0, "valid_loss": 0.5}], "losses": [1.0, 0.9]},
        "sampler": {"epoch": epoch, "seed": 3},
        "name": "run",
    }


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def test_round_trip_and_naming(tmp_path: Path) -> None:
    state = _state(3, 120)
    path = save_checkpoint(tmp_path, state)
    assert path == tmp_path / "ckpt-00003-120.pt"
    assert _equal(load_checkpoint(path), state)
    loaded, latest, warnings = load_latest(tmp_path)
    assert latest == path and warnings == [] and _equal(loaded, state)
    # Loaded state restores a model and optimizer exactly.
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.load_state_dict(loaded["model"])
    torch.optim.Adam(model.parameters()).load_state_dict(loaded["opt"])


def test_keeps_only_the_newest(tmp_path: Path) -> None:
    for e in range(4):
        save_checkpoint(tmp_path, _state(e, 10 * e))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00002-20.pt", "ckpt-00003-30.pt"]
    save_checkpoint(tmp_path, _state(4, 40), keep=3)
    assert len(list_checkpoints(tmp_path)) == 3
    # Sorting is numeric: iteration 100 is newer than 99 within an epoch.
    save_checkpoint(tmp_path, _state(4, 99), keep=10)
    save_checkpoint(tmp_path, _state(4, 100), keep=10)
    assert list_checkpoints(tmp_path)[-1].name == "ckpt-00004-100.pt"


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = save_checkpoint(tmp_path, _state(0, 5))

    def crash(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*ckpt-00001-10.pt \(disk full\)"):
        save_checkpoint(tmp_path, _state(1, 10))
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]
    assert load_latest(tmp_path)[1] == first


def test_a_full_disk_is_named_with_the_space_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's zip writer reports a full disk as 'unexpected pos': the message says what happened instead."""
    from collections import namedtuple

    def crash(obj: object, f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 451712 vs 451600")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ck.torch, "save", crash)
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(
        CheckpointError, match="no space left on the device of .* MB needed, 0.0 MB free"
    ) as e:
        save_checkpoint(tmp_path, _state(0, 5))
    assert "earlier checkpoints are intact" in str(e.value) and "resume" in str(e.value)
    assert not list(tmp_path.iterdir())  # the partial file is gone


def test_a_weights_file_in_torch_s_old_format_still_loads(tmp_path: Path) -> None:
    """Not a zip archive (torch < 1.6, or _use_new_zipfile_serialization=False), yet plain tensors: loads."""
    old = tmp_path / "old.pt"
    weights = nn.Linear(3, 2).state_dict()
    torch.save(dict(weights), old, _use_new_zipfile_serialization=False)
    assert _equal(load_checkpoint(old), weights)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"garbage\n", "not the archive torch.save writes (8 bytes"),
        (bytes(4000), "not the archive torch.save writes (4,000 bytes"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_called_that(tmp_path: Path, content: bytes, said: str) -> None:
    bad = tmp_path / "ckpt-00000-1.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        load_checkpoint(bad)
    assert said in str(e.value) and "pickled" not in str(e.value)


def test_truncated_newest_falls_back_to_the_previous(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _state(0, 10, seed=1))
    newest = save_checkpoint(tmp_path, _state(1, 20, seed=2))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    state, path, warnings = load_latest(tmp_path)
    assert path.name == "ckpt-00000-10.pt" and state["epoch"] == 0
    assert _equal(state["model"], _state(0, 10, seed=1)["model"])
    assert len(warnings) == 1
    assert "ckpt-00001-20.pt is truncated or corrupt" in warnings[0]
    assert "fell back to the previous checkpoint ckpt-00000-10.pt" in warnings[0]


def test_nothing_loadable_names_every_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_latest(tmp_path)
    a = save_checkpoint(tmp_path, _state(0, 1))
    b = save_checkpoint(tmp_path, _state(1, 2))
    a.write_bytes(b"")
    b.write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as e:
        load_latest(tmp_path)
    assert a.name in str(e.value) and b.name in str(e.value) and "truncated or corrupt" in str(e.value)


class Payload:
    """A custom class: unpickling it would import and run arbitrary code."""

    def __init__(self) -> None:
        self.x = 1


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ckpt-00005-1.pt"
    torch.save({"epoch": 5, "train_iter": 1, "obj": Payload()}, bad)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    msg = str(e.value)
    assert "contains pickled Python objects" in msg and "only tensors and plain data" in msg
    assert "unsafe" in msg and "Re-save" in msg
    # As the newest file it is skipped, with a warning, in favour of a safe one.
    good = save_checkpoint(tmp_path, _state(4, 1), keep=5)
    state, path, warnings = load_latest(tmp_path)
    assert path == good and "pickled Python objects" in warnings[0]
    with pytest.raises(CheckpointError, match="expected a dict"):
        torch.save([1, 2], tmp_path / "list.pt")
        load_checkpoint(tmp_path / "list.pt")


def test_stray_temp_file_from_a_crashed_save_is_ignored_and_cleaned(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path, _state(0, 1))
    stray = tmp_path / ".ckpt-tmp-abc123.pt"
    stray.write_bytes(b"PK\x03\x04 half written")
    assert list_checkpoints(tmp_path) == [good]
    assert load_latest(tmp_path)[1] == good
    newer = save_checkpoint(tmp_path, _state(1, 2))
    assert not stray.exists()
    assert sorted(tmp_path.iterdir()) == [good, newer]


def test_rng_state_restores_every_generator_and_survives_safe_loading(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    saved = rng_state()
    path = save_checkpoint(tmp_path, {"epoch": 0, "train_iter": 0, "rng": saved})

    def draw() -> tuple:
        return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist())

    expected = draw()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(path)["rng"])
    assert draw() == expected
    assert isinstance(saved["python"]["state"], torch.Tensor)
    if torch.cuda.is_available():
        assert len(saved["cuda"]) == torch.cuda.device_count()


def test_save_validates_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epoch"):
        save_checkpoint(tmp_path, {"model": {}})
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, {"epoch": 0, "train_iter": 0}, keep=0)
