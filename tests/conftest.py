"""Shared fixtures: the read-only datasets beside the checkout, and a temporary labcon home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("LABCON_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/NAME, or skip the test when it is absent (a user's fresh clone)."""
    path = SHARED_DATA / name
    if not path.is_dir() and not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture
def mnist_tiny() -> Path:
    return shared_dataset("mnist_tiny")


@pytest.fixture
def imagenette() -> Path:
    return shared_dataset("imagenette2-160")


@pytest.fixture
def imdb_sample() -> Path:
    return shared_dataset("imdb_sample")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small image folder (train/valid by grandparent folder, labelled by parent), one per test module."""
    from tests.helpers import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("img"))


@pytest.fixture
def labcon_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh sessions directory, also exported as LABCON_HOME."""
    home = tmp_path / "sessions"
    home.mkdir()
    monkeypatch.setenv("LABCON_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _end_started_labcon():
    """Whatever a test asserts, the labcon processes it started (and torchrun's workers) end with it."""
    yield
    from tests.helpers import end_started

    end_started()


@pytest.fixture
def anyio_backend() -> str:
    """The console's pilot tests run on asyncio (Textual's loop)."""
    return "asyncio"
