"""`labcon data list | get | summary | preview`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from labcon.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCON_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_list_and_get_shapes(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "imagenette-160" in out and "imdb" in out and "shapes" in out
    assert main(["data", "get", "shapes"]) == 0
    assert capsys.readouterr().out.strip() == str(data_dir / "shapes")
    main(["data", "list"])
    assert any(ln.startswith("shapes") and " yes " in ln for ln in capsys.readouterr().out.splitlines())


def test_summary_and_preview_of_preset_config_and_folder(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "summary", "shapes"]) == 0
    assert "8. batch transforms" in capsys.readouterr().out
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[data]\npreset = "shapes"\nbs = 8\nbatch_tfms = ["affine", {kind = "normalize", stats = "imagenet"}]\n'
    )
    out_png = tmp_path / "grid.png"
    assert main(["data", "preview", str(cfg), "--out", str(out_png), "-n", "4"]) == 0
    assert Image.open(out_png).size[0] > 64
    assert main(["data", "summary", str(data_dir / "shapes"), "--size", "16"]) == 0
    assert "size=16x16" in capsys.readouterr().out


def test_errors_are_one_line(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "summary", "nowhere"]) == 2
    assert "is not a .toml config, a preset" in capsys.readouterr().err
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data]\npreset = "shapes"\nbs = -1\n')
    assert main(["data", "summary", str(cfg)]) == 2
    assert "data.bs: must be a whole number" in capsys.readouterr().err
    assert main(["data", "get", "cifar"]) == 2
    assert "unknown dataset 'cifar'" in capsys.readouterr().err


def test_preview_scale(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--scale sets output pixels per image pixel: scale 2 of 16-px images is a 2x2 grid of 32-px cells."""
    folder = data_dir / "shapes"
    assert main(["data", "get", "shapes"]) == 0
    sizes = {}
    for scale in (1, 2):
        out = tmp_path / f"g{scale}.png"
        assert (
            main(
                [
                    "data",
                    "preview",
                    str(folder),
                    "--size",
                    "16",
                    "-n",
                    "4",
                    "--scale",
                    str(scale),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        sizes[scale] = Image.open(out).size
    pad = 4  # the grid's padding between and around cells
    assert sizes[1][0] == 2 * (16 + pad) + pad and sizes[2][0] == 2 * (32 + pad) + pad, sizes
    assert main(["data", "preview", str(folder), "--scale", "0"]) == 2
    assert "--scale must be between 1 and 32" in capsys.readouterr().err


def test_a_data_folder_that_is_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["data", "get", "shapes", "--root", str(afile / "x")]) == 2
    err = capsys.readouterr().err
    assert f"cannot use {afile / 'x'} as the data folder" in err and "is a file" in err
    assert "point --root or LABCON_DATA at a folder you can write" in err and "Traceback" not in err
    monkeypatch.setenv("LABCON_DATA", str(afile))
    assert main(["data", "summary", "shapes"]) == 2
    err = capsys.readouterr().err
    assert f"cannot use {afile} as the data folder" in err and "Traceback" not in err
