"""Small models and in-memory data for engine tests."""

from __future__ import annotations

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
    ds_t, ds_v = TensorDataset(x[: n * 3 // 4], y[: n * 3 // 4]), TensorDataset(x[n * 3 // 4 :], y[n * 3 // 4 :])
    return DataLoaders(DataLoader(ds_t, bs, shuffle=False), DataLoader(ds_v, bs))


def mlp(n_in: int = 10, n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, n_out))


def small_cnn(c_in: int = 1, n_out: int = 2) -> nn.Module:
    def block(ni: int, nf: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())

    return nn.Sequential(block(c_in, 8), block(8, 16), block(16, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_out))


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
