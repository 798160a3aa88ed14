"""The built-in shapes dataset: offline, deterministic, fast, and learnable on CPU."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from labcon.data import builtin_block, ensure_builtin, preset_block
from labcon.data.datasets import SHAPES, data_root
from labcon.errors import DataError


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_builtin(tmp_path_factory.mktemp("data"))


def test_layout_and_determinism(shapes_root: Path, tmp_path: Path) -> None:
    assert sorted(d.name for d in shapes_root.iterdir() if d.is_dir()) == ["train", "valid"]
    assert sorted(d.name for d in (shapes_root / "train").iterdir()) == sorted(SHAPES)
    assert len(list((shapes_root / "train").rglob("*.png"))) == 250 * len(SHAPES)
    t = time.perf_counter()
    again = ensure_builtin(tmp_path)
    assert time.perf_counter() - t < 30  # ~3 s on 2 idle cores; generous for a loaded CI box
    assert _digest(again) == _digest(shapes_root)
    assert ensure_builtin(tmp_path) == again  # second call reuses it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shapes-")]  # temp dir cleaned


def test_foreign_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "shapes").mkdir()
    with pytest.raises(DataError, match="not made by labcon"):
        ensure_builtin(tmp_path)


def test_data_root_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCON_DATA", str(tmp_path / "x"))
    assert data_root() == tmp_path / "x"
    assert data_root("elsewhere") == Path("elsewhere")
    monkeypatch.delenv("LABCON_DATA")
    monkeypatch.chdir(tmp_path)
    assert data_root() == tmp_path / "data"


def test_presets(tmp_path: Path) -> None:
    assert preset_block("mnist_tiny", tmp_path).path == tmp_path
    assert preset_block("imagenette", tmp_path).splitter.valid == "val"
    with pytest.raises(DataError, match="unknown preset 'cifar'"):
        preset_block("cifar")


def test_small_cnn_learns_shapes_on_cpu(shapes_root: Path) -> None:
    torch.manual_seed(0)
    block = builtin_block(root=shapes_root.parent, bs=64)
    dls = block.dataloaders(num_workers=0)
    assert dls.c == len(SHAPES)

    def conv(ci: int, co: int, stride: int = 2) -> nn.Module:
        return nn.Sequential(nn.Conv2d(ci, co, 3, stride, 1), nn.BatchNorm2d(co), nn.ReLU())

    model = nn.Sequential(
        conv(3, 16, 1),
        conv(16, 32),
        conv(32, 64),
        conv(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, dls.c),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: one thread is fastest and immune to a busy CI box
    t = time.perf_counter()
    try:
        for _ in range(3):
            model.train()
            for x, y in dls.train:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum().item() for x, y in dls.valid)
    finally:
        torch.set_num_threads(threads)
    acc = correct / len(dls.valid.dataset)
    assert time.perf_counter() - t < 60
    assert acc > 0.35, acc  # chance is 1/8; ~0.6 after 3 epochs


def test_data_from_an_older_generator_is_regenerated(tmp_path: Path) -> None:
    from labcon.data.datasets import SHAPES_VERSION

    old = tmp_path / "shapes"
    (old / "train" / "circle").mkdir(parents=True)
    (old / "train" / "circle" / "stale.png").write_bytes(b"old")
    (old / ".labcon-builtin").write_text("labcon built-in dataset shapes, version 0, seed 0\n")
    dest = ensure_builtin(tmp_path)
    assert f"version {SHAPES_VERSION}," in (dest / ".labcon-builtin").read_text()
    assert not (dest / "train" / "circle" / "stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # no temp folders left behind
