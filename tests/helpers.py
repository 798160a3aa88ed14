"""Small models and in-memory data for engine tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labcon.data.loaders import DataLoaders


def synthetic_dls(n: int = 256, bs: int = 32, n_in: int = 10, n_out: int = 3, seed: int = 0) -> DataLoaders:
    """A learnable linear classification problem in memory."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, n_out, generator=g)
    y = (x @ w).argmax(1)
    ds_t, ds_v = (
        TensorDataset(x[: n * 3 // 4], y[: n * 3 // 4]),
        TensorDataset(x[n * 3 // 4 :], y[n * 3 // 4 :]),
    )
    return DataLoaders(DataLoader(ds_t, bs, shuffle=False), DataLoader(ds_v, bs))


def mlp(n_in: int = 10, n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, n_out))


def small_cnn(c_in: int = 1, n_out: int = 2) -> nn.Module:
    def block(ni: int, nf: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU()
        )

    return nn.Sequential(
        block(c_in, 8),
        block(8, 16),
        block(16, 32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, n_out),
    )


def load_mnist_tiny(path: Path, bs: int = 64) -> DataLoaders:
    """mnist_tiny's train/valid folders as in-memory tensors (independent of labcon.data)."""

    def load(split: str) -> TensorDataset:
        xs, ys = [], []
        for label, cls in enumerate(("3", "7")):
            for f in sorted((path / split / cls).iterdir()):
                xs.append(np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0)
                ys.append(label)
        x = torch.from_numpy(np.stack(xs))[:, None]
        return TensorDataset((x - 0.13) / 0.31, torch.tensor(ys))

    torch.manual_seed(0)
    return DataLoaders(DataLoader(load("train"), bs, shuffle=True), DataLoader(load("valid"), bs * 2))


def make_image_folder(root: Path, n_train: int = 24, n_valid: int = 8, size: int = 16, seed: int = 0) -> Path:
    """train/{red,blue}/*.png and valid/...: noisy images whose dominant colour is the label (learns fast)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("valid", n_valid)):
        for ci, cls in enumerate(("red", "blue")):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
                img[..., 0 if ci == 0 else 2] += 120
                Image.fromarray(img).save(d / f"{cls}_{i:03d}.png")
    return root


def tiny_config(data: Path, name: str = "t", epochs: int = 3, extra: str = "", telemetry: bool = True) -> str:
    """A session config over make_image_folder's data: small, fast, deterministic."""
    return (
        f'name = "{name}"\nseed = 3\n'
        f'[data]\npath = "{data}"\nsize = 16\nbs = 8\nnum_workers = 0\nitem_tfms = ["flip"]\nsplitter = "grandparent"\nlabeller = "parent"\n'
        f"[model]\nchannels = [8, 16]\n"
        f"[train]\nepochs = {epochs}\nlr = 1e-2\n{extra}"
        f"[telemetry]\nenabled = {'true' if telemetry else 'false'}\nevery = 4\n"
    )


def tiny_session(data: Path, home: Path, name: str = "t", epochs: int = 1, **kw):
    """A real Session on tiny_config (telemetry off) under `home`; keyword arguments go to Session."""
    from labcon.session.config import parse_config
    from labcon.session.session import Session

    return Session(parse_config(tiny_config(data, name, epochs, telemetry=False)), home, **kw)


def checkpointed(data: Path, home: Path, name: str = "t") -> Path:
    """A closed session with one checkpoint (after an epoch); returns its checkpoints folder."""
    s = tiny_session(data, home, name)
    s.start_fit()
    assert s.wait(120)
    s.close()
    return home / name / "checkpoints"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (a rendezvous or a test server takes it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STARTED: list[subprocess.Popen] = []  # ended by conftest's autouse fixture after each test


def start_labcon(home: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """`python -m labcon --sessions-dir HOME ARGS` from this checkout, in its own process group (stdout+stderr
    as text), registered so that the test's teardown ends it and every worker it started, pass or fail."""
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "labcon", "--sessions-dir", str(home), *args],
        cwd=repo,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(repo), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )
    STARTED.append(proc)
    return proc


def end_started() -> None:
    """Kill the process group of every labcon process a test started that is still running."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def write_labelled_texts(folder: Path, n: int) -> Path:
    """`folder/texts.csv`: n labelled reviews of different lengths (padded classifier batches), some words in
    capitals, every sixth row in the validation set."""
    words = ["good", "bad", "FINE", "dull", "great", "poor"]
    lines = ["label,text,is_valid"]
    for i in range(n):
        body = " ".join(f"The film was {words[(i + k) % 6]}." for k in range(1 + i % 9))
        lines.append(f"{'pos' if i % 2 else 'neg'},{body},{i % 6 == 5}")
    path = folder / "texts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
